//! Kernel filters: seccomp for a container's init, `no_new_privs`, and the cgroup v2 device
//! programs (`bpf(2)`).
use super::{cvt, cvt_long};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// prctl(PR_SET_NO_NEW_PRIVS, 1): execve grants no privileges (setuid bits, file
/// capabilities) from here on. Child-safe.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: plain integer arguments.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_NO_NEW_PRIVS,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    cvt(r).map(drop)
}

/// seccomp(SECCOMP_SET_MODE_FILTER): installs `filter` on the calling thread. Needs
/// no_new_privs or CAP_SYS_ADMIN. Child-safe: the filter is prepared before clone.
pub fn seccomp_filter(filter: &[libc::sock_filter]) -> io::Result<()> {
    let len =
        u16::try_from(filter.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = libc::sock_fprog {
        len,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `filter`, alive for the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_uint,
            &prog as *const libc::sock_fprog,
        )
    };
    cvt_long(r).map(drop)
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The head of `union bpf_attr` for BPF_PROG_LOAD; the kernel reads the rest as zero.
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// bpf(BPF_PROG_LOAD) of a BPF_PROG_TYPE_CGROUP_DEVICE program; `insns` are `struct bpf_insn`
/// bytes. The kernel's verifier refuses a bad program with EINVAL or EACCES.
pub fn load_cgroup_device_prog(insns: &[u8]) -> io::Result<OwnedFd> {
    let insn_cnt =
        u32::try_from(insns.len() / 8).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
    };
    // SAFETY: `attr` and what it points at live for the call; the kernel copies them.
    let fd = cvt_long(unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    })?;
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI): the program checks every device
/// access of the cgroup's processes (as well as those attached above it). The attachment holds
/// the program: its descriptor may be closed, and it goes with the cgroup.
pub fn attach_cgroup_device(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let fd = |f: BorrowedFd<'_>| u32::try_from(f.as_raw_fd()).unwrap_or(u32::MAX);
    let attr = ProgAttach {
        target_fd: fd(cgroup),
        attach_bpf_fd: fd(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: `attr` lives for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttach,
            std::mem::size_of::<ProgAttach>(),
        )
    };
    cvt_long(r).map(drop)
}
