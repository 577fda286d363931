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
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Upstream sets no bound; ours keeps a bad config from asking for thousands of threads.
pub const MAX_WORKERS: usize = 32;

/// How many workers for `jobs` transfers when `PH_UPDATER_TRANSFER_MAX_COUNT` is `max`: at
/// least one (upstream's minimum), at most [`MAX_WORKERS`], never more than there are jobs.
pub fn workers(max: u64, jobs: usize) -> usize {
    let max = usize::try_from(max).unwrap_or(MAX_WORKERS);
    max.clamp(1, MAX_WORKERS).min(jobs)
}

/// A transfer for a worker.
pub enum Job {
    /// `GET /objects/<sha>`: the object's size and signed URL.
    Meta(String),
    /// One try at an object from its signed URL, with the fetcher's state of it, lent.
    Fetch {
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
    Bytes(String, u64),
    /// An object's metadata: (size, signed URL), or why not.
    Meta {
        sha: String,
        res: Result<(u64, String), MetaErr>,
        answered: Option<bool>,
    },
    /// One try at an object ended; the lent fetcher comes back.
    Fetched {
        sha: String,
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

/// The daemon's side of the workers.
pub struct Pool<'a> {
    jobs: Sender<Job>,
    events: Receiver<Event>,
    abort: &'a AtomicBool,
}

impl Pool<'_> {
    /// False when no worker is left to take it.
    pub fn send(&self, job: Job) -> bool {
        self.jobs.send(job).is_ok()
    }

    /// The next event, or Ok(None) after `wait`; Err when no worker is left.
    pub fn recv(&self, wait: Duration) -> Result<Option<Event>, String> {
        match self.events.recv_timeout(wait) {
            Ok(e) => Ok(Some(e)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err("no transfer worker is left".into()),
        }
    }

    /// Downloads in flight end at their next bytes (what arrived is kept): the update is
    /// given up.
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
    }
}

/// Runs `drive` on this thread with `n` workers; returns once they all ended. `drive` should
/// wait for the end of every job it sent (each ends in an event), so that no lent fetcher is
/// lost. Workers the system cannot start are fewer workers; `recv` answers Err when none
/// started.
pub fn with_workers<R>(n: usize, ctx: &Ctx, drive: impl FnOnce(&Pool) -> R) -> R {
    let abort = AtomicBool::new(false);
    let (jobs, jobs_rx) = mpsc::channel::<Job>();
    let (events_tx, events) = mpsc::channel();
    let jobs_rx = Mutex::new(jobs_rx);
    std::thread::scope(|sc| {
        for i in 0..n {
            let (events_tx, jobs_rx, abort) = (events_tx.clone(), &jobs_rx, &abort);
            let started = std::thread::Builder::new()
                .name(format!("hub-xfer-{i}"))
                .spawn_scoped(sc, move || work(ctx, jobs_rx, &events_tx, abort));
            if started.is_err() {
                break;
            }
        }
        drop(events_tx);
        let pool = Pool {
            jobs,
            events,
            abort: &abort,
        };
        drive(&pool)
        // the pool's job sender goes here: idle workers end, the scope joins them
    })
}

/// A worker: jobs until the daemon hangs up. Its session (for metadata) keeps its
/// connection alive from one job to the next.
fn work(ctx: &Ctx, jobs: &Mutex<Receiver<Job>>, events: &Sender<Event>, abort: &AtomicBool) {
    let mut sess: Option<Session> = None;
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        let ev = match job {
            Job::Meta(sha) => {
                let s = sess.get_or_insert_with(|| {
                    let mut s = Session::new(ctx.dialer.clone(), 1);
                    s.token = ctx.token.clone();
                    s
                });
                meta(s, sha)
            }
            Job::Fetch {
                sha,
                size,
                url,
                mut fetcher,
            } => {
                let (got, answered) = {
                    let mut on = |have: u64| {
                        let _ = events.send(Event::Bytes(sha.clone(), have));
                        !abort.load(Ordering::Relaxed)
                    };
                    fetcher.fetch(&ctx.dialer, &ctx.storage, &sha, size, &url, &mut on)
                };
                Event::Fetched {
                    sha,
                    got,
                    answered,
                    fetcher,
                }
            }
        };
        if events.send(ev).is_err() {
            return;
        }
    }
}

fn meta(s: &mut Session, sha: String) -> Event {
    if s.token.is_none() {
        // an earlier job of this worker had a 401
        let res = Err(MetaErr::Unauthorized);
        return Event::Meta {
            sha,
            res,
            answered: None,
        };
    }
    let (res, _) = s.call("GET", &format!("/objects/{sha}"), None, true, &[]);
    let answered = Some(res.is_ok());
    let res = match res {
        Ok(r) if r.ok() => wire::object(&r.body, &sha)
            .map(|o| (o.size, o.url))
            .map_err(MetaErr::Other),
        Ok(r) if r.status == 401 => Err(MetaErr::Unauthorized),
        Ok(r) => Err(MetaErr::Other(format!(
            "GET /objects/{sha}: the Hub answered {}",
            r.status
        ))),
        Err(e) => Err(MetaErr::Other(e)),
    };
    Event::Meta { sha, res, answered }
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
