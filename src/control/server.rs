//! The pv-ctrl listening socket and its connections, on the device's poll loop.
//!
//! Every socket is non-blocking and every connection is a small state machine, so no client can
//! hold the loop: at most `max_conns` connections (more are answered 503 and closed), one read
//! of at most `READ_CHUNK` bytes per wake, no reading while a response is unsent (pipelined
//! requests wait), and one deadline per request covering idle time, head, body and response.
//! The deadline grows with the announced body and response sizes at `min_rate` bytes/s.
use super::http::{HttpError, Parser, Progress, Response};
use super::{BodySink, Caller, Plan, Request, Router, Ticket};
use crate::event_loop::{DeadlineId, EventLoop, Wake};
use crate::pvlog;
use crate::sys::{self, peer};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

const READ_CHUNK: usize = 16 * 1024;
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_conns: usize,
    /// Time for one request: idle wait, head, body and response.
    pub request_ms: u64,
    /// Bytes per second a body or response is granted on top of `request_ms`.
    pub min_rate: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 32,
            request_ms: 5000,
            min_rate: 1024 * 1024,
        }
    }
}

enum Body {
    None,
    Buffer(Vec<u8>),
    Stream(Box<dyn BodySink>),
}

struct Conn {
    fd: OwnedFd,
    caller: Caller,
    parser: Parser,
    req: Option<Request>,
    body: Body,
    /// Read but not yet parsed (only while a response is being sent).
    input: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    /// The rest of a streamed file body: the file and the bytes still owed.
    tail: Option<(std::fs::File, u64)>,
    close_after: bool,
    /// A response was queued since the last full send (re-arms the deadline).
    responded: bool,
    /// A request the router will answer later: its ticket and whether the connection stays.
    deferred: Option<(Ticket, bool)>,
    token: u64,
    deadline: DeadlineId,
    deadline_at: u64,
}

pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    limits: Limits,
    base: u64,
    conns: Vec<Option<Conn>>,
}

impl Server {
    pub fn bind(path: &Path) -> io::Result<Server> {
        Server::bind_with(path, Limits::default())
    }

    /// Binds `path` (a stale socket there is removed first) with mode 0666, so containers that
    /// see the rundir can connect; who they are is decided per connection.
    pub fn bind_with(path: &Path, limits: Limits) -> io::Result<Server> {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if m.file_type().is_socket() {
                std::fs::remove_file(path)?;
            }
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        let mut conns = Vec::new();
        conns.resize_with(limits.max_conns, || None);
        Ok(Server {
            listener,
            path: path.to_path_buf(),
            limits,
            base: 0,
            conns,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn connections(&self) -> usize {
        self.conns.iter().filter(|c| c.is_some()).count()
    }

    /// Watches the listener; the server uses tokens `token_base ..= token_base + max_conns`
    /// for its fds and deadlines.
    pub fn register(&mut self, lp: &mut EventLoop, token_base: u64) {
        self.base = token_base;
        lp.watch(self.listener.as_raw_fd(), libc::POLLIN, token_base);
    }

    /// Handles `wake` if it is one of the server's; false otherwise.
    pub fn handle(&mut self, lp: &mut EventLoop, wake: Wake, router: &mut dyn Router) -> bool {
        let token = match wake {
            Wake::Fd(t, _) | Wake::Deadline(t) => t,
            _ => return false,
        };
        let Some(off) = token.checked_sub(self.base) else {
            return false;
        };
        if off > self.conns.len() as u64 {
            return false;
        }
        if off == 0 {
            self.accept(lp);
            return true;
        }
        let slot = (off - 1) as usize;
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return true;
        };
        let keep = match wake {
            // a deadline of an earlier connection in this slot is not this one's
            Wake::Deadline(_) if EventLoop::now_ms() < c.deadline_at => true,
            Wake::Deadline(_) => {
                c.timeout();
                false
            }
            // watched for nothing while deferred: only a hang-up or an error wakes it
            Wake::Fd(..) if c.deferred.is_some() => false,
            _ => c.ready(lp, &self.limits, router),
        };
        if !keep {
            self.close(lp, slot);
        } else if let Some(Some(c)) = self.conns.get(slot) {
            let ev = if c.sent < c.out.len() {
                libc::POLLOUT
            } else if c.deferred.is_some() {
                0
            } else {
                libc::POLLIN
            };
            lp.watch(c.fd.as_raw_fd(), ev, self.base + 1 + slot as u64);
        }
        true
    }

    /// The answer to the deferred request `ticket`: queued on its connection, which the next
    /// loop wake writes (and then serves what the client pipelined behind it). False when
    /// the connection is gone meanwhile (closed by the client, or its limit passed): the
    /// answer is dropped.
    pub fn complete(&mut self, lp: &mut EventLoop, ticket: Ticket, resp: Response) -> bool {
        let base = self.base;
        let found = self.conns.iter_mut().enumerate().find_map(|(i, c)| {
            c.as_mut()
                .filter(|c| c.deferred.is_some_and(|d| d.0 == ticket))
                .map(|c| (i, c))
        });
        let Some((slot, c)) = found else {
            return false;
        };
        let keep = c.deferred.take().is_some_and(|d| d.1);
        // the response gets the time of a fresh request, not what is left of the wait
        c.set_deadline(
            lp,
            EventLoop::now_ms().saturating_add(self.limits.request_ms),
        );
        c.respond(lp, &self.limits, resp, keep);
        // writable at once: the wake sends it through the usual path
        lp.watch(c.fd.as_raw_fd(), libc::POLLOUT, base + 1 + slot as u64);
        true
    }

    fn close(&mut self, lp: &mut EventLoop, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot).and_then(Option::take) {
            lp.unwatch(c.fd.as_raw_fd());
            lp.cancel(c.deadline);
        }
    }

    fn accept(&mut self, lp: &mut EventLoop) {
        // bounded, so a connect storm cannot keep the loop here
        for _ in 0..64 {
            let fd = match peer::accept_nonblock(self.listener.as_fd()) {
                Ok(Some(fd)) => fd,
                Ok(None) => return,
                Err(e) => {
                    pvlog!(Warn, "ctrl", "accept on {}: {e}", self.path.display());
                    return;
                }
            };
            let Some(slot) = self.conns.iter().position(Option::is_none) else {
                // best effort: one non-blocking write, then close
                let mut out = Vec::new();
                Response::error(503, "Too many connections").write(false, &mut out);
                let _ = peer::send(fd.as_fd(), &out);
                continue;
            };
            let caller = match peer::peer_cred(fd.as_fd()) {
                Ok((pid, uid, _)) => Caller::of_pid(pid, uid),
                Err(_) => continue,
            };
            let token = self.base + 1 + slot as u64;
            let deadline_at = EventLoop::now_ms().saturating_add(self.limits.request_ms);
            let deadline = lp.at(deadline_at, token);
            lp.watch(fd.as_raw_fd(), libc::POLLIN, token);
            if let Some(s) = self.conns.get_mut(slot) {
                *s = Some(Conn {
                    fd,
                    caller,
                    parser: Parser::new(),
                    req: None,
                    body: Body::None,
                    input: Vec::new(),
                    out: Vec::new(),
                    tail: None,
                    sent: 0,
                    close_after: false,
                    responded: false,
                    deferred: None,
                    token,
                    deadline,
                    deadline_at,
                });
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Conn {
    fn set_deadline(&mut self, lp: &mut EventLoop, at: u64) {
        lp.cancel(self.deadline);
        self.deadline_at = at;
        self.deadline = lp.at(at, self.token);
    }

    /// The deadline passed: tell the client if the socket takes it; the caller closes.
    fn timeout(&mut self) {
        let resp = if self.deferred.is_some() {
            Response::error(503, "No answer in time")
        } else if self.out.is_empty() && !self.parser.idle() {
            Response::error(408, "Request timeout")
        } else {
            return;
        };
        let mut out = Vec::new();
        resp.write(false, &mut out);
        let _ = peer::send(self.fd.as_fd(), &out);
    }

    /// The socket is ready. False: close the connection.
    fn ready(&mut self, lp: &mut EventLoop, limits: &Limits, router: &mut dyn Router) -> bool {
        if self.sent < self.out.len() || !self.input.is_empty() {
            return self.process(lp, limits, router, &[]);
        }
        let mut buf = [0u8; READ_CHUNK];
        match sys::read(self.fd.as_raw_fd(), &mut buf) {
            Ok(0) => false,
            Ok(n) => self.process(lp, limits, router, buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }

    /// Parses and answers what was read, sending as much as the socket takes. A request
    /// pipelined behind a response waits (in `input`) until that response is sent.
    fn process(
        &mut self,
        lp: &mut EventLoop,
        limits: &Limits,
        router: &mut dyn Router,
        input: &[u8],
    ) -> bool {
        self.input.extend_from_slice(input);
        loop {
            let input = std::mem::take(&mut self.input);
            let pos = self.parse(lp, limits, router, &input);
            self.input = input.get(pos..).unwrap_or_default().to_vec();
            loop {
                while self.sent < self.out.len() {
                    match peer::send(
                        self.fd.as_fd(),
                        self.out.get(self.sent..).unwrap_or_default(),
                    ) {
                        Ok(n) => self.sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                        Err(_) => return false,
                    }
                }
                self.out.clear();
                self.sent = 0;
                if !self.refill() {
                    break;
                }
            }
            if self.close_after {
                return false;
            }
            if self.responded {
                // the next request gets its own time
                self.responded = false;
                let at = EventLoop::now_ms().saturating_add(limits.request_ms);
                self.set_deadline(lp, at);
            }
            // a deferred request holds what was pipelined behind it until it is answered
            if self.input.is_empty() || self.deferred.is_some() {
                return true;
            }
        }
    }

    /// The next piece of a streamed file into `out`; false when there is none. A file that
    /// ends early or fails to read closes the connection: its length was already promised.
    fn refill(&mut self) -> bool {
        use std::io::Read;
        let Some((f, left)) = self.tail.as_mut() else {
            return false;
        };
        let want = (*left).min(64 * 1024) as usize;
        self.out.resize(want, 0);
        match f.read(&mut self.out) {
            Ok(n) if n > 0 => {
                self.out.truncate(n);
                *left -= n as u64;
                if *left == 0 {
                    self.tail = None;
                }
                true
            }
            _ => {
                self.out.clear();
                self.tail = None;
                self.close_after = true;
                false
            }
        }
    }

    /// Feeds `input` to the parser until it needs more or a response is queued; returns the
    /// number of bytes consumed.
    fn parse(
        &mut self,
        lp: &mut EventLoop,
        limits: &Limits,
        router: &mut dyn Router,
        input: &[u8],
    ) -> usize {
        let mut pos = 0;
        while (self.out.is_empty() || self.out == CONTINUE) && self.deferred.is_none() {
            let rest = input.get(pos..).unwrap_or_default();
            let (n, progress) = match self.parser.feed(rest) {
                Ok(r) => r,
                Err(e) => {
                    self.respond(lp, limits, e.into(), false);
                    break;
                }
            };
            pos += n;
            match progress {
                Progress::More => break,
                Progress::Head(head) => {
                    let req = Request {
                        caller: self.caller.clone(),
                        head,
                    };
                    if let Err(resp) = self.start(lp, limits, router, req) {
                        self.respond(lp, limits, resp, false);
                    }
                }
                Progress::Body(chunk) => {
                    let res = match &mut self.body {
                        Body::Buffer(b) => {
                            b.extend_from_slice(chunk);
                            Ok(())
                        }
                        Body::Stream(s) => s.write(chunk),
                        Body::None => Ok(()),
                    };
                    if let Err(resp) = res {
                        self.respond(lp, limits, resp, false);
                    }
                }
                Progress::Done => {
                    let body = std::mem::replace(&mut self.body, Body::None);
                    let Some(req) = self.req.take() else {
                        continue;
                    };
                    let resp = match body {
                        Body::Buffer(b) => router.finish(&req, b),
                        Body::Stream(s) => s.finish(),
                        Body::None => continue,
                    };
                    self.respond(lp, limits, resp, req.head.keep_alive);
                }
            }
        }
        pos
    }

    /// A head arrived: ask the router, check the body against its limit.
    fn start(
        &mut self,
        lp: &mut EventLoop,
        limits: &Limits,
        router: &mut dyn Router,
        req: Request,
    ) -> Result<(), Response> {
        let len = req.head.content_length;
        let (body, limit) = match router.head(&req) {
            Plan::Reply(resp) => {
                // no body to skip: the connection may stay
                if len == 0 {
                    self.respond(lp, limits, resp, req.head.keep_alive);
                    return Ok(());
                }
                return Err(resp);
            }
            Plan::Buffer(limit) => (Body::Buffer(Vec::new()), limit as u64),
            Plan::Stream(sink, limit) => (Body::Stream(sink), limit),
            Plan::Defer { ticket, limit_ms } => {
                self.deferred = Some((ticket, req.head.keep_alive && len == 0));
                let at = EventLoop::now_ms().saturating_add(limit_ms);
                self.set_deadline(lp, at);
                return Ok(());
            }
        };
        if len > limit {
            return Err(HttpError {
                status: 413,
                msg: "Request body too large",
            }
            .into());
        }
        if req.head.expect_continue && len > 0 {
            self.out.extend_from_slice(CONTINUE);
        }
        let extra = len.saturating_mul(1000) / limits.min_rate.max(1);
        let at = self.deadline_at.saturating_add(extra);
        self.set_deadline(lp, at);
        self.body = body;
        self.req = Some(req);
        Ok(())
    }

    /// Queues `resp`; without `keep` the connection closes once it is sent.
    fn respond(&mut self, lp: &mut EventLoop, limits: &Limits, mut resp: Response, keep: bool) {
        if let Some((path, len)) = resp.file.clone() {
            match std::fs::File::open(&path) {
                Ok(f) => self.tail = Some((f, len)),
                Err(e) => resp = Response::error(500, &format!("open {}: {e}", path.display())),
            }
        }
        if !keep {
            self.close_after = true;
            self.req = None;
            self.body = Body::None;
        }
        self.responded = true;
        resp.write(keep, &mut self.out);
        let extra = resp.len().saturating_mul(1000) / limits.min_rate.max(1);
        if extra > 0 {
            let at = self.deadline_at.saturating_add(extra);
            self.set_deadline(lp, at);
        }
    }
}
