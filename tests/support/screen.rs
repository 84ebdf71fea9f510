//! A headed display for browser tests: Xvfb inside the test's network namespace, a
//! screenshot of the whole screen (browser UI included, which DevTools cannot
//! capture) through `xwd`, written as PNG, and key presses through `xdotool`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::{WAIT, require_tool};

/// An Xvfb server; killed on drop.
pub struct Xvfb {
    child: Child,
    /// `:N`.
    pub display: String,
    wrapper: Vec<String>,
}

impl Xvfb {
    /// Starts Xvfb (1280×900, 24 bits) through `wrapper` (e.g. `ip netns exec NAME`)
    /// and waits for its socket.
    pub fn start(wrapper: &[String]) -> Xvfb {
        let xvfb = require_tool("Xvfb", "xvfb");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = 90 + (std::process::id() % 500) * 10 + NEXT.fetch_add(1, Ordering::Relaxed);
        let display = format!(":{n}");
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&xvfb);
                c
            }
            None => Command::new(&xvfb),
        };
        let mut child = cmd
            .args([&display, "-screen", "0", "1280x900x24", "-nolisten", "tcp"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn Xvfb");
        let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
        let deadline = Instant::now() + WAIT;
        while !socket.exists() {
            if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_))) {
                let _ = child.kill();
                panic!("Xvfb {display} did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Xvfb {
            child,
            display,
            wrapper: wrapper.to_vec(),
        }
    }

    fn tool(&self, tool: &str, package: &str) -> Command {
        let exe = require_tool(tool, package);
        let mut c = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        c.env("DISPLAY", &self.display);
        c
    }

    /// The whole screen, browser UI included.
    pub fn grab(&self) -> Shot {
        let out = self
            .tool("xwd", "x11-apps")
            .args(["-root", "-silent"])
            .output()
            .expect("run xwd");
        assert!(out.status.success(), "xwd failed");
        let (width, height, rgb) = xwd_to_rgb(&out.stdout).expect("xwd output in ZPixmap, 32 bits");
        Shot { width, height, rgb }
    }

    /// The whole screen as PNG at `path` (parent directories created).
    pub fn screenshot(&self, path: &Path) {
        self.grab().save(path);
    }

    /// Sends key presses (xdotool syntax, e.g. `Tab`, `Return`, `alt+shift+a`).
    pub fn keys(&self, keys: &[&str]) {
        let st = self
            .tool("xdotool", "xdotool")
            .arg("key")
            .args(keys)
            .status()
            .expect("run xdotool");
        assert!(st.success(), "xdotool key {keys:?} failed");
    }

    /// Clicks at screen coordinates.
    pub fn click(&self, x: u32, y: u32) {
        let st = self
            .tool("xdotool", "xdotool")
            .args(["mousemove", &x.to_string(), &y.to_string(), "click", "1"])
            .status()
            .expect("run xdotool");
        assert!(st.success(), "xdotool click failed");
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One screenshot.
pub struct Shot {
    /// Pixels across.
    pub width: u32,
    /// Pixels down.
    pub height: u32,
    /// RGB, row by row.
    pub rgb: Vec<u8>,
}

impl Shot {
    /// Whether any pixel in the rectangle is not white.
    pub fn has_ink(&self, x0: u32, y0: u32, x1: u32, y1: u32) -> bool {
        (y0..y1.min(self.height)).any(|y| {
            (x0..x1.min(self.width)).any(|x| {
                let i = (y as usize * self.width as usize + x as usize) * 3;
                self.rgb.get(i..i + 3).is_some_and(|p| p != [255, 255, 255])
            })
        })
    }

    /// Writes it as PNG at `path` (parent directories created).
    pub fn save(&self, path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png(self.width, self.height, &self.rgb)).expect("write screenshot");
    }
}

/// Decodes an `xwd` dump (ZPixmap, 32 bits per pixel, as Xvfb at depth 24 gives)
/// into width, height and RGB bytes.
pub fn xwd_to_rgb(b: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let field = |i: usize| -> Option<u32> {
        let s = b.get(i * 4..i * 4 + 4)?;
        Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    };
    let header_size = field(0)? as usize;
    let (format, width, height) = (field(2)?, field(4)?, field(5)?);
    let byte_order = field(7)?;
    let bits_per_pixel = field(11)?;
    let bytes_per_line = field(12)? as usize;
    let ncolors = field(19)? as usize;
    if format != 2 || bits_per_pixel != 32 {
        return None;
    }
    let data = b.get(header_size + ncolors * 12..)?;
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        let row = data.get(y * bytes_per_line..y * bytes_per_line + width as usize * 4)?;
        for px in row.chunks_exact(4) {
            // 0x00RRGGBB in the server's byte order.
            let v = if byte_order == 0 {
                u32::from_le_bytes([px[0], px[1], px[2], px[3]])
            } else {
                u32::from_be_bytes([px[0], px[1], px[2], px[3]])
            };
            rgb.extend_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
        }
    }
    Some((width, height, rgb))
}

/// A PNG (8-bit RGB) with stored, uncompressed deflate blocks: no compression
/// library needed for a test artefact.
pub fn png(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(rgb.len() + height as usize);
    for row in rgb.chunks_exact(width as usize * 3) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let mut blocks = raw.chunks(65535).peekable();
    while let Some(block) = blocks.next() {
        z.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());

    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    for (kind, body) in [(b"IHDR", ihdr), (b"IDAT", z), (b"IEND", Vec::new())] {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let mut crc_input = kind.to_vec();
        crc_input.extend_from_slice(&body);
        out.extend_from_slice(&crc_input);
        out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Where a test's screenshots go: `target/lna-screenshots/` (never committed).
pub fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/lna-screenshots")
        .join(name)
}
