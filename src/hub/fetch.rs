//! Object downloads into the object store, resumed with `Range` (README "The Hub client").
//! What arrived is kept in `objects/.partial/<sha>` -- not `objects/<sha>.tmp`, which a boot
//! removes as a crash's leftover -- and made durable every [`SLICE`]; the object is published
//! as `objects/<sha>` only once its sha256 matches (fsync, rename, directory fsync).
//!
//! A partial file left by an earlier process (a crash, a restart, a power loss) is resumed
//! from its whole length: after a crash or a SIGKILL the page cache holds what was written.
//! After a real power loss its tail past the last durable slice may be other bytes; then the
//! whole object does not hash right, and it is fetched again from zero -- not counted as the
//! server's wrong bytes, since the prefix was not this process's own.

use super::download::{self, Ask, Then};
use super::http::Head;
use super::session::{Dialer, Sink};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Made durable in slices of this size as it arrives.
pub const SLICE: u64 = 256 << 10;

pub fn partial_dir(storage: &Path) -> PathBuf {
    storage.join("objects").join(".partial")
}

/// How one try at an object ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    /// `objects/<sha>` is there, verified.
    Stored,
    /// The whole object arrived with other bytes: dropped (never published).
    WrongBytes,
    /// The signed URL was refused: ask the Hub for a fresh one.
    NewUrl,
    /// Try again later; what arrived is kept.
    Later(String),
}

/// The partial files' lengths this process wrote (their bytes are in the page cache, so they
/// are what was written, even if not durable yet), and what the downloads cost.
#[derive(Debug, Default)]
pub struct Fetcher {
    trusted: BTreeMap<String, u64>,
    /// Body bytes received, and of them the ones received before (a resume that had to go
    /// back, or a server that ignored the Range).
    pub received: u64,
    pub again: u64,
    /// The most of each object ever held, to count `again`.
    high: BTreeMap<String, u64>,
    /// Objects resumed from a partial file an earlier process left.
    inherited: std::collections::BTreeSet<String>,
}

struct Writer<'a> {
    path: PathBuf,
    file: Option<File>,
    hasher: Sha256,
    have: u64,
    synced: u64,
    size: u64,
    asked: Ask,
    then: Option<Then>,
    received: &'a mut u64,
    again: &'a mut u64,
    high: u64,
    progress: &'a mut dyn FnMut(u64) -> bool,
}

impl Writer<'_> {
    fn reset(&mut self) -> io::Result<()> {
        let f = File::create(&self.path)?;
        self.file = Some(f);
        self.hasher = Sha256::new();
        self.have = 0;
        self.synced = 0;
        Ok(())
    }
}

impl Sink for Writer<'_> {
    fn head(&mut self, head: &Head) -> io::Result<bool> {
        let t = download::then(
            self.asked,
            self.size,
            head.status,
            head.header("content-range"),
        );
        self.then = Some(t);
        match t {
            Then::WriteFromZero => {
                self.reset()?;
                Ok(true)
            }
            Then::Append => Ok(true),
            Then::Verify | Then::Discard | Then::NewUrl | Then::Later => Ok(false),
        }
    }

    fn data(&mut self, bytes: &[u8]) -> io::Result<()> {
        let n = bytes.len() as u64;
        if self.have + n > self.size {
            return Err(io::Error::other(format!(
                "more bytes than the object's {}",
                self.size
            )));
        }
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("no partial file"))?;
        f.write_all(bytes)?;
        self.hasher.update(bytes);
        let before = self.have;
        self.have += n;
        *self.received += n;
        if before < self.high {
            *self.again += self.high.min(self.have) - before;
        }
        if self.have / SLICE > self.synced / SLICE {
            f.sync_data()?;
            self.synced = self.have;
        }
        if !(self.progress)(self.have) {
            return Err(io::Error::other("stopped"));
        }
        Ok(())
    }
}

/// Hashes the kept bytes (the resume's hash goes on from them).
fn hash_prefix(path: &Path, len: u64) -> io::Result<Sha256> {
    let mut h = Sha256::new();
    if len == 0 {
        return Ok(h);
    }
    let mut f = File::open(path)?.take(len);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h);
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
}

fn publish(storage: &Path, partial: &Path, sha: &str) -> io::Result<()> {
    File::open(partial)?.sync_all()?;
    let objects = storage.join("objects");
    fs::rename(partial, objects.join(sha))?;
    File::open(&objects)?.sync_all()
}

impl Fetcher {
    /// Where object `sha` of `size` bytes stands on storage: (bytes kept, whole and stored).
    pub fn kept(&self, storage: &Path, sha: &str) -> u64 {
        if storage.join("objects").join(sha).exists() {
            return u64::MAX;
        }
        fs::metadata(partial_dir(storage).join(sha)).map_or(0, |m| m.len())
    }

    /// One try at object `sha` from `url`; `progress` gets the object's bytes held as they
    /// grow, and false from it ends the try (what arrived is kept). Also returns whether the
    /// server answered, when it was asked.
    pub fn fetch(
        &mut self,
        dialer: &Dialer,
        storage: &Path,
        sha: &str,
        size: u64,
        url: &str,
        progress: &mut dyn FnMut(u64) -> bool,
    ) -> (Got, Option<bool>) {
        match self.prepare(storage, sha, size) {
            Ok(Some(w)) => self.run(dialer, storage, sha, size, url, w, progress),
            Ok(None) => (Got::Stored, None),
            Err(e) => (Got::Later(format!("object {sha}: {e}")), None),
        }
    }

    /// The partial file cut to what can be trusted: (its path, bytes kept), or None when the
    /// object is stored already.
    fn prepare(
        &mut self,
        storage: &Path,
        sha: &str,
        size: u64,
    ) -> io::Result<Option<(PathBuf, u64)>> {
        if storage.join("objects").join(sha).exists() {
            return Ok(None);
        }
        let dir = partial_dir(storage);
        fs::create_dir_all(&dir)?;
        let path = dir.join(sha);
        let len = fs::metadata(&path).map_or(0, |m| m.len());
        let keep = match self.trusted.get(sha) {
            Some(&t) => t.min(len),
            None => len,
        };
        let keep = if keep > size { 0 } else { keep };
        if keep > 0 && !self.trusted.contains_key(sha) {
            self.inherited.insert(sha.to_string());
        }
        if keep != len {
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?
                .set_len(keep)?;
        }
        Ok(Some((path, keep)))
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        dialer: &Dialer,
        storage: &Path,
        sha: &str,
        size: u64,
        url: &str,
        (path, have): (PathBuf, u64),
        progress: &mut dyn FnMut(u64) -> bool,
    ) -> (Got, Option<bool>) {
        let fail = |e: io::Error| (Got::Later(format!("object {sha}: {e}")), None);
        let hasher = match hash_prefix(&path, have) {
            Ok(h) => h,
            Err(e) => return fail(e),
        };
        let file = match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => f,
            Err(e) => return fail(e),
        };
        let asked = download::ask(have, size);
        let range = download::range_header(asked);
        let high = self.high.get(sha).copied().unwrap_or(0).max(have);
        let mut w = Writer {
            path: path.clone(),
            file: Some(file),
            hasher,
            have,
            synced: have,
            size,
            asked,
            then: None,
            received: &mut self.received,
            again: &mut self.again,
            high,
            progress,
        };
        let (res, online) = if asked == Ask::Verify {
            w.then = Some(Then::Verify);
            (Ok(()), None)
        } else {
            let (r, answered) = dialer.download(url, range.as_deref(), &mut w);
            (r.map(|_| ()), Some(answered))
        };
        let (then, have, hasher) = (w.then, w.have, std::mem::take(&mut w.hasher));
        drop(w);
        self.trusted.insert(sha.to_string(), have);
        let hi = self.high.entry(sha.to_string()).or_insert(0);
        *hi = (*hi).max(have);
        let got = match (res, then) {
            (_, Some(Then::NewUrl)) => Got::NewUrl,
            (_, Some(Then::Discard)) => {
                let _ = fs::remove_file(&path);
                self.trusted.remove(sha);
                Got::Later(format!(
                    "object {sha}: the answer did not fit what was kept; fetched again whole"
                ))
            }
            (_, Some(Then::Later)) | (_, None) if have < size => {
                Got::Later(format!("object {sha}: no usable answer"))
            }
            (Err(e), _) if have < size => Got::Later(e),
            _ if have < size => Got::Later(format!("object {sha}: {have} of {size} bytes so far")),
            _ => {
                let found = super::super::storage::objects::hex(&hasher.finalize());
                if found != sha {
                    let _ = fs::remove_file(&path);
                    self.trusted.remove(sha);
                    if self.inherited.remove(sha) {
                        Got::Later(format!(
                            "object {sha}: the bytes kept from before did not hash right (a power loss?): fetched again whole"
                        ))
                    } else {
                        Got::WrongBytes
                    }
                } else {
                    match publish(storage, &path, sha) {
                        Ok(()) => {
                            self.trusted.remove(sha);
                            self.high.remove(sha);
                            self.inherited.remove(sha);
                            Got::Stored
                        }
                        Err(e) => Got::Later(format!("object {sha}: publish: {e}")),
                    }
                }
            }
        };
        (got, online)
    }

    /// What is known of object `sha`, moved into a fetcher of its own: a transfer worker
    /// fetches it there while others fetch other objects; [`Fetcher::merge`] takes it back.
    pub fn lend(&mut self, sha: &str) -> Fetcher {
        let mut f = Fetcher::default();
        if let Some(t) = self.trusted.remove(sha) {
            f.trusted.insert(sha.to_string(), t);
        }
        if let Some(h) = self.high.remove(sha) {
            f.high.insert(sha.to_string(), h);
        }
        if self.inherited.remove(sha) {
            f.inherited.insert(sha.to_string());
        }
        f
    }

    /// A lent fetcher back: its object's state and what its downloads cost.
    pub fn merge(&mut self, f: Fetcher) {
        self.trusted.extend(f.trusted);
        self.high.extend(f.high);
        self.inherited.extend(f.inherited);
        self.received += f.received;
        self.again += f.again;
    }

    /// Drops the partial files of objects no longer wanted (another step came).
    pub fn forget_others(&mut self, storage: &Path, wanted: &[String]) {
        let dir = partial_dir(storage);
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !wanted.contains(&name) {
                    let _ = fs::remove_file(e.path());
                    self.trusted.remove(&name);
                }
            }
        }
    }
}
