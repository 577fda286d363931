//! Namespace tier (root): container isolation as LXC applies it -- the device rules (a cgroup
//! device program on the container's cgroup v2), `lxc.seccomp.profile`, `lxc.no_new_privs`,
//! and AppArmor profiles refused. Each scenario runs in the re-executed binary as PID 1 of new
//! namespaces (`support::run_driver`), the busybox container's console read back.
mod support;

use pantavisor::container::{Engine, Exit};
use pantavisor::state::State;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use support::*;

fn image() -> PathBuf {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| busybox_image(Path::new(env!("CARGO_TARGET_TMPDIR"))))
        .clone()
}

fn run(name: &str) -> DriverRun {
    let r = run_driver(name, &image(), Duration::from_secs(40));
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
        "devices" => devices(&tmp, &img),
        "seccomp" => seccomp(&tmp, &img),
        "refused" => refused(&tmp, &img),
        other => panic!("unknown scenario {other}"),
    }
    assert_nothing_left(&tmp);
    println!("DRIVER-OK {name}");
}

fn script_config(name: &str, extra: &str, script: &str) -> String {
    assert!(!script.contains('"'));
    base_config(
        name,
        &format!("{extra}lxc.init.cmd = /bin/sh \"-c\" \"{script}\"\n"),
    )
}

/// Starts each container in turn, waits for a clean exit, returns the consoles by name.
fn run_all(tmp: &Path, rev: &str, state: &State, ctrs: &[Ctr]) -> Vec<(String, String)> {
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    let mut out = Vec::new();
    for c in ctrs {
        e.start(rev, state, &c.name)
            .unwrap_or_else(|err| panic!("start {}: {err}", c.name));
        let exit = e.wait_exit(&c.name, Duration::from_secs(10)).expect("wait");
        let console =
            std::fs::read_to_string(paths(tmp).console_log(rev, &c.name)).unwrap_or_default();
        println!("--- {}\n{console}", c.name);
        assert_eq!(exit, Some(Exit::Code(0)), "{}: {console}", c.name);
        out.push((c.name.clone(), console));
    }
    out
}

fn lines_of<'a>(out: &'a [(String, String)], name: &str) -> &'a str {
    out.iter()
        .find(|(n, _)| n == name)
        .map(|(_, c)| c.as_str())
        .unwrap_or("")
}

fn has(out: &str, want: &str) -> bool {
    out.lines().any(|l| l.contains(want))
}

// ---- scenarios (run inside the driver) ----

/// `deny c 1:3 rwm` on pvr's `allow a`: /dev/null (made by autodev before the program is
/// attached) cannot be opened or made, other devices work; a deny-all list allowing only
/// reads of /dev/zero.
fn devices(tmp: &Path, img: &Path) {
    let probe = "cat /dev/null; echo null=$?; mknod /tmp/n c 1 3; echo mknod-null=$?; \
                 mknod /tmp/z c 1 5; echo mknod-zero=$?; echo zero=$(head -c 3 /dev/zero | wc -c); \
                 echo x > /dev/zero; echo write-zero=$?; head -c 1 /dev/urandom >/tmp/r; \
                 echo urandom=$?; exit 0";
    let ctrs = [
        Ctr::busybox(
            "denynull",
            img,
            &script_config("denynull", "lxc.cgroup.devices.deny = c 1:3 rwm\n", probe),
        ),
        Ctr::busybox(
            "allowlist",
            img,
            &script_config(
                "allowlist",
                "lxc.cgroup.devices.deny = a\nlxc.cgroup2.devices.allow = c 1:5 r\n",
                probe,
            ),
        ),
        Ctr::busybox("open", img, &script_config("open", "", probe)),
    ];
    let state = install_revision(&tmp.join("storage"), "1", &ctrs);
    let out = run_all(tmp, "1", &state, &ctrs);
    let denied = "Operation not permitted";
    let d = lines_of(&out, "denynull");
    assert!(has(d, "/dev/null") && has(d, denied), "{d}");
    for want in [
        "null=1",
        "mknod-null=1",
        "mknod-zero=0",
        "zero=3",
        "write-zero=0",
        "urandom=0",
    ] {
        assert!(has(d, want), "denynull: no {want} in\n{d}");
    }
    let a = lines_of(&out, "allowlist");
    for want in [
        "null=1",
        "mknod-null=1",
        "mknod-zero=1",
        "zero=3",
        "write-zero=1",
        "urandom=1",
    ] {
        assert!(has(a, want), "allowlist: no {want} in\n{a}");
    }
    let o = lines_of(&out, "open");
    for want in ["null=0", "mknod-null=0", "write-zero=0", "urandom=0"] {
        assert!(has(o, want), "open: no {want} in\n{o}");
    }
}

/// A denylist profile beside the config: mkdir fails with the configured errno (EACCES), the
/// rest works; `lxc.no_new_privs = 1` is set; a container without either has neither.
fn seccomp(tmp: &Path, img: &Path) {
    let probe = "mkdir /tmp/d; echo mkdir=$?; touch /tmp/f; echo touch=$?; ls -d /tmp/d; \
                 grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; exit 0";
    let ctrs = [
        Ctr::busybox(
            "sec",
            img,
            &script_config(
                "sec",
                "lxc.seccomp.profile = seccomp.profile\nlxc.no_new_privs = 1\n",
                probe,
            ),
        ),
        Ctr::busybox("plain", img, &script_config("plain", "", probe)),
    ];
    // the profile is a file of the container in the revision, beside its LXC config
    let trail = tmp.join("storage/trails/1/sec");
    let profile = "2\ndenylist\n# no directories\nmkdir errno 13\nmkdirat errno 13\n";
    let state = install_revision(&tmp.join("storage"), "1", &ctrs);
    std::fs::write(trail.join("seccomp.profile"), profile).unwrap();
    let out = run_all(tmp, "1", &state, &ctrs);
    let s = lines_of(&out, "sec");
    for want in [
        "Permission denied",
        "mkdir=1",
        "touch=0",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(has(s, want), "sec: no {want} in\n{s}");
    }
    let p = lines_of(&out, "plain");
    for want in ["mkdir=0", "/tmp/d", "NoNewPrivs:\t0", "Seccomp:\t0"] {
        assert!(has(p, want), "plain: no {want} in\n{p}");
    }
}

/// Containers that must not start: an AppArmor profile, a profile with an action this engine
/// cannot honour (named by path and line), a missing profile. Unconfined starts.
fn refused(tmp: &Path, img: &Path) {
    let ok = "echo ran; exit 0";
    let ctrs = [
        Ctr::busybox(
            "aa",
            img,
            &script_config(
                "aa",
                "lxc.apparmor.profile = lxc-container-default-cgns\n",
                ok,
            ),
        ),
        Ctr::busybox(
            "notify",
            img,
            &script_config(
                "notify",
                "lxc.seccomp.profile = /storage/trails/1/notify/notify.profile\n",
                ok,
            ),
        ),
        Ctr::busybox(
            "missing",
            img,
            &script_config("missing", "lxc.seccomp.profile = nothere\n", ok),
        ),
        Ctr::busybox(
            "unconfined",
            img,
            &script_config(
                "unconfined",
                "lxc.apparmor.profile = unconfined\nlxc.apparmor.allow_incomplete = 1\n",
                ok,
            ),
        ),
    ];
    let state = install_revision(&tmp.join("storage"), "1", &ctrs);
    std::fs::write(
        tmp.join("storage/trails/1/notify/notify.profile"),
        "2\nallowlist\nread notify\n",
    )
    .unwrap();
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    let err = |e: &mut Engine, name: &str| match e.start("1", &state, name) {
        Ok(pid) => panic!("{name} started as {pid}"),
        Err(err) => {
            println!("{name}: {err}");
            err.to_string()
        }
    };
    let m = err(&mut e, "aa");
    assert!(
        m.contains("lxc.apparmor.profile = lxc-container-default-cgns")
            && m.contains("no AppArmor"),
        "{m}"
    );
    let m = err(&mut e, "notify");
    let profile = tmp.join("storage/trails/1/notify/notify.profile");
    assert!(
        m.contains(&format!("seccomp {}: line 3", profile.display())) && m.contains("notify"),
        "{m}"
    );
    let m = err(&mut e, "missing");
    assert!(
        m.contains("trails/1/missing/nothere") && m.contains("No such file"),
        "{m}"
    );
    e.start("1", &state, "unconfined")
        .unwrap_or_else(|err| panic!("unconfined: {err}"));
    let exit = e.wait_exit("unconfined", Duration::from_secs(10)).unwrap();
    assert_eq!(exit, Some(Exit::Code(0)));
}

// ---- tests ----

#[test]
fn device_rules_deny_and_allow_device_nodes() {
    run("devices");
}

#[test]
fn seccomp_profile_errno_and_no_new_privs() {
    run("seccomp");
}

#[test]
fn apparmor_and_unusable_seccomp_profiles_refuse_the_container() {
    run("refused");
}
