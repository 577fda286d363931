use super::container_of_cgroup;
use super::http::*;

/// Feeds `pieces` in order; returns the heads, the body bytes and the number of completed
/// requests, or the first error.
fn run(pieces: &[&[u8]]) -> Result<(Vec<Head>, Vec<u8>, usize), HttpError> {
    let mut p = Parser::new();
    let (mut heads, mut body, mut done) = (Vec::new(), Vec::new(), 0);
    for piece in pieces {
        let mut rest: &[u8] = piece;
        loop {
            let (n, prog) = p.feed(rest)?;
            rest = &rest[n..];
            match prog {
                Progress::More => break,
                Progress::Head(h) => heads.push(h),
                Progress::Body(b) => body.extend_from_slice(b),
                Progress::Done => done += 1,
            }
        }
        assert!(rest.is_empty());
    }
    Ok((heads, body, done))
}

fn status(req: &[u8]) -> u16 {
    match run(&[req]) {
        Ok(_) => 200,
        Err(e) => e.status,
    }
}

const PUT: &[u8] =
    b"PUT /objects/ab%63d?x=1 HTTP/1.1\r\nhOsT: localhost\r\ncontent-LENGTH: 11\r\n\r\nhello world";

#[test]
fn every_split_point_gives_the_same_request() {
    let (heads, body, done) = run(&[PUT]).unwrap();
    assert_eq!(done, 1);
    assert_eq!(body, b"hello world");
    let h = &heads[0];
    assert_eq!(h.method, Method::Put);
    assert_eq!(h.path, "/objects/ab%63d");
    assert_eq!(h.segments, vec!["objects", "abcd"]);
    assert_eq!(h.content_length, 11);
    assert!(h.keep_alive && !h.expect_continue);
    for i in 0..=PUT.len() {
        for j in i..=PUT.len() {
            let r = run(&[&PUT[..i], &PUT[i..j], &PUT[j..]]).unwrap();
            assert_eq!(r, (heads.clone(), body.clone(), 1), "split at {i},{j}");
        }
    }
}

#[test]
fn pipelined_requests() {
    let mut all = Vec::new();
    all.extend_from_slice(b"GET /containers HTTP/1.1\r\n\r\n");
    all.extend_from_slice(PUT);
    all.extend_from_slice(b"\r\nDELETE /user-meta/k HTTP/1.0\r\n\r\n");
    let (heads, body, done) = run(&[&all]).unwrap();
    assert_eq!(done, 3);
    assert_eq!(body, b"hello world");
    let m: Vec<Method> = heads.iter().map(|h| h.method).collect();
    assert_eq!(m, [Method::Get, Method::Put, Method::Delete]);
    assert!(!heads[2].keep_alive, "HTTP/1.0 closes by default");
    // byte by byte
    let bytes: Vec<&[u8]> = all.chunks(1).collect();
    assert_eq!(run(&bytes).unwrap().2, 3);
}

#[test]
fn limits_give_exact_status_codes() {
    let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE));
    assert_eq!(status(long_line.as_bytes()), 414);
    // the 414 comes before the line ends: a client cannot make us buffer it
    assert_eq!(status(&long_line.as_bytes()[..MAX_LINE + 1]), 414);
    let ok_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE - 20));
    assert_eq!(status(ok_line.as_bytes()), 200);
    let many = format!(
        "GET / HTTP/1.1\r\n{}\r\n",
        "X-A: b\r\n".repeat(MAX_HEAD / 8)
    );
    assert_eq!(status(many.as_bytes()), 431);
    assert_eq!(status(&many.as_bytes()[..MAX_HEAD + 1]), 431);
    let segs = format!("GET {} HTTP/1.1\r\n\r\n", "/a".repeat(MAX_SEGMENTS));
    assert_eq!(status(segs.as_bytes()), 200);
    let segs = format!("GET {} HTTP/1.1\r\n\r\n", "/a".repeat(MAX_SEGMENTS + 1));
    assert_eq!(status(segs.as_bytes()), 400);
    assert_eq!(
        status(b"PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        400
    );
    assert_eq!(
        status(b"PUT / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab"),
        200
    );
}

#[test]
fn identity_and_other_codings_mean_content_length_as_libevent() {
    // upstream's `pvcontrol objects put` sends `Transfer-Encoding: identity`
    for te in ["identity", "gzip", "x-custom, identity"] {
        let req =
            format!("PUT /x HTTP/1.1\r\nTransfer-Encoding: {te}\r\nContent-Length: 3\r\n\r\nabc");
        let (h, body, done) = run(&[req.as_bytes()]).unwrap();
        assert!(!h[0].chunked, "{te}");
        assert_eq!((body.as_slice(), done), (&b"abc"[..], 1), "{te}");
    }
    let s = status(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(s, 501);
    let s = status(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(s, 400, "framed twice");
}

/// Two chunks with extensions, a trailer, then a pipelined request.
const CHUNKED: &[u8] = b"PUT /steps/locals/x HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n5;ext=1\r\nhello\r\n0006 ; a=\"b\"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\nGET /containers HTTP/1.1\r\n\r\n";

#[test]
fn chunked_bodies_are_decoded_at_every_split_point() {
    let (heads, body, done) = run(&[CHUNKED]).unwrap();
    assert_eq!((body.as_slice(), done), (&b"hello world"[..], 2));
    assert!(heads[0].chunked && heads[0].content_length == 0);
    assert_eq!(heads[1].method, Method::Get);
    for i in 0..=CHUNKED.len() {
        for j in i..=CHUNKED.len() {
            let r = run(&[&CHUNKED[..i], &CHUNKED[i..j], &CHUNKED[j..]]).unwrap();
            assert_eq!(
                (r.1.as_slice(), r.2),
                (&b"hello world"[..], 2),
                "split at {i},{j}"
            );
        }
    }
    // bare LF line ends, an empty body, upper-case hex
    let (_, body, done) =
        run(&[b"PUT / HTTP/1.1\nTransfer-Encoding: chunked\n\nA\n0123456789\n0\n\n"]).unwrap();
    assert_eq!((body.as_slice(), done), (&b"0123456789"[..], 1));
    let (_, body, done) =
        run(&[b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]).unwrap();
    assert_eq!((body.len(), done), (0, 1));
}

#[test]
fn bad_chunks_are_refused() {
    let te = "PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (chunks, want) in [
        ("zz\r\n", 400),
        ("\r\n", 400),
        (";ext\r\n", 400),
        ("-1\r\n", 400),
        ("0x5\r\n", 400),
        // 17 hex digits do not fit 64 bits
        ("10000000000000000\r\n", 400),
        // data longer than announced
        ("3\r\nabcd\r\n", 400),
        ("3\r\nabc\rX", 400),
    ] {
        let req = format!("{te}{chunks}");
        assert_eq!(status(req.as_bytes()), want, "{chunks:?}");
    }
    // a size line is bounded before it ends, a trailer like a head
    let long = format!("{te}1;{}", "e".repeat(MAX_CHUNK_LINE));
    assert_eq!(status(long.as_bytes()), 400);
    let trailer = format!("{te}0\r\n{}", "X-T: v\r\n".repeat(MAX_HEAD / 8 + 1));
    assert_eq!(status(trailer.as_bytes()), 431);
    // the largest size is accepted as a size (the server's limit refuses it, 413)
    let (_, _, done) = run(&[format!("{te}ffffffffffffffff\r\nab").as_bytes()]).unwrap();
    assert_eq!(done, 0);
}

#[test]
fn header_names_are_tokens_and_values_have_no_controls() {
    for bad in [
        &b"GET / HTTP/1.1\r\nX-\x00Abuse: v\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nX-Abuse\x00: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nX(y): v\r\n\r\n",
        b"GET / HTTP/1.1\r\nX\xc3\xa9: v\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: v\x00w\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: v\x1bw\r\n\r\n",
        b"GET / HTTP/1.1\r\nX-A: v\rw\r\n\r\n",
    ] {
        let e = run(&[bad]).unwrap_err();
        assert_eq!(
            (e.status, e.msg),
            (400, "Bad header"),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nX-A!#$%&'*+.^_`|~9: v\tw \xc3\xa9\r\n\r\n"),
        200
    );
}

#[test]
fn bad_request_lines() {
    for bad in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"get / HTTP/1.1\r\n\r\n",
        b"GET x HTTP/1.1\r\n\r\n",
        b"GET / FTP/1.0\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        b"GET / HTTP/1.1\r\n: empty\r\n\r\n",
        b"GET / HTTP/1.1\r\nA b: c\r\n\r\n",
        b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    ] {
        assert_eq!(status(bad), 400, "{}", String::from_utf8_lossy(bad));
    }
    let e = run(&[b"SSH-2.0-OpenSSH\r\n\r\n"]).unwrap_err();
    assert_eq!(e.msg, "Unsupported protocol");
    assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
    assert_eq!(status(b"GET / HTTP/1.1\r\nExpect: magic\r\n\r\n"), 417);
    // accepted oddities: bare LF, leading empty lines, unknown methods (routed as Other)
    assert_eq!(status(b"\r\n\nGET / HTTP/1.1\nHost:\n\n"), 200);
    let (h, _, _) = run(&[b"PATCH / HTTP/1.1\r\nHost: localhost:80\r\n\r\n"]).unwrap();
    assert_eq!(h[0].method, Method::Other);
}

#[test]
fn headers_connection_and_expect() {
    let (h, _, _) = run(&[b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"]).unwrap();
    assert!(!h[0].keep_alive);
    let (h, _, _) = run(&[b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"]).unwrap();
    assert!(h[0].keep_alive);
    let req = b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\nx";
    let (h, _, _) = run(&[req]).unwrap();
    assert!(h[0].expect_continue);
}

#[test]
fn percent_decoding() {
    assert_eq!(percent_decode(b"a%20b%2e").as_deref(), Some("a b."));
    assert_eq!(percent_decode(b"%C3%A9").as_deref(), Some("é"));
    for bad in [
        &b"%"[..],
        b"%2",
        b"%zz",
        b"%FF",
        b"a%2Fb",
        b"%00",
        b"..",
        b"%2e%2E",
        b".",
    ] {
        assert_eq!(
            percent_decode(bad),
            None,
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let (h, _, _) = run(&[b"GET //user-meta//a%2Bb/ HTTP/1.1\r\n\r\n"]).unwrap();
    assert_eq!(h[0].segments, vec!["user-meta", "a+b"]);
    assert_eq!(status(b"GET /steps/%2e%2e/x HTTP/1.1\r\n\r\n"), 400);
}

#[test]
fn response_writer() {
    let mut out = Vec::new();
    Response::error(503, "A command is already in progress. Try again")
        .with_header("Retry-After", "120".into())
        .write(false, &mut out);
    let body = "{\"Error\":\"A command is already in progress. Try again\"}";
    let want = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 120\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(String::from_utf8(out).unwrap(), want);
    let mut out = Vec::new();
    Response::ok().write(true, &mut out);
    assert_eq!(
        out,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"
    );
    let mut out = Vec::new();
    Response::error(400, "say \"hi\"").write(true, &mut out);
    assert!(out.ends_with(br#"{"Error":"say \"hi\""}"#));
}

#[test]
fn fuzz_10k_random_and_mutated_inputs() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let seeds: [&[u8]; 5] = [
        PUT,
        b"GET /steps/locals/x/progress HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"POST /commands HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n{}\nGET / HTTP/1.1\r\n\r\n",
        b"GET /%41%zz/%2F HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        CHUNKED,
    ];
    let alphabet = b"\r\n :%/0123456789GETPUHLC-lengthHTTP/1.1?\x00\xff";
    for i in 0..10_000 {
        let mut data = seeds[i % seeds.len()].to_vec();
        if i % 5 == 0 {
            let n = (rnd() % 300) as usize;
            data = (0..n).map(|_| rnd() as u8).collect();
        }
        for _ in 0..(rnd() % 8) {
            let pos = (rnd() as usize) % (data.len() + 1);
            let c = alphabet[(rnd() as usize) % alphabet.len()];
            match rnd() % 3 {
                0 => data.insert(pos, c),
                1 if pos < data.len() => data[pos] = c,
                _ if pos < data.len() => {
                    data.remove(pos);
                }
                _ => {}
            }
        }
        fuzz_request(&data);
    }
}

#[test]
fn caller_of_cgroup_text() {
    assert_eq!(container_of_cgroup("0::/\n"), None);
    assert_eq!(container_of_cgroup("0::/lxc/x\n"), Some("x"));
    assert_eq!(
        container_of_cgroup("0::/system.slice/pv-test/lxc/x\n"),
        Some("x")
    );
    assert_eq!(
        container_of_cgroup("0::/lxc/x/lxc/inner/init.scope\n"),
        Some("inner")
    );
    assert_eq!(container_of_cgroup("0::/user.slice/lxc\n"), None);
    assert_eq!(container_of_cgroup("0::/lxcfoo/bar\n"), None);
    assert_eq!(container_of_cgroup("0::/..\n"), None);
    // cgroup v1 / hybrid: the name=pantavisor hierarchy
    let v1 = "12:memory:/lxc/y\n1:name=pantavisor:/lxc/y\n";
    assert_eq!(container_of_cgroup(v1), Some("y"));
    assert_eq!(container_of_cgroup("1:name=pantavisor:/\n"), None);
    // hybrid: the v2 line wins
    let hybrid = "1:name=pantavisor:/lxc/y\n0::/lxc/z\n";
    assert_eq!(container_of_cgroup(hybrid), Some("z"));
    assert_eq!(container_of_cgroup(""), None);
    assert_eq!(container_of_cgroup("garbage\n\u{0}::"), None);
}

#[test]
fn slot_shares_table() {
    use crate::control::server::{admit, Admit::*, Class::*, Limits};
    let l = Limits {
        max_conns: 32,
        reserve: 8,
        share: 4,
        mgmt_share: 16,
        ..Limits::default()
    };
    // (free, held by the caller, its class, an idle one to reclaim) -> decision
    let rows = [
        (32, 0, Other, false, Take),
        (9, 3, Other, false, Take),
        // a non-mgmt container at its share
        (20, 4, Other, false, Refuse),
        // the reserve is for the host and mgmt callers, and idle ones are not reclaimed for it
        (8, 0, Other, false, Refuse),
        (8, 0, Other, true, Refuse),
        (0, 0, Other, true, Refuse),
        (8, 0, Mgmt, false, Take),
        (1, 15, Mgmt, false, Take),
        // a mgmt container at its share
        (10, 16, Mgmt, true, Refuse),
        (1, 31, Host, false, Take),
        // full: the host or a mgmt caller takes the slot of an idle connection
        (0, 0, Host, true, Reclaim),
        (0, 40, Host, true, Reclaim),
        (0, 3, Mgmt, true, Reclaim),
        (0, 5, Host, false, Refuse),
        (0, 5, Mgmt, false, Refuse),
    ];
    for (free, held, class, idle, want) in rows {
        assert_eq!(
            admit(&l, free, held, class, idle),
            want,
            "free {free} held {held} {class:?} idle {idle}"
        );
    }
}

#[test]
fn timing_table() {
    use crate::control::server::{timing, Limits, Phase::*, Verdict::*};
    let l = Limits {
        idle_ms: 5000,
        head_ms: 3000,
        min_rate: 1024,
        window_ms: 2000,
        ..Limits::default()
    };
    // (phase, since, moved, now) -> verdict
    let rows = [
        (Idle, 1000, 0, 1000, At(6000)),
        (Idle, 1000, 0, 5999, At(6000)),
        (Idle, 1000, 0, 6000, Drop),
        (Head, 1000, 1, 3999, At(4000)),
        // one header byte a second: dropped when the head's time is up
        (Head, 1000, 3, 4000, Drop),
        (Transfer, 1000, 0, 1500, At(3000)),
        // the window's minimum (2 KiB in 2 s) moved: a new window
        (Transfer, 1000, 2048, 3000, Renew(5000)),
        (Transfer, 1000, 2048, 3100, Drop),
        (Transfer, 1000, 1 << 30, 9000, Renew(11000)),
        // one byte a second
        (Transfer, 1000, 2, 3000, Drop),
        (Deferred(600_000), 1000, 0, 599_999, At(600_000)),
        (Deferred(600_000), 1000, 0, 600_000, Drop),
    ];
    for (phase, since, moved, now, want) in rows {
        assert_eq!(
            timing(&l, phase, since, moved, now),
            want,
            "{phase:?} since {since} moved {moved} at {now}"
        );
    }
}

mod deferred {
    //! A real server on a real Unix socket, its loop pumped by the test thread.
    use crate::control::{Limits, Method, Plan, Request, Response, Router, Server};
    use crate::event_loop::EventLoop;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    /// `POST /gc` is deferred with ticket 7 (the limit is the test's); `PUT /buf` buffers at
    /// most 10 bytes and answers their count, `PUT /stream` streams at most 10; `GET /hello`
    /// answers.
    struct Gc {
        limit_ms: u64,
    }

    struct Count(usize);

    impl crate::control::BodySink for Count {
        fn write(&mut self, chunk: &[u8]) -> Result<(), Response> {
            self.0 += chunk.len();
            Ok(())
        }
        fn finish(self: Box<Self>) -> Response {
            Response::json(200, format!("{{\"streamed\":{}}}", self.0))
        }
    }

    impl Router for Gc {
        fn head(&mut self, req: &Request) -> Plan {
            match (req.head.method, req.head.path.as_str()) {
                (Method::Post, "/gc") => Plan::Defer {
                    ticket: 7,
                    limit_ms: self.limit_ms,
                },
                (Method::Put, "/buf") => Plan::Buffer(10),
                (Method::Put, "/stream") => Plan::Stream(Box::new(Count(0)), 10),
                _ => Plan::Reply(Response::json(200, "\"hello\"".into())),
            }
        }
        fn finish(&mut self, _: &Request, body: Vec<u8>) -> Response {
            Response::json(200, format!("{{\"buffered\":{}}}", body.len()))
        }
        fn trusted(&mut self, _: &crate::control::Caller) -> bool {
            true
        }
    }

    struct Rig {
        dir: PathBuf,
        lp: EventLoop,
        server: Server,
        router: Gc,
        client: UnixStream,
    }

    impl Rig {
        fn new(name: &str, request_ms: u64, limit_ms: u64) -> Rig {
            let limits = Limits {
                idle_ms: request_ms,
                ..Limits::default()
            };
            Rig::with(name, limits, limit_ms)
        }
        fn with(name: &str, limits: Limits, limit_ms: u64) -> Rig {
            let dir = std::env::temp_dir().join(format!("pv-defer-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut server = Server::bind_with(&dir.join("pv-ctrl"), limits).unwrap();
            let mut lp = EventLoop::new(&[]).unwrap();
            server.register(&mut lp, 100);
            let client = UnixStream::connect(dir.join("pv-ctrl")).unwrap();
            client.set_nonblocking(true).unwrap();
            Rig {
                dir,
                lp,
                server,
                router: Gc { limit_ms },
                client,
            }
        }
        /// Runs the loop for about `ms` milliseconds.
        fn pump(&mut self, ms: u64) {
            let end = EventLoop::now_ms() + ms;
            let mut wakes = Vec::new();
            while EventLoop::now_ms() < end {
                self.lp.wait(&mut wakes, Some(5)).unwrap();
                for w in wakes.drain(..) {
                    assert!(self.server.handle(&mut self.lp, w, &mut self.router));
                }
            }
        }
        /// What the server sent so far, and whether it closed the connection.
        fn read(&mut self) -> (String, bool) {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            let closed = loop {
                match self.client.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            (String::from_utf8_lossy(&out).into_owned(), closed)
        }
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn a_deferred_answer_outlives_the_request_deadline_and_keeps_the_order() {
        // request deadline 100 ms, the GC may take 10 minutes
        let mut r = Rig::new("order", 100, 600_000);
        r.client
            .write_all(b"POST /gc HTTP/1.1\r\n\r\nGET /hello HTTP/1.1\r\n\r\n")
            .unwrap();
        r.pump(300);
        assert_eq!(
            r.read(),
            (String::new(), false),
            "nothing before the GC is done"
        );
        assert_eq!(
            r.server.connections(),
            1,
            "the request deadline did not close it"
        );
        assert!(
            !r.server.complete(&mut r.lp, 8, Response::ok()),
            "no such ticket"
        );
        let done = Response::json(200, "{\"reclaimed\":1234}".into());
        assert!(r.server.complete(&mut r.lp, 7, done));
        assert!(
            !r.server.complete(&mut r.lp, 7, Response::ok()),
            "answered once"
        );
        r.pump(20);
        let (got, closed) = r.read();
        assert!(!closed, "kept alive");
        let first = got.find("{\"reclaimed\":1234}").expect(&got);
        let second = got.find("\"hello\"").expect(&got);
        assert!(
            got.starts_with("HTTP/1.1 200 OK\r\n") && first < second,
            "{got}"
        );
        assert_eq!(r.server.connections(), 1, "kept alive");
        // and it is an ordinary connection again, with the ordinary deadline
        r.pump(200);
        assert_eq!(r.read(), (String::new(), true));
        assert_eq!(r.server.connections(), 0);
    }

    #[test]
    fn a_deferred_request_past_its_limit_gets_503_and_the_answer_is_dropped() {
        let mut r = Rig::new("limit", 5000, 60);
        r.client.write_all(b"POST /gc HTTP/1.1\r\n\r\n").unwrap();
        r.pump(150);
        let (got, closed) = r.read();
        assert!(closed && got.starts_with("HTTP/1.1 503 "), "{got}");
        assert!(got.contains("No answer in time"), "{got}");
        assert_eq!(r.server.connections(), 0);
        assert!(!r.server.complete(&mut r.lp, 7, Response::ok()));
    }

    #[test]
    fn a_client_that_leaves_frees_its_deferred_connection() {
        let mut r = Rig::new("gone", 5000, 600_000);
        r.client.write_all(b"POST /gc HTTP/1.1\r\n\r\n").unwrap();
        r.pump(30);
        assert_eq!(r.server.connections(), 1);
        r.client.shutdown(std::net::Shutdown::Both).unwrap();
        r.pump(30);
        assert_eq!(r.server.connections(), 0, "the hang-up closed it");
        assert!(!r.server.complete(&mut r.lp, 7, Response::ok()));
    }

    /// The answer to `req` on the rig's connection after `ms` of the loop.
    fn ask(r: &mut Rig, req: &[u8], ms: u64) -> (String, bool) {
        r.client.write_all(req).unwrap();
        r.pump(ms);
        r.read()
    }

    #[test]
    fn chunked_bodies_reach_buffers_and_sinks_within_their_limits() {
        let mut r = Rig::new("chunked", 5000, 1000);
        let te = "Transfer-Encoding: chunked\r\n\r\n";
        let (got, closed) = ask(
            &mut r,
            format!("PUT /buf HTTP/1.1\r\n{te}4;x\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n").as_bytes(),
            50,
        );
        assert!(!closed && got.ends_with("{\"buffered\":10}"), "{got}");
        let (got, closed) = ask(
            &mut r,
            format!("PUT /stream HTTP/1.1\r\n{te}3\r\nabc\r\n0\r\nT: x\r\n\r\n").as_bytes(),
            50,
        );
        assert!(!closed && got.ends_with("{\"streamed\":3}"), "{got}");
        // the limit holds across chunks, for a buffer and a sink alike
        let (got, closed) = ask(
            &mut r,
            format!("PUT /buf HTTP/1.1\r\n{te}6\r\nabcdef\r\n6\r\nghijkl\r\n").as_bytes(),
            50,
        );
        assert!(closed && got.starts_with("HTTP/1.1 413 "), "{got}");
        let mut r = Rig::new("chunked2", 5000, 1000);
        let (got, closed) = ask(
            &mut r,
            format!("PUT /stream HTTP/1.1\r\n{te}ffffffff\r\nabcdefghijk").as_bytes(),
            50,
        );
        assert!(closed && got.starts_with("HTTP/1.1 413 "), "{got}");
    }

    #[test]
    fn a_body_past_the_memory_budget_gets_503() {
        let limits = Limits {
            budget: 8,
            ..Limits::default()
        };
        let mut r = Rig::with("budget", limits, 1000);
        let (got, closed) = ask(
            &mut r,
            b"PUT /buf HTTP/1.1\r\nContent-Length: 9\r\n\r\n",
            50,
        );
        assert!(closed && got.starts_with("HTTP/1.1 503 "), "{got}");
        assert!(got.contains("Retry-After: 1\r\n"), "{got}");
        // chunked: refused when it grows past the budget
        let mut r = Rig::with("budget2", limits, 1000);
        let (got, _) = ask(
            &mut r,
            b"PUT /buf HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
            50,
        );
        assert_eq!(got, "");
        let (got, closed) = ask(&mut r, b"5\r\nfghij\r\n", 50);
        assert!(closed && got.starts_with("HTTP/1.1 503 "), "{got}");
        // within it
        let mut r = Rig::with("budget3", limits, 1000);
        let (got, _) = ask(
            &mut r,
            b"PUT /buf HTTP/1.1\r\nContent-Length: 8\r\n\r\n12345678",
            50,
        );
        assert!(got.ends_with("{\"buffered\":8}"), "{got}");
    }

    #[test]
    fn a_slow_body_is_dropped_after_one_window_and_a_slow_head_at_its_limit() {
        let limits = Limits {
            window_ms: 100,
            min_rate: 1000,
            head_ms: 150,
            ..Limits::default()
        };
        let mut r = Rig::with("slow", limits, 1000);
        let (got, _) = ask(
            &mut r,
            b"PUT /stream HTTP/1.1\r\nContent-Length: 10\r\n\r\na",
            60,
        );
        assert_eq!(got, "", "within the window");
        // 100 bytes were owed by the end of the window: one came
        let (got, closed) = ask(&mut r, b"b", 100);
        assert!(closed && got.starts_with("HTTP/1.1 408 "), "{got}");
        let mut r = Rig::with("slowhead", limits, 1000);
        let (got, _) = ask(&mut r, b"GET /hel", 100);
        assert_eq!(got, "");
        let (got, closed) = ask(&mut r, b"l", 100);
        assert!(closed && got.starts_with("HTTP/1.1 408 "), "{got}");
        assert_eq!(r.server.connections(), 0);
    }

    #[test]
    fn the_host_reclaims_the_oldest_idle_connection_when_the_slots_are_full() {
        let limits = Limits {
            max_conns: 2,
            ..Limits::default()
        };
        let mut r = Rig::with("reclaim", limits, 1000);
        r.pump(20);
        let path = r.dir.join("pv-ctrl");
        let connect = || UnixStream::connect(&path).unwrap();
        // a second connection, mid-head: busy, not idle
        let mut busy = connect();
        busy.write_all(b"GET /hello HTTP/1.1\r\n").unwrap();
        r.pump(20);
        assert_eq!(r.server.connections(), 2);
        let mut third = connect();
        third
            .write_all(b"GET /hello HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        r.pump(50);
        // the idle one (the rig's) was closed for it, the busy one kept
        assert_eq!(r.read(), (String::new(), true));
        let mut out = String::new();
        third.read_to_string(&mut out).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 200 ") && out.ends_with("\"hello\""),
            "{out}"
        );
        busy.write_all(b"Connection: close\r\n\r\n").unwrap();
        r.pump(50);
        let mut out = String::new();
        busy.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200 "), "{out}");
        // full of busy connections: refused
        let mut a = connect();
        let mut b = connect();
        a.write_all(b"G").unwrap();
        b.write_all(b"G").unwrap();
        r.pump(30);
        let mut c = connect();
        r.pump(30);
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 503 "), "{out}");
    }

    #[test]
    fn an_answer_that_closes_is_the_last_thing_sent() {
        let mut r = Rig::new("last", 5000, 1000);
        // the head in two reads: the connection was mid-head when the answer closed it
        let (got, _) = ask(&mut r, b"GET /hello HTTP/1.1\r\n", 30);
        assert_eq!(got, "");
        let (got, closed) = ask(&mut r, b"Connection: close\r\n\r\n", 30);
        assert!(closed, "{got}");
        assert!(
            got.starts_with("HTTP/1.1 200 ") && got.ends_with("\"hello\""),
            "{got}"
        );
        assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got}");
    }
}
