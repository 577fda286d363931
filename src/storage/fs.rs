//! Every storage mutation goes through [`Fs`], so the same code runs on the real file system
//! and on [`crate::storage::simfs::SimFs`], which loses what was not made durable when it
//! "crashes". Paths are absolute or relative to the process's working directory.
use std::io;
use std::path::{Path, PathBuf};

/// What `lstat` tells about an entry (symlinks are not followed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub len: u64,
    pub nlink: u64,
    /// seconds since the epoch
    pub mtime: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

/// A file opened for writing through [`Fs::create`]: plain `io::Write`; durability comes
/// only from a later [`Fs::sync_file`].
pub type FsWriter<'a> = Box<dyn io::Write + 'a>;

pub trait Fs {
    /// Whole content of a file (symlinks followed).
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// A reader for large files (objects), so they are hashed without loading them.
    fn open(&self, path: &Path) -> io::Result<Box<dyn io::Read + '_>>;
    /// `lstat`.
    fn metadata(&self, path: &Path) -> io::Result<Meta>;
    /// Entry names of a directory, sorted, without `.` and `..`.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;

    /// One directory; `AlreadyExists` if it is there.
    fn create_dir(&self, path: &Path) -> io::Result<()>;
    /// Create or truncate a regular file for writing.
    fn create(&self, path: &Path) -> io::Result<FsWriter<'_>>;
    /// fsync of a file's content.
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory: makes its entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Atomic replace of `to` (file or symlink) by `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn hard_link(&self, existing: &Path, new: &Path) -> io::Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Remove an empty directory.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    /// After an fsync, push the file system's journal to the home locations of its blocks, for
    /// readers that do not replay journals (a bootloader). Nothing to do where there is no
    /// journal to push.
    fn checkpoint(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// The real file system through std.
pub struct RealFs;

impl Fs for RealFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn io::Read + '_>> {
        Ok(Box::new(std::fs::File::open(path)?))
    }
    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path)?;
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        Ok(Meta {
            kind,
            len: m.len(),
            nlink: m.nlink(),
            mtime: m.mtime(),
        })
    }
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path)? {
            // Names that are not UTF-8 cannot be Pantavisor paths; they are skipped, not fatal.
            if let Ok(n) = e?.file_name().into_string() {
                names.push(n);
            }
        }
        crate::sort(&mut names);
        Ok(names)
    }
    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(path)
    }
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
    fn create(&self, path: &Path) -> io::Result<FsWriter<'_>> {
        Ok(Box::new(std::fs::File::create(path)?))
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        std::fs::OpenOptions::new()
            .read(true)
            .open(path)?
            .sync_all()
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
    fn checkpoint(&self, path: &Path) -> io::Result<()> {
        use std::os::fd::AsFd;
        let dir = std::fs::File::open(path)?;
        match crate::sys::ext4_checkpoint(dir.as_fd()) {
            // not ext4 or a kernel before 5.13 (ENOTTY), ext4 without a journal (ENODEV)
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTTY) | Some(libc::ENODEV)) => Ok(()),
            r => r,
        }
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn hard_link(&self, existing: &Path, new: &Path) -> io::Result<()> {
        std::fs::hard_link(existing, new)
    }
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Crash-safe whole-file replace: `<name>.tmp`, write, fsync, rename over, fsync directory.
/// A crash leaves either the old content or the new one under `path`, never a mix.
pub fn write_atomic(fs: &dyn Fs, path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    {
        let mut w = fs.create(&tmp)?;
        w.write_all(data)?;
        w.flush()?;
    }
    fs.sync_file(&tmp)?;
    fs.rename(&tmp, path)?;
    fs.sync_dir(parent_of(path))
}

/// `<path>.tmp`: the in-flight name used by [`write_atomic`] and the object store.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// `mkdir -p` that makes every directory it creates durable (fsync of each new entry's parent).
pub fn create_dir_all(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    match fs.metadata(path) {
        Ok(m) if m.kind == Kind::Dir => return Ok(()),
        Ok(m) if m.kind == Kind::Symlink => {
            // a symlink to a directory (e.g. trails/current) is fine
            if fs.read_dir(path).is_ok() {
                return Ok(());
            }
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: not a directory", path.display()),
            ));
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: not a directory", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let parent = parent_of(path);
    if parent != path {
        create_dir_all(fs, parent)?;
    }
    match fs.create_dir(path) {
        Ok(()) => fs.sync_dir(parent),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// `rm -rf` without following symlinks; a missing path is not an error. Not durable by
/// itself: callers fsync the parent when the removal must survive a crash.
pub fn remove_all(fs: &dyn Fs, path: &Path) -> io::Result<()> {
    let m = match fs.metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if m.kind == Kind::Dir {
        for name in fs.read_dir(path)? {
            remove_all(fs, &path.join(name))?;
        }
        fs.remove_dir(path)
    } else {
        fs.remove_file(path)
    }
}

/// `Ok(false)` for a missing path, errors other than "not found" pass through.
pub fn exists(fs: &dyn Fs, path: &Path) -> io::Result<bool> {
    match fs.metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
