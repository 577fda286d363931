//! Pantavisor's own log records. For now one sink: stderr, in the upstream line format
//! `[pantavisor] <tsec> <LEVEL>\t -- [<src>]: <msg>` (reference 10.2). File sinks, rotation and
//! container console capture come with the runtime.
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

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

pub fn set_level(level: Level) {
    MAX_LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= MAX_LEVEL.load(Ordering::Relaxed)
}

/// Seconds since boot (`PV_LOG_TIMESTAMP=relative`), from CLOCK_BOOTTIME via /proc/uptime;
/// 0 when it cannot be read (never an error for a log line).
fn uptime_secs() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split('.').next().and_then(|n| n.trim().parse().ok()))
        .unwrap_or(0)
}

pub fn log(level: Level, src: &str, args: fmt::Arguments) {
    if !enabled(level) {
        return;
    }
    let line = format!(
        "[pantavisor] {} {}\t -- [{}]: {}\n",
        uptime_secs(),
        level.name(),
        src,
        args
    );
    // A closed stderr must not take PID 1 down: write errors are ignored on purpose.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `pvlog!(Warn, "config", "unknown key {}", key)`
#[macro_export]
macro_rules! pvlog {
    ($lvl:ident, $src:expr, $($arg:tt)+) => {
        $crate::logs::log($crate::logs::Level::$lvl, $src, format_args!($($arg)+))
    };
}
