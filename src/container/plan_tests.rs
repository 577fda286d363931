use super::*;
use crate::container::lxc;
use crate::container::ms;

fn paths() -> Paths {
    Paths {
        storage: "/t/storage".into(),
        voldir: "/t/volumes".into(),
        exportsdir: "/t/exports".into(),
        confdir: "/t/configs".into(),
        rundir: "/t/run".into(),
        logdir: "/t/storage/logs".into(),
        rootfs_mount: "/t/run/lxc/rootfs".into(),
        media: "/t/media".into(),
    }
}

/// A composed config of the kind pvr makes, one line of each key of the subset.
const PVR: &str = "lxc.tty.max = 8
lxc.pty.max = 1024
lxc.cgroup.devices.allow = a
lxc.rootfs.path = overlayfs:/volumes/web/root.squashfs:/volumes/web/lxc-overlay/upper
lxc.init.cmd = /usr/sbin/httpd \"-f\" \"-p\" \"8080\"
lxc.init.cwd = /srv
lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
lxc.namespace.keep = user net ipc
lxc.mount.auto = proc sys:rw cgroup
lxc.mount.entry = /etc/resolv.conf etc/resolv.conf none bind,rw,create=file 0 0
lxc.mount.entry = tmpfs run tmpfs rw,nodev,relatime,create=dir,mode=755 0 0
lxc.mount.entry = /volumes/web/docker--srv-data srv/data none bind,rw,create=dir 0 0
";

fn cfg(text: &str) -> LxcConfig {
    lxc::parse(text, "test.conf").expect("parses")
}

fn build_with(text: &str, mgmt: bool) -> (ChildPlan, HostPrep) {
    let c = cfg(text);
    let p = paths();
    let inp = Inputs {
        name: "web",
        group: "app",
        rev: "1",
        cfg: &c,
        paths: &p,
        mgmt,
        config_overlay: Some("/t/configs/web".into()),
        cgroup_dir: Some("/cg/pv/lxc/web".into()),
        cgroup_root: Some("/cg/pv".into()),
        cmdline: Some("/t/run/lxc/cmdline".into()),
        firmware: Some("/lib/firmware".into()),
        modules: Some(("/t/volumes/bsp/modules.squashfs".into(), "6.1.0".into())),
        cap_last_cap: 40,
        existing_sockets: &["pv-ctrl"],
        exports: &[],
    };
    build(&inp).expect("plans")
}

fn plan_err(text: &str) -> PlanError {
    build_bare(text, &[]).expect_err("refused")
}

fn build_exports(exports: &[&str]) -> Result<(ChildPlan, HostPrep), PlanError> {
    build_bare(PVR, exports)
}

/// A non-mgmt container without cgroup, cmdline, firmware or sockets.
fn build_bare(text: &str, exports: &[&str]) -> Result<(ChildPlan, HostPrep), PlanError> {
    let c = cfg(text);
    let p = paths();
    let exports: Vec<String> = exports.iter().map(|e| e.to_string()).collect();
    let inp = Inputs {
        name: "web",
        group: "app",
        rev: "1",
        cfg: &c,
        paths: &p,
        mgmt: false,
        config_overlay: None,
        cgroup_dir: None,
        cgroup_root: None,
        cmdline: None,
        firmware: None,
        modules: None,
        cap_last_cap: 40,
        existing_sockets: &[],
        exports: &exports,
    };
    build(&inp)
}

fn s(c: &CString) -> &str {
    c.to_str().unwrap()
}

/// Every mount op as (target, source, fstype, flags, data).
fn mounts(p: &ChildPlan) -> Vec<(String, String, String, u64, String)> {
    p.ops
        .iter()
        .filter_map(|o| match &o.kind {
            OpKind::Mount {
                source,
                target,
                fstype,
                flags,
                data,
            } => Some((
                s(target).to_string(),
                source
                    .as_ref()
                    .map(|x| s(x).to_string())
                    .unwrap_or_default(),
                fstype
                    .as_ref()
                    .map(|x| s(x).to_string())
                    .unwrap_or_default(),
                *flags,
                data.as_ref().map(|x| s(x).to_string()).unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn pvr_template_config_plans_as_upstream_would_run_it() {
    let (p, prep) = build_with(PVR, false);
    // user net ipc kept: new mount, pid, uts only
    assert_eq!(
        p.clone_flags,
        (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS) as u64
    );
    assert_eq!(p.net, NetPlan::Host);
    // the rootfs: _config copy on top, pvr paths mapped, work dir beside upper
    let root = p
        .ops
        .iter()
        .find_map(|o| match &o.kind {
            OpKind::MountRootfs { data, target, .. } => {
                Some((s(data.as_ref().unwrap()).to_string(), s(target).to_string()))
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(
        root.0,
        "lowerdir=/t/configs/web:/t/volumes/web/root.squashfs,\
         upperdir=/t/volumes/web/lxc-overlay/upper,workdir=/t/volumes/web/lxc-overlay/work"
    );
    assert_eq!(root.1, "/t/run/lxc/rootfs");
    for d in [
        "/t/volumes/web/lxc-overlay/upper",
        "/t/volumes/web/lxc-overlay/work",
        "/t/run/lxc/rootfs",
        "/t/storage/logs/1/web",
        "/t/run/user-meta.web",
    ] {
        assert!(prep.dirs.contains(&PathBuf::from(d)), "{d} not prepared");
    }
    let m = mounts(&p);
    let find = |t: &str| m.iter().filter(|x| x.0 == t).cloned().collect::<Vec<_>>();
    assert_eq!(find("dev")[0].2, "tmpfs");
    assert_eq!(find("proc")[0].2, "proc");
    // sys:rw
    assert_eq!(find("sys")[0].3 & ms::RDONLY, 0);
    // cgroup: the container's own cgroup bound
    assert_eq!(find("sys/fs/cgroup")[0].1, "/cg/pv/lxc/web");
    assert_eq!(find("etc/resolv.conf")[0].1, "/etc/resolv.conf");
    assert_eq!(find("etc/resolv.conf").len(), 1, "rw bind: no remount");
    let run = &find("run")[0];
    assert_eq!((run.2.as_str(), run.4.as_str()), ("tmpfs", "mode=755"));
    assert_eq!(run.3, ms::NODEV | ms::RELATIME);
    assert_eq!(find("srv/data")[0].1, "/t/volumes/web/docker--srv-data");
    assert_eq!(find("proc/cmdline")[0].1, "/t/run/lxc/cmdline");
    assert_eq!(find("lib/firmware")[0].1, "/lib/firmware");
    assert_eq!(
        find("lib/modules/6.1.0")[0].1,
        "/t/volumes/bsp/modules.squashfs"
    );
    // create=file: parents made, then the file
    assert!(p.ops.iter().any(|o| matches!(&o.kind,
        OpKind::CreateFile { target, parent, name }
            if s(target) == "etc/resolv.conf" && s(parent) == "etc" && s(name) == "resolv.conf")));
    // init: argv as written, cwd, PATH search not needed for an absolute command
    assert_eq!(
        p.argv.strings().iter().map(s).collect::<Vec<_>>(),
        ["/usr/sbin/httpd", "-f", "-p", "8080"]
    );
    assert_eq!(p.exec_paths, vec![CString::new("/usr/sbin/httpd").unwrap()]);
    assert!(p
        .ops
        .iter()
        .any(|o| matches!(&o.kind, OpKind::Chdir(d) if s(d) == "/srv")));
    assert!(p.envp.strings().iter().any(|e| s(e) == "container=pv-app"));
    assert_eq!(p.halt_signal, libc::SIGTERM);
    assert!(p.console);
    // pivot after every mount, capabilities last
    let pivot = p
        .ops
        .iter()
        .position(|o| matches!(o.kind, OpKind::PivotRoot))
        .unwrap();
    assert!(p.ops[..pivot]
        .iter()
        .all(|o| !matches!(o.kind, OpKind::DropCaps(_) | OpKind::Chdir(_))));
    assert_eq!(p.ops.len(), p.descs.len());
}

#[test]
fn pantavisor_views_by_role() {
    let (p, _) = build_with(PVR, false);
    let m = mounts(&p);
    let src = |t: &str| m.iter().find(|x| x.0 == t).map(|x| x.1.clone());
    assert_eq!(
        src("pantavisor/logs").as_deref(),
        Some("/t/storage/logs/1/web")
    );
    assert_eq!(
        src("pantavisor/user-meta").as_deref(),
        Some("/t/run/user-meta.web")
    );
    assert_eq!(src("pantavisor/pv-ctrl").as_deref(), Some("/t/run/pv-ctrl"));
    assert_eq!(src("pantavisor"), None, "non-mgmt: no whole run dir");
    // the socket that does not exist yet is an optional bind, the existing one is not
    let optional = |t: &str| {
        p.ops
            .iter()
            .zip(&p.descs)
            .any(|(o, d)| o.optional && d.step == "mount" && d.path.ends_with(&format!("on /{t}")))
    };
    assert!(optional("pantavisor/pv-ctrl-log"));
    assert!(!optional("pantavisor/pv-ctrl"));
    // read-only binds get their remount
    assert!(m
        .iter()
        .any(|x| x.0 == "pantavisor/logs" && x.3 == ms::REMOUNT | ms::BIND | ms::RDONLY));

    let (p, _) = build_with(PVR, true);
    let m = mounts(&p);
    let src = |t: &str| m.iter().find(|x| x.0 == t).map(|x| x.1.clone());
    assert_eq!(src("pantavisor").as_deref(), Some("/t/run"));
    assert_eq!(src("pantavisor/logs").as_deref(), Some("/t/storage/logs"));
    assert_eq!(src("pantavisor/pv-ctrl"), None);
}

#[test]
fn namespaces_and_network_plans() {
    let base = "lxc.rootfs.path = /t/rootfs\n";
    let plan = |extra: &str| build_with(&format!("{base}{extra}"), false).0;
    let p = plan("");
    assert_eq!(
        p.net,
        NetPlan::Empty,
        "LXC's default: a new namespace with lo"
    );
    assert_ne!(p.clone_flags & libc::CLONE_NEWNET as u64, 0);
    assert_ne!(p.clone_flags & libc::CLONE_NEWIPC as u64, 0);
    let p = plan("lxc.net.0.type = none\n");
    assert_eq!(p.net, NetPlan::Host);
    assert_eq!(p.clone_flags & libc::CLONE_NEWNET as u64, 0);
    let p = plan("lxc.net.0.type = veth\nlxc.net.0.hwaddr = 02:00:00:aa:bb:0c\n");
    assert_eq!(
        p.net,
        NetPlan::Veth {
            bridge: "lxcbr0".into(),
            ipv4: None,
            gateway: None,
            up: false,
            name_inside: "eth0".into(),
            hwaddr: Some([2, 0, 0, 0xaa, 0xbb, 0x0c]),
        }
    );
    let p = plan("lxc.net.0.type = phys\nlxc.net.0.link = eth1\n");
    assert_eq!(
        p.net,
        NetPlan::Phys {
            link: "eth1".into(),
            name_inside: None
        }
    );
    let e = plan_err(&format!("{base}lxc.net.0.type = phys\n"));
    assert_eq!((e.step, e.path.as_str()), ("network", "lxc.net.0.link"));
    let e = plan_err(&format!(
        "{base}lxc.net.0.type = macvlan\nlxc.net.0.link = eth0\n"
    ));
    assert_eq!(e.step, "network");
    // a plain directory rootfs is bound
    assert!(p.ops.iter().any(|o| matches!(&o.kind,
        OpKind::MountRootfs { source, flags, .. } if s(source) == "/t/rootfs" && *flags == ms::BIND | ms::REC)));
}

#[test]
fn halt_signal_choice() {
    let h = |extra: &str| halt_signal(&cfg(extra));
    assert_eq!(h(""), libc::SIGPWR, "default init is /sbin/init");
    assert_eq!(h("lxc.init.cmd = /bin/sh \"-c\" \"x\"\n"), libc::SIGTERM);
    assert_eq!(h("lxc.init.cmd = /init\n"), libc::SIGPWR);
    assert_eq!(h("lxc.signal.halt = SIGRTMIN+3\n"), 37);
    assert_eq!(h("lxc.signal.halt = 10\n"), 10);
    assert_eq!(h("lxc.signal.halt = sigusr2\n"), libc::SIGUSR2);
    assert_eq!(signal_number("SIGRTMAX-1"), Some(63));
    assert_eq!(signal_number("SIGNOPE"), None);
    assert_eq!(signal_number("0"), None);
}

#[test]
fn environment_and_exec_search() {
    let c = cfg("lxc.environment = A=1\nlxc.environment = container=lxc\nlxc.environment = A=2\n");
    assert_eq!(
        environment(&c, "platform"),
        ["A=2", "container=pv-platform"]
    );
    assert_eq!(
        exec_paths("sh", &["PATH=/a:/b/".into()]),
        ["/a/sh", "/b/sh"]
    );
    assert_eq!(exec_paths("sh", &[]).len(), 6, "LXC's default PATH");
    assert_eq!(exec_paths("./x", &[]), ["./x"]);
}

#[test]
fn capabilities_and_bind_flags() {
    let base = "lxc.rootfs.path = /t/rootfs\n";
    let (p, _) = build_with(&format!("{base}lxc.cap.drop = sys_module mknod\n"), false);
    assert!(p
        .ops
        .iter()
        .any(|o| matches!(&o.kind, OpKind::DropCaps(c) if c == &vec![16, 27])));
    let (p, _) = build_with(&format!("{base}lxc.cap.keep = kill\n"), false);
    let dropped = p
        .ops
        .iter()
        .find_map(|o| match &o.kind {
            OpKind::DropCaps(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(dropped.len(), 40);
    assert!(!dropped.contains(&5));
    let (p, _) = build_with(
        &format!("{base}lxc.mount.entry = /x y none rbind,ro,nosuid,optional 0 0\n"),
        false,
    );
    let m: Vec<_> = mounts(&p).into_iter().filter(|x| x.0 == "y").collect();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].3, ms::BIND | ms::REC);
    assert_eq!(m[1].3, ms::REMOUNT | ms::BIND | ms::RDONLY | ms::NOSUID);
    // both ops of the optional entry are optional and share a group
    let ops: Vec<_> = p
        .ops
        .iter()
        .zip(&p.descs)
        .filter(|(_, d)| d.path.ends_with("on /y"))
        .map(|(o, _)| (o.optional, o.group))
        .collect();
    assert_eq!(ops.len(), 2);
    assert!(ops.iter().all(|o| o.0 && o.1 == ops[0].1));
}

#[test]
fn bad_paths_are_refused_with_the_step_named() {
    // the parser refuses '..' in targets already; a rootfs dir with ',' breaks overlay options
    let e = plan_err("lxc.rootfs.path = overlayfs:/t/a,b:/t/upper\n");
    assert_eq!(e.step, "rootfs");
    let e = plan_err("lxc.init.cmd = /bin/true\n");
    assert_eq!((e.step, e.path.as_str()), ("rootfs", "lxc.rootfs.path"));
    assert_eq!(
        rel_components("a/../b").unwrap_err().message,
        "target must not contain '..'"
    );
    assert_eq!(rel_components("/a//./b/").unwrap(), ["a", "b"]);
    assert_eq!(parse_mac("02:00:00:00:00"), None);
    assert_eq!(parse_mac("02:00:00:00:00:0g"), None);
}

/// The child's ops up to pivot_root, as (step, path) of their descriptions.
fn steps(p: &ChildPlan) -> Vec<(&'static str, String)> {
    p.descs.iter().map(|d| (d.step, d.path.clone())).collect()
}

#[test]
fn without_exports_the_root_is_private_before_anything_is_mounted() {
    let (p, prep) = build_with(PVR, false);
    let st = steps(&p);
    assert_eq!(st[1], ("make private", "/".to_string()));
    assert!(matches!(&p.ops[1].kind,
        OpKind::Propagation { target, flags } if s(target) == "/" && *flags == ms::REC | ms::PRIVATE));
    assert!(matches!(p.ops[2].kind, OpKind::MountRootfs { .. }));
    assert!(!p
        .ops
        .iter()
        .any(|o| matches!(o.kind, OpKind::Export { .. })));
    assert!(prep.exports.is_empty());
}

#[test]
fn exports_are_bound_between_the_rootfs_and_making_everything_private() {
    let (p, prep) = build_exports(&["/usr/bin", "www/cgi-bin/", "./etc"]).expect("plans");
    let st = steps(&p);
    // the rootfs mount point is made private (the host keeps it a mount point), the root
    // only once the exports are bound: nothing but them propagates
    let rootmnt = "/t/run/lxc/rootfs".to_string();
    assert_eq!(
        st[1..8],
        [
            ("make private", rootmnt.clone()),
            ("mount", format!("overlay on {rootmnt}")),
            ("open", rootmnt),
            ("export", "/usr/bin".into()),
            ("export", "/www/cgi-bin".into()),
            ("export", "/etc".into()),
            ("make private", "/".into()),
        ]
    );
    assert!(matches!(&p.ops[1].kind,
        OpKind::Propagation { flags, .. } if *flags == ms::PRIVATE));
    assert!(matches!(&p.ops[7].kind,
        OpKind::Propagation { target, flags } if s(target) == "/" && *flags == ms::REC | ms::PRIVATE));
    assert!(matches!(&p.ops[4].kind,
        OpKind::Export { rel, dir, host }
            if s(rel) == "usr/bin" && s(dir) == "/t/exports/web"
                && s(host) == "/t/exports/web/usr/bin"));
    // no mount in the rootfs before the root is private
    assert!(p.ops[..7]
        .iter()
        .all(|o| !matches!(o.kind, OpKind::Mount { .. } | OpKind::Mkdir { .. })));
    // a failing export fails the start
    assert!(p.ops[4..7].iter().all(|o| !o.optional));
    let want: Vec<PathBuf> = ["usr/bin", "www/cgi-bin", "etc"]
        .iter()
        .map(|e| Path::new("/t/exports/web").join(e))
        .collect();
    assert_eq!(prep.exports, want);
    assert!(want.iter().all(|w| prep.dirs.contains(w)));
}

#[test]
fn bad_export_entries_are_refused_naming_the_entry() {
    for (entries, entry, message) in [
        (&["/usr/../etc"][..], "/usr/../etc", "must not contain '..'"),
        (&["/"][..], "/", "must name a directory below the root"),
        (&["./"][..], "./", "must name a directory below the root"),
        (
            &["/usr", "/usr/bin"][..],
            "/usr/bin",
            "overlaps the export /usr",
        ),
        (
            &["usr/bin", "/usr"][..],
            "/usr",
            "overlaps the export /usr/bin",
        ),
        (
            &["/data", "data/"][..],
            "data/",
            "overlaps the export /data",
        ),
        (&["a\0b"][..], "a\\0b", "contains a NUL byte"),
    ] {
        let e = build_exports(entries).expect_err(entry);
        assert_eq!(
            (e.step, e.path.as_str(), e.message.as_str()),
            ("export", entry, message),
            "{entries:?}"
        );
    }
    // siblings that share a prefix are not nested
    assert_eq!(
        export_entries(&["/usr".into(), "/usrlocal".into()]).unwrap(),
        ["usr", "usrlocal"]
    );
}
