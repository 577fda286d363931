//! The object store: `objects/<sha256>`, content-addressed, immutable. An object is streamed
//! into `objects/<sha>.tmp` while it is hashed, and only a verified, fsynced object is renamed
//! to its name, so no object is ever reachable under a sha its content does not match.
use super::fs::{self, FsWriter};
use super::{Error, ErrorKind, Result, Storage};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// 64 lowercase hex digits.
pub fn valid_sha(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(digest.len() * 2);
    for b in digest {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Streams a reader through sha256 in 64 KiB chunks (objects can be hundreds of MiB).
pub fn sha256_reader(r: &mut dyn Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(hex(&h.finalize()))
}

/// An object being written: chunks are hashed as they arrive; [`ObjectWriter::finish`]
/// verifies and publishes it, dropping it unfinished leaves only a `.tmp` for the next boot's
/// cleanup.
pub struct ObjectWriter<'a> {
    storage: Storage<'a>,
    sha: String,
    tmp: PathBuf,
    out: Option<FsWriter<'a>>,
    hasher: Sha256,
    written: u64,
    /// Bytes written since the content was last made durable.
    unsynced: u64,
}

/// An upload is made durable in slices of this size as it arrives, so the last fsync (on
/// pv-ctrl's loop) only has a slice left to write, whatever the object's size: a 256 MiB
/// object fsynced at once held the loop ~140 ms here, and seconds on flash.
pub const SYNC_SLICE: u64 = 4 << 20;

impl<'a> ObjectWriter<'a> {
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let out = self.out.as_mut().ok_or_else(|| {
            Error::io(
                "write",
                &self.tmp,
                std::io::Error::other("already finished"),
            )
        })?;
        out.write_all(chunk)
            .map_err(|e| Error::io("write", &self.tmp, e))?;
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        self.unsynced += chunk.len() as u64;
        if self.unsynced >= SYNC_SLICE {
            self.unsynced = 0;
            out.flush().map_err(|e| Error::io("write", &self.tmp, e))?;
            self.storage
                .fs
                .sync_file(&self.tmp)
                .map_err(|e| Error::io("sync", &self.tmp, e))?;
        }
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Gives up: the temp file is closed and removed (best effort), nothing is stored.
    pub fn abort(mut self) {
        drop(self.out.take());
        let _ = self.storage.fs.remove_file(&self.tmp);
    }

    /// Checks the sha256, makes the content durable, renames it into place and makes the
    /// name durable. On a checksum mismatch the temp file is removed and nothing is stored.
    pub fn finish(mut self) -> Result<PathBuf> {
        let fsys = self.storage.fs;
        if let Some(mut out) = self.out.take() {
            out.flush().map_err(|e| Error::io("write", &self.tmp, e))?;
        }
        let found = hex(&std::mem::take(&mut self.hasher).finalize());
        if found != self.sha {
            let _ = fsys.remove_file(&self.tmp);
            return Err(Error {
                op: "verify",
                path: self.tmp.clone(),
                kind: ErrorKind::BadChecksum {
                    expected: self.sha.clone(),
                    found,
                },
            });
        }
        let dst = self.storage.object_path(&self.sha)?;
        fsys.sync_file(&self.tmp)
            .map_err(|e| Error::io("sync", &self.tmp, e))?;
        fsys.rename(&self.tmp, &dst)
            .map_err(|e| Error::io("rename", &dst, e))?;
        let dir = self.storage.objects_dir();
        fsys.sync_dir(&dir)
            .map_err(|e| Error::io("sync", &dir, e))?;
        Ok(dst)
    }
}

impl<'a> Storage<'a> {
    pub fn object_path(&self, sha: &str) -> Result<PathBuf> {
        if !valid_sha(sha) {
            return Err(Error::bad_name("object", &self.objects_dir(), sha));
        }
        Ok(self.objects_dir().join(sha))
    }

    pub fn has_object(&self, sha: &str) -> Result<bool> {
        let p = self.object_path(sha)?;
        fs::exists(self.fs, &p).map_err(|e| Error::io("stat", &p, e))
    }

    /// Starts streaming object `sha` in. The writer holds its own handle on the storage (the
    /// file system reference and the root), so it may outlive `self`.
    pub fn object_writer(&self, sha: &str) -> Result<ObjectWriter<'a>> {
        let dst = self.object_path(sha)?;
        let dir = self.objects_dir();
        fs::create_dir_all(self.fs, &dir).map_err(|e| Error::io("create", &dir, e))?;
        let tmp = fs::tmp_path(&dst);
        let out = self
            .fs
            .create(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        Ok(ObjectWriter {
            storage: Storage::new(self.fs, self.root.clone()),
            sha: sha.to_string(),
            tmp,
            out: Some(out),
            hasher: Sha256::new(),
            written: 0,
            unsynced: 0,
        })
    }

    /// Stores a whole object held in memory; an object already present is left as it is.
    pub fn put_object(&self, sha: &str, data: &[u8]) -> Result<()> {
        if self.has_object(sha)? {
            return Ok(());
        }
        let mut w = self.object_writer(sha)?;
        w.write(data)?;
        w.finish().map(|_| ())
    }

    /// Re-hashes a file and compares it with `sha`.
    pub fn verify_file(&self, path: &Path, sha: &str) -> Result<()> {
        let mut r = self.fs.open(path).map_err(|e| Error::io("open", path, e))?;
        let found = sha256_reader(&mut r).map_err(|e| Error::io("read", path, e))?;
        if found != sha {
            return Err(Error {
                op: "verify",
                path: path.to_path_buf(),
                kind: ErrorKind::BadChecksum {
                    expected: sha.to_string(),
                    found,
                },
            });
        }
        Ok(())
    }

    /// Every `objects/<sha>` name (temp files and foreign names are not objects).
    pub fn list_objects(&self) -> Result<Vec<String>> {
        let dir = self.objects_dir();
        match self.fs.read_dir(&dir) {
            Ok(names) => Ok(names.into_iter().filter(|n| valid_sha(n)).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("list", &dir, e)),
        }
    }
}
