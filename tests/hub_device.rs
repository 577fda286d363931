//! The Hub client on a real device against the mock Hub (`tests/hub/mockhub.py`): the binary
//! as PID 1 of a new PID namespace, its Hub daemon (`pantavisor hub`) talking to the mock
//! over TLS with a CA made at run time, and to the device over pv-ctrl.
mod harness;
#[path = "hub/mock.rs"]
mod mock;
mod rig;
mod support;

use mock::MockHub;
use rig::{finish, sh, Rig, FOREVER, SERIAL};
use std::process::Child;
use std::time::Duration;

struct Setup {
    r: Rig,
    hub: MockHub,
    dev: Child,
    client: Option<Child>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(mut c) = self.client.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        finish(&mut self.dev);
    }
}

fn desc() -> String {
    format!(
        r#"{{"containers":{{"alpha":{{"rootfs":"rootfs","cmd":{}}}}}}}"#,
        sh(FOREVER)
    )
}

/// A device pointed at a fresh mock Hub; `env` adds PH_/PV_ keys.
fn setup(name: &str, env: &[(&str, &str)]) -> Setup {
    let r = Rig::new(name, &desc());
    let certs = r.dir.join("hub");
    std::fs::create_dir_all(&certs).unwrap();
    let hub = MockHub::start(&certs, "127.0.0.1");
    let trust = r.dir.join("certs");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(hub.ca_pem(), trust.join("ca.pem")).unwrap();
    let port = hub.port.to_string();
    let trust_s = trust.display().to_string();
    let mut all: Vec<(&str, &str)> = vec![
        ("PH_CREDS_HOST", "127.0.0.1"),
        ("PH_CREDS_PORT", &port),
        ("PV_LIBTHTTP_CERTSDIR", &trust_s),
        ("PH_UPDATER_INTERVAL", "1"),
        ("PV_CONTROL_REMOTE", "1"),
    ];
    all.extend_from_slice(env);
    let mut r = r;
    let (_, cmdline) = r.bl.pick();
    let dev = r.bl.spawn(&cmdline, &all);
    let mut s = Setup {
        r,
        hub,
        dev,
        client: None,
    };
    let ready = s.r.wait(&mut s.dev, Duration::from_secs(30), &|r, d| {
        r.status_of(d, "alpha").as_deref() == Some("STARTED")
    });
    assert!(ready, "device not ready:\n{}", s.r.log());
    s
}

impl Setup {
    fn client_log(&self) -> String {
        self.r
            .log()
            .lines()
            .filter(|l| l.contains("[hub-"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn why(&self) -> String {
        format!(
            "client:\n{}\nhub log:\n{}\ndevice:\n{}",
            self.client_log(),
            self.hub.log().join("\n"),
            self.r.log()
        )
    }
}

#[test]
fn auto_claim_then_first_sync_uploads_the_factory_state_byte_exact() {
    let _g = SERIAL.lock();
    let s = setup("hub-autoclaim", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    let (st, body) = s.hub.ctl(
        "POST",
        "/autotokens",
        r#"{"token":"tok-1","owner":"prn:::accounts:/owner1"}"#,
    );
    assert_eq!(st, 200, "{body}");
    let synced = s
        .hub
        .wait_for(Duration::from_secs(30), |l| {
            l.contains("\"POST\"") && l.contains("\"/trails/\"") && l.contains("\"status\": 200")
        })
        .is_some();
    assert!(synced, "no first sync: {}", s.why());
    let id = std::fs::read_to_string(s.r.dir.join("run/device-id")).expect("device-id");
    let (st, trail) = s.hub.ctl("GET", &format!("/devices/{id}/trail"), "");
    assert_eq!(st, 200, "{trail}");
    let v = pantavisor::json::parse_str(&trail, Default::default()).unwrap();
    let raw = v.get("raw").and_then(|r| r.as_str()).expect("raw");
    let factory = std::fs::read_to_string(s.r.storage.join("trails/0/.pvr/json")).unwrap();
    assert_eq!(
        raw, factory,
        "the Hub's trail is not the factory state byte for byte"
    );
    let pc = std::fs::read_to_string(s.r.storage.join("config/pantahub.config")).unwrap();
    assert!(pc.contains("PH_CREDS_PRN=prn:::devices:/"), "{pc}");
    assert!(!s.r.storage.join("config/unclaimed.config").exists());
    drop(s);
}

/// The device's id, once registered.
fn device_id(s: &Setup) -> Option<String> {
    std::fs::read_to_string(s.r.dir.join("run/device-id")).ok()
}

#[test]
fn manual_claim_by_the_challenge_then_a_401_logs_in_again() {
    let _g = SERIAL.lock();
    let s = setup("hub-claim", &[]);
    // unclaimed: the credentials wait in unclaimed.config, the challenge in <rundir>
    let challenge = s.r.dir.join("run/challenge");
    let t = std::time::Instant::now();
    while !(challenge.exists() && device_id(&s).is_some()) && t.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let ch =
        std::fs::read_to_string(&challenge).unwrap_or_else(|_| panic!("no challenge: {}", s.why()));
    let id = device_id(&s).unwrap();
    let unclaimed = std::fs::read_to_string(s.r.storage.join("config/unclaimed.config")).unwrap();
    assert!(
        unclaimed.contains(&format!("PH_CREDS_ID={id}")),
        "{unclaimed}"
    );
    assert!(!s.r.storage.join("config/pantahub.config").exists());
    // nothing is synced before the claim
    assert!(!s.hub.log().iter().any(|l| l.contains("\"/trails/\"")));

    let (st, body) = s.hub.ctl(
        "POST",
        &format!("/devices/{id}/claim"),
        &format!(r#"{{"challenge":"{ch}"}}"#),
    );
    assert_eq!(st, 200, "{body}");
    let synced = s.hub.wait_for(Duration::from_secs(30), |l| {
        l.contains("\"POST\"") && l.contains("\"/trails/\"") && l.contains("\"status\": 200")
    });
    assert!(synced.is_some(), "no sync after the claim: {}", s.why());
    assert!(!challenge.exists(), "the challenge stays after the claim");
    let pc = std::fs::read_to_string(s.r.storage.join("config/pantahub.config")).unwrap();
    assert!(pc.contains(&format!("PH_CREDS_ID={id}")), "{pc}");

    // any 401 drops the token: the client logs in again and goes on
    let logins = |s: &Setup| {
        s.hub
            .log()
            .iter()
            .filter(|l| l.contains("\"/auth/login\"") && l.contains("\"status\": 200"))
            .count()
    };
    let before = logins(&s);
    let (st, body) = s.hub.ctl("POST", "/faults", r#"{"kind":"unauthorized"}"#);
    assert_eq!(st, 200, "{body}");
    let n = s.hub.log().len();
    let t = std::time::Instant::now();
    let mut again = false;
    while t.elapsed() < Duration::from_secs(30) {
        let log = s.hub.log();
        let after: Vec<&String> = log.iter().skip(n).collect();
        let relogged = logins(&s) > before;
        let steps_ok = after
            .iter()
            .rev()
            .any(|l| l.contains("/steps?") && l.contains("\"status\": 200"));
        if relogged && steps_ok {
            again = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(again, "no login after the 401: {}", s.why());
    assert!(
        s.hub
            .log()
            .iter()
            .skip(n)
            .any(|l| l.contains("\"status\": 401")),
        "the fault never answered 401: {}",
        s.why()
    );
}
