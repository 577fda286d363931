//! What the kernel tells about the host for device-meta (upstream's `pantavisor.uname`,
//! `sysinfo`, `interfaces`): one small fn per call, each cheap enough for the loop.
use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;

/// `uname(2)`: sysname, release, version, nodename, machine.
pub struct Uname {
    pub sysname: String,
    pub release: String,
    pub version: String,
    pub nodename: String,
    pub machine: String,
}

fn field(f: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = f
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn uname() -> io::Result<Uname> {
    let mut u = MaybeUninit::<libc::utsname>::uninit();
    // SAFETY: `u` is writable memory of the size of `struct utsname`, alive for the call.
    if unsafe { libc::uname(u.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: uname returned 0, so the kernel filled the whole struct.
    let u = unsafe { u.assume_init() };
    Ok(Uname {
        sysname: field(&u.sysname),
        release: field(&u.release),
        version: field(&u.version),
        nodename: field(&u.nodename),
        machine: field(&u.machine),
    })
}

/// `sysinfo(2)`, its fields widened to u64 in upstream's order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysInfo {
    pub uptime: i64,
    pub loads: [u64; 3],
    pub totalram: u64,
    pub freeram: u64,
    pub sharedram: u64,
    pub bufferram: u64,
    pub totalswap: u64,
    pub freeswap: u64,
    pub procs: u64,
    pub totalhigh: u64,
    pub freehigh: u64,
    pub mem_unit: u64,
}

// The field types differ between targets, so a conversion useless on one is needed on another.
#[allow(clippy::useless_conversion)]
pub fn sysinfo() -> io::Result<SysInfo> {
    let mut s = MaybeUninit::<libc::sysinfo>::uninit();
    // SAFETY: `s` is writable memory of the size of `struct sysinfo`, alive for the call.
    if unsafe { libc::sysinfo(s.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sysinfo returned 0, so the kernel filled the whole struct.
    let s = unsafe { s.assume_init() };
    let w = |v| u64::try_from(v).unwrap_or(0);
    Ok(SysInfo {
        uptime: i64::try_from(s.uptime).unwrap_or(0),
        loads: [w(s.loads[0]), w(s.loads[1]), w(s.loads[2])],
        totalram: w(s.totalram),
        freeram: w(s.freeram),
        sharedram: w(s.sharedram),
        bufferram: w(s.bufferram),
        totalswap: w(s.totalswap),
        freeswap: w(s.freeswap),
        procs: u64::from(s.procs),
        totalhigh: w(s.totalhigh),
        freehigh: w(s.freehigh),
        mem_unit: u64::from(s.mem_unit),
    })
}

/// One address of one interface: (interface, family `mac`/`ipv4`/`ipv6`, address text).
pub type IfAddr = (String, &'static str, String);

/// `getifaddrs(3)`: every interface address; MACs only for 6-byte, non-zero hardware
/// addresses (as upstream, which skips loopback's).
pub fn ifaddrs() -> io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; the list is freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr is non-null and at least a `sockaddr`.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        let entry = match family {
            libc::AF_PACKET => {
                // SAFETY: an AF_PACKET address is a `sockaddr_ll`.
                let ll = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_ll) };
                let mac = ll.sll_addr.get(..6).unwrap_or(&[]);
                if ll.sll_halen != 6 || mac.iter().all(|&b| b == 0) {
                    continue;
                }
                let text: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
                ("mac", text.join(":"))
            }
            libc::AF_INET => {
                // SAFETY: an AF_INET address is a `sockaddr_in`.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                ("ipv4", ip.to_string())
            }
            libc::AF_INET6 => {
                // SAFETY: an AF_INET6 address is a `sockaddr_in6`.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                ("ipv6", ip.to_string())
            }
            _ => continue,
        };
        out.push((name, entry.0, entry.1));
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}
