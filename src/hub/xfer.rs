//! Parallel transfers of an update (reference 5.4): object metadata requests and object
//! downloads with at most `PH_UPDATER_TRANSFER_MAX_COUNT` in flight, as upstream's
//! `pv_pantahub_proto_get_objects{,_metadata}`. Each worker is a thread with a connection of
//! its own; it does only the network and the fetcher's crash-safe writes, and tells the
//! daemon's thread what happened over a channel. That thread decides everything -- which
//! object next ([`Plan`]), what a try's end means ([`next`]), when to report ([`Every`]) --
//! and makes every pv-ctrl call.

use super::fetch::{Fetcher, Got};
use super::session::{Dialer, Session};
use super::wire;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Upstream sets no bound; ours keeps a bad config from asking for thousands of threads.
pub const MAX_WORKERS: usize = 32;

/// How many workers for `jobs` transfers when `PH_UPDATER_TRANSFER_MAX_COUNT` is `max`: at
/// least one (upstream's minimum), at most [`MAX_WORKERS`], never more than there are jobs.
pub fn workers(max: u64, jobs: usize) -> usize {
    let max = usize::try_from(max).unwrap_or(MAX_WORKERS);
    max.clamp(1, MAX_WORKERS).min(jobs)
}

/// A transfer for a worker; `id` names it back in its events (the object's place in the
/// daemon's list).
pub enum Job {
    /// `GET /objects/<sha>`: the object's size and signed URL.
    Meta(usize, String),
    /// One try at an object from its signed URL, with the fetcher's state of it, lent.
    Fetch {
        id: usize,
        sha: String,
        size: u64,
        url: String,
        fetcher: Fetcher,
    },
}

/// Why an object's metadata did not come.
#[derive(Debug, PartialEq, Eq)]
pub enum MetaErr {
    /// 401: the session's token is no good any more.
    Unauthorized,
    Other(String),
}

/// What a worker tells the daemon's thread. `answered`: whether the Hub answered a request
/// (None: none was made), for online/offline.
pub enum Event {
    /// Bytes of an object held so far, as they grow.
    Bytes(usize, u64),
    /// An object's metadata: (size, signed URL), or why not.
    Meta {
        id: usize,
        res: Result<(u64, String), MetaErr>,
        answered: Option<bool>,
    },
    /// One try at an object ended; the lent fetcher comes back.
    Fetched {
        id: usize,
        got: Got,
        answered: Option<bool>,
        fetcher: Fetcher,
    },
}

/// What a worker needs: how to reach the Hub, the session's token, where objects go.
pub struct Ctx {
    pub dialer: Dialer,
    pub token: Option<String>,
    pub storage: PathBuf,
}

/// What the daemon's thread and the workers share: jobs one way, events the other, under one
/// lock. A mutex and condvars rather than std's channels, which cost more of the binary (as
/// in `crate::worker`).
#[derive(Default)]
struct Shared {
    q: Mutex<Queues>,
    job: Condvar,
    event: Condvar,
    abort: AtomicBool,
}

#[derive(Default)]
struct Queues {
    jobs: VecDeque<Job>,
    events: VecDeque<Event>,
    /// No more jobs: idle workers end.
    hung_up: bool,
    /// Workers running.
    workers: usize,
}

/// A lock that a panicked holder does not make unusable (the data are plain queues).
fn lock(m: &Mutex<Queues>) -> MutexGuard<'_, Queues> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn event(&self, e: Event) {
        lock(&self.q).events.push_back(e);
        self.event.notify_one();
    }
}

/// The daemon's side of the workers.
pub struct Pool<'a> {
    shared: &'a Shared,
}

impl Pool<'_> {
    pub fn send(&self, job: Job) {
        lock(&self.shared.q).jobs.push_back(job);
        self.shared.job.notify_one();
    }

    /// The next event, or Ok(None) after `wait`; Err when no worker is left.
    pub fn recv(&self, wait: Duration) -> Result<Option<Event>, String> {
        let until = Instant::now() + wait.min(Duration::from_secs(3600));
        let mut q = lock(&self.shared.q);
        loop {
            if let Some(e) = q.events.pop_front() {
                return Ok(Some(e));
            }
            if q.workers == 0 {
                return Err("no transfer worker is left".into());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            q = match self.shared.event.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Downloads in flight end at their next bytes (what arrived is kept): the update is
    /// given up.
    pub fn abort(&self) {
        self.shared.abort.store(true, Ordering::Relaxed);
    }
}

/// Runs `drive` on this thread with `n` workers; returns once they all ended. `drive` should
/// wait for the end of every job it sent (each ends in an event), so that no lent fetcher is
/// lost. Workers the system cannot start are fewer workers; `recv` answers Err when none
/// started.
pub fn with_workers<R>(n: usize, ctx: &Ctx, drive: impl FnOnce(&Pool) -> R) -> R {
    let shared = Shared::default();
    std::thread::scope(|sc| {
        for i in 0..n {
            lock(&shared.q).workers += 1;
            let shared = &shared;
            let started = std::thread::Builder::new()
                .name(format!("hub-xfer-{i}"))
                .spawn_scoped(sc, move || work(ctx, shared));
            if started.is_err() {
                lock(&shared.q).workers -= 1;
                break;
            }
        }
        let r = drive(&Pool { shared: &shared });
        lock(&shared.q).hung_up = true;
        shared.job.notify_all();
        r
    })
}

/// Counts a worker out however it ends.
struct Leave<'a>(&'a Shared);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        lock(&self.0.q).workers -= 1;
        self.0.event.notify_one();
    }
}

/// A worker: jobs until the daemon hangs up. Its session (for metadata) keeps its
/// connection alive from one job to the next.
fn work(ctx: &Ctx, shared: &Shared) {
    let _leave = Leave(shared);
    let mut sess: Option<Session> = None;
    loop {
        let job = {
            let mut q = lock(&shared.q);
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                if q.hung_up {
                    return;
                }
                q = shared.job.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let ev = match job {
            Job::Meta(id, sha) => {
                let s = sess.get_or_insert_with(|| {
                    let mut s = Session::new(ctx.dialer.clone(), 1);
                    s.token = ctx.token.clone();
                    s
                });
                meta(s, id, &sha)
            }
            Job::Fetch {
                id,
                sha,
                size,
                url,
                mut fetcher,
            } => {
                let (got, answered) = {
                    let mut on = |have: u64| {
                        shared.event(Event::Bytes(id, have));
                        !shared.abort.load(Ordering::Relaxed)
                    };
                    fetcher.fetch(&ctx.dialer, &ctx.storage, &sha, size, &url, &mut on)
                };
                Event::Fetched {
                    id,
                    got,
                    answered,
                    fetcher,
                }
            }
        };
        shared.event(ev);
    }
}

fn meta(s: &mut Session, id: usize, sha: &str) -> Event {
    if s.token.is_none() {
        // an earlier job of this worker had a 401
        let res = Err(MetaErr::Unauthorized);
        return Event::Meta {
            id,
            res,
            answered: None,
        };
    }
    let (res, _) = s.call("GET", &format!("/objects/{sha}"), None, true, &[]);
    let answered = Some(res.is_ok());
    let res = match res {
        Ok(r) if r.ok() => wire::object(&r.body, sha)
            .map(|o| (o.size, o.url))
            .map_err(MetaErr::Other),
        Ok(r) if r.status == 401 => Err(MetaErr::Unauthorized),
        Ok(r) => Err(MetaErr::Other(format!(
            "GET /objects/{sha}: the Hub answered {}",
            r.status
        ))),
        Err(e) => Err(MetaErr::Other(e)),
    };
    Event::Meta { id, res, answered }
}

/// Which transfer next, and when a round is over: jobs in order, at most `max` in flight,
/// none started once the round stops (what is in flight still ends).
#[derive(Debug)]
pub struct Plan<T> {
    todo: VecDeque<T>,
    flight: usize,
    max: usize,
    stopped: bool,
}

impl<T> Plan<T> {
    pub fn new(jobs: impl IntoIterator<Item = T>, max: usize) -> Plan<T> {
        Plan {
            todo: jobs.into_iter().collect(),
            flight: 0,
            max: max.max(1),
            stopped: false,
        }
    }

    /// The next job to start, if one may start now.
    pub fn start(&mut self) -> Option<T> {
        if self.stopped || self.flight >= self.max {
            return None;
        }
        let t = self.todo.pop_front()?;
        self.flight += 1;
        Some(t)
    }

    /// A job in flight ended.
    pub fn ended(&mut self) {
        self.flight = self.flight.saturating_sub(1);
    }

    /// A job that ended is tried again, before the others.
    pub fn again(&mut self, t: T) {
        self.todo.push_front(t);
    }

    pub fn stop(&mut self) {
        self.stopped = true;
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Nothing in flight and nothing more to start.
    pub fn over(&self) -> bool {
        self.flight == 0 && (self.stopped || self.todo.is_empty())
    }
}

/// A wrong object is fetched this many times (over all objects of the update) before the
/// update is refused.
pub const WRONG_BYTES_TRIES: u32 = 3;
/// A refused signed URL is renewed this many times an object and round; then the next round.
pub const RENEWALS: u32 = 3;

/// What the daemon does after one try at an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// It is in the object store.
    Stored,
    /// Fetched again at once (wrong bytes: the next answer may be right).
    Again,
    /// A fresh signed URL first (`GET /objects/<sha>`: it may have expired), then again.
    Renew,
    /// A fresh signed URL for the next round, which resumes; this round starts no more.
    RenewAndStop,
    /// WONTGO "Object validation went wrong".
    Refuse,
}

/// The end of a try, `got`; `wrong`: the update's wrong objects so far, this one included;
/// `renewed`: how often this object's URL was renewed this round.
pub fn next(got: &Got, wrong: u32, renewed: u32) -> Next {
    match got {
        Got::Stored => Next::Stored,
        Got::WrongBytes if wrong >= WRONG_BYTES_TRIES => Next::Refuse,
        Got::WrongBytes => Next::Again,
        Got::NewUrl if renewed < RENEWALS => Next::Renew,
        // the Hub or the network is in trouble: the next poll resumes
        Got::NewUrl | Got::Later(_) => Next::RenewAndStop,
    }
}

/// Something done about every `period` (DOWNLOADING byte progress, upstream's 6 s).
#[derive(Debug)]
pub struct Every {
    period: Duration,
    last: Instant,
}

impl Every {
    pub fn new(period: Duration, now: Instant) -> Every {
        Every { period, last: now }
    }

    /// True (and the period starts again) when it is time.
    pub fn due(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.last) < self.period {
            return false;
        }
        self.last = now;
        true
    }

    /// How long until it is time.
    pub fn left(&self, now: Instant) -> Duration {
        self.period
            .saturating_sub(now.saturating_duration_since(self.last))
    }
}

#[cfg(test)]
#[path = "xfer_tests.rs"]
mod tests;
