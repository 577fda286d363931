//! Namespace tier (root): containers built by the engine from a checked-out revision, each
//! scenario run by this binary re-executed as PID 1 of new PID/mount/UTS/IPC namespaces
//! (`support::run_driver`), never by the libtest process itself. Every scenario ends by
//! checking that no mount and no loop device under its temp dir is left, in its own namespace
//! and on the host.
mod support;

use pantavisor::container::{Engine, Exit, Status};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use support::*;

fn image() -> PathBuf {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| busybox_image(Path::new(env!("CARGO_TARGET_TMPDIR"))))
        .clone()
}

fn run(name: &str) -> DriverRun {
    run_with(name, &[])
}

fn run_with(name: &str, extra_unshare: &[&str]) -> DriverRun {
    let r = run_driver_with(name, &image(), Duration::from_secs(40), extra_unshare);
    eprintln!("{name}: driver {:?}\n{}", r.elapsed, r.stdout);
    r.assert_ok();
    r
}

/// Entry point of the re-executed binary; does nothing in a normal test run.
#[test]
fn driver() {
    let Ok(name) = std::env::var(DRIVER_ENV) else {
        return;
    };
    pantavisor::logs::set_level(pantavisor::logs::Level::Debug);
    let (tmp, img) = driver_env();
    match name.as_str() {
        "basics" => basics(&tmp, &img, false),
        "legacy" => basics(&tmp, &img, true),
        "volumes" => volumes(&tmp, &img),
        "mounts" => mounts(&tmp, &img),
        "network" => network(&tmp, &img),
        "veth" => veth(&tmp, &img),
        "caps" => caps(&tmp, &img),
        "cgroup" => cgroup(&tmp, &img),
        "stop" => stop(&tmp, &img),
        "errors" => errors(&tmp, &img),
        other => panic!("unknown scenario {other}"),
    }
    assert_nothing_left(&tmp);
    println!("DRIVER-OK {name}");
}

fn console(tmp: &Path, rev: &str, name: &str) -> String {
    std::fs::read_to_string(paths(tmp).console_log(rev, name)).unwrap_or_default()
}

// ---- scenarios (run inside the driver) ----

/// `legacy`: the paths of kernels before 5.8 (clone + cgroup.procs, LOOP_SET_FD).
fn basics(tmp: &Path, img: &Path, legacy: bool) {
    let script = "echo pid=$$; echo host=$(hostname); cat /etc/motd /etc/shadowed; \
                  echo env=$FOO; echo container=$container; echo cwd=$(pwd); echo argv0=$0; \
                  grep -c . /proc/self/cgroup >/dev/null && sed -n 's/^0::.*\\/lxc\\//cgroup=/p' /proc/self/cgroup; \
                  echo pv=$(ls /pantavisor | tr '\\n' ' '); touch /pantavisor/x 2>/dev/null || echo pv-ro; \
                  grep -q ' /lib/firmware ' /proc/mounts && echo firmware-bound; \
                  echo cmdline=$(cat /proc/cmdline); \
                  exit 7";
    let cfg = base_config(
        "hello",
        &format!(
            "lxc.init.cmd = /bin/sh \"-c\" \"{script}\" \"arg zero\"\n\
             lxc.init.cwd = /srv\n\
             lxc.environment = FOO=bar baz\n"
        ),
    );
    let mut c = Ctr::busybox("hello", img, &cfg);
    c.overlay
        .push(("etc/shadowed".into(), b"from _config\n".to_vec()));
    let state = install_revision(&tmp.join("storage"), "1", &[c]);
    let mut opts = options(Duration::from_secs(5));
    opts.legacy_kernel = legacy;
    let mut e = Engine::new(paths(tmp), opts);
    let pid = e.start("1", &state, "hello").expect("start");
    assert!(pid > 1);
    assert_eq!(e.status("hello"), Some(Status::Started));
    let exit = e.wait_exit("hello", Duration::from_secs(10)).expect("wait");
    assert_eq!(exit, Some(Exit::Code(7)));
    assert_eq!(e.status("hello"), Some(Status::Stopped));
    let out = console(tmp, "1", "hello");
    println!("console:\n{out}");
    for want in [
        "pid=1",
        "host=hello",
        "hello from squashfs",
        "from _config",
        "env=bar baz",
        "container=pv-app",
        "cwd=/srv",
        "argv0=arg zero",
        "cgroup=hello",
    ] {
        assert!(out.lines().any(|l| l == want), "missing '{want}' in\n{out}");
    }
    assert!(
        !out.contains("from the rootfs"),
        "_config must shadow the rootfs file"
    );
}

/// Runs a container whose init is a shell script to its end; returns its console output.
fn run_script(e: &mut Engine, state: &pantavisor::state::State, rev: &str, name: &str) -> String {
    e.start(rev, state, name)
        .unwrap_or_else(|err| panic!("start: {err}"));
    let exit = e.wait_exit(name, Duration::from_secs(10)).expect("wait");
    let tmp = e.paths().storage.parent().unwrap().to_path_buf();
    let out = console(&tmp, rev, name);
    assert_eq!(exit, Some(Exit::Code(0)), "console:\n{out}");
    assert_nothing_left(&tmp);
    out
}

fn script_config(name: &str, extra: &str, script: &str) -> String {
    assert!(!script.contains('"'));
    base_config(
        name,
        &format!("{extra}lxc.init.cmd = /bin/sh \"-c\" \"{script}\"\n"),
    )
}

fn has_line(out: &str, want: &str) -> bool {
    out.lines().any(|l| l == want)
}

fn volumes(tmp: &Path, img: &Path) {
    let script = "for d in perm rev boot; do echo x >> /$d/count; echo $d=$(wc -l < /$d/count); done; \
                  cat /etc/conf; cat /mnt/extra/etc/motd; echo >> /etc/conf 2>/dev/null || echo conf-rw";
    let cfg = script_config(
        "vols",
        "lxc.mount.entry = /volumes/vols/data-perm perm none bind,rw,create=dir 0 0\n\
         lxc.mount.entry = /volumes/vols/data-rev rev none bind,rw,create=dir 0 0\n\
         lxc.mount.entry = /volumes/vols/data-boot boot none bind,rw,create=dir 0 0\n\
         lxc.mount.entry = /volumes/vols/conf.bind etc/conf none bind,rw,create=file 0 0\n\
         lxc.mount.entry = /volumes/vols/extra.squashfs mnt/extra none bind,ro,create=dir 0 0\n",
        script,
    );
    let conf = tmp.join("conf.bind");
    std::fs::write(&conf, "conf from a .bind volume\n").unwrap();
    let mut c = Ctr::busybox("vols", img, &cfg);
    c.volumes = vec![
        ("conf.bind".into(), conf.clone()),
        ("extra.squashfs".into(), img.to_path_buf()),
    ];
    c.storage.extend([
        ("data-perm".to_string(), "permanent".to_string()),
        ("data-rev".to_string(), "revision".to_string()),
        ("data-boot".to_string(), "boot".to_string()),
    ]);
    let storage = tmp.join("storage");
    let s1 = install_revision(&storage, "1", &[c.clone()]);
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    let out = run_script(&mut e, &s1, "1", "vols");
    for want in [
        "perm=1",
        "rev=1",
        "boot=1",
        "conf from a .bind volume",
        "hello from squashfs",
    ] {
        assert!(has_line(&out, want), "run 1: missing {want} in\n{out}");
    }
    // a restart of the same revision: permanent and revision kept, boot fresh
    let out = run_script(&mut e, &s1, "1", "vols");
    for want in ["perm=2", "rev=2", "boot=1"] {
        assert!(has_line(&out, want), "run 2: missing {want} in\n{out}");
    }
    // a new revision: permanent kept, revision fresh, boot fresh
    let s2 = install_revision(&storage, "2", &[c]);
    let out = run_script(&mut e, &s2, "2", "vols");
    for want in ["perm=3", "rev=1", "boot=1"] {
        assert!(has_line(&out, want), "rev 2: missing {want} in\n{out}");
    }
    let lines = |p: &str| {
        std::fs::read_to_string(storage.join(p))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(lines("disks/perm/vols/data-perm/count"), 3);
    assert_eq!(lines("disks/rev/1/vols/data-rev/count"), 2);
    assert_eq!(lines("disks/rev/2/vols/data-rev/count"), 1);
}

fn mounts(tmp: &Path, img: &Path) {
    let host = tmp.join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("file"), "host file\n").unwrap();
    let victim = tmp.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    let script = "cat /ro/file; touch /ro/new 2>/dev/null && echo ro-writable || echo ro-refused; \
                  grep ' /run ' /proc/mounts | cut -d' ' -f3,4 | cut -d, -f1; \
                  stat -c %a /run; \
                  cat /etc/single; \
                  grep -q ' /opt/skipped ' /proc/mounts && echo optional-mounted || echo optional-skipped; \
                  ls /dev | tr '\\n' ' '; echo; \
                  test -c /dev/null && echo null-ok; test -L /dev/ptmx && echo ptmx-ok; \
                  grep -q devpts /proc/mounts && echo devpts-ok; \
                  echo pv=$(ls /pantavisor | tr '\\n' ' ')";
    let cfg = script_config(
        "mnt",
        &format!(
            "lxc.mount.entry = {host} ro none bind,ro,create=dir 0 0\n\
             lxc.mount.entry = tmpfs run tmpfs rw,nodev,relatime,create=dir,mode=751 0 0\n\
             lxc.mount.entry = {host}/file etc/single none bind,create=file 0 0\n\
             lxc.mount.entry = /nonexistent/source opt/skipped none bind,optional,create=dir 0 0\n\
             lxc.mount.entry = tmpfs escape/sub tmpfs create=dir,optional 0 0\n",
            host = host.display()
        ),
        script,
    );
    let mut c = Ctr::busybox("mnt", img, &cfg);
    c.roles = Some(vec!["nobody".into()]);
    // a permanent overlay upper with a planted symlink to the host: create=dir through it
    // must stay inside the container
    c.storage = vec![("lxc-overlay".into(), "permanent".into())];
    let upper = tmp.join("storage/disks/perm/mnt/lxc-overlay/upper");
    std::fs::create_dir_all(&upper).unwrap();
    std::os::unix::fs::symlink(&victim, upper.join("escape")).unwrap();
    let state = install_revision(&tmp.join("storage"), "1", &[c]);
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    let out = run_script(&mut e, &state, "1", "mnt");
    for want in [
        "host file",
        "ro-refused",
        "tmpfs rw",
        "751",
        "optional-skipped",
        "null-ok",
        "ptmx-ok",
        "devpts-ok",
        "pv=device-meta logs pv-ctrl pv-ctrl-log user-meta",
    ] {
        assert!(has_line(&out, want), "missing '{want}' in\n{out}");
    }
    let dev = out.lines().find(|l| l.contains("urandom")).unwrap_or("");
    for n in [
        "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx", "pts",
    ] {
        assert!(dev.split(' ').any(|x| x == n), "/dev lacks {n}: {dev}");
    }
    assert!(
        std::fs::read_dir(&victim).unwrap().next().is_none(),
        "a symlink in the container reached the host"
    );
}

fn network(tmp: &Path, img: &Path) {
    let script =
        "echo net=$(ls /sys/class/net | tr '\\n' ' '); echo loflags=$(cat /sys/class/net/lo/flags)";
    let empty = Ctr::busybox(
        "isolated",
        img,
        &script_config("isolated", "lxc.net.0.type = empty\n", script),
    );
    let host = Ctr::busybox(
        "hostnet",
        img,
        &script_config("hostnet", "lxc.namespace.keep = user net ipc\n", script),
    );
    let state = install_revision(&tmp.join("storage"), "1", &[empty, host]);
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    let out = run_script(&mut e, &state, "1", "isolated");
    assert!(has_line(&out, "net=lo"), "{out}");
    // IFF_UP | IFF_LOOPBACK: the network code brought lo up
    assert!(has_line(&out, "loflags=0x9"), "{out}");
    let mut mine: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    mine.sort();
    let out = run_script(&mut e, &state, "1", "hostnet");
    assert!(
        has_line(&out, &format!("net={}", mine.join(" "))),
        "host has {mine:?}; container: {out}"
    );
}

/// In its own network namespace (the driver runs under `unshare --net`): a veth pair on
/// lxcbr0, addressed, reaching the bridge; the host end gone after stop.
fn veth(tmp: &Path, img: &Path) {
    use pantavisor::container::net;
    let links = net::interfaces().unwrap();
    assert!(
        links.len() == 1 && links[0].1 == "lo",
        "refusing: not a fresh network namespace: {links:?}"
    );
    net::ensure_bridge("lxcbr0", "10.0.3.1".parse().unwrap(), 24).unwrap();
    let script = "ip -o -4 addr show eth0 | tr -s ' ' | cut -d' ' -f2,4; \
                  ping -c 1 -W 2 10.0.3.1 >/dev/null && echo ping-ok; ip route | grep default";
    let cfg = script_config(
        "vnet",
        "lxc.net.0.type = veth\n\
         lxc.net.0.link = lxcbr0\n\
         lxc.net.0.flags = up\n\
         lxc.net.0.ipv4.address = 10.0.3.2/24\n\
         lxc.net.0.ipv4.gateway = 10.0.3.1\n",
        script,
    );
    let state = install_revision(
        &tmp.join("storage"),
        "1",
        &[Ctr::busybox("vnet", img, &cfg)],
    );
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    let out = run_script(&mut e, &state, "1", "vnet");
    println!("vnet console:\n{out}");
    for want in [
        "eth0 10.0.3.2/24",
        "ping-ok",
        "default via 10.0.3.1 dev eth0 ",
    ] {
        assert!(
            out.lines().any(|l| l.starts_with(want.trim_end())),
            "missing '{want}' in\n{out}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let links = net::interfaces().unwrap();
        if links.iter().all(|l| !l.1.starts_with("veth")) {
            break;
        }
        assert!(Instant::now() < deadline, "host end left: {links:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cap_bnd(out: &str) -> u64 {
    let l = out
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd");
    u64::from_str_radix(l.trim(), 16).unwrap()
}

fn caps(tmp: &Path, img: &Path) {
    let script = "grep CapBnd /proc/1/status";
    let dropped = Ctr::busybox(
        "dropped",
        img,
        &script_config(
            "dropped",
            "lxc.cap.drop = sys_module sys_time mknod\n",
            script,
        ),
    );
    let kept = Ctr::busybox(
        "kept",
        img,
        &script_config("kept", "lxc.cap.keep = kill net_bind_service\n", script),
    );
    let state = install_revision(&tmp.join("storage"), "1", &[dropped, kept]);
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    let bnd = cap_bnd(&run_script(&mut e, &state, "1", "dropped"));
    for cap in [16, 25, 27] {
        assert_eq!(bnd & (1 << cap), 0, "capability {cap} still in {bnd:x}");
    }
    for cap in [0, 12, 21] {
        assert_ne!(bnd & (1 << cap), 0, "capability {cap} lost: {bnd:x}");
    }
    let bnd = cap_bnd(&run_script(&mut e, &state, "1", "kept"));
    assert_eq!(bnd, (1 << 5) | (1 << 10), "{bnd:x}");
}

fn cgroup(tmp: &Path, img: &Path) {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_string();
    let script = "cat /proc/self/cgroup; echo max=$(cat /sys/fs/cgroup/cgroup.max.descendants); \
                  echo ready; exec sleep 1000";
    let cfg = script_config(
        "cg",
        "lxc.cgroup2.cgroup.max.descendants = 3\n\
         lxc.cgroup2.memory.max = 64M\n\
         lxc.cgroup.cpu.shares = 512\n",
        script,
    );
    let state = install_revision(&tmp.join("storage"), "1", &[Ctr::busybox("cg", img, &cfg)]);
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    e.start("1", &state, "cg")
        .unwrap_or_else(|err| panic!("start: {err}"));
    let dir = e.cgroup_dir("cg").expect("a cgroup").to_path_buf();
    assert!(
        dir.ends_with(format!("{}/lxc/cg", own.trim_start_matches('/'))),
        "{dir:?}"
    );
    let pid = e.pid("cg").unwrap();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !console(tmp, "1", "cg").contains("ready") {
        assert!(
            Instant::now() < deadline,
            "no ready: {}",
            console(tmp, "1", "cg")
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = console(tmp, "1", "cg");
    let inside = out
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("0:: line");
    let rel = inside
        .strip_prefix(own.trim_end_matches('/'))
        .unwrap_or(inside);
    assert_eq!(rel, "/lxc/cg", "inside: {inside}, device cgroup {own}");
    assert!(has_line(&out, "max=3"), "{out}");
    let exit = e
        .stop_and_wait("cg", Duration::from_millis(300))
        .expect("stop");
    assert_eq!(exit, Some(Exit::Signal(libc::SIGKILL)));
    assert!(!dir.exists(), "cgroup {dir:?} left");
}

fn stop(tmp: &Path, img: &Path) {
    let deaf = Ctr::busybox(
        "deaf",
        img,
        &script_config(
            "deaf",
            "",
            "trap '' TERM PWR; echo ready; while true; do sleep 1; done",
        ),
    );
    let polite = Ctr::busybox(
        "polite",
        img,
        &script_config(
            "polite",
            "",
            "trap 'echo got-term; exit 3' TERM; echo ready; while true; do sleep 0.1; done",
        ),
    );
    let init = Ctr::busybox(
        "init",
        img,
        &base_config("init", "lxc.init.cmd = /sbin/init\n"),
    );
    let state = install_revision(&tmp.join("storage"), "1", &[deaf, polite, init]);
    let grace = Duration::from_millis(1000);
    let mut e = Engine::new(paths(tmp), options(grace));
    let wait_ready = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !console(tmp, "1", name).contains("ready")
            && !console(tmp, "1", name).contains("init-up")
        {
            assert!(Instant::now() < deadline, "{name} not ready");
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    // the two-phase API as the PID 1 loop drives it: request, poll, kill at the deadline,
    // reap (here by pid), route the exit
    let pid = e.start("1", &state, "deaf").expect("start deaf");
    wait_ready("deaf");
    let t0 = Instant::now();
    let deadline = e.request_stop("deaf", t0).unwrap().expect("a deadline");
    assert_eq!(
        deadline,
        t0 + grace,
        "the kill is due one grace period after the request"
    );
    assert_eq!(e.status("deaf"), Some(Status::Stopping));
    assert_eq!(e.next_deadline(), Some(deadline));
    let exit = loop {
        if let Some(st) = pantavisor::sys::waitpid(pid, true).unwrap() {
            break e.handle_exit(pid, st).expect("our container");
        }
        // a kill that never comes fails here rather than hanging the test
        assert!(
            t0.elapsed() < grace + Duration::from_secs(20),
            "deaf never killed"
        );
        e.kill_overdue(Instant::now());
        std::thread::sleep(Duration::from_millis(5));
    };
    let took = t0.elapsed();
    println!("deaf: {exit:?} after {took:?} (grace {grace:?})");
    assert_eq!(exit, ("deaf".to_string(), Exit::Signal(libc::SIGKILL)));
    // never before the deadline; after it, only as late as the machine's load makes the kill
    // and the reap (the deadline itself is checked exactly above)
    assert!(
        took >= grace && took < grace + Duration::from_secs(4),
        "{took:?}"
    );
    assert_eq!(e.status("deaf"), Some(Status::Stopped));
    assert_nothing_left(tmp);

    // an init that handles SIGTERM ends before the grace period
    e.start("1", &state, "polite").expect("start polite");
    wait_ready("polite");
    let t0 = Instant::now();
    let exit = e.stop_and_wait("polite", Duration::from_secs(5)).unwrap();
    println!("polite: {exit:?} after {:?}", t0.elapsed());
    // its own exit status, not a kill at the grace period's end (5 s), and returned as soon
    // as it exited, not at the deadline
    assert_eq!(exit, Some(Exit::Code(3)));
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    assert!(console(tmp, "1", "polite").contains("got-term"));

    // busybox init halts on SIGPWR (LXC's default halt signal) well within the grace
    e.start("1", &state, "init").expect("start init");
    wait_ready("init");
    let t0 = Instant::now();
    let exit = e.stop_and_wait("init", Duration::from_secs(8)).unwrap();
    println!(
        "init: {exit:?} after {:?}\n{}",
        t0.elapsed(),
        console(tmp, "1", "init")
    );
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "busybox init ignored SIGPWR"
    );
    assert_ne!(exit, Some(Exit::Signal(libc::SIGKILL)));
    assert!(console(tmp, "1", "init").contains("init-down"));
}

fn errors(tmp: &Path, img: &Path) {
    let ok = |name: &str, extra: &str| Ctr::busybox(name, img, &script_config(name, extra, "true"));
    let mut bad = ok("badcfg", "");
    bad.config.push_str("this line has no equals sign\n");
    let mut missing = ok("missing", "");
    missing.volumes = vec![("extra.squashfs".into(), img.to_path_buf())];
    let mut noexec = ok("noexec", "");
    noexec.config = base_config("noexec", "lxc.init.cmd = /nonexistent \"x\"\n");
    let badmount = ok(
        "badmount",
        "lxc.mount.entry = /does/not/exist mnt/x none bind,create=dir 0 0\n",
    );
    let state = install_revision(&tmp.join("storage"), "1", &[bad, missing, noexec, badmount]);
    std::fs::remove_file(tmp.join("storage/trails/1/missing/extra.squashfs")).unwrap();
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    let cg_root = e.cgroup_root().map(Path::to_path_buf);
    let trail = tmp.join("storage/trails/1");
    let cases = [
        (
            "badcfg",
            format!(
                "container badcfg: config {}/badcfg/lxc.container.conf: ",
                trail.display()
            ),
        ),
        (
            "missing",
            format!(
                "container missing: loop {}/missing/extra.squashfs: No such file or directory",
                trail.display()
            ),
        ),
        (
            "noexec",
            "container noexec: exec /nonexistent: No such file or directory".to_string(),
        ),
        (
            "badmount",
            "container badmount: mount /does/not/exist on /mnt/x: No such file or directory"
                .to_string(),
        ),
    ];
    for (name, want) in cases {
        let err = e.start("1", &state, name).expect_err(name).to_string();
        println!("{name}: {err}");
        assert!(
            err.starts_with(&want),
            "{name}: got '{err}', want '{want}...'"
        );
        assert!(!err.contains('\n'));
        assert_eq!(e.status(name), None);
        assert_nothing_left(tmp);
        if let Some(r) = &cg_root {
            assert!(!r.join("lxc").join(name).exists(), "cgroup of {name} left");
        }
    }
}

// ---- the tests (libtest side) ----

#[test]
fn rootfs_config_overlay_env_argv_hostname_pid1_console() {
    run("basics");
}

#[test]
fn pre_5_8_kernel_paths_clone_and_loop_set_fd() {
    run("legacy");
}

#[test]
fn volumes_persistence_across_restart_and_revision() {
    run("volumes");
}

#[test]
fn mount_entries_autodev_views_and_no_symlink_escape() {
    let r = run("mounts");
    assert!(
        r.stderr
            .contains("optional mount /nonexistent/source on /opt/skipped"),
        "{}",
        r.stderr
    );
}

#[test]
fn network_empty_and_host() {
    run("network");
}

#[test]
fn network_veth_on_lxcbr0() {
    run_with("veth", &["--net"]);
}

#[test]
fn capabilities_dropped_from_bounding_set() {
    run("caps");
}

#[test]
fn cgroup_per_container_knobs_and_missing_controllers() {
    let r = run("cgroup");
    assert!(
        r.stderr.contains("cgroup cgroup.max.descendants = 3"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("controller memory not available"),
        "{}",
        r.stderr
    );
}

#[test]
fn stop_halt_signal_grace_and_kill() {
    run("stop");
}

#[test]
fn clear_errors_and_nothing_leaked() {
    let r = run("errors");
    assert!(
        r.stderr
            .contains("WARN\t -- [container]: container noexec: exec /nonexistent"),
        "{}",
        r.stderr
    );
}
