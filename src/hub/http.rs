//! The Hub client's HTTP/1.1 (README "TLS for the Hub client": the project's own client under
//! rustls measured 111-242 KB smaller than ureq). Blocking, over any byte stream (TCP, TLS):
//! one request written whole, its answer read with bounded memory -- the head up to
//! [`MAX_HEAD`], the body by Content-Length, chunked or until the close.

use crate::control::http as wire;
use std::io::{self, BufRead, Read, Write};

/// The longest response head taken (status line and header lines).
pub const MAX_HEAD: usize = 16 * 1024;

/// How the answer's body is framed (RFC 9112 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Names in lower case, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    pub framing: Framing,
    /// The server will close the connection after this answer.
    pub close: bool,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP answer: {msg}"))
}

/// Writes one request: `path` is origin-form (`/devices/x?y`), `host` the Host header; a body
/// always gets its Content-Length, and so does a POST/PUT without one.
pub fn write_request(
    w: &mut dyn Write,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let clean = |s: &str| !s.bytes().any(|b| b == b'\r' || b == b'\n');
    if !clean(path) || !clean(host) || headers.iter().any(|(n, v)| !clean(n) || !clean(v)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a line break in a request line or header",
        ));
    }
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (n, v) in headers {
        head.push_str(n);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// Reads one answer's head, skipping interim (1xx) answers. `head_request`: the request was a
/// HEAD (no body whatever the headers say).
pub fn read_head(r: &mut dyn BufRead, head_request: bool) -> io::Result<Head> {
    loop {
        let head = read_one_head(r, head_request)?;
        if !(100..200).contains(&head.status) {
            return Ok(head);
        }
    }
}

fn read_line(r: &mut dyn BufRead, budget: &mut usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let n = r.take(*budget as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "HTTP answer: connection closed before the head ended",
        ));
    }
    if n > *budget {
        return Err(bad("head too long"));
    }
    *budget -= n;
    if line.pop() != Some(b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "HTTP answer: connection closed inside the head",
        ));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

fn read_one_head(r: &mut dyn BufRead, head_request: bool) -> io::Result<Head> {
    let mut budget = MAX_HEAD;
    let status_line = read_line(r, &mut budget)?;
    let status = parse_status_line(&status_line)?;
    let http10 = status_line.starts_with(b"HTTP/1.0 ");
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut budget)?;
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(bad("folded header line"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| bad("header line without ':'"))?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| wire::is_tchar(b)) {
            return Err(bad("bad header name"));
        }
        let value = String::from_utf8_lossy(wire::trim(&line[colon + 1..])).into_owned();
        headers.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
    }
    fn get<'h>(headers: &'h [(String, String)], n: &'h str) -> impl Iterator<Item = &'h String> {
        headers.iter().filter(move |(k, _)| k == n).map(|(_, v)| v)
    }
    let chunked =
        get(&headers, "transfer-encoding").any(|v| wire::contains_token(v.as_bytes(), "chunked"));
    let mut length: Option<u64> = None;
    for v in get(&headers, "content-length") {
        let n = wire::parse_length(v.trim().as_bytes()).map_err(|_| bad("bad Content-Length"))?;
        if length.is_some_and(|l| l != n) {
            return Err(bad("Content-Length given twice, differently"));
        }
        length = Some(n);
    }
    let close = get(&headers, "connection").any(|v| wire::contains_token(v.as_bytes(), "close"))
        || (http10
            && !get(&headers, "connection")
                .any(|v| wire::contains_token(v.as_bytes(), "keep-alive")));
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else if chunked {
        // with both, chunked frames the body (RFC 9112 6.3) and the connection is not reused
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    let close = close || framing == Framing::Close || (chunked && length.is_some());
    Ok(Head {
        status,
        headers,
        framing,
        close,
    })
}

fn parse_status_line(line: &[u8]) -> io::Result<u16> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))
        .ok_or_else(|| bad("not an HTTP/1.x status line"))?;
    match rest {
        [a, b, c, tail @ ..]
            if [a, b, c].iter().all(|d| d.is_ascii_digit())
                && (tail.is_empty() || tail[0] == b' ') =>
        {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => Err(bad("bad status code")),
    }
}

/// The body of an answer as a reader: it ends where the framing says, and a body cut short is
/// an `UnexpectedEof` error, never a silent short read.
pub struct Body<'a> {
    r: &'a mut dyn BufRead,
    framing: Framing,
    /// Bytes left in the current chunk or the whole body.
    left: u64,
    done: bool,
}

impl<'a> Body<'a> {
    pub fn new(r: &'a mut dyn BufRead, framing: Framing) -> Body<'a> {
        let (left, done) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(n) => (n, n == 0),
            Framing::Chunked | Framing::Close => (0, false),
        };
        Body {
            r,
            framing,
            left,
            done,
        }
    }

    /// The whole body, refusing one longer than `max` bytes.
    pub fn read_all(mut self, max: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        (&mut self).take(max + 1).read_to_end(&mut out)?;
        if out.len() as u64 > max {
            return Err(bad(&format!("body over {max} bytes")));
        }
        Ok(out)
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let mut budget = MAX_HEAD;
        let line = read_line(self.r, &mut budget)?;
        let size = wire::parse_chunk_size(&line).map_err(|_| bad("bad chunk size"))?;
        if size == 0 {
            // trailers, up to the empty line
            while !read_line(self.r, &mut budget)?.is_empty() {}
            self.done = true;
        }
        self.left = size;
        Ok(())
    }

    fn chunk_end(&mut self) -> io::Result<()> {
        let mut crlf = [0u8; 2];
        self.r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
        Ok(())
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.done {
                return Ok(0);
            }
            match self.framing {
                Framing::Empty => return Ok(0),
                Framing::Close => {
                    let n = self.r.read(buf)?;
                    self.done = n == 0;
                    return Ok(n);
                }
                Framing::Length(_) | Framing::Chunked if self.left == 0 => {
                    // only chunked gets here: a Length body of 0 left is done
                    self.next_chunk()?;
                    continue;
                }
                Framing::Length(_) | Framing::Chunked => {
                    let want = buf
                        .len()
                        .min(usize::try_from(self.left).unwrap_or(usize::MAX));
                    let n = self.r.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "HTTP answer: connection closed inside the body",
                        ));
                    }
                    self.left -= n as u64;
                    if self.left == 0 {
                        if self.framing == Framing::Chunked {
                            self.chunk_end()?;
                        } else {
                            self.done = true;
                        }
                    }
                    return Ok(n);
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
