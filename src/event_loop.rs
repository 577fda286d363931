//! The one poll loop of PID 1 (ARCHITECTURE "Process model"): a signalfd, one timerfd armed at
//! the nearest deadline, an eventfd inbox for worker threads, and the fds of sockets and pipes.
//! It only gathers what happened; the device decides what to do.
use crate::sys::event as ev;
use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// What woke the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A signal (number, sender pid).
    Signal(i32, i32),
    /// A deadline set with [`EventLoop::at`] passed.
    Deadline(u64),
    /// A watched fd is ready (token, revents).
    Fd(u64, i16),
    /// A worker thread posted to the inbox.
    Inbox,
}

/// A handle for cancelling a deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadlineId(u64, u64);

pub struct EventLoop {
    sigfd: OwnedFd,
    timer: OwnedFd,
    inbox: OwnedFd,
    /// (when in monotonic ms, sequence) -> token; ordered, so the first is the nearest.
    deadlines: BTreeMap<(u64, u64), u64>,
    seq: u64,
    watched: Vec<(RawFd, i16, u64)>,
    armed: u64,
    /// When the last poll returned (monotonic us); 0 before the first.
    woke_us: u64,
    last_stall_us: u64,
    max_stall_us: u64,
}

/// The signals PID 1 handles itself; blocked so they arrive only through the signalfd.
pub const SIGNALS: [i32; 6] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGPWR,
    libc::SIGUSR1,
];

impl EventLoop {
    pub fn new(signals: &[i32]) -> io::Result<EventLoop> {
        ev::block_signals(signals)?;
        Ok(EventLoop {
            sigfd: ev::signalfd(signals)?,
            timer: ev::timerfd()?,
            inbox: ev::eventfd()?,
            deadlines: BTreeMap::new(),
            seq: 0,
            watched: Vec::new(),
            armed: 0,
            woke_us: 0,
            last_stall_us: 0,
            max_stall_us: 0,
        })
    }

    pub fn now_ms() -> u64 {
        ev::monotonic_ms()
    }

    /// A deadline `after_ms` from now, reported as `Wake::Deadline(token)`.
    pub fn after(&mut self, after_ms: u64, token: u64) -> DeadlineId {
        self.at(Self::now_ms().saturating_add(after_ms), token)
    }

    pub fn at(&mut self, when_ms: u64, token: u64) -> DeadlineId {
        self.seq += 1;
        self.deadlines.insert((when_ms, self.seq), token);
        DeadlineId(when_ms, self.seq)
    }

    pub fn cancel(&mut self, id: DeadlineId) {
        self.deadlines.remove(&(id.0, id.1));
    }

    pub fn pending_deadlines(&self) -> usize {
        self.deadlines.len()
    }

    /// Watches `fd` for `events` (POLLIN, POLLOUT...), reported with `token`.
    pub fn watch(&mut self, fd: RawFd, events: i16, token: u64) {
        self.unwatch(fd);
        self.watched.push((fd, events, token));
    }

    pub fn unwatch(&mut self, fd: RawFd) {
        self.watched.retain(|w| w.0 != fd);
    }

    /// The inbox's fd: a worker thread wakes the loop with `sys::event::eventfd_signal(fd)`.
    pub fn inbox_fd(&self) -> RawFd {
        self.inbox.as_raw_fd()
    }

    /// The longest the device took to handle one batch of wakes -- from `poll` returning in
    /// [`EventLoop::wait`] to the next call of `wait` -- since the start or the last
    /// [`EventLoop::reset_max_stall`]: how long supervision and pv-ctrl were held at worst.
    pub fn max_stall_us(&self) -> u64 {
        self.max_stall_us
    }

    /// The handling time of the last complete batch.
    pub fn last_stall_us(&self) -> u64 {
        self.last_stall_us
    }

    pub fn reset_max_stall(&mut self) {
        self.max_stall_us = 0;
    }

    /// Blocks until something happens; appends what happened to `out` (signals first, then
    /// due deadlines in time order, then fds). `max_wait_ms` bounds the wait (None = until an
    /// event).
    pub fn wait(&mut self, out: &mut Vec<Wake>, max_wait_ms: Option<u64>) -> io::Result<()> {
        if self.woke_us != 0 {
            self.last_stall_us = ev::monotonic_us().saturating_sub(self.woke_us);
            self.max_stall_us = self.max_stall_us.max(self.last_stall_us);
        }
        let next = self.deadlines.keys().next().map(|k| k.0).unwrap_or(0);
        if next != self.armed {
            // CLOCK_MONOTONIC starts near 0 after boot: 0 means "disarm", so use 1 at least
            ev::timerfd_set(&self.timer, if next == 0 { 0 } else { next.max(1) })?;
            self.armed = next;
        }
        let mut fds = vec![
            (self.sigfd.as_raw_fd(), libc::POLLIN),
            (self.timer.as_raw_fd(), libc::POLLIN),
            (self.inbox.as_raw_fd(), libc::POLLIN),
        ];
        fds.extend(self.watched.iter().map(|w| (w.0, w.1)));
        let timeout = max_wait_ms.map_or(-1, |m| m.min(i32::MAX as u64) as i32);
        let rev = ev::poll(&fds, timeout)?;
        self.woke_us = ev::monotonic_us();
        if rev.first().copied().unwrap_or(0) != 0 {
            while let Some((sig, pid)) = ev::read_signal(&self.sigfd)? {
                out.push(Wake::Signal(sig, pid));
            }
        }
        if rev.get(1).copied().unwrap_or(0) != 0 {
            ev::drain_counter(&self.timer)?;
            self.armed = 0;
        }
        let now = Self::now_ms();
        while let Some((&(when, seq), &token)) = self.deadlines.iter().next() {
            if when > now {
                break;
            }
            self.deadlines.remove(&(when, seq));
            out.push(Wake::Deadline(token));
        }
        if rev.get(2).copied().unwrap_or(0) != 0 && ev::drain_counter(&self.inbox)? > 0 {
            out.push(Wake::Inbox);
        }
        for (i, w) in self.watched.iter().enumerate() {
            let r = rev.get(i + 3).copied().unwrap_or(0);
            if r != 0 {
                out.push(Wake::Fd(w.2, r));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "event_loop_tests.rs"]
mod tests;
