//! Container networking over rtnetlink, by hand: the few messages Pantavisor needs (bridge,
//! veth pair, moving an interface, IPv4 address, route) built with a tiny attribute writer, and
//! strict parsing of the kernel's replies. The raw socket is in `sys::netlink`.
//!
//! Work "inside" a container's network namespace runs on a short-lived thread that joins it
//! (`setns` changes only the calling thread), so PID 1's main thread never changes namespace.
//! Every request asks for an ACK and is matched by sequence number; every length from the
//! kernel is checked before use. IPv4 only.
//!
//! A veth pair is made in one RTM_NEWLINK: the host end `veth<pid>` already enslaved to the
//! bridge and up, the peer created directly in the container's namespace (IFLA_NET_NS_FD)
//! under its final name, so it never passes through the host namespace, where a name such as
//! `eth0` is usually taken. The namespace is named by an fd opened once from /proc/PID/ns/net,
//! the same one the inside thread joins.
use crate::sys::netlink as nl;
use std::fmt;
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// What the LXC config (`lxc.net.0.*`) asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetPlan {
    /// `none`: the container shares the host namespace; nothing to do.
    Host,
    /// `empty`: a new namespace with only `lo`, brought up.
    Empty,
    /// `veth`: a pair whose host end joins `bridge`; the other end becomes `name_inside`.
    Veth {
        bridge: String,
        ipv4: Option<(Ipv4Addr, u8)>,
        gateway: Option<Ipv4Addr>,
        /// `lxc.net.0.flags = up`
        up: bool,
        name_inside: String,
        hwaddr: Option<[u8; 6]>,
    },
    /// `phys`: the host interface `link` moves into the container (optionally renamed), up.
    Phys {
        link: String,
        name_inside: Option<String>,
    },
}

/// What `detach` needs after the container died.
#[derive(Debug)]
pub struct NetHandle(Kept);

#[derive(Debug)]
enum Kept {
    /// The host end of the pair, by index: an index is not reused soon, a `veth<pid>` name
    /// could be once the pid is.
    Veth { host: String, index: u32 },
    /// The container's namespace is held open so the interface can be given back under its
    /// own name (see `detach`); `index` is its index inside.
    Phys {
        netns: Netns,
        index: u32,
        link: String,
    },
}

impl NetHandle {
    /// The host-side interface name (veth) or the host interface lent to the container (phys).
    pub fn host_ifname(&self) -> &str {
        match &self.0 {
            Kept::Veth { host, .. } => host,
            Kept::Phys { link, .. } => link,
        }
    }
}

/// A failed network operation: `op` on `object` failed with `errno`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetError {
    pub op: &'static str,
    pub object: String,
    pub errno: i32,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = std::io::Error::from_raw_os_error(self.errno);
        write!(f, "netlink {} {}: {e}", self.op, self.object)
    }
}

impl std::error::Error for NetError {}

fn fail(op: &'static str, object: &str, errno: i32) -> NetError {
    NetError {
        op,
        object: object.to_string(),
        errno,
    }
}

fn io_fail(op: &'static str, object: &str, e: std::io::Error) -> NetError {
    fail(op, object, e.raw_os_error().unwrap_or(libc::EIO))
}

/// One link of an `interfaces`-style dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    /// IFLA_MASTER: the index of the bridge it is attached to.
    pub master: Option<u32>,
    /// IFLA_ADDRESS when it is a MAC address.
    pub hwaddr: Option<[u8; 6]>,
}

/// One IPv4 route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
}

// ---- the public operations -------------------------------------------------------------

/// Creates the bridge `name` if missing (an existing interface of another kind is an error),
/// gives it `addr/prefix` (kept if already there) and brings it up. Idempotent.
pub fn ensure_bridge(name: &str, addr: Ipv4Addr, prefix: u8) -> Result<(), NetError> {
    check_name(name)?;
    let object = format!("{addr}/{prefix} on {name}");
    if prefix > 32 {
        return Err(fail("add address", &object, libc::EINVAL));
    }
    let mut s = Socket::open()?;
    s.ack(&mut newlink_bridge(name), "create bridge", name)?;
    let index = s.index(name)?;
    s.ack(&mut newaddr(index, addr, prefix), "add address", &object)
}

/// Sets up the network of a container just cloned with CLONE_NEWNET whose first process
/// `child_pid` waits for it. `Host`/`Empty` return no handle; `Veth`/`Phys` one for `detach`.
/// On error nothing is left behind on the host side.
pub fn attach(
    plan: &NetPlan,
    container: &str,
    child_pid: u32,
) -> Result<Option<NetHandle>, NetError> {
    match plan {
        NetPlan::Host => Ok(None),
        NetPlan::Empty => {
            let ns = Netns::of(child_pid)?;
            ns.run(&mut |s| s.ack(&mut setlink(0, Some("lo"), true, None), "set up", "lo"))?;
            Ok(None)
        }
        NetPlan::Veth {
            bridge,
            ipv4,
            gateway,
            up,
            name_inside,
            hwaddr,
        } => {
            check_name(bridge)?;
            check_name(name_inside)?;
            let ns = Netns::of(child_pid)?;
            let mut s = Socket::open()?;
            let master = s.index(bridge)?;
            // veth + pid: at most 11 characters, unique among live containers. The peer is
            // created directly inside the container under its final name, so it never
            // clashes with a host interface (the host has its own eth0).
            let host = format!("veth{child_pid}");
            let object = format!("{host} (peer {name_inside} of {container}, pid {child_pid})");
            let mut m = newlink_veth(&host, master, name_inside, ns.fd(), *hwaddr);
            s.ack(&mut m, "create veth", &object)?;
            let index = match s.index(&host) {
                Ok(i) => i,
                Err(e) => {
                    let _ = s.ack(&mut dellink(0, Some(&host)), "delete link", &host);
                    return Err(e);
                }
            };
            let inside = ns.run(&mut |s| veth_inside(s, name_inside, *ipv4, *gateway, *up));
            if let Err(e) = inside {
                // deleting one end deletes the pair
                let _ = s.ack(&mut dellink(index, None), "delete link", &host);
                return Err(e);
            }
            Ok(Some(NetHandle(Kept::Veth { host, index })))
        }
        NetPlan::Phys { link, name_inside } => {
            check_name(link)?;
            if let Some(n) = name_inside {
                check_name(n)?;
            }
            let ns = Netns::of(child_pid)?;
            let mut s = Socket::open()?;
            let index = s.index(link)?;
            let object = format!("{link} to {container} (pid {child_pid})");
            s.ack(
                &mut setlink(index, None, false, Some(ns.fd())),
                "move link",
                &object,
            )?;
            // the index usually survives the move, but the kernel may renumber on a clash
            let mut index = 0;
            let inside = ns.run(&mut |s| {
                s.ack(&mut setlink(0, Some("lo"), true, None), "set up", "lo")?;
                index = s.index(link)?;
                let rename = name_inside.as_deref().filter(|n| *n != link);
                let m = &mut setlink(index, rename, true, None);
                s.ack(m, "rename and set up", rename.unwrap_or(link))
            });
            match inside {
                Ok(()) => Ok(Some(NetHandle(Kept::Phys {
                    netns: ns,
                    index,
                    link: link.clone(),
                }))),
                Err(e) => {
                    let _ = give_back(&ns, link);
                    Err(e)
                }
            }
        }
    }
}

/// Undoes `attach` after the container died.
///
/// Veth: the pair normally vanishes with the container's namespace (asynchronously, so it may
/// still be there); the host end is deleted if present.
///
/// Phys: when a namespace dies the kernel sends a real device back to the *initial* namespace
/// (not necessarily ours) under its inside name, or `dev<N>` on a clash, and destroys a
/// virtual one (veth, dummy). To give it back to us under its own name, the handle holds the
/// namespace open and this moves the interface back (down) before releasing it. Dropping a
/// handle without `detach` leaves it to the kernel.
pub fn detach(handle: NetHandle) -> Result<(), NetError> {
    match handle.0 {
        Kept::Veth { host, index } => {
            match Socket::open()?.ack(&mut dellink(index, None), "delete link", &host) {
                Err(e) if e.errno == libc::ENODEV => Ok(()),
                r => r,
            }
        }
        Kept::Phys { netns, index, link } => {
            let home = Netns::open("/proc/thread-self/ns/net".to_string())?;
            let m = &mut setlink(index, Some(&link), false, Some(home.fd()));
            match netns.run(&mut |s| s.ack(m, "move link back", &link)) {
                Err(e) if e.errno == libc::ENODEV => Ok(()),
                r => r,
            }
        }
    }
}

/// The links of the calling thread's namespace: (index, name, up).
pub fn interfaces() -> Result<Vec<(u32, String, bool)>, NetError> {
    let links = Socket::open()?.links()?;
    Ok(links.into_iter().map(|l| (l.index, l.name, l.up)).collect())
}

/// One link of the calling thread's namespace, by name.
pub fn link(name: &str) -> Result<Link, NetError> {
    check_name(name)?;
    Socket::open()?.link(name)
}

/// The IPv4 addresses of `ifname` in the calling thread's namespace.
pub fn addresses(ifname: &str) -> Result<Vec<(Ipv4Addr, u8)>, NetError> {
    check_name(ifname)?;
    let mut s = Socket::open()?;
    let index = s.index(ifname)?;
    let mut out = Vec::new();
    let mut m = Msg::new(RTM_GETADDR, NLM_F_DUMP, &ifaddrmsg(0, 0));
    s.call(&mut m, "dump addresses", ifname, &mut |ty, p| {
        let Some(found) = parse_addr(p) else {
            return ty != RTM_NEWADDR;
        };
        if let Some((i, a, len)) = found.filter(|_| ty == RTM_NEWADDR) {
            if i == index {
                out.push((a, len));
            }
        }
        true
    })?;
    Ok(out)
}

/// The IPv4 routes of the main table of the calling thread's namespace.
pub fn routes() -> Result<Vec<Route>, NetError> {
    let mut s = Socket::open()?;
    let mut out = Vec::new();
    let mut fixed = [0; RTMSG_LEN];
    fixed[0] = AF_INET; // a dump looks at the family only
    let mut m = Msg::new(RTM_GETROUTE, NLM_F_DUMP, &fixed);
    s.call(&mut m, "dump routes", "ipv4", &mut |ty, p| {
        let Some(found) = parse_route(p) else {
            return ty != RTM_NEWROUTE;
        };
        out.extend(found.filter(|_| ty == RTM_NEWROUTE));
        true
    })?;
    Ok(out)
}

/// Runs `f` on a short-lived thread inside the network namespace of `pid` (sockets it creates
/// stay in that namespace). For tests and diagnostics.
pub fn in_netns<T: Send>(pid: u32, f: impl FnOnce() -> T + Send) -> Result<T, NetError> {
    let (mut f, mut out) = (Some(f), None);
    Netns::of(pid)?.run(&mut |_| {
        out = f.take().map(|f| f());
        Ok(())
    })?;
    out.ok_or_else(|| fail("run in netns of", &pid.to_string(), libc::EIO))
}

/// Entry point for a fuzz target: `data` as a kernel reply datagram, every parser over it.
/// Must return normally on any input.
pub fn fuzz_reply(data: &[u8]) {
    let seq = ne_u32(data, 8).unwrap_or(0);
    let _ = walk(data, seq, &mut |_, p| {
        let _ = (parse_link(p), parse_addr(p), parse_route(p));
        true
    });
}

// ---- inside work ----------------------------------------------------------------------------

fn veth_inside(
    s: &mut Socket,
    name: &str,
    ipv4: Option<(Ipv4Addr, u8)>,
    gateway: Option<Ipv4Addr>,
    up: bool,
) -> Result<(), NetError> {
    s.ack(&mut setlink(0, Some("lo"), true, None), "set up", "lo")?;
    let index = s.index(name)?;
    if let Some((a, len)) = ipv4 {
        let object = format!("{a}/{len} on {name}");
        if len > 32 {
            return Err(fail("add address", &object, libc::EINVAL));
        }
        s.ack(&mut newaddr(index, a, len), "add address", &object)?;
    }
    if up {
        s.ack(&mut setlink(index, None, true, None), "set up", name)?;
    }
    if let Some(gw) = gateway {
        // like LXC: a gateway outside the subnet gets a link route first
        if !ipv4.is_some_and(|(a, len)| same_subnet(a, gw, len)) {
            let object = format!("{gw}/32 dev {name}");
            let m = &mut newroute(gw, 32, None, index, RT_SCOPE_LINK);
            s.ack(m, "add route", &object)?;
        }
        let object = format!("default via {gw} dev {name}");
        let m = &mut newroute(Ipv4Addr::UNSPECIFIED, 0, Some(gw), index, RT_SCOPE_UNIVERSE);
        s.ack(m, "add route", &object)?;
    }
    Ok(())
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0);
    u32::from(a) & mask == u32::from(b) & mask
}

/// Moves phys interface `link` (found by name inside) back to the calling thread's namespace.
fn give_back(ns: &Netns, link: &str) -> Result<(), NetError> {
    let home = Netns::open("/proc/thread-self/ns/net".to_string())?;
    ns.run(&mut |s| {
        let index = s.index(link)?;
        s.ack(
            &mut setlink(index, Some(link), false, Some(home.fd())),
            "move link back",
            link,
        )
    })
}

fn check_name(name: &str) -> Result<(), NetError> {
    // IFNAMSIZ is 16 with the NUL, and a NUL inside would silently cut the name; the kernel's
    // dev_valid_name also refuses '/', ':' and white space
    let bad = |b: u8| b == 0 || b == b'/' || b == b':' || b.is_ascii_whitespace();
    if name.is_empty() || name.len() > 15 || name.bytes().any(bad) {
        return Err(fail("check interface name", name, libc::EINVAL));
    }
    Ok(())
}

/// An open network namespace, named for errors.
#[derive(Debug)]
struct Netns {
    file: File,
    path: String,
}

impl Netns {
    fn of(pid: u32) -> Result<Netns, NetError> {
        Netns::open(format!("/proc/{pid}/ns/net"))
    }

    fn open(path: String) -> Result<Netns, NetError> {
        match File::open(&path) {
            Ok(file) => Ok(Netns { file, path }),
            Err(e) => Err(io_fail("open netns", &path, e)),
        }
    }

    fn fd(&self) -> u32 {
        self.file.as_raw_fd() as u32
    }

    /// Runs `f` with a netlink socket of this namespace, on a thread that joined it. Not
    /// generic, so the thread machinery is compiled once.
    fn run(
        &self,
        f: &mut (dyn FnMut(&mut Socket) -> Result<(), NetError> + Send),
    ) -> Result<(), NetError> {
        std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("pv-netns".into())
                .spawn_scoped(scope, || {
                    nl::setns_net(self.file.as_fd())
                        .map_err(|e| io_fail("enter netns", &self.path, e))?;
                    f(&mut Socket::open()?)
                });
            match worker {
                Ok(w) => w
                    .join()
                    .unwrap_or_else(|_| Err(fail("run in netns", &self.path, libc::EIO))),
                Err(e) => Err(io_fail("spawn thread for", &self.path, e)),
            }
        })
    }
}

// ---- the socket and the reply loop ----------------------------------------------------------

/// A netlink reply datagram is at most 32 KiB unless a dump needs more (MSG_TRUNC tells).
const RECV_BUF: usize = 32 * 1024;

struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    fn open() -> Result<Socket, NetError> {
        let fd = nl::open_route().map_err(|e| io_fail("open socket", "NETLINK_ROUTE", e))?;
        Ok(Socket {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUF],
        })
    }

    /// Sends `m` and reads replies until its ACK, error or end of dump; data messages of this
    /// request go to `on_data`, which returns false on a malformed one.
    fn call(
        &mut self,
        m: &mut Msg,
        op: &'static str,
        object: &str,
        on_data: &mut dyn FnMut(u16, &[u8]) -> bool,
    ) -> Result<(), NetError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        nl::send(self.fd.as_fd(), m.finish(seq)).map_err(|e| io_fail(op, object, e))?;
        loop {
            let (n, from) =
                nl::recv(self.fd.as_fd(), &mut self.buf).map_err(|e| io_fail(op, object, e))?;
            if from != 0 {
                continue; // not from the kernel
            }
            let Some(datagram) = self.buf.get(..n) else {
                return Err(fail(op, object, libc::EMSGSIZE));
            };
            match walk(datagram, seq, on_data) {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(errno) => return Err(fail(op, object, errno)),
            }
        }
    }

    fn ack(&mut self, m: &mut Msg, op: &'static str, object: &str) -> Result<(), NetError> {
        self.call(m, op, object, &mut |_, _| true)
    }

    fn link(&mut self, name: &str) -> Result<Link, NetError> {
        let mut found = None;
        let mut m = Msg::new(RTM_GETLINK, 0, &ifinfomsg(0, 0, 0));
        m.attr(IFLA_IFNAME, &cstr(name));
        self.call(&mut m, "find link", name, &mut |ty, p| {
            ty != RTM_NEWLINK || parse_link(p).map(|l| found = Some(l)).is_some()
        })?;
        found.ok_or_else(|| fail("find link", name, libc::EPROTO))
    }

    fn index(&mut self, name: &str) -> Result<u32, NetError> {
        Ok(self.link(name)?.index)
    }

    fn links(&mut self) -> Result<Vec<Link>, NetError> {
        let mut out = Vec::new();
        let mut m = Msg::new(RTM_GETLINK, NLM_F_DUMP, &ifinfomsg(0, 0, 0));
        self.call(&mut m, "dump links", "all", &mut |ty, p| {
            ty != RTM_NEWLINK || parse_link(p).map(|l| out.push(l)).is_some()
        })?;
        Ok(out)
    }
}

/// Walks the messages of one datagram. Ok(true): the request is answered (ACK or end of dump);
/// Ok(false): more datagrams follow; Err(errno): the kernel refused, or the datagram is
/// malformed (EPROTO). Messages of other sequence numbers (stale replies) are skipped.
fn walk(mut d: &[u8], seq: u32, on_data: &mut dyn FnMut(u16, &[u8]) -> bool) -> Result<bool, i32> {
    while !d.is_empty() {
        let len = ne_u32(d, 0).ok_or(libc::EPROTO)? as usize;
        let ty = ne_u16(d, 4).ok_or(libc::EPROTO)?;
        let mseq = ne_u32(d, 8).ok_or(libc::EPROTO)?;
        if len < NLMSG_HDRLEN {
            return Err(libc::EPROTO);
        }
        let payload = d.get(NLMSG_HDRLEN..len).ok_or(libc::EPROTO)?;
        d = d.get(align4(len)..).unwrap_or(&[]);
        if mseq != seq {
            continue;
        }
        let code = ne_u32(payload, 0).map(|c| c as i32);
        match ty {
            NLMSG_NOOP => {}
            // nlmsgerr: the error, then (at least) the header of the request
            NLMSG_ERROR => {
                return match code {
                    Some(0) if payload.len() >= 4 + NLMSG_HDRLEN => Ok(true),
                    Some(c) if c < 0 && payload.len() >= 4 + NLMSG_HDRLEN => {
                        Err(c.checked_neg().unwrap_or(libc::EPROTO))
                    }
                    _ => Err(libc::EPROTO),
                }
            }
            NLMSG_DONE => {
                return match code.unwrap_or(0) {
                    c if c < 0 => Err(c.checked_neg().unwrap_or(libc::EPROTO)),
                    _ => Ok(true),
                }
            }
            t if t < NLMSG_MIN_TYPE => return Err(libc::EPROTO),
            t => {
                if !on_data(t, payload) {
                    return Err(libc::EPROTO);
                }
            }
        }
    }
    Ok(false)
}

// ---- parsing --------------------------------------------------------------------------------

fn ne_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn ip(b: &[u8]) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// The attributes of `b` as (type without the NESTED/BYTEORDER bits, payload); None if one is
/// malformed.
fn attrs(mut b: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = usize::from(ne_u16(b, 0)?);
        let ty = ne_u16(b, 2)? & NLA_TYPE_MASK;
        out.push((ty, b.get(4..len)?));
        b = b.get(align4(len)..).unwrap_or(&[]);
    }
    Some(out)
}

/// RTM_NEWLINK payload: ifinfomsg, then attributes. None if malformed or nameless.
fn parse_link(p: &[u8]) -> Option<Link> {
    let index = ne_u32(p, 4)?;
    let flags = ne_u32(p, 8)?;
    let (mut name, mut master, mut hwaddr) = (None, None, None);
    for (ty, v) in attrs(p.get(IFINFOMSG_LEN..)?)? {
        match ty {
            IFLA_IFNAME => {
                let n = v.split(|&c| c == 0).next().unwrap_or(v);
                name = Some(String::from_utf8_lossy(n).into_owned());
            }
            IFLA_MASTER => master = Some(ne_u32(v, 0)?),
            IFLA_ADDRESS => hwaddr = v.try_into().ok(),
            _ => {}
        }
    }
    Some(Link {
        index,
        name: name?,
        up: flags & IFF_UP != 0,
        master,
        hwaddr,
    })
}

/// RTM_NEWADDR payload: Some(None) for another family, None if malformed.
fn parse_addr(p: &[u8]) -> Option<Option<(u32, Ipv4Addr, u8)>> {
    let family = *p.first()?;
    let prefix = *p.get(1)?;
    let index = ne_u32(p, 4)?;
    let list = attrs(p.get(IFADDRMSG_LEN..)?)?;
    if family != AF_INET {
        return Some(None);
    }
    let find = |t| list.iter().find(|(ty, _)| *ty == t).map(|(_, v)| ip(v));
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS the peer's on point-to-point links
    let addr = find(IFA_LOCAL).or_else(|| find(IFA_ADDRESS))??;
    Some(Some((index, addr, prefix)))
}

/// RTM_NEWROUTE payload: Some(None) for another family or table, None if malformed.
fn parse_route(p: &[u8]) -> Option<Option<Route>> {
    let family = *p.first()?;
    let prefix = *p.get(1)?;
    let mut table = u32::from(*p.get(4)?);
    let mut r = Route {
        dst: Ipv4Addr::UNSPECIFIED,
        prefix,
        gateway: None,
        oif: None,
    };
    for (ty, v) in attrs(p.get(RTMSG_LEN..)?)? {
        match ty {
            RTA_DST => r.dst = ip(v)?,
            RTA_GATEWAY => r.gateway = Some(ip(v)?),
            RTA_OIF => r.oif = Some(ne_u32(v, 0)?),
            RTA_TABLE => table = ne_u32(v, 0)?,
            _ => {}
        }
    }
    Some((family == AF_INET && table == RT_TABLE_MAIN).then_some(r))
}

// ---- building -------------------------------------------------------------------------------

/// A request under construction: header, fixed part, attributes (NLA_ALIGN 4).
struct Msg(Vec<u8>);

impl Msg {
    fn new(ty: u16, flags: u16, fixed: &[u8]) -> Msg {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        b.extend_from_slice(&[0; 8]); // sequence (set by finish), port id 0
        b.extend_from_slice(fixed);
        Msg(b)
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let at = self.begin(ty);
        self.0.extend_from_slice(data);
        self.end(at);
    }

    /// Starts an attribute whose payload follows (nested attributes or raw bytes).
    fn begin(&mut self, ty: u16) -> usize {
        let at = self.0.len();
        self.0.extend_from_slice(&[0, 0]);
        self.0.extend_from_slice(&ty.to_ne_bytes());
        at
    }

    /// Sets the length of the attribute started at `at` (unpadded), then pads.
    fn end(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self.0.resize(align4(self.0.len()), 0);
    }

    fn finish(&mut self, seq: u32) -> &[u8] {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.0
    }
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut b = [0; IFINFOMSG_LEN]; // family AF_UNSPEC, type 0
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

fn ifaddrmsg(prefix: u8, index: u32) -> [u8; IFADDRMSG_LEN] {
    let mut b = [AF_INET, prefix, 0, RT_SCOPE_UNIVERSE, 0, 0, 0, 0];
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b
}

/// rtmsg of a new route: family, dst_len, src_len, tos, table, protocol, scope, type, flags.
fn rtmsg(dst_len: u8, scope: u8) -> [u8; RTMSG_LEN] {
    [
        AF_INET,
        dst_len,
        0,
        0,
        RT_TABLE_MAIN as u8,
        RTPROT_BOOT,
        scope,
        RTN_UNICAST,
        0,
        0,
        0,
        0,
    ]
}

/// RTM_NEWLINK: bridge `name`, up; with NLM_F_CREATE but not EXCL an existing bridge is kept,
/// and the (empty) IFLA_INFO_DATA makes the kernel refuse an existing non-bridge.
fn newlink_bridge(name: &str) -> Msg {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_CREATE, &ifinfomsg(0, IFF_UP, IFF_UP));
    m.attr(IFLA_IFNAME, &cstr(name));
    let info = m.begin(IFLA_LINKINFO);
    m.attr(IFLA_INFO_KIND, b"bridge");
    let data = m.begin(IFLA_INFO_DATA);
    m.end(data);
    m.end(info);
    m
}

/// RTM_NEWLINK: veth pair `host` (up, on bridge `master`) + `peer` created in namespace
/// `peer_ns` (an fd) with an optional MAC address.
fn newlink_veth(host: &str, master: u32, peer: &str, peer_ns: u32, hw: Option<[u8; 6]>) -> Msg {
    let flags = NLM_F_CREATE | NLM_F_EXCL;
    let mut m = Msg::new(RTM_NEWLINK, flags, &ifinfomsg(0, IFF_UP, IFF_UP));
    m.attr(IFLA_IFNAME, &cstr(host));
    m.attr(IFLA_MASTER, &master.to_ne_bytes());
    let info = m.begin(IFLA_LINKINFO);
    m.attr(IFLA_INFO_KIND, b"veth");
    let data = m.begin(IFLA_INFO_DATA);
    let p = m.begin(VETH_INFO_PEER);
    m.0.extend_from_slice(&ifinfomsg(0, 0, 0));
    m.attr(IFLA_IFNAME, &cstr(peer));
    m.attr(IFLA_NET_NS_FD, &peer_ns.to_ne_bytes());
    if let Some(hw) = hw {
        m.attr(IFLA_ADDRESS, &hw);
    }
    m.end(p);
    m.end(data);
    m.end(info);
    m
}

/// RTM_NEWLINK on an existing link: by `index`, or by `name` when index is 0 (then `name` is
/// the key, else the new name); optionally up and/or moved to namespace fd `netns`.
fn setlink(index: u32, name: Option<&str>, up: bool, netns: Option<u32>) -> Msg {
    let f = if up { IFF_UP } else { 0 };
    let mut m = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(index, f, f));
    if let Some(n) = name {
        m.attr(IFLA_IFNAME, &cstr(n));
    }
    if let Some(fd) = netns {
        m.attr(IFLA_NET_NS_FD, &fd.to_ne_bytes());
    }
    m
}

fn dellink(index: u32, name: Option<&str>) -> Msg {
    let mut m = Msg::new(RTM_DELLINK, 0, &ifinfomsg(index, 0, 0));
    if let Some(n) = name {
        m.attr(IFLA_IFNAME, &cstr(n));
    }
    m
}

/// RTM_NEWADDR `addr/prefix` on `index` (replacing the same address: idempotent), with the
/// broadcast address LXC would set.
fn newaddr(index: u32, addr: Ipv4Addr, prefix: u8) -> Msg {
    let flags = NLM_F_CREATE | NLM_F_REPLACE;
    let mut m = Msg::new(RTM_NEWADDR, flags, &ifaddrmsg(prefix, index));
    m.attr(IFA_LOCAL, &addr.octets());
    m.attr(IFA_ADDRESS, &addr.octets());
    if prefix < 31 {
        let host = u32::MAX >> prefix;
        m.attr(IFA_BROADCAST, &(u32::from(addr) | host).to_be_bytes());
    }
    m
}

/// RTM_NEWROUTE `dst/dst_len` [via `gw`] dev `oif` in the main table.
fn newroute(dst: Ipv4Addr, dst_len: u8, gw: Option<Ipv4Addr>, oif: u32, scope: u8) -> Msg {
    let flags = NLM_F_CREATE | NLM_F_EXCL;
    let mut m = Msg::new(RTM_NEWROUTE, flags, &rtmsg(dst_len, scope));
    if dst_len > 0 {
        m.attr(RTA_DST, &dst.octets());
    }
    if let Some(gw) = gw {
        m.attr(RTA_GATEWAY, &gw.octets());
    }
    m.attr(RTA_OIF, &oif.to_ne_bytes());
    m
}

// ---- constants (linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h, veth.h) ----------------

const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;

const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_MIN_TYPE: u16 = 0x10;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_DUMP: u16 = 0x300;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const NLA_TYPE_MASK: u16 = 0x3fff;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;

const AF_INET: u8 = 2;
const IFF_UP: u32 = 0x1;
const RT_TABLE_MAIN: u32 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RTN_UNICAST: u8 = 1;

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
