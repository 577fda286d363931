//! The only home of `unsafe`: one small function per syscall, each returning `io::Result`
//! (`-1` becomes `io::Error::last_os_error()`), each unsafe block with a `// SAFETY:` line.
//!
//! Functions marked "child-safe" neither allocate nor take a lock, so the container engine may
//! call them between `clone` and `execve` of a multi-threaded process: an OS error is
//! `io::Error`'s packed errno representation, never a heap value.
pub mod dm;
pub mod event;
pub mod filter;
pub mod host;
pub mod logsys;
pub mod netlink;
pub mod peer;
pub mod power;

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use libc::pid_t as Pid;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_long(r: libc::c_long) -> io::Result<libc::c_long> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `errno` of an error from this module (EIO when it carries none). Child-safe.
pub fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// mount(2). Child-safe.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> io::Result<()> {
    // SAFETY: every pointer is null or a NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags as libc::c_ulong,
            opt_ptr(data).cast(),
        )
    };
    cvt(r).map(drop)
}

/// umount2(2). Child-safe.
pub fn umount2(target: &CStr, flags: i32) -> io::Result<()> {
    // SAFETY: `target` is NUL-terminated.
    cvt(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// pivot_root(2) (no libc wrapper). Child-safe.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both arguments are NUL-terminated strings.
    let r = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    cvt_long(r).map(drop)
}

/// chroot(2). Child-safe.
pub fn chroot(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    cvt(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// chdir(2). Child-safe.
pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    cvt(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// sethostname(2). Child-safe.
pub fn sethostname(name: &[u8]) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// prctl(PR_CAPBSET_DROP): removes one capability from the bounding set. Child-safe.
pub fn capbset_drop(cap: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAPBSET_DROP,
            cap as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    cvt(r).map(drop)
}

/// `makedev(major, minor)` as glibc and musl encode it.
pub fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (u64::from(major), u64::from(minor));
    ((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff)
}

/// mknodat(2). Child-safe.
pub fn mknodat(dir: RawFd, name: &CStr, mode: u32, dev: u64) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; a bad fd is reported by the kernel as EBADF.
    let r = unsafe { libc::mknodat(dir, name.as_ptr(), mode as libc::mode_t, dev as libc::dev_t) };
    cvt(r).map(drop)
}

/// mkdirat(2). Child-safe.
pub fn mkdirat(dir: RawFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    cvt(unsafe { libc::mkdirat(dir, name.as_ptr(), mode as libc::mode_t) }).map(drop)
}

/// symlinkat(2). Child-safe.
pub fn symlinkat(target: &CStr, dir: RawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated.
    cvt(unsafe { libc::symlinkat(target.as_ptr(), dir, name.as_ptr()) }).map(drop)
}

/// openat(2), returning the raw descriptor (the caller closes it). Child-safe.
pub fn openat(dir: RawFd, path: &CStr, flags: i32, mode: u32) -> io::Result<RawFd> {
    // SAFETY: `path` is NUL-terminated; the mode is passed as the variadic argument.
    cvt(unsafe { libc::openat(dir, path.as_ptr(), flags, mode as libc::c_uint) })
}

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// RESOLVE_NO_MAGICLINKS | RESOLVE_IN_ROOT (linux/openat2.h).
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2(2) with RESOLVE_IN_ROOT: `path` is resolved as if `dir` were `/` (absolute
/// symlinks and `..` cannot leave it), magic links refused. ENOSYS before Linux 5.6.
/// Child-safe.
pub fn openat2_in_root(dir: RawFd, path: &CStr, flags: i32) -> io::Result<RawFd> {
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: `how` is a valid open_how of the size passed; `path` is NUL-terminated.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    cvt_long(r).map(|fd| fd as RawFd)
}

/// close(2) of a raw descriptor. Child-safe.
pub fn close(fd: RawFd) {
    // SAFETY: closing a descriptor the caller owns; errors are meaningless here.
    unsafe { libc::close(fd) };
}

/// fchdir(2). Child-safe.
pub fn fchdir(fd: RawFd) -> io::Result<()> {
    // SAFETY: integer argument.
    cvt(unsafe { libc::fchdir(fd) }).map(drop)
}

/// dup2(2). Child-safe.
pub fn dup2(old: RawFd, new: RawFd) -> io::Result<()> {
    // SAFETY: integer arguments.
    cvt(unsafe { libc::dup2(old, new) }).map(drop)
}

/// A close-on-exec duplicate numbered at least `min` (F_DUPFD_CLOEXEC), so that a later dup2
/// onto 0, 1 or 2 cannot clobber it.
pub fn dup_cloexec_min(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments; the new descriptor is owned by nobody else.
    let r = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: `r` is a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// setsid(2). Child-safe.
pub fn setsid() -> io::Result<()> {
    // SAFETY: no arguments.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// umask(2). Child-safe.
pub fn umask(mask: u32) {
    // SAFETY: integer argument; umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) };
}

/// unshare(2). Child-safe.
pub fn unshare(flags: i32) -> io::Result<()> {
    // SAFETY: integer argument.
    cvt(unsafe { libc::unshare(flags) }).map(drop)
}

/// setns(2).
pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> io::Result<()> {
    // SAFETY: integer arguments.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

/// Every signal back to its default action and an empty signal mask, so the container's init
/// does not inherit PID 1's blocked signals or ignored ones (std ignores SIGPIPE; ignored
/// dispositions survive execve). Child-safe.
pub fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is a valid disposition; numbers the kernel refuses give EINVAL.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: `set` is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Marks every descriptor from `first` up close-on-exec (close_range(2), Linux 5.11), or one
/// by one up to 1024 on older kernels. Child-safe.
pub fn cloexec_from(first: u32) {
    // SAFETY: integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return;
    }
    for fd in first..1024 {
        // SAFETY: integer arguments; EBADF for descriptors that are not open.
        unsafe { libc::fcntl(fd as RawFd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// A NULL-terminated array of C strings for execve, built (allocated) before clone.
#[derive(Debug)]
pub struct CStrArray {
    strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    pub fn new(strings: Vec<CString>) -> CStrArray {
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStrArray { strings, ptrs }
    }
    pub fn strings(&self) -> &[CString] {
        &self.strings
    }
}

/// execve(2); returns only on failure. Child-safe.
pub fn execve(path: &CStr, argv: &CStrArray, envp: &CStrArray) -> io::Error {
    // SAFETY: `path` is NUL-terminated; both arrays are NULL-terminated arrays of pointers into
    // strings owned by the arrays (CStrArray's invariant).
    unsafe { libc::execve(path.as_ptr(), argv.ptrs.as_ptr(), envp.ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// _exit(2): leaves the process without running atexit handlers or destructors. Child-safe.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: terminates the calling process.
    unsafe { libc::_exit(code) }
}

/// pipe2(O_CLOEXEC): (read end, write end).
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// read(2) on a raw descriptor, retried on EINTR. Child-safe.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: pointer and length describe `buf`.
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// write(2) on a raw descriptor, retried on EINTR. Child-safe.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: pointer and length describe `buf`.
        let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if r >= 0 {
            return Ok(r as usize);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// poll(2) for readability (or hang-up) of one descriptor; false on timeout.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r >= 0 {
            return Ok(r > 0);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// waitpid(2) for one pid. `None` with WNOHANG while it is still running; otherwise the raw
/// wait status.
pub fn waitpid(pid: Pid, nohang: bool) -> io::Result<Option<i32>> {
    let mut status: libc::c_int = 0;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, flags) };
        if r > 0 {
            return Ok(Some(status));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// kill(2).
pub fn kill(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: integer arguments.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// pidfd_open(2) (Linux 5.3): a descriptor that polls readable when the process exits.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments.
    let r = cvt_long(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Decoded wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStatus {
    Exited(i32),
    Signaled(i32),
    /// Stopped or continued: not an exit.
    Other,
}

pub fn decode_wait_status(status: i32) -> WaitStatus {
    let sig = status & 0x7f;
    if sig == 0 {
        WaitStatus::Exited((status >> 8) & 0xff)
    } else if sig != 0x7f && (status & 0xffff) != 0xffff {
        WaitStatus::Signaled(sig)
    } else {
        WaitStatus::Other
    }
}

/// In a cloned child, ends the process if `child` ever unwinds instead of returning: the
/// unwind must not climb into the copy of the parent's stack frames.
struct ExitOnUnwind;
impl Drop for ExitOnUnwind {
    fn drop(&mut self) {
        exit_now(126)
    }
}

/// `struct clone_args` of clone3(2) (CLONE_ARGS_SIZE_VER2 = 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}
/// CLONE_ARGS_SIZE_VER0: the struct without set_tid and cgroup, which Linux 5.3 knows.
const CLONE_ARGS_SIZE_VER0: usize = 64;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// How [`clone_process`] created the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloneHow {
    /// clone3 with CLONE_INTO_CGROUP: the child started in the cgroup.
    Clone3IntoCgroup,
    /// clone3 without a cgroup.
    Clone3,
    /// Legacy clone(2), fork-like (kernels before 5.3 or clone3 filtered out).
    Clone,
}

/// Creates a child process with `flags` (CLONE_NEW* namespace bits; SIGCHLD is its exit
/// signal) in fork style: the child continues on a copy of this stack and runs `child`, whose
/// return value becomes its `_exit` status; it never returns here. With `cgroup`, clone3's
/// CLONE_INTO_CGROUP places it there from the first instruction; if the kernel lacks clone3 or
/// that flag the child is created without it, and [`CloneHow`] says so.
///
/// The child of a multi-threaded process may only use async-signal-safe operations: `child`
/// must not allocate, lock, print or unwind (it runs the prepared plan of the container engine,
/// made of the child-safe calls of this module).
/// `try_clone3: false` goes straight to clone(2), as on a kernel without clone3 (tests of
/// that path).
pub fn clone_process(
    flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
    try_clone3: bool,
    child: &mut dyn FnMut() -> i32,
) -> io::Result<(Pid, CloneHow)> {
    let attempts: [(Option<BorrowedFd<'_>>, CloneHow); 2] = [
        (cgroup, CloneHow::Clone3IntoCgroup),
        (None, CloneHow::Clone3),
    ];
    for (cg, how) in attempts {
        if !try_clone3 {
            break;
        }
        if how == CloneHow::Clone3IntoCgroup && cg.is_none() {
            continue;
        }
        let mut args = CloneArgs {
            flags,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        let mut size = CLONE_ARGS_SIZE_VER0;
        if let Some(fd) = cg {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = fd.as_raw_fd() as u64;
            size = std::mem::size_of::<CloneArgs>();
        }
        // SAFETY: `args` is a valid clone_args of at least `size` bytes; with a null stack
        // clone3 behaves like fork: the child gets a copy of the address space and returns
        // here with 0, runs `child` (restricted to child-safe calls, see above) and _exits.
        let r = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, size) };
        if r == 0 {
            let _guard = ExitOnUnwind;
            exit_now(child());
        }
        if r > 0 {
            return Ok((r as Pid, how));
        }
        let e = io::Error::last_os_error();
        match (e.raw_os_error(), how) {
            // a kernel without CLONE_INTO_CGROUP (5.3-5.6): clone3 without it
            (Some(libc::E2BIG) | Some(libc::EINVAL), CloneHow::Clone3IntoCgroup) => continue,
            // no clone3 at all, or filtered by a seccomp profile: legacy clone below
            (Some(libc::ENOSYS) | Some(libc::EPERM), _) => break,
            _ => return Err(e),
        }
    }
    // SAFETY: raw clone(2) with a null stack is fork-like (see above); the remaining arguments
    // (parent_tid, child_tid, tls) are unused without the matching flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if r == 0 {
        let _guard = ExitOnUnwind;
        exit_now(child());
    }
    cvt_long(r).map(|pid| (pid as Pid, CloneHow::Clone))
}

/// EXT4_IOC_CHECKPOINT (`_IOW('f', 43, __u32)`, Linux 5.13): writes the journal's committed
/// blocks to their home locations, so a reader that does not replay the journal (U-Boot's
/// ext4 driver reading the boot env) sees what was fsynced.
pub fn ext4_checkpoint(fd: BorrowedFd<'_>) -> io::Result<()> {
    // _IOW's direction bits: MIPS encodes write as 4 << 29, the others as 1 << 30
    #[cfg(any(target_arch = "mips", target_arch = "mips64"))]
    const EXT4_IOC_CHECKPOINT: libc::c_ulong = 0x8004_662B;
    #[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
    const EXT4_IOC_CHECKPOINT: libc::c_ulong = 0x4004_662B;
    let flags: u32 = 0;
    // SAFETY: the ioctl reads one u32 of flags from a valid pointer; `fd` is open.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            EXT4_IOC_CHECKPOINT as _,
            &flags as *const u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ---- loop devices (linux/loop.h) ----

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
pub const LO_FLAGS_READ_ONLY: u32 = 1;
pub const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config` (304 bytes).
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// LOOP_CTL_GET_FREE on /dev/loop-control: the number of a free loop device.
pub fn loop_ctl_get_free(ctl: BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: this ioctl takes no argument.
    let r = cvt(unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE as _) })?;
    Ok(r as u32)
}

/// LOOP_CONFIGURE (Linux 5.8): binds `backing` to the loop device with `flags`; `name` is
/// recorded as the file name (truncated to 63 bytes).
pub fn loop_configure(
    dev: BorrowedFd<'_>,
    backing: BorrowedFd<'_>,
    flags: u32,
    name: &[u8],
) -> io::Result<()> {
    let cfg = LoopConfig {
        fd: backing.as_raw_fd() as u32,
        block_size: 0,
        info: loop_info(flags, name),
        reserved: [0; 8],
    };
    // SAFETY: `cfg` is a valid loop_config that outlives the call.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_CONFIGURE as _,
            &cfg as *const LoopConfig,
        )
    };
    cvt(r).map(drop)
}

fn loop_info(flags: u32, name: &[u8]) -> LoopInfo64 {
    let mut file_name = [0u8; LO_NAME_SIZE];
    for (d, s) in file_name.iter_mut().zip(name.iter().take(LO_NAME_SIZE - 1)) {
        *d = *s;
    }
    LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: flags,
        lo_file_name: file_name,
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    }
}

/// LOOP_SET_FD (kernels before 5.8): binds `backing`; read-only when `backing` is.
pub fn loop_set_fd(dev: BorrowedFd<'_>, backing: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: the argument is a descriptor number passed by value.
    let r = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD as _, backing.as_raw_fd()) };
    cvt(r).map(drop)
}

/// LOOP_SET_STATUS64 with `flags` (only AUTOCLEAR and a few others are settable) and name.
pub fn loop_set_status(dev: BorrowedFd<'_>, flags: u32, name: &[u8]) -> io::Result<()> {
    let info = loop_info(flags, name);
    // SAFETY: `info` is a valid loop_info64 that outlives the call.
    let r = unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            LOOP_SET_STATUS64 as _,
            &info as *const LoopInfo64,
        )
    };
    cvt(r).map(drop)
}

/// LOOP_CLR_FD: detaches the loop device (deferred by the kernel while it is still open
/// elsewhere).
pub fn loop_clr_fd(dev: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: this ioctl takes no argument.
    cvt(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _, 0) }).map(drop)
}

/// getrandom(2) until `buf` is full: blocks only until the kernel's generator is seeded, once
/// per boot.
pub fn getrandom(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into the valid slice `rest`.
        let r = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        done += r as usize;
    }
    Ok(())
}

/// mknod(2) of a block device node at an absolute path.
pub fn mknod_block(path: &CStr, mode: u32, dev: u64) -> io::Result<()> {
    mknodat(libc::AT_FDCWD, path, libc::S_IFBLK | mode, dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
        assert_eq!(std::mem::size_of::<OpenHow>(), 24);
    }

    #[test]
    fn makedev_matches_libc_encoding() {
        assert_eq!(makedev(1, 3), 0x103);
        assert_eq!(
            makedev(7, 300),
            (300 & 0xff) | (7 << 8) | ((300 & !0xff) << 12)
        );
    }

    #[test]
    fn wait_status_decoding() {
        assert_eq!(decode_wait_status(7 << 8), WaitStatus::Exited(7));
        assert_eq!(decode_wait_status(9), WaitStatus::Signaled(9));
        assert_eq!(decode_wait_status(0x137f), WaitStatus::Other);
    }
}
