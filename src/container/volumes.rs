//! A container's volumes under `<PV_DISK_VOLDIR>/<container>/<volume>`, mounted by the parent
//! in pantavisor's own mount namespace (status MOUNTED) and unmounted at stop, as upstream
//! (pv:`volumes.c`): images loop-mounted read-only, `.bind` files and `.data` directories
//! bind-mounted, storage volumes bound from `disks/perm` or `disks/rev/<rev>` or a fresh tmpfs
//! (run.json `volumes` and `storage`).
use super::ms;
use super::verity::{self, Verity};
use super::{Error, Paths};
use crate::pvlog;
use crate::state::{Container, DmManifest, Persistence, State, StorageVolume, VolumeKind};
use crate::storage::fs::RealFs;
use crate::storage::Storage;
use crate::sys;
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A loop device this engine attached (read-only, autoclear).
#[derive(Debug)]
pub(crate) struct LoopDevice {
    pub path: PathBuf,
    fd: OwnedFd,
}

/// One mounted volume.
#[derive(Debug)]
pub(crate) struct Mounted {
    pub target: PathBuf,
    pub loop_dev: Option<LoopDevice>,
    /// The device-mapper device mounted (a `dm:` volume), removed after the umount.
    pub dm: Option<Verity>,
}

pub(super) fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// A volume name usable as one path component.
fn valid_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains('/') && !n.contains('\0')
}

/// Attaches `image` read-only to a free loop device: LOOP_CTL_GET_FREE, open (creating the
/// `/dev/loopN` node when the /dev in use lacks it), LOOP_CONFIGURE with READ_ONLY|AUTOCLEAR.
/// A device taken by someone else between the two calls (EBUSY) is retried.
/// `legacy` (or a kernel before 5.8, which answers LOOP_CONFIGURE with EINVAL or ENOTTY):
/// LOOP_SET_FD on the read-only file, then LOOP_SET_STATUS64 for AUTOCLEAR.
pub(crate) fn loop_attach(image: &Path, legacy: bool) -> io::Result<LoopDevice> {
    loop_attach_mode(image, legacy, false)
}

/// [`loop_attach`], read-write when `writable` (a dm-crypt disk's image).
pub(crate) fn loop_attach_mode(
    image: &Path,
    legacy: bool,
    writable: bool,
) -> io::Result<LoopDevice> {
    let backing = fs::OpenOptions::new()
        .read(true)
        .write(writable)
        .custom_flags(libc::O_CLOEXEC)
        .open(image)?;
    let ro = if writable { 0 } else { sys::LO_FLAGS_READ_ONLY };
    let ctl = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/loop-control")?;
    let mut last = io::Error::from_raw_os_error(libc::EBUSY);
    for _ in 0..16 {
        let n = sys::loop_ctl_get_free(ctl.as_fd())?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let open = || {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
        };
        let dev = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match sys::mknod_block(&c_path(&path)?, 0o600, sys::makedev(7, n)) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
                open()?
            }
            r => r?,
        };
        let name = image.as_os_str().as_bytes();
        let mut r = Err(io::Error::from_raw_os_error(libc::ENOTTY));
        if !legacy {
            r = sys::loop_configure(
                dev.as_fd(),
                backing.as_fd(),
                ro | sys::LO_FLAGS_AUTOCLEAR,
                name,
            );
        }
        if matches!(
            r.as_ref().map_err(|e| e.raw_os_error()),
            Err(Some(libc::EINVAL | libc::ENOTTY))
        ) {
            pvlog!(
                Debug,
                "container",
                "{}: LOOP_SET_FD + LOOP_SET_STATUS64",
                path.display()
            );
            r = sys::loop_set_fd(dev.as_fd(), backing.as_fd()).and_then(|()| {
                sys::loop_set_status(dev.as_fd(), sys::LO_FLAGS_AUTOCLEAR, name).inspect_err(|_| {
                    let _ = sys::loop_clr_fd(dev.as_fd());
                })
            });
        }
        match r {
            Ok(()) => {
                return Ok(LoopDevice {
                    path,
                    fd: dev.into(),
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

impl LoopDevice {
    /// Detaches now if nothing else holds it; otherwise autoclear detaches it on last close.
    pub(crate) fn detach(self) {
        match sys::loop_clr_fd(self.fd.as_fd()) {
            Ok(()) => {}
            // already cleared (autoclear ran when the mount went away)
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENXIO) | Some(libc::EINVAL)) => {}
            Err(e) => pvlog!(
                Warn,
                "container",
                "loop {}: detach: {e}",
                self.path.display()
            ),
        }
    }
}

fn mkdir_p(p: &Path) -> io::Result<()> {
    fs::create_dir_all(p)
}

/// Mounts every volume of `c` in this order: root-volume, volumes, storage. On failure what
/// was mounted is unmounted again and the error names the volume. `verity`: `dm:` volumes
/// through dm-verity (else mounted as plain images, upstream's handlers off).
pub(crate) fn mount_all(
    paths: &Paths,
    rev: &str,
    state: &State,
    c: &Container,
    legacy_loop: bool,
    verity: bool,
) -> Result<Vec<Mounted>, Error> {
    let mut done = Vec::new();
    match mount_each(paths, rev, state, c, legacy_loop, verity, &mut done) {
        Ok(()) => Ok(done),
        Err(e) => {
            unmount_all(&c.name, done);
            Err(e)
        }
    }
}

fn mount_each(
    paths: &Paths,
    rev: &str,
    state: &State,
    c: &Container,
    legacy_loop: bool,
    verity: bool,
    done: &mut Vec<Mounted>,
) -> Result<(), Error> {
    let name = &c.name;
    let st = Storage::new(&RealFs, &paths.storage);
    let trail = st
        .trail_dir(rev)
        .map_err(|e| Error::invalid(name, "volume", &e.path, format!("bad revision '{rev}'")))?;
    let voldir = paths.voldir.join(name);
    let images = c.root_volume.iter().chain(c.volumes.iter());
    for v in images {
        let file = &v.image.path;
        let target = voldir.join(file);
        if file.split('/').any(|s| !valid_name(s)) {
            return Err(Error::invalid(name, "volume", &target, "bad volume name"));
        }
        let source = trail.join(name).join(file);
        let parent = target.parent().unwrap_or(&voldir).to_path_buf();
        mkdir_p(&parent).map_err(|e| Error::io(name, "mkdir", &parent, &e))?;
        match (&v.kind, v.image.handler.as_deref()) {
            (
                VolumeKind::Loop {
                    fstype: Some(fstype),
                },
                Some("dm"),
            ) if verity => {
                let m = c.dm_manifest(file).ok_or_else(|| {
                    Error::invalid(name, "dm-verity", &source, format!("no _dm/{file}.json"))
                })?;
                mkdir_p(&target).map_err(|e| Error::io(name, "mkdir", &target, &e))?;
                done.push(mount_verity(
                    name,
                    &trail.join(name),
                    file,
                    m,
                    fstype,
                    &target,
                    legacy_loop,
                )?);
            }
            (_, Some(h)) if h != "dm" || matches!(v.kind, VolumeKind::Bind | VolumeKind::Data) => {
                return Err(Error::invalid(
                    name,
                    "volume",
                    &target,
                    format!("volume handler '{h}' is not supported"),
                ));
            }
            (VolumeKind::Loop { fstype }, handler) => {
                if handler.is_some() {
                    pvlog!(
                        Info,
                        "container",
                        "container {name}: volume {file}: verity off (PV_SECUREBOOT_HANDLERS, pv_verityoff), mounted plain"
                    );
                }
                let Some(fstype) = fstype else {
                    return Err(Error::invalid(
                        name,
                        "volume",
                        &source,
                        "no file extension to take the file system type from",
                    ));
                };
                mkdir_p(&target).map_err(|e| Error::io(name, "mkdir", &target, &e))?;
                let dev = loop_attach(&source, legacy_loop)
                    .map_err(|e| Error::io(name, "loop", &source, &e))?;
                let r = mount_path(Some(&dev.path), &target, Some(fstype), ms::RDONLY);
                if let Err(e) = r {
                    dev.detach();
                    return Err(Error::io(name, "mount", &target, &e));
                }
                pvlog!(
                    Debug,
                    "container",
                    "container {name}: {} on {} ({fstype}, {})",
                    source.display(),
                    target.display(),
                    dev.path.display()
                );
                done.push(Mounted {
                    target,
                    loop_dev: Some(dev),
                    dm: None,
                });
            }
            (VolumeKind::Bind, _) => {
                if !source.is_file() {
                    return Err(Error::io(
                        name,
                        "volume",
                        &source,
                        &io::Error::from_raw_os_error(libc::ENOENT),
                    ));
                }
                if !target.exists() {
                    fs::File::create(&target)
                        .map_err(|e| Error::io(name, "create", &target, &e))?;
                }
                mount_path(Some(&source), &target, None, ms::BIND)
                    .map_err(|e| Error::io(name, "mount", &target, &e))?;
                done.push(Mounted {
                    target,
                    loop_dev: None,
                    dm: None,
                });
            }
            (VolumeKind::Data, _) => {
                if !source.is_dir() {
                    return Err(Error::invalid(name, "volume", &source, "not a directory"));
                }
                mkdir_p(&target).map_err(|e| Error::io(name, "mkdir", &target, &e))?;
                mount_path(Some(&source), &target, None, ms::BIND | ms::REC)
                    .map_err(|e| Error::io(name, "mount", &target, &e))?;
                done.push(Mounted {
                    target,
                    loop_dev: None,
                    dm: None,
                });
            }
        }
    }
    for s in &c.storage {
        done.push(mount_storage(paths, &st, rev, state, name, s)?);
    }
    Ok(())
}

/// Mounts the dm-verity device of `volume` (files in `dir`) read-only at `target`. A mount
/// that fails (the kernel reads the file system's first blocks, which a root hash that does
/// not match refuses with EIO) closes the device and names the root hash.
pub(crate) fn mount_verity(
    part: &str,
    dir: &Path,
    volume: &str,
    m: &DmManifest,
    fstype: &str,
    target: &Path,
    legacy_loop: bool,
) -> Result<Mounted, Error> {
    let (dev, v) = verity::open(part, dir, volume, m, legacy_loop)?;
    if let Err(e) = mount_path(Some(&dev), target, Some(fstype), ms::RDONLY) {
        v.close(part);
        return Err(Error::invalid(
            part,
            "dm-verity",
            target,
            format!(
                "volume {volume}: mount of {} failed ({e}): does it match root hash {}?",
                dev.display(),
                m.root_hash
            ),
        ));
    }
    pvlog!(
        Info,
        "container",
        "{part}: dm-verity volume {volume} on {} ({fstype}, root hash {})",
        target.display(),
        m.root_hash
    );
    Ok(Mounted {
        target: target.to_path_buf(),
        loop_dev: None,
        dm: Some(v),
    })
}

/// One `storage` volume of `part` (a container, or `bsp` for device.json `volumes`) at
/// `<voldir>/<part>/<volume>`, backed as reference 2.7 says: `disks/perm/<part>/<volume>`,
/// `disks/rev/<rev>/<part>/<volume>` or a fresh tmpfs; on a disk (its own `disk`, else the
/// default one), the same under the disk's mount, mounting the disk first.
pub(crate) fn mount_storage(
    paths: &Paths,
    st: &Storage,
    rev: &str,
    state: &State,
    part: &str,
    s: &StorageVolume,
) -> Result<Mounted, Error> {
    let name = part;
    let target = paths.voldir.join(part).join(&s.name);
    if !valid_name(&s.name) {
        return Err(Error::invalid(name, "volume", &target, "bad volume name"));
    }
    let disk = s.disk.as_deref().or_else(|| {
        state
            .disks()
            .iter()
            .find(|d| d.default)
            .map(|d| d.name.as_str())
    });
    mkdir_p(&target).map_err(|e| Error::io(name, "mkdir", &target, &e))?;
    let r = match (disk, s.persistence) {
        // on a disk: its mount's perm/, rev/<rev>/ or boot/ (wiped at each mount), as upstream
        (Some(d), p) => {
            // no silent fallback to plain storage for data meant for a disk
            let disk = state.disk(d).ok_or_else(|| {
                Error::invalid(
                    name,
                    "volume",
                    &target,
                    format!("disk '{d}' is not declared"),
                )
            })?;
            let mnt = super::disk::ensure_mounted(&paths.media, disk)
                .map_err(|e| Error::invalid(name, "disk", &e.path, e.msg))?;
            let src = super::disk::volume_dir(&mnt, p, rev, name, &s.name);
            if p == Persistence::Boot {
                let _ = crate::storage::fs::remove_all(&RealFs, &src);
            }
            mkdir_p(&src).map_err(|e| Error::io(name, "mkdir", &src, &e))?;
            mount_path(Some(&src), &target, None, ms::BIND)
        }
        (None, Persistence::Permanent | Persistence::Revision) => {
            let src = if s.persistence == Persistence::Permanent {
                st.perm_volume_dir(name, &s.name)
            } else {
                st.rev_volume_dir(rev, name, &s.name)
            };
            mkdir_p(&src).map_err(|e| Error::io(name, "mkdir", &src, &e))?;
            mount_path(Some(&src), &target, None, ms::BIND)
        }
        (None, Persistence::Boot) => mount_tmpfs(&target),
    };
    r.map_err(|e| Error::io(name, "mount", &target, &e))?;
    pvlog!(
        Debug,
        "container",
        "container {name}: storage volume {} ({}) on {}",
        s.name,
        s.persistence.as_str(),
        target.display()
    );
    Ok(Mounted {
        target,
        loop_dev: None,
        dm: None,
    })
}

pub(crate) fn mount_path(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: u64,
) -> io::Result<()> {
    let src = source.map(c_path).transpose()?;
    let fst = fstype
        .map(|f| CString::new(f).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL)))
        .transpose()?;
    sys::mount(
        src.as_deref(),
        &c_path(target)?,
        fst.as_deref(),
        flags,
        None,
    )
}

pub(crate) fn mount_tmpfs(target: &Path) -> io::Result<()> {
    sys::mount(
        Some(c"none"),
        &c_path(target)?,
        Some(c"tmpfs"),
        0,
        Some(c"mode=0755"),
    )
}

/// Unmounts in reverse order and detaches the loop devices; a busy mount is lazily detached
/// (logged). Never fails: what cannot be undone is logged.
pub(crate) fn unmount_all(container: &str, mounted: Vec<Mounted>) {
    for m in mounted.into_iter().rev() {
        let target = match c_path(&m.target) {
            Ok(t) => t,
            Err(e) => {
                pvlog!(
                    Error,
                    "container",
                    "container {container}: umount {}: {e}",
                    m.target.display()
                );
                continue;
            }
        };
        match sys::umount2(&target, 0) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                pvlog!(
                    Warn,
                    "container",
                    "container {container}: umount {}: {e}; detaching lazily",
                    m.target.display()
                );
                if let Err(e) = sys::umount2(&target, libc::MNT_DETACH) {
                    pvlog!(
                        Error,
                        "container",
                        "container {container}: umount {}: {e}",
                        m.target.display()
                    );
                }
            }
            // not mounted any more
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => {
                pvlog!(
                    Error,
                    "container",
                    "container {container}: umount {}: {e}",
                    m.target.display()
                )
            }
        }
        if let Some(v) = m.dm {
            v.close(container);
        }
        if let Some(dev) = m.loop_dev {
            dev.detach();
        }
    }
}
