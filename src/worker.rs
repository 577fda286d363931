//! Worker threads for the slow storage work of the device (GC, the checkout and re-hash of an
//! update): the loop hands a job over, keeps serving, and learns the result from its inbox
//! (ARCHITECTURE "Process model"). A job owns everything it touches -- paths, a state, the
//! real file system -- and never device state.
//!
//! One thread, started at the first job, runs the jobs in the order they came: storage jobs
//! must not interleave (a GC deleting an object while a checkout links it), and one thread is
//! the smallest pool. Each result goes through a channel, then the inbox eventfd wakes the
//! loop, which calls [`Workers::drain`] on `Wake::Inbox`.
use crate::state::State;
use crate::storage::{self, fs::RealFs, Storage};
use crate::sys::event as ev;
use crate::update;
use std::collections::BTreeSet;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// Names a job from [`Workers::spawn`] to its result.
pub type JobId = u64;

/// The result of a job.
#[derive(Debug)]
pub enum Done {
    /// `Storage::gc`: bytes reclaimed.
    Gc(Result<u64, storage::Error>),
    /// `update::prepare` of `rev`: its trail checked out and every object re-hashed.
    Prepared {
        rev: String,
        result: Result<(), update::Error>,
    },
    /// The job panicked (possible only where panics unwind: the release PID 1 aborts).
    Panicked,
}

type Job = (JobId, Box<dyn FnOnce() -> Done + Send>);

pub struct Workers {
    inbox: RawFd,
    results_tx: Sender<(JobId, Done)>,
    results: Receiver<(JobId, Done)>,
    jobs: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    next: JobId,
    busy: usize,
}

impl Workers {
    /// `inbox_fd`: the loop's inbox (`EventLoop::inbox_fd`), signalled after every result.
    /// The thread starts at the first job with every signal blocked, so PID 1's signals keep
    /// arriving only through the signalfd.
    pub fn new(inbox_fd: RawFd) -> Workers {
        let (results_tx, results) = mpsc::channel();
        Workers {
            inbox: inbox_fd,
            results_tx,
            results,
            jobs: None,
            thread: None,
            next: 0,
            busy: 0,
        }
    }

    /// Queues `f` for the worker thread; its result comes back from [`Workers::drain`] under
    /// the returned id. Should the thread not start (no memory for a stack), `f` runs here:
    /// late, but the result is not lost.
    pub fn spawn(&mut self, f: impl FnOnce() -> Done + Send + 'static) -> JobId {
        self.next += 1;
        self.busy += 1;
        let id = self.next;
        let mut job: Job = (id, Box::new(f));
        for _ in 0..2 {
            if self.jobs.is_none() && !self.start() {
                break;
            }
            let Some(tx) = &self.jobs else { break };
            match tx.send(job) {
                Ok(()) => return id,
                // the thread is gone (it can only have panicked): a new one
                Err(mpsc::SendError(j)) => {
                    job = j;
                    self.jobs = None;
                }
            }
        }
        let (id, f) = job;
        run(self.inbox, &self.results_tx, id, f);
        id
    }

    fn start(&mut self) -> bool {
        let (tx, rx) = mpsc::channel::<Job>();
        let (results, inbox) = (self.results_tx.clone(), self.inbox);
        let t = ev::with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("pv-worker".into())
                .spawn(move || {
                    for (id, f) in rx {
                        run(inbox, &results, id, f);
                    }
                })
        });
        let Ok(t) = t else { return false };
        self.thread = Some(t);
        self.jobs = Some(tx);
        true
    }

    /// The results that arrived, in completion order; never blocks.
    pub fn drain(&mut self) -> Vec<(JobId, Done)> {
        let out: Vec<_> = self.results.try_iter().collect();
        self.busy = self.busy.saturating_sub(out.len());
        out
    }

    /// Jobs queued or running whose result was not drained yet.
    pub fn busy(&self) -> usize {
        self.busy
    }

    /// Lets the queued jobs finish and waits for the thread (an orderly reboot, before the
    /// storage is unmounted). Their results stay drainable.
    pub fn shutdown(&mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The job of `update::prepare` for `rev` on the real storage at `root`: everything it
/// uses is owned, so it runs on the worker while the loop goes on.
pub fn prepare_job(
    root: PathBuf,
    rev: String,
    state: State,
) -> impl FnOnce() -> Done + Send + 'static {
    move || {
        let st = Storage::new(&RealFs, root);
        let result = update::prepare(&st, &rev, &state);
        Done::Prepared { rev, result }
    }
}

/// The job of `Storage::gc` on the real storage at `root`, with the keep-set the loop took
/// (the revisions to keep, and the objects of an update in flight).
pub fn gc_job(
    root: PathBuf,
    keep: Vec<String>,
    keep_objects: BTreeSet<String>,
) -> impl FnOnce() -> Done + Send + 'static {
    move || {
        let st = Storage::new(&RealFs, root);
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        Done::Gc(st.gc(&keep, &keep_objects))
    }
}

/// Runs one job, sends its result, wakes the loop. A panic becomes [`Done::Panicked`], so the
/// loop always hears back.
fn run(
    inbox: RawFd,
    results: &Sender<(JobId, Done)>,
    id: JobId,
    f: Box<dyn FnOnce() -> Done + Send>,
) {
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(Done::Panicked);
    // the loop owns the receiver for as long as it runs; a send after it is gone is moot
    let _ = results.send((id, done));
    let _ = ev::eventfd_signal(inbox);
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
