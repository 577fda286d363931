//! Syscalls of the event loop: signal mask, signalfd, timerfd, eventfd, poll, reaping.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t; invalid signal numbers only make sigaddset fail.
    unsafe {
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
    }
    set
}

/// Blocks `signals` for the calling thread (and threads it creates later), so they are only
/// delivered through a signalfd.
pub fn block_signals(signals: &[i32]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: valid set pointer, null old-set pointer is allowed.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Unblocks every signal: a child must not inherit PID 1's blocked mask into its exec.
pub fn unblock_all_signals() -> io::Result<()> {
    let set = sigset(&[]);
    // SAFETY: valid set pointer (empty set), null old-set pointer.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Runs `f` with every signal blocked in the calling thread, then restores the thread's mask.
/// A thread created inside `f` starts with every signal blocked, whatever its creator had: it
/// must never take a signal meant for PID 1's signalfd (a process-directed SIGCHLD or SIGTERM
/// goes to any thread that does not block it).
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data; sigfillset initialises it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, filled by pthread_sigmask before use.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid set pointers; SIG_SETMASK with a full set cannot fail.
    let r = unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old)
    };
    let out = f();
    if r == 0 {
        // SAFETY: `old` was filled by the successful call above.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    out
}

pub fn signalfd(signals: &[i32]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: -1 asks for a new fd; the set is valid; flags are valid.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal: (signal number, sender pid). `None` when none is pending.
pub fn read_signal(fd: &OwnedFd) -> io::Result<Option<(i32, i32)>> {
    // SAFETY: signalfd_siginfo is plain data.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the buffer is exactly one signalfd_siginfo, writable, of `size` bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            &mut info as *mut _ as *mut libc::c_void,
            size,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if n as usize != size {
        return Ok(None);
    }
    Ok(Some((info.ssi_signo as i32, info.ssi_pid as i32)))
}

pub fn timerfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with valid flags.
    let fd = check(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
        )
    })?;
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arms the timer to fire once at `at_ms` on CLOCK_MONOTONIC; 0 disarms it.
pub fn timerfd_set(fd: &OwnedFd, at_ms: u64) -> io::Result<()> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (at_ms / 1000) as _,
            tv_nsec: ((at_ms % 1000) * 1_000_000) as libc::c_long,
        },
    };
    // SAFETY: valid fd, valid itimerspec, null old value allowed.
    check(unsafe {
        libc::timerfd_settime(
            fd.as_raw_fd(),
            libc::TFD_TIMER_ABSTIME,
            &spec,
            std::ptr::null_mut(),
        )
    })?;
    Ok(())
}

/// Drains a timerfd or eventfd counter (8 bytes); a would-block read is fine.
pub fn drain_counter(fd: &OwnedFd) -> io::Result<u64> {
    let mut v: u64 = 0;
    // SAFETY: 8 writable bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), &mut v as *mut u64 as *mut libc::c_void, 8) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(v)
}

pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with valid flags.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds 1 to an eventfd (wakes the loop); callable from any thread.
pub fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let v: u64 = 1;
    // SAFETY: 8 readable bytes; a bad fd only makes write fail.
    let n = unsafe { libc::write(fd, &v as *const u64 as *const libc::c_void, 8) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // a full counter still wakes the loop
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(())
        } else {
            Err(e)
        };
    }
    Ok(())
}

/// poll(2) over `fds` (fd, events) for at most `timeout_ms` (-1 = forever); returns the
/// revents per entry. EINTR is a normal empty return.
pub fn poll(fds: &[(RawFd, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    // SAFETY: p is a valid array of p.len() pollfd structs.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![0; p.len()]);
        }
        return Err(e);
    }
    Ok(p.iter().map(|x| x.revents).collect())
}

/// Exit of a reaped child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn from_wait(status: i32) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signal(libc::WTERMSIG(status))
        } else {
            ExitStatus::Code(libc::WEXITSTATUS(status))
        }
    }
}

/// `waitpid(-1, WNOHANG)`: one exited child with its raw wait status (see
/// [`ExitStatus::from_wait`]), or `None` when no child has exited (or there is no child at
/// all). PID 1 calls it until `None` on every SIGCHLD, so orphans never linger.
pub fn reap_any() -> io::Result<Option<(i32, i32)>> {
    let mut status = 0;
    // SAFETY: valid status pointer.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if pid < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ECHILD) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some((pid, status)))
}

/// CLOCK_MONOTONIC in milliseconds (the timerfd's clock).
pub fn monotonic_ms() -> u64 {
    monotonic_us() / 1000
}

/// CLOCK_MONOTONIC in microseconds.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// Makes this process a child subreaper, so orphans of a PID 1 that is not pid 1 (standalone
/// tests as a plain process) are still re-parented to it and reaped.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })?;
    Ok(())
}

/// Sends `sig` to the calling thread.
pub fn raise(sig: i32) -> io::Result<()> {
    // SAFETY: raise takes a plain integer.
    check(unsafe { libc::raise(sig) })?;
    Ok(())
}
