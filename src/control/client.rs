//! `pvcontrol`: the pv-ctrl client, command for command and exit code for exit code as
//! upstream's `tools/pvcontrol`: usage on stdout (exit 1, or 0 for `--help`), a 200's body on
//! stdout, any other answer's body on stderr with 75 (503), 48/60/70 (the exact upstream error
//! bodies) or 255, and "got no response" (1) when no HTTP answer came.
use crate::json::ObjectWriter;
use crate::storage::objects::sha256_reader;
use crate::sys;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A line on stderr; unlike eprintln!, a closed stderr is no panic.
macro_rules! err_line {
    ($($t:tt)*) => {{
        let _ = writeln!(io::stderr(), $($t)*);
    }};
}

/// Text on stdout; unlike print!, a closed pipe (`pvcontrol -h | head -1`) is no panic.
fn put_stdout(text: &str) {
    let _ = io::stdout().write_all(text.as_bytes());
}

/// Where pv-ctrl is looked for, in order: host, then the two container views.
pub const SOCKETS: [&str; 3] = [
    "/run/pantavisor/pv/pv-ctrl",
    "/pv/pv-ctrl",
    "/pantavisor/pv-ctrl",
];

/// Per read or write: a silent server fails the command instead of hanging it.
const TIMEOUT: Duration = Duration::from_secs(30);

const MAX_HEAD: u64 = 16 * 1024;

/// The first of `candidates` that is a socket.
pub fn find_socket(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| is_socket(p))
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// One request: `len` bytes of `body` are sent, the response body is copied to `out`; with
/// `trace` the exchange's heads go to stderr as curl's `-v` shows them. Returns the status.
fn send(
    socket: &Path,
    method: &str,
    path: &str,
    body: &mut dyn Read,
    len: u64,
    out: &mut dyn Write,
    trace: bool,
) -> io::Result<u16> {
    let mut s = UnixStream::connect(socket).inspect_err(|e| {
        if trace {
            err_line!("* {}: {e}", socket.display());
        }
    })?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    if trace {
        err_line!("* Connected to {}", socket.display());
        for l in head.lines() {
            err_line!("> {l}");
        }
    }
    let sent = s
        .write_all(head.as_bytes())
        .and_then(|_| copy_exact(&mut body.take(len), &mut s, len));
    // a server refusing the body answers and closes early: its answer still counts
    match read_response(&mut s, out, trace) {
        Ok(status) => Ok(status),
        Err(e) => {
            let e = sent.err().unwrap_or(e);
            if trace {
                err_line!("* {method} {path}: {e}");
            }
            Err(e)
        }
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

fn read_response(s: &mut UnixStream, out: &mut dyn Write, trace: bool) -> io::Result<u16> {
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
        if trace {
            for l in text.lines() {
                err_line!("< {l}");
            }
        }
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

/// A status and the body, or no HTTP answer at all.
type Answer = io::Result<(u16, Vec<u8>)>;

/// One request with an in-memory body: (status, response body).
pub fn request(socket: &Path, method: &str, path: &str, body: &[u8]) -> Answer {
    exchange(socket, method, path, body, false)
}

fn exchange(socket: &Path, method: &str, path: &str, body: &[u8], trace: bool) -> Answer {
    let mut out = Vec::new();
    let mut b = body;
    let len = body.len() as u64;
    let status = send(socket, method, path, &mut b, len, &mut out, trace)?;
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

/// What one command line does.
#[derive(Debug, PartialEq, Eq)]
enum Op {
    /// One request, its answer shown by [`show`].
    Call {
        method: &'static str,
        path: String,
        body: Vec<u8>,
    },
    /// Stop, then start if the stop was answered 200 (upstream's `daemons restart`).
    DaemonRestart(String),
    /// `objects put <file|-SIZE> <sha>`.
    PutObject { src: String, sha: String },
    /// `objects get <sha>`: the raw body, whatever the status, exit 0 (as upstream).
    GetObject(String),
    /// `steps put <json> <rev>`, then the commit message of `-m` if the step was taken.
    PutStep { file: String, rev: String },
    /// `steps install <tgz> [rev]`.
    InstallStep { file: String, rev: String },
}

/// The command line after the options: an operation, or a usage text to print on stdout
/// (`Help`: exit 0, `Usage`: exit 1).
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Run(Op),
    Help(&'static str),
    Usage(&'static str),
}

fn call(method: &'static str, path: String, body: Vec<u8>) -> Op {
    Op::Call { method, path, body }
}

fn get(path: &str) -> Op {
    call("GET", path.to_string(), vec![])
}

fn json2(k1: &str, v1: &str, k2: &str, v2: &str) -> Vec<u8> {
    let mut w = ObjectWriter::new();
    w.str(k1, v1).str(k2, v2);
    w.finish().into_bytes()
}

fn command(op: &str, payload: &str) -> Op {
    call(
        "POST",
        "/commands".into(),
        json2("op", op, "payload", payload),
    )
}

fn action(what: &str, name: &str, act: &str) -> Op {
    let mut w = ObjectWriter::new();
    w.str("action", act);
    let body = w.finish().into_bytes();
    call("PUT", format!("/{what}/{}", seg(name)), body)
}

/// Upstream's `parse_args` dispatch: `words` is the command line after the options. An empty
/// word counts as a missing one (upstream tests `-z "$2"`); words past those a command reads
/// are ignored.
fn parse(words: &[&str]) -> Parsed {
    let a = |i: usize| words.get(i).copied().unwrap_or("");
    let some = |s: &str| !s.is_empty();
    let (usage, op) = match a(0) {
        "ls" | "list" => (USAGE_LS, a(1).is_empty().then(|| get("/containers"))),
        "containers" => (
            USAGE_CONTAINERS,
            match (a(1), a(2)) {
                ("ls" | "list", _) => Some(get("/containers")),
                (act @ ("start" | "stop" | "restart"), n) if some(n) => {
                    Some(action("containers", n, act))
                }
                _ => None,
            },
        ),
        "groups" => (USAGE_GROUPS, (a(1) == "ls").then(|| get("/groups"))),
        "signal" => (
            USAGE_SIGNAL,
            match a(1) {
                t @ ("ready" | "alive") => Some(call(
                    "POST",
                    "/signal".into(),
                    json2("type", t, "payload", ""),
                )),
                _ => None,
            },
        ),
        "cmd" | "command" | "commands" => (
            USAGE_COMMAND,
            match (a(1), a(2)) {
                ("run", rev) if some(rev) => Some(command("LOCAL_RUN", rev)),
                ("run-commit", rev) if some(rev) => Some(command("LOCAL_RUN_COMMIT", rev)),
                // the message is the next word; -m is not read here (as upstream)
                ("reboot", m) => Some(command("REBOOT_DEVICE", m)),
                ("poweroff", m) => Some(command("POWEROFF_DEVICE", m)),
                ("make-factory", rev) => Some(command("MAKE_FACTORY", rev)),
                ("run-gc", _) => Some(command("RUN_GC", "")),
                ("enable-ssh", _) => Some(command("ENABLE_SSH", "")),
                ("disable-ssh", _) => Some(command("DISABLE_SSH", "")),
                ("go-remote", _) => Some(command("GO_REMOTE", "")),
                ("unclaim", _) => Some(command("UNCLAIM", "")),
                ("defer-reboot", t) if some(t) => Some(command("DEFER_REBOOT", t)),
                _ => None,
            },
        ),
        w @ ("devmeta" | "usrmeta") => {
            let (usage, store) = match w {
                "devmeta" => (USAGE_DEVMETA, "/device-meta"),
                _ => (USAGE_USRMETA, "/user-meta"),
            };
            let save = a(1) == "save" || (w == "devmeta" && a(1) == "upload");
            let key = || format!("{store}/{}", seg(a(2)));
            let op = match a(1) {
                _ if save && some(a(2)) => Some(call("PUT", key(), a(3).as_bytes().to_vec())),
                "delete" if some(a(2)) => Some(call("DELETE", key(), vec![])),
                "ls" | "list" => Some(get(store)),
                _ => None,
            };
            (usage, op)
        }
        "buildinfo" => (USAGE_BUILDINFO, a(1).is_empty().then(|| get("/buildinfo"))),
        "storage" => (
            USAGE_STORAGE,
            (a(1) == "gc").then(|| call("POST", "/storage/gc".into(), vec![])),
        ),
        "objects" => (
            USAGE_OBJECTS,
            match (a(1), a(2), a(3)) {
                ("put", src, sha) if some(src) && some(sha) => Some(Op::PutObject {
                    src: src.into(),
                    sha: sha.into(),
                }),
                ("get", sha, _) if some(sha) => Some(Op::GetObject(sha.into())),
                ("ls" | "list", _, _) => Some(get("/objects")),
                _ => None,
            },
        ),
        "steps" => (
            USAGE_STEPS,
            match (a(1), a(2), a(3)) {
                ("install", file, rev) if some(file) => Some(Op::InstallStep {
                    file: file.into(),
                    rev: rev.into(),
                }),
                ("put", file, rev) if some(file) && some(rev) => Some(Op::PutStep {
                    file: file.into(),
                    rev: rev.into(),
                }),
                ("get", rev, _) if some(rev) => Some(get(&format!("/steps/{}", rev_path(rev)))),
                ("show-progress", rev, _) if some(rev) => {
                    Some(get(&format!("/steps/{}/progress", rev_path(rev))))
                }
                ("ls" | "list", _, _) => Some(get("/steps")),
                _ => None,
            },
        ),
        "config" => (USAGE_CONFIG, ls(a(1)).then(|| get("/config"))),
        "configuration" | "conf" => (USAGE_CONF, ls(a(1)).then(|| get("/config2"))),
        "graph" => (USAGE_GRAPH, ls(a(1)).then(|| get("/xconnect-graph"))),
        "daemons" => (
            USAGE_DAEMONS,
            match (a(1), a(2)) {
                ("ls" | "list", _) => Some(get("/daemons")),
                ("restart", n) if some(n) => Some(Op::DaemonRestart(n.into())),
                (act @ ("start" | "stop"), n) if some(n) => Some(action("daemons", n, act)),
                _ => None,
            },
        ),
        "--help" => return Parsed::Help(USAGE),
        _ => return Parsed::Usage(USAGE),
    };
    match op {
        Some(op) => Parsed::Run(op),
        None if a(1) == "--help" => Parsed::Help(usage),
        None => Parsed::Usage(usage),
    }
}

fn ls(w: &str) -> bool {
    matches!(w, "ls" | "list")
}

/// Exit status of an answer, as upstream's `show_output`: 0 only for 200; the three error
/// bodies retry loops and installers key on; 75 busy (503); 255 anything else.
fn exit_code(status: u16, content: &[u8]) -> i32 {
    if status == 200 {
        return 0;
    }
    match content {
        br#"{"Error":"Not enough disk space available"}"# => 48,
        br#"{"Error":"Object has bad checksum"}"# => 60,
        br#"{"Error":"State verification has failed"}"# => 70,
        _ if status == 503 => 75,
        _ => 255,
    }
}

/// The body as upstream's shell shows it: trailing newlines dropped (command substitution),
/// then one newline (`echo`).
fn content(body: &[u8]) -> &[u8] {
    let end = body.iter().rposition(|&b| b != b'\n').map_or(0, |i| i + 1);
    body.get(..end).unwrap_or_default()
}

/// Upstream's `show_output`: the exit status, the answer on `out` (200) or stderr.
fn show(answer: Answer, out: &mut dyn Write) -> i32 {
    let Ok((status, body)) = answer else {
        err_line!("ERROR: got no response");
        return 1;
    };
    let c = content(&body);
    let code = exit_code(status, c);
    let shown = if code == 0 {
        out.write_all(c).and_then(|_| out.write_all(b"\n"))
    } else {
        let mut e = io::stderr().lock();
        e.write_all(c).and_then(|_| e.write_all(b"\n"))
    };
    match shown {
        Ok(()) => code,
        Err(e) => {
            err_line!("pvcontrol: writing the answer: {e}");
            1
        }
    }
}

/// The options before the command (upstream's: `-h -v -s PATH -f PATH -m MSG`).
#[derive(Default)]
struct Opts {
    verbose: bool,
    socket: Option<String>,
    output: Option<String>,
    message: String,
}

/// Options, then the rest of the command line; None for `-h`.
fn options(args: &[String]) -> Option<(Opts, &[String])> {
    let mut o = Opts::default();
    let mut rest = args;
    while let [opt, tail @ ..] = rest {
        let val = || tail.first().cloned().unwrap_or_default();
        match opt.as_str() {
            "-h" => return None,
            "-v" => o.verbose = true,
            "-s" => o.socket = Some(val()),
            "-f" => o.output = Some(val()),
            "-m" => o.message = val(),
            _ => break,
        }
        rest = match opt.as_str() {
            "-v" => tail,
            _ => tail.get(1..).unwrap_or_default(),
        };
    }
    Some((o, rest))
}

/// `pvcontrol ARGS...` (arguments after the program name); returns the exit status.
pub fn pvcontrol_main(args: &[String]) -> i32 {
    let Some((opts, rest)) = options(args) else {
        put_stdout(USAGE);
        return 0;
    };
    let words: Vec<&str> = rest.iter().map(String::as_str).collect();
    let op = match parse(&words) {
        Parsed::Run(op) => op,
        Parsed::Help(text) => {
            put_stdout(text);
            return 0;
        }
        Parsed::Usage(text) => {
            put_stdout(text);
            return 1;
        }
    };
    let socket = match &opts.socket {
        Some(s) => PathBuf::from(s),
        None => find_socket(&SOCKETS).unwrap_or_else(|| PathBuf::from(SOCKETS[2])),
    };
    if !is_socket(&socket) {
        put_stdout(&format!("ERROR: {} not found\n", socket.display()));
        return 1;
    }
    let mut out: Box<dyn Write> = match &opts.output {
        Some(f) => match File::create(f) {
            Ok(file) => Box::new(file),
            Err(e) => {
                err_line!("pvcontrol: -f {f}: {e}");
                return 1;
            }
        },
        None => Box::new(io::stdout().lock()),
    };
    let c = Client {
        socket: &socket,
        trace: opts.verbose,
    };
    let code = c.run(&op, &opts.message, &mut out);
    match out.flush() {
        Ok(()) => code,
        Err(e) => {
            err_line!("pvcontrol: writing the answer: {e}");
            1
        }
    }
}

struct Client<'a> {
    socket: &'a Path,
    trace: bool,
}

impl Client<'_> {
    fn call(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        exchange(self.socket, method, path, body, self.trace)
    }

    /// PUT a file (or `-SIZE`: that many bytes of stdin) as the body; Err(message) names a
    /// source that cannot be read.
    fn upload(&self, path: &str, src: &str) -> Result<Answer, String> {
        let (mut body, len): (Box<dyn Read>, u64) = match src.strip_prefix('-') {
            Some(size) => match size.parse() {
                Ok(len) => (Box::new(io::stdin().lock()), len),
                Err(_) => return Err(format!("{src}: not -SIZE")),
            },
            None => match File::open(src).and_then(|f| Ok((f.metadata()?.len(), f))) {
                Ok((len, f)) => (Box::new(f), len),
                Err(e) => return Err(format!("{src}: {e}")),
            },
        };
        let mut out = Vec::new();
        let sent = send(
            self.socket,
            "PUT",
            path,
            &mut body,
            len,
            &mut out,
            self.trace,
        );
        Ok(sent.map(|status| (status, out)))
    }

    fn put_step(&self, file: &str, rev: &str, message: &str) -> Result<Answer, String> {
        let path = format!("/steps/{}", rev_path(rev));
        Ok(match self.upload(&path, file)? {
            Ok((200, _)) if !message.is_empty() => {
                self.call("PUT", &format!("{path}/commitmsg"), message.as_bytes())
            }
            a => a,
        })
    }

    fn run(&self, op: &Op, message: &str, out: &mut dyn Write) -> i32 {
        let answer = match op {
            Op::Call { method, path, body } => Ok(self.call(method, path, body)),
            Op::DaemonRestart(n) => {
                let path = format!("/daemons/{}", seg(n));
                Ok(match self.call("PUT", &path, br#"{"action":"stop"}"#) {
                    Ok((200, _)) => self.call("PUT", &path, br#"{"action":"start"}"#),
                    a => a,
                })
            }
            Op::PutObject { src, sha } => self.upload(&format!("/objects/{}", seg(sha)), src),
            Op::GetObject(sha) => {
                let path = format!("/objects/{}", seg(sha));
                let mut none = io::empty();
                if let Err(e) = send(self.socket, "GET", &path, &mut none, 0, out, false) {
                    err_line!("pvcontrol: GET {path}: {e}");
                }
                return 0;
            }
            Op::PutStep { file, rev } => self.put_step(file, rev, message),
            Op::InstallStep { file, rev } => return self.install(file, rev, message, out),
        };
        match answer {
            Ok(a) => show(a, out),
            Err(why) => {
                err_line!("pvcontrol: {why}");
                255
            }
        }
    }

    /// Upstream's `install_step`: unpack the tarball (`json` and `objects/`), upload the
    /// objects the device lacks and the step unless the device has it, print the revision
    /// (`locals/<sha256 of the tarball>` when none is given). As upstream, the status is 0
    /// once the tarball is unpacked, whatever the uploads were answered.
    fn install(&self, file: &str, rev: &str, message: &str, out: &mut dyn Write) -> i32 {
        // upstream's refusals go to stdout (or -f's file), exit 1
        let say = |out: &mut dyn Write, line: &str| {
            if let Err(e) = writeln!(out, "{line}") {
                err_line!("pvcontrol: writing the answer: {e}");
            }
            1
        };
        if !file.ends_with(".tgz") {
            return say(out, "ERROR: unkwnown file format");
        }
        let tmp = match TempDir::new() {
            Ok(t) => t,
            Err(e) => {
                err_line!("pvcontrol: {}: {e}", std::env::temp_dir().display());
                return 1;
            }
        };
        let tgz = std::path::absolute(file).unwrap_or_else(|_| PathBuf::from(file));
        // tar's complaints are its own (stderr); its status is not looked at, as upstream
        if let Err(e) = untar(&tgz, &tmp.0) {
            err_line!("pvcontrol: tar: {e}");
        }
        let (json, objects) = (tmp.0.join("json"), tmp.0.join("objects"));
        if !json.is_file() || !objects.is_dir() {
            return say(out, "ERROR: wrong contents of compressed step");
        }
        let rev = match rev {
            "" => match File::open(&tgz).and_then(|mut f| sha256_reader(&mut f)) {
                Ok(sha) => format!("locals/{sha}"),
                Err(e) => {
                    err_line!("pvcontrol: {file}: {e}");
                    return 1;
                }
            },
            r => r.to_string(),
        };
        let have = self.listed("/objects", "sha256");
        let mut names: Vec<String> = std::fs::read_dir(&objects)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        crate::sort(&mut names);
        for sha in names.iter().filter(|n| !have.contains(n)) {
            let src = objects.join(sha).display().to_string();
            let _ = self.upload(&format!("/objects/{}", seg(sha)), &src);
        }
        if !self.listed("/steps", "name").contains(&rev) {
            let _ = self.put_step(&json.display().to_string(), &rev, message);
        }
        let mut w = ObjectWriter::new();
        w.str("revision", &rev);
        match writeln!(out, "{}", w.finish()) {
            Ok(()) => 0,
            Err(e) => {
                err_line!("pvcontrol: writing the answer: {e}");
                1
            }
        }
    }

    /// The `key` strings of a GET's JSON array (empty when the answer is not one).
    fn listed(&self, path: &str, key: &str) -> Vec<String> {
        let Ok((200, body)) = self.call("GET", path, b"") else {
            return vec![];
        };
        let Ok(v) = crate::json::parse(&body, Default::default()) else {
            return vec![];
        };
        v.as_array()
            .unwrap_or_default()
            .iter()
            .filter_map(|e| Some(e.get(key)?.as_str()?.to_string()))
            .collect()
    }
}

/// `tar zxf TGZ -C DIR` with the `tar` of PATH, as upstream's script runs it. A fork and exec
/// through `sys`: std::process would cost ~37 KB of the binary for this one use.
fn untar(tgz: &Path, dir: &Path) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let tar = std::env::split_paths(&path)
        .map(|d| d.join("tar"))
        .find(|p| p.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "not found in PATH"))?;
    let c = |b: &[u8]| {
        CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
    };
    let exe = c(tar.as_os_str().as_bytes())?;
    let argv = [
        exe.clone(),
        c(b"zxf")?,
        c(tgz.as_os_str().as_bytes())?,
        c(b"-C")?,
        c(dir.as_os_str().as_bytes())?,
    ];
    // tar needs no more of the environment than PATH (for gzip, where it calls one)
    let env = c(&[b"PATH=", path.as_bytes()].concat())?;
    let (argv, envp) = (
        sys::CStrArray::new(argv.to_vec()),
        sys::CStrArray::new(vec![env]),
    );
    let (pid, _) = sys::clone_process(0, None, true, &mut || {
        let _ = sys::execve(&exe, &argv, &envp);
        127
    })?;
    sys::waitpid(pid, false).map(|_| ())
}

/// `steps install`'s unpack directory (upstream's `mktemp -d -t pvr.XXXXXXXXXX`), removed
/// when done.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> io::Result<TempDir> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
        for i in 0..100u32 {
            let p = base.join(format!("pvr.{}{:09}{i}", std::process::id(), nanos));
            match std::fs::create_dir(&p) {
                Ok(()) => return Ok(TempDir(p)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const USAGE: &str = "\
Usage: pvcontrol [options] <ls|containers|groups|signal|cmd|usrmeta|devmeta|buildinfo|objects|steps|conf|graph|daemons|storage> [arguments]\n\
Control Pantavisor from your container\n\
options:\n\
\x20      -h           show help\n\
\x20      -v           verbose\n\
\x20      -s <path>    send queries to PATH socket (default: /pantavisor/pv-ctrl)\n\
\x20      -f <path>    send output to file instead of stdout\n\
\x20      -m <message> commit message (only used for steps install and steps put)\n";

const USAGE_LS: &str = "\
Usage: pvcontrol ls\n\
List all containers existing in the current revision\n";

const USAGE_GROUPS: &str = "\
Usage: pvcontrol groups <ls>\n\
Container groups related operations\n\
\x20      pvcontrol groups ls - lists groups of containers\n";

const USAGE_SIGNAL: &str = "\
Usage: pvcontrol signal <ready|alive>\n\
Send status signals to Pantavisor\n\
\x20      pvcontrol groups ready - container is ready\n\
\x20      pvcontrol groups alive - container is alive\n";

const USAGE_COMMAND: &str = "\
Usage: pvcontrol cmd <run|poweroff|reboot|run-gc|make-factory|enable-ssh|disable-ssh|go-remote|unclaim> [arguments]\n\
Send command to the Pantavisor state machine\n\
\x20      pvcontrol cmd run <locals/revision|revision> \t\t\t- runs an installed step\n\
\x20      pvcontrol cmd run-commit <locals/revision|revision>\t\t- runs and commit an installed step\n\
\x20      pvcontrol cmd poweroff [message]             \t\t\t- leniently powers device off\n\
\x20      pvcontrol cmd reboot [message]               \t\t\t- leniently reboots device\n\
\x20      pvcontrol cmd run-gc                         \t\t\t- run garbage collector\n\
\x20      pvcontrol cmd make-factory [revision]        \t\t\t- make revision the factory revision if device is not yet claimed. It will use current revision if not set\n\
\x20      pvcontrol cmd enable-ssh                     \t\t\t- start SSH server ignoring config until reboot\n\
\x20      pvcontrol cmd disable-ssh                    \t\t\t- stops SSH server ignoring config until reboot\n\
\x20      pvcontrol cmd go-remote                      \t\t\t- go remote when running on a locals/ revision if allowed by config\n\
\x20      pvcontrol cmd unclaim                        \t\t\t- remove Pantacor Hub credentials and make the device claimable again\n\
\x20      pvcontrol cmd defer-reboot [new_timeout]     \t\t\t- when debug shell is enabled and a reboot is issue, it will defer reboot to a new timeout\n";

const USAGE_DEVMETA: &str = "\
Usage: pvcontrol devmeta <save|delete|ls> [arguments]\n\
Device metadata related operations\n\
\x20      pvcontrol devmeta save <key> [value] - creates or updates key-value pair in device metadata list\n\
\x20      pvcontrol devmeta delete <key>       - deletes key-value pair from device metadata list\n\
\x20      pvcontrol devmeta ls                 - lists stored device metadata\n";

const USAGE_USRMETA: &str = "\
Usage: pvcontrol usrmeta <save|delete|ls> [arguments]\n\
User metadata related operations\n\
\x20      pvcontrol usrmeta save <key> [value] - creates or updates key-value pair in user metadata list\n\
\x20      pvcontrol usrmeta delete <key>       - deletes key-value pair from user metadata list\n\
\x20      pvcontrol usrmeta ls                 - lists stored user metadata\n";

const USAGE_BUILDINFO: &str = "\
Usage: pvcontrol buildinfo\n\
Dump Pantavisor build info\n";

const USAGE_STORAGE: &str = "\
Usage: pvcontrol storage <gc>\n\
Storage related operations\n\
\x20      pvcontrol storage gc - run garbage collector synchronously and report reclaimed bytes\n";

const USAGE_OBJECTS: &str = "\
Usage: pvcontrol objects <put|get|ls> [path] <sha>\n\
Object related operations\n\
\x20      pvcontrol objects put [path] <sha> - puts object with a given sha256\n\
\x20      pvcontrol objects get <sha>        - gets object with a fiven sha256\n\
\x20      pvcontrol objects ls               - lists stored objects\n";

const USAGE_STEPS: &str = "\
Usage: pvcontrol steps <install|put|get|show-progress|ls> [path] <[remotes|locals]/branch/rev>\n\
Step related operations\n\
\x20      pvcontrol steps install <path> locals/<revision>                 - installs a .tgz compressed tarball step and returns generated name if not specified\n\
\x20      pvcontrol steps put <path> locals/<revision>                     - creates step and puts state json in a given step\n\
\x20      pvcontrol steps get <locals/revision|revision|current>           - returns state json from a given step\n\
\x20      pvcontrol steps show-progress <locals/revision|revision|current> - returns update progress json from a given step\n\
\x20      pvcontrol steps ls                                               - lists steps from device\n";

const USAGE_GRAPH: &str = "\
Usage: pvcontrol graph <ls>\n\
xconnect service mesh graph operations\n\
\x20      pvcontrol graph ls - show current xconnect graph\n";

const USAGE_CONTAINERS: &str = "\
Usage: pvcontrol containers <ls|start|stop|restart> [arguments]\n\
Container lifecycle operations\n\
\x20      pvcontrol containers ls               - list all containers and their status\n\
\x20      pvcontrol containers start <name>     - start a stopped container\n\
\x20      pvcontrol containers stop <name>      - stop a running container\n\
\x20      pvcontrol containers restart <name>   - restart a container\n";

const USAGE_DAEMONS: &str = "\
Usage: pvcontrol daemons <ls|start|stop|restart> [arguments]\n\
Daemon lifecycle operations\n\
\x20      pvcontrol daemons ls             - list all daemons and their status\n\
\x20      pvcontrol daemons start <name>   - start a daemon\n\
\x20      pvcontrol daemons stop <name>    - stop a daemon\n\
\x20      pvcontrol daemons restart <name> - restart a daemon\n";

const USAGE_CONFIG: &str = "\
Usage: pvcontrol config <ls>\n\
Legacy configuration related operations\n\
\x20      pvcontrol config ls - lists legacy configuration\n";

const USAGE_CONF: &str = "\
Usage: pvcontrol <configuration|conf> <ls>\n\
Configuration related operations\n\
\x20      pvcontrol conf ls - lists current configuration\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// A command line written with `|` between words (a word may hold spaces).
    fn words(line: &str) -> Vec<&str> {
        line.split('|').filter(|w| !w.is_empty()).collect()
    }

    fn run(line: &str) -> Op {
        match parse(&words(line)) {
            Parsed::Run(op) => op,
            p => panic!("{line}: {p:?}"),
        }
    }

    /// Every command upstream's dispatch knows, aliases included, and the request it makes
    /// ("METHOD path", body).
    #[test]
    fn every_upstream_command_maps_to_its_request() {
        let (start, stop) = (r#"{"action":"start"}"#, r#"{"action":"stop"}"#);
        let cmd = |op: &str, p: &str| format!(r#"{{"op":"{op}","payload":"{p}"}}"#);
        let cases: &[(&str, &str, String)] = &[
            ("ls", "GET /containers", "".into()),
            ("list", "GET /containers", "".into()),
            ("containers|ls", "GET /containers", "".into()),
            ("containers|list", "GET /containers", "".into()),
            (
                "containers|start|a b",
                "PUT /containers/a%20b",
                start.into(),
            ),
            ("containers|stop|a", "PUT /containers/a", stop.into()),
            (
                "containers|restart|a",
                "PUT /containers/a",
                r#"{"action":"restart"}"#.into(),
            ),
            ("groups|ls|extra", "GET /groups", "".into()),
            (
                "signal|ready",
                "POST /signal",
                r#"{"type":"ready","payload":""}"#.into(),
            ),
            (
                "signal|alive",
                "POST /signal",
                r#"{"type":"alive","payload":""}"#.into(),
            ),
            (
                "cmd|run|locals/x",
                "POST /commands",
                cmd("LOCAL_RUN", "locals/x"),
            ),
            (
                "command|run-commit|2",
                "POST /commands",
                cmd("LOCAL_RUN_COMMIT", "2"),
            ),
            (
                "commands|reboot",
                "POST /commands",
                cmd("REBOOT_DEVICE", ""),
            ),
            (
                "cmd|reboot|say \"bye\"",
                "POST /commands",
                cmd("REBOOT_DEVICE", r#"say \"bye\""#),
            ),
            (
                "cmd|poweroff|m",
                "POST /commands",
                cmd("POWEROFF_DEVICE", "m"),
            ),
            (
                "cmd|make-factory",
                "POST /commands",
                cmd("MAKE_FACTORY", ""),
            ),
            (
                "cmd|make-factory|3",
                "POST /commands",
                cmd("MAKE_FACTORY", "3"),
            ),
            ("cmd|run-gc|x", "POST /commands", cmd("RUN_GC", "")),
            ("cmd|enable-ssh", "POST /commands", cmd("ENABLE_SSH", "")),
            ("cmd|disable-ssh", "POST /commands", cmd("DISABLE_SSH", "")),
            ("cmd|go-remote", "POST /commands", cmd("GO_REMOTE", "")),
            ("cmd|unclaim", "POST /commands", cmd("UNCLAIM", "")),
            (
                "cmd|defer-reboot|60",
                "POST /commands",
                cmd("DEFER_REBOOT", "60"),
            ),
            ("devmeta|save|k|v", "PUT /device-meta/k", "v".into()),
            ("devmeta|upload|k|v", "PUT /device-meta/k", "v".into()),
            ("devmeta|save|k", "PUT /device-meta/k", "".into()),
            ("devmeta|delete|k", "DELETE /device-meta/k", "".into()),
            ("devmeta|ls", "GET /device-meta", "".into()),
            ("devmeta|list", "GET /device-meta", "".into()),
            (
                "usrmeta|save|pvr-sdk.a|{}",
                "PUT /user-meta/pvr-sdk.a",
                "{}".into(),
            ),
            ("usrmeta|save|k", "PUT /user-meta/k", "".into()),
            ("usrmeta|delete|k", "DELETE /user-meta/k", "".into()),
            ("usrmeta|list", "GET /user-meta", "".into()),
            ("buildinfo", "GET /buildinfo", "".into()),
            ("storage|gc", "POST /storage/gc", "".into()),
            ("objects|ls", "GET /objects", "".into()),
            ("objects|list", "GET /objects", "".into()),
            ("steps|get|locals/a b", "GET /steps/locals/a%20b", "".into()),
            ("steps|get|current", "GET /steps/current", "".into()),
            ("steps|show-progress|1", "GET /steps/1/progress", "".into()),
            ("steps|ls", "GET /steps", "".into()),
            ("steps|list", "GET /steps", "".into()),
            ("config|ls", "GET /config", "".into()),
            ("config|list", "GET /config", "".into()),
            ("conf|ls", "GET /config2", "".into()),
            ("configuration|list", "GET /config2", "".into()),
            ("graph|ls", "GET /xconnect-graph", "".into()),
            ("graph|list", "GET /xconnect-graph", "".into()),
            ("daemons|ls", "GET /daemons", "".into()),
            ("daemons|list", "GET /daemons", "".into()),
            ("daemons|start|d", "PUT /daemons/d", start.into()),
            ("daemons|stop|d", "PUT /daemons/d", stop.into()),
        ];
        for (line, request, body) in cases {
            let Op::Call {
                method,
                path,
                body: sent,
            } = run(line)
            else {
                panic!("{line}: not one request");
            };
            let sent = String::from_utf8(sent).unwrap();
            assert_eq!(
                (format!("{method} {path}"), &sent),
                (request.to_string(), body),
                "{line}"
            );
        }
        let s = |x: &str| x.to_string();
        assert_eq!(run("daemons|restart|d"), Op::DaemonRestart(s("d")));
        assert_eq!(
            run("objects|put|-12|ab"),
            Op::PutObject {
                src: s("-12"),
                sha: s("ab")
            }
        );
        assert_eq!(run("objects|get|ab"), Op::GetObject(s("ab")));
        // no locals/ check: the device answers a bad name (as upstream)
        assert_eq!(
            run("steps|put|j|x"),
            Op::PutStep {
                file: s("j"),
                rev: s("x")
            }
        );
        let install = |rev: &str| Op::InstallStep {
            file: s("s.tgz"),
            rev: s(rev),
        };
        assert_eq!(run("steps|install|s.tgz"), install(""));
        assert_eq!(run("steps|install|s.tgz|locals/s"), install("locals/s"));
    }

    /// A command line upstream refuses prints the command's usage (exit 1); `--help` prints
    /// it and succeeds; missing and empty words are the same.
    #[test]
    fn usage_and_help_as_upstream() {
        use Parsed::{Help, Usage};
        let cases: &[(&str, Parsed)] = &[
            ("", Usage(USAGE)),
            ("frobnicate", Usage(USAGE)),
            ("--help", Help(USAGE)),
            ("ls|x", Usage(USAGE_LS)),
            ("ls|--help", Help(USAGE_LS)),
            ("groups", Usage(USAGE_GROUPS)),
            ("groups|list", Usage(USAGE_GROUPS)),
            ("signal|--help", Help(USAGE_SIGNAL)),
            ("signal|go", Usage(USAGE_SIGNAL)),
            ("cmd|run", Usage(USAGE_COMMAND)),
            ("cmd|defer-reboot", Usage(USAGE_COMMAND)),
            ("commands|--help", Help(USAGE_COMMAND)),
            ("devmeta|save", Usage(USAGE_DEVMETA)),
            ("devmeta|delete", Usage(USAGE_DEVMETA)),
            ("usrmeta|upload|k|v", Usage(USAGE_USRMETA)),
            ("usrmeta|--help", Help(USAGE_USRMETA)),
            ("buildinfo|x", Usage(USAGE_BUILDINFO)),
            ("storage", Usage(USAGE_STORAGE)),
            ("objects|put|f", Usage(USAGE_OBJECTS)),
            ("objects|get", Usage(USAGE_OBJECTS)),
            ("steps|install", Usage(USAGE_STEPS)),
            ("steps|put|f", Usage(USAGE_STEPS)),
            ("steps|--help", Help(USAGE_STEPS)),
            ("config", Usage(USAGE_CONFIG)),
            ("conf|x", Usage(USAGE_CONF)),
            ("graph", Usage(USAGE_GRAPH)),
            ("daemons|restart", Usage(USAGE_DAEMONS)),
            ("containers|start", Usage(USAGE_CONTAINERS)),
            ("containers|--help", Help(USAGE_CONTAINERS)),
        ];
        for (line, want) in cases {
            assert_eq!(&parse(&words(line)), want, "{line}");
        }
        // an empty word is a missing one (upstream tests `-z "$2"`)
        assert_eq!(parse(&["cmd", "run", ""]), Usage(USAGE_COMMAND));
    }

    #[test]
    fn exit_codes_follow_status_and_exact_error_bodies() {
        let cases: &[(u16, &str, i32)] = &[
            (200, "", 0),
            (200, r#"{"Error":"Object has bad checksum"}"#, 0),
            // only 200 is success: a 204 (UNCLAIM when unclaimed) is not
            (204, "", 255),
            (
                503,
                r#"{"Error":"A command is already in progress. Try again"}"#,
                75,
            ),
            (507, r#"{"Error":"Not enough disk space available"}"#, 48),
            (507, r#"{"Error":"no space"}"#, 255),
            (422, r#"{"Error":"Object has bad checksum"}"#, 60),
            (422, r#"{"Error":"State verification has failed"}"#, 70),
            (422, r#"{"Error":"Parser: State JSON has bad format"}"#, 255),
            (503, r#"{"Error":"Not enough disk space available"}"#, 48),
            (
                403,
                r#"{"Error":"Request not sent from a mgmt platform"}"#,
                255,
            ),
        ];
        for (status, body, code) in cases {
            assert_eq!(
                exit_code(*status, body.as_bytes()),
                *code,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn content_drops_trailing_newlines_only() {
        assert_eq!(content(b"a\n\n"), b"a");
        assert_eq!(content(b"\n a \nb"), b"\n a \nb");
        assert_eq!(content(b"\n\n"), b"");
        assert_eq!(content(b""), b"");
    }

    #[test]
    fn options_before_the_command() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let args = v(&["-v", "-s", "/s", "-f", "/o", "-m", "hi", "steps", "-m", "x"]);
        let (o, rest) = options(&args).unwrap();
        assert!(o.verbose);
        assert_eq!(
            (o.socket.as_deref(), o.output.as_deref(), o.message.as_str()),
            (Some("/s"), Some("/o"), "hi")
        );
        assert_eq!(rest, &args[7..]);
        assert!(options(&v(&["-s", "/s", "-h", "ls"])).is_none());
        let args = v(&["-s"]);
        let (o, rest) = options(&args).unwrap();
        assert_eq!((o.socket.as_deref(), rest.len()), (Some(""), 0));
    }
}
