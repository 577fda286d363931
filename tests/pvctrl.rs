//! pv-ctrl on a real device (root): the binary as PID 1 of a new PID namespace (booted by the
//! harness), busybox containers made by scripts/pvmk, and `pantavisor pvcontrol` talking to
//! the real socket -- from the host side (entered into the device's PID namespace with
//! nsenter, so SO_PEERCRED names a process the device can see) and from inside containers
//! (a static pantavisor binary copied into their rootfs as /bin/pv). Every test checks that
//! no mount, loop device or cgroup is left.
mod harness;
mod support;

use harness::{remove_cgroup_tree, End};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One device at a time, as the other namespace tests.
static SERIAL: Mutex<()> = Mutex::new(());

/// A statically linked pantavisor for the containers' rootfs: the test binary if it is static,
/// else the musl build (built here into its own target dir when missing).
fn static_pantavisor() -> PathBuf {
    let is_static = |p: &Path| {
        Command::new("file")
            .arg("-L")
            .arg(p)
            .output()
            .map(|o| {
                let t = String::from_utf8_lossy(&o.stdout).into_owned();
                t.contains("statically linked") || t.contains("static-pie linked")
            })
            .unwrap_or(false)
    };
    let bin = PathBuf::from(harness::BIN);
    if is_static(&bin) {
        return bin;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let musl = root.join("target/x86_64-unknown-linux-musl/release/pantavisor");
    if musl.exists() && is_static(&musl) {
        return musl;
    }
    let own = root.join("target/pvctrl-musl");
    let built = own.join("x86_64-unknown-linux-musl/release/pantavisor");
    if !built.exists() {
        let st = Command::new("cargo")
            .current_dir(root)
            .args([
                "build",
                "--release",
                "--target",
                "x86_64-unknown-linux-musl",
            ])
            .env("CARGO_TARGET_DIR", &own)
            .status()
            .unwrap();
        assert!(st.success(), "musl build of pantavisor failed");
    }
    built
}

struct Rig {
    dir: PathBuf,
    storage: PathBuf,
    socket: PathBuf,
    cgroup: Option<PathBuf>,
    bl: harness::Bootloader,
}

impl Rig {
    fn new(name: &str, description: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("pv-ctl-{name}-{}", std::process::id()));
        let harness::DeviceFiles {
            storage,
            config,
            cgroup,
        } = harness::make_device(
            &dir,
            &format!("pv-ctl-{name}"),
            description,
            "",
            &|rootfs| {
                std::fs::copy(static_pantavisor(), rootfs.join("bin/pv")).unwrap();
            },
        );
        let run = dir.join("run");
        let mut bl = harness::Bootloader::new(&storage, &config);
        bl.cgroup = cgroup.clone();
        Rig {
            dir,
            storage,
            socket: run.join("pv-ctrl"),
            cgroup,
            bl,
        }
    }

    fn boot(&mut self) -> Child {
        let (_, cmdline) = self.bl.pick();
        self.bl.spawn(&cmdline, &[])
    }

    fn console(&self, c: &str) -> String {
        std::fs::read_to_string(self.storage.join(format!("logs/0/{c}/lxc/console.log")))
            .unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.storage.join("logs/0/pantavisor/pantavisor.log"))
            .unwrap_or_default()
    }

    /// `pantavisor pvcontrol -s <socket> ARGS` run in the device's PID namespace: (exit, stdout).
    fn pvcontrol(&self, device: &Child, args: &[&str]) -> (i32, String) {
        let Some(pid) = harness::device_pid(device) else {
            return (-1, String::new());
        };
        let out = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-p",
                harness::BIN,
                "pvcontrol",
                "-s",
            ])
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// Polls `until` every 50 ms for at most `limit`; false if the device ended or time ran out.
    fn wait(
        &self,
        device: &mut Child,
        limit: Duration,
        until: &dyn Fn(&Rig, &Child) -> bool,
    ) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if device.try_wait().unwrap().is_some() {
                return false;
            }
            if until(self, device) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The status of container `name` in `pvcontrol ls`.
    fn status_of(&self, device: &Child, name: &str) -> Option<String> {
        let (code, out) = self.pvcontrol(device, &["ls"]);
        if code != 0 {
            return None;
        }
        let v = pantavisor::json::parse_str(&out, Default::default()).ok()?;
        v.as_array()?
            .iter()
            .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(name))
            .and_then(|c| c.get("status")?.as_str().map(str::to_string))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            support::assert_nothing_left(&self.dir);
        }
        if let Some(cg) = &self.cgroup {
            remove_cgroup_tree(cg);
            if !std::thread::panicking() {
                assert!(!cg.exists(), "cgroup {} left behind", cg.display());
            }
        }
        if std::env::var_os("PV_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Stops a device still running (SIGINT) and returns how it ended.
fn finish(device: &mut Child) -> End {
    if device.try_wait().unwrap().is_none() {
        harness::signal_device(device, "INT");
    }
    harness::wait_end(device, Duration::from_secs(20))
}

fn sh(body: &str) -> String {
    format!(
        r#"["/bin/sh","-c","trap 'exit 0' TERM; {}"]"#,
        body.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

const FOREVER: &str = "while :; do sleep 0.2; done";

#[test]
fn host_lists_containers_and_groups_manages_usrmeta_and_powers_off() {
    let _g = SERIAL.lock();
    let desc = format!(
        r#"{{"containers":{{"alpha":{{"rootfs":"rootfs","cmd":{f}}},"beta":{{"rootfs":"rootfs","cmd":{f},"auto_recovery":{{"policy":"on-failure","max_retries":3}}}}}}}}"#,
        f = sh(FOREVER)
    );
    let mut r = Rig::new("host", &desc);
    let mut dev = r.boot();
    let up = r.wait(&mut dev, Duration::from_secs(20), &|r, d| {
        r.status_of(d, "alpha").as_deref() == Some("STARTED")
            && r.status_of(d, "beta").as_deref() == Some("STARTED")
    });
    if !up {
        let end = finish(&mut dev);
        panic!(
            "containers not STARTED via pv-ctrl ({end:?}); log:\n{}",
            r.log()
        );
    }

    let (code, out) = r.pvcontrol(&dev, &["ls"]);
    assert_eq!(code, 0, "{out}");
    let v = pantavisor::json::parse_str(&out, Default::default()).unwrap();
    let ctrs = v.as_array().unwrap();
    assert_eq!(ctrs.len(), 2, "{out}");
    let alpha = ctrs
        .iter()
        .find(|c| c.get("name").unwrap().as_str() == Some("alpha"))
        .unwrap();
    assert_eq!(alpha.get("status_goal").unwrap().as_str(), Some("STARTED"));
    assert_eq!(alpha.get("roles").unwrap().raw(&out), r#"["mgmt"]"#);
    assert!(alpha.get("auto_recovery").is_none(), "{out}");
    let beta = ctrs
        .iter()
        .find(|c| c.get("name").unwrap().as_str() == Some("beta"))
        .unwrap();
    let ar = beta.get("auto_recovery").unwrap();
    assert_eq!(ar.get("policy").unwrap().as_str(), Some("on-failure"));
    assert_eq!(ar.get("max_retries").unwrap().as_u64(), Some(3));
    assert!(matches!(
        ar.get("is_stable").unwrap().as_str(),
        Some("true" | "false")
    ));

    let (code, out) = r.pvcontrol(&dev, &["groups", "ls"]);
    assert_eq!(code, 0, "{out}");
    let v = pantavisor::json::parse_str(&out, Default::default()).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.get("name").unwrap().as_str().unwrap())
        .collect();
    assert_eq!(names, ["data", "root", "platform", "app"], "{out}");
    for g in v.as_array().unwrap() {
        // every group reached its goal (empty ones trivially)
        assert_eq!(g.get("status").unwrap().as_str(), Some("READY"), "{out}");
    }

    assert_eq!(r.pvcontrol(&dev, &["usrmeta", "save", "k1", "hello"]).0, 0);
    assert_eq!(
        r.pvcontrol(&dev, &["usrmeta", "save", "k2", r#"{"a":1}"#])
            .0,
        0
    );
    let (code, out) = r.pvcontrol(&dev, &["usrmeta", "ls"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), r#"{"k1":"hello","k2":{"a":1}}"#);
    assert_eq!(r.pvcontrol(&dev, &["usrmeta", "delete", "k1"]).0, 0);
    let (code, out) = r.pvcontrol(&dev, &["usrmeta", "delete", "k1"]);
    assert_eq!(code, 255);
    assert!(out.contains("User meta does not exist"), "{out}");
    assert_eq!(
        r.pvcontrol(&dev, &["usrmeta", "ls"]).1.trim(),
        r#"{"k2":{"a":1}}"#
    );
    let (code, out) = r.pvcontrol(&dev, &["devmeta", "ls"]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""pantavisor.status":"READY""#), "{out}");

    let (code, out) = r.pvcontrol(&dev, &["buildinfo"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("pantavisor "), "{out}");
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run-gc"]);
    assert_eq!(code, 255);
    assert!(out.contains("not supported yet"), "{out}");

    let (code, out) = r.pvcontrol(&dev, &["cmd", "poweroff", "test over"]);
    assert_eq!(code, 0, "{out}");
    let end = harness::wait_end(&mut dev, Duration::from_secs(20));
    assert_eq!(end, End::PowerOff, "log:\n{}", r.log());
    assert!(r.log().contains("pv-ctrl POWEROFF_DEVICE: test over"));
    assert!(!r.socket.exists(), "pv-ctrl socket left behind");
}

#[test]
fn nobody_container_is_refused_but_signals_ready() {
    let _g = SERIAL.lock();
    let pvc = "/bin/pv pvcontrol -s /pantavisor/pv-ctrl";
    let app = sh(&format!(
        "{pvc} ls; rc=$?; echo; echo ls=$rc; {pvc} signal ready; rc=$?; echo; echo signal=$rc; {FOREVER}"
    ));
    let mgr = sh(&format!(
        "{pvc} ls > /dev/null; echo ls=$?; {pvc} signal ready; rc=$?; echo; echo signal=$rc; {FOREVER}"
    ));
    let desc = format!(
        r#"{{"containers":{{"app":{{"rootfs":"rootfs","cmd":{app},"roles":["nobody"],"status_goal":"READY"}},"mgr":{{"rootfs":"rootfs","cmd":{mgr}}}}}}}"#
    );
    let mut r = Rig::new("nobody", &desc);
    let mut dev = r.boot();
    let ready = r.wait(&mut dev, Duration::from_secs(20), &|r, d| {
        r.status_of(d, "app").as_deref() == Some("READY") && r.console("mgr").contains("signal=")
    });
    let end = finish(&mut dev);
    let (app_out, mgr_out) = (r.console("app"), r.console("mgr"));
    assert!(
        ready,
        "app not READY ({end:?});\napp:\n{app_out}\nmgr:\n{mgr_out}\nlog:\n{}",
        r.log()
    );
    assert_eq!(end, End::PowerOff);
    // the non-mgmt container may not list, but may signal
    assert!(
        app_out.contains(r#"{"Error":"Request not sent from mgmt platform"}"#),
        "{app_out}"
    );
    assert!(app_out.contains("ls=255"), "{app_out}");
    assert!(app_out.contains("signal=0"), "{app_out}");
    // a mgmt container may list; its goal is STARTED so a ready signal is unexpected
    assert!(mgr_out.contains("ls=0"), "{mgr_out}");
    assert!(
        mgr_out.contains("Signal not expected from this platform"),
        "{mgr_out}"
    );
    assert!(mgr_out.contains("signal=255"), "{mgr_out}");
    assert!(r.log().contains("container app: READY (signalled)"));
}

#[test]
fn host_uploads_objects_and_a_local_step() {
    let _g = SERIAL.lock();
    let desc = format!(
        r#"{{"containers":{{"alpha":{{"rootfs":"rootfs","cmd":{f}}}}}}}"#,
        f = sh(FOREVER)
    );
    let mut r = Rig::new("steps", &desc);
    let mut dev = r.boot();
    let up = r.wait(&mut dev, Duration::from_secs(20), &|r, d| {
        r.status_of(d, "alpha").as_deref() == Some("STARTED")
    });
    if !up {
        let end = finish(&mut dev);
        panic!("alpha not STARTED ({end:?}); log:\n{}", r.log());
    }
    let objects = r.storage.join("objects");
    let leftovers = || {
        std::fs::read_dir(&objects)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count()
    };

    // an object: stored under its sha, listed with its size
    let data = b"an object uploaded through pv-ctrl\n".repeat(5000);
    let file = r.dir.join("obj.bin");
    std::fs::write(&file, &data).unwrap();
    let sha = pantavisor::storage::objects::sha256_hex(&data);
    let f = file.to_str().unwrap();
    let (code, out) = r.pvcontrol(&dev, &["objects", "put", f, &sha]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read(objects.join(&sha)).unwrap(), data);
    let (code, out) = r.pvcontrol(&dev, &["objects", "ls"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(r#"{{"sha256":"{sha}","size":"{}"}}"#, data.len())),
        "{out}"
    );
    // again: already there, fine
    assert_eq!(r.pvcontrol(&dev, &["objects", "put", f, &sha]).0, 0);
    // a bad checksum: exit 60, nothing stored
    let wrong = pantavisor::storage::objects::sha256_hex(b"something else");
    let (code, out) = r.pvcontrol(&dev, &["objects", "put", f, &wrong]);
    assert_eq!(code, 60, "{out}");
    assert!(out.contains("Object has bad checksum"), "{out}");
    assert!(!objects.join(&wrong).exists());
    assert_eq!(leftovers(), 0);

    // a local step: the factory state, stored byte-exact, progress NEW
    let raw = std::fs::read(r.storage.join("trails/0/.pvr/json")).unwrap();
    let json = r.dir.join("x.json");
    std::fs::write(&json, &raw).unwrap();
    let (code, out) = r.pvcontrol(&dev, &["steps", "put", json.to_str().unwrap(), "locals/x"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read(r.storage.join("trails/locals/x/.pvr/json")).unwrap(),
        raw
    );
    let (code, out) = r.pvcontrol(&dev, &["steps", "show-progress", "locals/x"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#""status":"NEW""#), "{out}");
    let (code, out) = r.pvcontrol(&dev, &["steps", "get", "locals/x"]);
    assert_eq!(
        (code, out.trim()),
        (0, String::from_utf8_lossy(&raw).trim())
    );
    let (code, out) = r.pvcontrol(&dev, &["steps", "ls"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#"{"name":"locals/x","date":"20"#), "{out}");
    // a bad state: exit 70, no revision directory
    let bad = r.dir.join("bad.json");
    std::fs::write(
        &bad,
        br##"{"#spec":"pantavisor-service-system@1","nope":1}"##,
    )
    .unwrap();
    let (code, out) = r.pvcontrol(&dev, &["steps", "put", bad.to_str().unwrap(), "locals/bad"]);
    assert_eq!(code, 70, "{out}");
    assert!(out.contains("State JSON has bad format"), "{out}");
    assert!(!r.storage.join("trails/locals/bad").exists());

    let end = finish(&mut dev);
    assert_eq!(end, End::PowerOff, "log:\n{}", r.log());
}
