//! User-meta and device-meta stores: one file per key in a directory (upstream's metadata stores),
//! each written crash-safely. The runtime publishes them to containers (`<c>.<key>` views).
use super::fs::{self, Fs};
use super::{Error, Result};
use std::io;
use std::path::PathBuf;

pub struct MetaStore<'a> {
    pub fs: &'a dyn Fs,
    pub dir: PathBuf,
}

/// A key is a file name: not empty, not `.`/`..`, no `/`, no NUL or control characters,
/// not ending in `.tmp` (the in-flight suffix), at most 251 bytes (NAME_MAX less that suffix,
/// which the crash-safe write adds).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 255 - ".tmp".len()
        && key != "."
        && key != ".."
        && !key.ends_with(".tmp")
        && !key.bytes().any(|b| b == b'/' || b < 0x20 || b == 0x7f)
}

/// Upstream's `<container>.<key>` split: a key with a `.` is also shown to the container named
/// by the part before the first `.`, as the part after it.
pub fn container_view(key: &str) -> Option<(&str, &str)> {
    let (c, rest) = key.split_once('.')?;
    (!c.is_empty() && !rest.is_empty()).then_some((c, rest))
}

impl<'a> MetaStore<'a> {
    pub fn new(fs: &'a dyn Fs, dir: impl Into<PathBuf>) -> MetaStore<'a> {
        MetaStore {
            fs,
            dir: dir.into(),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        if !valid_key(key) {
            return Err(Error::bad_name("meta key", &self.dir, key));
        }
        Ok(self.dir.join(key))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        let p = self.path(key)?;
        fs::create_dir_all(self.fs, &self.dir).map_err(|e| Error::io("create", &self.dir, e))?;
        fs::write_atomic(self.fs, &p, value).map_err(|e| Error::io("write", &p, e))
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let p = self.path(key)?;
        match self.fs.read(&p) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &p, e)),
        }
    }

    /// `Ok(false)` when the key did not exist (pv-ctrl answers 404).
    pub fn delete(&self, key: &str) -> Result<bool> {
        let p = self.path(key)?;
        match self.fs.remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("remove", &p, e)),
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("sync", &self.dir, e))?;
        Ok(true)
    }

    /// Every key with its value, in key order.
    pub fn list(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let names = match self.fs.read_dir(&self.dir) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &self.dir, e)),
        };
        let mut out = Vec::new();
        for k in names.into_iter().filter(|k| valid_key(k)) {
            if let Some(v) = self.get(&k)? {
                out.push((k, v));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
