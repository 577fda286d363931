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

/// Groups root and app: `alpha` in root, `web` (prints its /etc/motd, a `_config` file) in
/// app, whose restart policy makes a change to it a live update.
fn desc(motd: &str) -> String {
    format!(
        r#"{{"groups":[{{"name":"root","status_goal":"STARTED","restart_policy":"system","timeout":10}},
           {{"name":"app","status_goal":"STARTED","restart_policy":"container","timeout":10}}],
 "containers":{{
   "alpha":{{"rootfs":"rootfs","cmd":{idle},"group":"root"}},
   "web":{{"rootfs":"rootfs","cmd":{web},"group":"app","config":{{"etc/motd":"{motd}"}}}}}}}}"#,
        idle = sh(FOREVER),
        web = sh(&format!("cat /etc/motd; {FOREVER}")),
    )
}

/// A device pointed at a fresh mock Hub; `env` adds PH_/PV_ keys.
fn setup(name: &str, env: &[(&str, &str)]) -> Setup {
    let r = Rig::new(name, &desc("v1"));
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

/// A step on the Hub as `pvr post` makes it: the revision's objects first, then the step.
fn post_step(s: &Setup, id: &str, rev: u32, motd: &str) {
    let (objects, state) = s.r.make_revision(&format!("rev{rev}"), &desc(motd));
    for e in std::fs::read_dir(&objects).unwrap() {
        let p = e.unwrap().path();
        let (st, body) = s.hub.ctl(
            "POST",
            "/objects",
            &format!(r#"{{"path":"{}"}}"#, p.display()),
        );
        assert_eq!(st, 200, "{body}");
    }
    let state = std::fs::read_to_string(state).unwrap();
    let (st, body) = s.hub.ctl(
        "POST",
        &format!("/devices/{id}/steps"),
        &format!(r#"{{"rev":{rev},"state":{state},"commit-msg":"motd {motd}"}}"#),
    );
    assert_eq!(st, 200, "{body}");
}

/// Every progress the Hub received for `rev`, as (status, status-msg).
fn history(s: &Setup, id: &str, rev: u32) -> Vec<(String, String)> {
    let (_, body) = s.hub.ctl("GET", &format!("/devices/{id}/steps"), "");
    let Ok(v) = pantavisor::json::parse_str(&body, Default::default()) else {
        return Vec::new();
    };
    let Some(step) = v
        .as_array()
        .unwrap_or_default()
        .iter()
        .find(|st| st.get("rev").and_then(|r| r.as_u64()) == Some(u64::from(rev)))
    else {
        return Vec::new();
    };
    step.get("history")
        .and_then(|h| h.as_array())
        .unwrap_or_default()
        .iter()
        .filter_map(|raw| {
            // each as the device PUT it
            let p = pantavisor::json::parse_str(raw.as_str()?, Default::default()).ok()?;
            let f = |k: &str| p.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            Some((f("status"), f("status-msg")))
        })
        .collect()
}

/// Waits until the Hub got a final progress for `rev`; the history.
fn wait_final(s: &Setup, id: &str, rev: u32, limit: Duration) -> Vec<(String, String)> {
    let t = std::time::Instant::now();
    loop {
        let h = history(s, id, rev);
        let last = h.last().map(|(st, _)| st.as_str());
        if matches!(last, Some("DONE" | "UPDATED" | "WONTGO" | "ERROR")) || t.elapsed() > limit {
            return h;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A claimed, synced device: its id.
fn claimed(s: &Setup) -> String {
    let (st, body) = s.hub.ctl(
        "POST",
        "/autotokens",
        r#"{"token":"tok-1","owner":"prn:::accounts:/owner1"}"#,
    );
    assert_eq!(st, 200, "{body}");
    let synced = s.hub.wait_for(Duration::from_secs(30), |l| {
        l.contains("\"POST\"") && l.contains("\"/trails/\"") && l.contains("\"status\": 200")
    });
    assert!(synced.is_some(), "no first sync: {}", s.why());
    device_id(s).unwrap()
}

/// Upstream's progress of a remote live update, status and message: the Hub may miss a
/// middle one (one PUT in flight, the newest replacing a waiting one), never reorder them.
const UPDATED_LIVE: [(&str, &str); 5] = [
    ("QUEUED", "Downloading update metadata, retry 1 of 10"),
    ("DOWNLOADING", "Downloading update artifacts, retry 1 of 10"),
    (
        "INPROGRESS",
        "Transitioning to new revision without rebooting",
    ),
    ("TESTING", "Awaiting to see if update is stable"),
    (
        "UPDATED",
        "Update finished, revision not set as rollback point",
    ),
];

/// `h` (repeats folded) is `want` in order with none but middle ones missing.
fn assert_sequence(h: &[(String, String)], want: &[(&str, &str)]) {
    let mut got: Vec<(&str, &str)> = h.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    got.dedup();
    assert_eq!(got.first(), want.first(), "{h:#?}");
    assert_eq!(got.last(), want.last(), "{h:#?}");
    let mut at = 0;
    for g in &got {
        match want.iter().skip(at).position(|w| w == g) {
            Some(i) => at += i + 1,
            None => panic!("{g:?} out of order or not upstream's: {h:#?}"),
        }
    }
}

#[test]
fn remote_live_update_to_updated_with_upstreams_progress_sequence() {
    let _g = SERIAL.lock();
    let mut s = setup("hub-update", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    let id = claimed(&s);
    post_step(&s, &id, 1, "v2");
    let h = wait_final(&s, &id, 1, Duration::from_secs(60));
    println!("{h:#?}");
    assert_eq!(
        h.last().map(|p| p.0.as_str()),
        Some("UPDATED"),
        "{h:?}\n{}",
        s.why()
    );
    assert_sequence(&h, &UPDATED_LIVE);
    let up = s.r.wait(&mut s.dev, Duration::from_secs(10), &|r, _| {
        r.console_of("1", "web").contains("v2")
    });
    assert!(up, "web does not show v2: {}", s.why());
}
