//! `PV_SYSTEM_INIT_MODE=embedded`: the real PID 1 of an initramfs. Early mounts, re-rooting off the
//! initramfs rootfs (so containers can pivot_root, which fails with EINVAL on the initramfs
//! rootfs), early kernel modules, and the storage partition. Namespaces cannot run this; the VM
//! tier proves it.
// MS_* are c_ulong, 32 bits on armv7/mips: the `as u64` casts are not no-ops there
#![allow(clippy::unnecessary_cast)]

use super::blockdev::{self, DeviceSpec};
use crate::pvlog;
use crate::sys;
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the initramfs carries modules to load before looking for storage (virtio, ext4, loop,
/// squashfs, overlay...): every `*.ko` listed, in order, in `modules.load` of this folder, or
/// all `*.ko` in name order when there is no list.
pub const EARLY_MODULES_DIR: &str = "/lib/modules/pv-early";

fn c(s: &str) -> io::Result<CString> {
    CString::new(s)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL in {s:?}")))
}

fn mount(src: &str, target: &str, fstype: &str, flags: u64, data: &str) -> io::Result<()> {
    let _ = std::fs::create_dir_all(target);
    let data = (!data.is_empty()).then(|| c(data)).transpose()?;
    sys::mount(
        Some(&c(src)?),
        &c(target)?,
        Some(&c(fstype)?),
        flags,
        data.as_deref(),
    )
    .map_err(|e| io::Error::new(e.kind(), format!("mount {fstype} on {target}: {e}")))
}

/// The mount points of a /proc/self/mountinfo text (field 5, `\040` escapes left as they are).
pub fn mount_points(mountinfo: &str) -> Vec<&str> {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect()
}

/// /proc, /sys, devtmpfs /dev, /dev/pts, /run and the cgroup2 hierarchy at /sys/fs/cgroup
/// (containers' cgroups and their limits; /proc/self/cgroup has no `0::` line before cgroup2
/// was mounted once) -- each only when not mounted yet, so a second call mounts nothing.
pub fn early_mounts() {
    let nosuid = libc::MS_NOSUID as u64;
    let nodev = libc::MS_NODEV as u64;
    let noexec = libc::MS_NOEXEC as u64;
    for (src, target, fstype, flags, data) in [
        ("proc", "/proc", "proc", nosuid | nodev | noexec, ""),
        ("sysfs", "/sys", "sysfs", nosuid | nodev | noexec, ""),
        (
            "cgroup2",
            "/sys/fs/cgroup",
            "cgroup2",
            nosuid | nodev | noexec,
            "",
        ),
        ("devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            nosuid | noexec,
            "gid=5,mode=0620,ptmxmode=0666",
        ),
        ("tmpfs", "/run", "tmpfs", nosuid | nodev, "mode=0755"),
    ] {
        // read again each time: /proc itself is the first of the list
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mount_points(&mountinfo).contains(&target) {
            continue;
        }
        if let Err(e) = mount(src, target, fstype, flags, data) {
            if e.kind() != io::ErrorKind::ResourceBusy {
                pvlog!(Warn, "init", "{e}");
            }
        }
    }
}

/// Whether `/` is the kernel's initramfs `rootfs` (no parent mount: pivot_root refuses it).
pub fn root_is_initramfs() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|mi| {
            mi.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let sep = f.iter().position(|x| *x == "-")?;
                (f.get(4) == Some(&"/")).then(|| f.get(sep + 1).copied().unwrap_or("").to_string())
            })
        })
        .is_some_and(|fstype| fstype == "rootfs")
}

/// Re-roots PID 1 once: bind `/` onto /newroot, move it over `/`, chroot into it (the usual
/// switch_root way round pivot_root's EINVAL on an initramfs). Afterwards `/` has a parent mount
/// and containers can pivot_root.
pub fn reroot() -> io::Result<()> {
    let rec = (libc::MS_BIND | libc::MS_REC) as u64;
    mount("/", "/newroot", "", rec, "")?;
    sys::chdir(&c("/newroot")?)?;
    sys::mount(Some(&c(".")?), &c("/")?, None, libc::MS_MOVE as u64, None)?;
    sys::chroot(&c(".")?)?;
    sys::chdir(&c("/")?)
}

/// Loads the early modules with finit_module; a module that fails is logged, not fatal (it
/// may be built in).
pub fn load_early_modules(dir: &Path) -> usize {
    let list: Vec<PathBuf> = match std::fs::read_to_string(dir.join("modules.load")) {
        Ok(t) => t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| dir.join(l))
            .collect(),
        Err(_) => {
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|p| p.extension().is_some_and(|x| x == "ko"))
                        .collect()
                })
                .unwrap_or_default();
            crate::sort(&mut v);
            v
        }
    };
    let mut loaded = 0;
    for m in list {
        match std::fs::File::open(&m).and_then(|f| sys::power::finit_module(&f)) {
            Ok(()) => loaded += 1,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => loaded += 1,
            Err(e) => pvlog!(Warn, "init", "module {}: {e}", m.display()),
        }
    }
    loaded
}

/// Finds PV_STORAGE_DEVICE (waiting up to `wait` for it to appear) and mounts it at
/// `mntpoint` with `fstype` (ext4 when unset).
pub fn mount_storage(
    device: &str,
    fstype: Option<&str>,
    mntpoint: &str,
    wait: Duration,
) -> io::Result<PathBuf> {
    let spec = DeviceSpec::parse(device);
    let t = Instant::now();
    let dev = loop {
        if let Some(d) = blockdev::find(&spec, Path::new("/sys/class/block"), Path::new("/dev")) {
            break d;
        }
        if t.elapsed() >= wait {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("storage device {device} not found in {} s", wait.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    mount(
        &dev.to_string_lossy(),
        mntpoint,
        fstype.unwrap_or("ext4"),
        0,
        "",
    )?;
    pvlog!(
        Info,
        "init",
        "storage {} ({device}) mounted on {mntpoint}",
        dev.display()
    );
    Ok(dev)
}

/// Whether `path` (a /proc/self/fd link target) is `mntpoint` or below it.
pub fn is_under(path: &Path, mntpoint: &str) -> bool {
    path.starts_with(mntpoint)
}

/// Points every descriptor of this process that is open on a file under `mntpoint` at
/// /dev/null. Only for the very end of PID 1, after the last write to the storage: the log
/// tree keeps `pantavisor.log` open for writing to the end, which makes both the unmount and
/// the read-only remount fail with EBUSY (the first real boot showed it: the storage was
/// left with its journal marked for recovery after every orderly reboot). The owners still
/// hold their numbers, which now lead to /dev/null. Returns how many were redirected.
fn release_own_files(mntpoint: &str) -> usize {
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return 0;
    };
    let mut n = 0;
    let Ok(rd) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let fds: Vec<(i32, PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let fd = e.file_name().to_str()?.parse().ok()?;
            Some((fd, std::fs::read_link(e.path()).ok()?))
        })
        .collect();
    for (fd, target) in fds {
        if is_under(&target, mntpoint)
            && sys::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd).is_ok()
        {
            n += 1;
        }
    }
    n
}

/// Unmounts the storage at shutdown (after sync), so that its journal is checkpointed and the
/// file system marked clean; our own files still open there are released first. A mount
/// still busy is remounted read-only, which checkpoints the journal as well.
pub fn unmount_storage(mntpoint: &str) {
    let Ok(t) = c(mntpoint) else { return };
    let released = release_own_files(mntpoint);
    let Err(e) = sys::umount2(&t, 0) else {
        return;
    };
    if let Err(r) = sys::mount(
        None,
        &t,
        None,
        (libc::MS_REMOUNT | libc::MS_RDONLY) as u64,
        None,
    ) {
        // the log tree is gone (released): the console is all that is left
        eprintln!(
            "pantavisor: storage {mntpoint} left mounted read-write: umount: {e}, remount read-only: {r} ({released} own files released)"
        );
    }
}

#[cfg(test)]
#[path = "embedded_tests.rs"]
mod tests;
