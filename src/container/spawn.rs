//! clone, the child's run of the plan, and the parent's side of the handshake.
//!
//! The child allocates nothing and takes no lock (other threads exist in PID 1): it only walks
//! the prepared [`ChildPlan`] with the child-safe calls of `sys`. It reports on a close-on-exec
//! pipe, one 12-byte record per event (op index, errno, kind); a successful execve closes the
//! pipe with no fatal record, which is how the parent knows the init runs.
use super::ms;
use super::plan::{ChildPlan, OpKind};
use crate::sys::{self, CloneHow};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

/// Record kinds on the error pipe.
pub(crate) const KIND_SKIPPED: u32 = 0;
pub(crate) const KIND_FATAL: u32 = 1;
pub(crate) const KIND_PIVOT_FALLBACK: u32 = 2;
/// The setup is done; the child waits on the sync pipe for the go to exec (`plan.barrier`).
pub(crate) const KIND_READY: u32 = 3;
const RECORD: usize = 12;

/// The descriptors the child uses; all numbered 3 or more and close-on-exec.
pub(crate) struct ChildFds {
    pub sync: RawFd,
    pub report: RawFd,
    pub null: RawFd,
    pub console: RawFd,
    /// The parent's ends of both pipes, closed first thing in the child.
    pub parent_ends: [RawFd; 2],
}

/// Pseudo op indices after the plan's ops.
pub(crate) fn stdio_index(plan: &ChildPlan) -> u32 {
    u32::try_from(plan.ops.len()).unwrap_or(u32::MAX - 2)
}
pub(crate) fn exec_index(plan: &ChildPlan) -> u32 {
    stdio_index(plan).saturating_add(1)
}
/// no_new_privs and the seccomp filter.
pub(crate) fn filter_index(plan: &ChildPlan) -> u32 {
    stdio_index(plan).saturating_add(2)
}

fn report(fd: RawFd, index: u32, errno: i32, kind: u32) {
    let i = index.to_ne_bytes();
    let e = errno.to_ne_bytes();
    let k = kind.to_ne_bytes();
    let rec: [u8; RECORD] = [
        i[0], i[1], i[2], i[3], e[0], e[1], e[2], e[3], k[0], k[1], k[2], k[3],
    ];
    // one write below PIPE_BUF is atomic; nothing to do if the parent went away
    let _ = sys::write(fd, &rec);
}

struct Ctx {
    root: RawFd,
    no_openat2: bool,
    use_proc_fd: bool,
}

type Errno = i32;

fn en(e: io::Error) -> Errno {
    sys::errno_of(&e)
}

/// A path relative to the container's root resolved inside it (openat2 RESOLVE_IN_ROOT); on
/// kernels before 5.6 a plain openat below the root.
fn resolve(ctx: &mut Ctx, rel: &CStr, flags: i32) -> Result<RawFd, Errno> {
    let root = ctx.root;
    resolve_in(ctx, root, rel, flags)
}

/// [`resolve`] inside another root.
fn resolve_in(ctx: &mut Ctx, root: RawFd, rel: &CStr, flags: i32) -> Result<RawFd, Errno> {
    if root < 0 {
        return Err(libc::EBADF);
    }
    let flags = flags | libc::O_CLOEXEC;
    if !ctx.no_openat2 {
        match sys::openat2_in_root(root, rel, flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => ctx.no_openat2 = true,
            Err(e) => return Err(en(e)),
        }
    }
    sys::openat(root, rel, flags, 0).map_err(en)
}

/// `/proc/self/fd/<fd>` in a stack buffer.
fn fd_path(fd: RawFd, buf: &mut [u8; 32]) -> Option<&CStr> {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut i = 0usize;
    for &c in PREFIX {
        *buf.get_mut(i)? = c;
        i += 1;
    }
    let mut digits = [0u8; 12];
    let mut n = u32::try_from(fd).ok()?;
    let mut k = 0usize;
    loop {
        *digits.get_mut(k)? = b'0' + (n % 10) as u8;
        k += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        *buf.get_mut(i)? = *digits.get(k)?;
        i += 1;
    }
    *buf.get_mut(i)? = 0;
    CStr::from_bytes_until_nul(buf.get(..=i)?).ok()
}

struct Fd(RawFd);
impl Drop for Fd {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

fn mount_in_root(
    ctx: &mut Ctx,
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    if !ctx.use_proc_fd {
        // no /proc in pantavisor's namespace: paths relative to the root (the cwd)
        return sys::mount(source, target, fstype, flags, data).map_err(en);
    }
    let bind = flags & ms::BIND != 0 && flags & ms::REMOUNT == 0;
    let mut sbuf = [0u8; 32];
    let mut tbuf = [0u8; 32];
    // a relative bind source lives in the container too
    let src_fd = match source {
        Some(s) if bind && s.to_bytes().first() != Some(&b'/') => {
            Some(Fd(resolve(ctx, s, libc::O_PATH)?))
        }
        _ => None,
    };
    let source = match &src_fd {
        Some(fd) => Some(fd_path(fd.0, &mut sbuf).ok_or(libc::ENAMETOOLONG)?),
        None => source,
    };
    let tfd = Fd(resolve(ctx, target, libc::O_PATH)?);
    let tpath = fd_path(tfd.0, &mut tbuf).ok_or(libc::ENAMETOOLONG)?;
    sys::mount(source, tpath, fstype, flags, data).map_err(en)
}

fn ignore_exists(r: io::Result<()>) -> Result<(), Errno> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(en(e)),
    }
}

fn run_op(ctx: &mut Ctx, kind: &OpKind, fds: &ChildFds, index: u32) -> Result<(), Errno> {
    match kind {
        OpKind::SetHostname(h) => sys::sethostname(h.to_bytes()).map_err(en),
        OpKind::Propagation { target, flags } => {
            sys::mount(None, target, None, *flags, None).map_err(en)
        }
        OpKind::MountRootfs {
            source,
            target,
            fstype,
            flags,
            data,
        } => sys::mount(
            Some(source),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        )
        .map_err(en),
        OpKind::EnterRoot(path) => {
            let fd = sys::openat(
                libc::AT_FDCWD,
                path,
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                0,
            )
            .map_err(en)?;
            ctx.root = fd;
            sys::chdir(path).map_err(en)
        }
        OpKind::Export { rel, dir, host } => {
            if !ctx.use_proc_fd {
                return sys::mount(Some(rel), host, None, ms::BIND, None).map_err(en);
            }
            let dir_flags = libc::O_PATH | libc::O_DIRECTORY;
            let src = Fd(resolve(ctx, rel, dir_flags)?);
            // a symlink planted in the exports folder cannot point the bind elsewhere
            let d = Fd(sys::openat(
                libc::AT_FDCWD,
                dir,
                dir_flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0,
            )
            .map_err(en)?);
            let tfd = Fd(resolve_in(ctx, d.0, rel, dir_flags)?);
            let (mut sbuf, mut tbuf) = ([0u8; 32], [0u8; 32]);
            let source = fd_path(src.0, &mut sbuf).ok_or(libc::ENAMETOOLONG)?;
            let target = fd_path(tfd.0, &mut tbuf).ok_or(libc::ENAMETOOLONG)?;
            sys::mount(Some(source), target, None, ms::BIND, None).map_err(en)
        }
        OpKind::Mkdir { parent, name, mode } => {
            let p = Fd(resolve(ctx, parent, libc::O_PATH | libc::O_DIRECTORY)?);
            ignore_exists(sys::mkdirat(p.0, name, *mode))
        }
        OpKind::CreateFile {
            target,
            parent,
            name,
        } => {
            if let Ok(fd) = resolve(ctx, target, libc::O_PATH) {
                sys::close(fd);
                return Ok(());
            }
            let p = Fd(resolve(ctx, parent, libc::O_PATH | libc::O_DIRECTORY)?);
            match sys::openat(
                p.0,
                name,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            ) {
                Ok(fd) => {
                    sys::close(fd);
                    Ok(())
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
                Err(e) => Err(en(e)),
            }
        }
        OpKind::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => mount_in_root(
            ctx,
            source.as_deref(),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        OpKind::Mknod {
            parent,
            name,
            mode,
            dev,
        } => {
            let p = Fd(resolve(ctx, parent, libc::O_PATH | libc::O_DIRECTORY)?);
            ignore_exists(sys::mknodat(p.0, name, *mode, *dev))
        }
        OpKind::Symlink {
            parent,
            name,
            target,
        } => {
            let p = Fd(resolve(ctx, parent, libc::O_PATH | libc::O_DIRECTORY)?);
            ignore_exists(sys::symlinkat(target, p.0, name))
        }
        OpKind::PivotRoot => {
            match sys::pivot_root(c".", c".") {
                Ok(()) => {
                    // the old root is stacked on the new one: detach it (crun's idiom)
                    sys::umount2(c".", libc::MNT_DETACH).map_err(en)?;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // the device root is the initramfs: no pivot_root from it
                    sys::mount(Some(c"."), c"/", None, ms::MOVE, None).map_err(en)?;
                    sys::chroot(c".").map_err(en)?;
                    report(fds.report, index, libc::EINVAL, KIND_PIVOT_FALLBACK);
                }
                Err(e) => return Err(en(e)),
            }
            if ctx.root >= 0 {
                sys::close(ctx.root);
                ctx.root = -1;
            }
            sys::chdir(c"/").map_err(en)
        }
        OpKind::Chdir(path) => sys::chdir(path).map_err(en),
        OpKind::DropCaps(caps) => {
            for &c in caps {
                match sys::capbset_drop(c) {
                    Ok(()) => {}
                    // a capability this kernel does not know
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    Err(e) => return Err(en(e)),
                }
            }
            Ok(())
        }
    }
}

/// `lxc.no_new_privs`, then the seccomp filter. The kernel takes a filter from a process with
/// no_new_privs or CAP_SYS_ADMIN; LXC relies on the latter (the capabilities dropped from the
/// bounding set are still effective here), and so does this unless it is missing.
fn install_filters(plan: &ChildPlan) -> Result<(), Errno> {
    if plan.no_new_privs {
        sys::filter::set_no_new_privs().map_err(en)?;
    }
    if plan.seccomp.is_empty() {
        return Ok(());
    }
    match sys::filter::seccomp_filter(&plan.seccomp) {
        Err(e) if sys::errno_of(&e) == libc::EACCES && !plan.no_new_privs => {
            sys::filter::set_no_new_privs().map_err(en)?;
            sys::filter::seccomp_filter(&plan.seccomp).map_err(en)
        }
        r => r.map_err(en),
    }
}

/// The container's first process: waits for the parent's go, runs the plan, execs the init.
/// Returns the exit status when it cannot exec (the parent has the reason on the pipe).
pub(crate) fn child_main(plan: &ChildPlan, fds: &ChildFds, use_proc_fd: bool) -> i32 {
    for fd in fds.parent_ends {
        sys::close(fd);
    }
    let mut go = [0u8; 1];
    match sys::read(fds.sync, &mut go) {
        Ok(1) => {}
        // the parent gave up (cgroup or network failed): leave quietly
        _ => return 120,
    }
    let _ = sys::setsid();
    sys::umask(0);
    let mut ctx = Ctx {
        root: -1,
        no_openat2: false,
        use_proc_fd,
    };
    let mut skip_group: Option<u32> = None;
    for (i, op) in plan.ops.iter().enumerate() {
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        if skip_group == Some(op.group) {
            continue;
        }
        if let Err(errno) = run_op(&mut ctx, &op.kind, fds, index) {
            if op.optional {
                report(fds.report, index, errno, KIND_SKIPPED);
                skip_group = Some(op.group);
                continue;
            }
            report(fds.report, index, errno, KIND_FATAL);
            return 121;
        }
    }
    if plan.barrier {
        report(fds.report, stdio_index(plan), 0, KIND_READY);
        match sys::read(fds.sync, &mut go) {
            Ok(1) => {}
            _ => return 120,
        }
    }
    sys::close(fds.sync);
    let out = if plan.console { fds.console } else { fds.null };
    for (from, to) in [(fds.null, 0), (out, 1), (out, 2)] {
        if let Err(e) = sys::dup2(from, to) {
            report(fds.report, stdio_index(plan), en(e), KIND_FATAL);
            return 122;
        }
    }
    sys::reset_signals();
    sys::umask(0o022);
    // whatever PID 1 holds open must not leak into the container
    sys::cloexec_from(3);
    // last, so the filter judges the init and not this setup
    if let Err(e) = install_filters(plan) {
        report(fds.report, filter_index(plan), e, KIND_FATAL);
        return 123;
    }
    let mut errno = libc::ENOENT;
    for path in &plan.exec_paths {
        let e = en(sys::execve(path, &plan.argv, &plan.envp));
        match e {
            // keep searching PATH, as execvp does
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => errno = e,
            _ => {
                errno = e;
                break;
            }
        }
    }
    report(fds.report, exec_index(plan), errno, KIND_FATAL);
    127
}

/// One record from the child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub index: u32,
    pub errno: i32,
    pub kind: u32,
}

fn parse_record(b: &[u8]) -> Option<Record> {
    let w = |r: std::ops::Range<usize>| -> Option<[u8; 4]> { b.get(r)?.try_into().ok() };
    Some(Record {
        index: u32::from_ne_bytes(w(0..4)?),
        errno: i32::from_ne_bytes(w(4..8)?),
        kind: u32::from_ne_bytes(w(8..12)?),
    })
}

/// What the clone produced, before the child is let go.
pub(crate) struct Child {
    pub pid: sys::Pid,
    pub how: CloneHow,
    sync: Option<OwnedFd>,
    report: OwnedFd,
    /// The child waits for a second go after its setup (`ChildPlan::barrier`).
    barrier: bool,
}

#[derive(Debug)]
pub(crate) enum SpawnError {
    /// A syscall of the parent: (step, errno).
    Parent(&'static str, io::Error),
    /// The child reported a fatal record.
    Child(Record, Vec<Record>),
    /// No verdict from the child in time.
    Timeout,
}

/// Creates the pipes and clones the child, which waits for [`Child::release`].
pub(crate) fn clone_child(
    plan: &ChildPlan,
    cgroup: Option<std::os::fd::BorrowedFd<'_>>,
    console: &OwnedFd,
    try_clone3: bool,
) -> Result<Child, SpawnError> {
    let p = |step| move |e| SpawnError::Parent(step, e);
    // numbered 3 or more, so the child's dup2 onto 0, 1, 2 cannot clobber one of them
    let high = |fd: OwnedFd| -> io::Result<OwnedFd> {
        if fd.as_raw_fd() >= 3 {
            Ok(fd)
        } else {
            sys::dup_cloexec_min(fd.as_fd(), 3)
        }
    };
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/null")
        .map_err(p("open /dev/null"))?;
    let null = high(null.into()).map_err(p("dup"))?;
    let console = sys::dup_cloexec_min(console.as_fd(), 3).map_err(p("dup"))?;
    let (sync_r, sync_w) = sys::pipe_cloexec().map_err(p("pipe"))?;
    let (rep_r, rep_w) = sys::pipe_cloexec().map_err(p("pipe"))?;
    let (sync_r, sync_w) = (high(sync_r), high(sync_w));
    let (rep_r, rep_w) = (high(rep_r), high(rep_w));
    let (sync_r, sync_w) = (sync_r.map_err(p("dup"))?, sync_w.map_err(p("dup"))?);
    let (rep_r, rep_w) = (rep_r.map_err(p("dup"))?, rep_w.map_err(p("dup"))?);
    let fds = ChildFds {
        sync: sync_r.as_raw_fd(),
        report: rep_w.as_raw_fd(),
        null: null.as_raw_fd(),
        console: console.as_raw_fd(),
        parent_ends: [sync_w.as_raw_fd(), rep_r.as_raw_fd()],
    };
    // decided before clone: the child must not look it up
    let use_proc_fd = std::path::Path::new("/proc/self/fd").is_dir();
    let (pid, how) = sys::clone_process(plan.clone_flags, cgroup, try_clone3, &mut || {
        child_main(plan, &fds, use_proc_fd)
    })
    .map_err(p("clone"))?;
    // the parent's copies of the child's ends go now, so EOF means "the child is done"
    drop((sync_r, rep_w, null, console));
    Ok(Child {
        pid,
        how,
        sync: Some(sync_w),
        report: rep_r,
        barrier: plan.barrier,
    })
}

impl Child {
    /// Lets the child run its plan, then waits for its verdict: the report pipe closing
    /// without a fatal record (execve succeeded). With a barrier, `at_barrier` runs when the
    /// child's setup is done and the child execs once it returns Ok. Returns the non-fatal
    /// records.
    pub fn release(
        &mut self,
        timeout: Duration,
        at_barrier: &mut dyn FnMut() -> Result<(), SpawnError>,
    ) -> Result<Vec<Record>, SpawnError> {
        let go = |sync: &OwnedFd| {
            sys::write(sync.as_raw_fd(), &[1])
                .map(drop)
                .map_err(|e| SpawnError::Parent("release child", e))
        };
        // with a barrier the pipe stays open for the second go
        if self.barrier {
            if let Some(sync) = &self.sync {
                go(sync)?;
            }
        } else if let Some(sync) = self.sync.take() {
            go(&sync)?;
        }
        let deadline = Instant::now() + timeout;
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 256];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SpawnError::Timeout);
            }
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
            match sys::poll_readable(self.report.as_fd(), ms) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => return Err(SpawnError::Parent("poll", e)),
            }
            match sys::read(self.report.as_raw_fd(), &mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(e) => return Err(SpawnError::Parent("read", e)),
            }
            let ready = buf
                .chunks_exact(RECORD)
                .filter_map(parse_record)
                .any(|r| r.kind == KIND_READY);
            if ready && self.barrier {
                if let Some(sync) = self.sync.take() {
                    at_barrier()?;
                    go(&sync)?;
                }
            }
        }
        let records: Vec<Record> = buf
            .chunks_exact(RECORD)
            .filter_map(parse_record)
            .filter(|r| r.kind != KIND_READY)
            .collect();
        match records.iter().find(|r| r.kind == KIND_FATAL) {
            Some(f) => {
                let f = *f;
                Err(SpawnError::Child(
                    f,
                    records
                        .into_iter()
                        .filter(|r| r.kind != KIND_FATAL)
                        .collect(),
                ))
            }
            None => Ok(records),
        }
    }

    /// Kills and reaps a child that will not become a container.
    pub fn abort(&mut self) {
        self.sync = None;
        let _ = sys::kill(self.pid, libc::SIGKILL);
        let _ = sys::waitpid(self.pid, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_paths_are_formatted_without_allocation() {
        let mut b = [0u8; 32];
        assert_eq!(
            fd_path(7, &mut b).map(|c| c.to_bytes()),
            Some(&b"/proc/self/fd/7"[..])
        );
        let mut b = [0u8; 32];
        assert_eq!(
            fd_path(1234567, &mut b).map(|c| c.to_bytes()),
            Some(&b"/proc/self/fd/1234567"[..])
        );
        let mut b = [0u8; 32];
        assert_eq!(fd_path(-1, &mut b), None);
    }

    #[test]
    fn records_round_trip() {
        let i = 5u32.to_ne_bytes();
        let e = 2i32.to_ne_bytes();
        let k = KIND_FATAL.to_ne_bytes();
        let b: Vec<u8> = [i, e, k].concat();
        assert_eq!(
            parse_record(&b),
            Some(Record {
                index: 5,
                errno: 2,
                kind: KIND_FATAL
            })
        );
        assert_eq!(parse_record(&b[..11]), None);
    }
}
