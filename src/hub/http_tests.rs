use super::*;
use std::io::{BufReader, Cursor};

/// Reads one answer from `raw`, fed in pieces of `step` bytes (the split points of a socket).
fn answer(raw: &[u8], step: usize, head_request: bool) -> io::Result<(Head, Vec<u8>)> {
    struct Dribble<'a>(&'a [u8], usize);
    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut r = BufReader::with_capacity(7, Dribble(raw, step));
    let head = read_head(&mut r, head_request)?;
    let body = Body::new(&mut r, head.framing).read_all(1 << 20)?;
    Ok((head, body))
}

fn every_split(raw: &[u8]) -> io::Result<(Head, Vec<u8>)> {
    let first = answer(raw, raw.len().max(1), false);
    for step in 1..=raw.len().min(40) {
        let again = answer(raw, step, false);
        assert_eq!(
            again.as_ref().map_err(|e| e.to_string()),
            first.as_ref().map_err(|e| e.to_string()),
            "split every {step} bytes"
        );
    }
    first
}

#[test]
fn the_request_is_written_whole() {
    let mut out = Vec::new();
    write_request(
        &mut out,
        "PUT",
        "hub.example:443",
        "/trails/x/steps/3/progress",
        &[
            ("Authorization", "Bearer t"),
            ("Content-Type", "application/json"),
        ],
        b"{}",
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "PUT /trails/x/steps/3/progress HTTP/1.1\r\nHost: hub.example:443\r\n\
         Authorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    );
    // a POST without a body still says so; a GET does not
    let mut out = Vec::new();
    write_request(&mut out, "POST", "h", "/devices/", &[], b"").unwrap();
    assert!(String::from_utf8_lossy(&out).contains("Content-Length: 0\r\n"));
    let mut out = Vec::new();
    write_request(&mut out, "GET", "h", "/", &[], b"").unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("Content-Length"));
    // a header injected through a value (a token from the Hub, say) is refused
    for (path, hv) in [("/a\r\nX: y", "v"), ("/a", "v\r\nX: y"), ("/a", "v\nX")] {
        let mut out = Vec::new();
        let e = write_request(&mut out, "GET", "h", path, &[("A", hv)], b"");
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(out.is_empty());
    }
}

#[test]
fn bodies_by_length_chunks_or_close() {
    let (h, b) =
        every_split(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  v \r\n\r\nhello").unwrap();
    assert_eq!(
        (h.status, h.framing, h.close),
        (200, Framing::Length(5), false)
    );
    assert_eq!(h.header("x-a"), Some("v"));
    assert_eq!(b, b"hello");
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: x\r\n\r\n";
    let (h, b) = every_split(raw).unwrap();
    assert_eq!(h.framing, Framing::Chunked);
    assert_eq!(b, b"Wikipedia in\r\n\r\nchunks.");
    let (h, b) = every_split(b"HTTP/1.0 200 OK\r\n\r\nuntil the end").unwrap();
    assert_eq!((h.framing, h.close), (Framing::Close, true));
    assert_eq!(b, b"until the end");
    // bodies that are not there
    for raw in [
        &b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n"[..],
        b"HTTP/1.1 304 Not Modified\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ] {
        let (_, b) = every_split(raw).unwrap();
        assert!(b.is_empty());
    }
    let (h, b) = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", 3, true).unwrap();
    assert_eq!((h.framing, b.len()), (Framing::Empty, 0));
    // interim answers are skipped
    let (h, b) = every_split(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
    )
    .unwrap();
    assert_eq!((h.status, b.as_slice()), (201, &b"ok"[..]));
}

#[test]
fn connection_reuse_is_as_the_server_says() {
    let h = |raw: &[u8]| answer(raw, 100, false).unwrap().0;
    assert!(h(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").close);
    assert!(!h(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").close);
    assert!(h(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").close);
    // both framings: chunked frames it, and the connection is not trusted again
    let (h, b) = answer(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n",
        100,
        false,
    )
    .unwrap();
    assert_eq!(
        (h.framing, h.close, b.as_slice()),
        (Framing::Chunked, true, &b"x"[..])
    );
}

#[test]
fn malformed_or_cut_answers_are_errors() {
    let kind = |raw: &[u8]| answer(raw, 5, false).unwrap_err().kind();
    for raw in [
        &b"HTTP/2 200 OK\r\n\r\n"[..],
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: a\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n",
        // a chunk must end with CRLF, even when what follows would parse
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX1\r\nd\r\n0\r\n\r\n",
    ] {
        assert_eq!(
            kind(raw),
            io::ErrorKind::InvalidData,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    for raw in [
        &b""[..],
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ] {
        assert_eq!(
            kind(raw),
            io::ErrorKind::UnexpectedEof,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    // equal Content-Length twice is one length
    let (_, b) = answer(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        9,
        false,
    )
    .unwrap();
    assert_eq!(b, b"x");
}

#[test]
fn memory_is_bounded() {
    // a head that never ends
    let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'a', MAX_HEAD));
    let e = answer(&raw, 4096, false).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    // a body over the caller's limit
    let mut r = Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world".to_vec());
    let h = read_head(&mut r, false).unwrap();
    assert!(Body::new(&mut r, h.framing).read_all(10).is_err());
    let mut r = Cursor::new(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world".to_vec());
    let h = read_head(&mut r, false).unwrap();
    assert_eq!(
        Body::new(&mut r, h.framing).read_all(11).unwrap(),
        b"hello world"
    );
    // a chunk-size line without end
    let mut raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1".to_vec();
    raw.extend(std::iter::repeat_n(b'0', MAX_HEAD + 1));
    assert!(answer(&raw, 4096, false).is_err());
}

#[test]
fn two_answers_on_one_connection() {
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none\
                HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n";
    let mut r = BufReader::with_capacity(5, Cursor::new(raw.to_vec()));
    let h = read_head(&mut r, false).unwrap();
    assert_eq!(Body::new(&mut r, h.framing).read_all(100).unwrap(), b"one");
    let h = read_head(&mut r, false).unwrap();
    assert_eq!(h.status, 404);
    assert_eq!(Body::new(&mut r, h.framing).read_all(100).unwrap(), b"two");
}

/// Over a real socket: a server that answers in pieces and closes.
#[test]
fn over_a_socket() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 256];
        while !req.ends_with(b"\r\n\r\n{\"a\":1}") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "request cut: {}", String::from_utf8_lossy(&req));
            req.extend_from_slice(&buf[..n]);
        }
        for part in [
            &b"HTTP/1.1 200 OK\r\nTransfer-"[..],
            b"Encoding: chunked\r\n\r\n2\r",
            b"\nok\r\n0\r\n\r\n",
        ] {
            s.write_all(part).unwrap();
            s.flush().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        String::from_utf8(req).unwrap()
    });
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write_request(&mut s, "POST", "127.0.0.1", "/x", &[], b"{\"a\":1}").unwrap();
    let mut r = io::BufReader::new(s);
    let h = read_head(&mut r, false).unwrap();
    assert_eq!(Body::new(&mut r, h.framing).read_all(10).unwrap(), b"ok");
    let req = server.join().unwrap();
    assert!(
        req.starts_with("POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 7\r\n"),
        "{req}"
    );
}
