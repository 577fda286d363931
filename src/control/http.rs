//! HTTP/1.1 requests parsed incrementally (bytes are fed as they arrive on a non-blocking
//! socket) and responses written. Pure: no I/O here.
//!
//! A body comes with `Content-Length` or in `chunked` transfer coding (decoded here, piece by
//! piece, so both feed the server's sinks the same way). Any other coding (`identity`, which
//! upstream's `pvcontrol objects put` sends) counts as absent, as in libevent, upstream's
//! server. Refused on purpose: `chunked` combined with another coding (501), obsolete header
//! folding, HTTP versions other than 1.0 and 1.1.

/// Whole head (request line + headers) limit.
pub const MAX_HEAD: usize = 8192;
/// Request line limit.
pub const MAX_LINE: usize = 2048;
/// Path segments (upstream splits on `/` into at most 10).
pub const MAX_SEGMENTS: usize = 10;
/// A chunk's size line, extensions included.
pub const MAX_CHUNK_LINE: usize = 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    /// Any other token: routes answer "Method not supported".
    Other,
}

impl Method {
    fn parse(s: &[u8]) -> Method {
        match s {
            b"GET" => Method::Get,
            b"PUT" => Method::Put,
            b"POST" => Method::Post,
            b"DELETE" => Method::Delete,
            _ => Method::Other,
        }
    }
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    /// The path as sent, without the query string (for "unknown endpoint: <uri>").
    pub path: String,
    /// Percent-decoded non-empty segments of the path.
    pub segments: Vec<String>,
    pub content_length: u64,
    /// The body comes in chunked transfer coding (`content_length` is 0 then): its length is
    /// known only at its end.
    pub chunked: bool,
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1.
    pub expect_continue: bool,
}

/// A request the parser refuses: answered with `status` and `{"Error": msg}`, then the
/// connection closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub msg: &'static str,
}

fn err<T>(status: u16, msg: &'static str) -> Result<T, HttpError> {
    Err(HttpError { status, msg })
}

/// What one `feed` call produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress<'a> {
    /// Every byte given was consumed; more are needed.
    More,
    /// The head is complete; the body (`content_length` bytes) follows.
    Head(Head),
    /// A piece of the body (decoded when chunked).
    Body(&'a [u8]),
    /// The request is complete; the parser is ready for the next one.
    Done,
}

enum State {
    Head,
    Body(u64),
    /// Chunked: the size line of the next chunk (gathered in `line`).
    ChunkSize,
    /// Chunked: data bytes left in this chunk.
    ChunkData(u64),
    /// Chunked: the CRLF closing a chunk's data.
    ChunkEnd,
    /// Chunked: trailer fields (read and dropped) until an empty line.
    Trailer,
    /// Body delivered: report `Done` once.
    End,
}

/// Incremental request parser: `feed` until `More`, keep the unconsumed rest for later.
pub struct Parser {
    state: State,
    /// The head, then the current chunk-size or trailer line.
    head: Vec<u8>,
    line_start: usize,
    /// Trailer bytes so far (bounded like a head).
    trailer: usize,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser {
            state: State::Head,
            head: Vec::new(),
            line_start: 0,
            trailer: 0,
        }
    }

    /// True between requests: the last one was received whole (its `Done` may still be
    /// pending) and nothing of the next one has arrived.
    pub fn idle(&self) -> bool {
        match self.state {
            State::Head => self.head.is_empty(),
            State::Body(0) | State::End => true,
            _ => false,
        }
    }

    /// Consumes a prefix of `input`; returns its length and what it completed.
    pub fn feed<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Progress<'a>), HttpError> {
        match self.state {
            State::End => {
                self.state = State::Head;
                Ok((0, Progress::Done))
            }
            State::Body(0) => {
                self.state = State::Head;
                Ok((0, Progress::Done))
            }
            State::Body(left) => {
                if input.is_empty() {
                    return Ok((0, Progress::More));
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len());
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::End
                } else {
                    State::Body(left)
                };
                Ok((n, Progress::Body(input.get(..n).unwrap_or_default())))
            }
            State::Head => self.feed_head(input),
            _ => self.feed_chunked(input),
        }
    }

    /// Chunked coding: data as `Body` pieces, size lines, chunk ends and trailers consumed.
    fn feed_chunked<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Progress<'a>), HttpError> {
        let mut i = 0;
        loop {
            let rest = input.get(i..).unwrap_or_default();
            if let State::ChunkData(left) = self.state {
                if rest.is_empty() {
                    return Ok((i, Progress::More));
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                self.state = match left - n as u64 {
                    0 => State::ChunkEnd,
                    l => State::ChunkData(l),
                };
                return Ok((i + n, Progress::Body(rest.get(..n).unwrap_or_default())));
            }
            let Some(&b) = rest.first() else {
                return Ok((i, Progress::More));
            };
            i += 1;
            if self.chunk_byte(b)? {
                self.state = State::Head;
                return Ok((i, Progress::Done));
            }
        }
    }

    /// One byte outside chunk data; true when the body (trailer included) is complete.
    fn chunk_byte(&mut self, b: u8) -> Result<bool, HttpError> {
        if b != b'\n' {
            self.head.push(b);
            let bad = match self.state {
                State::ChunkSize => self.head.len() > MAX_CHUNK_LINE,
                State::ChunkEnd => self.head.as_slice() != b"\r",
                _ => false,
            };
            if bad {
                return err(400, "Bad chunk");
            }
            if matches!(self.state, State::Trailer) {
                self.trailer += 1;
                if self.trailer > MAX_HEAD {
                    return err(431, "Request header fields too large");
                }
            }
            return Ok(false);
        }
        let line = std::mem::take(&mut self.head);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        match self.state {
            State::ChunkSize => {
                self.state = match parse_chunk_size(line)? {
                    0 => State::Trailer,
                    n => State::ChunkData(n),
                }
            }
            State::ChunkEnd => self.state = State::ChunkSize,
            _ if line.is_empty() => return Ok(true),
            _ => self.trailer += 1,
        }
        Ok(false)
    }

    fn feed_head<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Progress<'a>), HttpError> {
        for (i, &b) in input.iter().enumerate() {
            // empty lines before a request line are skipped (RFC 9112 2.2)
            if self.head.is_empty() && (b == b'\r' || b == b'\n') {
                continue;
            }
            self.head.push(b);
            if b != b'\n' {
                if self.line_start == 0 && self.head.len() > MAX_LINE {
                    return err(414, "Request line too long");
                }
                if self.head.len() > MAX_HEAD {
                    return err(431, "Request header fields too large");
                }
                continue;
            }
            let line = self.head.get(self.line_start..).unwrap_or_default();
            let empty = line == b"\n" || line == b"\r\n";
            self.line_start = self.head.len();
            if empty {
                let head = parse_head(&self.head)?;
                self.head.clear();
                self.line_start = 0;
                self.trailer = 0;
                self.state = if head.chunked {
                    State::ChunkSize
                } else {
                    State::Body(head.content_length)
                };
                return Ok((i + 1, Progress::Head(head)));
            }
        }
        Ok((input.len(), Progress::More))
    }
}

pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or_default()
}

fn parse_head(raw: &[u8]) -> Result<Head, HttpError> {
    let mut lines = raw
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() => (m, t, v),
        _ => return err(400, "Unsupported protocol"),
    };
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        v if v.starts_with(b"HTTP/") => return err(505, "HTTP version not supported"),
        _ => return err(400, "Unsupported protocol"),
    };
    if !method.iter().all(u8::is_ascii_uppercase) {
        return err(400, "Unsupported protocol");
    }
    let (path, segments) = parse_target(target)?;
    let mut head = Head {
        method: Method::parse(method),
        path,
        segments,
        content_length: 0,
        chunked: false,
        keep_alive: http11,
        expect_continue: false,
    };
    let mut seen_length = false;
    let mut other_coding = false;
    for l in lines {
        if l.is_empty() {
            break;
        }
        if l.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
            return err(400, "Obsolete header folding");
        }
        let colon = match l.iter().position(|&b| b == b':') {
            Some(c) if c > 0 => c,
            _ => return err(400, "Bad header"),
        };
        let name = l.get(..colon).unwrap_or_default();
        let value = trim(l.get(colon + 1..).unwrap_or_default());
        // a name is a token; a value has no control byte but HTAB (RFC 9110 5.1, 5.5)
        if !name.iter().all(|&b| is_tchar(b))
            || value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return err(400, "Bad header");
        }
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        if is("content-length") {
            let n = parse_length(value)?;
            if seen_length && n != head.content_length {
                return err(400, "Conflicting Content-Length");
            }
            seen_length = true;
            head.content_length = n;
        } else if is("transfer-encoding") {
            // libevent's rule: only `chunked` is a coding, the rest (`identity`) is absent
            for t in value.split(|&b| b == b',').map(trim) {
                if t.eq_ignore_ascii_case(b"chunked") {
                    head.chunked = true;
                } else if !t.is_empty() && !t.eq_ignore_ascii_case(b"identity") {
                    other_coding = true;
                }
            }
        } else if is("connection") {
            if contains_token(value, "close") {
                head.keep_alive = false;
            } else if contains_token(value, "keep-alive") {
                head.keep_alive = true;
            }
        } else if is("expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return err(417, "Expectation not supported");
            }
            head.expect_continue = http11;
        } else if is("host") && !host_ok(value) {
            return err(400, "Host not allowed");
        }
    }
    if head.chunked && other_coding {
        return err(501, "Transfer-Encoding not supported");
    }
    if head.chunked && seen_length {
        // which one frames the body would be a guess (request smuggling)
        return err(400, "Both Content-Length and chunked");
    }
    Ok(head)
}

pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A chunk-size line: hex digits, then optional `;extensions` (ignored).
pub(crate) fn parse_chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let size = line.split(|&b| b == b';').next().unwrap_or_default();
    let size = trim(size);
    if size.is_empty() || size.len() > 16 {
        return err(400, "Bad chunk size");
    }
    size.iter().try_fold(0u64, |n, &d| match hex(d) {
        Some(v) => Ok(n << 4 | u64::from(v)),
        None => err(400, "Bad chunk size"),
    })
}

/// Upstream accepts `Host:` absent, empty or `localhost` (here also with a port).
fn host_ok(v: &[u8]) -> bool {
    let host = v.split(|&b| b == b':').next().unwrap_or_default();
    host.is_empty() || host.eq_ignore_ascii_case(b"localhost")
}

pub(crate) fn contains_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

pub(crate) fn parse_length(v: &[u8]) -> Result<u64, HttpError> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return err(400, "Bad Content-Length");
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one path segment. Refuses bad escapes, non-UTF-8, and results a route could
/// misuse as a file name: `.`, `..`, or containing `/` or NUL.
pub fn percent_decode(seg: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(seg.len());
    let mut i = 0;
    while let Some(&b) = seg.get(i) {
        if b == b'%' {
            let h = hex(*seg.get(i + 1)?)?;
            let l = hex(*seg.get(i + 2)?)?;
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    if s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        return None;
    }
    Some(s)
}

fn parse_target(target: &[u8]) -> Result<(String, Vec<String>), HttpError> {
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path.first() != Some(&b'/') || !path.iter().all(|b| b.is_ascii_graphic()) {
        return err(400, "Bad request target");
    }
    let mut segments = Vec::new();
    for seg in path.split(|&b| b == b'/').filter(|s| !s.is_empty()) {
        if segments.len() == MAX_SEGMENTS {
            return err(400, "Too many path segments");
        }
        match percent_decode(seg) {
            Some(s) => segments.push(s),
            None => return err(400, "Bad path segment"),
        }
    }
    // graphic ASCII only, so this is UTF-8
    let path = String::from_utf8_lossy(path).into_owned();
    Ok((path, segments))
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        _ => "Unknown",
    }
}

/// A complete response; the server adds `Content-Length` and `Connection`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Extra headers, e.g. `("Retry-After", "120")`.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// A file sent after `body`, read piece by piece as the socket takes it (GET of a big
    /// object): (path, length).
    pub file: Option<(std::path::PathBuf, u64)>,
}

pub const JSON: &str = "application/json";

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: Vec<u8>) -> Response {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body,
            file: None,
        }
    }

    /// 200 with the file's bytes as the body, streamed by the server.
    pub fn file(content_type: &'static str, path: std::path::PathBuf, len: u64) -> Response {
        Response {
            file: Some((path, len)),
            ..Response::new(200, content_type, Vec::new())
        }
    }

    /// Bytes of the body, the streamed file included.
    pub fn len(&self) -> u64 {
        self.body.len() as u64 + self.file.as_ref().map_or(0, |f| f.1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// 200 with an empty JSON-typed body (upstream's "success without payload").
    pub fn ok() -> Response {
        Response::new(200, JSON, Vec::new())
    }

    pub fn json(status: u16, body: String) -> Response {
        Response::new(status, JSON, body.into_bytes())
    }

    /// `{"Error":"<msg>"}`.
    /// A 500: the detail (paths of the host's storage) goes to the log, not to the caller,
    /// which may be a container.
    pub fn internal(e: &dyn std::fmt::Display) -> Response {
        crate::pvlog!(Error, "ctrl", "{e}");
        Response::error(500, "Internal error, see the device log")
    }

    pub fn error(status: u16, msg: &str) -> Response {
        let mut body = String::from("{\"Error\":");
        crate::json::escape_str(msg, &mut body);
        body.push('}');
        Response::json(status, body)
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Response {
        self.headers.push((name, value));
        self
    }

    /// Status line, headers and body into `out`.
    pub fn write(&self, keep_alive: bool, out: &mut Vec<u8>) {
        let mut h = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.len()
        );
        for (k, v) in &self.headers {
            // header values come from the device, never from a request; still no CR/LF
            if !v.contains(['\r', '\n']) {
                h.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        h.push_str(if keep_alive {
            "\r\n"
        } else {
            "Connection: close\r\n\r\n"
        });
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&self.body);
    }
}

impl From<HttpError> for Response {
    fn from(e: HttpError) -> Response {
        Response::error(e.status, e.msg)
    }
}

/// Fuzz entry: the parser over `data`, fed in pieces whose sizes come from the data itself,
/// must return normally whatever it is given.
pub fn fuzz_request(data: &[u8]) {
    let mut p = Parser::new();
    let step = usize::from(data.first().copied().unwrap_or(7) % 32) + 1;
    // what is left of a Content-Length body; None for a chunked one
    let mut body = Some(0u64);
    for piece in data.chunks(step) {
        let mut rest = piece;
        loop {
            match p.feed(rest) {
                Ok((n, prog)) => {
                    rest = rest.get(n..).unwrap_or_default();
                    match prog {
                        Progress::More => break,
                        Progress::Head(h) => {
                            assert!(h.segments.len() <= MAX_SEGMENTS);
                            assert!(!h.chunked || h.content_length == 0);
                            body = (!h.chunked).then_some(h.content_length);
                        }
                        Progress::Body(b) => {
                            assert!(!b.is_empty());
                            if let Some(left) = body.as_mut() {
                                assert!(b.len() as u64 <= *left);
                                *left -= b.len() as u64;
                            }
                        }
                        Progress::Done => assert!(body.is_none_or(|b| b == 0)),
                    }
                }
                Err(e) => {
                    let _ = Response::from(e);
                    return;
                }
            }
        }
    }
}
