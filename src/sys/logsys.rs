//! The two syscalls of the log subsystem: the boot clock for relative timestamps and the size
//! of the log partition for the automatic log budget (upstream's log rotation).
use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Seconds since boot from CLOCK_BOOTTIME (counts time in suspend, like /proc/uptime).
pub fn boottime_secs() -> io::Result<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec that outlives the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::try_from(ts.tv_sec).unwrap_or(0))
}

/// What `statfs` tells about the file system holding a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsSize {
    /// total size in bytes (blocks times fragment size)
    pub total: u64,
    /// free bytes (`f_bfree`: root's reserve included, as upstream's `storage` device-meta)
    pub free: u64,
    pub tmpfs: bool,
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

/// `statfs(2)` of `path`.
// The field types differ between targets, so a conversion useless on one is needed on another.
#[allow(clippy::useless_conversion)]
pub fn fs_size(path: &Path) -> io::Result<FsSize> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path with a NUL byte"))?;
    let mut st = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory of the size of
    // `struct statfs`, both alive for the whole call.
    let r = unsafe { libc::statfs(c.as_ptr(), st.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statfs returned 0, so the kernel filled the whole struct.
    let st = unsafe { st.assume_init() };
    // signed or not, 32 or 64 bits depending on the target: convert, never cast
    let frsize = u64::try_from(st.f_frsize).unwrap_or(0);
    let bsize = u64::try_from(st.f_bsize).unwrap_or(0);
    // as glibc's statvfs: f_blocks counts fragments; old kernels leave f_frsize at 0
    let unit = if frsize != 0 { frsize } else { bsize };
    let blocks = u64::try_from(st.f_blocks).unwrap_or(0);
    Ok(FsSize {
        total: blocks.saturating_mul(unit),
        free: u64::try_from(st.f_bfree).unwrap_or(0).saturating_mul(unit),
        tmpfs: i64::try_from(st.f_type).unwrap_or(0) == TMPFS_MAGIC,
    })
}
