//! Log push (reference 8.7, upstream `ph_logger.c`): the lines of the log tree's files become
//! the Hub's log entries, POSTed to `/logs/` in bounded batches by the Hub daemon. The pure
//! part (entries, lines, batch limits) first, then [`Pusher`], which reads the files and keeps
//! the pushed positions crash-safely; the daemon does the POSTs.
//!
//! Positions: upstream keeps one per file in the xattr `trusted.ph.logger.pos` but reads it
//! back as 0 (`_load_log_file_pos`), so it pushes everything again after every restart. Ours
//! are one file, replaced atomically after each batch the Hub took: exactly once across a
//! restart, and at most the batch in flight again after a power cut.
//!
//! Rotation (see `logs::tree`): the logger renames a full file to `<file>.<N>.gz.pending` and
//! starts a new one; others' files are copied to `<file>.<N>.gz` and truncated. The pusher
//! keeps the file it reads open, so the renamed generation is still read to its end (its
//! unterminated last line included) before the new one. What it cannot read any more -- a
//! generation rotated while the pusher was not running or had not seen it, a file truncated
//! before it was pushed, a revision removed -- is counted in bytes by [`Pusher::take_lost`]
//! (from the archives' sizes where they are still there, else what the pusher last saw), for
//! the daemon to log: never silently lost. Archives are not pushed, as upstream.

use crate::json::ObjectWriter;
use crate::storage::fs::{write_atomic, Fs};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// At most this many entries per POST (upstream's `PH_LOGGER_PUSH_MAX_FRAGS`).
pub const MAX_ENTRIES: usize = 200;
/// At most this many bytes of entries per POST (upstream's `PH_LOGGER_PUSH_MAX_BYTES`): the Hub
/// drops a bigger POST without a word.
pub const MAX_BYTES: usize = 256 * 1024;

/// The entry of one log line of `<logdir>/<rev>/<rel>`: `plat` is the first component of
/// `rel`, `src` the rest with its leading `/` (a file right under the revision has platform
/// `pantavisor-UNKNOWN` and itself as source, as upstream). File-pushed lines carry no time
/// and level INFO, as upstream's; NUL bytes become spaces and invalid UTF-8 is replaced.
pub fn entry(rev: &str, rel: &str, line: &[u8]) -> String {
    let (plat, src) = match rel.find('/') {
        // upstream keeps at most 63 bytes of the platform name
        Some(i) => (truncate(&rel[..i], 63), &rel[i..]),
        None => ("pantavisor-UNKNOWN", rel),
    };
    let msg: Vec<u8> = line
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    let mut o = ObjectWriter::new();
    o.uint("tsec", 0)
        .uint("tnano", 0)
        .str("lvl", "INFO")
        .str("src", src)
        .str("plat", plat)
        .str("rev", rev)
        .str("msg", &String::from_utf8_lossy(&msg));
    o.finish()
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The lines in `block`, read from a file at some offset: each with the offset just past it
/// (relative to the block), so a saved position only ever moves past lines that were sent. A
/// last line without its newline waits for the writer, unless the block is `full` (the read
/// buffer filled with no newline at all): then it goes as one line, as upstream's.
pub fn lines(block: &[u8], full: bool) -> Vec<(&[u8], usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(i) = block[start..].iter().position(|&b| b == b'\n') {
        out.push((&block[start..start + i], start + i + 1));
        start += i + 1;
    }
    if full && out.is_empty() && !block.is_empty() {
        out.push((block, block.len()));
    }
    out
}

/// Whether an entry of `len` bytes joins a batch of `n` entries whose body (brackets and
/// commas counted) has `bytes` bytes: at most [`MAX_ENTRIES`] and [`MAX_BYTES`], but the first
/// always does, so an oversized line still moves on; only the first while `isolate` (a batch
/// the Hub refused is retried entry by entry to find the line it will never take).
pub fn fits(n: usize, bytes: usize, len: usize, isolate: bool) -> bool {
    n == 0
        || (!isolate && n < MAX_ENTRIES && bytes.saturating_add(len).saturating_add(1) <= MAX_BYTES)
}

/// What the answer to a POST /logs/ means for its batch (upstream's `ph_logger_push_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 200: commit it.
    Taken,
    /// No answer, 401, 403, 408, 429, 5xx, or anything unexpected: send it again later (a
    /// 401 also ends the session, reference 8.3).
    Retry,
    /// Any other 4xx: the Hub will never take it. Several entries: isolate; one: drop it
    /// (commit) with a log line.
    Refused,
}

/// `status`: the HTTP status, `None` when no answer came.
pub fn answer(status: Option<u16>) -> Answer {
    match status {
        Some(200) => Answer::Taken,
        Some(401 | 403 | 408 | 429) => Answer::Retry,
        Some(s) if (400..500).contains(&s) => Answer::Refused,
        _ => Answer::Retry,
    }
}

/// The POST body for `entries`: a JSON array.
pub fn body(entries: &[String]) -> String {
    let mut s = String::with_capacity(entries.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    s.push('[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(e);
    }
    s.push(']');
    s
}

/// Bytes read from a file at a time. A line longer than this goes in pieces of this size, so
/// one entry stays within [`MAX_BYTES`] even with every byte escaped (`\u00XX`).
const BLOCK: usize = 32 * 1024;
/// Log files kept open (to read a rotated file to its end); the least useful are closed.
const MAX_OPEN: usize = 32;
/// While lines keep coming, the tree is walked again for new files this often.
const RESCAN_MS: u64 = 5_000;
/// First line of the positions file.
const HEADER: &str = "pv-logpush 1";
/// Bytes of a file's start that identify its generation.
const HEAD: u64 = 256;

/// One log file: where its pushed lines end.
struct Track {
    rev: String,
    /// the path under the revision, `pvr-sdk/lxc/console.log`
    rel: String,
    /// the generation (inode) `pos` is about; 0 before the file was first opened
    ino: u64,
    /// end of the last pushed line
    pos: u64,
    /// the file's size when last read: what a rotation took at least
    seen: u64,
    /// the pushed part ends with a newline (not a piece of an overlong line): a file
    /// truncated and written again past `pos` is told by the byte before `pos`
    nl: bool,
    /// the archive number this generation gets when rotated (`<file>.<seq>.gz`)
    seq: u64,
    /// CRC-32 of the generation's first `head_len` bytes (at most [`HEAD`]): tells it from
    /// a later one that got the same inode number, or was truncated and written again
    head_len: u64,
    head_crc: u32,
    file: Option<File>,
}

/// One POST /logs/ body and the positions it moves.
pub struct Batch {
    /// the JSON array to POST
    pub body: String,
    /// its number of entries
    pub entries: usize,
    ends: Vec<End>,
}

struct End {
    rev: String,
    rel: String,
    ino: u64,
    pos: u64,
    seen: u64,
    nl: bool,
}

/// Reads the log tree for the Hub (see the module's doc): [`Pusher::next_batch`] gives a batch,
/// [`Pusher::commit`] records that it is done with.
pub struct Pusher<'a> {
    fs: &'a dyn Fs,
    logdir: PathBuf,
    state: PathBuf,
    current: String,
    tracks: Vec<Track>,
    lost: u64,
    isolate: bool,
    scanned_ms: Option<u64>,
}

fn bad_state(state: &Path, line: usize, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: line {line}: {what}", state.display()),
    )
}

impl<'a> Pusher<'a> {
    /// `logdir`: the log tree (`<storage>/logs`); `state`: the positions file, written through
    /// `fs` (e.g. `<storage>/logs/.ph-push`; the tree's walk only looks at revision folders).
    /// An unreadable or malformed positions file is an error naming it: removing it means
    /// pushing everything again.
    pub fn open(fs: &'a dyn Fs, logdir: &Path, state: &Path) -> io::Result<Pusher<'a>> {
        let text = match fs.read(state) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let text = String::from_utf8(text).map_err(|_| bad_state(state, 1, "not UTF-8"))?;
        let mut tracks = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if i == 0 {
                if line != HEADER {
                    return Err(bad_state(state, 1, "not a positions file"));
                }
                continue;
            }
            // <ino> <pos> <seen> <nl> <seq> <head_len> <head_crc> <rev> <rel...>
            let mut f = line.splitn(9, ' ');
            let mut num = || f.next().and_then(|n| n.parse::<u64>().ok());
            let (Some(ino), Some(pos), Some(seen), Some(nl), Some(seq), Some(head_len)) =
                (num(), num(), num(), num(), num(), num())
            else {
                return Err(bad_state(state, i + 1, "bad numbers"));
            };
            let Some(head_crc) = f.next().and_then(|n| n.parse::<u32>().ok()) else {
                return Err(bad_state(state, i + 1, "bad numbers"));
            };
            let (Some(rev), Some(rel)) = (f.next(), f.next()) else {
                return Err(bad_state(state, i + 1, "no file name"));
            };
            if !crate::storage::valid_revision(rev) || rel.is_empty() {
                return Err(bad_state(state, i + 1, "bad file name"));
            }
            tracks.push(Track {
                rev: rev.to_string(),
                rel: rel.to_string(),
                ino,
                pos,
                seen,
                nl: nl == 1,
                seq,
                head_len,
                head_crc,
                file: None,
            });
        }
        Ok(Pusher {
            fs,
            logdir: logdir.to_path_buf(),
            state: state.to_path_buf(),
            current: String::new(),
            tracks,
            lost: 0,
            isolate: false,
            scanned_ms: None,
        })
    }

    /// The running revision: its files go first (upstream's push service), then the other
    /// revisions', newest first (its range service).
    pub fn set_current(&mut self, rev: &str) {
        if self.current != rev {
            self.current = rev.to_string();
            self.scanned_ms = None;
        }
    }

    /// The next batch, or None when there is nothing new. Reads at most what one batch needs.
    /// A file that cannot be read is skipped; the error, naming it, is returned when nothing
    /// else was there to send.
    pub fn next_batch(&mut self) -> io::Result<Option<Batch>> {
        let now = crate::sys::event::monotonic_ms();
        let due = self
            .scanned_ms
            .is_none_or(|t| now.saturating_sub(t) >= RESCAN_MS);
        if due {
            self.scan(now);
        }
        match self.collect() {
            Ok(None) if !due => {
                // nothing in the known files: maybe in new ones
                self.scan(now);
                self.collect()
            }
            r => r,
        }
    }

    /// The Hub refused a batch of several entries for good ([`Answer::Refused`]): the next batch is its first entry alone, and so on until
    /// a commit, so the one line the Hub will never take is found and dropped (its commit)
    /// while the others still go (upstream's isolation).
    pub fn isolate(&mut self) {
        self.isolate = true;
    }

    /// The Hub took the batch (200) or refused it for good (a single entry, dropped with a log
    /// line): the positions move past it, durably. On an error they have moved in memory
    /// all the same (the batch is not sent twice by this process); after a power cut it may be.
    pub fn commit(&mut self, b: &Batch) -> io::Result<()> {
        for e in &b.ends {
            let t = self
                .tracks
                .iter_mut()
                .find(|t| t.ino == e.ino && t.rev == e.rev && t.rel == e.rel);
            if let Some(t) = t {
                t.pos = e.pos;
                t.nl = e.nl;
                t.seen = t.seen.max(e.seen);
            }
        }
        self.isolate = false;
        let mut text = String::from(HEADER);
        text.push('\n');
        for t in self.tracks.iter().filter(|t| t.ino != 0) {
            text.push_str(&format!(
                "{} {} {} {} {} {} {} {} {}\n",
                t.ino,
                t.pos,
                t.seen,
                u8::from(t.nl),
                t.seq,
                t.head_len,
                t.head_crc,
                t.rev,
                t.rel
            ));
        }
        write_atomic(self.fs, &self.state, text.as_bytes())
    }

    /// Bytes that rotation or removal took before they were pushed, since the last call.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }

    /// Walks the revisions' folders: new files are tracked from their start; a tracked file
    /// gone from the tree is finished from its open descriptor, or counted lost.
    fn scan(&mut self, now: u64) {
        self.scanned_ms = Some(now);
        let mut old = std::mem::take(&mut self.tracks);
        for (rev, rel) in walk(&self.logdir, &self.current) {
            let t = match old.iter().position(|t| t.rev == rev && t.rel == rel) {
                Some(i) => old.swap_remove(i),
                None => Track {
                    rev,
                    rel,
                    ino: 0,
                    pos: 0,
                    seen: 0,
                    nl: false,
                    seq: 0,
                    head_len: 0,
                    head_crc: 0,
                    file: None,
                },
            };
            self.tracks.push(t);
        }
        for t in old {
            if t.file.is_some() {
                self.tracks.push(t);
            } else {
                self.lost += t.seen.saturating_sub(t.pos);
            }
        }
    }

    fn collect(&mut self) -> io::Result<Option<Batch>> {
        let mut fill = Fill {
            entries: Vec::new(),
            bytes: 2,
            full: false,
            ends: Vec::new(),
        };
        let mut buf = vec![0u8; BLOCK];
        let mut err = None;
        let mut i = 0;
        while i < self.tracks.len() && !fill.full {
            let Some(t) = self.tracks.get_mut(i) else {
                break;
            };
            match read(&self.logdir, t, &mut fill, &mut buf, self.isolate) {
                Ok(Outcome::Keep(lost)) => self.lost += lost,
                Ok(Outcome::Gone(lost)) => {
                    self.lost += lost;
                    self.tracks.remove(i);
                    continue;
                }
                Err(e) => {
                    let path = self.logdir.join(&t.rev).join(&t.rel);
                    err.get_or_insert(io::Error::new(e.kind(), format!("{}: {e}", path.display())));
                    t.file = None;
                }
            }
            i += 1;
            self.close_spare(i);
        }
        if fill.entries.is_empty() {
            return err.map_or(Ok(None), Err);
        }
        Ok(Some(Batch {
            body: body(&fill.entries),
            entries: fill.entries.len(),
            ends: fill.ends,
        }))
    }

    /// Keeps at most [`MAX_OPEN`] files open: closes the lowest in order that is pushed to
    /// the size last seen (a rotation before it is opened again costs at most what comes
    /// after), not counting the first `keep`.
    fn close_spare(&mut self, keep: usize) {
        if self.tracks.iter().filter(|t| t.file.is_some()).count() <= MAX_OPEN {
            return;
        }
        let spare = self
            .tracks
            .iter_mut()
            .skip(keep)
            .rev()
            .find(|t| t.file.is_some() && t.pos >= t.seen);
        if let Some(t) = spare {
            t.file = None;
        }
    }
}

/// The batch being filled.
struct Fill {
    entries: Vec<String>,
    /// the body's size so far: brackets and commas counted
    bytes: usize,
    full: bool,
    ends: Vec<End>,
}

impl Fill {
    fn add(&mut self, e: String, isolate: bool) -> bool {
        if !fits(self.entries.len(), self.bytes, e.len(), isolate) {
            self.full = true;
            return false;
        }
        self.bytes += e.len() + usize::from(!self.entries.is_empty());
        self.entries.push(e);
        true
    }
}

enum Outcome {
    /// still tracked; bytes lost
    Keep(u64),
    /// the file is gone and read to its end; bytes lost
    Gone(u64),
}

/// Adds `t`'s new lines to `fill`; handles rotation and truncation on the way.
fn read(
    logdir: &Path,
    t: &mut Track,
    fill: &mut Fill,
    buf: &mut [u8],
    isolate: bool,
) -> io::Result<Outcome> {
    let path = logdir.join(&t.rev).join(&t.rel);
    let mut lost = 0;
    loop {
        let f = match t.file.take() {
            Some(f) => f,
            None => {
                let f = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        // gone before it was opened again: what was not pushed is lost
                        lost += t.seen.saturating_sub(t.pos);
                        return Ok(Outcome::Gone(lost));
                    }
                    Err(e) => return Err(e),
                };
                let ino = f.metadata()?.ino();
                if ino != t.ino {
                    // another generation than the one the positions are about
                    if t.ino != 0 {
                        lost += rotated_away(&path, t);
                    }
                    adopt(&path, t, ino);
                }
                f
            }
        };
        // the generation now under the name, if any
        let named = std::fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.ino());
        let size = f.metadata()?.len();
        let rotated = named != Some(t.ino);
        let regrown = t.nl && t.pos > 0 && size > t.pos && {
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, t.pos - 1).is_ok() && b[0] != b'\n'
        };
        let other = t.head_len > 0 && head(&f, t.head_len.min(size)) != Some(t.head_crc);
        if size < t.pos || regrown || other {
            // truncated in place (others' files are archived that way), or another file
            // under a reused inode number: the unpushed rest is in the archive, not here
            lost += rotated_away(&path, t);
            let ino = t.ino;
            adopt(&path, t, ino);
        }
        if t.head_len < HEAD.min(size) {
            t.head_len = HEAD.min(size);
            t.head_crc = head(&f, t.head_len).unwrap_or(0);
        }
        t.seen = t.seen.max(size);
        if t.pos >= size {
            if rotated && named.is_some() {
                // the renamed generation is pushed to its end: on to the new one
                lost += skipped(&archives(&path), t.seq + 1);
                t.ino = 0;
                continue;
            }
            if rotated {
                return Ok(Outcome::Gone(lost));
            }
            t.file = Some(f);
            return Ok(Outcome::Keep(lost));
        }
        let mut cursor = t.pos;
        let mut nl = t.nl;
        while cursor < size && !fill.full {
            let n = f.read_at(buf, cursor)?;
            let Some(block) = buf.get(..n).filter(|b| !b.is_empty()) else {
                break;
            };
            let full = n == BLOCK;
            let mut ls = lines(block, full);
            let done = ls.last().map_or(0, |l| l.1);
            // nobody completes the last line of a rotated generation: it goes as it is
            if rotated && !full && done < n {
                ls.push((block.get(done..).unwrap_or_default(), n));
            }
            if ls.is_empty() {
                break;
            }
            let at = cursor;
            for (line, end) in ls {
                if !fill.add(entry(&t.rev, &t.rel, line), isolate) {
                    break;
                }
                cursor = at + end as u64;
                nl = block.get(end.wrapping_sub(1)) == Some(&b'\n');
            }
        }
        if cursor > t.pos {
            fill.ends.push(End {
                rev: t.rev.clone(),
                rel: t.rel.clone(),
                ino: t.ino,
                pos: cursor,
                seen: size,
                nl,
            });
        }
        t.file = Some(f);
        return Ok(Outcome::Keep(lost));
    }
}
/// Starts `t` on generation `ino` of its file, from the beginning.
fn adopt(path: &Path, t: &mut Track, ino: u64) {
    t.ino = ino;
    t.pos = 0;
    t.seen = 0;
    t.nl = false;
    t.head_len = 0;
    t.head_crc = 0;
    t.seq = archives(path).iter().map(|a| a.0).max().unwrap_or(0) + 1;
}

/// CRC-32 of the first `len` bytes of `f`.
fn head(f: &File, len: u64) -> Option<u32> {
    let mut b = [0u8; HEAD as usize];
    let b = b.get_mut(..usize::try_from(len).ok()?)?;
    f.read_exact_at(b, 0).ok()?;
    Some(crate::logs::crc32_update(0, b))
}

/// Bytes of `t`'s generation that were not pushed before it was rotated away, with the
/// generations archived after it, never seen: from their archives where they are still there.
fn rotated_away(path: &Path, t: &Track) -> u64 {
    let list = archives(path);
    let own = list
        .iter()
        .find(|a| a.0 == t.seq)
        .map_or(t.seen, |a| a.1.max(t.seen));
    own.saturating_sub(t.pos) + skipped(&list, t.seq + 1)
}

/// Bytes in the archives numbered `from` and up.
fn skipped(list: &[(u64, u64)], from: u64) -> u64 {
    list.iter().filter(|a| a.0 >= from).map(|a| a.1).sum()
}

/// The archives of a log file: (N, bytes of log) for each `<file>.<N>.gz` or
/// `<file>.<N>.gz.pending` (being compressed).
fn archives(path: &Path) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    let (Some(dir), Some(base)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return out;
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(base))
            .and_then(|n| n.strip_prefix('.'))
        else {
            continue;
        };
        let Some((n, kind)) = rest.split_once('.') else {
            continue;
        };
        let Ok(n) = n.parse::<u64>() else { continue };
        let len = match kind {
            "gz" => gzip_isize(&e.path()),
            "gz.pending" => e.metadata().ok().map(|m| m.len()),
            _ => None,
        };
        if let Some(len) = len.filter(|_| !out.iter().any(|a| a.0 == n)) {
            out.push((n, len));
        }
    }
    out
}

/// The uncompressed size a gzip file records in its last 4 bytes.
fn gzip_isize(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    f.seek(SeekFrom::End(-4)).ok()?;
    let mut b = [0u8; 4];
    f.read_exact(&mut b).ok()?;
    Some(u64::from(u32::from_le_bytes(b)))
}

/// The log files to push as (revision, path under it): the `current` revision's first, then
/// the other revisions, newest first. Archives (`*.gz*`, as upstream's `find`), symlinks and
/// names that are not UTF-8 or hold a newline are left out.
fn walk(logdir: &Path, current: &str) -> Vec<(String, String)> {
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let mut revs: Vec<(u8, std::cmp::Reverse<u64>, String)> = Vec::new();
    let mut add = |rev: String| {
        if crate::storage::valid_revision(&rev) && is_dir(&logdir.join(&rev)) {
            let class = if rev == current {
                0
            } else if rev.starts_with("locals/") {
                2
            } else {
                1
            };
            revs.push((class, std::cmp::Reverse(rev.parse().unwrap_or(0)), rev));
        }
    };
    for name in names(logdir) {
        if name == "locals" {
            for local in names(&logdir.join("locals")) {
                add(format!("locals/{local}"));
            }
        } else {
            add(name);
        }
    }
    crate::sort(&mut revs);
    let mut out = Vec::new();
    for (_, _, rev) in revs {
        let mut files = Vec::new();
        let mut stack = vec![String::new()];
        while let Some(rel) = stack.pop() {
            for name in names(&logdir.join(&rev).join(&rel)) {
                let sub = if rel.is_empty() {
                    name.clone()
                } else {
                    format!("{rel}/{name}")
                };
                let Ok(m) = std::fs::symlink_metadata(logdir.join(&rev).join(&sub)) else {
                    continue;
                };
                if m.is_dir() {
                    stack.push(sub);
                } else if m.is_file() && !name.contains(".gz") && !name.contains('\n') {
                    files.push(sub);
                }
            }
        }
        crate::sort(&mut files);
        out.extend(files.into_iter().map(|f| (rev.clone(), f)));
    }
    out
}

/// The UTF-8 entry names of a directory (none if it cannot be read).
fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "logpush_tests.rs"]
mod tests;
