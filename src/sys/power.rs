//! Ending the device: sync and reboot(2). reboot(2) is only ever called by PID 1 (rule 5):
//! in a PID namespace it ends the namespace (the parent sees SIGHUP or SIGINT), on a real
//! device it restarts the machine.
use std::io;

pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    Reboot,
    PowerOff,
}

impl Power {
    /// The exit status a non-PID-1 process ends with (standalone mode: how a harness tells a
    /// reboot from a power off).
    pub fn exit_code(self) -> i32 {
        match self {
            Power::Reboot => 129,
            Power::PowerOff => 130,
        }
    }
}

/// reboot(2) when this process is PID 1; otherwise `Ok(false)` and nothing happens, so the
/// caller exits with [`Power::exit_code`] instead.
pub fn reboot_if_pid1(p: Power) -> io::Result<bool> {
    if super::event::getpid() != 1 {
        return Ok(false);
    }
    let cmd = match p {
        Power::Reboot => libc::RB_AUTOBOOT,
        Power::PowerOff => libc::RB_POWER_OFF,
    };
    // SAFETY: getpid() == 1 was checked just above: this only ends our own PID namespace or,
    // on a device, restarts it -- never the machine running the tests.
    if unsafe { libc::reboot(cmd) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// finit_module(2) with no parameters.
pub fn finit_module(f: &std::fs::File) -> io::Result<()> {
    finit_module_params(f, "")
}

/// delete_module(2) of a module by name (O_NONBLOCK, as `modprobe -r`).
pub fn delete_module(name: &str) -> io::Result<()> {
    let name =
        std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a NUL-terminated module name that outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// finit_module(2) with a module parameter string (`name=value ...`).
pub fn finit_module_params(f: &std::fs::File, params: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let params =
        std::ffi::CString::new(params).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a valid open fd, a NUL-terminated parameter string, flags 0.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
