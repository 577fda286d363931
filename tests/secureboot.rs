//! Secure boot on a real device (root): states signed as `pvr sig add` signs them
//! (tests/pvs/signer.rs) under a CA made at run time, the device's trust store at
//! `<PV_SYSTEM_ETCDIR>/pantavisor/pvs/trust/`, and the checks where upstream makes them: a step
//! upload (422 `Secureboot: ...`, nothing kept), LOCAL_RUN (WONTGO), and the boot of a revision
//! on probation (ERROR, rolled back).
#![cfg(feature = "pvs")]
mod harness;
mod rig;
#[allow(dead_code)] // the shared signer: what these tests need of it
#[path = "pvs/signer.rs"]
mod signer;
mod support;

use harness::End;
use rig::{finish, sh, Rig, FOREVER, SERIAL};
use signer::{render, sign, Pki, Sig};
use std::path::Path;
use std::time::Duration;

fn desc(kernel: &str, motd: &str) -> String {
    format!(
        r#"{{"bsp":{{"kernel":"{kernel}"}},
 "groups":[{{"name":"root","status_goal":"STARTED","restart_policy":"system","timeout":10}}],
 "containers":{{
   "os":{{"rootfs":"rootfs","cmd":{web},"group":"root","config":{{"etc/motd":"{motd}"}}}}}}}}"#,
        web = sh(&format!("cat /etc/motd; {FOREVER}")),
    )
}

/// The pvmk state at `path` as the signer keeps states (key -> raw value).
fn load(path: &Path) -> signer::State {
    let text = std::fs::read_to_string(path).unwrap();
    let v = pantavisor::json::parse_str(&text, Default::default()).unwrap();
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, x)| (k.to_string(), x.raw(&text).to_string()))
        .collect()
}

/// Signs the whole state (`**`, pvr's default) with leaf `leaf` of `pki` and writes it back.
fn sign_file(pki: &Pki, path: &Path, leaf: &str) {
    let mut s = load(path);
    let sig = Sig::new(
        "all",
        pki.path(&format!("{leaf}.key")),
        vec![pki.path(&format!("{leaf}.crt"))],
    );
    sign(&mut s, &sig);
    std::fs::write(path, render(&s)).unwrap();
}

fn boot_started(r: &mut Rig, want: &str) -> std::process::Child {
    let (rev, mut dev) = r.boot_rev();
    assert_eq!(rev, want, "the bootloader booted another revision");
    let up = r.wait(&mut dev, Duration::from_secs(30), &|r, d| {
        r.status_of(d, "os").as_deref() == Some("STARTED")
    });
    if !up {
        let end = finish(&mut dev);
        panic!("{rev}: not STARTED ({end:?}); log:\n{}", r.log_of(&rev));
    }
    dev
}

fn progress_is(r: &Rig, dev: &mut std::process::Child, rev: &str, status: &str) -> bool {
    r.wait(dev, Duration::from_secs(40), &|r, _| {
        r.progress(rev).is_some_and(|(s, _)| s == status)
    })
}

#[test]
fn signed_states_are_checked_at_upload_run_and_boot() {
    let _g = SERIAL.lock();
    let name = "sb-lenient";
    let dir = std::env::temp_dir().join(format!("pv-ctl-{name}-{}", std::process::id()));
    let etc = dir.join("etc");
    let mut r = Rig::with_config(
        name,
        &desc("k1", "v0"),
        &format!("PV_SYSTEM_ETCDIR={}\n", etc.display()),
    );
    let pki = Pki::new(dir.join("pki"));
    pki.ca("ca", "Test Pantavisor CA");
    pki.ca("rogue", "Test Pantavisor CA");
    let (old, far) = ("20200101000000Z", "21200101000000Z");
    pki.leaf("dev", "dev", "P-256", "ca", old, far);
    pki.leaf("evil", "dev", "P-256", "rogue", old, far);
    let trust = etc.join("pantavisor/pvs/trust");
    std::fs::create_dir_all(&trust).unwrap();
    let store = trust.join("ca-certificates.crt");
    std::fs::copy(pki.path("ca.crt"), &store).unwrap();

    // the factory revision is unsigned: lenient (the default) runs it
    let mut dev = boot_started(&mut r, "0");
    // the boot's re-hash is in the revision's own log, as upstream's (it once reached only
    // the console: the log tree was set up after it)
    let log0 = r.log_of("0");
    assert!(
        log0.contains("validating checksum for") && log0.contains("validating value for json"),
        "{log0}"
    );

    // a step signed under a CA the device does not trust: refused at upload, nothing kept
    let (objects, state) = r.make_revision("evil", &desc("k2", "evil"));
    sign_file(&pki, &state, "evil");
    r.upload_objects(&dev, &objects);
    let body = std::fs::read_to_string(&state).unwrap();
    let h = r.http(&dev, "PUT", "/steps/locals/evil", &body).unwrap();
    assert_eq!(h.code, 422, "{}", h.body);
    assert_eq!(
        h.body.trim(),
        r#"{"Error":"Secureboot: Signature validation failed"}"#
    );
    assert!(!r.storage.join("trails/locals/evil").exists());
    assert!(r.log_of("0").contains("evil"), "the refusal is not logged");

    // signed right: taken; then one covered byte changed on the storage before LOCAL_RUN:
    // WONTGO with upstream's message, and the device runs on
    let (objects, state) = r.make_revision("bent", &desc("k2", "bent"));
    sign_file(&pki, &state, "dev");
    r.upload(&dev, &objects, &state, "locals/bent");
    let staged = r.storage.join("trails/locals/bent/.pvr/json");
    let text = std::fs::read_to_string(&staged).unwrap();
    assert!(text.contains("\"timeout\":10"));
    std::fs::write(
        &staged,
        text.replacen("\"timeout\":10", "\"timeout\":11", 1),
    )
    .unwrap();
    assert_eq!(r.pvcontrol(&dev, &["cmd", "run", "locals/bent"]).0, 0);
    assert!(progress_is(&r, &mut dev, "locals/bent", "WONTGO"));
    assert_eq!(
        r.progress("locals/bent").map(|p| p.1),
        Some("Signature validation failed".into())
    );
    assert_eq!(r.status_of(&dev, "os").as_deref(), Some("STARTED"));

    // signed right: installed and tried; the boot of the try checks it again, and with the
    // trust store changed meanwhile (a new BSP's) it fails there: ERROR, rolled back to 0
    let (objects, state) = r.make_revision("r1", &desc("k2", "v1"));
    sign_file(&pki, &state, "dev");
    r.upload(&dev, &objects, &state, "locals/r1");
    assert_eq!(r.pvcontrol(&dev, &["cmd", "run", "locals/r1"]).0, 0);
    let end = harness::wait_end(&mut dev, Duration::from_secs(30));
    assert_eq!(end, End::Reboot, "log:\n{}", r.log_of("0"));
    assert_eq!(r.env(), (Some("0".into()), Some("locals/r1".into())));
    std::fs::copy(pki.path("rogue.crt"), &store).unwrap();
    let (b, mut dev) = r.boot_rev();
    assert_eq!(b, "locals/r1");
    assert_eq!(
        harness::wait_end(&mut dev, Duration::from_secs(30)),
        End::Reboot
    );
    assert_eq!(
        r.progress("locals/r1"),
        Some((
            "ERROR".to_string(),
            "Signature validation failed".to_string()
        ))
    );
    // and why is in the log of the revision that failed
    let log1 = r.log_of("locals/r1");
    assert!(
        log1.contains("UnknownIssuer") || log1.contains("not trusted"),
        "{log1}"
    );
    // the trust store back: the next signed update goes through to DONE
    std::fs::copy(pki.path("ca.crt"), &store).unwrap();
    let mut dev = boot_started(&mut r, "0");
    assert_eq!(r.env(), (Some("0".into()), None));
    let (objects, state) = r.make_revision("r2", &desc("k3", "v2"));
    sign_file(&pki, &state, "dev");
    r.upload(&dev, &objects, &state, "locals/r2");
    assert_eq!(r.pvcontrol(&dev, &["cmd", "run", "locals/r2"]).0, 0);
    assert_eq!(
        harness::wait_end(&mut dev, Duration::from_secs(30)),
        End::Reboot
    );
    let mut dev = boot_started(&mut r, "locals/r2");
    assert!(
        progress_is(&r, &mut dev, "locals/r2", "DONE"),
        "log:\n{}",
        r.log_of("locals/r2")
    );
    assert!(r.console_of("locals/r2", "os").contains("v2"));
    assert_eq!(finish(&mut dev), End::PowerOff);
}

#[test]
fn strict_refuses_an_unsigned_step_and_runs_a_covered_one() {
    let _g = SERIAL.lock();
    let name = "sb-strict";
    let dir = std::env::temp_dir().join(format!("pv-ctl-{name}-{}", std::process::id()));
    let etc = dir.join("etc");
    let mut r = Rig::with_config(
        name,
        &desc("k1", "v0"),
        &format!(
            "PV_SYSTEM_ETCDIR={}\nPV_SECUREBOOT_MODE=strict\n",
            etc.display()
        ),
    );
    let pki = Pki::new(dir.join("pki"));
    pki.ca("ca", "Test Pantavisor CA");
    pki.leaf(
        "dev",
        "dev",
        "rsa",
        "ca",
        "20200101000000Z",
        "21200101000000Z",
    );
    let trust = etc.join("pantavisor/pvs/trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(pki.path("ca.crt"), trust.join("ca-certificates.crt")).unwrap();
    // the factory revision signed in place (as a signed factory image is)
    let factory = r.storage.join("trails/0/.pvr/json");
    sign_file(&pki, &factory, "dev");
    let mut dev = boot_started(&mut r, "0");

    let (objects, state) = r.make_revision("bare", &desc("k2", "bare"));
    r.upload_objects(&dev, &objects);
    let body = std::fs::read_to_string(&state).unwrap();
    let h = r.http(&dev, "PUT", "/steps/locals/bare", &body).unwrap();
    assert_eq!(h.code, 422, "{}", h.body);
    assert_eq!(
        h.body.trim(),
        r#"{"Error":"Secureboot: State not fully covered by signatures"}"#
    );
    assert!(!r.storage.join("trails/locals/bare").exists());

    let (objects, state) = r.make_revision("r1", &desc("k1", "v1"));
    sign_file(&pki, &state, "dev");
    r.upload(&dev, &objects, &state, "locals/r1");
    assert_eq!(r.pvcontrol(&dev, &["cmd", "run", "locals/r1"]).0, 0);
    assert_eq!(
        harness::wait_end(&mut dev, Duration::from_secs(30)),
        End::Reboot,
        "log:\n{}",
        r.log_of("0")
    );
    let mut dev = boot_started(&mut r, "locals/r1");
    assert!(
        progress_is(&r, &mut dev, "locals/r1", "DONE"),
        "log:\n{}",
        r.log_of("locals/r1")
    );
    assert_eq!(finish(&mut dev), End::PowerOff);
}
