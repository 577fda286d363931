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
fn chunked_and_other_codings_refused() {
    let s = status(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(s, 411);
    let s = status(b"PUT /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
    assert_eq!(s, 411);
    let s = status(b"PUT /x HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n");
    assert_eq!(s, 501);
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
    let seeds: [&[u8]; 4] = [
        PUT,
        b"GET /steps/locals/x/progress HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
        b"POST /commands HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n{}\nGET / HTTP/1.1\r\n\r\n",
        b"GET /%41%zz/%2F HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
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

mod deferred {
    //! A real server on a real Unix socket, its loop pumped by the test thread.
    use crate::control::{Limits, Method, Plan, Request, Response, Router, Server};
    use crate::event_loop::EventLoop;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::path::PathBuf;

    /// `POST /gc` is deferred with ticket 7 (the limit is the test's); `GET /hello` answers.
    struct Gc {
        limit_ms: u64,
    }

    impl Router for Gc {
        fn head(&mut self, req: &Request) -> Plan {
            match (req.head.method, req.head.path.as_str()) {
                (Method::Post, "/gc") => Plan::Defer {
                    ticket: 7,
                    limit_ms: self.limit_ms,
                },
                _ => Plan::Reply(Response::json(200, "\"hello\"".into())),
            }
        }
        fn finish(&mut self, _: &Request, _: Vec<u8>) -> Response {
            Response::error(500, "not here")
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
            let dir = std::env::temp_dir().join(format!("pv-defer-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let limits = Limits {
                request_ms,
                ..Limits::default()
            };
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
}
