use super::*;

fn ok(text: &str) -> LxcConfig {
    match parse(text, "t.conf") {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {}", e),
    }
}

fn err(text: &str) -> LxcError {
    match parse(text, "t.conf") {
        Ok(c) => panic!("expected an error, got {:?}", c),
        Err(e) => e,
    }
}

/// Parses and asserts there is no warning.
fn clean(text: &str) -> LxcConfig {
    let c = ok(text);
    assert!(c.warnings.is_empty(), "warnings: {:?}", c.warnings);
    c
}

fn one_warning(text: &str) -> (LxcConfig, String) {
    let c = ok(text);
    assert_eq!(c.warnings.len(), 1, "warnings: {:?}", c.warnings);
    let w = c.warnings[0].clone();
    (c, w)
}

fn s(v: &str) -> String {
    v.to_string()
}

fn entry(text: &str) -> MountEntry {
    let c = ok(&format!("lxc.mount.entry = {}", text));
    assert_eq!(c.mount_entries.len(), 1);
    c.mount_entries[0].clone()
}

const SPEC_EXAMPLE: &str = r#"lxc.tty.max = 8
lxc.pty.max = 1024
lxc.cgroup.devices.allow = a
lxc.rootfs.path = overlayfs:/volumes/web/root.squashfs:/volumes/web/lxc-overlay/upper
lxc.init.cmd = /usr/sbin/httpd "-f" "-p" "8080"
lxc.init.cwd = /srv
lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
lxc.namespace.keep = user net ipc
lxc.mount.auto = proc sys:rw cgroup
lxc.mount.entry = /etc/resolv.conf etc/resolv.conf none bind,rw,create=file 0 0
lxc.mount.entry = tmpfs run tmpfs rw,nodev,relatime,create=dir,mode=755 0 0
lxc.mount.entry = /volumes/web/docker--srv-data srv/data none bind,rw,create=dir 0 0
"#;

#[test]
fn spec_example_parses_to_the_exact_struct() {
    let expected = LxcConfig {
        rootfs: Some(Rootfs::Overlay {
            lowers: vec![s("/volumes/web/root.squashfs")],
            upper: s("/volumes/web/lxc-overlay/upper"),
        }),
        init_cmd: vec![s("/usr/sbin/httpd"), s("-f"), s("-p"), s("8080")],
        init_cwd: Some(s("/srv")),
        environment: vec![(
            s("PATH"),
            s("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        )],
        namespace_keep: NamespaceKeep {
            user: true,
            net: true,
            ipc: true,
            ..NamespaceKeep::default()
        },
        net: vec![],
        mount_auto: MountAuto {
            proc: true,
            proc_rw: false,
            sys: SysMode::Rw,
            cgroup: true,
            cgroup_mode: CgroupMode::Auto,
            cgroup_full: false,
            cgroup_force: false,
        },
        mount_entries: vec![
            MountEntry {
                source: s("/etc/resolv.conf"),
                target: s("etc/resolv.conf"),
                fstype: s("none"),
                flags: MS_BIND,
                propagation: 0,
                data: s(""),
                create: Some(Create::File),
                optional: false,
            },
            MountEntry {
                source: s("tmpfs"),
                target: s("run"),
                fstype: s("tmpfs"),
                flags: MS_NODEV | MS_RELATIME,
                propagation: 0,
                data: s("mode=755"),
                create: Some(Create::Dir),
                optional: false,
            },
            MountEntry {
                source: s("/volumes/web/docker--srv-data"),
                target: s("srv/data"),
                fstype: s("none"),
                flags: MS_BIND,
                propagation: 0,
                data: s(""),
                create: Some(Create::Dir),
                optional: false,
            },
        ],
        autodev: true,
        tty_max: Some(8),
        pty_max: Some(1024),
        console_path: None,
        cap_drop: vec![],
        cap_keep: vec![],
        cap_keep_set: false,
        cgroup_devices: vec![(true, s("a"))],
        cgroup_knobs: vec![],
        log_file: None,
        log_level: None,
        signal_halt: None,
        signal_stop: None,
        uts_name: None,
        seccomp_profile: None,
        no_new_privs: false,
        warnings: vec![],
    };
    assert_eq!(ok(SPEC_EXAMPLE), expected);
}

/// pvr's builtin docker template (templates/builtin-lxc-docker.go) as it renders for an nginx
/// image with an entrypoint, a working dir, two env vars, one persistent volume,
/// PV_DEBUG_MODE, PV_SECURITY_FULLDEV and PV_SECURITY_WITH_STORAGE set.
const DOCKER_TEMPLATE: &str = r#"lxc.tty.max = 8
lxc.pty.max = 1024
lxc.log.file = web.log
lxc.cgroup.devices.allow = a
lxc.rootfs.path = overlayfs:/volumes/web/root.squashfs:/volumes/web/lxc-overlay/upper
lxc.init.cmd = /docker-entrypoint.sh "nginx" "-g" "daemon off;"
lxc.init.cwd = /usr/share/nginx
lxc.environment = PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
lxc.environment = NGINX_VERSION=1.25.3
lxc.namespace.keep = user net ipc
lxc.console.path = none
lxc.mount.auto = proc sys:rw cgroup-full
lxc.mount.entry = /dev/ dev none bind,rw,create=dir 0 0
lxc.mount.entry = /storage storage none bind,rw,create=dir 0 0
lxc.mount.entry = /etc/resolv.conf etc/resolv.conf none bind,rw,create=file 0 0
lxc.mount.entry = tmpfs run tmpfs rw,nodev,relatime,mode=755 0 0
lxc.mount.entry = /volumes/web/docker--var-cache-nginx var/cache/nginx none bind,rw,create=dir 0 0
"#;

#[test]
fn docker_template_parses_without_warnings() {
    let c = clean(DOCKER_TEMPLATE);
    assert_eq!(
        c.init_cmd,
        vec![
            s("/docker-entrypoint.sh"),
            s("nginx"),
            s("-g"),
            s("daemon off;")
        ]
    );
    assert_eq!(c.init_cwd.as_deref(), Some("/usr/share/nginx"));
    assert_eq!(c.environment.len(), 2);
    assert_eq!(c.log_file.as_deref(), Some("web.log"));
    assert!(c.console_disabled());
    assert!(c.mount_auto.cgroup && c.mount_auto.cgroup_full);
    assert_eq!(c.mount_auto.cgroup_mode, CgroupMode::Auto);
    assert_eq!(c.mount_auto.sys, SysMode::Rw);
    assert!(c.mount_auto.proc && !c.mount_auto.proc_rw);
    let targets: Vec<&str> = c.mount_entries.iter().map(|m| m.target.as_str()).collect();
    assert_eq!(
        targets,
        [
            "dev",
            "storage",
            "etc/resolv.conf",
            "run",
            "var/cache/nginx"
        ]
    );
    assert!(c.mount_entries.iter().all(|m| !m.needs_ro_remount()));
    assert_eq!(c.cgroup_devices, vec![(true, s("a"))]);
    assert!(c.net.is_empty());
}

#[test]
fn docker_template_without_command_defaults_to_sbin_init() {
    // No Cmd/Entrypoint and no WorkingDir: the template renders ` /sbin/init`.
    let c = clean("lxc.init.cmd = /sbin/init\nlxc.namespace.keep = user net ipc\n");
    assert_eq!(c.init_cmd, vec![s("/sbin/init")]);
    // An entrypoint of [""] renders an empty `lxc.init.cmd =`.
    assert_eq!(clean("lxc.init.cmd =\n").init_cmd, vec![s("/sbin/init")]);
}

#[test]
fn old_docker_template_legacy_keys_are_mapped_with_warnings() {
    let text = "lxc.tty = 4\nlxc.pts = 1024\nlxc.cgroup.devices.allow = a\nlxc.utsname = major\n\
        lxc.rootfs = overlayfs:/volumes/a/root.squashfs:/volumes/a/lxc-overlay/upper\n\
        lxc.init.cmd = /bin/sh\nlxc.mount.auto = proc sys:rw cgroup-full\n\
        lxc.environment = force_noncontainer=1\n";
    let c = ok(text);
    assert_eq!(c.tty_max, Some(4));
    assert_eq!(c.pty_max, Some(1024));
    assert_eq!(c.uts_name.as_deref(), Some("major"));
    assert!(matches!(c.rootfs, Some(Rootfs::Overlay { .. })));
    assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
    for (w, (line, key)) in c.warnings.iter().zip([
        (1, "lxc.tty"),
        (2, "lxc.pts"),
        (4, "lxc.utsname"),
        (5, "lxc.rootfs"),
    ]) {
        assert!(
            w.starts_with(&format!("t.conf:{}: legacy key {},", line, key)),
            "{}",
            w
        );
    }
}

#[test]
fn other_legacy_keys() {
    let c = ok(
        "lxc.init_cmd = /bin/x \"a b\"\nlxc.haltsignal = SIGPWR\nlxc.stopsignal = SIGKILL\n\
        lxc.console = none\nlxc.logfile = /tmp/l\nlxc.loglevel = DEBUG\n",
    );
    assert_eq!(c.init_cmd, vec![s("/bin/x"), s("a b")]);
    assert_eq!(c.signal_halt.as_deref(), Some("SIGPWR"));
    assert_eq!(c.signal_stop.as_deref(), Some("SIGKILL"));
    assert!(c.console_disabled());
    assert_eq!(c.log_file.as_deref(), Some("/tmp/l"));
    assert_eq!(c.log_level.as_deref(), Some("DEBUG"));
    assert_eq!(c.warnings.len(), 6);
    // Renamed: one warning naming both.
    let (_, w) = one_warning("lxc.aa_profile = unconfined");
    assert!(
        w.contains("lxc.aa_profile") && w.contains("lxc.apparmor.profile"),
        "{}",
        w
    );
    let (_, w) = one_warning("lxc.pivotdir = lxc_putold");
    assert!(
        w.contains("lxc.pivotdir") && w.contains("obsolete"),
        "{}",
        w
    );
    let (_, w) = one_warning("lxc.kmsg = 0");
    assert!(w.contains("lxc.kmsg"), "{}", w);
}

#[test]
fn legacy_unnumbered_network_keys() {
    let c = ok(
        "lxc.network.type = veth\nlxc.network.link = br0\nlxc.network.flags = up\n\
        lxc.network.ipv4 = 10.0.0.2/24\nlxc.network.ipv4.gateway = 10.0.0.1\n\
        lxc.network.type = empty\n",
    );
    assert_eq!(c.net.len(), 2);
    assert_eq!(c.net[0].index, 0);
    assert_eq!(c.net[0].kind, NetKind::Veth);
    assert_eq!(c.net[0].link.as_deref(), Some("br0"));
    assert!(c.net[0].flags_up);
    assert_eq!(
        c.net[0].ipv4_address,
        Some((Ipv4Addr::new(10, 0, 0, 2), 24))
    );
    assert_eq!(c.net[0].ipv4_gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
    assert_eq!(c.net[1].index, 1);
    assert_eq!(c.net[1].kind, NetKind::Empty);
    assert_eq!(c.warnings.len(), 6);
    // Numbered legacy form.
    let c = ok("lxc.network.3.type = phys\nlxc.network.3.link = eth1\n");
    assert_eq!(c.net[0].index, 3);
    assert_eq!(c.net[0].kind, NetKind::Phys);
    // A field before any type has no network to go to.
    let (c, w) = one_warning("lxc.network.link = br0");
    assert!(c.net.is_empty());
    assert!(w.contains("lxc.network.link"), "{}", w);
}

// ---- line syntax ----

#[test]
fn comments_blank_lines_spacing_and_crlf() {
    let c =
        clean("# comment\n\n   # indented comment\r\nlxc.tty.max=3\r\n\tlxc.pty.max   =   7  \r\n");
    assert_eq!(c.tty_max, Some(3));
    assert_eq!(c.pty_max, Some(7));
    assert_eq!(clean(""), LxcConfig::default());
}

#[test]
fn defaults() {
    let c = LxcConfig::default();
    assert_eq!(c.init_cmd, vec![s("/sbin/init")]);
    assert!(c.autodev);
    assert_eq!(
        c.mount_auto,
        clean("lxc.mount.auto = proc sys:rw cgroup").mount_auto
    );
    assert!(!c.console_disabled());
    assert!(c.rootfs.is_none());
}

#[test]
fn no_inline_comments_and_whole_value_quotes_stripped() {
    // LXC has no trailing comments: the '#' belongs to the value.
    let c = clean("lxc.uts.name = box # not a comment");
    assert_eq!(c.uts_name.as_deref(), Some("box # not a comment"));
    // LXC drops one pair of quotes around a whole value.
    assert_eq!(
        clean("lxc.uts.name = \"my box\"").uts_name.as_deref(),
        Some("my box")
    );
    assert_eq!(clean("lxc.uts.name = 'b'").uts_name.as_deref(), Some("b"));
    assert_eq!(clean("lxc.uts.name = \"").uts_name.as_deref(), Some("\""));
    let c = clean("lxc.environment = \"A=b c\"");
    assert_eq!(c.environment, vec![(s("A"), s("b c"))]);
}

// ---- each key of the table ----

#[test]
fn rootfs_forms() {
    let c = clean("lxc.rootfs.path = overlayfs:/a:/b:/c:/up");
    assert_eq!(
        c.rootfs,
        Some(Rootfs::Overlay {
            lowers: vec![s("/a"), s("/b"), s("/c")],
            upper: s("/up")
        })
    );
    let c = clean("lxc.rootfs.path = overlay:/l:/u");
    assert_eq!(
        c.rootfs,
        Some(Rootfs::Overlay {
            lowers: vec![s("/l")],
            upper: s("/u")
        })
    );
    assert_eq!(
        clean("lxc.rootfs.path = /srv/root").rootfs,
        Some(Rootfs::Dir(s("/srv/root")))
    );
    assert_eq!(
        clean("lxc.rootfs.path = dir:/srv/root").rootfs,
        Some(Rootfs::Dir(s("/srv/root")))
    );
    assert_eq!(
        clean("lxc.rootfs.path = /x\nlxc.rootfs.path =").rootfs,
        None
    );
    for bad in [
        "overlayfs:/only",
        "overlayfs:",
        "overlayfs::/u",
        "overlay:/l:",
        "btrfs:/x",
        "loop:/img",
        "relative/path",
        "dir:",
    ] {
        let e = err(&format!("lxc.rootfs.path = {}", bad));
        assert_eq!(e.line, 1);
        assert!(e.message.contains("lxc.rootfs.path"), "{}", e);
    }
}

#[test]
fn init_cmd_quoting() {
    let cases: &[(&str, &[&str])] = &[
        ("/bin/app", &["/bin/app"]),
        ("  /bin/app   a\tb  ", &["/bin/app", "a", "b"]),
        (
            r#"/bin/sh "-c" "echo hello world""#,
            &["/bin/sh", "-c", "echo hello world"],
        ),
        (r#"/x "a \"quoted\" word""#, &["/x", r#"a "quoted" word"#]),
        (r#"/x "back\\slash""#, &["/x", r"back\slash"]),
        (r#"/x "C:\path""#, &["/x", r"C:\path"]),
        (r#"/x """#, &["/x", ""]),
        (r#"/x "" "b""#, &["/x", "", "b"]),
        (r#"/x --opt="a b""#, &["/x", "--opt=a b"]),
        (r#"/x "a"b"#, &["/x", "ab"]),
        ("/x 'single $quoted' y", &["/x", "single $quoted", "y"]),
        (r#"/x 'a\"b'"#, &["/x", r#"a\"b"#]),
        (r"/x a\b", &["/x", r"a\b"]),
        (
            r#"/docker-entrypoint.sh "nginx" "-g" "daemon off;""#,
            &["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"],
        ),
    ];
    for (value, argv) in cases {
        let c = clean(&format!("lxc.init.cmd = {}", value));
        assert_eq!(c.init_cmd, *argv, "value {:?}", value);
    }
    // Quotes around the whole value are the tokenizer's: not stripped first.
    let c = clean(r#"lxc.init.cmd = "/bin/my app" "x""#);
    assert_eq!(c.init_cmd, vec![s("/bin/my app"), s("x")]);
    // Unterminated: the rest is the word, with a warning.
    let (c, w) = one_warning(r#"lxc.init.cmd = /x "a b"#);
    assert_eq!(c.init_cmd, vec![s("/x"), s("a b")]);
    assert!(w.contains("unterminated"), "{}", w);
    // The last line wins; an empty value restores the default.
    let c = clean("lxc.init.cmd = /a\nlxc.init.cmd = /b");
    assert_eq!(c.init_cmd, vec![s("/b")]);
    assert_eq!(
        clean("lxc.init.cmd = /a\nlxc.init.cmd =").init_cmd,
        vec![s("/sbin/init")]
    );
}

#[test]
fn init_cwd() {
    assert_eq!(
        clean("lxc.init.cwd = /srv").init_cwd.as_deref(),
        Some("/srv")
    );
    assert_eq!(clean("lxc.init.cwd = /srv\nlxc.init.cwd =").init_cwd, None);
    let (c, w) = one_warning("lxc.init.cwd = srv");
    assert_eq!(c.init_cwd.as_deref(), Some("srv"));
    assert!(w.contains("absolute"), "{}", w);
}

#[test]
fn environment_order_replace_and_clear() {
    let c = clean(
        "lxc.environment = A=1\nlxc.environment = B=x=y\nlxc.environment = A=2\n\
         lxc.environment = C=\nlxc.environment = D= spaced value ",
    );
    assert_eq!(
        c.environment,
        vec![
            (s("A"), s("2")),
            (s("B"), s("x=y")),
            (s("C"), s("")),
            (s("D"), s(" spaced value"))
        ]
    );
    let c = clean("lxc.environment = A=1\nlxc.environment =\nlxc.environment = B=2");
    assert_eq!(c.environment, vec![(s("B"), s("2"))]);
    for bad in ["HOSTVAR", "=value"] {
        let (c, w) = one_warning(&format!("lxc.environment = {}", bad));
        assert!(c.environment.is_empty());
        assert!(w.contains("lxc.environment"), "{}", w);
    }
}

#[test]
fn namespace_keep() {
    let c = clean("lxc.namespace.keep = user net ipc mnt pid uts cgroup time");
    let all = NamespaceKeep {
        user: true,
        net: true,
        ipc: true,
        mnt: true,
        pid: true,
        uts: true,
        cgroup: true,
        time: true,
    };
    assert_eq!(c.namespace_keep, all);
    let c = clean("lxc.namespace.keep = user\nlxc.namespace.keep = net");
    assert!(c.namespace_keep.user && c.namespace_keep.net && !c.namespace_keep.ipc);
    let c = clean("lxc.namespace.keep = user\nlxc.namespace.keep =\nlxc.namespace.keep = ipc");
    assert!(!c.namespace_keep.user && c.namespace_keep.ipc);
    let (c, w) = one_warning("lxc.namespace.keep = net bogus");
    assert!(c.namespace_keep.net);
    assert!(w.contains("bogus"), "{}", w);
}

#[test]
fn network_entries() {
    let c = clean(
        "lxc.net.1.type = phys\nlxc.net.1.link = eth1\n\
         lxc.net.0.type = veth\nlxc.net.0.link = lxcbr0\nlxc.net.0.flags = up\n\
         lxc.net.0.ipv4.address = 10.0.3.2/24\nlxc.net.0.ipv4.gateway = 10.0.3.1\n\
         lxc.net.0.hwaddr = 00:16:3e:xx:xx:xx\nlxc.net.0.name = eth0\nlxc.net.0.mtu = 1400\n\
         lxc.net.0.veth.pair = vethweb\nlxc.net.7.type = none\nlxc.net.5.type = macvlan\n\
         lxc.net.6.type = empty\nlxc.net.8.type = ipvlan\nlxc.net.9.type = vlan\n",
    );
    let idx: Vec<u32> = c.net.iter().map(|n| n.index).collect();
    assert_eq!(idx, [0, 1, 5, 6, 7, 8, 9]);
    assert_eq!(
        c.net[0],
        NetEntry {
            index: 0,
            kind: NetKind::Veth,
            link: Some(s("lxcbr0")),
            flags_up: true,
            ipv4_address: Some((Ipv4Addr::new(10, 0, 3, 2), 24)),
            ipv4_gateway: Some(Ipv4Addr::new(10, 0, 3, 1)),
            hwaddr: Some(s("00:16:3e:xx:xx:xx")),
            name: Some(s("eth0")),
            mtu: Some(1400),
            veth_pair: Some(s("vethweb")),
        }
    );
    assert_eq!(c.net[1].kind, NetKind::Phys);
    assert_eq!(c.net[1].link.as_deref(), Some("eth1"));
    let kinds: Vec<NetKind> = c.net.iter().skip(2).map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        [
            NetKind::Macvlan,
            NetKind::Empty,
            NetKind::None,
            NetKind::Ipvlan,
            NetKind::Vlan
        ]
    );
}

#[test]
fn network_prefix_default_clear_and_unsupported() {
    let c = clean("lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.1.2.3");
    assert_eq!(c.net[0].ipv4_address, Some((Ipv4Addr::new(10, 1, 2, 3), 8)));
    let c = ok("lxc.net.0.ipv4.address = 172.16.0.1\nlxc.net.1.ipv4.address = 192.168.1.2");
    assert_eq!(c.net[0].ipv4_address.map(|a| a.1), Some(16));
    assert_eq!(c.net[1].ipv4_address.map(|a| a.1), Some(24));
    let c = ok("lxc.net.0.ipv4.address = 10.0.0.1/0\nlxc.net.1.ipv4.address = 10.0.0.1/32");
    assert_eq!(c.net[0].ipv4_address.map(|a| a.1), Some(0));
    assert_eq!(c.net[1].ipv4_address.map(|a| a.1), Some(32));
    // Broadcast part: warned, address kept.
    let (c, w) =
        one_warning("lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.0.2/24 10.0.0.255");
    assert_eq!(
        c.net[0].ipv4_address,
        Some((Ipv4Addr::new(10, 0, 0, 2), 24))
    );
    assert!(w.contains("broadcast"), "{}", w);
    // Second address: the last wins, warned.
    let (c, w) = one_warning(
        "lxc.net.0.type = veth\nlxc.net.0.ipv4.address = 10.0.0.2/24\nlxc.net.0.ipv4.address = 10.0.0.3/24",
    );
    assert_eq!(
        c.net[0].ipv4_address,
        Some((Ipv4Addr::new(10, 0, 0, 3), 24))
    );
    assert!(w.starts_with("t.conf:3:"), "{}", w);
    // A network without a type: read as empty, warned once (without a line).
    let (c, w) = one_warning("lxc.net.2.link = br0");
    assert_eq!(c.net[0].kind, NetKind::Empty);
    assert_eq!(w, "t.conf: lxc.net.2 has no type, read as empty");
    let (_, w) = one_warning("lxc.net.0.type = veth\nlxc.net.0.type =");
    assert!(w.contains("lxc.net.0 has no type"), "{}", w);
    clean("lxc.net.0.type = veth\nlxc.net.0 =\nlxc.net.1.type = phys");
    // Empty values clear a field, a network, or all networks.
    let c = clean("lxc.net.0.type = veth\nlxc.net.0.link = br\nlxc.net.0.link =");
    assert_eq!(c.net[0].link, None);
    let c = clean("lxc.net.0.type = veth\nlxc.net.1.type = phys\nlxc.net.0 =");
    assert_eq!(c.net.len(), 1);
    assert_eq!(c.net[0].index, 1);
    assert!(
        clean("lxc.net.0.type = veth\nlxc.net.1.type = veth\nlxc.net =")
            .net
            .is_empty()
    );
    let c = clean("lxc.net.0.type = veth\nlxc.net.0.flags = up\nlxc.net.0.flags =");
    assert!(!c.net[0].flags_up);
    // Gateway auto/dev and other LXC net keys: warned, never silent.
    let (c, w) = one_warning("lxc.net.0.type = veth\nlxc.net.0.ipv4.gateway = auto");
    assert_eq!(c.net.first().and_then(|n| n.ipv4_gateway), None);
    assert!(w.contains("auto"), "{}", w);
    for key in [
        "ipv6.address",
        "script.up",
        "macvlan.mode",
        "vlan.id",
        "l2proxy",
    ] {
        let (_, w) = one_warning(&format!("lxc.net.0.{} = x", key));
        assert!(w.contains(&format!("lxc.net.0.{}", key)), "{}", w);
    }
    let (_, w) = one_warning("lxc.net.0.type = veth\nlxc.net.0.flags = down");
    assert!(w.contains("down"), "{}", w);
    let (_, w) = one_warning("lxc.net.0 = x");
    assert!(w.contains("lxc.net.0"), "{}", w);
}

#[test]
fn mount_auto_words() {
    let m = |v: &str| clean(&format!("lxc.mount.auto = {}", v)).mount_auto;
    assert_eq!(
        m("proc"),
        MountAuto {
            proc: true,
            ..MountAuto::NONE
        }
    );
    assert_eq!(m("proc:mixed"), m("proc"));
    assert!(m("proc:rw").proc_rw);
    assert_eq!(m("sys").sys, SysMode::Mixed);
    assert_eq!(m("sys:mixed").sys, SysMode::Mixed);
    assert_eq!(m("sys:ro").sys, SysMode::Ro);
    assert_eq!(m("sys:rw").sys, SysMode::Rw);
    assert!(!m("sys:rw").proc && !m("sys:rw").cgroup);
    for (word, mode, full, force) in [
        ("cgroup", CgroupMode::Auto, false, false),
        ("cgroup:mixed", CgroupMode::Mixed, false, false),
        ("cgroup:ro", CgroupMode::Ro, false, false),
        ("cgroup:rw", CgroupMode::Rw, false, false),
        ("cgroup:force", CgroupMode::Auto, false, true),
        ("cgroup:mixed:force", CgroupMode::Mixed, false, true),
        ("cgroup-full", CgroupMode::Auto, true, false),
        ("cgroup-full:ro", CgroupMode::Ro, true, false),
        ("cgroup-full:rw:force", CgroupMode::Rw, true, true),
    ] {
        let a = m(word);
        assert!(a.cgroup, "{}", word);
        assert_eq!(
            (a.cgroup_mode, a.cgroup_full, a.cgroup_force),
            (mode, full, force),
            "{}",
            word
        );
    }
    // Several lines add up; within a category the last word wins; empty clears everything.
    let c = clean(
        "lxc.mount.auto = proc\nlxc.mount.auto = sys:ro cgroup:mixed\nlxc.mount.auto = sys:rw",
    );
    assert!(c.mount_auto.proc && c.mount_auto.cgroup);
    assert_eq!(c.mount_auto.sys, SysMode::Rw);
    assert_eq!(clean("lxc.mount.auto =").mount_auto, MountAuto::NONE);
    assert_eq!(
        clean("lxc.mount.auto = proc\nlxc.mount.auto =").mount_auto,
        MountAuto::NONE
    );
    for bad in [
        "sys:bogus",
        "cgroup:weird",
        "shmounts:/a:/b",
        "proc:ro",
        "nonsense",
    ] {
        let (c, w) = one_warning(&format!("lxc.mount.auto = proc {}", bad));
        assert!(c.mount_auto.proc);
        assert!(w.contains(bad), "{}", w);
    }
}

#[test]
fn mount_entry_flag_options() {
    let cases: &[(&str, u64)] = &[
        ("ro", MS_RDONLY),
        ("ro,rw", 0),
        ("nosuid", MS_NOSUID),
        ("nosuid,suid", 0),
        ("nodev", MS_NODEV),
        ("nodev,dev", 0),
        ("noexec", MS_NOEXEC),
        ("noexec,exec", 0),
        ("sync", MS_SYNCHRONOUS),
        ("sync,async", 0),
        ("remount", MS_REMOUNT),
        ("mand", MS_MANDLOCK),
        ("mand,nomand", 0),
        ("dirsync", MS_DIRSYNC),
        ("noatime", MS_NOATIME),
        ("noatime,atime", 0),
        ("nodiratime", MS_NODIRATIME),
        ("nodiratime,diratime", 0),
        ("relatime", MS_RELATIME),
        ("relatime,norelatime", 0),
        ("strictatime", MS_STRICTATIME),
        ("strictatime,nostrictatime", 0),
        ("lazytime", MS_LAZYTIME),
        ("lazytime,nolazytime", 0),
        ("nosymfollow", MS_NOSYMFOLLOW),
        ("iversion", MS_I_VERSION),
        ("bind", MS_BIND),
        ("rbind", MS_BIND | MS_REC),
        ("move", MS_MOVE),
        ("silent", MS_SILENT),
        ("silent,loud", 0),
        ("defaults", 0),
        (
            "rw,nosuid,nodev,noexec,relatime",
            MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RELATIME,
        ),
    ];
    for (opts, flags) in cases {
        let m = entry(&format!("a b c {} 0 0", opts));
        assert_eq!(m.flags, *flags, "{}", opts);
        assert_eq!(m.data, "", "{}", opts);
        assert_eq!(m.propagation, 0, "{}", opts);
    }
    // The Linux ABI values.
    assert_eq!(
        (MS_RDONLY, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME),
        (1, 4096, 16384, 262144, 2097152)
    );
}

#[test]
fn mount_entry_propagation_data_create_optional() {
    for (opt, prop) in [
        ("private", MS_PRIVATE),
        ("rprivate", MS_PRIVATE | MS_REC),
        ("slave", MS_SLAVE),
        ("rslave", MS_SLAVE | MS_REC),
        ("shared", MS_SHARED),
        ("rshared", MS_SHARED | MS_REC),
        ("unbindable", MS_UNBINDABLE),
        ("runbindable", MS_UNBINDABLE | MS_REC),
    ] {
        let m = entry(&format!("/a b none bind,{} 0 0", opt));
        assert_eq!(m.propagation, prop, "{}", opt);
        assert_eq!(m.flags, MS_BIND, "{}", opt);
    }
    let m = entry("tmpfs dev/shm tmpfs nosuid,mode=1777,size=64k,uid=0,nodev,create=dir,optional");
    assert_eq!(m.flags, MS_NOSUID | MS_NODEV);
    assert_eq!(m.data, "mode=1777,size=64k,uid=0");
    assert_eq!(m.create, Some(Create::Dir));
    assert!(m.optional);
    let m = entry("/etc/hosts etc/hosts none bind,create=file 0 0");
    assert_eq!(m.create, Some(Create::File));
    assert!(!m.optional);
    assert_eq!(
        entry("/a b none bind,create=file,create=dir").create,
        Some(Create::Dir)
    );
    // Unknown LXC-only options: warned, not passed to the kernel.
    for opt in ["create=link", "relative", "idmap=container"] {
        let (c, w) = one_warning(&format!("lxc.mount.entry = /a b none bind,{} 0 0", opt));
        assert_eq!(c.mount_entries[0].data, "");
        assert!(w.contains(opt), "{}", w);
    }
}

#[test]
fn mount_entry_fields_target_and_remount() {
    let m = entry("/dev/ /dev none bind,rw,create=dir 0 0");
    assert_eq!((m.source.as_str(), m.target.as_str()), ("/dev/", "dev"));
    assert_eq!(entry("/a //srv//x/ none bind").target, "srv//x/");
    assert_eq!(entry("/a / none bind").target, "");
    // dump and pass are optional.
    assert_eq!(entry("proc proc proc nodev").fstype, "proc");
    assert_eq!(entry("proc proc proc nodev 0").fstype, "proc");
    // fstab octal escapes.
    let m = entry(r"/my\040dir a\011b none bind 0 0");
    assert_eq!((m.source.as_str(), m.target.as_str()), ("/my dir", "a\tb"));
    assert_eq!(entry(r"/a\\b\0 c none bind").source, r"/a\\b\0");
    // ro bind: needs the remount; rw bind does not.
    let m = entry("/a b none bind,ro 0 0");
    assert!(m.needs_ro_remount());
    assert_eq!(
        m.bind_remount_flags(),
        Some(MS_REMOUNT | MS_BIND | MS_RDONLY)
    );
    let m = entry("/a b none rbind,nosuid,nodev 0 0");
    assert!(!m.needs_ro_remount());
    assert_eq!(
        m.bind_remount_flags(),
        Some(MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV)
    );
    assert_eq!(entry("/a b none bind,rw 0 0").bind_remount_flags(), None);
    assert!(!entry("tmpfs b tmpfs ro 0 0").needs_ro_remount());
    // Odd dump/pass fields: warned, entry kept.
    for v in ["/a b none bind x 0", "/a b none bind 0 0 9"] {
        let (c, w) = one_warning(&format!("lxc.mount.entry = {}", v));
        assert_eq!(c.mount_entries.len(), 1);
        assert!(w.contains("dump/pass"), "{}", w);
    }
    // Entries accumulate; an empty value clears them.
    let c = clean("lxc.mount.entry = /a a none bind\nlxc.mount.entry = /b b none bind");
    assert_eq!(c.mount_entries.len(), 2);
    let c = clean(
        "lxc.mount.entry = /a a none bind\nlxc.mount.entry =\nlxc.mount.entry = /b b none bind",
    );
    assert_eq!(c.mount_entries.len(), 1);
    assert_eq!(c.mount_entries[0].source, "/b");
}

#[test]
fn autodev_tty_pty_console() {
    assert!(!clean("lxc.autodev = 0").autodev);
    assert!(clean("lxc.autodev = 1").autodev);
    assert!(clean("lxc.autodev = 0\nlxc.autodev =").autodev);
    let c = clean("lxc.tty.max = 0\nlxc.pty.max = 4096");
    assert_eq!((c.tty_max, c.pty_max), (Some(0), Some(4096)));
    let c = clean("lxc.tty.max = 1\nlxc.tty.max =\nlxc.pty.max = 2\nlxc.pty.max =");
    assert_eq!((c.tty_max, c.pty_max), (None, None));
    let c = clean("lxc.console.path = /dev/ttyS0");
    assert_eq!(c.console_path.as_deref(), Some("/dev/ttyS0"));
    assert!(!c.console_disabled());
    assert!(clean("lxc.console.path = none").console_disabled());
    assert_eq!(
        clean("lxc.console.path = none\nlxc.console.path =").console_path,
        None
    );
    let (_, w) = one_warning("lxc.console.logfile = /tmp/c");
    assert!(w.contains("lxc.console.logfile"), "{}", w);
}

#[test]
fn capabilities() {
    let c =
        clean("lxc.cap.drop = sys_module MKNOD cap_setuid CAP_NET_RAW 25\nlxc.cap.drop = mknod");
    assert_eq!(c.cap_drop, vec![16, 27, 7, 13, 25]);
    assert!(!c.cap_keep_set);
    assert_eq!(
        clean("lxc.cap.drop = mknod\nlxc.cap.drop =").cap_drop,
        Vec::<u32>::new()
    );
    let c = clean("lxc.cap.drop = mknod\nlxc.cap.drop =\nlxc.cap.drop = sys_time");
    assert_eq!(c.cap_drop, vec![25]);
    let c = clean("lxc.cap.keep = sys_admin net_admin");
    assert!(c.cap_keep_set);
    assert_eq!(c.cap_keep, vec![21, 12]);
    assert_eq!(c.caps_to_drop(40).len(), 39);
    assert!(!c.caps_to_drop(40).contains(&21));
    // `none`: keep nothing (drop everything); it also forgets earlier keeps.
    let c = clean("lxc.cap.keep = sys_admin\nlxc.cap.keep = none");
    assert!(c.cap_keep_set && c.cap_keep.is_empty());
    assert_eq!(c.caps_to_drop(40), (0..=40).collect::<Vec<u32>>());
    let c = clean("lxc.cap.keep = sys_admin\nlxc.cap.keep =");
    assert!(!c.cap_keep_set && c.cap_keep.is_empty());
    assert!(c.caps_to_drop(40).is_empty());
    let c = clean("lxc.cap.drop = sys_boot");
    assert_eq!(c.caps_to_drop(40), vec![22]);
    assert_eq!(c.caps_to_drop(5), Vec::<u32>::new());
    // Both: LXC refuses; we apply both and warn once, without a line.
    let (c, w) = one_warning("lxc.cap.keep = chown kill\nlxc.cap.drop = kill");
    assert_eq!(c.caps_to_drop(3), vec![1, 2, 3]);
    assert_eq!(
        w,
        "t.conf: both lxc.cap.drop and lxc.cap.keep are set (LXC refuses this); both apply"
    );
}

#[test]
fn capability_table() {
    assert_eq!(capability_number("chown"), Some(0));
    assert_eq!(capability_number("sys_admin"), Some(21));
    assert_eq!(capability_number("SYS_ADMIN"), Some(21));
    assert_eq!(capability_number("cap_sys_admin"), Some(21));
    assert_eq!(capability_number("CAP_SYS_ADMIN"), Some(21));
    assert_eq!(capability_number("checkpoint_restore"), Some(40));
    assert_eq!(capability_number("bogus"), None);
    assert_eq!(capability_number("cap_"), None);
    assert_eq!(capability_number(""), None);
    for n in 0..=40 {
        let name = capability_name(n).unwrap_or_default();
        assert_eq!(capability_number(name), Some(n));
    }
    assert_eq!(capability_name(41), None);
}

#[test]
fn cgroup_devices_and_knobs() {
    let c = clean(
        "lxc.cgroup.devices.deny = a\nlxc.cgroup.devices.allow = c 1:3 rwm\n\
         lxc.cgroup.devices.allow = b *:* m\nlxc.cgroup2.devices.allow = c 136:* rw\n\
         lxc.cgroup.memory.limit_in_bytes = 64M\nlxc.cgroup2.memory.max = 67108864\n\
         lxc.cgroup2.cpu.max = 50000 100000\n",
    );
    assert_eq!(
        c.cgroup_devices,
        vec![
            (false, s("a")),
            (true, s("c 1:3 rwm")),
            (true, s("b *:* m")),
            (true, s("c 136:* rw"))
        ]
    );
    assert_eq!(
        c.cgroup_knobs,
        vec![
            CgroupKnob {
                v2: false,
                controller_knob: s("memory.limit_in_bytes"),
                value: s("64M")
            },
            CgroupKnob {
                v2: true,
                controller_knob: s("memory.max"),
                value: s("67108864")
            },
            CgroupKnob {
                v2: true,
                controller_knob: s("cpu.max"),
                value: s("50000 100000")
            },
        ]
    );
    // Empty values clear: one rule kind, one knob, or a whole version.
    let c = clean(
        "lxc.cgroup.devices.allow = a\nlxc.cgroup.devices.deny = a\nlxc.cgroup.devices.allow =",
    );
    assert_eq!(c.cgroup_devices, vec![(false, s("a"))]);
    let c = clean("lxc.cgroup2.memory.max = 1\nlxc.cgroup2.pids.max = 5\nlxc.cgroup2.memory.max =");
    assert_eq!(c.cgroup_knobs.len(), 1);
    assert_eq!(c.cgroup_knobs[0].controller_knob, "pids.max");
    let c = clean("lxc.cgroup.memory.x = 1\nlxc.cgroup2.memory.max = 1\nlxc.cgroup.devices.allow = a\nlxc.cgroup =");
    assert_eq!(c.cgroup_knobs.len(), 1);
    assert!(c.cgroup_knobs[0].v2);
    assert!(c.cgroup_devices.is_empty());
    // LXC's own cgroup keys are not knobs.
    for key in [
        "lxc.cgroup.dir",
        "lxc.cgroup.dir.container",
        "lxc.cgroup.relative",
    ] {
        let (c, w) = one_warning(&format!("{} = x", key));
        assert!(c.cgroup_knobs.is_empty());
        assert!(w.contains(key), "{}", w);
    }
    let (c, w) = one_warning("lxc.cgroup.use = x");
    assert!(c.cgroup_knobs.is_empty());
    assert!(w.contains("unknown key lxc.cgroup.use"), "{}", w);
}

#[test]
fn device_rules() {
    let r = |v: &str| DeviceRule::parse(v);
    assert_eq!(
        r("a"),
        Some(DeviceRule {
            kind: 'a',
            major: None,
            minor: None,
            read: true,
            write: true,
            mknod: true
        })
    );
    assert_eq!(
        r("c 1:3 rw"),
        Some(DeviceRule {
            kind: 'c',
            major: Some(1),
            minor: Some(3),
            read: true,
            write: true,
            mknod: false
        })
    );
    let b = r("b *:7 m");
    assert_eq!(
        b.as_ref().map(|b| (b.major, b.minor, b.read, b.mknod)),
        Some((None, Some(7), false, true))
    );
    assert!(r("a *:* rwm").is_some());
    assert!(r("c 5:1").is_some());
    for bad in [
        "",
        "x 1:3 rwm",
        "c",
        "c 1 rwm",
        "c 1:x rwm",
        "c 1:3 rwx",
        "c 1:3 rwm extra",
        "c :3 r",
    ] {
        assert_eq!(r(bad), None, "{:?}", bad);
    }
}

#[test]
fn log_signals_uts() {
    let c = clean("lxc.log.file = /var/log/x.log\nlxc.log.level = 1\nlxc.signal.halt = SIGRTMIN+3\nlxc.signal.stop = 9\nlxc.uts.name = web");
    assert_eq!(c.log_file.as_deref(), Some("/var/log/x.log"));
    assert_eq!(c.log_level.as_deref(), Some("1"));
    assert_eq!(c.signal_halt.as_deref(), Some("SIGRTMIN+3"));
    assert_eq!(c.signal_stop.as_deref(), Some("9"));
    assert_eq!(c.uts_name.as_deref(), Some("web"));
    for v in ["sigpwr", "SIGTERM", "SIGRTMAX-10", "SIGRTMIN", "15"] {
        clean(&format!("lxc.signal.halt = {}", v));
    }
    for v in ["TERM", "SIGBOGUS", "SIGRTMIN-1", "SIGRTMAX+x"] {
        let (c, w) = one_warning(&format!("lxc.signal.halt = {}", v));
        assert_eq!(c.signal_halt.as_deref(), Some(v));
        assert!(w.contains(v), "{}", w);
    }
    for v in ["trace", "NOTICE", "8"] {
        clean(&format!("lxc.log.level = {}", v));
    }
    let (_, w) = one_warning("lxc.log.level = loud");
    assert!(w.contains("loud"), "{}", w);
    let (_, w) = one_warning(&format!("lxc.uts.name = {}", "h".repeat(65)));
    assert!(w.contains("64"), "{}", w);
    let c = clean("lxc.log.file = a\nlxc.log.file =\nlxc.uts.name = a\nlxc.uts.name =\nlxc.signal.stop = 9\nlxc.signal.stop =");
    assert_eq!((c.log_file, c.uts_name, c.signal_stop), (None, None, None));
}

#[test]
fn unknown_ignored_and_include_keys_warn_naming_the_key() {
    let (c, w) = one_warning("lxc.tty.max = 2\nlxc.frobnicate = yes\n");
    assert_eq!(c.tty_max, Some(2));
    assert_eq!(w, "t.conf:2: unknown key lxc.frobnicate, ignored");
    let (_, w) = one_warning("lxc.include = /usr/share/lxc/config/common.conf");
    assert!(
        w.starts_with("t.conf:1: lxc.include") && w.contains("not supported"),
        "{}",
        w
    );
    for key in [
        "lxc.arch",
        "lxc.apparmor.raw",
        "lxc.seccomp.allow_nesting",
        "lxc.seccomp.notify.proxy",
        "lxc.hook.mount",
        "lxc.start.auto",
        "lxc.idmap",
        "lxc.prlimit.nofile",
        "lxc.sysctl.net.ipv4.ip_forward",
        "lxc.rootfs.options",
        "lxc.init.uid",
        "lxc.signal.reboot",
        "lxc.namespace.share.net",
        "lxc.mount.fstab",
        "lxc.net.0.ipv6.address",
        "lxc.autodev.tmpfs.size",
    ] {
        let (_, w) = one_warning(&format!("{} = 1", key));
        assert!(w.contains(key) && w.contains("ignored"), "{}", w);
    }
    // Several unknown keys: one warning each, in order.
    let c = ok("lxc.a = 1\nlxc.b = 2\nlxc.uts.name.x = 3");
    assert_eq!(c.warnings.len(), 3);
    assert!(c.warnings[2].contains("lxc.uts.name.x"));
}

// ---- errors name file and line ----

#[test]
fn every_error_names_file_and_line() {
    let cases: &[(&str, &str)] = &[
        ("no equals sign here", "expected `key = value`"),
        ("foo.bar = 1", "not an lxc.* key"),
        ("= 1", "not an lxc.* key"),
        ("lxc.cap.drop = sys_bogus", "unknown capability"),
        ("lxc.cap.keep = chown nope", "unknown capability"),
        ("lxc.cap.drop = 64", "out of range"),
        (
            "lxc.mount.entry = /a b none",
            "expected `source target fstype options",
        ),
        (
            "lxc.mount.entry = /a",
            "expected `source target fstype options",
        ),
        (
            "lxc.mount.entry = /a ../etc none bind 0 0",
            "leaves the rootfs",
        ),
        (
            "lxc.mount.entry = /a x/../../etc none bind 0 0",
            "leaves the rootfs",
        ),
        ("lxc.tty.max = eight", "bad number"),
        ("lxc.pty.max = -1", "bad number"),
        ("lxc.tty.max = 99999999999", "bad number"),
        ("lxc.net.0.mtu = 1.5", "bad number"),
        ("lxc.autodev = 2", "expected 0 or 1"),
        ("lxc.net.0.ipv4.address = 10.0.0/24", "bad IPv4 address"),
        ("lxc.net.0.ipv4.address = 300.0.0.1/24", "bad IPv4 address"),
        ("lxc.net.0.ipv4.address = 10.0.0.1/33", "bad prefix length"),
        ("lxc.net.0.ipv4.address = 10.0.0.1/", "bad prefix length"),
        ("lxc.net.0.ipv4.address = 10.0.0.1/+8", "bad prefix length"),
        ("lxc.net.0.ipv4.gateway = 10.0.0", "bad IPv4 address"),
        ("lxc.net.0.type = bridge", "unknown network type"),
        ("lxc.net.x.type = veth", "bad network index"),
        ("lxc.net..type = veth", "bad network index"),
        ("lxc.rootfs.path = overlayfs:/a", "lxc.rootfs.path"),
        ("lxc.cgroup.devices.allow = c 1:3 rwx", "bad device rule"),
        ("lxc.cgroup2.devices.deny = q", "bad device rule"),
        ("lxc.cgroup.memory/../../x.max = 1", "bad cgroup knob"),
        ("lxc.cgroup2..hidden = 1", "bad cgroup knob"),
        ("lxc.uts.name = a\0b", "NUL byte"),
    ];
    for (bad, message) in cases {
        // The bad line is line 3, after a comment and a good line.
        let text = format!("# header\nlxc.tty.max = 1\n{}\nlxc.pty.max = 2\n", bad);
        let e = match parse(&text, "/x/lxc.container.conf") {
            Ok(c) => panic!("{:?} parsed: {:?}", bad, c),
            Err(e) => e,
        };
        assert_eq!(e.file, "/x/lxc.container.conf", "{:?}", bad);
        assert_eq!(e.line, 3, "{:?}", bad);
        assert!(e.message.contains(message), "{:?}: {}", bad, e);
        assert_eq!(
            e.to_string(),
            format!("/x/lxc.container.conf:3: {}", e.message)
        );
    }
}

#[test]
fn error_display() {
    let e = err("\n\nlxc.tty.max = x");
    assert_eq!(e.to_string(), "t.conf:3: lxc.tty.max: bad number \"x\"");
}

// ---- path mapping ----

#[test]
fn path_map_prefixes_at_component_boundary() {
    let map = PathMap {
        volumes: s("/tmp/dev1/volumes"),
        exports: s("/tmp/dev1/exports/"),
        storage: s("/tmp/dev1/storage"),
        pv: s("/tmp/dev1/pv"),
    };
    let cases = [
        (
            "/volumes/web/root.squashfs",
            "/tmp/dev1/volumes/web/root.squashfs",
        ),
        ("/volumes", "/tmp/dev1/volumes"),
        ("/volumes/", "/tmp/dev1/volumes/"),
        ("/exports/web/x", "/tmp/dev1/exports/web/x"),
        ("/storage", "/tmp/dev1/storage"),
        ("/storage/logs", "/tmp/dev1/storage/logs"),
        ("/pv/pv-ctrl", "/tmp/dev1/pv/pv-ctrl"),
        ("/volumesx/a", "/volumesx/a"),
        ("/pvx", "/pvx"),
        ("/storage2", "/storage2"),
        ("volumes/a", "volumes/a"),
        ("/etc/resolv.conf", "/etc/resolv.conf"),
        ("/dev/", "/dev/"),
        ("tmpfs", "tmpfs"),
        ("/a/volumes/b", "/a/volumes/b"),
        ("", ""),
    ];
    for (from, to) in cases {
        assert_eq!(map.map(from), to, "{}", from);
    }
}

// ---- robustness ----

/// xorshift64*: deterministic garbage without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[test]
fn fuzz_garbage_never_panics() {
    const KEYS: &[&str] = &[
        "lxc.rootfs.path",
        "lxc.rootfs",
        "lxc.init.cmd",
        "lxc.init.cwd",
        "lxc.environment",
        "lxc.namespace.keep",
        "lxc.net.0.type",
        "lxc.net.1.link",
        "lxc.net.0.ipv4.address",
        "lxc.net.4294967295.ipv4.gateway",
        "lxc.net.0.flags",
        "lxc.net.0.mtu",
        "lxc.net",
        "lxc.net.0",
        "lxc.network.type",
        "lxc.network.ipv4",
        "lxc.network.link",
        "lxc.mount.auto",
        "lxc.mount.entry",
        "lxc.autodev",
        "lxc.tty.max",
        "lxc.pty.max",
        "lxc.console.path",
        "lxc.cap.drop",
        "lxc.cap.keep",
        "lxc.cgroup.devices.allow",
        "lxc.cgroup2.devices.deny",
        "lxc.cgroup.memory.max",
        "lxc.cgroup2",
        "lxc.cgroup",
        "lxc.log.file",
        "lxc.log.level",
        "lxc.signal.halt",
        "lxc.signal.stop",
        "lxc.uts.name",
        "lxc.include",
        "lxc.tty",
        "lxc.pts",
        "lxc.utsname",
        "lxc.aa_profile",
        "lxc.x",
        "lxc.",
        "lxc",
        "",
        "#",
        "lxc.cgroup.",
        "lxc.cgroup2..",
        "lxc.net..",
        "lxc.network.9.",
    ];
    const VALUES: &[&str] = &[
        "",
        " ",
        "\"",
        "'",
        "\\",
        "\"\\",
        "a b c d e f g",
        "overlayfs:",
        "overlayfs:/a:/b",
        "overlay::",
        "dir:",
        "/",
        ":",
        "::::",
        "none",
        "up",
        "veth",
        "phys",
        "empty",
        "10.0.0.1/24",
        "10.0.0.1/",
        "/32",
        "999.1.1.1",
        "auto",
        "proc sys cgroup-full:ro:force",
        "cgroup:force:force",
        "sys:",
        "a",
        "c 1:3 rwm",
        "b *:* ",
        "c :",
        "none chown",
        "cap_sys_admin 63 64",
        "/a b none bind,ro,create=dir,optional,rprivate 0 0",
        "/a ../b none bind",
        "\\040 \\0 \\777 \\1234",
        "=",
        "==",
        "A=",
        "=B",
        "SIGRTMIN+",
        "SIGRTMAX-x",
        "18446744073709551616",
        "0",
        "1",
        "-0",
        "\u{FFFD}",
        "é ü 漢字",
        "\"unterminated",
        "'x' \"y\"z",
        "\t\t",
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut runs = 0;
    // Structured garbage: plausible keys with hostile values.
    for _ in 0..1500 {
        let mut text = String::new();
        for _ in 0..rng.below(12) {
            let key = rng.pick(KEYS);
            let value = rng.pick(VALUES);
            let sep = rng.pick(&["=", " = ", "", "==", " =\t"]);
            let end = rng.pick(&["\n", "\r\n", "\n\n", ""]);
            text.push_str(&format!("{}{}{}{}", key, sep, value, end));
        }
        fuzz(text.as_bytes());
        runs += 1;
    }
    // Raw bytes, biased toward the parser's special characters.
    const ALPHABET: &[u8] = b"lxc.=# \t\n\r\"'\\:/,0123456789abcnoe*-+";
    for _ in 0..1000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.below(4) == 0 {
                    rng.next() as u8
                } else {
                    ALPHABET[rng.below(ALPHABET.len())]
                }
            })
            .collect();
        fuzz(&bytes);
        runs += 1;
    }
    // Mutations of real configs: truncation and byte flips at every position class.
    for base in [SPEC_EXAMPLE, DOCKER_TEMPLATE] {
        let b = base.as_bytes();
        for _ in 0..300 {
            let mut m = b.to_vec();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(m.len());
                m[i] = rng.next() as u8;
            }
            m.truncate(rng.below(b.len() + 1));
            fuzz(&m);
            runs += 1;
        }
    }
    assert!(runs >= 2000);
}

#[test]
fn fuzz_accepts_edge_inputs() {
    for input in [
        &b""[..],
        b"\n\n\n",
        b"\xff\xfe\x00",
        b"lxc.tty.max = 1\x00",
        b"=",
        b"lxc.",
        b"lxc.mount.entry = \\",
        b"lxc.mount.entry = a b c \\0",
        b"lxc.init.cmd = \"\\",
        b"lxc.net.99999999999999999999.type = veth",
    ] {
        fuzz(input);
    }
    let long = format!("lxc.environment = A={}\n", "x".repeat(100_000)).repeat(3);
    fuzz(long.as_bytes());
}

// ---- isolation keys ----

#[test]
fn apparmor_profiles_other_than_unconfined_are_refused() {
    for text in [
        "lxc.apparmor.profile = unconfined",
        "lxc.apparmor.profile = unchanged",
        "lxc.apparmor.profile =",
        "lxc.apparmor.allow_incomplete = 1\nlxc.apparmor.allow_nesting = 1",
        "lxc.apparmor.profile = lxc-container-default\nlxc.apparmor.profile = unconfined",
    ] {
        clean(text);
    }
    let e = err("lxc.tty.max = 1\nlxc.apparmor.profile = lxc-container-default-cgns\n");
    assert_eq!(e.line, 2);
    assert!(
        e.message
            .contains("lxc.apparmor.profile = lxc-container-default-cgns")
            && e.message.contains("no AppArmor"),
        "{e}"
    );
    // the legacy key is named as written
    let e = err("lxc.aa_profile = generated");
    assert!(e.message.contains("lxc.aa_profile = generated"), "{e}");
    let e = err("lxc.apparmor.profile = unconfined\nlxc.apparmor.profile = x\nlxc.tty.max = 1");
    assert_eq!(e.line, 2);
}

#[test]
fn seccomp_profile_and_no_new_privs() {
    let c =
        clean("lxc.seccomp.profile = /usr/share/lxc/config/common.seccomp\nlxc.no_new_privs = 1");
    assert_eq!(
        c.seccomp_profile.as_deref(),
        Some("/usr/share/lxc/config/common.seccomp")
    );
    assert!(c.no_new_privs);
    let c = clean("lxc.seccomp.profile = a\nlxc.seccomp.profile =\nlxc.no_new_privs = 1\nlxc.no_new_privs = 0");
    assert_eq!(c.seccomp_profile, None);
    assert!(!c.no_new_privs);
    assert!(!LxcConfig::default().no_new_privs);
    let (c, w) = one_warning("lxc.seccomp = seccomp.profile");
    assert_eq!(c.seccomp_profile.as_deref(), Some("seccomp.profile"));
    assert!(w.contains("lxc.seccomp.profile"), "{w}");
    let e = err("lxc.no_new_privs = 2");
    assert!(e.message.contains("expected 0 or 1"), "{e}");
}
