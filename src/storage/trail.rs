//! Trails: `trails/<rev>/` checked out from the revision's state JSON and the object store
//! (a revision's directory), verified at boot, and garbage-collected.
use super::fs::{self, Kind};
use super::objects::valid_sha;
use super::{Error, Result, Storage};
use crate::state::{EntryValue, State};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// How [`Storage::verify_trail`] checks object files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Re-hash every object file (an install).
    Rehash,
    /// A boot's (PV_SECUREBOOT_CHECKSUM=1, the default): every object file re-hashed but
    /// those the bootloader already loaded ([`loaded_by_bootloader`]) and, with `verity` (the
    /// device mounts `dm:` volumes through dm-verity), the data devices of those volumes
    /// ([`State::no_validate`]), which the kernel checks block by block: of these only presence
    /// and size. Upstream skips the data devices even with verity off; that would leave them
    /// unchecked, so here they are re-hashed then.
    Boot { verity: bool },
    /// Only presence and size.
    Presence,
}

/// The `.pv/` boot links of a revision: (link name, path under `bsp/`).
pub fn boot_links(state: &State) -> Vec<(String, String)> {
    let mut links = Vec::new();
    let Some(bsp) = state.bsp() else { return links };
    if let Some(fit) = &bsp.fit {
        links.push(("pantavisor.fit".to_string(), fit.clone()));
        return links;
    }
    if let Some(rpiab) = &bsp.rpiab {
        let name = if rpiab.ends_with(".gz") {
            "rpiboot.img.gz"
        } else {
            "rpiboot.img"
        };
        links.push((name.to_string(), rpiab.clone()));
        return links;
    }
    if let Some(l) = &bsp.linux {
        links.push(("pv-kernel.img".to_string(), l.clone()));
    }
    if let Some(i) = &bsp.initrd {
        links.push(("pv-initrd.img".to_string(), i.clone()));
    }
    if let Some(f) = &bsp.fdt {
        links.push(("pv-fdt.dtb".to_string(), f.clone()));
    }
    for (n, a) in bsp.addons.iter().enumerate() {
        links.push((format!("pv-initrd.img.{n}"), a.clone()));
    }
    links
}

/// Objects the bootloader loaded before this binary ran, so a boot's re-hash cannot change
/// what runs: upstream's no-validate list (`bsp/pantavisor*`, `bsp/kernel.img*`,
/// `bsp/fit-image.its*`). Their presence is still checked.
pub fn loaded_by_bootloader(key: &str) -> bool {
    ["bsp/pantavisor", "bsp/kernel.img", "bsp/fit-image.its"]
        .iter()
        .any(|p| key.starts_with(p))
}

fn parent(p: &Path) -> PathBuf {
    p.parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

impl<'a> Storage<'a> {
    /// Stores the state JSON of `rev` byte-exact in `trails/<rev>/.pvr/json`, plus
    /// `.pvr/config` so pvr can work on the device.
    pub fn install_state(&self, rev: &str, raw: &[u8]) -> Result<()> {
        let t = self.trail_dir(rev)?;
        let pvr = t.join(".pvr");
        fs::create_dir_all(self.fs, &pvr).map_err(|e| Error::io("create", &pvr, e))?;
        let json = pvr.join("json");
        fs::write_atomic(self.fs, &json, raw).map_err(|e| Error::io("write", &json, e))?;
        let mut cfg = String::from("{\"ObjectsDir\": ");
        crate::json::escape_str(&self.objects_dir().to_string_lossy(), &mut cfg);
        cfg.push('}');
        let cfgp = pvr.join("config");
        fs::write_atomic(self.fs, &cfgp, cfg.as_bytes()).map_err(|e| Error::io("write", &cfgp, e))
    }

    /// The raw state JSON of `rev`.
    pub fn read_state(&self, rev: &str) -> Result<Vec<u8>> {
        let p = self.state_path(rev)?;
        self.fs.read(&p).map_err(|e| Error::io("read", &p, e))
    }

    /// Writes every file of the state into `trails/<rev>/`: objects hard-linked (`.bind`
    /// files copied, they are mounted writable), inline JSON written as its raw text, and the
    /// `.pv/` boot links. Idempotent: files already right are kept, so it also repairs a trail.
    /// Everything is durable when it returns.
    pub fn checkout(&self, rev: &str, state: &State) -> Result<()> {
        let t = self.trail_dir(rev)?;
        let mut dirs = BTreeSet::new();
        for e in state.entries().iter().filter(|e| e.expanded()) {
            let dst = t.join(&e.key);
            let dir = parent(&dst);
            fs::create_dir_all(self.fs, &dir).map_err(|er| Error::io("create", &dir, er))?;
            match &e.value {
                EntryValue::Object { sha } => {
                    let obj = self.object_path(sha)?;
                    let olen = self
                        .fs
                        .metadata(&obj)
                        .map_err(|er| Error::io("stat", &obj, er))?
                        .len;
                    if e.key.ends_with(".bind") {
                        // A copy, not a link: the container may write it, so once present
                        // it is the container's and is not checked or replaced again.
                        if self.file_len(&dst)?.is_none() {
                            let data = self
                                .fs
                                .read(&obj)
                                .map_err(|er| Error::io("read", &obj, er))?;
                            fs::write_atomic(self.fs, &dst, &data)
                                .map_err(|er| Error::io("write", &dst, er))?;
                        }
                    } else {
                        self.link_object(&obj, olen, &dst)?;
                        dirs.insert(dir);
                    }
                }
                EntryValue::Json { raw } => {
                    if self.fs.read(&dst).ok().as_deref() != Some(raw.as_bytes()) {
                        fs::write_atomic(self.fs, &dst, raw.as_bytes())
                            .map_err(|er| Error::io("write", &dst, er))?;
                    }
                }
            }
        }
        let pv = t.join(".pv");
        fs::create_dir_all(self.fs, &pv).map_err(|e| Error::io("create", &pv, e))?;
        for (name, target) in boot_links(state) {
            let src = t.join("bsp").join(&target);
            let len = self.file_len(&src)?.ok_or_else(|| {
                Error::mismatch(
                    "link",
                    &src,
                    format!("boot file bsp/{target} is not in the state"),
                )
            })?;
            self.link_object(&src, len, &pv.join(name))?;
            dirs.insert(pv.clone());
        }
        for d in dirs {
            self.fs.sync_dir(&d).map_err(|e| Error::io("sync", &d, e))?;
        }
        Ok(())
    }

    fn file_len(&self, p: &Path) -> Result<Option<u64>> {
        match self.fs.metadata(p) {
            Ok(m) if m.kind == Kind::File => Ok(Some(m.len)),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", p, e)),
        }
    }

    /// Hard-links `src` at `dst` unless `dst` already is a link of that size; a wrong file is
    /// replaced by renaming a fresh link over it (never left missing).
    fn link_object(&self, src: &Path, len: u64, dst: &Path) -> Result<()> {
        match self.fs.metadata(dst) {
            Ok(m) if m.kind == Kind::File && m.nlink > 1 && m.len == len => Ok(()),
            Ok(_) => {
                let tmp = fs::tmp_path(dst);
                let _ = self.fs.remove_file(&tmp);
                self.fs
                    .hard_link(src, &tmp)
                    .map_err(|e| Error::io("link", &tmp, e))?;
                self.fs
                    .rename(&tmp, dst)
                    .map_err(|e| Error::io("rename", dst, e))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => self
                .fs
                .hard_link(src, dst)
                .map_err(|e| Error::io("link", dst, e)),
            Err(e) => Err(Error::io("stat", dst, e)),
        }
    }

    /// Checks that `trails/<rev>/` is exactly what its state says: the `.pvr/json` bytes,
    /// every object file present (and re-hashed with [`Check::Rehash`], but for the
    /// [`State::no_validate`] list), every inline JSON
    /// file byte-equal to its raw text, every boot link present. Returns every problem found.
    pub fn verify_trail(
        &self,
        rev: &str,
        state: &State,
        check: Check,
    ) -> std::result::Result<(), Vec<Error>> {
        let mut problems = Vec::new();
        let t = match self.trail_dir(rev) {
            Ok(t) => t,
            Err(e) => return Err(vec![e]),
        };
        match self.read_state(rev) {
            Ok(raw) if raw == state.raw() => {}
            Ok(_) => problems.push(Error::mismatch(
                "verify",
                &t.join(".pvr/json"),
                "differs from the state".into(),
            )),
            Err(e) => problems.push(e),
        }
        let lazily_verified = match check {
            Check::Boot { verity: true } => state.no_validate(),
            _ => Vec::new(),
        };
        for e in state.entries().iter().filter(|e| e.expanded()) {
            let p = t.join(&e.key);
            match &e.value {
                EntryValue::Object { .. } if e.key.ends_with(".bind") => {
                    if !matches!(self.file_len(&p), Ok(Some(_))) {
                        problems.push(Error::mismatch("verify", &p, "missing".into()));
                    }
                }
                EntryValue::Object { sha } => {
                    let presence = || match (
                        self.file_len(&p),
                        self.object_path(sha).and_then(|o| self.file_len(&o)),
                    ) {
                        (Ok(Some(a)), Ok(Some(b))) if a == b => Ok(()),
                        (Err(e), _) | (_, Err(e)) => Err(e),
                        _ => Err(Error::mismatch(
                            "verify",
                            &p,
                            "missing or of the wrong size".into(),
                        )),
                    };
                    let r = match check {
                        Check::Boot { .. }
                            if loaded_by_bootloader(&e.key) || lazily_verified.contains(&e.key) =>
                        {
                            crate::pvlog!(
                                Debug,
                                "storage",
                                "skipping validation of object named {} and id={sha}",
                                e.key
                            );
                            presence()
                        }
                        Check::Rehash | Check::Boot { .. } => {
                            if let Ok(o) = self.object_path(sha) {
                                crate::pvlog!(
                                    Debug,
                                    "storage",
                                    "validating checksum for {} and {}",
                                    o.display(),
                                    p.display()
                                );
                            }
                            self.verify_file(&p, sha)
                        }
                        Check::Presence => presence(),
                    };
                    if let Err(e) = r {
                        problems.push(e);
                    }
                }
                EntryValue::Json { raw } => match self.fs.read(&p) {
                    Ok(c) if check != Check::Presence && c == raw.as_bytes() => {
                        crate::pvlog!(
                            Debug,
                            "storage",
                            "validating value for json {}",
                            p.display()
                        );
                    }
                    Ok(c) if c == raw.as_bytes() => {}
                    Ok(_) => problems.push(Error::mismatch(
                        "verify",
                        &p,
                        "differs from the state's JSON".into(),
                    )),
                    Err(er) => problems.push(Error::io("read", &p, er)),
                },
            }
        }
        for (name, _) in boot_links(state) {
            let p = t.join(".pv").join(&name);
            if !matches!(self.file_len(&p), Ok(Some(_))) {
                problems.push(Error::mismatch("verify", &p, "boot link missing".into()));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Garbage collection (upstream's rules): removes `trails/<rev>`, `logs/<rev>` and
    /// `disks/rev/<rev>` of every revision not in `keep` (nor `current`), then every object
    /// no trail links any more (link count 1) that `keep_objects` (an in-flight update's) does
    /// not name. Objects the kept revisions' states name are kept even when unlinked: `.bind`
    /// files are copies, so their objects never have a second link. Returns the bytes
    /// reclaimed: the sizes of the files whose last link was removed.
    pub fn gc(&self, keep: &[&str], keep_objects: &BTreeSet<String>) -> Result<u64> {
        let mut reclaimed = 0u64;
        let current = self.current()?;
        let mut needed = keep_objects.clone();
        for rev in self.list_revisions()? {
            if keep.contains(&rev.as_str()) || current.as_deref() == Some(rev.as_str()) {
                if let Ok(state) = self.read_state(&rev).map(|raw| State::parse(&raw)) {
                    needed.extend(state.map(|s| Self::state_objects(&s)).unwrap_or_default());
                }
                continue;
            }
            for base in [
                self.trails_dir(),
                self.logs_dir(),
                self.root.join("disks/rev"),
            ] {
                let p = base.join(&rev);
                reclaimed += self.remove_counting(&p)?;
                let d = parent(&p);
                if fs::exists(self.fs, &d).unwrap_or(false) {
                    self.fs.sync_dir(&d).map_err(|e| Error::io("sync", &d, e))?;
                }
            }
        }
        let dir = self.objects_dir();
        let mut removed = false;
        for sha in self.list_objects()? {
            if needed.contains(&sha) {
                continue;
            }
            let p = dir.join(&sha);
            let m = self.fs.metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
            if m.nlink <= 1 {
                self.fs
                    .remove_file(&p)
                    .map_err(|e| Error::io("remove", &p, e))?;
                reclaimed += m.len;
                removed = true;
            }
        }
        if removed {
            self.fs
                .sync_dir(&dir)
                .map_err(|e| Error::io("sync", &dir, e))?;
        }
        Ok(reclaimed)
    }

    /// `rm -rf` that counts the bytes of files that had no other link.
    fn remove_counting(&self, p: &Path) -> Result<u64> {
        let m = match self.fs.metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io("stat", p, e)),
        };
        let mut n = 0;
        if m.kind == Kind::Dir {
            for name in self.fs.read_dir(p).map_err(|e| Error::io("list", p, e))? {
                n += self.remove_counting(&p.join(name))?;
            }
            self.fs
                .remove_dir(p)
                .map_err(|e| Error::io("remove", p, e))?;
        } else {
            if m.kind == Kind::File && m.nlink <= 1 {
                n += m.len;
            }
            self.fs
                .remove_file(p)
                .map_err(|e| Error::io("remove", p, e))?;
        }
        Ok(n)
    }

    /// The objects a state names, for GC's in-flight protection.
    pub fn state_objects(state: &State) -> BTreeSet<String> {
        // Inserted one by one: collecting into a BTreeSet sorts first, with its own sort code.
        let mut set = BTreeSet::new();
        set.extend(state.entries().iter().filter_map(|e| match &e.value {
            EntryValue::Object { sha } if valid_sha(sha) => Some(sha.clone()),
            _ => None,
        }));
        set
    }
}
