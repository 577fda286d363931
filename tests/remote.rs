//! Remote mode on a real device (root): the test plays the Hub client, a host process talking
//! to pv-ctrl as the `hub` daemon will (`PUT /steps/<n>`, `/steps/<n>/progress`, objects
//! written straight into the object store, REMOTE_RUN, `pantahub.online`), and checks the
//! progress the device writes word for word against upstream's remote pvtests
//! (`lifecycle/update-retries-pv-crash`, `control/always-remote-*`): a live and a reboot
//! update to UPDATED and DONE through the same installer as local updates, the retries of
//! three attempts across a device reboot ending WONTGO, a container refused, the Hub gate
//! holding a try until the Hub is reachable and rolling back when it never is, and the `hub`
//! row of `/daemons` following the remote and local modes and GO_REMOTE.
mod harness;
mod rig;
mod support;

use harness::End;
use rig::{finish, sh, Rig, FOREVER, SERIAL};
use std::path::Path;
use std::process::Child;
use std::time::Duration;

/// A BSP (kernel `kernel`), groups root and app, `os` in root (no roles: mgmt), `web` and
/// `app` in app; `web` prints its /etc/motd (a `_config` overlay file) then idles.
fn desc(kernel: &str, motd: &str) -> String {
    format!(
        r#"{{"bsp":{{"kernel":"{kernel}"}},
 "groups":[{{"name":"root","status_goal":"STARTED","restart_policy":"system","timeout":10}},
           {{"name":"app","status_goal":"STARTED","restart_policy":"container","timeout":10}}],
 "containers":{{
   "os":{{"rootfs":"rootfs","cmd":{idle},"group":"root"}},
   "web":{{"rootfs":"rootfs","cmd":{web},"group":"app","config":{{"etc/motd":"{motd}"}}}},
   "app":{{"rootfs":"rootfs","cmd":{idle},"group":"app"}}}}}}"#,
        idle = sh(FOREVER),
        web = sh(&format!("cat /etc/motd; {FOREVER}")),
    )
}

/// Boots what the bootloader picks and waits for every container STARTED.
fn boot_started(r: &mut Rig, want: &str) -> Child {
    let (rev, mut dev) = r.boot_rev();
    assert_eq!(rev, want, "the bootloader booted another revision");
    let up = r.wait(&mut dev, Duration::from_secs(30), &|r, d| {
        ["os", "web", "app"]
            .iter()
            .all(|c| r.status_of(d, c).as_deref() == Some("STARTED"))
    });
    if !up {
        let end = finish(&mut dev);
        panic!("{rev}: not all STARTED ({end:?}); log:\n{}", r.log_of(&rev));
    }
    dev
}

/// One pv-ctrl request from the host, as the Hub client makes them: (status, body).
fn call(r: &Rig, dev: &Child, method: &str, path: &str, body: &str) -> (u16, String) {
    let h = r
        .http(dev, method, path, body)
        .unwrap_or_else(|| panic!("{method} {path}: no answer"));
    (h.code, h.body)
}

fn cmd(r: &Rig, dev: &Child, op: &str, payload: &str) -> (u16, String) {
    let body = format!(r#"{{"op":"{op}","payload":"{payload}"}}"#);
    call(r, dev, "POST", "/commands", &body)
}

/// The Hub client's downloads: every object of a revision into the object store (a new name
/// appears only complete, as the storage module's writes do).
fn put_objects(r: &Rig, objects: &Path) {
    let store = r.storage.join("objects");
    for e in std::fs::read_dir(objects).unwrap() {
        let p = e.unwrap().path();
        let dst = store.join(p.file_name().unwrap());
        if !dst.exists() {
            let tmp = dst.with_extension("tmp");
            std::fs::copy(&p, &tmp).unwrap();
            std::fs::rename(&tmp, &dst).unwrap();
        }
    }
}

/// A new revision's (objects dir, state JSON text).
fn revision(r: &Rig, name: &str, description: &str) -> (std::path::PathBuf, String) {
    let (objects, state) = r.make_revision(name, description);
    (objects, std::fs::read_to_string(state).unwrap())
}

fn progress_json(r: &Rig, rev: &str) -> String {
    std::fs::read_to_string(r.storage.join(format!("trails/{rev}/.pv/progress")))
        .unwrap_or_default()
}

fn wait_progress(r: &Rig, dev: &mut Child, rev: &str, status: &str) -> bool {
    r.wait(dev, Duration::from_secs(40), &|r, _| {
        r.progress(rev).is_some_and(|(s, _)| s == status)
    })
}

/// The names `/daemons` lists.
fn daemons(r: &Rig, dev: &Child) -> Vec<String> {
    let (code, out) = call(r, dev, "GET", "/daemons", "");
    assert_eq!(code, 200, "{out}");
    let v = pantavisor::json::parse_str(&out, Default::default()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|d| Some(d.get("name")?.as_str()?.to_string()))
        .collect()
}

fn devmeta(r: &Rig, dev: &Child, key: &str) -> Option<String> {
    let (code, out) = call(r, dev, "GET", "/device-meta", "");
    assert_eq!(code, 200, "{out}");
    let v = pantavisor::json::parse_str(&out, Default::default()).ok()?;
    Some(v.get(key)?.as_str()?.to_string())
}

/// Waits for the device's mode (device-meta `pantavisor.mode`) and the `hub` row it implies.
fn wait_mode(r: &Rig, dev: &mut Child, mode: &str) -> bool {
    r.wait(dev, Duration::from_secs(10), &|r, d| {
        devmeta(r, d, "pantavisor.mode").as_deref() == Some(mode)
            && daemons(r, d).iter().any(|n| n == "hub") == (mode == "remote")
    })
}

const QUEUED_1_OF_10: &str = r#"{"status":"QUEUED","status-msg":"Downloading update metadata, retry 1 of 10","progress":5,"retries":1}"#;

#[test]
fn remote_updates_live_and_reboot_end_updated_and_done_and_go_remote() {
    let _g = SERIAL.lock();
    let mut r = Rig::with_config("remote-ok", &desc("k1", "v1"), "PV_CONTROL_REMOTE=1\n");
    let mut dev = boot_started(&mut r, "0");
    // a Hub revision runs: remote mode, the Hub client is a daemon of the device
    assert!(
        wait_mode(&r, &mut dev, "remote"),
        "not remote: {:?}",
        daemons(&r, &dev)
    );

    // a live update (a `_config` change): admitted, downloaded, run
    let (objects, state) = revision(&r, "r1", &desc("k1", "v2"));
    assert_eq!(
        call(&r, &dev, "PUT", "/steps/1", &state),
        (200, QUEUED_1_OF_10.to_string())
    );
    assert_eq!(
        std::fs::read_to_string(r.storage.join("trails/1/.pvr/json")).unwrap(),
        state
    );
    let report = r#"{"status":"DOWNLOADING","status-msg":"","progress":25,"downloads":{"total":{"object_name":"total","object_id":"none","total_size":9,"total_downloaded":0,"start_time":1,"current_time":1}}}"#;
    let (code, out) = call(&r, &dev, "PUT", "/steps/1/progress", report);
    assert_eq!(code, 200, "{out}");
    assert!(
        out.starts_with(r#"{"status":"DOWNLOADING","status-msg":"Downloading update artifacts, retry 1 of 10","progress":25,"retries":1,"downloads":{"total":{"#),
        "{out}"
    );
    put_objects(&r, &objects);
    assert_eq!(cmd(&r, &dev, "REMOTE_RUN", "1").0, 200);
    // the Hub gate: tried, every goal reached, but no TESTING before the Hub is reachable
    let holding = r.wait(&mut dev, Duration::from_secs(30), &|r, d| {
        r.log_of("1")
            .contains("no connection. Will rollback in 120 seconds")
            && r.console_of("1", "web").contains("v2")
            && ["os", "web", "app"]
                .iter()
                .all(|c| r.status_of(d, c).as_deref() == Some("STARTED"))
    });
    assert!(holding, "log:\n{}", r.log_of("1"));
    assert_eq!(
        r.progress("1"),
        Some(("INPROGRESS".into(), "Trying new revision".into()))
    );
    let (code, out) = call(&r, &dev, "PUT", "/device-meta/pantahub.online", "1");
    assert_eq!(code, 200, "{out}");
    assert!(
        wait_progress(&r, &mut dev, "1", "UPDATED"),
        "log:\n{}",
        r.log_of("1")
    );
    // the device's own key takes the Hub client's value, as upstream's one list does
    assert_eq!(devmeta(&r, &dev, "pantahub.online").as_deref(), Some("1"));
    // as always-remote-*'s golden: the first attempt counted
    assert_eq!(
        progress_json(&r, "1"),
        r#"{"status":"UPDATED","status-msg":"Update finished, revision not set as rollback point","progress":100,"retries":1}"#
    );
    assert_eq!(
        devmeta(&r, &dev, "pantavisor.revision").as_deref(),
        Some("1")
    );
    // the running revision is the device's: put again, 409 with its progress, nothing changes
    assert_eq!(
        call(&r, &dev, "PUT", "/steps/1", &state),
        (409, progress_json(&r, "1"))
    );

    // a reboot update (a BSP change): REMOTE_RUN installs, tries it by a reboot, DONE
    let (objects, state) = revision(&r, "r2", &desc("k2", "v2"));
    assert_eq!(
        call(&r, &dev, "PUT", "/steps/2", &state),
        (200, QUEUED_1_OF_10.to_string())
    );
    put_objects(&r, &objects);
    assert_eq!(cmd(&r, &dev, "REMOTE_RUN", "2").0, 200);
    let end = harness::wait_end(&mut dev, Duration::from_secs(30));
    assert_eq!(end, End::Reboot, "log:\n{}", r.log_of("1"));
    assert_eq!(
        r.progress("2"),
        Some(("INPROGRESS".into(), "Rebooting".into()))
    );
    assert_eq!(r.env(), (Some("0".into()), Some("2".into())));
    let mut dev = boot_started(&mut r, "2");
    assert!(wait_mode(&r, &mut dev, "remote"));
    let (code, _) = call(&r, &dev, "PUT", "/device-meta/pantahub.online", "1");
    assert_eq!(code, 200);
    assert!(
        wait_progress(&r, &mut dev, "2", "DONE"),
        "log:\n{}",
        r.log_of("2")
    );
    assert_eq!(
        progress_json(&r, "2"),
        r#"{"status":"DONE","status-msg":"Update finished, revision set as rollback point","progress":100,"retries":1}"#
    );
    assert_eq!(r.env(), (Some("2".into()), None));

    // a local revision runs: local mode, the Hub client stopped and unlisted; UPDATE_METADATA
    // refused; GO_REMOTE brings it back
    let (objects, state) = r.make_revision("l1", &desc("k2", "v3"));
    r.upload(&dev, &objects, &state, "locals/l1");
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run", "locals/l1"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        wait_progress(&r, &mut dev, "locals/l1", "UPDATED"),
        "log:\n{}",
        r.log_of("locals/l1")
    );
    assert!(wait_mode(&r, &mut dev, "local"), "{:?}", daemons(&r, &dev));
    assert_eq!(
        cmd(&r, &dev, "UPDATE_METADATA", ""),
        (
            409,
            r#"{"Error":"Cannot do this operation while on local mode"}"#.into()
        )
    );
    assert_eq!(cmd(&r, &dev, "GO_REMOTE", "").0, 200);
    assert!(wait_mode(&r, &mut dev, "remote"), "{:?}", daemons(&r, &dev));
    assert_eq!(cmd(&r, &dev, "GO_REMOTE", ""), (204, String::new()));
    assert_eq!(cmd(&r, &dev, "UPDATE_METADATA", "").0, 200);
    // the Hub client reads the configuration from /config2 (credentials too) and mirrors the
    // Hub's user-meta, whose configuration keys the device applies as for local user-meta
    let config2 = |r: &Rig, d: &Child| call(r, d, "GET", "/config2", "").1;
    assert!(config2(&r, &dev).contains(r#""key":"PH_CREDS_SECRET","#));
    assert!(config2(&r, &dev).contains(r#""key":"PV_REVISION_RETRIES","value":"10","#));
    assert_eq!(
        call(&r, &dev, "PUT", "/user-meta/PV_REVISION_RETRIES", "5").0,
        200
    );
    let retries = |v: &str| format!(r#""key":"PV_REVISION_RETRIES","value":"{v}","modified":"#);
    assert!(
        r.wait(&mut dev, Duration::from_secs(10), &|r, d| config2(r, d)
            .contains(&retries("5"))),
        "{}",
        config2(&r, &dev)
    );
    assert_eq!(
        call(&r, &dev, "DELETE", "/user-meta/PV_REVISION_RETRIES", "").0,
        200
    );
    assert!(
        r.wait(&mut dev, Duration::from_secs(10), &|r, d| config2(r, d)
            .contains(&retries("10")))
    );
    assert_eq!(finish(&mut dev), End::PowerOff);
}

#[test]
fn remote_retries_across_a_reboot_a_container_refused_and_the_hub_gate_rolling_back() {
    let _g = SERIAL.lock();
    let mut r = Rig::with_config(
        "remote-retries",
        &desc("k1", "v1"),
        "PV_CONTROL_REMOTE=1\nPV_REVISION_RETRIES=3\n",
    );
    // a PH_ key: pantahub.config's, not pantavisor.config's
    std::fs::create_dir_all(r.storage.join("config")).unwrap();
    std::fs::write(
        r.storage.join("config/pantahub.config"),
        "PH_UPDATER_NETWORK_TIMEOUT=3\n",
    )
    .unwrap();
    let mut dev = boot_started(&mut r, "0");
    let (_, state) = revision(&r, "r1", &desc("k1", "v2"));
    // a container, even a mgmt one, is no Hub client: upstream's 403 text
    let cg = r.cgroup.clone().expect("cgroup v2 (containers' callers)");
    let pid = harness::device_pid(&dev).unwrap();
    let procs = cg.join("lxc/os/cgroup.procs");
    for (m, p, b) in [
        ("PUT", "/steps/1", state.as_str()),
        (
            "PUT",
            "/steps/1/progress",
            r#"{"status":"DOWNLOADING","status-msg":""}"#,
        ),
        ("POST", "/commands", r#"{"op":"REMOTE_RUN","payload":"1"}"#),
    ] {
        let h = rig::http_as(pid, Some(&procs), &r.socket, m, p, b).unwrap();
        assert_eq!(
            (h.code, h.body.as_str()),
            (403, r#"{"Error":"Request not sent from a mgmt platform"}"#),
            "{m} {p}"
        );
    }
    assert!(!r.storage.join("trails/1").exists());

    // update-retries-pv-crash: each attempt counted, across a device reboot
    let report = r#"{"status":"DOWNLOADING","status-msg":"","progress":25}"#;
    let golden = |n: u32| {
        format!(
            r#"{{"status":"DOWNLOADING","status-msg":"Downloading update artifacts, retry {n} of 3","progress":25,"retries":{n}}}"#
        )
    };
    let (code, out) = call(&r, &dev, "PUT", "/steps/1", &state);
    assert_eq!(code, 200, "{out}");
    assert_eq!(
        call(&r, &dev, "PUT", "/steps/1/progress", report),
        (200, golden(1))
    );
    assert_eq!(finish(&mut dev), End::PowerOff);
    // the boot leaves a Hub step in DOWNLOADING to the Hub client, who puts it again
    let mut dev = boot_started(&mut r, "0");
    assert_eq!(progress_json(&r, "1"), golden(1));
    assert_eq!(
        call(&r, &dev, "PUT", "/steps/1", &state),
        (
            200,
            r#"{"status":"QUEUED","status-msg":"Downloading update metadata, retry 2 of 3","progress":5,"retries":2}"#.into()
        )
    );
    assert_eq!(
        call(&r, &dev, "PUT", "/steps/1/progress", report),
        (200, golden(2))
    );
    // other bytes under the same revision: 409, nothing changes
    let (code, _) = call(&r, &dev, "PUT", "/steps/1", &format!("{state} "));
    assert_eq!(code, 409);
    assert_eq!(progress_json(&r, "1"), golden(2));
    let wontgo = r#"{"status":"WONTGO","status-msg":"Max update processing retries reached","progress":100,"retries":3}"#;
    assert_eq!(
        call(&r, &dev, "PUT", "/steps/1", &state),
        (409, wontgo.to_string())
    );
    assert_eq!(progress_json(&r, "1"), wontgo);
    assert_eq!(cmd(&r, &dev, "REMOTE_RUN", "1"), (409, wontgo.to_string()));

    // an object missing from the store at REMOTE_RUN: WONTGO as a local run, the device runs on
    let (_, state3) = revision(&r, "r3", &desc("k4", "v1"));
    let (code, out) = call(&r, &dev, "PUT", "/steps/3", &state3);
    assert_eq!(code, 200, "{out}");
    assert_eq!(cmd(&r, &dev, "REMOTE_RUN", "3").0, 200);
    assert!(
        wait_progress(&r, &mut dev, "3", "WONTGO"),
        "log:\n{}",
        r.log_of("0")
    );
    assert_eq!(
        progress_json(&r, "3")
            .split(r#","logs":"#)
            .next()
            .unwrap_or_default()
            .trim_end_matches('}'),
        r#"{"status":"WONTGO","status-msg":"Internal error","progress":100,"retries":1"#
    );
    assert_eq!(r.env(), (Some("0".into()), None));

    // the Hub gate: a Hub revision tried while the Hub is never reachable rolls back after
    // PH_UPDATER_NETWORK_TIMEOUT with upstream's message
    let (objects, state) = revision(&r, "r2", &desc("k3", "v1"));
    let (code, out) = call(&r, &dev, "PUT", "/steps/2", &state);
    assert_eq!(code, 200, "{out}");
    put_objects(&r, &objects);
    assert_eq!(cmd(&r, &dev, "REMOTE_RUN", "2").0, 200);
    let end = harness::wait_end(&mut dev, Duration::from_secs(30));
    assert_eq!(end, End::Reboot, "log:\n{}", r.log_of("0"));
    let (rev, mut dev) = r.boot_rev();
    assert_eq!(rev, "2");
    let end = harness::wait_end(&mut dev, Duration::from_secs(40));
    let log = r.log_of("2");
    assert_eq!(end, End::Reboot, "log:\n{log}");
    assert!(
        log.contains("timed out before getting any response from cloud. Rolling back..."),
        "{log}"
    );
    assert_eq!(
        r.progress("2"),
        Some(("ERROR".into(), "Hub not reachable".into()))
    );
    // the bootloader falls back; the fallback boot keeps the ERROR and clears pv_try
    let mut dev = boot_started(&mut r, "0");
    assert_eq!(
        r.progress("2"),
        Some(("ERROR".into(), "Hub not reachable".into()))
    );
    assert_eq!(r.env(), (Some("0".into()), None));
    assert_eq!(finish(&mut dev), End::PowerOff);
}
