//! The pv-ctrl listening socket and its connections, on the device's poll loop.
//!
//! Every socket is non-blocking and every connection is a small state machine, so no client can
//! hold the loop: one read of at most `READ_CHUNK` bytes per wake, no reading while a response
//! is unsent (pipelined requests wait). No caller can hold the server either:
//! - slots: a caller that is not the host or a mgmt container holds at most `share`
//!   connections and never the last `reserve` free ones ([`admit`]); an idle connection is
//!   reclaimed for the host or a mgmt caller when none is free;
//! - time: a head must be complete `head_ms` after its first byte, a body or response must
//!   move `min_rate` bytes/s over each `window_ms`, an idle connection lasts `idle_ms`
//!   ([`timing`]) -- a slow sender is dropped within a window, not at a fixed deadline;
//! - memory: bodies buffered and answers queued by all connections together stay within
//!   `budget` bytes (503 beyond); large bodies are streamed to storage by their sinks.
use super::http::{Parser, Progress, Response};
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
/// Answers up to this size are always queued: the budget is for the large ones.
const SMALL_ANSWER: usize = 16 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connection slots.
    pub max_conns: usize,
    /// Slots only the host and mgmt containers may take.
    pub reserve: usize,
    /// Most slots one other caller (a non-mgmt container) may hold.
    pub share: usize,
    /// Most slots one mgmt container may hold (the host has no cap).
    pub mgmt_share: usize,
    /// A connection with no request under way is closed after this.
    pub idle_ms: u64,
    /// A request head must be complete this long after its first byte.
    pub head_ms: u64,
    /// Bytes per second a body or a response must move, averaged over `window_ms`.
    pub min_rate: u64,
    pub window_ms: u64,
    /// Bytes all connections together may hold in memory for bodies and queued answers.
    pub budget: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_conns: 32,
            reserve: 8,
            share: 4,
            mgmt_share: 16,
            idle_ms: 5000,
            head_ms: 3000,
            min_rate: 1024,
            window_ms: 2000,
            budget: 4 << 20,
        }
    }
}

/// What a new connection gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// A free slot.
    Take,
    /// The slot of the oldest idle connection, which is closed.
    Reclaim,
    /// 503 and close.
    Refuse,
}

/// Who calls, for its share of the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Host,
    Mgmt,
    /// A container without the mgmt role, or an unidentified caller.
    Other,
}

/// The slot decision at accept: `free` slots are free, the caller of `class` holds `held`,
/// and an idle connection could be reclaimed (`idle`).
pub fn admit(l: &Limits, free: usize, held: usize, class: Class, idle: bool) -> Admit {
    match class {
        Class::Other if held < l.share && free > l.reserve => Admit::Take,
        Class::Other => Admit::Refuse,
        Class::Mgmt if held >= l.mgmt_share => Admit::Refuse,
        _ if free > 0 => Admit::Take,
        _ if idle => Admit::Reclaim,
        _ => Admit::Refuse,
    }
}

/// What a connection is doing, for its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No request under way (fresh, or kept alive between requests).
    Idle,
    /// Part of a request head arrived.
    Head,
    /// A body is read or an answer sent.
    Transfer,
    /// Waiting for a deferred answer until then (ms).
    Deferred(u64),
}

/// The next look at a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Look again at this time (ms).
    At(u64),
    /// The rate held over the window: a new window starts now, looked at then.
    Renew(u64),
    /// Too slow or too long: drop it.
    Drop,
}

/// The timing decision: a connection in `phase` since `since` (ms; the start of the current
/// window for a transfer) that moved `moved` bytes since then, at `now`.
pub fn timing(l: &Limits, phase: Phase, since: u64, moved: u64, now: u64) -> Verdict {
    let until = |at: u64| {
        if now >= at {
            Verdict::Drop
        } else {
            Verdict::At(at)
        }
    };
    match phase {
        Phase::Idle => until(since.saturating_add(l.idle_ms)),
        Phase::Head => until(since.saturating_add(l.head_ms)),
        Phase::Deferred(at) => until(at),
        Phase::Transfer => {
            let end = since.saturating_add(l.window_ms);
            if now < end {
                return Verdict::At(end);
            }
            let owed = l.min_rate.saturating_mul(now - since) / 1000;
            if moved >= owed {
                Verdict::Renew(now.saturating_add(l.window_ms))
            } else {
                Verdict::Drop
            }
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
    /// Body bytes received so far, and the most the plan takes.
    got: u64,
    limit: u64,
    /// Read but not yet parsed (only while a response is being sent).
    input: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    /// The rest of a streamed file body: the file and the bytes still owed.
    tail: Option<(std::fs::File, u64)>,
    close_after: bool,
    /// A request the router will answer later: its ticket, whether the connection stays, and
    /// until when it waits (ms).
    deferred: Option<(Ticket, bool, u64)>,
    /// The phase, since when (ms; a transfer's window start) and the bytes moved since.
    phase: Phase,
    since: u64,
    moved: u64,
    /// Memory this connection may hold: the budget less what the others hold.
    room: usize,
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
            self.accept(lp, router);
            return true;
        }
        let slot = (off - 1) as usize;
        let room = self.room(slot);
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return true;
        };
        c.room = room;
        let keep = match wake {
            // the phase's clock decides (a deadline of an earlier connection in this slot
            // finds this one's time not up)
            Wake::Deadline(_) => true,
            // watched for nothing while deferred: only a hang-up or an error wakes it
            Wake::Fd(..) if c.deferred.is_some() => false,
            _ => c.ready(router),
        };
        if !keep {
            self.close(lp, slot);
        } else if !c.rearm(lp, &self.limits) {
            // too slow or too long: said so if the socket takes it
            c.timeout();
            self.close(lp, slot);
        } else {
            c.watch(lp);
        }
        true
    }

    /// The memory the connection in `slot` may hold: the budget less what the others hold.
    fn room(&self, slot: usize) -> usize {
        let others: usize = self
            .conns
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != slot)
            .filter_map(|(_, c)| c.as_ref().map(Conn::held))
            .sum();
        self.limits.budget.saturating_sub(others)
    }

    /// The answer to the deferred request `ticket`: queued on its connection, which the next
    /// loop wake writes (and then serves what the client pipelined behind it). False when
    /// the connection is gone meanwhile (closed by the client, or its limit passed): the
    /// answer is dropped.
    pub fn complete(&mut self, lp: &mut EventLoop, ticket: Ticket, resp: Response) -> bool {
        let Some(slot) = self.conns.iter().position(|c| {
            c.as_ref()
                .is_some_and(|c| c.deferred.is_some_and(|d| d.0 == ticket))
        }) else {
            return false;
        };
        let room = self.room(slot);
        let Some(Some(c)) = self.conns.get_mut(slot) else {
            return false;
        };
        c.room = room;
        let keep = c.deferred.take().is_some_and(|d| d.1);
        c.respond(resp, keep);
        // the answer gets a transfer's time, not what is left of the wait
        if c.rearm(lp, &self.limits) {
            // writable at once: the wake sends it through the usual path
            c.watch(lp);
        } else {
            self.close(lp, slot);
        }
        true
    }

    fn close(&mut self, lp: &mut EventLoop, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot).and_then(Option::take) {
            lp.unwatch(c.fd.as_raw_fd());
            lp.cancel(c.deadline);
        }
    }

    fn accept(&mut self, lp: &mut EventLoop, router: &mut dyn Router) {
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
            let caller = match peer::peer_cred(fd.as_fd()) {
                Ok((pid, uid, _)) => Caller::of_pid(pid, uid),
                Err(_) => continue,
            };
            let class = if caller.is_host() {
                Class::Host
            } else if !caller.name.is_empty() && router.trusted(&caller) {
                Class::Mgmt
            } else {
                Class::Other
            };
            let live = || self.conns.iter().flatten();
            let held = live().filter(|c| c.caller.name == caller.name).count();
            let free = self.conns.iter().filter(|c| c.is_none()).count();
            // the idle connection that waited longest
            let idle = self
                .conns
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
                .filter(|(_, c)| c.phase == Phase::Idle)
                .min_by_key(|(_, c)| c.since)
                .map(|(i, _)| i);
            let slot = match admit(&self.limits, free, held, class, idle.is_some()) {
                Admit::Take => self.conns.iter().position(Option::is_none),
                Admit::Reclaim => {
                    if let Some(i) = idle {
                        self.close(lp, i);
                    }
                    idle
                }
                Admit::Refuse => None,
            };
            let Some(slot) = slot else {
                // best effort: one non-blocking write, then close
                let mut out = Vec::new();
                Response::error(503, "Too many connections").write(false, &mut out);
                let _ = peer::send(fd.as_fd(), &out);
                continue;
            };
            let token = self.base + 1 + slot as u64;
            let now = EventLoop::now_ms();
            let deadline_at = now.saturating_add(self.limits.idle_ms);
            let deadline = lp.at(deadline_at, token);
            lp.watch(fd.as_raw_fd(), libc::POLLIN, token);
            if let Some(s) = self.conns.get_mut(slot) {
                *s = Some(Conn {
                    fd,
                    caller,
                    parser: Parser::new(),
                    req: None,
                    body: Body::None,
                    got: 0,
                    limit: 0,
                    input: Vec::new(),
                    out: Vec::new(),
                    tail: None,
                    sent: 0,
                    close_after: false,
                    deferred: None,
                    phase: Phase::Idle,
                    since: now,
                    moved: 0,
                    room: 0,
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
    /// Bytes of memory held: a buffered body and queued output.
    fn held(&self) -> usize {
        let body = match &self.body {
            Body::Buffer(b) => b.capacity(),
            _ => 0,
        };
        body + self.out.capacity() + self.input.capacity()
    }

    fn phase_now(&self) -> Phase {
        if let Some((_, _, until)) = self.deferred {
            Phase::Deferred(until)
        } else if self.sent < self.out.len() || self.tail.is_some() || self.req.is_some() {
            Phase::Transfer
        } else if !self.parser.idle() {
            Phase::Head
        } else {
            Phase::Idle
        }
    }

    /// Follows the phase and arms the deadline its clock gives; false: the connection is too
    /// slow, or its time is up.
    fn rearm(&mut self, lp: &mut EventLoop, l: &Limits) -> bool {
        let now = EventLoop::now_ms();
        let phase = self.phase_now();
        if phase != self.phase {
            self.phase = phase;
            self.since = now;
            self.moved = 0;
        }
        let at = match timing(l, phase, self.since, self.moved, now) {
            Verdict::At(at) => at,
            Verdict::Renew(at) => {
                self.since = now;
                self.moved = 0;
                at
            }
            Verdict::Drop => return false,
        };
        if at != self.deadline_at {
            lp.cancel(self.deadline);
            self.deadline_at = at;
            self.deadline = lp.at(at, self.token);
        }
        true
    }

    fn watch(&self, lp: &mut EventLoop) {
        let ev = if self.sent < self.out.len() {
            libc::POLLOUT
        } else if self.deferred.is_some() {
            0
        } else {
            libc::POLLIN
        };
        lp.watch(self.fd.as_raw_fd(), ev, self.token);
    }

    /// The connection's time is up: tell the client why if the socket takes it.
    fn timeout(&mut self) {
        let resp = match self.phase {
            Phase::Deferred(_) => Response::error(503, "No answer in time"),
            Phase::Head => Response::error(408, "Request timeout"),
            Phase::Transfer if self.out.is_empty() && self.req.is_some() => {
                Response::error(408, "Request body too slow")
            }
            _ => return,
        };
        let mut out = Vec::new();
        resp.write(false, &mut out);
        let _ = peer::send(self.fd.as_fd(), &out);
    }

    /// The socket is ready. False: close the connection.
    fn ready(&mut self, router: &mut dyn Router) -> bool {
        if self.sent < self.out.len() || !self.input.is_empty() {
            return self.process(router, &[]);
        }
        let mut buf = [0u8; READ_CHUNK];
        match sys::read(self.fd.as_raw_fd(), &mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.moved += n as u64;
                self.process(router, buf.get(..n).unwrap_or_default())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }

    /// Parses and answers what was read, sending as much as the socket takes. A request
    /// pipelined behind a response waits (in `input`) until that response is sent.
    fn process(&mut self, router: &mut dyn Router, input: &[u8]) -> bool {
        self.input.extend_from_slice(input);
        loop {
            let input = std::mem::take(&mut self.input);
            let pos = self.parse(router, &input);
            self.input = input.get(pos..).unwrap_or_default().to_vec();
            loop {
                while self.sent < self.out.len() {
                    match peer::send(
                        self.fd.as_fd(),
                        self.out.get(self.sent..).unwrap_or_default(),
                    ) {
                        Ok(n) => {
                            self.sent += n;
                            self.moved += n as u64;
                        }
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
            if self.out.capacity() > SMALL_ANSWER {
                // a large answer's memory goes back to the budget once it is sent
                self.out = Vec::new();
            }
            if self.close_after {
                return false;
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
    fn parse(&mut self, router: &mut dyn Router, input: &[u8]) -> usize {
        let mut pos = 0;
        while (self.out.is_empty() || self.out == CONTINUE) && self.deferred.is_none() {
            let rest = input.get(pos..).unwrap_or_default();
            let (n, progress) = match self.parser.feed(rest) {
                Ok(r) => r,
                Err(e) => {
                    self.respond(e.into(), false);
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
                    if let Err(resp) = self.start(router, req) {
                        self.respond(resp, false);
                    }
                }
                Progress::Body(chunk) => {
                    if let Err(resp) = self.take(chunk) {
                        self.respond(resp, false);
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
                    self.respond(resp, req.head.keep_alive);
                }
            }
        }
        pos
    }

    /// A piece of the body, against the plan's limit and the memory budget.
    fn take(&mut self, chunk: &[u8]) -> Result<(), Response> {
        self.got = self.got.saturating_add(chunk.len() as u64);
        if self.got > self.limit {
            return Err(Response::error(413, "Request body too large"));
        }
        let room = self
            .room
            .saturating_sub(self.out.capacity() + self.input.capacity());
        match &mut self.body {
            Body::Buffer(b) if b.len() + chunk.len() > room => Err(busy()),
            Body::Buffer(b) => {
                // exact: a chunked body grows only by what came
                b.reserve_exact(chunk.len());
                b.extend_from_slice(chunk);
                Ok(())
            }
            Body::Stream(s) => s.write(chunk),
            Body::None => Ok(()),
        }
    }

    /// A head arrived: ask the router, check the body against its limit.
    fn start(&mut self, router: &mut dyn Router, req: Request) -> Result<(), Response> {
        let h = &req.head;
        let (len, has_body) = (h.content_length, h.chunked || h.content_length > 0);
        let (body, limit) = match router.head(&req) {
            Plan::Reply(resp) => {
                // no body to skip: the connection may stay
                if !has_body {
                    self.respond(resp, req.head.keep_alive);
                    return Ok(());
                }
                return Err(resp);
            }
            Plan::Buffer(limit) => {
                let limit = limit as u64;
                if len > limit {
                    return Err(Response::error(413, "Request body too large"));
                }
                let len = len as usize;
                if len > self.room.saturating_sub(self.held()) {
                    return Err(busy());
                }
                (Body::Buffer(Vec::with_capacity(len)), limit)
            }
            Plan::Stream(sink, limit) => (Body::Stream(sink), limit),
            Plan::Defer { ticket, limit_ms } => {
                let until = EventLoop::now_ms().saturating_add(limit_ms);
                self.deferred = Some((ticket, req.head.keep_alive && !has_body, until));
                return Ok(());
            }
        };
        if len > limit {
            return Err(Response::error(413, "Request body too large"));
        }
        if req.head.expect_continue && has_body {
            self.out.extend_from_slice(CONTINUE);
        }
        self.body = body;
        self.got = 0;
        self.limit = limit;
        self.req = Some(req);
        Ok(())
    }

    /// Queues `resp`; without `keep` the connection closes once it is sent. A large answer
    /// that does not fit the memory budget is replaced by a 503.
    fn respond(&mut self, mut resp: Response, keep: bool) {
        if resp.body.len() > SMALL_ANSWER && resp.body.len() > self.room.saturating_sub(self.held())
        {
            resp = busy();
        }
        if let Some((path, len)) = resp.file.clone() {
            match std::fs::File::open(&path) {
                Ok(f) => self.tail = Some((f, len)),
                Err(e) => resp = Response::internal(&format!("open {}: {e}", path.display())),
            }
        }
        if !keep {
            self.close_after = true;
            self.req = None;
            self.body = Body::None;
        }
        resp.write(keep, &mut self.out);
    }
}

/// The memory budget is used: the caller may try again.
fn busy() -> Response {
    Response::error(
        503,
        "Server busy: no memory for this request now. Try again",
    )
    .with_header("Retry-After", "1".into())
}
