//! The raw part of rtnetlink: the socket, one datagram out, one datagram in, and joining a
//! network namespace on the calling thread. Message building and parsing live in safe code
//! (`container::net`).
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Replies from rtnetlink are produced while the request is sent (or, for dumps, while the
/// socket is read), so a reply never takes long; the timeout only guarantees PID 1 cannot hang
/// on a bookkeeping bug.
const RECV_TIMEOUT_SECS: i32 = 5;

/// A close-on-exec NETLINK_ROUTE socket in the calling thread's network namespace.
pub fn open_route() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) with constant arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval {
        tv_sec: RECV_TIMEOUT_SECS as _,
        tv_usec: 0,
    };
    // SAFETY: `tv` is a valid timeval that outlives the call; the length passed is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn kernel_addr() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value (nl_pid 0 = the kernel).
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    sa
}

/// Sends one whole message to the kernel.
pub fn send(fd: BorrowedFd, msg: &[u8]) -> io::Result<()> {
    let sa = kernel_addr();
    loop {
        // SAFETY: `msg` and `sa` are valid for the lengths passed and outlive the call.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n as usize != msg.len() {
            return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
        }
        return Ok(());
    }
}

/// Receives one datagram into `buf`. Returns the datagram's full length (MSG_TRUNC: it may
/// exceed `buf.len()`, which the caller must treat as an error) and the sender's port id
/// (0 = the kernel).
pub fn recv(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<(usize, u32)> {
    loop {
        let mut sa = kernel_addr();
        let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: `buf`, `sa` and `len` are valid for writes of the sizes passed and outlive
        // the call; the kernel writes at most `buf.len()` bytes even with MSG_TRUNC.
        let n = unsafe {
            libc::recvfrom(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&mut sa as *mut libc::sockaddr_nl).cast(),
                &mut len,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok((n as usize, sa.nl_pid));
    }
}

/// Moves the calling thread (only it: namespace membership is per thread) into the network
/// namespace `ns` (an open /proc/PID/ns/net).
pub fn setns_net(ns: BorrowedFd) -> io::Result<()> {
    // SAFETY: setns(2) on a borrowed, open fd; it changes only the calling thread's namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
