//! The write floor of a WebSocket fan-out on this machine: T threads (one by default)
//! writing one complete, unmasked text frame to each of N loopback TCP sockets, each
//! thread its share of the sockets, best of K rounds.
//!
//! No server does less per subscriber than one `write(2)` of the shared frame, and on
//! loopback that call also runs the receiver's TCP input, so this is the figure the
//! daemon's fan-out spread is compared with (issue 12, `scripts/bench fanout`). The
//! sockets are set up like the daemon's (`TCP_NODELAY`, a 64 KiB send buffer); nobody
//! reads during a round, and everything is drained between rounds, untimed.
//!
//! `--threads 2` is the floor of a server that writes from both cores of this machine
//! at once; `--uring` (Linux) hands each thread's sends to the kernel in io_uring
//! submissions of up to 256, so no system call is made per socket: the lowest figure
//! any server on this machine could reach, whatever its design.
//!
//! ```text
//! cargo run --release --example write_floor -- [--sockets N] [--bytes B] [--rounds K]
//!     [--threads T] [--uring] [--json]
//! ```
//!
//! Prints the best and the median round (the time from the first write's start, in any
//! thread, to the last write's end), and with `--json` one JSON object instead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

struct Args {
    sockets: usize,
    bytes: usize,
    rounds: usize,
    threads: usize,
    uring: bool,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sockets: 1000,
        bytes: 284,
        rounds: 50,
        threads: 1,
        uring: false,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{name} needs a positive number"))
        };
        match flag.as_str() {
            "--sockets" => a.sockets = value("--sockets")?,
            "--bytes" => a.bytes = value("--bytes")?,
            "--rounds" => a.rounds = value("--rounds")?,
            "--threads" => a.threads = value("--threads")?,
            "--uring" => a.uring = true,
            "--json" => a.json = true,
            "--help" | "-h" => {
                return Err(
                    "usage: write_floor [--sockets N] [--bytes B] [--rounds K] [--threads T] [--uring] [--json]".into(),
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

/// One unmasked server-to-client text frame of `total` bytes (header included), its
/// payload a JSON string of the right length, as an event would be.
fn frame(total: usize) -> Vec<u8> {
    // RFC 6455 §5.2: FIN + text opcode, then a 7-bit, 16-bit or 64-bit length.
    let header = if total < 126 + 2 {
        2
    } else if total < 65536 + 4 {
        4
    } else {
        10
    };
    let len = total.saturating_sub(header).max(2);
    let mut f = vec![0x81];
    match header {
        2 => f.push(len as u8),
        4 => {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            f.push(127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    f.push(b'"');
    f.extend(std::iter::repeat_n(b'x', len - 2));
    f.push(b'"');
    f
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("write_floor: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> std::io::Result<()> {
    if args.threads > args.sockets {
        return Err(std::io::Error::other("--threads must not exceed --sockets"));
    }
    #[cfg(not(target_os = "linux"))]
    if args.uring {
        return Err(std::io::Error::other("--uring needs Linux"));
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut writers = Vec::with_capacity(args.sockets);
    let mut readers = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        let client = TcpStream::connect(addr)?;
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        socket2::SockRef::from(&server).set_send_buffer_size(64 * 1024)?;
        client.set_nonblocking(true)?;
        writers.push(server);
        readers.push(client);
    }
    let frame = Arc::new(frame(args.bytes));
    let total = args.rounds + WARMUP;
    // Contiguous shares, as a server would split its subscribers between threads.
    let mut shares: Vec<Vec<TcpStream>> = Vec::with_capacity(args.threads);
    let per = args.sockets.div_ceil(args.threads);
    let mut it = writers.into_iter();
    for _ in 0..args.threads {
        shares.push(it.by_ref().take(per).collect());
    }
    // Two barriers a round: all threads start together, and nobody drains before every
    // thread has written.
    let start = Arc::new(Barrier::new(args.threads + 1));
    let done = Arc::new(Barrier::new(args.threads + 1));
    let origin = Instant::now();
    let mut threads = Vec::with_capacity(args.threads);
    for share in shares {
        let (start, done, frame) = (start.clone(), done.clone(), frame.clone());
        let uring = args.uring;
        threads.push(std::thread::spawn(move || {
            write_rounds(share, &frame, total, uring, origin, &start, &done)
        }));
    }
    let mut sink = vec![0u8; 64 * 1024];
    let mut drained = Ok(());
    for _ in 0..total {
        start.wait();
        done.wait();
        if drained.is_ok() {
            drained = drain(&mut readers, frame.len(), &mut sink);
        }
    }
    let mut per_thread = Vec::with_capacity(threads.len());
    for t in threads {
        per_thread.push(
            t.join()
                .map_err(|_| std::io::Error::other("a writer thread panicked"))??,
        );
    }
    drained?;
    // A round lasts from the first thread's first write to the last thread's last.
    let mut rounds: Vec<Duration> = (WARMUP..total)
        .map(|r| {
            let first = per_thread.iter().map(|t| t[r].0).min().unwrap_or_default();
            let last = per_thread.iter().map(|t| t[r].1).max().unwrap_or_default();
            last.saturating_sub(first)
        })
        .collect();
    rounds.sort();
    let best = rounds.first().copied().unwrap_or(Duration::ZERO);
    let median = rounds
        .get(rounds.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let how = match (args.threads, args.uring) {
        (1, false) => "one thread".to_string(),
        (1, true) => "one thread, io_uring".to_string(),
        (t, false) => format!("{t} threads"),
        (t, true) => format!("{t} threads, io_uring"),
    };
    if args.json {
        println!(
            "{{\"sockets\":{},\"frame_bytes\":{},\"rounds\":{},\"threads\":{},\"uring\":{},\"best_us\":{:.1},\"median_us\":{:.1},\"per_socket_us\":{:.2}}}",
            args.sockets,
            frame.len(),
            rounds.len(),
            args.threads,
            args.uring,
            best.as_secs_f64() * 1e6,
            median.as_secs_f64() * 1e6,
            best.as_secs_f64() * 1e6 / args.sockets as f64,
        );
    } else {
        println!(
            "write floor: {} loopback sockets, {}-byte frame, {how}: best of {} {:.2} ms ({:.2} µs per socket), median {:.2} ms",
            args.sockets,
            frame.len(),
            rounds.len(),
            ms(best),
            best.as_secs_f64() * 1e6 / args.sockets as f64,
            ms(median),
        );
    }
    Ok(())
}

/// The first rounds warm caches and the socket buffers; they are not counted.
const WARMUP: usize = 3;

/// One thread's rounds: when each started and ended, measured from `origin`. It keeps
/// meeting the barriers after a failed write, so the others are not left waiting, and
/// reports the failure at the end.
fn write_rounds(
    mut share: Vec<TcpStream>,
    frame: &[u8],
    rounds: usize,
    uring: bool,
    origin: Instant,
    start: &Barrier,
    done: &Barrier,
) -> std::io::Result<Vec<(Duration, Duration)>> {
    #[cfg(target_os = "linux")]
    let mut ring = if uring {
        Some(uring::Ring::new()?)
    } else {
        None
    };
    #[cfg(not(target_os = "linux"))]
    let _ = uring;
    let mut times = Vec::with_capacity(rounds);
    let mut failed = None;
    for _ in 0..rounds {
        start.wait();
        let began = origin.elapsed();
        if failed.is_none() {
            #[cfg(target_os = "linux")]
            let wrote = match ring.as_mut() {
                Some(ring) => ring.send_all(&share, frame),
                None => write_each(&mut share, frame),
            };
            #[cfg(not(target_os = "linux"))]
            let wrote = write_each(&mut share, frame);
            failed = wrote.err();
        }
        times.push((began, origin.elapsed()));
        done.wait();
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(times),
    }
}

fn write_each(share: &mut [TcpStream], frame: &[u8]) -> std::io::Result<()> {
    for w in share {
        w.write_all(frame)?;
    }
    Ok(())
}

/// Reads one frame back from every socket, untimed.
fn drain(readers: &mut [TcpStream], len: usize, sink: &mut [u8]) -> std::io::Result<()> {
    for r in readers {
        let mut got = 0;
        while got < len {
            match r.read(sink) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Sends through io_uring: the kernel runs each socket's send inside the one
/// `io_uring_enter` that submits it, so the per-socket system call is gone and only
/// the TCP work (the sender's and, on loopback, the receiver's) is left.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod uring {
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;

    use io_uring::{IoUring, opcode, types};

    const ENTRIES: u32 = 256;

    pub struct Ring(IoUring);

    impl Ring {
        pub fn new() -> std::io::Result<Ring> {
            IoUring::new(ENTRIES).map(Ring)
        }

        pub fn send_all(&mut self, share: &[TcpStream], frame: &[u8]) -> std::io::Result<()> {
            let len = u32::try_from(frame.len()).map_err(std::io::Error::other)?;
            for chunk in share.chunks(ENTRIES as usize) {
                {
                    let mut sq = self.0.submission();
                    for s in chunk {
                        let send = opcode::Send::new(types::Fd(s.as_raw_fd()), frame.as_ptr(), len)
                            .build();
                        // SAFETY: the buffer and every socket outlive the operation: this
                        // function waits for all of the chunk's completions before it
                        // returns or touches the next chunk, and the ring has room for
                        // the whole chunk (ENTRIES).
                        unsafe { sq.push(&send) }
                            .map_err(|_| std::io::Error::other("submission queue full"))?;
                    }
                }
                self.0.submit_and_wait(chunk.len())?;
                for done in self.0.completion() {
                    match done.result() {
                        n if n < 0 => return Err(std::io::Error::from_raw_os_error(-n)),
                        n if n as u32 != len => {
                            return Err(std::io::Error::other(format!(
                                "short send: {n} of {len} bytes"
                            )));
                        }
                        _ => {}
                    }
                }
            }
            Ok(())
        }
    }
}
