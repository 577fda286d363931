//! Container networking against the real kernel (root), never on the machine's own interfaces.
//!
//! Each test re-runs this test binary, filtered to itself, under
//! `unshare --net --pid --fork --kill-child --mount-proc` with PV_NET_TEST_INNER set. Why a whole
//! process rather than unshare(CLONE_NEWNET) on a thread: every helper process the test starts
//! (`unshare --net sleep`, `ip`) inherits the test's namespace by itself, the library's own
//! "calling thread's namespace" lookups (/proc/thread-self) are the real ones, and when the test
//! ends or crashes, the kernel kills everything in the PID namespace and destroys the network
//! namespace with whatever bridge or veth is left in it. The outer half compares the machine's
//! interfaces before and after.
use pantavisor::container::net::{self, NetPlan};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INNER: &str = "PV_NET_TEST_INNER";
const BR: &str = "lxcbr0";
const BR_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 3, 1);

/// Runs `body` in a fresh network (and PID) namespace; see the module comment.
fn isolated(name: &str, body: fn()) {
    if std::env::var_os(INNER).is_some() {
        // refuse to touch anything unless this is the namespace `isolated` made: PID 1 of a new
        // PID namespace, in a network namespace that has nothing but lo
        let links = net::interfaces().expect("dump links");
        assert!(
            std::process::id() == 1 && names(&links) == ["lo"],
            "{INNER} is set but this is not a fresh namespace: refusing to run ({links:?})"
        );
        body();
        return;
    }
    // root: real uid 0 in /proc/self/status. Like the other root tiers, this one fails rather
    // than passing without having run anything.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    assert!(
        status.lines().any(|l| l.starts_with("Uid:\t0\t")),
        "{name}: needs root (network namespaces, bridges, veth pairs): run the tests as root"
    );
    let before = machine_links();
    let t = Instant::now();
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new("unshare")
        .args(["--net", "--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .output()
        .expect("run unshare (util-linux)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{name} in its namespace failed ({}):\n{text}",
        out.status
    );
    // the filter must have matched: the inner run says "1 passed"
    assert!(
        text.contains("1 passed"),
        "{name}: the inner run did not run the test:\n{text}"
    );
    eprintln!("{name}: {:?} in its own namespace", t.elapsed());
    assert_eq!(
        machine_links(),
        before,
        "{name}: the machine's interfaces changed"
    );
}

/// The machine's interfaces: our own dump, and `ip -o link` when iproute2 is installed.
fn machine_links() -> (Vec<(u32, String, bool)>, Option<usize>) {
    let mut ours = net::interfaces().expect("dump the machine's links");
    ours.sort();
    let ip = Command::new("ip").args(["-o", "link"]).output().ok();
    let count = ip.filter(|o| o.status.success()).map(|o| {
        o.stdout
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    });
    (ours, count)
}

/// A process in its own network namespace, standing for a container waiting for `attach`.
struct Container(Child);

impl Container {
    fn start() -> Container {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare --net sleep");
        let c = Container(child);
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        let deadline = Instant::now() + Duration::from_secs(5);
        // unshare(1) has to reach its unshare(2) first
        while std::fs::read_link(format!("/proc/{}/ns/net", c.pid()))
            .ok()
            .as_ref()
            == Some(&ours)
        {
            assert!(
                Instant::now() < deadline,
                "the container never got its own netns"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        c
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn stop(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn names(links: &[(u32, String, bool)]) -> Vec<&str> {
    let mut v: Vec<&str> = links.iter().map(|(_, n, _)| n.as_str()).collect();
    v.sort();
    v
}

fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2 is needed to make a test interface");
    assert!(st.success(), "ip {args:?}");
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn veth_plan(addr: Ipv4Addr) -> NetPlan {
    NetPlan::Veth {
        bridge: BR.into(),
        ipv4: Some((addr, 24)),
        gateway: Some(BR_ADDR),
        up: true,
        name_inside: "eth0".into(),
        hwaddr: Some([0x02, 0x50, 0x56, 0, 0, 0x42]),
    }
}

/// One request and its answer over TCP, the accepting side on a thread.
fn tcp_roundtrip(listener: TcpListener, connect: impl FnOnce(SocketAddr) -> TcpStream) {
    let addr = listener.local_addr().expect("listener address");
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let mut b = [0; 4];
        c.read_exact(&mut b).expect("read ping");
        assert_eq!(&b, b"ping");
        c.write_all(b"pong").expect("write pong");
    });
    let mut s = connect(addr);
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"ping").expect("write ping");
    let mut b = [0; 4];
    s.read_exact(&mut b).expect("read pong");
    assert_eq!(&b, b"pong");
    server.join().expect("server thread");
}

#[test]
fn bridge_is_created_addressed_up_and_idempotent() {
    isolated("bridge_is_created_addressed_up_and_idempotent", || {
        net::ensure_bridge(BR, BR_ADDR, 24).unwrap();
        let br = net::link(BR).unwrap();
        assert!(br.up, "{br:?}");
        assert_eq!(net::addresses(BR).unwrap(), vec![(BR_ADDR, 24)]);
        let links = net::interfaces().unwrap();
        net::ensure_bridge(BR, BR_ADDR, 24).unwrap();
        assert_eq!(net::interfaces().unwrap(), links);
        assert_eq!(net::addresses(BR).unwrap(), vec![(BR_ADDR, 24)]);
        assert_eq!(net::link(BR).unwrap().index, br.index);
        // a link of another kind under that name is refused, and left alone
        let e = net::ensure_bridge("lo", BR_ADDR, 24).unwrap_err();
        assert_eq!((e.op, e.errno), ("create bridge", libc_eopnotsupp()), "{e}");
        assert!(!net::addresses("lo").unwrap().contains(&(BR_ADDR, 24)));
        let e = net::ensure_bridge("this-name-is-too-long", BR_ADDR, 24).unwrap_err();
        assert_eq!(
            e.to_string(),
            "netlink check interface name this-name-is-too-long: Invalid argument (os error 22)"
        );
    });
}

fn libc_eopnotsupp() -> i32 {
    95
}

#[test]
fn host_and_empty_plans() {
    isolated("host_and_empty_plans", || {
        let c = Container::start();
        let before = net::interfaces().unwrap();
        assert!(net::attach(&NetPlan::Host, "c", c.pid()).unwrap().is_none());
        assert_eq!(net::interfaces().unwrap(), before);
        let inside = net::in_netns(c.pid(), net::interfaces).unwrap().unwrap();
        assert_eq!(
            inside,
            vec![(1, "lo".to_string(), false)],
            "a fresh netns has lo down"
        );
        assert!(net::attach(&NetPlan::Empty, "c", c.pid())
            .unwrap()
            .is_none());
        let inside = net::in_netns(c.pid(), net::interfaces).unwrap().unwrap();
        assert_eq!(inside, vec![(1, "lo".to_string(), true)]);
        assert_eq!(net::interfaces().unwrap(), before);
        c.stop();
    });
}

#[test]
fn veth_on_bridge_carries_tcp_and_is_cleaned_up() {
    isolated("veth_on_bridge_carries_tcp_and_is_cleaned_up", || {
        net::ensure_bridge(BR, BR_ADDR, 24).unwrap();
        let br = net::link(BR).unwrap();
        let before = net::interfaces().unwrap();
        let c = Container::start();
        let pid = c.pid();
        let eth0 = Ipv4Addr::new(10, 0, 3, 2);
        let handle = net::attach(&veth_plan(eth0), "web", pid)
            .unwrap()
            .expect("a handle");
        let host = handle.host_ifname().to_string();
        assert_eq!(host, format!("veth{pid}"));
        let h = net::link(&host).unwrap();
        assert!(h.up && h.master == Some(br.index), "{h:?}");

        let (links, addrs, routes, link) = net::in_netns(pid, || {
            (
                net::interfaces(),
                net::addresses("eth0"),
                net::routes(),
                net::link("eth0"),
            )
        })
        .unwrap();
        let (links, link) = (links.unwrap(), link.unwrap());
        assert_eq!(names(&links), ["eth0", "lo"]);
        assert!(links.iter().all(|(_, _, up)| *up), "{links:?}");
        assert_eq!(link.hwaddr, Some([0x02, 0x50, 0x56, 0, 0, 0x42]));
        assert_eq!(addrs.unwrap(), vec![(eth0, 24)]);
        let default = net::Route {
            dst: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            gateway: Some(BR_ADDR),
            oif: Some(link.index),
        };
        assert!(
            routes.unwrap().contains(&default),
            "default route via {BR_ADDR}"
        );

        // host -> container: a listener made inside the container's namespace
        let l = net::in_netns(pid, || TcpListener::bind((eth0, 0)))
            .unwrap()
            .unwrap();
        tcp_roundtrip(l, |a| {
            TcpStream::connect_timeout(&a, Duration::from_secs(5)).unwrap()
        });
        // container -> host: the connecting socket is made inside
        let l = TcpListener::bind((BR_ADDR, 0)).unwrap();
        tcp_roundtrip(l, |a| {
            net::in_netns(pid, || {
                TcpStream::connect_timeout(&a, Duration::from_secs(5))
            })
            .unwrap()
            .unwrap()
        });

        // the container dies, then detach: nothing of it is left
        c.stop();
        net::detach(handle).unwrap();
        wait_for("the veth to vanish", || net::link(&host).is_err());
        assert_eq!(net::link(&host).unwrap_err().errno, 19, "ENODEV");
        assert_eq!(net::interfaces().unwrap(), before);

        // detach while the container still runs removes the pair too
        let c = Container::start();
        let handle = net::attach(&veth_plan(eth0), "web", c.pid())
            .unwrap()
            .unwrap();
        net::detach(handle).unwrap();
        assert_eq!(net::interfaces().unwrap(), before);
        let inside = net::in_netns(c.pid(), net::interfaces).unwrap().unwrap();
        assert_eq!(names(&inside), ["lo"]);
        c.stop();
    });
}

#[test]
fn veth_failures_leave_nothing_behind() {
    isolated("veth_failures_leave_nothing_behind", || {
        net::ensure_bridge(BR, BR_ADDR, 24).unwrap();
        let before = net::interfaces().unwrap();
        let c = Container::start();
        let mut plan = veth_plan(Ipv4Addr::new(10, 0, 3, 3));
        // a gateway on a link left down: the kernel refuses the route after the pair exists
        if let NetPlan::Veth { up, .. } = &mut plan {
            *up = false;
        }
        let e = net::attach(&plan, "c", c.pid()).unwrap_err();
        assert_eq!(e.op, "add route", "{e}");
        assert!(
            e.to_string()
                .starts_with("netlink add route default via 10.0.3.1 dev eth0: "),
            "{e}"
        );
        assert_eq!(net::interfaces().unwrap(), before);
        let inside = net::in_netns(c.pid(), net::interfaces).unwrap().unwrap();
        assert_eq!(names(&inside), ["lo"], "the peer went with the host end");

        let plan = NetPlan::Veth {
            bridge: "nobr0".into(),
            ipv4: None,
            gateway: None,
            up: true,
            name_inside: "eth0".into(),
            hwaddr: None,
        };
        let e = net::attach(&plan, "c", c.pid()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "netlink find link nobr0: No such device (os error 19)"
        );
        // the container is gone: its namespace cannot be opened
        let pid = c.pid();
        c.stop();
        let e = net::attach(&NetPlan::Empty, "c", pid).unwrap_err();
        assert_eq!((e.op, e.errno), ("open netns", 2), "{e}");
        assert_eq!(net::interfaces().unwrap(), before);
    });
}

#[test]
fn phys_moves_in_renamed_and_comes_back_by_name() {
    isolated("phys_moves_in_renamed_and_comes_back_by_name", || {
        // the "physical" interface: one end of a veth pair made in the test's namespace
        ip(&[
            "link", "add", "pvphys1", "type", "veth", "peer", "name", "pvphys0",
        ]);
        let before = net::interfaces().unwrap();
        let c = Container::start();
        // renamed inside to a name the host also has: giving it back must still work
        let plan = NetPlan::Phys {
            link: "pvphys1".into(),
            name_inside: Some("pvphys0".into()),
        };
        let handle = net::attach(&plan, "c", c.pid()).unwrap().unwrap();
        assert_eq!(net::link("pvphys1").unwrap_err().errno, 19, "moved out");
        let inside = net::in_netns(c.pid(), net::interfaces).unwrap().unwrap();
        assert_eq!(names(&inside), ["lo", "pvphys0"]);
        assert!(inside.iter().all(|(_, _, up)| *up), "{inside:?}");
        net::detach(handle).unwrap();
        assert_eq!(net::interfaces().unwrap().len(), before.len());
        assert!(
            !net::link("pvphys1").unwrap().up,
            "back under its own name, down"
        );
        let inside = net::in_netns(c.pid(), net::interfaces).unwrap().unwrap();
        assert_eq!(names(&inside), ["lo"]);

        // no rename; the container dies before detach: the held namespace still gives it back
        let plan = NetPlan::Phys {
            link: "pvphys1".into(),
            name_inside: None,
        };
        let handle = net::attach(&plan, "c", c.pid()).unwrap().unwrap();
        let inside = net::in_netns(c.pid(), net::interfaces).unwrap().unwrap();
        assert_eq!(names(&inside), ["lo", "pvphys1"]);
        c.stop();
        net::detach(handle).unwrap();
        assert!(net::link("pvphys1").is_ok());
        assert_eq!(names(&net::interfaces().unwrap()), names(&before));

        // without detach the kernel decides: a virtual interface dies with the namespace
        // (a real device would go to the initial namespace)
        let c = Container::start();
        let handle = net::attach(&plan, "c", c.pid()).unwrap().unwrap();
        c.stop();
        drop(handle);
        wait_for("the pair to be destroyed", || net::link("pvphys0").is_err());
        assert!(net::link("pvphys1").is_err());

        // a missing interface is named in the error
        let c = Container::start();
        let e = net::attach(&plan, "c", c.pid()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "netlink find link pvphys1: No such device (os error 19)"
        );
        c.stop();
    });
}
