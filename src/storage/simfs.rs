//! An in-memory file system that can lose power.
//!
//! It keeps two trees over the same inode numbers: `live`, what the running process sees, and
//! `durable`, what a power cut leaves. Only `sync_file` (a file's content) and `sync_dir` (a
//! directory's entries) copy from live to durable, as on ext4/UBIFS with no heuristics. A
//! crash can be armed at the n-th mutating call: that call and every later one fail, as if
//! the power went off just before it. [`SimFs::power_cut`] then restarts from the durable tree
//! (or, in the `KeepAll` case, from everything that was written, the luckiest possible outcome).
//! Real storage lands anywhere between the two; protocols are checked against both ends.
use super::fs::{Fs, FsWriter, Kind, Meta};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};

const ROOT: u64 = 1;
const MAX_SYMLINK_HOPS: usize = 40;

#[derive(Clone, Debug)]
enum Node {
    File(Vec<u8>),
    Dir(BTreeMap<String, u64>),
    Symlink(PathBuf),
}

#[derive(Clone, Debug)]
struct Tree {
    nodes: HashMap<u64, Node>,
}

impl Tree {
    fn new() -> Tree {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(BTreeMap::new()));
        Tree { nodes }
    }
}

struct Inner {
    live: Tree,
    durable: Tree,
    next_ino: u64,
    clock: i64,
    ops: u64,
    crash_at: Option<u64>,
    dead: bool,
}

/// What a power cut keeps of the writes not yet made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Only what was fsynced (file content) and directory-fsynced (entries) survives.
    DurableOnly,
    /// Everything written survives (the cache happened to be flushed).
    KeepAll,
}

pub struct SimFs {
    inner: RefCell<Inner>,
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", p.display()),
    )
}
fn exists_err(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{}: exists", p.display()),
    )
}
fn not_dir(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotADirectory,
        format!("{}: not a directory", p.display()),
    )
}
fn is_dir(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::IsADirectory,
        format!("{}: is a directory", p.display()),
    )
}
fn invalid(p: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{}: {}", p.display(), what),
    )
}

/// Splits an absolute path into its normal components; `.` is dropped, `..` kept for the
/// resolver.
fn components(p: &Path) -> Result<Vec<String>, io::Error> {
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => out.push("..".to_string()),
            Component::Normal(s) => match s.to_str() {
                Some(s) => out.push(s.to_string()),
                None => return Err(invalid(p, "path is not UTF-8")),
            },
            Component::Prefix(_) => return Err(invalid(p, "unsupported path")),
        }
    }
    Ok(out)
}

impl Tree {
    fn dir(&self, ino: u64) -> Option<&BTreeMap<String, u64>> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(d)) => Some(d),
            _ => None,
        }
    }

    /// Resolves `p` to (parent dir inode, last name). Intermediate symlinks are followed.
    fn resolve_parent(&self, p: &Path) -> io::Result<(u64, String)> {
        let mut comps = components(p)?;
        let last = comps.pop().ok_or_else(|| invalid(p, "no file name"))?;
        if last == ".." {
            return Err(invalid(p, "ends in .."));
        }
        let dir = self.walk(ROOT, &comps, p, 0)?;
        Ok((dir, last))
    }

    /// Walks `comps` from directory `start`, following symlinks; returns a directory inode.
    fn walk(&self, start: u64, comps: &[String], p: &Path, hops: usize) -> io::Result<u64> {
        let mut stack: Vec<u64> = vec![start];
        for c in comps {
            let cur = *stack.last().ok_or_else(|| not_found(p))?;
            if c == ".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let d = self.dir(cur).ok_or_else(|| not_dir(p))?;
            let ino = *d.get(c).ok_or_else(|| not_found(p))?;
            match self.nodes.get(&ino) {
                Some(Node::Dir(_)) => stack.push(ino),
                Some(Node::Symlink(t)) => {
                    if hops >= MAX_SYMLINK_HOPS {
                        return Err(invalid(p, "too many levels of symbolic links"));
                    }
                    let tcomps = components(t)?;
                    let base = if t.is_absolute() { ROOT } else { cur };
                    let target = self.walk(base, &tcomps, p, hops + 1)?;
                    stack.push(target);
                }
                _ => return Err(not_dir(p)),
            }
        }
        stack.last().copied().ok_or_else(|| not_found(p))
    }

    /// Inode of `p` itself (`follow`: a final symlink is followed).
    fn lookup(&self, p: &Path, follow: bool) -> io::Result<u64> {
        let comps = components(p)?;
        if comps.is_empty() {
            return Ok(ROOT);
        }
        let (dir, last) = self.resolve_parent(p)?;
        let ino = *self
            .dir(dir)
            .ok_or_else(|| not_dir(p))?
            .get(&last)
            .ok_or_else(|| not_found(p))?;
        if follow {
            if let Some(Node::Symlink(t)) = self.nodes.get(&ino) {
                let base = if t.is_absolute() { ROOT } else { dir };
                let mut tcomps = components(t)?;
                let tl = tcomps.pop().ok_or_else(|| not_found(p))?;
                let tdir = self.walk(base, &tcomps, p, 1)?;
                let next = *self
                    .dir(tdir)
                    .ok_or_else(|| not_dir(p))?
                    .get(&tl)
                    .ok_or_else(|| not_found(p))?;
                // one more level is enough for the layouts we use (current -> <rev>)
                if let Some(Node::Symlink(_)) = self.nodes.get(&next) {
                    return Err(invalid(p, "nested symbolic links are not simulated"));
                }
                return Ok(next);
            }
        }
        Ok(ino)
    }

    fn nlink(&self, ino: u64) -> u64 {
        self.nodes
            .values()
            .map(|n| match n {
                Node::Dir(d) => d.values().filter(|&&i| i == ino).count() as u64,
                _ => 0,
            })
            .sum()
    }

    fn insert_entry(&mut self, dir: u64, name: String, ino: u64) {
        if let Some(Node::Dir(d)) = self.nodes.get_mut(&dir) {
            d.insert(name, ino);
        }
    }
}

impl Default for SimFs {
    fn default() -> Self {
        SimFs::new()
    }
}

impl SimFs {
    pub fn new() -> SimFs {
        SimFs {
            inner: RefCell::new(Inner {
                live: Tree::new(),
                durable: Tree::new(),
                next_ino: ROOT + 1,
                clock: 1_700_000_000,
                ops: 0,
                crash_at: None,
                dead: false,
            }),
        }
    }

    /// A copy with the same live and durable trees (no crash armed, counters reset).
    pub fn snapshot(&self) -> SimFs {
        let i = self.inner.borrow();
        SimFs {
            inner: RefCell::new(Inner {
                live: i.live.clone(),
                durable: i.durable.clone(),
                next_ino: i.next_ino,
                clock: i.clock,
                ops: 0,
                crash_at: None,
                dead: false,
            }),
        }
    }

    /// Number of mutating calls made so far.
    pub fn ops(&self) -> u64 {
        self.inner.borrow().ops
    }

    /// Power fails just before the `n`-th mutating call from now on (1 = the next one).
    pub fn arm_crash(&self, n: u64) {
        let mut i = self.inner.borrow_mut();
        i.crash_at = Some(i.ops + n);
    }

    /// Whether an armed crash has fired.
    pub fn crashed(&self) -> bool {
        self.inner.borrow().dead
    }

    /// The power comes back: the live tree becomes what the cut kept.
    pub fn power_cut(&self, cut: Cut) {
        let mut i = self.inner.borrow_mut();
        match cut {
            Cut::DurableOnly => i.live = i.durable.clone(),
            Cut::KeepAll => i.durable = i.live.clone(),
        }
        i.crash_at = None;
        i.dead = false;
    }

    /// Makes everything durable (a clean shutdown's `sync`).
    pub fn sync_all(&self) {
        let mut i = self.inner.borrow_mut();
        i.durable = i.live.clone();
    }

    /// Counts one mutating call; fails it when the power is (or goes) off.
    fn step(&self) -> io::Result<()> {
        let mut i = self.inner.borrow_mut();
        i.ops += 1;
        i.clock += 1;
        if i.dead || i.crash_at == Some(i.ops) {
            i.dead = true;
            return Err(io::Error::other("simulated power cut"));
        }
        Ok(())
    }

    fn new_node(&self, dir: u64, name: String, node: Node) -> u64 {
        let mut i = self.inner.borrow_mut();
        let ino = i.next_ino;
        i.next_ino += 1;
        i.live.nodes.insert(ino, node);
        i.live.insert_entry(dir, name, ino);
        ino
    }
}

struct SimWriter<'a> {
    fs: &'a SimFs,
    ino: u64,
}

impl io::Write for SimWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.fs.step()?;
        let mut i = self.fs.inner.borrow_mut();
        match i.live.nodes.get_mut(&self.ino) {
            Some(Node::File(c)) => {
                c.extend_from_slice(buf);
                Ok(buf.len())
            }
            // unlinked while open: the data goes nowhere visible
            _ => Ok(buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Fs for SimFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let i = self.inner.borrow();
        let ino = i.live.lookup(path, true)?;
        match i.live.nodes.get(&ino) {
            Some(Node::File(c)) => Ok(c.clone()),
            Some(Node::Dir(_)) => Err(is_dir(path)),
            _ => Err(not_found(path)),
        }
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn io::Read + '_>> {
        Ok(Box::new(io::Cursor::new(self.read(path)?)))
    }

    fn metadata(&self, path: &Path) -> io::Result<Meta> {
        let i = self.inner.borrow();
        let ino = i.live.lookup(path, false)?;
        let (kind, len) = match i.live.nodes.get(&ino) {
            Some(Node::File(c)) => (Kind::File, c.len() as u64),
            Some(Node::Dir(_)) => (Kind::Dir, 0),
            Some(Node::Symlink(t)) => (Kind::Symlink, t.as_os_str().len() as u64),
            None => return Err(not_found(path)),
        };
        Ok(Meta {
            kind,
            len,
            nlink: i.live.nlink(ino),
            mtime: i.clock,
        })
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let i = self.inner.borrow();
        let ino = i.live.lookup(path, true)?;
        let d = i.live.dir(ino).ok_or_else(|| not_dir(path))?;
        Ok(d.keys().cloned().collect())
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        let i = self.inner.borrow();
        let ino = i.live.lookup(path, false)?;
        match i.live.nodes.get(&ino) {
            Some(Node::Symlink(t)) => Ok(t.clone()),
            _ => Err(invalid(path, "not a symbolic link")),
        }
    }

    fn create_dir(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        let (dir, name) = self.inner.borrow().live.resolve_parent(path)?;
        if self
            .inner
            .borrow()
            .live
            .dir(dir)
            .ok_or_else(|| not_dir(path))?
            .contains_key(&name)
        {
            return Err(exists_err(path));
        }
        self.new_node(dir, name, Node::Dir(BTreeMap::new()));
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<FsWriter<'_>> {
        self.step()?;
        let (dir, name) = self.inner.borrow().live.resolve_parent(path)?;
        let existing = self
            .inner
            .borrow()
            .live
            .dir(dir)
            .ok_or_else(|| not_dir(path))?
            .get(&name)
            .copied();
        let ino = match existing {
            Some(ino) => {
                let mut i = self.inner.borrow_mut();
                match i.live.nodes.get_mut(&ino) {
                    Some(Node::File(c)) => c.clear(),
                    Some(Node::Dir(_)) => return Err(is_dir(path)),
                    _ => {
                        return Err(invalid(
                            path,
                            "symbolic link targets are not opened for writing",
                        ))
                    }
                }
                ino
            }
            None => self.new_node(dir, name, Node::File(Vec::new())),
        };
        Ok(Box::new(SimWriter { fs: self, ino }))
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        let mut i = self.inner.borrow_mut();
        let ino = i.live.lookup(path, true)?;
        match i.live.nodes.get(&ino).cloned() {
            Some(n @ Node::File(_)) => {
                i.durable.nodes.insert(ino, n);
                Ok(())
            }
            Some(_) => Err(invalid(path, "not a regular file")),
            None => Err(not_found(path)),
        }
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        let mut i = self.inner.borrow_mut();
        let ino = i.live.lookup(path, true)?;
        let entries = i.live.dir(ino).ok_or_else(|| not_dir(path))?.clone();
        for child in entries.values() {
            if i.durable.nodes.contains_key(child) {
                continue;
            }
            // A new entry becomes durable with what its inode had durably: nothing for a
            // file never fsynced, an empty directory, or the whole symlink.
            let n = match i.live.nodes.get(child) {
                Some(Node::File(_)) => Node::File(Vec::new()),
                Some(Node::Dir(_)) => Node::Dir(BTreeMap::new()),
                Some(s @ Node::Symlink(_)) => s.clone(),
                None => continue,
            };
            i.durable.nodes.insert(*child, n);
        }
        i.durable.nodes.insert(ino, Node::Dir(entries));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        let mut i = self.inner.borrow_mut();
        let (fdir, fname) = i.live.resolve_parent(from)?;
        let (tdir, tname) = i.live.resolve_parent(to)?;
        let ino = *i
            .live
            .dir(fdir)
            .ok_or_else(|| not_dir(from))?
            .get(&fname)
            .ok_or_else(|| not_found(from))?;
        if let Some(old) = i
            .live
            .dir(tdir)
            .ok_or_else(|| not_dir(to))?
            .get(&tname)
            .copied()
        {
            if let Some(Node::Dir(d)) = i.live.nodes.get(&old) {
                if !d.is_empty() || !matches!(i.live.nodes.get(&ino), Some(Node::Dir(_))) {
                    return Err(is_dir(to));
                }
            }
        }
        if let Some(Node::Dir(d)) = i.live.nodes.get_mut(&fdir) {
            d.remove(&fname);
        }
        i.live.insert_entry(tdir, tname, ino);
        Ok(())
    }

    fn hard_link(&self, existing: &Path, new: &Path) -> io::Result<()> {
        self.step()?;
        let mut i = self.inner.borrow_mut();
        let ino = i.live.lookup(existing, false)?;
        if let Some(Node::Dir(_)) = i.live.nodes.get(&ino) {
            return Err(is_dir(existing));
        }
        let (dir, name) = i.live.resolve_parent(new)?;
        if i.live
            .dir(dir)
            .ok_or_else(|| not_dir(new))?
            .contains_key(&name)
        {
            return Err(exists_err(new));
        }
        i.live.insert_entry(dir, name, ino);
        Ok(())
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.step()?;
        let (dir, name) = self.inner.borrow().live.resolve_parent(link)?;
        if self
            .inner
            .borrow()
            .live
            .dir(dir)
            .ok_or_else(|| not_dir(link))?
            .contains_key(&name)
        {
            return Err(exists_err(link));
        }
        self.new_node(dir, name, Node::Symlink(target.to_path_buf()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        let mut i = self.inner.borrow_mut();
        let (dir, name) = i.live.resolve_parent(path)?;
        let ino = *i
            .live
            .dir(dir)
            .ok_or_else(|| not_dir(path))?
            .get(&name)
            .ok_or_else(|| not_found(path))?;
        if let Some(Node::Dir(_)) = i.live.nodes.get(&ino) {
            return Err(is_dir(path));
        }
        if let Some(Node::Dir(d)) = i.live.nodes.get_mut(&dir) {
            d.remove(&name);
        }
        Ok(())
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        let mut i = self.inner.borrow_mut();
        let (dir, name) = i.live.resolve_parent(path)?;
        let ino = *i
            .live
            .dir(dir)
            .ok_or_else(|| not_dir(path))?
            .get(&name)
            .ok_or_else(|| not_found(path))?;
        match i.live.nodes.get(&ino) {
            Some(Node::Dir(d)) if d.is_empty() => {}
            Some(Node::Dir(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::DirectoryNotEmpty,
                    format!("{}: not empty", path.display()),
                ))
            }
            _ => return Err(not_dir(path)),
        }
        if let Some(Node::Dir(d)) = i.live.nodes.get_mut(&dir) {
            d.remove(&name);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "simfs_tests.rs"]
mod tests;
