//! run.json `exports` on a real device (root): the binary as PID 1 of a new PID namespace
//! (booted by the harness), busybox containers made by scripts/pvmk. An exported rootfs
//! directory is live in pantavisor's mount namespace (read here through
//! `/proc/<device>/root`) at `<exportsdir>/<container>/<dir>` while the container runs, and
//! nothing else of the container reaches that namespace; the exports go before the rootfs
//! volume when the container is stopped or an update removes it. The engine's failures are
//! a driver scenario (this binary re-executed as PID 1 of new namespaces, as tests/containers.rs).
mod harness;
mod rig;
mod support;

use harness::End;
use pantavisor::container::Engine;
use rig::{finish, sh, Rig, FOREVER, SERIAL};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;
use support::{
    assert_nothing_left, base_config, busybox_image, driver_env, install_revision, loops_under,
    mounts_under, options, paths, run_driver, Ctr, DRIVER_ENV,
};

/// `os` in group root; with `web`: `web` in group app (restart policy container) exporting
/// `/etc` (holds motd) and `data`, writing /etc/later once `go` appears in /data.
fn desc(web: bool) -> String {
    let web = if web {
        format!(
            r#","web":{{"rootfs":"rootfs","cmd":{},"group":"app","exports":["/etc","data"]}}"#,
            sh(&format!(
                "until [ -e /data/go ]; do sleep 0.05; done; echo written later > /etc/later; {FOREVER}"
            ))
        )
    } else {
        String::new()
    };
    format!(
        r#"{{"groups":[{{"name":"root","status_goal":"STARTED","restart_policy":"system","timeout":10}},
           {{"name":"app","status_goal":"STARTED","restart_policy":"container","timeout":10}}],
 "containers":{{"os":{{"rootfs":"rootfs","cmd":{idle},"group":"root"}}{web}}}}}"#,
        idle = sh(FOREVER)
    )
}

/// `path` as pantavisor's mount namespace shows it.
fn in_device(dev: &Child, path: &Path) -> PathBuf {
    let pid = harness::device_pid(dev).expect("device runs");
    Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").unwrap())
}

/// pantavisor's mounts as (mount point, root in its file system, file system type), sorted.
fn mounts(dev: &Child) -> Vec<(String, String, String)> {
    let pid = harness::device_pid(dev).expect("device runs");
    let mi = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let mut out: Vec<_> = mi
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((
                f.get(4)?.to_string(),
                f.get(3)?.to_string(),
                f.get(sep + 1)?.to_string(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// Mount points strictly below `dir` in pantavisor's namespace.
fn mounted_below(dev: &Child, dir: &Path) -> Vec<String> {
    let d = format!("{}/", dir.display());
    mounts(dev)
        .into_iter()
        .map(|m| m.0)
        .filter(|m| m.starts_with(&d))
        .collect()
}

/// Waits (autoclear is asynchronous after the last unmount) until no loop device is backed by
/// a `web/root.squashfs`; what is left otherwise.
fn web_loops_left(r: &Rig) -> Vec<String> {
    let web = |r: &Rig| -> Vec<String> {
        support::loops_under(&r.dir)
            .into_iter()
            .filter(|l| l.ends_with("/web/root.squashfs"))
            .collect()
    };
    let t = std::time::Instant::now();
    while !web(r).is_empty() && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    web(r)
}

fn wait_status(r: &Rig, dev: &mut Child, c: &str, want: &str) -> bool {
    r.wait(dev, Duration::from_secs(20), &|r, d| {
        r.status_of(d, c).as_deref() == Some(want)
    })
}

#[test]
fn exports_are_live_in_pantavisors_namespace_and_go_with_the_container() {
    let _g = SERIAL.lock();
    let mut r = Rig::new("exports", &desc(true));
    let exp = r.dir.join("exports");
    let web = exp.join("web");
    let voldir = r.dir.join("volumes");
    let rootmnt = r.dir.join("run.lxc/rootfs");
    let mut dev = r.boot();
    if !(wait_status(&r, &mut dev, "os", "STARTED") && wait_status(&r, &mut dev, "web", "STARTED"))
    {
        let end = finish(&mut dev);
        panic!("containers not STARTED ({end:?}); log:\n{}", r.log());
    }

    // a file of the rootfs, from pantavisor's namespace
    let motd = std::fs::read_to_string(in_device(&dev, &web.join("etc/motd")));
    assert_eq!(
        motd.ok().as_deref(),
        Some("from the rootfs\n"),
        "{}",
        r.log()
    );
    assert_eq!(
        mounted_below(&dev, &exp),
        [web.join("data"), web.join("etc")].map(|p| p.display().to_string())
    );
    // both ways, live: the host writes into the container's /data, the container into /etc
    std::fs::write(in_device(&dev, &web.join("data/go")), "").unwrap();
    let later = r.wait(&mut dev, Duration::from_secs(15), &|_, d| {
        std::fs::read_to_string(in_device(d, &web.join("etc/later")))
            .ok()
            .as_deref()
            == Some("written later\n")
    });
    assert!(later, "/etc/later not seen; console:\n{}", r.console("web"));
    // pantavisor's namespace is its own: the test's sees no mount of it
    assert_eq!(support::mounts_under(&r.dir), Vec::<String>::new());

    // stopped (restart policy container): the exports and the rootfs loop device are gone
    let (code, out) = r.pvcontrol(&dev, &["containers", "stop", "web"]);
    assert_eq!(code, 0, "{out}");
    assert!(wait_status(&r, &mut dev, "web", "STOPPED"), "{}", r.log());
    assert_eq!(mounted_below(&dev, &exp), Vec::<String>::new());
    assert_eq!(web_loops_left(&r), Vec::<String>::new(), "{}", r.log());
    let stopped = mounts(&dev);

    // started again: the exports are back, and pantavisor gained nothing else but the
    // container's volumes (the rootfs mount point still holds only pantavisor's own bind)
    let (code, out) = r.pvcontrol(&dev, &["containers", "start", "web"]);
    assert_eq!(code, 0, "{out}");
    assert!(wait_status(&r, &mut dev, "web", "STARTED"), "{}", r.log());
    let started = mounts(&dev);
    let gone: Vec<_> = stopped.iter().filter(|m| !started.contains(m)).collect();
    assert!(gone.is_empty(), "a start took mounts away: {gone:?}");
    let mut gained: Vec<_> = started.iter().filter(|m| !stopped.contains(m)).collect();
    let vols = format!("{}/web/", voldir.display());
    gained.retain(|m| !m.0.starts_with(&vols));
    let gained: Vec<_> = gained
        .iter()
        .map(|m| (m.0.as_str(), m.1.as_str()))
        .collect();
    let (data, etc) = (web.join("data"), web.join("etc"));
    assert_eq!(
        gained,
        [
            (data.to_str().unwrap(), "/data"),
            (etc.to_str().unwrap(), "/etc"),
        ],
        "pantavisor gained more than the exports: {started:?}"
    );
    let at_rootmnt = started.iter().filter(|m| Path::new(&m.0) == rootmnt);
    assert_eq!(at_rootmnt.count(), 1, "{started:?}");
    assert!(std::fs::read_to_string(in_device(&dev, &web.join("etc/motd"))).is_ok());

    // a live update that removes web takes its exports and rootfs loop device with it
    let (objects, state) = r.make_revision("gone", &desc(false));
    r.upload(&dev, &objects, &state, "locals/gone");
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run", "locals/gone"]);
    assert_eq!(code, 0, "{out}");
    let updated = r.wait(&mut dev, Duration::from_secs(40), &|r, _| {
        r.progress("locals/gone")
            .is_some_and(|(s, _)| s == "UPDATED")
    });
    let log = r.log_of("0") + &r.log_of("locals/gone");
    assert!(updated, "not UPDATED; log:\n{log}");
    assert_eq!(mounted_below(&dev, &exp), Vec::<String>::new());
    assert_eq!(web_loops_left(&r), Vec::<String>::new(), "{log}");
    // the rootfs was never held busy by an export
    assert!(!log.contains("detaching lazily"), "{log}");
    assert_eq!(finish(&mut dev), End::PowerOff);
}

/// Entry point of the re-executed binary; does nothing in a normal test run.
#[test]
fn driver() {
    let Ok(name) = std::env::var(DRIVER_ENV) else {
        return;
    };
    let (tmp, img) = driver_env();
    match name.as_str() {
        "failures" => failures(&tmp, &img),
        other => panic!("unknown scenario {other}"),
    }
    assert_nothing_left(&tmp);
    println!("DRIVER-OK {name}");
}

/// A bad entry or a missing directory fails the start naming container and entry, and the
/// exports bound before the failing one are gone with it; a good one works after them.
fn failures(tmp: &Path, img: &Path) {
    let ctr = |name: &str, exports: &[&str]| {
        let cfg = base_config(name, "lxc.init.cmd = /bin/sh \"-c\" \"sleep 30\"\n");
        let mut c = Ctr::busybox(name, img, &cfg);
        c.exports = exports.iter().map(|e| e.to_string()).collect();
        c
    };
    let state = install_revision(
        &tmp.join("storage"),
        "1",
        &[
            ctr("partial", &["/etc", "/nope"]),
            ctr("climb", &["/etc/../.."]),
            ctr("good", &["etc"]),
        ],
    );
    let mut e = Engine::new(paths(tmp), options(Duration::from_secs(5)));
    for (name, want) in [
        (
            "partial",
            "container partial: export /nope: No such file or directory",
        ),
        (
            "climb",
            "container climb: export /etc/../..: must not contain '..'",
        ),
    ] {
        let err = e.start("1", &state, name).expect_err(name).to_string();
        assert!(err.starts_with(want), "{name}: got '{err}', want '{want}'");
        // the engine's own binds (exports folder, rootfs mount point) go when it is dropped
        let left = mounts_under(&tmp.join("exports").join(name));
        assert_eq!((left, loops_under(tmp)), (vec![], vec![]), "{name}");
    }
    e.start("1", &state, "good").expect("start");
    let motd = std::fs::read_to_string(tmp.join("exports/good/etc/motd"));
    assert_eq!(motd.ok().as_deref(), Some("hello from squashfs\n"));
    e.stop_and_wait("good", Duration::ZERO).expect("stop");
}

#[test]
fn bad_exports_fail_the_start_and_leave_nothing() {
    let img = busybox_image(Path::new(env!("CARGO_TARGET_TMPDIR")));
    let r = run_driver("failures", &img, Duration::from_secs(40));
    eprintln!("failures: driver {:?}\n{}", r.elapsed, r.stdout);
    r.assert_ok();
}
