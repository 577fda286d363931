//! Pantavisor's own log records and the log tree (upstream's logs). Before [`init`], records go
//! to stderr in the upstream line format `[pantavisor] <tsec> <LEVEL>\t -- [<src>]: <msg>`;
//! after it, to the sinks of `PV_LOG_SERVER_OUTPUTS` under `<logdir>/<rev>/` (see [`tree`]),
//! to stdout if asked, and to the console if asked.
//!
//! The global logger is a thin wrapper around one [`LogTree`] in a mutex. Lines are formatted
//! before the lock is taken and written under it (a file over its size is renamed aside there,
//! so lines keep their order); the slow work -- compressing the renamed files, walking the
//! directory -- goes to the archiver, a thread of its own that runs one job at a time while
//! later jobs queue up merged, so a `pvlog!` on the device's loop never waits for gzip. A
//! poisoned lock is recovered, an I/O error drops the line: logging never takes PID 1 down.
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};

mod gzip;
pub mod tree;

pub use gzip::{crc32_update, gzip_stored};
pub use tree::{
    budget, logs_excerpt, Chunk, Job, Limits, LogConfig, LogTree, MaxSize, Outputs, Record,
    Timestamp, Walked, MSG_CAP, PANTAVISOR,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Fatal = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Fatal => "FATAL",
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
    /// `PV_LOG_LEVEL` numbers 0..5; larger numbers mean everything.
    pub fn from_number(n: u64) -> Level {
        match n {
            0 => Level::Fatal,
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            4 => Level::Debug,
            _ => Level::Trace,
        }
    }
}

// Until configuration is read, warnings and worse are shown.
static MAX_LEVEL: AtomicU8 = AtomicU8::new(Level::Warn as u8);
/// Set by `init`; read without the lock to pick stdout/console and the clock.
static INSTALLED: AtomicBool = AtomicBool::new(false);
static OUTPUTS: AtomicU16 = AtomicU16::new(0);
static CONSOLE: AtomicBool = AtomicBool::new(false);
static ABSOLUTE: AtomicBool = AtomicBool::new(false);
/// An update capture is on: ERROR/FATAL records are made even when the level filters them.
static CAPTURING: AtomicBool = AtomicBool::new(false);

static TREE: Mutex<Option<LogTree>> = Mutex::new(None);
/// Serialises archiving and walks; never taken while `TREE` is held.
static MAINTENANCE: Mutex<()> = Mutex::new(());
/// The archiver's queue (the jobs not taken yet, merged into one) and whether it runs.
static ARCHIVER: Mutex<(Option<Job>, bool)> = Mutex::new((None, false));
/// Tests hold it to keep the archiver from running a job.
#[cfg(test)]
static TEST_GATE: Mutex<()> = Mutex::new(());

/// A lock that survives a thread that panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
    if INSTALLED.load(Ordering::Relaxed) {
        if let Some(t) = lock(&TREE).as_mut() {
            t.set_level(level);
        }
    }
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// `tsec`: seconds since boot (CLOCK_BOOTTIME) or, with `PV_LOG_TIMESTAMP=absolute`, since
/// the epoch; 0 when the clock cannot be read (never an error for a log line).
fn now_tsec() -> u64 {
    if ABSOLUTE.load(Ordering::Relaxed) {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    } else {
        crate::sys::logsys::boottime_secs().unwrap_or(0)
    }
}

/// Installs the log tree (again, to apply a new configuration). Computes the budget, which
/// may `statfs` the log directory; writes nothing yet.
pub fn init(cfg: LogConfig) {
    let tree = LogTree::new(&cfg);
    ABSOLUTE.store(cfg.timestamp == Timestamp::Absolute, Ordering::Relaxed);
    OUTPUTS.store(cfg.outputs.0, Ordering::Relaxed);
    CONSOLE.store(cfg.console, Ordering::Relaxed);
    MAX_LEVEL.store(cfg.level as u8, Ordering::Relaxed);
    let mut g = lock(&TREE);
    if let Some(old) = g.as_mut() {
        old.stop_update_capture();
    }
    CAPTURING.store(false, Ordering::Relaxed);
    *g = Some(tree);
    INSTALLED.store(true, Ordering::Relaxed);
}

/// Back to the state before `init` (tests of the global logger).
#[cfg(test)]
fn uninstall() {
    INSTALLED.store(false, Ordering::Relaxed);
    CAPTURING.store(false, Ordering::Relaxed);
    *lock(&TREE) = None;
    MAX_LEVEL.store(Level::Warn as u8, Ordering::Relaxed);
}

/// After a live update: records go under `<logdir>/<rev>/` from now on.
pub fn set_revision(rev: &str) {
    if let Some(t) = lock(&TREE).as_mut() {
        t.set_revision(rev);
    }
}

/// Starts a walk of the log directory (archiving oversized files, container consoles
/// included, and deleting old archives above the budget) on the archiver; the device calls it
/// on its periodic tick. Returns at once.
pub fn maintain() {
    let job = match lock(&TREE).as_mut() {
        Some(t) => t.maintenance(),
        None => return,
    };
    finish(job);
}

/// Lines dropped because the storage could not take them (0 before `init`).
pub fn dropped_lines() -> u64 {
    lock(&TREE).as_ref().map_or(0, LogTree::dropped)
}

/// Stdio writes happen outside the lock; a closed or broken stdio is ignored on purpose.
fn write_stdio(stdout: bool, stderr: bool, text: &str) {
    if stdout {
        let _ = std::io::stdout().write_all(text.as_bytes());
    }
    if stderr {
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
}

/// Hands the slow part of a write to the archiver, after `TREE` was released: queued (merged
/// with what waits) and the archiver started if it is not running. Never waits for the work.
fn finish(job: Job) {
    if job.is_empty() {
        return;
    }
    {
        let mut q = lock(&ARCHIVER);
        match q.0.as_mut() {
            Some(queued) => queued.merge(job),
            None => q.0 = Some(job),
        }
        if q.1 {
            return; // the running archiver takes it after its current job
        }
        q.1 = true;
    }
    let started = crate::sys::event::with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("pv-logs".into())
            .spawn(archiver)
    });
    if started.is_err() {
        // no thread to be had (no memory): the work is done here, late rather than never
        archiver();
    }
}

/// Runs the queued jobs one at a time until the queue is empty, then ends.
fn archiver() {
    loop {
        let job = {
            let mut q = lock(&ARCHIVER);
            match q.0.take() {
                Some(j) => j,
                None => {
                    q.1 = false;
                    return;
                }
            }
        };
        #[cfg(test)]
        let _gate = lock(&TEST_GATE);
        let walked = {
            let _m = lock(&MAINTENANCE);
            job.run()
        };
        if let Some(w) = walked {
            if let Some(t) = lock(&TREE).as_mut() {
                t.walked(w);
            }
        }
    }
}

/// Whether the archiver has work queued or running.
pub fn archiving() -> bool {
    lock(&ARCHIVER).1
}

/// Waits up to `timeout_ms` for the archiver to finish its queue (before the storage is
/// unmounted, so no archive is left half-written and no file busy); true when it did.
pub fn settle(timeout_ms: u64) -> bool {
    let end = crate::sys::event::monotonic_ms().saturating_add(timeout_ms);
    while archiving() {
        if crate::sys::event::monotonic_ms() >= end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

pub fn log(level: Level, src: &str, args: fmt::Arguments) {
    let shown = enabled(level);
    let captured = level <= Level::Error && CAPTURING.load(Ordering::Relaxed);
    if !(shown || captured) {
        return;
    }
    let msg = tree::format_capped(args);
    let rec = Record::new(level, now_tsec(), src, &msg);
    let job = {
        let mut g = lock(&TREE);
        match g.as_mut() {
            Some(t) => t.write(&rec),
            None => {
                drop(g);
                write_stdio(false, shown, rec.text());
                return;
            }
        }
    };
    if shown {
        let outputs = Outputs(OUTPUTS.load(Ordering::Relaxed));
        write_stdio(
            outputs.stdout_for(PANTAVISOR),
            CONSOLE.load(Ordering::Relaxed),
            rec.text(),
        );
    }
    finish(job);
}

/// Output of another source, e.g. a container's console: raw bytes to
/// `<logdir>/<rev>/<platform>/<source>` (platform `pantavisor`: formatted lines into
/// pantavisor.log, as upstream does for its helpers' stdout/stderr), JSON lines to pv.log with
/// `singlefile`, text lines to stdout with `stdout`/`stdout.containers`. Not level-filtered.
/// Dropped before `init` and when the names would leave the log tree.
pub fn append(platform: &str, source: &str, bytes: &[u8]) {
    if !INSTALLED.load(Ordering::Relaxed) {
        return;
    }
    let outputs = Outputs(OUTPUTS.load(Ordering::Relaxed));
    let Some(chunk) = Chunk::new(now_tsec(), platform, source, bytes, outputs) else {
        return;
    };
    let job = match lock(&TREE).as_mut() {
        Some(t) => t.write_chunk(&chunk),
        None => return,
    };
    write_stdio(outputs.stdout_for(platform), false, chunk.text());
    finish(job);
}

/// `<logdir>/<rev>/<container>/<rel>` (e.g. `lxc/console.log`), its directory created.
/// `None` before `init` or if a name would leave the log tree. A file written there by someone
/// else is archived by the directory walk once it grows past twice the per-file size.
pub fn container_log_path(rev: &str, container: &str, rel: &str) -> Option<PathBuf> {
    let (dir, path) = {
        let g = lock(&TREE);
        let t = g.as_ref()?;
        (t.dir().to_path_buf(), t.path_for(rev, container, rel)?)
    };
    if let Some(parent) = path.parent() {
        let _ = tree::make_dirs(&dir, parent);
    }
    Some(path)
}

/// While an update is processed: ERROR/FATAL records are appended as JSON lines to
/// `<trail_pv_dir>/logs.tmp` (at most 64 KiB). Needs `init`.
pub fn start_update_capture(trail_pv_dir: &Path) {
    if let Some(t) = lock(&TREE).as_mut() {
        t.start_update_capture(trail_pv_dir);
        CAPTURING.store(true, Ordering::Relaxed);
    }
}

/// Ends the capture: `logs.tmp` is renamed to `logs`, which [`logs_excerpt`] turns into
/// the progress `logs` field.
pub fn stop_update_capture() {
    if let Some(t) = lock(&TREE).as_mut() {
        t.stop_update_capture();
    }
    CAPTURING.store(false, Ordering::Relaxed);
}

/// `pvlog!(Warn, "config", "unknown key {}", key)`
#[macro_export]
macro_rules! pvlog {
    ($lvl:ident, $src:expr, $($arg:tt)+) => {
        $crate::logs::log($crate::logs::Level::$lvl, $src, format_args!($($arg)+))
    };
}

#[cfg(test)]
mod tests;
