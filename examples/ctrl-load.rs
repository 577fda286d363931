//! A pv-ctrl load client, and a do-nothing reference server to run it against, for
//! scripts/bench.
//!
//! ```sh
//! cargo build --release --example ctrl-load
//! # the client must run in the device's PID namespace: pv-ctrl names callers by SO_PEERCRED pid
//! nsenter -t DEVPID -p ctrl-load run SOCKET [--clients 10] [--seconds 5] [--keep-alive]
//!                                           [--path /containers] [--dump FILE]
//! ctrl-load serve SOCKET RESPONSE_FILE      # the floor: answers every request with the bytes
//!                                           # of RESPONSE_FILE (a --dump of the real answer)
//! ```
//! `run`: each client sends `GET <path>` in a loop for the given time, over a new connection
//! per request (as `pvcontrol` does: `Connection: close`) or over one kept-alive connection, and
//! checks that each answer is a complete `200`. Prints one line:
//! `requests N errors E seconds S rps R p50_us A p99_us B max_us C`.
//!
//! `serve`: one thread, a poll(2) loop over the listener and its connections -- the shape of
//! pantavisor's own event loop -- that reads a request head and writes the canned answer with
//! no parsing, routing, peer-credential lookup or JSON. What pantavisor takes on top of it is
//! the cost of being pv-ctrl rather than of the socket round trip.
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("serve") if args.len() == 3 => serve(&args[1], &args[2]),
        _ => {
            eprintln!("usage: ctrl-load run SOCKET [--clients N] [--seconds S] [--keep-alive] [--path P] [--dump FILE] | serve SOCKET RESPONSE_FILE");
            std::process::exit(2);
        }
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).map(String::as_str)
}

fn run(args: &[String]) {
    let socket = PathBuf::from(args.first().expect("SOCKET"));
    let clients: usize = flag(args, "--clients").map_or(10, |v| v.parse().expect("--clients"));
    let secs: f64 = flag(args, "--seconds").map_or(5.0, |v| v.parse().expect("--seconds"));
    let keep = args.iter().any(|a| a == "--keep-alive");
    let path = flag(args, "--path").unwrap_or("/containers").to_string();
    let close_req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let keep_req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");

    // one request first: it must work, and --dump keeps its bytes for the reference server
    let first = match one_close(&socket, close_req.as_bytes()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ctrl-load: first request to {}: {e}", socket.display());
            std::process::exit(1);
        }
    };
    if let Some(f) = flag(args, "--dump") {
        std::fs::write(f, &first).expect("--dump");
    }

    let t0 = Instant::now();
    let until = t0 + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let socket = socket.clone();
            let (close_req, keep_req) = (close_req.clone(), keep_req.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0u64;
                let mut conn: Option<UnixStream> = None;
                while Instant::now() < until {
                    let t = Instant::now();
                    let ok = if keep {
                        one_keep(&socket, &mut conn, keep_req.as_bytes())
                    } else {
                        one_close(&socket, close_req.as_bytes()).map(|_| ())
                    };
                    match ok {
                        Ok(()) => lat.push(t.elapsed().as_micros() as u32),
                        Err(_) => {
                            errors += 1;
                            conn = None;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in threads {
        let (l, e) = t.join().expect("client thread");
        lat.extend(l);
        errors += e;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> u32 {
        if lat.is_empty() {
            return 0;
        }
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        lat.get(i).copied().unwrap_or(0)
    };
    println!(
        "requests {} errors {errors} seconds {elapsed:.2} rps {:.0} p50_us {} p99_us {} max_us {}",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(0)
    );
    if errors > 0 || lat.is_empty() {
        std::process::exit(1);
    }
}

fn status_ok(resp: &[u8]) -> bool {
    resp.starts_with(b"HTTP/1.1 200 ") || resp.starts_with(b"HTTP/1.0 200 ")
}

/// A new connection, one request, the answer read to EOF.
fn one_close(socket: &PathBuf, req: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(req)?;
    let mut resp = Vec::with_capacity(4096);
    s.read_to_end(&mut resp)?;
    if !status_ok(&resp) || head_end(&resp).is_none() {
        return Err(std::io::Error::other("not a 200"));
    }
    Ok(resp)
}

/// One request on the kept-alive connection (opened when there is none); the answer is read
/// by its Content-Length.
fn one_keep(socket: &PathBuf, conn: &mut Option<UnixStream>, req: &[u8]) -> std::io::Result<()> {
    if conn.is_none() {
        let s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        *conn = Some(s);
    }
    let s = conn
        .as_mut()
        .ok_or_else(|| std::io::Error::other("no connection"))?;
    s.write_all(req)?;
    let mut resp = Vec::with_capacity(4096);
    let mut buf = [0u8; 16384];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("closed"));
        }
        resp.extend_from_slice(buf.get(..n).unwrap_or_default());
        if let Some(h) = head_end(&resp) {
            let len = content_length(resp.get(..h).unwrap_or_default())
                .ok_or_else(|| std::io::Error::other("no content-length"))?;
            if resp.len() >= h + len {
                if !status_ok(&resp) {
                    return Err(std::io::Error::other("not a 200"));
                }
                return Ok(());
            }
        }
    }
}

fn head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn content_length(head: &[u8]) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

/// The reference server: a single-threaded poll loop answering each request head with the
/// canned bytes (which carry their own Connection header; a `close` answer closes after it).
fn serve(socket: &str, response: &str) {
    let canned = std::fs::read(response).expect("RESPONSE_FILE");
    let close = String::from_utf8_lossy(&canned[..head_end(&canned).unwrap_or(canned.len())])
        .to_ascii_lowercase()
        .contains("connection: close");
    let keep_canned = if close {
        // the same answer for kept-alive connections: without the header (as pantavisor
        // answers them), every other byte the same
        String::from_utf8_lossy(&canned)
            .replacen("Connection: close\r\n", "", 1)
            .into_bytes()
    } else {
        canned.clone()
    };
    let _ = std::fs::remove_file(socket);
    let l = UnixListener::bind(socket).expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    struct C {
        s: UnixStream,
        inp: Vec<u8>,
    }
    let mut conns: Vec<C> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut fds: Vec<libc::pollfd> = std::iter::once(l.as_raw_fd())
            .chain(conns.iter().map(|c| c.s.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: fds is a valid array of pollfd of the given length.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            continue;
        }
        let mut dead = Vec::new();
        for (i, f) in fds.iter().enumerate().skip(1) {
            if f.revents == 0 {
                continue;
            }
            let Some(c) = conns.get_mut(i - 1) else {
                continue;
            };
            match c.s.read(&mut buf) {
                Ok(0) | Err(_) => dead.push(i - 1),
                Ok(n) => {
                    c.inp.extend_from_slice(buf.get(..n).unwrap_or_default());
                    while let Some(h) = head_end(&c.inp) {
                        let req_close = String::from_utf8_lossy(c.inp.get(..h).unwrap_or_default())
                            .to_ascii_lowercase()
                            .contains("connection: close");
                        c.inp.drain(..h);
                        let out = if req_close { &canned } else { &keep_canned };
                        // answers are small: a blocking write of them does not stall the loop
                        let _ = c.s.set_nonblocking(false);
                        let ok = c.s.write_all(out).is_ok();
                        let _ = c.s.set_nonblocking(true);
                        if req_close || !ok {
                            dead.push(i - 1);
                            break;
                        }
                    }
                }
            }
        }
        for i in dead.into_iter().rev() {
            conns.swap_remove(i);
        }
        if fds.first().is_some_and(|f| f.revents != 0) {
            while let Ok((s, _)) = l.accept() {
                let _ = s.set_nonblocking(true);
                conns.push(C { s, inp: Vec::new() });
            }
        }
    }
}
