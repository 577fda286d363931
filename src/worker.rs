//! Worker threads for the slow storage work of the device (GC, the checkout and re-hash of an
//! update): the loop hands a job over, keeps serving, and learns the result from its inbox
//! (ARCHITECTURE "Process model"). A job owns everything it touches -- paths, a state, the
//! real file system -- and never device state.
//!
//! One thread, started at the first job, runs the jobs in the order they came: storage jobs
//! must not interleave (a GC deleting an object while a checkout links it), and one thread is
//! the smallest pool. Each result goes into a shared list, then the inbox eventfd wakes the
//! loop, which calls [`Workers::drain`] on `Wake::Inbox`.
use crate::state::State;
use crate::storage::{self, fs::RealFs, Storage};
use crate::sys::event as ev;
use crate::update;
use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
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

/// What the loop and the thread share: the queue of jobs (closed at shutdown) and the results.
/// A mutex and a condvar rather than std's channels, which cost ~10 KB of the binary here.
#[derive(Default)]
struct Shared {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
    results: Mutex<Vec<(JobId, Done)>>,
}

/// A lock that a panicked holder does not make unusable (the data are plain queues).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Workers {
    inbox: RawFd,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    next: JobId,
    busy: usize,
}

impl Workers {
    /// `inbox_fd`: the loop's inbox (`EventLoop::inbox_fd`), signalled after every result.
    /// The thread starts at the first job with every signal blocked, so PID 1's signals keep
    /// arriving only through the signalfd.
    pub fn new(inbox_fd: RawFd) -> Workers {
        Workers {
            inbox: inbox_fd,
            shared: Arc::default(),
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
        {
            let mut q = lock(&self.shared.jobs);
            q.0.push_back((id, Box::new(f)));
            q.1 = false;
        }
        if self.thread.is_none() && !self.start() {
            let job = lock(&self.shared.jobs).0.pop_back();
            if let Some((id, f)) = job {
                run(self.inbox, &self.shared, id, f);
            }
            return id;
        }
        self.shared.ready.notify_one();
        id
    }

    fn start(&mut self) -> bool {
        let (shared, inbox) = (self.shared.clone(), self.inbox);
        let t = ev::with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("pv-worker".into())
                .spawn(move || loop {
                    let job = {
                        let mut q = lock(&shared.jobs);
                        loop {
                            if let Some(j) = q.0.pop_front() {
                                break Some(j);
                            }
                            if q.1 {
                                break None;
                            }
                            q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    let Some((id, f)) = job else { return };
                    run(inbox, &shared, id, f);
                })
        });
        let Ok(t) = t else { return false };
        self.thread = Some(t);
        true
    }

    /// The results that arrived, in completion order; never waits for a job.
    pub fn drain(&mut self) -> Vec<(JobId, Done)> {
        let out = std::mem::take(&mut *lock(&self.shared.results));
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
        lock(&self.shared.jobs).1 = true;
        self.shared.ready.notify_all();
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
fn run(inbox: RawFd, shared: &Shared, id: JobId, f: Box<dyn FnOnce() -> Done + Send>) {
    let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(Done::Panicked);
    lock(&shared.results).push((id, done));
    let _ = ev::eventfd_signal(inbox);
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;
