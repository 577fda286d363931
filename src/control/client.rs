//! `pvcontrol`: the blocking pv-ctrl client (upstream's `pvcontrol` commands and exit codes).
use crate::json::ObjectWriter;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where pv-ctrl is looked for, in order: host, then the two container views.
pub const SOCKETS: [&str; 3] = [
    "/run/pantavisor/pv/pv-ctrl",
    "/pv/pv-ctrl",
    "/pantavisor/pv-ctrl",
];

/// Per read or write: a silent server fails the command instead of hanging it.
pub const TIMEOUT: Duration = Duration::from_secs(30);

const MAX_HEAD: u64 = 16 * 1024;

/// The first of `candidates` that is a socket.
pub fn find_socket(candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket()))
}

/// One request: `len` bytes of `body` are sent, the response body is copied to `out`.
/// Returns the status.
pub fn send(
    socket: &Path,
    method: &str,
    path: &str,
    body: &mut dyn Read,
    len: u64,
    out: &mut dyn Write,
    timeout: Duration,
) -> io::Result<u16> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let sent = s
        .write_all(head.as_bytes())
        .and_then(|_| copy_exact(&mut body.take(len), &mut s, len));
    // a server refusing the body answers and closes early: its answer still counts
    match read_response(&mut s, out) {
        Ok(status) => Ok(status),
        Err(e) => Err(sent.err().unwrap_or(e)),
    }
}

fn copy_exact(from: &mut dyn Read, to: &mut dyn Write, len: u64) -> io::Result<()> {
    let n = io::copy(from, to)?;
    if n != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("body ended after {n} of {len} bytes"),
        ));
    }
    Ok(())
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("pv-ctrl: {msg}"))
}

fn read_response(s: &mut UnixStream, out: &mut dyn Write) -> io::Result<u16> {
    let mut r = BufReader::new(s);
    loop {
        let mut head = Vec::new();
        let mut limited = (&mut r).take(MAX_HEAD);
        loop {
            let start = head.len();
            if limited.read_until(b'\n', &mut head)? == 0 {
                return Err(bad("response ended in its head"));
            }
            let line = head.get(start..).unwrap_or_default();
            if line == b"\r\n" || line == b"\n" {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.lines();
        let status = lines
            .next()
            .and_then(|l| l.strip_prefix("HTTP/1."))
            .and_then(|l| l.get(2..5))
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| bad("bad status line"))?;
        if (100..200).contains(&status) {
            continue;
        }
        let len = lines.find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<u64>().ok())?
        });
        match len {
            Some(len) => copy_exact(&mut (&mut r).take(len), out, len)?,
            None => {
                io::copy(&mut r, out)?;
            }
        }
        return Ok(status);
    }
}

/// One request with an in-memory body: (status, response body).
pub fn request(socket: &Path, method: &str, path: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut b = body;
    let status = send(
        socket,
        method,
        path,
        &mut b,
        body.len() as u64,
        &mut out,
        TIMEOUT,
    )?;
    Ok((status, out))
}

/// Percent-encodes a path segment (meta keys and names come from the user).
fn seg(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// A revision such as `locals/x`: each part encoded, slashes kept.
fn rev_path(rev: &str) -> String {
    rev.split('/').map(seg).collect::<Vec<_>>().join("/")
}

enum Body {
    None,
    Bytes(Vec<u8>),
    File(String),
    /// `objects put -SIZE`: SIZE bytes from stdin.
    Stdin(u64),
}

/// What a 422 means for the exit code.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Plain,
    Objects,
    Steps,
}

struct Call {
    method: &'static str,
    path: String,
    body: Body,
    kind: Kind,
}

fn call(method: &'static str, path: String, body: Body, kind: Kind) -> Option<Call> {
    Some(Call {
        method,
        path,
        body,
        kind,
    })
}

fn get(path: &str) -> Option<Call> {
    call("GET", path.to_string(), Body::None, Kind::Plain)
}

fn json2(k1: &str, v1: &str, k2: &str, v2: &str) -> Body {
    let mut w = ObjectWriter::new();
    w.str(k1, v1).str(k2, v2);
    Body::Bytes(w.finish().into_bytes())
}

fn command(op: &str, payload: &str) -> Option<Call> {
    let body = json2("op", op, "payload", payload);
    call("POST", "/commands".into(), body, Kind::Plain)
}

/// The command line after options, as one HTTP call.
fn parse(cmd: &[&str]) -> Option<Call> {
    let meta = |w: &str| {
        if w == "devmeta" {
            "/device-meta"
        } else {
            "/user-meta"
        }
    };
    match cmd {
        ["ls"] | ["containers", "ls"] => get("/containers"),
        ["containers", a @ ("start" | "stop" | "restart"), n] => {
            let mut w = ObjectWriter::new();
            w.str("action", a);
            let body = Body::Bytes(w.finish().into_bytes());
            call("PUT", format!("/containers/{}", seg(n)), body, Kind::Plain)
        }
        ["groups", "ls"] => get("/groups"),
        ["signal", t @ ("ready" | "alive")] => {
            let body = json2("type", t, "payload", "");
            call("POST", "/signal".into(), body, Kind::Plain)
        }
        ["cmd", "reboot"] => command("REBOOT_DEVICE", ""),
        ["cmd", "reboot", m] => command("REBOOT_DEVICE", m),
        ["cmd", "poweroff"] => command("POWEROFF_DEVICE", ""),
        ["cmd", "poweroff", m] => command("POWEROFF_DEVICE", m),
        ["cmd", "run", rev] => command("LOCAL_RUN", rev),
        ["cmd", "run-commit", rev] => command("LOCAL_RUN_COMMIT", rev),
        ["cmd", "make-factory"] => command("MAKE_FACTORY", ""),
        ["cmd", "make-factory", rev] => command("MAKE_FACTORY", rev),
        ["cmd", "run-gc"] => command("RUN_GC", ""),
        ["cmd", "enable-ssh"] => command("ENABLE_SSH", ""),
        ["cmd", "disable-ssh"] => command("DISABLE_SSH", ""),
        ["cmd", "go-remote"] => command("GO_REMOTE", ""),
        ["cmd", "unclaim"] => command("UNCLAIM", ""),
        ["cmd", "defer-reboot", t] => command("DEFER_REBOOT", t),
        [w @ ("devmeta" | "usrmeta"), "ls"] => get(meta(w)),
        [w @ ("devmeta" | "usrmeta"), "save", k, v] => {
            let body = Body::Bytes(v.as_bytes().to_vec());
            call("PUT", format!("{}/{}", meta(w), seg(k)), body, Kind::Plain)
        }
        [w @ ("devmeta" | "usrmeta"), "delete", k] => call(
            "DELETE",
            format!("{}/{}", meta(w), seg(k)),
            Body::None,
            Kind::Plain,
        ),
        ["buildinfo"] => get("/buildinfo"),
        ["config", "ls"] => get("/config"),
        ["conf", "ls"] => get("/config2"),
        ["storage", "gc"] => call("POST", "/storage/gc".into(), Body::None, Kind::Plain),
        ["objects", "ls"] => get("/objects"),
        ["objects", "get", sha] => call(
            "GET",
            format!("/objects/{}", seg(sha)),
            Body::None,
            Kind::Objects,
        ),
        ["objects", "put", src, sha] => {
            let body = match src.strip_prefix('-') {
                Some(size) => Body::Stdin(size.parse().ok()?),
                None => Body::File(src.to_string()),
            };
            call("PUT", format!("/objects/{}", seg(sha)), body, Kind::Objects)
        }
        ["steps", "ls"] => get("/steps"),
        ["steps", "get", rev] => call(
            "GET",
            format!("/steps/{}", rev_path(rev)),
            Body::None,
            Kind::Steps,
        ),
        ["steps", "show-progress", rev] => get(&format!("/steps/{}/progress", rev_path(rev))),
        ["steps", "put", file, rev] if rev.starts_with("locals/") => call(
            "PUT",
            format!("/steps/{}", rev_path(rev)),
            Body::File(file.to_string()),
            Kind::Steps,
        ),
        _ => None,
    }
}

const USAGE: &str = "usage: pvcontrol [-s SOCKET] [-m MSG] COMMAND\n  \
ls | containers ls|start|stop|restart <name> | groups ls | signal ready|alive\n  \
cmd reboot|poweroff [msg] | cmd run|run-commit <rev> | cmd make-factory [rev]\n  \
cmd run-gc|enable-ssh|disable-ssh|go-remote|unclaim | cmd defer-reboot <t>\n  \
devmeta|usrmeta ls|save <key> <value>|delete <key> | buildinfo | config ls | conf ls\n  \
storage gc | objects ls|get <sha>|put <file|-SIZE> <sha>\n  \
steps ls|get <rev>|show-progress <rev> | [-m msg] steps put <json> locals/<name>";

/// Exit status of a response (as upstream's pvcontrol): 0 OK, 48 no space, 60 bad object checksum,
/// 70 state verification failed, 255 anything else.
fn exit_code(status: u16, kind: Kind) -> i32 {
    match (status, kind) {
        (200..=299, _) => 0,
        (507, _) => 48,
        (422, Kind::Objects) => 60,
        (422, Kind::Steps) => 70,
        _ => 255,
    }
}

fn run_call(socket: &Path, c: &Call, out: &mut dyn Write) -> io::Result<u16> {
    match &c.body {
        Body::None => send(socket, c.method, &c.path, &mut io::empty(), 0, out, TIMEOUT),
        Body::Bytes(b) => {
            let mut r: &[u8] = b;
            send(
                socket,
                c.method,
                &c.path,
                &mut r,
                b.len() as u64,
                out,
                TIMEOUT,
            )
        }
        Body::File(f) => {
            let mut file =
                File::open(f).map_err(|e| io::Error::new(e.kind(), format!("{f}: {e}")))?;
            let len = file.metadata()?.len();
            send(socket, c.method, &c.path, &mut file, len, out, TIMEOUT)
        }
        Body::Stdin(n) => send(
            socket,
            c.method,
            &c.path,
            &mut io::stdin().lock(),
            *n,
            out,
            TIMEOUT,
        ),
    }
}

/// `pvcontrol ARGS...` (arguments after the program name); returns the exit status.
pub fn pvcontrol_main(args: &[String]) -> i32 {
    let mut socket = None;
    let mut msg = None;
    let mut rest = args;
    while let [opt, val, tail @ ..] = rest {
        match opt.as_str() {
            "-s" => socket = Some(PathBuf::from(val)),
            "-m" => msg = Some(val.clone()),
            _ => break,
        }
        rest = tail;
    }
    let cmd: Vec<&str> = rest.iter().map(String::as_str).collect();
    let Some(c) = parse(&cmd) else {
        eprintln!("{USAGE}");
        return 255;
    };
    let Some(socket) = socket.or_else(|| find_socket(&SOCKETS)) else {
        eprintln!(
            "pvcontrol: no pv-ctrl socket found (tried {})",
            SOCKETS.join(", ")
        );
        return 255;
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let code = match run_call(&socket, &c, &mut out) {
        Ok(status) => exit_code(status, c.kind),
        Err(e) => {
            eprintln!("pvcontrol: {} {}: {e}", c.method, c.path);
            255
        }
    };
    let _ = out.flush();
    match (code, msg, c.kind) {
        (0, Some(m), Kind::Steps) if c.method == "PUT" => {
            let cm = call(
                "PUT",
                format!("{}/commitmsg", c.path),
                Body::Bytes(m.into_bytes()),
                Kind::Steps,
            );
            match cm.map(|cm| run_call(&socket, &cm, &mut out)) {
                Some(Ok(status)) => exit_code(status, Kind::Steps),
                _ => 255,
            }
        }
        (code, _, _) => code,
    }
}
