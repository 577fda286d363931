//! The only home of `unsafe`: one small function per syscall, each returning `io::Result`
//! (`-1` becomes `io::Error::last_os_error()`), each unsafe block with a `// SAFETY:` line.
pub mod event;
pub mod logsys;
pub mod netlink;
pub mod power;
