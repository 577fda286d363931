//! pv-ctrl transport: a real server on a real Unix socket, its loop on a thread, real clients.
use pantavisor::control::client::{self, pvcontrol_main};
use pantavisor::control::{
    container_of_cgroup, BodySink, Limits, Method, Plan, Request, Response, Router, Server, HOST,
};
use pantavisor::event_loop::EventLoop;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Seen {
    sink: Vec<u8>,
    sink_chunks: usize,
    /// Every request finished by the router: (method, path, body).
    requests: Vec<(Method, String, Vec<u8>)>,
}

struct TestRouter {
    seen: Arc<Mutex<Seen>>,
    /// When set, every request gets this answer (pvcontrol tests).
    canned: Arc<Mutex<Option<(u16, String)>>>,
}

struct Sink(Arc<Mutex<Seen>>);

impl BodySink for Sink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Response> {
        let mut s = self.0.lock().unwrap();
        s.sink.extend_from_slice(chunk);
        s.sink_chunks += 1;
        Ok(())
    }
    fn finish(self: Box<Self>) -> Response {
        let n = self.0.lock().unwrap().sink.len();
        Response::json(200, format!("{{\"received\":{n}}}"))
    }
}

impl Router for TestRouter {
    fn head(&mut self, req: &Request) -> Plan {
        if self.canned.lock().unwrap().is_some() {
            return Plan::Buffer(1 << 20);
        }
        let segs: Vec<&str> = req.head.segments.iter().map(String::as_str).collect();
        match (req.head.method, segs.as_slice()) {
            (Method::Get, ["hello"]) => Plan::Reply(Response::json(
                200,
                format!("{{\"caller\":\"{}\"}}", req.caller.name),
            )),
            (Method::Put, ["sink"]) => Plan::Stream(Box::new(Sink(self.seen.clone())), 1 << 30),
            (Method::Put, ["buf"]) => Plan::Buffer(16),
            _ => Plan::Reply(Response::error(
                400,
                &format!("unknown endpoint: {}", req.head.path),
            )),
        }
    }
    fn finish(&mut self, req: &Request, body: Vec<u8>) -> Response {
        let mut seen = self.seen.lock().unwrap();
        seen.requests
            .push((req.head.method, req.head.path.clone(), body.clone()));
        match &*self.canned.lock().unwrap() {
            Some((status, body)) if *status < 300 => Response::json(*status, body.clone()),
            Some((status, msg)) => Response::error(*status, msg),
            None => Response::new(200, "application/octet-stream", body),
        }
    }
}

struct Running {
    dir: PathBuf,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    seen: Arc<Mutex<Seen>>,
    canned: Arc<Mutex<Option<(u16, String)>>>,
    conns: Arc<AtomicUsize>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn start(limits: Limits) -> Running {
    let dir = std::env::temp_dir().join(format!(
        "pvctrl-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("pv-ctrl");
    // a stale socket file from an earlier run is replaced
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let canned = Arc::new(Mutex::new(None));
    let conns = Arc::new(AtomicUsize::new(0));
    let mut router = TestRouter {
        seen: seen.clone(),
        canned: canned.clone(),
    };
    let (st, cn, p) = (stop.clone(), conns.clone(), path.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    // the server is not Send (the device never moves it): it lives on its loop's thread
    let thread = thread::spawn(move || {
        let mut server = Server::bind_with(&p, limits).unwrap();
        tx.send(()).unwrap();
        let mut lp = EventLoop::new(&[]).unwrap();
        server.register(&mut lp, 1000);
        let mut wakes = Vec::new();
        while !st.load(Ordering::SeqCst) {
            lp.wait(&mut wakes, Some(20)).unwrap();
            for w in wakes.drain(..) {
                assert!(server.handle(&mut lp, w, &mut router), "{w:?}");
            }
            cn.store(server.connections(), Ordering::SeqCst);
        }
    });
    rx.recv().unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o666);
    Running {
        dir,
        path,
        stop,
        thread: Some(thread),
        seen,
        canned,
        conns,
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !thread::panicking() {
                r.unwrap();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `req`, reads until the server closes.
fn raw(path: &Path, req: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // a server refusing the connection (503 at the limit) may answer and close before the
    // request is written: the write may fail with EPIPE, the answer is still there to read
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn expected_caller() -> String {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    container_of_cgroup(&own).unwrap_or(HOST).to_string()
}

#[test]
fn get_put_streamed_keepalive_and_errors() {
    let t0 = Instant::now();
    let srv = start(Limits::default());
    // caller identity of this (host) process
    let (status, body) = client::request(&srv.path, "GET", "/hello", b"").unwrap();
    assert_eq!(status, 200);
    let want = format!("{{\"caller\":\"{}\"}}", expected_caller());
    assert_eq!(String::from_utf8(body).unwrap(), want);
    assert_eq!(expected_caller(), "_pv_", "the test runs in a host cgroup");

    // a 3 MiB PUT written in 64 KiB pieces reaches the sink in many chunks, none lost
    let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let mut s = UnixStream::connect(&srv.path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let head = format!(
        "PUT /sink HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        data.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    for piece in data.chunks(64 << 10) {
        s.write_all(piece).unwrap();
    }
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(
        out.ends_with(&format!("{{\"received\":{}}}", data.len())),
        "{out}"
    );
    {
        let seen = srv.seen.lock().unwrap();
        assert!(seen.sink == data, "the sink saw other bytes");
        assert!(seen.sink_chunks > 10, "{} chunks", seen.sink_chunks);
    }

    // keep-alive and pipelining: three requests in one write, three answers, in order
    let out = raw(
        &srv.path,
        b"GET /hello HTTP/1.1\r\n\r\nPUT /buf HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let a = out.find("{\"caller\"").unwrap();
    let b = out.find("\r\n\r\nabc").unwrap();
    let c = out.find("unknown endpoint: /nope").unwrap();
    assert!(a < b && b < c, "{out}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 3);

    // the body limit of the route: 413 and close
    let out = raw(
        &srv.path,
        b"PUT /buf HTTP/1.1\r\nContent-Length: 17\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    // after an error the connection closes even with keep-alive
    let out = raw(&srv.path, b"BLAH\r\n\r\nGET /hello HTTP/1.1\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert!(
        out.ends_with("{\"Error\":\"Unsupported protocol\"}"),
        "{out}"
    );
    let out = raw(
        &srv.path,
        b"PUT /sink HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert!(out.starts_with("HTTP/1.1 411 "), "{out}");

    // Expect: 100-continue is answered before the body is sent
    let mut s = UnixStream::connect(&srv.path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PUT /buf HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut cont = [0u8; 25];
    s.read_exact(&mut cont).unwrap();
    assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"ok").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 200 OK") && out.ends_with("\r\n\r\nok"),
        "{out}"
    );
    eprintln!("get_put_streamed_keepalive_and_errors: {:?}", t0.elapsed());
}

#[test]
fn hundred_concurrent_clients_all_answered() {
    let t0 = Instant::now();
    let srv = start(Limits {
        max_conns: 128,
        ..Limits::default()
    });
    let barrier = Arc::new(Barrier::new(100));
    let clients: Vec<_> = (0..100)
        .map(|_| {
            let (p, b) = (srv.path.clone(), barrier.clone());
            thread::spawn(move || {
                b.wait();
                client::request(&p, "GET", "/hello", b"").unwrap().0
            })
        })
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap(), 200);
    }
    eprintln!(
        "hundred_concurrent_clients_all_answered: {:?}",
        t0.elapsed()
    );
}

#[test]
fn slow_loris_dropped_at_deadline_while_others_are_served() {
    let t0 = Instant::now();
    let deadline = Duration::from_millis(1000);
    let srv = start(Limits {
        request_ms: deadline.as_millis() as u64,
        ..Limits::default()
    });
    let slow = UnixStream::connect(&srv.path).unwrap();
    let connected = Instant::now();
    let mut reader = slow.try_clone().unwrap();
    // a server that never drops it fails the test instead of hanging it
    reader
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let closed = thread::spawn(move || {
        let mut out = Vec::new();
        let _ = reader.read_to_end(&mut out);
        (
            connected.elapsed(),
            String::from_utf8_lossy(&out).into_owned(),
        )
    });
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let writer = thread::spawn(move || {
        let mut slow = slow;
        for b in b"GET /hello HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain([b'a'; 100].iter())
        {
            if d.load(Ordering::SeqCst) || slow.write_all(&[*b]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    // fast requests while the slow one is pending; when each was answered (since `connected`)
    let mut answered = Vec::new();
    let mut worst = Duration::ZERO;
    while connected.elapsed() < deadline + Duration::from_millis(500) {
        let t = Instant::now();
        let (status, _) = client::request(&srv.path, "GET", "/hello", b"").unwrap();
        assert_eq!(status, 200);
        worst = worst.max(t.elapsed());
        answered.push(connected.elapsed());
        thread::sleep(Duration::from_millis(10));
    }
    let (after, out) = closed.join().unwrap();
    done.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    // the deadline runs from the accept, after `connected`: a drop never comes early (50 ms
    // for the server's millisecond clock), and one 2 s late is a missed deadline, not load
    assert!(
        after >= deadline - Duration::from_millis(50) && after < deadline + Duration::from_secs(2),
        "dropped after {after:?}, deadline {deadline:?}"
    );
    // served meanwhile: answers that came before the slow request could have been dropped. A
    // server that waits on the slow client answers none before its deadline, one that waits
    // for each of its bytes at most one per byte (5 in that second); an idle machine gets ~80.
    let meanwhile = answered
        .iter()
        .filter(|t| **t < after.min(deadline))
        .count();
    assert!(
        meanwhile >= 10,
        "{meanwhile} fast requests answered while the slow one was pending: answers at {answered:?}"
    );
    eprintln!(
        "slow_loris: dropped after {after:?}; {} fast requests, {meanwhile} before the deadline, slowest {worst:?}; total {:?}",
        answered.len(),
        t0.elapsed()
    );
}

#[test]
fn connection_limit() {
    let t0 = Instant::now();
    let srv = start(Limits {
        max_conns: 4,
        ..Limits::default()
    });
    let mut idle: Vec<UnixStream> = (0..4)
        .map(|_| UnixStream::connect(&srv.path).unwrap())
        .collect();
    while srv.conns.load(Ordering::SeqCst) < 4 {
        thread::sleep(Duration::from_millis(5));
    }
    let out = raw(&srv.path, b"GET /hello HTTP/1.1\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    assert!(
        out.ends_with("{\"Error\":\"Too many connections\"}"),
        "{out}"
    );
    // one of the held connections still works, then frees its slot
    let mut s = idle.pop().unwrap();
    s.write_all(b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
    while srv.conns.load(Ordering::SeqCst) > 3 {
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        client::request(&srv.path, "GET", "/hello", b"").unwrap().0,
        200
    );
    drop(idle);
    eprintln!("connection_limit: {:?}", t0.elapsed());
}

fn pvc(args: &[&str]) -> i32 {
    let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    pvcontrol_main(&v)
}

#[test]
fn pvcontrol_commands_and_exit_codes() {
    let t0 = Instant::now();
    let srv = start(Limits::default());
    let sock = srv.path.to_str().unwrap().to_string();
    let obj = srv.dir.join("obj");
    std::fs::write(&obj, b"object bytes").unwrap();
    let obj = obj.to_str().unwrap();
    let sha = "a".repeat(64);
    let set = |status: u16, body: &str| {
        *srv.canned.lock().unwrap() = Some((status, body.to_string()));
    };
    let last = || srv.seen.lock().unwrap().requests.last().cloned().unwrap();
    // (canned status, arguments, exit code, method, path and body the server saw)
    type Case<'a> = (u16, &'a [&'a str], i32, Method, &'a str, &'a [u8]);
    let cases: &[Case] = &[
        (200, &["ls"], 0, Method::Get, "/containers", b""),
        (
            200,
            &["containers", "ls"],
            0,
            Method::Get,
            "/containers",
            b"",
        ),
        (200, &["groups", "ls"], 0, Method::Get, "/groups", b""),
        (
            200,
            &["signal", "ready"],
            0,
            Method::Post,
            "/signal",
            br#"{"type":"ready","payload":""}"#,
        ),
        (
            200,
            &["cmd", "reboot", "bye"],
            0,
            Method::Post,
            "/commands",
            br#"{"op":"REBOOT_DEVICE","payload":"bye"}"#,
        ),
        (
            503,
            &["cmd", "poweroff"],
            75,
            Method::Post,
            "/commands",
            br#"{"op":"POWEROFF_DEVICE","payload":""}"#,
        ),
        (
            200,
            &["cmd", "run", "locals/x"],
            0,
            Method::Post,
            "/commands",
            br#"{"op":"LOCAL_RUN","payload":"locals/x"}"#,
        ),
        (200, &["devmeta", "ls"], 0, Method::Get, "/device-meta", b""),
        (
            200,
            &["usrmeta", "save", "pvr-sdk.a b", "v"],
            0,
            Method::Put,
            "/user-meta/pvr-sdk.a%20b",
            b"v",
        ),
        (
            404,
            &["usrmeta", "delete", "k"],
            255,
            Method::Delete,
            "/user-meta/k",
            b"",
        ),
        (200, &["buildinfo"], 0, Method::Get, "/buildinfo", b""),
        (200, &["conf", "ls"], 0, Method::Get, "/config2", b""),
        (200, &["storage", "gc"], 0, Method::Post, "/storage/gc", b""),
        (200, &["objects", "ls"], 0, Method::Get, "/objects", b""),
        (
            507,
            &["objects", "put", obj, &sha],
            255,
            Method::Put,
            &format!("/objects/{sha}"),
            b"object bytes",
        ),
        (
            422,
            &["objects", "put", obj, &sha],
            255,
            Method::Put,
            &format!("/objects/{sha}"),
            b"object bytes",
        ),
        (
            200,
            &["objects", "get", &sha],
            0,
            Method::Get,
            &format!("/objects/{sha}"),
            b"",
        ),
        (200, &["steps", "ls"], 0, Method::Get, "/steps", b""),
        (
            404,
            &["steps", "get", "locals/x"],
            255,
            Method::Get,
            "/steps/locals/x",
            b"",
        ),
        (
            200,
            &["steps", "show-progress", "3"],
            0,
            Method::Get,
            "/steps/3/progress",
            b"",
        ),
        (
            422,
            &["steps", "put", obj, "locals/x"],
            255,
            Method::Put,
            "/steps/locals/x",
            b"object bytes",
        ),
        (
            507,
            &["steps", "put", obj, "locals/x"],
            255,
            Method::Put,
            "/steps/locals/x",
            b"object bytes",
        ),
        (
            422,
            &["devmeta", "save", "k", "v"],
            255,
            Method::Put,
            "/device-meta/k",
            b"v",
        ),
    ];
    for (status, args, code, method, path, body) in cases {
        set(*status, if *status < 300 { "[]" } else { "nope" });
        let mut full = vec!["-s", &sock];
        full.extend_from_slice(args);
        assert_eq!(pvc(&full), *code, "{args:?} answered {status}");
        let (m, p, b) = last();
        assert_eq!(
            (m, p.as_str(), b.as_slice()),
            (*method, *path, *body),
            "{args:?}"
        );
    }
    // -m: the step, then its commit message
    set(200, "");
    let n = srv.seen.lock().unwrap().requests.len();
    assert_eq!(
        pvc(&["-s", &sock, "-m", "hi", "steps", "put", obj, "locals/y"]),
        0
    );
    let seen = srv.seen.lock().unwrap().requests[n..].to_vec();
    let paths: Vec<&str> = seen.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(paths, ["/steps/locals/y", "/steps/locals/y/commitmsg"]);
    assert_eq!(seen[1].2, b"hi");
    // upstream's exit codes come from its three exact error bodies, whatever the status
    for (status, msg, code) in [
        (507, "Not enough disk space available", 48),
        (422, "Object has bad checksum", 60),
        (422, "State verification has failed", 70),
    ] {
        set(status, msg);
        assert_eq!(pvc(&["-s", &sock, "objects", "put", obj, &sha]), code);
    }
    // usage errors (1), missing file, no server (1); a step name is the device's to check
    assert_eq!(pvc(&["-s", &sock, "frobnicate"]), 1);
    set(400, "nope");
    assert_eq!(pvc(&["-s", &sock, "steps", "put", obj, "notlocal"]), 255);
    assert_eq!(last().1, "/steps/notlocal");
    assert_eq!(
        pvc(&["-s", &sock, "objects", "put", "/nonexistent", &sha]),
        255
    );
    let gone = srv.dir.join("gone").to_str().unwrap().to_string();
    assert_eq!(pvc(&["-s", &gone, "ls"]), 1);
    // autodetection picks the first candidate that is a socket
    let cands = ["/nonexistent/pv-ctrl", obj, sock.as_str()];
    assert_eq!(client::find_socket(&cands), Some(srv.path.clone()));
    eprintln!("pvcontrol_commands_and_exit_codes: {:?}", t0.elapsed());
}
