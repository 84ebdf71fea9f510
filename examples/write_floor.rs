//! The write floor of a WebSocket fan-out on this machine: one thread writing one
//! complete, unmasked text frame to each of N loopback TCP sockets, best of K rounds.
//!
//! No server does less per subscriber than one `write(2)` of the shared frame, and on
//! loopback that call also runs the receiver's TCP input, so this is the figure the
//! daemon's fan-out spread is compared with (issue 12, `scripts/bench fanout`). The
//! sockets are set up like the daemon's (`TCP_NODELAY`, a 64 KiB send buffer); nobody
//! reads during a round, and everything is drained between rounds, untimed.
//!
//! ```text
//! cargo run --release --example write_floor -- [--sockets N] [--bytes B] [--rounds K] [--json]
//! ```
//!
//! Prints the best and the median round (the time from the first write's start to the
//! last write's end), and with `--json` one JSON object instead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

struct Args {
    sockets: usize,
    bytes: usize,
    rounds: usize,
    json: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sockets: 1000,
        bytes: 284,
        rounds: 50,
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
            "--json" => a.json = true,
            "--help" | "-h" => {
                return Err(
                    "usage: write_floor [--sockets N] [--bytes B] [--rounds K] [--json]".into(),
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
    let frame = frame(args.bytes);
    let mut rounds = Vec::with_capacity(args.rounds);
    let mut sink = vec![0u8; 64 * 1024];
    for _ in 0..args.rounds + 3 {
        let t0 = Instant::now();
        for w in &mut writers {
            w.write_all(&frame)?;
        }
        rounds.push(t0.elapsed());
        for r in &mut readers {
            let mut got = 0;
            while got < frame.len() {
                match r.read(&mut sink) {
                    Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::yield_now()
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    // The first rounds warm caches and the socket buffers.
    let mut rounds = rounds.split_off(3);
    rounds.sort();
    let best = rounds.first().copied().unwrap_or(Duration::ZERO);
    let median = rounds
        .get(rounds.len() / 2)
        .copied()
        .unwrap_or(Duration::ZERO);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    if args.json {
        println!(
            "{{\"sockets\":{},\"frame_bytes\":{},\"rounds\":{},\"best_us\":{:.1},\"median_us\":{:.1},\"per_socket_us\":{:.2}}}",
            args.sockets,
            frame.len(),
            rounds.len(),
            best.as_secs_f64() * 1e6,
            median.as_secs_f64() * 1e6,
            best.as_secs_f64() * 1e6 / args.sockets as f64,
        );
    } else {
        println!(
            "write floor: {} loopback sockets, {}-byte frame, one thread: best of {} {:.2} ms ({:.2} µs per socket), median {:.2} ms",
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
