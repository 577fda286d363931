//! The log tree (upstream's file tree and rotation): sinks under `<logdir>/<rev>/`, per-file rotation to
//! `<file>.<N>.gz`, the directory budget with its watermarks, and the update-log capture.
//! A plain struct: the global logger in `mod.rs` wraps one in a mutex, tests build their own.
//!
//! The work is split so the global lock is held only while lines are written: `write*` (under
//! the lock) appends and, when a file is over its size, renames it to `<file>.<N>.gz.pending`;
//! the returned [`Job`] (run outside the lock) turns those into `.gz` files and, every 100
//! messages or when the budget looks exceeded, walks the directory and deletes old archives.
//! Nothing here panics or reports errors: a line that cannot be written is counted and dropped.
use super::gzip::gzip_stored;
use super::Level;
use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The platform of pantavisor's own records and of the helpers it runs.
pub const PANTAVISOR: &str = "pantavisor";
/// Longest message kept in a record; longer ones are cut and marked, so one runaway message
/// cannot grow memory.
pub const MSG_CAP: usize = 4096;
pub const TRUNCATED: &str = " [truncated]";
/// The update log only feeds 4 KiB of the progress; an error storm must not fill the trail.
const CAPTURE_CAP: u64 = 64 * 1024;
/// Messages between two walks of the log directory (upstream's rotation).
const WALK_EVERY: u32 = 100;
/// Open log files kept; the oldest is closed beyond that.
const OPEN_FILES: usize = 16;
/// Budget when the automatic one cannot be computed (log directory not there yet).
const FALLBACK_BUDGET: u64 = 8 << 20;

/// `PV_LOG_SERVER_OUTPUTS` as upstream's mask: bit `1 << position` in `config::LOG_OUTPUTS`,
/// so `Outputs(config.log_server_outputs())` is the conversion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outputs(pub u16);

impl Outputs {
    pub const NULLSINK: u16 = 1;
    pub const SINGLEFILE: u16 = 1 << 1;
    pub const FILETREE: u16 = 1 << 2;
    pub const STDOUT: u16 = 1 << 3;
    pub const STDOUT_CONTAINERS: u16 = 1 << 4;
    pub const STDOUT_PANTAVISOR: u16 = 1 << 5;
    pub const STDOUT_DIRECT: u16 = 1 << 6;
    /// always on upstream; here the update capture is started explicitly
    pub const UPDATE: u16 = 1 << 7;

    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }
    /// Whether records of `platform` go to stdout.
    pub fn stdout_for(self, platform: &str) -> bool {
        let own = if platform == PANTAVISOR {
            Self::STDOUT_PANTAVISOR
        } else {
            Self::STDOUT_CONTAINERS
        };
        self.has(Self::STDOUT | Self::STDOUT_DIRECT | own)
    }
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs(Self::FILETREE | Self::UPDATE)
    }
}

/// `PV_LOG_TIMESTAMP`: what `tsec` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timestamp {
    /// seconds since boot
    Relative,
    /// seconds since the epoch
    Absolute,
}

/// `PV_LOG_DIR_MAXSIZE`: `Bytes(0)` is automatic (10 % of the partition, 100 % on tmpfs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxSize {
    Bytes(u64),
    Percent(u8),
}

/// Everything the logger needs, filled by the runtime from the configuration.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `PV_LOG_DIR`; it must exist (the storage layout makes it): it is never created, so
    /// nothing is written under an unmounted storage mount point.
    pub dir: PathBuf,
    /// the running revision
    pub rev: String,
    pub outputs: Outputs,
    pub level: Level,
    pub timestamp: Timestamp,
    pub max_size: MaxSize,
    /// `PV_LOG_ROTATE_FACTOR`
    pub rotate_factor: u64,
    /// `PV_LOG_HYSTERESIS_FACTOR`
    pub hysteresis_factor: u64,
    /// PID 1's own records also go to stderr (the console the kernel gave PID 1).
    pub console: bool,
}

impl LogConfig {
    /// Upstream's code defaults for everything but the directory and the revision.
    pub fn new(dir: impl Into<PathBuf>, rev: &str) -> LogConfig {
        LogConfig {
            dir: dir.into(),
            rev: rev.to_string(),
            outputs: Outputs::default(),
            level: Level::Warn,
            timestamp: Timestamp::Relative,
            max_size: MaxSize::Bytes(0),
            rotate_factor: 5,
            hysteresis_factor: 4,
            console: false,
        }
    }
}

/// Upstream's rotation size rules for a budget `M`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max: u64,
    /// 0.9 M: above it, archives are deleted ...
    pub high: u64,
    /// M - gap: ... until the directory is below this
    pub low: u64,
    /// gap / rotate factor: a file is rotated before it grows past this
    pub per_file: u64,
}

impl Limits {
    pub fn new(max: u64, rotate_factor: u64, hysteresis_factor: u64) -> Limits {
        let gap = max / hysteresis_factor.max(1);
        Limits {
            max,
            high: max - max / 10,
            low: max - gap,
            per_file: (gap / rotate_factor.max(1)).max(1),
        }
    }
}

/// The budget `M` in bytes for the log directory `dir`.
pub fn budget(dir: &Path, max: MaxSize) -> Option<u64> {
    let pct = match max {
        MaxSize::Bytes(0) | MaxSize::Percent(0) => None,
        MaxSize::Bytes(n) => return Some(n),
        MaxSize::Percent(p) => Some(u64::from(p.min(100))),
    };
    let fs = crate::sys::logsys::fs_size(dir)
        .or_else(|e| dir.parent().map_or(Err(e), crate::sys::logsys::fs_size))
        .ok()?;
    let pct = pct.unwrap_or(if fs.tmpfs { 100 } else { 10 });
    // floor(total * pct / 100) without overflowing
    Some(fs.total / 100 * pct + fs.total % 100 * pct / 100)
}

/// One record of pantavisor, formatted (before any lock is taken) in both line formats.
#[derive(Clone, Debug)]
pub struct Record {
    pub level: Level,
    pub tsec: u64,
    text: String,
    json: String,
}

impl Record {
    /// A record of platform `pantavisor`; `msg` is cut at [`MSG_CAP`].
    pub fn new(level: Level, tsec: u64, src: &str, msg: &str) -> Record {
        let msg = cap_str(msg);
        let mut text = String::new();
        let mut json = String::new();
        text_line(&mut text, PANTAVISOR, tsec, level, src, &msg);
        json_line(&mut json, PANTAVISOR, tsec, level, src, &msg);
        Record {
            level,
            tsec,
            text,
            json,
        }
    }
    /// `[pantavisor] <tsec> <LEVEL>\t -- [<src>]: <msg>\n` (pantavisor.log, stdout, console)
    pub fn text(&self) -> &str {
        &self.text
    }
    /// `{"tsec":..,"tnano":0,"platform":..,"lvl":..,"src":..,"msg":..}\n` (pv.log, update log)
    pub fn json(&self) -> &str {
        &self.json
    }
}

/// Output of another source (a container, a helper of pantavisor), formatted before any lock.
#[derive(Debug)]
pub struct Chunk<'a> {
    platform: &'a str,
    rel: PathBuf,
    raw: &'a [u8],
    /// lines in the text format, for stdout and, for platform `pantavisor`, pantavisor.log
    text: String,
    /// lines in the JSON format, for pv.log
    json: String,
}

impl<'a> Chunk<'a> {
    /// `None` if `platform` or `source` could leave `<logdir>/<rev>/<platform>/`.
    pub fn new(
        tsec: u64,
        platform: &'a str,
        source: &str,
        raw: &'a [u8],
        outputs: Outputs,
    ) -> Option<Chunk<'a>> {
        if !component_ok(platform) {
            return None;
        }
        let rel = source_path(source)?;
        let want_text = (platform == PANTAVISOR && outputs.has(Outputs::FILETREE))
            || outputs.stdout_for(platform);
        let want_json = outputs.has(Outputs::SINGLEFILE);
        let mut text = String::new();
        let mut json = String::new();
        if want_text || want_json {
            let body = raw.strip_suffix(b"\n").unwrap_or(raw);
            for line in body.split(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(line);
                let line = cap_str(&line);
                if want_text {
                    text_line(&mut text, platform, tsec, Level::Info, source, &line);
                }
                if want_json {
                    json_line(&mut json, platform, tsec, Level::Info, source, &line);
                }
            }
        }
        Some(Chunk {
            platform,
            rel,
            raw,
            text,
            json,
        })
    }
    pub fn platform(&self) -> &str {
        self.platform
    }
    pub fn text(&self) -> &str {
        &self.text
    }
}

fn text_line(out: &mut String, plat: &str, tsec: u64, level: Level, src: &str, msg: &str) {
    let msg = msg.strip_suffix('\n').unwrap_or(msg);
    let _ = writeln!(out, "[{plat}] {tsec} {}\t -- [{src}]: {msg}", level.name());
}

fn json_line(out: &mut String, plat: &str, tsec: u64, level: Level, src: &str, msg: &str) {
    let msg = msg.strip_suffix('\n').unwrap_or(msg);
    let _ = write!(out, "{{\"tsec\":{tsec},\"tnano\":0,\"platform\":");
    crate::json::escape_str(plat, out);
    let _ = write!(out, ",\"lvl\":\"{}\",\"src\":", level.name());
    crate::json::escape_str(src, out);
    out.push_str(",\"msg\":");
    crate::json::escape_str(msg, out);
    out.push_str("}\n");
}

/// A `fmt::Write` that keeps the first [`MSG_CAP`] bytes and ignores the rest.
#[derive(Default)]
pub struct Capped {
    s: String,
    full: bool,
}

impl fmt::Write for Capped {
    fn write_str(&mut self, part: &str) -> fmt::Result {
        if self.full {
            return Ok(());
        }
        let room = MSG_CAP.saturating_sub(self.s.len());
        if part.len() <= room {
            self.s.push_str(part);
        } else {
            let mut cut = room;
            while !part.is_char_boundary(cut) {
                cut -= 1; // 0 is a boundary, so this stops
            }
            self.s.push_str(part.get(..cut).unwrap_or(""));
            self.full = true;
        }
        // never an error: a Display impl that propagates it would end the message early
        Ok(())
    }
}

impl Capped {
    pub fn finish(mut self) -> String {
        if self.full {
            self.s.push_str(TRUNCATED);
        }
        self.s
    }
}

/// `args` formatted and cut at [`MSG_CAP`]; never panics, whatever the Display impls do.
pub fn format_capped(args: fmt::Arguments) -> String {
    let mut c = Capped::default();
    let _ = fmt::write(&mut c, args);
    c.finish()
}

fn cap_str(msg: &str) -> Cow<'_, str> {
    if msg.len() <= MSG_CAP {
        return Cow::Borrowed(msg);
    }
    let mut c = Capped::default();
    let _ = c.write_str(msg);
    Cow::Owned(c.finish())
}

/// One path component that stays where it is joined.
fn component_ok(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\0'])
}

/// A source path (`lxc/console.log`, `/var/log/messages`) or a revision (`locals/x`) made
/// relative, or `None` if it would climb out (`..`) or is empty.
fn source_path(source: &str) -> Option<PathBuf> {
    let mut p = PathBuf::new();
    for c in source.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if !component_ok(c) {
            return None;
        }
        p.push(c);
    }
    (!p.as_os_str().is_empty()).then_some(p)
}

/// `mkdir -p` of `dir` below `base`, which itself is never created: nothing is written under
/// an unmounted storage mount point or a log directory removed on purpose.
pub(super) fn make_dirs(base: &Path, dir: &Path) -> io::Result<()> {
    let rel = dir
        .strip_prefix(base)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut p = base.to_path_buf();
    for c in rel.components() {
        p.push(c);
        match fs::create_dir(&p) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `<path><suffix>`
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// N of an archive name `<base>.<N>.gz[...]`, from its part after `<base>.`.
fn archive_seq(rest: &str) -> Option<u64> {
    let (n, tail) = rest.split_once('.')?;
    if tail == "gz" || tail.starts_with("gz.") {
        n.parse().ok()
    } else {
        None
    }
}

/// The next free sequence number for archives of `path`: one above the highest in use.
fn next_seq(path: &Path) -> u64 {
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return 1;
    };
    let Ok(rd) = fs::read_dir(dir) else { return 1 };
    let mut max = 0;
    for e in rd {
        let Ok(e) = e else { continue };
        let name = e.file_name();
        let seq = name
            .to_str()
            .and_then(|n| n.strip_prefix(base))
            .and_then(|n| n.strip_prefix('.'))
            .and_then(archive_seq);
        if let Some(n) = seq {
            max = max.max(n);
        }
    }
    max.saturating_add(1)
}

struct Open {
    file: File,
    next_seq: u64,
}

struct Capture {
    pv_dir: PathBuf,
    size: u64,
}

/// The sinks and the bookkeeping of one log directory.
pub struct LogTree {
    dir: PathBuf,
    /// relative: `5`, `locals/my-update`
    rev: PathBuf,
    outputs: Outputs,
    level: Level,
    max_size: MaxSize,
    rotate_factor: u64,
    hysteresis_factor: u64,
    limits: Limits,
    files: Vec<(PathBuf, Open)>,
    capture: Option<Capture>,
    dropped: u64,
    reported: u64,
    since_walk: u32,
    /// directory size at the last walk plus what was written since
    approx: u64,
    walking: bool,
    /// the last walk could not get below the high watermark (nothing left to delete)
    stuck: bool,
}

impl LogTree {
    /// Computes the budget (a `statfs` when it is automatic); opens nothing yet.
    pub fn new(cfg: &LogConfig) -> LogTree {
        let m = budget(&cfg.dir, cfg.max_size).unwrap_or(FALLBACK_BUDGET);
        LogTree {
            dir: cfg.dir.clone(),
            rev: PathBuf::new(),
            outputs: cfg.outputs,
            level: cfg.level,
            max_size: cfg.max_size,
            rotate_factor: cfg.rotate_factor,
            hysteresis_factor: cfg.hysteresis_factor,
            limits: Limits::new(m, cfg.rotate_factor, cfg.hysteresis_factor),
            files: Vec::new(),
            capture: None,
            dropped: 0,
            reported: 0,
            // the first message walks, which learns the directory's size
            since_walk: WALK_EVERY,
            approx: 0,
            walking: false,
            stuck: false,
        }
        .with_revision(&cfg.rev)
    }

    fn with_revision(mut self, rev: &str) -> Self {
        self.set_revision(rev);
        self
    }

    /// After a live (no reboot) update: new records go under `<logdir>/<rev>/`.
    pub fn set_revision(&mut self, rev: &str) {
        // a name that would climb out of the log directory cannot come from storage
        self.rev = source_path(rev).unwrap_or_else(|| PathBuf::from("unknown"));
        self.files.clear();
    }
    pub fn set_level(&mut self, level: Level) {
        self.level = level;
    }
    pub fn outputs(&self) -> Outputs {
        self.outputs
    }
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// Lines that could not be written (one per sink file), since the tree was made.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn rev_dir(&self) -> PathBuf {
        self.dir.join(&self.rev)
    }
    /// `<logdir>/<rev>/<platform>/<source>`, or `None` if a name would climb out of it.
    pub fn path_for(&self, rev: &str, platform: &str, source: &str) -> Option<PathBuf> {
        if !component_ok(platform) {
            return None;
        }
        let rel = source_path(source)?;
        Some(self.dir.join(source_path(rev)?).join(platform).join(rel))
    }
    fn pantavisor_log(&self) -> PathBuf {
        self.rev_dir().join(PANTAVISOR).join("pantavisor.log")
    }
    fn single_log(&self) -> PathBuf {
        self.rev_dir().join("pv.log")
    }

    /// ERROR/FATAL records (whatever the level filter) go to `<pv_dir>/logs.tmp` from now on.
    pub fn start_update_capture(&mut self, pv_dir: &Path) {
        self.stop_update_capture();
        let size = fs::metadata(pv_dir.join("logs.tmp")).map_or(0, |m| m.len());
        self.capture = Some(Capture {
            pv_dir: pv_dir.to_path_buf(),
            size,
        });
    }
    /// `logs.tmp` becomes `logs` (nothing happens if no error was captured).
    pub fn stop_update_capture(&mut self) {
        if let Some(c) = self.capture.take() {
            let _ = fs::rename(c.pv_dir.join("logs.tmp"), c.pv_dir.join("logs"));
        }
    }
    pub fn capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// Writes one record of pantavisor to the file sinks; the job must then be run.
    pub fn write(&mut self, rec: &Record) -> Job {
        let mut job = Job::default();
        if rec.level <= Level::Error {
            self.capture_line(rec.json.as_bytes());
        }
        if rec.level > self.level {
            return job;
        }
        if self.write_sinks(rec, &mut job) && self.dropped > self.reported {
            let n = self.dropped - self.reported;
            self.reported = self.dropped;
            let note = Record::new(
                Level::Warn,
                rec.tsec,
                "logs",
                &format!("{n} log lines dropped (storage unwritable)"),
            );
            self.write_sinks(&note, &mut job);
        }
        self.tick(&mut job);
        job
    }

    /// True if one sink at least took the line.
    fn write_sinks(&mut self, rec: &Record, job: &mut Job) -> bool {
        let mut ok = false;
        if self.outputs.has(Outputs::FILETREE) {
            ok |= self.write_file(&self.pantavisor_log(), rec.text.as_bytes(), job);
        }
        if self.outputs.has(Outputs::SINGLEFILE) {
            ok |= self.write_file(&self.single_log(), rec.json.as_bytes(), job);
        }
        ok
    }

    /// Writes another source's output: raw to `<rev>/<platform>/<source>` (formatted into
    /// pantavisor.log for platform `pantavisor`), as JSON lines to pv.log.
    pub fn write_chunk(&mut self, c: &Chunk) -> Job {
        let mut job = Job::default();
        if c.raw.is_empty() {
            return job;
        }
        if self.outputs.has(Outputs::FILETREE) {
            if c.platform == PANTAVISOR {
                self.write_file(&self.pantavisor_log(), c.text.as_bytes(), &mut job);
            } else {
                let path = self.rev_dir().join(c.platform).join(&c.rel);
                self.write_file(&path, c.raw, &mut job);
            }
        }
        if self.outputs.has(Outputs::SINGLEFILE) {
            self.write_file(&self.single_log(), c.json.as_bytes(), &mut job);
        }
        self.tick(&mut job);
        job
    }

    fn capture_line(&mut self, line: &[u8]) {
        let Some(c) = &mut self.capture else { return };
        let len = line.len() as u64;
        if c.size + len > CAPTURE_CAP {
            return;
        }
        match open_append(&c.pv_dir.join("logs.tmp")).and_then(|mut f| f.write_all(line)) {
            Ok(()) => c.size += len,
            Err(_) => self.dropped += 1,
        }
    }

    /// Closes a cached writer.
    fn forget(&mut self, i: usize) {
        if i < self.files.len() {
            self.files.remove(i);
        }
    }

    /// The cached writer of `path` and the file's size, opened if needed. A cached file that
    /// was unlinked (its directory removed, storage wiped) is reopened, so lines never go to
    /// an invisible inode that no walk can count.
    fn slot(&mut self, path: &Path) -> io::Result<(usize, u64)> {
        // byte comparison: the names are built the same way every time
        let key = path.as_os_str();
        if let Some(i) = self.files.iter().position(|(p, _)| p.as_os_str() == key) {
            match self.files.get(i).map(|(_, o)| o.file.metadata()) {
                Some(Ok(m)) if m.nlink() > 0 => return Ok((i, m.len())),
                _ => self.forget(i),
            }
        }
        let (o, size) = self.open(path)?;
        if self.files.len() >= OPEN_FILES {
            self.forget(0);
        }
        self.files.push((path.to_path_buf(), o));
        Ok((self.files.len() - 1, size))
    }

    /// Appends `bytes` to `path`, rotating it first if it would grow past the per-file size.
    fn write_file(&mut self, path: &Path, bytes: &[u8], job: &mut Job) -> bool {
        if bytes.is_empty() {
            return true;
        }
        let len = bytes.len() as u64;
        let Ok((i, size)) = self.slot(path) else {
            self.dropped += 1;
            return false;
        };
        let Some((_, o)) = self.files.get_mut(i) else {
            return false;
        };
        if size > 0 && size.saturating_add(len) > self.limits.per_file {
            let pending = suffixed(path, &format!(".{}.gz.pending", o.next_seq));
            // A failed rename leaves the file growing; the walk archives it at twice the size.
            if fs::rename(path, &pending).is_ok() {
                o.next_seq += 1;
                job.pending.push(pending);
                match open_append(path) {
                    Ok(f) => o.file = f,
                    Err(_) => {
                        self.forget(i);
                        self.dropped += 1;
                        return false;
                    }
                }
            }
        }
        match o.file.write_all(bytes) {
            Ok(()) => {
                self.approx += len;
                true
            }
            Err(_) => {
                // reopened on the next line: space may be freed, the directory may come back
                self.forget(i);
                self.dropped += 1;
                false
            }
        }
    }

    fn open(&self, path: &Path) -> io::Result<(Open, u64)> {
        let file = match open_append(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                make_dirs(&self.dir, path.parent().unwrap_or(&self.dir))?;
                open_append(path)?
            }
            Err(e) => return Err(e),
        };
        let size = file.metadata().map_or(0, |m| m.len());
        let next_seq = next_seq(path);
        Ok((Open { file, next_seq }, size))
    }

    /// A walk now, whatever the message count: the runtime calls it periodically, since
    /// containers write their consoles without going through pantavisor's records.
    pub fn maintenance(&mut self) -> Job {
        let mut job = Job::default();
        self.since_walk = WALK_EVERY;
        self.tick(&mut job);
        job
    }

    fn tick(&mut self, job: &mut Job) {
        self.since_walk = self.since_walk.saturating_add(1);
        let by_count = self.since_walk >= WALK_EVERY;
        let by_size = self.approx > self.limits.high
            && !self.walking
            && (!self.stuck || !job.pending.is_empty());
        if by_count || by_size {
            self.since_walk = 0;
            self.walking = true;
            job.walk = Some(WalkPlan {
                dir: self.dir.clone(),
                max_size: self.max_size,
                rotate_factor: self.rotate_factor,
                hysteresis_factor: self.hysteresis_factor,
                limits: self.limits,
            });
        }
    }

    /// Takes the result of a job's walk: the measured size and the (re)computed budget.
    pub fn walked(&mut self, w: Walked) {
        self.approx = w.total;
        self.limits = w.limits;
        self.walking = false;
        self.stuck = w.total > w.limits.high;
    }

    /// Runs a job here and now (tests, single-threaded callers).
    pub fn finish(&mut self, job: Job) {
        if let Some(w) = job.run() {
            self.walked(w);
        }
    }
    /// `write` and `finish`.
    pub fn log(&mut self, rec: &Record) {
        let job = self.write(rec);
        self.finish(job);
    }
    /// `write_chunk` and `finish`; false if the names were refused.
    pub fn append(&mut self, tsec: u64, platform: &str, source: &str, raw: &[u8]) -> bool {
        let Some(c) = Chunk::new(tsec, platform, source, raw, self.outputs) else {
            return false;
        };
        let job = self.write_chunk(&c);
        self.finish(job);
        true
    }
}

struct WalkPlan {
    dir: PathBuf,
    max_size: MaxSize,
    rotate_factor: u64,
    hysteresis_factor: u64,
    limits: Limits,
}

/// What a walk found, for [`LogTree::walked`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walked {
    /// bytes in the log directory after the clean-up
    pub total: u64,
    pub limits: Limits,
}

/// File work decided under the lock, done outside it: archives to write, a walk to make.
#[derive(Default)]
#[must_use = "a Job must be run, else rotated files stay uncompressed"]
pub struct Job {
    pending: Vec<PathBuf>,
    walk: Option<WalkPlan>,
}

impl Job {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.walk.is_none()
    }
    /// Adds `later`'s work to this job's: its archives after these, its walk (the newer plan)
    /// instead of this one's -- one walk does for both.
    pub fn merge(&mut self, later: Job) {
        self.pending.extend(later.pending);
        if later.walk.is_some() {
            self.walk = later.walk;
        }
    }
    /// Compresses the rotated files, then walks and cleans the directory if that was due.
    pub fn run(self) -> Option<Walked> {
        for p in &self.pending {
            archive_pending(p);
        }
        let plan = self.walk?;
        let limits = match budget(&plan.dir, plan.max_size) {
            Some(m) => Limits::new(m, plan.rotate_factor, plan.hysteresis_factor),
            None => plan.limits,
        };
        let total = clean(&plan.dir, &limits);
        Some(Walked { total, limits })
    }
}

/// `<file>.<N>.gz.pending` (a rotated file) becomes `<file>.<N>.gz`. The pending file is
/// removed even if that fails (a full disk): the budget comes before old lines.
fn archive_pending(pending: &Path) {
    let Some(gz) = pending
        .to_str()
        .and_then(|s| s.strip_suffix(".pending"))
        .map(PathBuf::from)
    else {
        return;
    };
    let _ = compress_to(pending, &gz);
    let _ = fs::remove_file(pending);
}

/// `src` as `gz` through `gz.tmp`, so a crash never leaves a truncated archive under the name.
fn compress_to(src: &Path, gz: &Path) -> io::Result<()> {
    let tmp = suffixed(gz, ".tmp");
    let r = File::open(src).and_then(|mut s| {
        let mut d = File::create(&tmp)?;
        gzip_stored(&mut s, &mut d)?;
        fs::rename(&tmp, gz)
    });
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// A file written by someone else (e.g. at a `container_log_path`) that grew past twice the
/// per-file size: archived, then truncated in place so its writer keeps a valid fd. Lines that
/// writer adds between the copy and the truncation are lost.
fn archive_in_place(path: &Path) {
    let gz = suffixed(path, &format!(".{}.gz", next_seq(path)));
    if compress_to(path, &gz).is_ok() || gz.exists() {
        if let Ok(f) = OpenOptions::new().write(true).open(path) {
            let _ = f.set_len(0);
        }
    }
}

struct Archive {
    path: PathBuf,
    mtime: SystemTime,
    seq: u64,
    len: u64,
}

#[derive(Default)]
struct Group {
    size: u64,
    archives: Vec<Archive>,
}

#[derive(Default)]
struct Scan {
    total: u64,
    /// one per entry directly under the log directory (a revision); files lying directly in
    /// the log directory form group 0
    groups: Vec<Group>,
    /// crash leftovers (true: a `.gz.pending`) and others' oversized files (false): handled,
    /// then the directory is walked again
    fixes: Vec<(PathBuf, bool)>,
}

/// Walks without following symlinks (`logs/current`); depth is bounded by the explicit stack
/// and by the file system's own limits, never by our stack.
fn scan(dir: &Path, per_file: u64) -> Scan {
    let mut s = Scan {
        groups: vec![Group::default()],
        ..Scan::default()
    };
    // (directory, its group; None for the log directory itself)
    let mut stack: Vec<(PathBuf, Option<usize>)> = vec![(dir.to_path_buf(), None)];
    while let Some((d, group)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let Ok(e) = e else { continue };
            let Ok(ft) = e.file_type() else { continue };
            let path = e.path();
            if ft.is_dir() {
                let g = group.unwrap_or_else(|| {
                    s.groups.push(Group::default());
                    s.groups.len() - 1
                });
                stack.push((path, Some(g)));
                continue;
            }
            let group = group.unwrap_or(0);
            if !ft.is_file() {
                continue;
            }
            let Ok(m) = e.metadata() else { continue };
            let name = e.file_name();
            let name = name.as_bytes();
            if name.ends_with(b".gz.tmp") {
                // an archive being written when the device went down
                let _ = fs::remove_file(&path);
                continue;
            }
            let len = m.len();
            s.total += len;
            let Some(g) = s.groups.get_mut(group) else {
                continue;
            };
            g.size += len;
            if name.ends_with(b".gz.pending") {
                s.fixes.push((path, true));
            } else if let Some(stem) = name.strip_suffix(b".gz") {
                let seq = stem
                    .rsplit(|&b| b == b'.')
                    .next()
                    .and_then(|n| std::str::from_utf8(n).ok()?.parse().ok())
                    .unwrap_or(0);
                g.archives.push(Archive {
                    path,
                    mtime: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    seq,
                    len,
                });
            } else if len > per_file.saturating_mul(2) {
                s.fixes.push((path, false));
            }
        }
    }
    s
}

/// Measures the log directory and, above the high watermark, deletes archives -- the oldest
/// of the largest revision directory first -- until it is below the low watermark. Files
/// being written (anything not `.gz`) are never deleted. Returns the size left.
pub(super) fn clean(dir: &Path, limits: &Limits) -> u64 {
    let mut s = scan(dir, limits.per_file);
    if !s.fixes.is_empty() {
        for (f, pending) in &s.fixes {
            if *pending {
                archive_pending(f);
            } else {
                archive_in_place(f);
            }
        }
        s = scan(dir, limits.per_file);
    }
    let mut total = s.total;
    if total <= limits.high {
        return total;
    }
    while total >= limits.low {
        let Some(g) = s
            .groups
            .iter_mut()
            .filter(|g| !g.archives.is_empty())
            .max_by_key(|g| g.size)
        else {
            break;
        };
        // the oldest: a linear search, the lists are short and a sort costs kilobytes of code
        let Some(i) = (0..g.archives.len()).min_by_key(|&i| {
            g.archives
                .get(i)
                .map(|a| (a.mtime, a.seq))
                .unwrap_or((SystemTime::UNIX_EPOCH, 0))
        }) else {
            break;
        };
        let a = g.archives.swap_remove(i);
        match fs::remove_file(&a.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => continue,
            _ => {
                g.size = g.size.saturating_sub(a.len);
                total = total.saturating_sub(a.len);
            }
        }
    }
    total
}

/// The progress `logs` field (upstream's progress JSON): the whole lines of the first 4 KiB of an
/// update's captured `.pv/logs`; `None` without a complete line.
pub fn logs_excerpt(data: &[u8]) -> Option<String> {
    let head = data.get(..data.len().min(4096))?;
    let end = head.iter().rposition(|&b| b == b'\n')? + 1;
    Some(String::from_utf8_lossy(head.get(..end)?).into_owned())
}
