//! pv-ctrl on a real device (root): the binary as PID 1 of a new PID namespace (booted by the
//! harness), busybox containers made by scripts/pvmk, and `pantavisor pvcontrol` talking to
//! the real socket -- from the host side (entered into the device's PID namespace with
//! nsenter, so SO_PEERCRED names a process the device can see) and from inside containers
//! (a static pantavisor binary copied into their rootfs as /bin/pv). Every test checks that
//! no mount, loop device or cgroup is left.
mod harness;
mod rig;
mod support;

use harness::End;
use std::time::Duration;

use rig::{finish, sh, Rig, FOREVER, SERIAL};

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
