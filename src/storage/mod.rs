//! Upstream's on-disk layout under a configurable storage root, and every
//! operation on it: objects, trails, progress files, the `current` switch, metadata stores,
//! garbage collection. All mutations go through [`fs::Fs`] and are crash-safe: temp file,
//! fsync, rename, directory fsync; a directory is switched with a symlink rename.
pub mod fs;
pub mod meta;
pub mod objects;
pub mod simfs;
pub mod trail;

use fs::Fs;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A storage error: what was being done, on which path, and the OS error.
#[derive(Debug)]
pub struct Error {
    pub op: &'static str,
    pub path: PathBuf,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    Io(io::Error),
    /// Content does not hash to its name.
    BadChecksum {
        expected: String,
        found: String,
    },
    /// A name (revision, object, meta key) that is not safe to use as a path.
    BadName(String),
    /// A trail that does not match its state JSON.
    Mismatch(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.op, self.path.display())?;
        match &self.kind {
            ErrorKind::Io(e) => write!(f, "{e}"),
            ErrorKind::BadChecksum { expected, found } => {
                write!(f, "checksum is {found}, expected {expected}")
            }
            ErrorKind::BadName(n) => write!(f, "bad name '{n}'"),
            ErrorKind::Mismatch(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn io(op: &'static str, path: &Path, e: io::Error) -> Error {
        Error {
            op,
            path: path.to_path_buf(),
            kind: ErrorKind::Io(e),
        }
    }
    pub fn bad_name(op: &'static str, path: &Path, name: &str) -> Error {
        Error {
            op,
            path: path.to_path_buf(),
            kind: ErrorKind::BadName(name.to_string()),
        }
    }
    pub fn mismatch(op: &'static str, path: &Path, what: String) -> Error {
        Error {
            op,
            path: path.to_path_buf(),
            kind: ErrorKind::Mismatch(what),
        }
    }
    /// No space left on the storage (pv-ctrl answers 507).
    pub fn is_no_space(&self) -> bool {
        matches!(&self.kind, ErrorKind::Io(e) if e.raw_os_error() == Some(28))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The storage partition as pantavisor sees it: a root directory and the file system
/// operations to use on it.
pub struct Storage<'a> {
    pub fs: &'a dyn Fs,
    pub root: PathBuf,
}

/// A revision name as upstream allows: a Hub revision (decimal digits) or
/// `locals/<name>` with a name under 64 bytes of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn valid_revision(rev: &str) -> bool {
    fn safe_name(n: &str) -> bool {
        !n.is_empty()
            && n.len() < 64
            && !n.starts_with('.')
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    }
    match rev.split_once('/') {
        Some(("locals", name)) => safe_name(name),
        Some(_) => false,
        None => !rev.is_empty() && rev.len() < 64 && rev.bytes().all(|b| b.is_ascii_digit()),
    }
}

impl<'a> Storage<'a> {
    pub fn new(fs: &'a dyn Fs, root: impl Into<PathBuf>) -> Storage<'a> {
        Storage {
            fs,
            root: root.into(),
        }
    }

    /// The storage's mount point.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.root.join("objects")
    }
    pub fn trails_dir(&self) -> PathBuf {
        self.root.join("trails")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn boot_dir(&self) -> PathBuf {
        self.root.join("boot")
    }
    /// `trails/<rev>`; the name must be a [`valid_revision`].
    pub fn trail_dir(&self, rev: &str) -> Result<PathBuf> {
        if !valid_revision(rev) {
            return Err(Error::bad_name("revision", &self.trails_dir(), rev));
        }
        Ok(self.trails_dir().join(rev))
    }
    /// `trails/<rev>/.pvr/json`: the state JSON, byte for byte as received.
    pub fn state_path(&self, rev: &str) -> Result<PathBuf> {
        Ok(self.trail_dir(rev)?.join(".pvr/json"))
    }
    pub fn progress_path(&self, rev: &str) -> Result<PathBuf> {
        Ok(self.trail_dir(rev)?.join(".pv/progress"))
    }
    pub fn done_path(&self, rev: &str) -> Result<PathBuf> {
        Ok(self.trail_dir(rev)?.join(".pv/done"))
    }
    pub fn commitmsg_path(&self, rev: &str) -> Result<PathBuf> {
        Ok(self.trail_dir(rev)?.join(".pv/commitmsg"))
    }
    /// `disks/perm/<part>/<volume>` (persistence `permanent`).
    pub fn perm_volume_dir(&self, part: &str, volume: &str) -> PathBuf {
        self.root.join("disks/perm").join(part).join(volume)
    }
    /// `disks/rev/<rev>/<part>/<volume>` (persistence `revision`).
    pub fn rev_volume_dir(&self, rev: &str, part: &str, volume: &str) -> PathBuf {
        self.root
            .join("disks/rev")
            .join(rev)
            .join(part)
            .join(volume)
    }

    /// Creates the directories of upstream's storage layout that are missing, and the `.pvmounted`
    /// marker.
    pub fn init_layout(&self) -> Result<()> {
        for d in [
            "boot",
            "config",
            "cache/meta",
            "cache/devmeta",
            "disks/perm",
            "disks/rev",
            "logs",
            "objects",
            "trails",
        ] {
            let p = self.root.join(d);
            fs::create_dir_all(self.fs, &p).map_err(|e| Error::io("create", &p, e))?;
        }
        let marker = self.root.join(".pvmounted");
        if !fs::exists(self.fs, &marker).map_err(|e| Error::io("stat", &marker, e))? {
            fs::write_atomic(self.fs, &marker, b"").map_err(|e| Error::io("write", &marker, e))?;
        }
        Ok(())
    }

    /// Removes in-flight leftovers of a crash: `objects/*.tmp` and `*.tmp` files of
    /// `write_atomic` in the trails' `.pv`/`.pvr` folders and `boot/`. Returns how many.
    pub fn remove_stale_tmp(&self) -> Result<usize> {
        let mut n = 0;
        let mut dirs = vec![self.objects_dir(), self.boot_dir(), self.trails_dir()];
        for rev in self.list_revisions()? {
            let t = self.trails_dir().join(&rev);
            dirs.push(t.join(".pv"));
            dirs.push(t.join(".pvr"));
        }
        for d in dirs {
            let names = match self.fs.read_dir(&d) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("list", &d, e)),
            };
            let mut removed = false;
            for name in names.iter().filter(|n| n.ends_with(".tmp")) {
                let p = d.join(name);
                self.fs
                    .remove_file(&p)
                    .map_err(|e| Error::io("remove", &p, e))?;
                removed = true;
                n += 1;
            }
            if removed {
                self.fs.sync_dir(&d).map_err(|e| Error::io("sync", &d, e))?;
            }
        }
        Ok(n)
    }

    /// Every revision with a trail directory: `trails/<n>` and `trails/locals/<name>`, in
    /// name order, without the `current` link.
    pub fn list_revisions(&self) -> Result<Vec<String>> {
        let dir = self.trails_dir();
        let mut revs = Vec::new();
        let names = match self.fs.read_dir(&dir) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(revs),
            Err(e) => return Err(Error::io("list", &dir, e)),
        };
        for name in names {
            if name == "locals" {
                let l = dir.join("locals");
                for local in self.fs.read_dir(&l).map_err(|e| Error::io("list", &l, e))? {
                    let rev = format!("locals/{local}");
                    if valid_revision(&rev) {
                        revs.push(rev);
                    }
                }
            } else if valid_revision(&name) {
                revs.push(name);
            }
        }
        Ok(revs)
    }

    /// Points `trails/current` and `logs/current` at `rev`, each by renaming a fresh symlink
    /// over the old one, so a crash leaves either the old or the new target.
    pub fn set_current(&self, rev: &str) -> Result<()> {
        self.trail_dir(rev)?;
        for dir in [self.trails_dir(), self.logs_dir()] {
            fs::create_dir_all(self.fs, &dir).map_err(|e| Error::io("create", &dir, e))?;
            let link = dir.join("current");
            let tmp = dir.join("current.tmp");
            let _ = self.fs.remove_file(&tmp);
            self.fs
                .symlink(Path::new(rev), &tmp)
                .map_err(|e| Error::io("symlink", &tmp, e))?;
            self.fs
                .rename(&tmp, &link)
                .map_err(|e| Error::io("rename", &link, e))?;
            self.fs
                .sync_dir(&dir)
                .map_err(|e| Error::io("sync", &dir, e))?;
        }
        Ok(())
    }

    /// The revision `trails/current` points at, if any.
    pub fn current(&self) -> Result<Option<String>> {
        let link = self.trails_dir().join("current");
        match self.fs.read_link(&link) {
            Ok(t) => Ok(t.to_str().map(str::to_string)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("readlink", &link, e)),
        }
    }
}

#[cfg(test)]
mod tests;
