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
    env: Vec<(String, String)>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        finish(&mut self.dev);
    }
}

/// Groups root and app: `alpha` in root, `web` (prints its /etc/motd, a `_config` file) in
/// app, whose restart policy makes a change to it a live update; `blob`: that many bytes of
/// a text object more in `web` (a download that takes a while); `fail`: web exits at once.
fn desc_with(motd: &str, blob: usize, fail: bool) -> String {
    let web = if fail {
        "exit 3".to_string()
    } else {
        format!("cat /etc/motd; {FOREVER}")
    };
    let extra = if blob == 0 {
        String::new()
    } else {
        let text = noise(blob as u64 ^ motd.len() as u64, blob);
        format!(r#","extra":{{"web/blob.txt":"{text}"}}"#)
    };
    format!(
        r#"{{"groups":[{{"name":"root","status_goal":"STARTED","restart_policy":"system","timeout":10}},
           {{"name":"app","status_goal":"STARTED","restart_policy":"container","timeout":10}}],
 "containers":{{
   "alpha":{{"rootfs":"rootfs","cmd":{idle},"group":"root"}},
   "web":{{"rootfs":"rootfs","cmd":{web},"group":"app","config":{{"etc/motd":"{motd}"}}}}}}{extra}}}"#,
        idle = sh(FOREVER),
        web = sh(&web),
    )
}

fn desc(motd: &str) -> String {
    desc_with(motd, 0, false)
}

/// A device pointed at a fresh mock Hub over TLS, in remote mode; `env` adds PH_/PV_ keys.
fn setup(name: &str, env: &[(&str, &str)]) -> Setup {
    let mut s = setup_with(name, env, &|_| {});
    s.wait_ready("0");
    s
}

/// [`setup`] with `before` run before the device boots (the device is not waited for).
fn setup_with(name: &str, env: &[(&str, &str)], before: &dyn Fn(&Setup)) -> Setup {
    let mut s = unbooted(name, &desc("v1"), env);
    before(&s);
    s.boot();
    s
}

/// A device of `description` pointed at a fresh mock Hub, not booted yet.
fn unbooted(name: &str, description: &str, env: &[(&str, &str)]) -> Setup {
    let r = Rig::new(name, description);
    let certs = r.dir.join("hub");
    std::fs::create_dir_all(&certs).unwrap();
    let hub = MockHub::start(&certs, "127.0.0.1");
    // the device trusts the test CA only
    let trust = r.dir.join("certs");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(hub.ca_pem(), trust.join("ca.pem")).unwrap();
    let mut all: Vec<(String, String)> = [
        ("PH_CREDS_HOST", "127.0.0.1".to_string()),
        ("PH_CREDS_PORT", hub.port.to_string()),
        ("PV_LIBTHTTP_CERTSDIR", trust.display().to_string()),
        ("PH_UPDATER_INTERVAL", "1".to_string()),
        ("PV_CONTROL_REMOTE", "1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    // a placeholder until the boot: `true` ends at once
    let placeholder = std::process::Command::new("true").spawn().unwrap();
    let mut s = Setup {
        r,
        hub,
        dev: placeholder,
        env: all,
    };
    let _ = s.dev.wait();
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

    fn wait_ready(&mut self, rev: &str) {
        let ready = self
            .r
            .wait(&mut self.dev, Duration::from_secs(40), &|r, d| {
                r.status_of(d, "alpha").as_deref() == Some("STARTED")
            });
        assert!(ready, "revision {rev}: device not ready:\n{}", self.r.log());
    }

    /// Boots what the harness's bootloader picks (after a reboot or a cut); the revision.
    fn boot(&mut self) -> String {
        let (rev, cmdline) = self.r.bl.pick();
        let pairs: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.dev = self.r.bl.spawn(&cmdline, &pairs);
        rev
    }

    /// SIGKILL of the device's PID 1: its whole namespace, the Hub client with it, dies at
    /// once (a power cut that keeps the page cache).
    fn cut(&mut self) {
        let _ = harness::signal_device(&self.dev, "KILL");
        let _ = harness::wait_end(&mut self.dev, Duration::from_secs(20));
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
    // as upstream's unencrypted-pantahub-config golden: both files stay
    assert!(s.r.storage.join("config/unclaimed.config").exists());
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
    logs_in_again_after_a_401(&s, ("/faults", r#"{"kind":"unauthorized"}"#), &|s| {
        logins(s) > before
    });
}

/// After `fault` (control API path, body) makes the Hub answer the device's token 401: the
/// client logs in again (`relogged` says so) and its step polls are answered 200 again.
fn logs_in_again_after_a_401(s: &Setup, fault: (&str, &str), relogged: &dyn Fn(&Setup) -> bool) {
    let (st, body) = s.hub.ctl("POST", fault.0, fault.1);
    assert_eq!(st, 200, "{body}");
    let n = s.hub.log().len();
    let t = std::time::Instant::now();
    let mut again = false;
    while t.elapsed() < Duration::from_secs(30) {
        let polled = s
            .hub
            .log()
            .iter()
            .skip(n)
            .any(|l| l.contains("/steps?") && l.contains("\"status\": 200"));
        if relogged(s) && polled {
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
/// Returns the objects (sha, size) that the factory revision does not have, largest first.
fn post_step(s: &Setup, id: &str, rev: u32, description: &str) -> Vec<(String, u64)> {
    let (objects, state) = s.r.make_revision(&format!("rev{rev}"), description);
    let mut new = Vec::new();
    for e in std::fs::read_dir(&objects).unwrap() {
        let p = e.unwrap().path();
        let (st, body) = s.hub.ctl(
            "POST",
            "/objects",
            &format!(r#"{{"path":"{}"}}"#, p.display()),
        );
        assert_eq!(st, 200, "{body}");
        let sha = p.file_name().unwrap().to_string_lossy().into_owned();
        if !s.r.storage.join("objects").join(&sha).exists() {
            new.push((sha, std::fs::metadata(&p).unwrap().len()));
        }
    }
    new.sort_by_key(|o| std::cmp::Reverse(o.1));
    let state = std::fs::read_to_string(state).unwrap();
    let (st, body) = s.hub.ctl(
        "POST",
        &format!("/devices/{id}/steps"),
        &format!(r#"{{"rev":{rev},"state":{state},"commit-msg":"step {rev}"}}"#),
    );
    assert_eq!(st, 200, "{body}");
    new
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
    post_step(&s, &id, 1, &desc("v2"));
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

/// The device's own progress of `rev`: (status, message, retries).
fn local(s: &Setup, rev: &str) -> Option<(String, String, u64)> {
    let raw = std::fs::read(s.r.storage.join("trails").join(rev).join(".pv/progress")).ok()?;
    let v = pantavisor::json::parse(&raw, Default::default()).ok()?;
    Some((
        v.get("status")?.as_str()?.to_string(),
        v.get("status-msg")?.as_str()?.to_string(),
        v.get("retries").and_then(|r| r.as_u64()).unwrap_or(0),
    ))
}

/// Waits for `until`, booting the device again whenever it reboots; false on time out.
fn follow(s: &mut Setup, limit: Duration, until: &dyn Fn(&Setup) -> bool) -> bool {
    let t = std::time::Instant::now();
    while t.elapsed() < limit {
        if until(s) {
            return true;
        }
        if s.dev.try_wait().unwrap().is_some() {
            s.boot();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn fault(s: &Setup, json: &str) {
    let (st, body) = s.hub.ctl("POST", "/faults", json);
    assert_eq!(st, 200, "{json}: {body}");
}

/// Bytes the mock sent of object `sha` (every download request of it) and how many requests.
fn served(s: &Setup, sha: &str) -> (u64, usize) {
    let mut bytes = 0;
    let mut n = 0;
    for l in s.hub.log() {
        if l.contains(&format!("/local-s3/{sha}")) && l.contains("\"GET\"") {
            let v = pantavisor::json::parse_str(&l, Default::default()).unwrap();
            bytes += v.get("out").and_then(|o| o.as_u64()).unwrap_or(0);
            n += 1;
        }
    }
    (bytes, n)
}

#[test]
fn a_failing_remote_update_is_rolled_back_and_reported_error() {
    let _g = SERIAL.lock();
    let mut s = setup("hub-fail", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    let id = claimed(&s);
    post_step(&s, &id, 1, &desc_with("v2", 0, true));
    let ended = follow(&mut s, Duration::from_secs(120), &|s| {
        history(s, &id, 1).last().is_some_and(|p| p.0 == "ERROR")
    });
    let h = history(&s, &id, 1);
    assert!(ended, "no ERROR on the Hub: {h:#?}\n{}", s.why());
    // the device is back on its factory revision
    assert_eq!(s.r.env().0.as_deref(), Some("0"), "{}", s.why());
    assert_eq!(local(&s, "1").map(|p| p.0), Some("ERROR".into()));
}

#[test]
fn an_object_served_with_wrong_bytes_is_never_installed() {
    let _g = SERIAL.lock();
    let s = setup("hub-wrong", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    let id = claimed(&s);
    fault(&s, r#"{"kind":"wrong-bytes","count":null}"#);
    let new = post_step(&s, &id, 1, &desc_with("v2", 100_000, false));
    let h = wait_final(&s, &id, 1, Duration::from_secs(60));
    assert_eq!(
        h.last().cloned(),
        Some(("WONTGO".into(), "Object validation went wrong".into())),
        "{h:#?}\n{}",
        s.why()
    );
    for (sha, _) in &new {
        assert!(
            !s.r.storage.join("objects").join(sha).exists(),
            "{sha} was stored"
        );
    }
    assert!(
        !s.r.storage.join("trails/1/web").exists(),
        "revision 1 was checked out"
    );
    assert_eq!(s.r.env(), (Some("0".into()), None));
}

#[test]
fn downloads_cut_at_random_points_resume_with_range() {
    let _g = SERIAL.lock();
    let s = setup("hub-cut", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    let id = claimed(&s);
    // three cuts, each after a different number of bytes of the answer
    let seed = std::process::id() as u64;
    let cuts: Vec<u64> = (0..3)
        .map(|i| 300_000 + (seed * 7919 + i * 104_729) % 1_500_000)
        .collect();
    let blob = 6 << 20;
    let description = desc_with("v2", blob, false);
    // the blob's object id, before the step is posted
    let (objects, _) = s.r.make_revision("probe", &description);
    let big = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let sha = big.file_name().unwrap().to_string_lossy().into_owned();
    let size = std::fs::metadata(&big).unwrap().len();
    for after in &cuts {
        fault(
            &s,
            &format!(r#"{{"kind":"cut","sha":"{sha}","after":{after}}}"#),
        );
    }
    post_step(&s, &id, 1, &description);
    let h = wait_final(&s, &id, 1, Duration::from_secs(120));
    assert_eq!(
        h.last().map(|p| p.0.as_str()),
        Some("UPDATED"),
        "{h:#?}\n{}",
        s.why()
    );
    let (bytes, requests) = served(&s, &sha);
    let again = bytes.saturating_sub(size);
    println!("object of {size} B, cuts after {cuts:?}: {requests} requests, {bytes} B served, {again} B twice");
    assert_eq!(
        requests,
        cuts.len() + 1,
        "one request per cut, then the rest"
    );
    // at most one chunk (the durable slice) fetched again per cut
    assert!(
        again <= cuts.len() as u64 * pantavisor::hub::fetch::SLICE,
        "{again} B fetched twice"
    );
    let ranged = s
        .hub
        .log()
        .iter()
        .filter(|l| l.contains(&format!("/local-s3/{sha}")) && l.contains("\"range\": \"bytes="))
        .count();
    assert_eq!(ranged, cuts.len(), "every resume asks with Range");
    assert!(
        s.client_log().contains("received before"),
        "{}",
        s.client_log()
    );
}

#[test]
fn insufficient_space_is_wontgo_after_gc_as_upstream() {
    let _g = SERIAL.lock();
    let s = setup(
        "hub-space",
        &[
            ("PH_FACTORY_AUTOTOK", "tok-1"),
            ("PV_STORAGE_GC_RESERVED", "100"),
        ],
    );
    let id = claimed(&s);
    let new = post_step(&s, &id, 1, &desc_with("v2", 300_000, false));
    let needed: u64 = new.iter().map(|o| o.1).sum();
    let h = wait_final(&s, &id, 1, Duration::from_secs(60));
    assert_eq!(
        h.last().cloned(),
        Some((
            "WONTGO".into(),
            format!("Space required {needed} B, available 0 B")
        )),
        "{h:#?}\n{}",
        s.why()
    );
    let l = local(&s, "1").unwrap();
    assert_eq!((l.0.as_str(), l.2), ("WONTGO", 1), "{l:?}");
    assert!(
        s.r.log().contains("GC"),
        "no GC before the refusal: {}",
        s.r.log()
    );
}

#[test]
fn update_retries_across_device_crashes_end_wontgo_as_upstream() {
    let _g = SERIAL.lock();
    let mut s = setup(
        "hub-retries",
        &[
            ("PH_FACTORY_AUTOTOK", "tok-1"),
            ("PV_REVISION_RETRIES", "3"),
        ],
    );
    let id = claimed(&s);
    // a download slow enough to crash the device in the middle of it
    fault(&s, r#"{"kind":"slow","rate":100000,"count":null}"#);
    post_step(&s, &id, 1, &desc_with("v2", 2 << 20, false));
    for n in 1..=2u64 {
        let downloading = follow(&mut s, Duration::from_secs(60), &|s| {
            local(s, "1").is_some_and(|p| p.0 == "DOWNLOADING" && p.2 == n)
        });
        assert!(
            downloading,
            "attempt {n}: {:?}\n{}",
            local(&s, "1"),
            s.why()
        );
        assert_eq!(
            local(&s, "1").map(|p| p.1),
            Some(format!("Downloading update artifacts, retry {n} of 3"))
        );
        s.cut();
        assert_eq!(s.boot(), "0");
    }
    let h = wait_final(&s, &id, 1, Duration::from_secs(60));
    assert_eq!(
        h.last().cloned(),
        Some((
            "WONTGO".into(),
            "Max update processing retries reached".into()
        )),
        "{h:#?}\n{}",
        s.why()
    );
    assert_eq!(local(&s, "1").map(|p| p.2), Some(3));
}

#[test]
fn user_meta_from_the_hub_set_and_deleted_and_device_meta_pushed() {
    let _g = SERIAL.lock();
    let s = setup(
        "hub-meta",
        &[
            ("PH_FACTORY_AUTOTOK", "tok-1"),
            ("PH_METADATA_USRMETA_INTERVAL", "1"),
            ("PH_METADATA_DEVMETA_INTERVAL", "1"),
        ],
    );
    let id = claimed(&s);
    let (st, body) = s.hub.ctl(
        "PUT",
        &format!("/devices/{id}/user-meta"),
        r#"{"fleet.colour":"blue","PV_LOG_LEVEL":"5"}"#,
    );
    assert_eq!(st, 200, "{body}");
    let usermeta = s.r.dir.join("usrmeta");
    let _ = usermeta;
    let ls = |s: &Setup| {
        let (_, out) = s.r.pvcontrol(&s.dev, &["usrmeta", "ls"]);
        out
    };
    let t = std::time::Instant::now();
    while !ls(&s).contains("\"fleet.colour\":\"blue\"") && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        ls(&s).contains("\"fleet.colour\":\"blue\""),
        "{}\n{}",
        ls(&s),
        s.why()
    );
    // a config key from user-meta reaches the device's config
    let (_, conf) = s.r.pvcontrol(&s.dev, &["conf", "ls"]);
    assert!(conf.contains("PV_LOG_LEVEL"), "{conf}");
    let (st, _) = s.hub.ctl(
        "DELETE",
        &format!("/devices/{id}/user-meta/fleet.colour"),
        "",
    );
    assert_eq!(st, 200);
    let t = std::time::Instant::now();
    while ls(&s).contains("fleet.colour") && t.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!ls(&s).contains("fleet.colour"), "not deleted: {}", ls(&s));
    // device-meta on the Hub: the device's keys of 8.6
    let (_, dev) = s.hub.ctl("GET", &format!("/devices/{id}"), "");
    for k in [
        "pantavisor.revision",
        "pantavisor.mode",
        "pantahub.claimed",
        "pantahub.online",
        "pantahub.state",
    ] {
        assert!(
            dev.contains(&format!("\"{k}\"")),
            "{k} missing on the Hub: {dev}"
        );
    }
}

#[test]
fn simultaneous_updates_each_end_updated_in_turn() {
    let _g = SERIAL.lock();
    let mut s = setup("hub-simul", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    let id = claimed(&s);
    for rev in 1..=3 {
        post_step(&s, &id, rev, &desc(&format!("v{}", rev + 1)));
    }
    let done = follow(&mut s, Duration::from_secs(120), &|s| {
        history(s, &id, 3).last().is_some_and(|p| p.0 == "UPDATED")
    });
    assert!(done, "{:#?}\n{}", history(&s, &id, 3), s.why());
    for rev in 1..=3 {
        let l = local(&s, &rev.to_string()).unwrap();
        assert_eq!(
            (l.0.as_str(), l.1.as_str(), l.2),
            (
                "UPDATED",
                "Update finished, revision not set as rollback point",
                1
            ),
            "revision {rev}"
        );
        assert_eq!(
            history(&s, &id, rev).last().map(|p| p.0.as_str()),
            Some("UPDATED")
        );
    }
    let up = s.r.wait(&mut s.dev, Duration::from_secs(10), &|r, _| {
        r.console_of("3", "web").contains("v4")
    });
    assert!(up, "{}", s.why());
}

/// The complete lines of every log file of revision `rev`, as the Hub's entries name them:
/// (plat, src, msg), in file order.
fn log_lines(s: &Setup, rev: &str) -> Vec<(String, String, String)> {
    let root = s.r.storage.join("logs").join(rev);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel.contains(".gz") {
                continue;
            }
            let (plat, src) = rel.split_once('/').unwrap_or((&rel, ""));
            let text = std::fs::read(&p).unwrap_or_default();
            let complete = match text.iter().rposition(|&b| b == b'\n') {
                Some(i) => &text[..=i],
                None => &text[..0],
            };
            for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                out.push((
                    plat.to_string(),
                    format!("/{src}"),
                    String::from_utf8_lossy(line).into_owned(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The Hub's log entries of revision `rev` as (plat, src, msg).
fn hub_lines(s: &Setup, rev: &str) -> Vec<(String, String, String)> {
    let (_, body) = s.hub.ctl("GET", "/logs", "");
    let v = pantavisor::json::parse_str(&body, Default::default()).unwrap();
    let mut out: Vec<(String, String, String)> = v
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| {
            let e = l.get("entry")?;
            let f = |k: &str| e.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            (f("rev") == rev).then(|| (f("plat"), f("src"), f("msg")))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn log_push_sends_every_line_once_across_a_device_restart() {
    let _g = SERIAL.lock();
    let mut s = setup("hub-logs", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    let id = claimed(&s);
    let _ = id;
    assert!(
        s.r.storage.join("logs/0").is_dir(),
        "no log tree under the storage"
    );
    let same = |s: &Setup| {
        let (f, h) = (log_lines(s, "0"), hub_lines(s, "0"));
        !f.is_empty() && f == h
    };
    let t = std::time::Instant::now();
    while !same(&s) && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        same(&s),
        "files and Hub differ before the restart: {} lines vs {}\n{}",
        log_lines(&s, "0").len(),
        hub_lines(&s, "0").len(),
        s.why()
    );
    let before = hub_lines(&s, "0").len();
    // an orderly restart: the positions survive, nothing is sent twice
    assert!(matches!(finish(&mut s.dev), harness::End::PowerOff));
    assert_eq!(s.boot(), "0");
    s.wait_ready("0");
    let t = std::time::Instant::now();
    while !(same(&s) && hub_lines(&s, "0").len() > before) && t.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(300));
    }
    let (f, h) = (log_lines(&s, "0"), hub_lines(&s, "0"));
    let mut dup = h.clone();
    dup.dedup();
    println!(
        "{} lines before the restart, {} after; {} on the Hub",
        before,
        f.len(),
        h.len()
    );
    assert!(h.len() > before, "nothing pushed after the restart");
    assert_eq!(
        f, h,
        "the Hub's lines are not the files' lines exactly once"
    );
}

#[test]
fn a_hung_hub_never_delays_pv_ctrl_or_supervision() {
    let _g = SERIAL.lock();
    let mut s = setup("hub-hang", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    let id = claimed(&s);
    let _ = id;
    fault(
        &s,
        r#"{"kind":"hang","path":"/","seconds":15,"count":null}"#,
    );
    // a request is hanging on the Hub side
    let hung = s.hub.wait_for(Duration::from_secs(15), |l| {
        l.contains("\"fault\": \"hang\"")
    });
    let t0 = std::time::Instant::now();
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while t0.elapsed() < Duration::from_secs(8) {
        let t = std::time::Instant::now();
        let (code, out) = s.r.pvcontrol(&s.dev, &["ls"]);
        worst = worst.max(t.elapsed());
        assert_eq!(code, 0, "{out}");
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // a container that ends is restarted meanwhile, as its policy says
    let pids = s.r.pids_of("web");
    println!(
        "{n} pv-ctrl requests while the Hub hung, slowest {worst:?}; hung request seen: {}",
        hung.is_some()
    );
    assert!(worst < Duration::from_secs(1), "pv-ctrl took {worst:?}");
    assert!(!pids.is_empty());
    let ok = s.r.wait(&mut s.dev, Duration::from_secs(5), &|r, d| {
        r.status_of(d, "web").as_deref() == Some("STARTED")
    });
    assert!(ok);
    assert!(
        hung.is_some() || s.hub.log().iter().any(|l| l.contains("hang")),
        "the fault never hit: {}",
        s.why()
    );
    assert_eq!(s.r.env().0.as_deref(), Some("0"));
}

#[test]
fn a_device_that_ran_upstream_stays_the_same_device_on_the_hub() {
    let _g = SERIAL.lock();
    // the storage of a claimed, synced device: pantahub.config with its credentials
    let s = {
        let mut s = setup_with("hub-migrate", &[], &|s: &Setup| {
            let (st, body) = s.hub.ctl(
                "POST",
                "/devices",
                r#"{"id":"0123456789abcdef01234567","secret":"s3cret","owner":"prn:::accounts:/owner1"}"#,
            );
            assert_eq!(st, 200, "{body}");
            let state = std::fs::read_to_string(s.r.storage.join("trails/0/.pvr/json")).unwrap();
            let (st, body) = s.hub.ctl(
                "POST",
                "/devices/0123456789abcdef01234567/trail",
                &format!(r#"{{"state":{state}}}"#),
            );
            assert_eq!(st, 200, "{body}");
            std::fs::create_dir_all(s.r.storage.join("config")).unwrap();
            std::fs::write(
                s.r.storage.join("config/pantahub.config"),
                "PH_CREDS_ID=0123456789abcdef01234567\nPH_CREDS_PRN=prn:::devices:/0123456789abcdef01234567\nPH_CREDS_SECRET=s3cret\n",
            )
            .unwrap();
        });
        s.wait_ready("0");
        s
    };
    let polled = s.hub.wait_for(Duration::from_secs(30), |l| {
        l.contains("/trails/0123456789abcdef01234567/steps?") && l.contains("\"status\": 200")
    });
    assert!(polled.is_some(), "{}", s.why());
    let log = s.hub.log();
    assert!(
        !log.iter()
            .any(|l| l.contains("\"/devices/\"") && l.contains("\"POST\"")),
        "registered again"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("\"/trails/\"") && l.contains("\"POST\"")),
        "synced again"
    );
    assert_eq!(device_id(&s).as_deref(), Some("0123456789abcdef01234567"));
}

/// A small xorshift for the cut moments, seeded from the pid (printed, to replay a run).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[test]
fn power_cuts_during_remote_downloads_and_installs_end_on_the_old_or_the_new_revision() {
    let _g = SERIAL.lock();
    let mut s = setup(
        "hub-cuts",
        &[
            ("PH_FACTORY_AUTOTOK", "tok-1"),
            ("PV_REVISION_RETRIES", "40"),
        ],
    );
    let id = claimed(&s);
    // downloads of a few seconds, so that the cuts land in them as well as in the installs
    fault(&s, r#"{"kind":"slow","rate":300000,"count":null}"#);
    let seed = 0x2545_f491_4f6c_dd1d ^ u64::from(std::process::id());
    println!("seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut rev = 1u32;
    let mut new = post_step(&s, &id, rev, &desc_with("v2", 1 << 20, false));
    let mut cuts: Vec<(u32, String)> = Vec::new();
    let mut outcomes = Vec::new();
    let t = std::time::Instant::now();
    while cuts.len() < 20 && t.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(200 + rng.below(2500)));
        if s.dev.try_wait().unwrap().is_some() {
            // it rebooted by itself (a reboot update, a rollback): boot it
            s.boot();
            continue;
        }
        let phase = local(&s, &rev.to_string()).map_or("-".to_string(), |p| p.0);
        if matches!(phase.as_str(), "UPDATED" | "DONE" | "ERROR" | "WONTGO") {
            // this one ended: check it, and the next update comes
            check_outcome(&mut s, rev, &phase, &new);
            outcomes.push((rev, phase));
            rev += 1;
            new = post_step(
                &s,
                &id,
                rev,
                &desc_with(&format!("v{}", rev + 1), 1 << 20, false),
            );
            continue;
        }
        s.cut();
        cuts.push((rev, phase));
        let booted = s.boot();
        // a revision the device had installed whole (never one still QUEUED or DOWNLOADING):
        // the factory, the one being tried, or one that ran
        let installed = booted == "0"
            || local(&s, &booted).is_some_and(|p| {
                matches!(p.0.as_str(), "INPROGRESS" | "TESTING" | "UPDATED" | "DONE")
            });
        assert!(
            installed,
            "cut {}: the bootloader picked {booted}, not installed: {:?}",
            cuts.len(),
            local(&s, &booted)
        );
        let up = s.r.wait(&mut s.dev, Duration::from_secs(40), &|r, d| {
            r.status_of(d, "alpha").as_deref() == Some("STARTED")
        });
        assert!(
            up,
            "cut {}: revision {booted} not up: {}",
            cuts.len(),
            s.why()
        );
    }
    println!("cuts (revision, its phase): {cuts:?}");
    assert_eq!(cuts.len(), 20, "{}", s.why());
    let (st, _) = s.hub.ctl("DELETE", "/faults", "");
    assert_eq!(st, 200);
    let last = {
        let t = std::time::Instant::now();
        loop {
            let p = local(&s, &rev.to_string()).map(|p| p.0).unwrap_or_default();
            if matches!(p.as_str(), "UPDATED" | "DONE" | "ERROR" | "WONTGO")
                || t.elapsed() > Duration::from_secs(120)
            {
                break p;
            }
            if s.dev.try_wait().unwrap().is_some() {
                s.boot();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    check_outcome(&mut s, rev, &last, &new);
    outcomes.push((rev, last));
    println!("outcomes: {outcomes:?}");
    // and the Hub was told each outcome
    for (r, o) in &outcomes {
        let h = wait_final(&s, &id, *r, Duration::from_secs(30));
        assert_eq!(h.last().map(|p| &p.0), Some(o), "revision {r}: {h:?}");
    }
}

/// Revision `rev` ended `status`: the device runs it (UPDATED, DONE) or the one before, and
/// every object on storage is whole.
fn check_outcome(s: &mut Setup, rev: u32, status: &str, new: &[(String, u64)]) {
    match status {
        "UPDATED" | "DONE" => {
            let motd = format!("v{}", rev + 1);
            let up = s.r.wait(&mut s.dev, Duration::from_secs(20), &|r, _| {
                r.console_of(&rev.to_string(), "web").contains(&motd)
            });
            assert!(
                up,
                "revision {rev} {status} but web does not show {motd}: {}",
                s.why()
            );
            for (sha, _) in new {
                assert!(s.r.storage.join("objects").join(sha).exists());
            }
        }
        "ERROR" | "WONTGO" => {}
        other => panic!("revision {rev}: no outcome ({other}): {}", s.why()),
    }
    for e in std::fs::read_dir(s.r.storage.join("objects")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.len() == 64 {
            let data = std::fs::read(&p).unwrap();
            assert_eq!(
                pantavisor::storage::objects::sha256_hex(&data),
                name,
                "a torn object"
            );
        }
    }
}

#[test]
fn a_rebooted_device_reports_the_outcome_the_hub_missed() {
    let _g = SERIAL.lock();
    let mut s = setup("hub-missed", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    let id = claimed(&s);
    // the Hub takes no progress of revision 1 while the update runs
    fault(
        &s,
        &format!(
            r#"{{"kind":"status","path":"/trails/{id}/steps/1/progress","status":503,"count":null}}"#
        ),
    );
    post_step(&s, &id, 1, &desc("v2"));
    let ended = follow(&mut s, Duration::from_secs(60), &|s| {
        local(s, "1").is_some_and(|p| p.0 == "UPDATED")
    });
    assert!(ended, "{:?}\n{}", local(&s, "1"), s.why());
    assert!(
        history(&s, &id, 1).is_empty(),
        "the Hub took a progress through the fault"
    );
    // an orderly reboot, then the Hub answers again: the outcome reaches it
    assert!(matches!(finish(&mut s.dev), harness::End::PowerOff));
    let (st, _) = s.hub.ctl("DELETE", "/faults", "");
    assert_eq!(st, 200);
    s.boot();
    s.wait_ready("after the reboot");
    let told = follow(&mut s, Duration::from_secs(60), &|s| {
        let h = history(s, &id, 1);
        let local = local(s, "1").map(|p| p.0);
        h.last().map(|p| Some(p.0.clone())) == Some(local.clone())
            && matches!(local.as_deref(), Some("UPDATED" | "DONE"))
    });
    assert!(
        told,
        "Hub {:?}, device {:?}\n{}",
        history(&s, &id, 1),
        local(&s, "1"),
        s.why()
    );
}

/// Upstream's pvtests have no log push case for a power cut; 8.7 asks that at most the batch in
/// flight is sent twice. 3000 numbered lines in a log file, each POST /logs/ held 0.3 s by the
/// Hub, the device cut in the middle of pushing them, booted again.
#[test]
fn a_power_cut_while_logs_are_pushed_sends_at_most_the_batch_in_flight_again() {
    let _g = SERIAL.lock();
    let mut s = setup("hub-logcut", &[("PH_FACTORY_AUTOTOK", "tok-1")]);
    claimed(&s);
    fault(
        &s,
        r#"{"kind":"hang","path":"/logs/","seconds":0.3,"count":null}"#,
    );
    let flood = s.r.storage.join("logs/0/flood");
    std::fs::create_dir_all(&flood).unwrap();
    let text: String = (0..3000).map(|i| format!("flood line {i:05}\n")).collect();
    std::fs::write(flood.join("flood.log"), text).unwrap();
    let pushed = |s: &Setup| hub_lines(s, "0").iter().filter(|l| l.0 == "flood").count();
    let t = std::time::Instant::now();
    while pushed(&s) < 600 && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let at_cut = pushed(&s);
    assert!(
        (600..3000).contains(&at_cut),
        "{at_cut} lines pushed: the cut must land while they are pushed\n{}",
        s.why()
    );
    s.cut();
    s.boot();
    s.wait_ready("0 after the cut");
    let caught_up = |s: &Setup| {
        let mut h = hub_lines(s, "0");
        h.dedup();
        h == log_lines(s, "0")
    };
    let t = std::time::Instant::now();
    while !caught_up(&s) && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(300));
    }
    let (f, h) = (log_lines(&s, "0"), hub_lines(&s, "0"));
    let mut once = h.clone();
    once.dedup();
    // every line of the files reached the Hub, and the Hub has nothing else
    assert_eq!(
        once,
        f,
        "lines lost or invented across the cut\n{}",
        s.why()
    );
    let twice = h.len() - once.len();
    println!("{at_cut} flood lines on the Hub at the cut; {twice} lines sent twice");
    assert!(
        twice <= 200,
        "{twice} lines sent twice: more than the one batch in flight (200 entries)"
    );
}

/// `size` letters from `seed`: not compressible, so that an object of them is really that
/// many bytes on the wire.
fn noise(seed: u64, size: usize) -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed ^ size as u64;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

/// [`desc`] with `n` text objects of `size` bytes more in app `web`, each its own.
fn desc_blobs(motd: &str, n: usize, size: usize) -> String {
    let base = desc(motd);
    let blobs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#""web/blob{i}.txt":"{}""#,
                noise((i as u64 + 1) << 32, size)
            )
        })
        .collect();
    let open = base.strip_suffix('}').expect("a JSON object");
    format!(r#"{open},"extra":{{{}}}}}"#, blobs.join(","))
}

/// The most requests of `kind` ("GET objects", "GET local-s3") the mock had in flight at once.
fn most_in_flight(s: &Setup, kind: &str) -> u64 {
    let (st, body) = s.hub.ctl("GET", "/state", "");
    assert_eq!(st, 200, "{body}");
    let v = pantavisor::json::parse_str(&body, Default::default()).unwrap();
    v.get("inflight-max")
        .and_then(|m| m.get(kind))
        .and_then(|n| n.as_u64())
        .unwrap_or(0)
}

/// A remote update of 6 new objects (5 of 300 kB, each served at 300 kB/s, and a small one;
/// each metadata answer held 0.5 s) with PH_UPDATER_TRANSFER_MAX_COUNT=`max`, to UPDATED with
/// every object byte-exact: (most metadata requests in flight, most downloads in flight,
/// seconds from the first metadata request to the last download's end).
fn parallel_update(name: &str, max: u32) -> (u64, u64, f64) {
    let _g = SERIAL.lock();
    let max = max.to_string();
    let s = setup(
        name,
        &[
            ("PH_FACTORY_AUTOTOK", "tok-1"),
            ("PH_UPDATER_TRANSFER_MAX_COUNT", &max),
        ],
    );
    let id = claimed(&s);
    fault(
        &s,
        r#"{"kind":"hang","path":"/objects/","method":"GET","seconds":0.5,"count":null}"#,
    );
    fault(&s, r#"{"kind":"slow","rate":300000,"count":null}"#);
    let new = post_step(&s, &id, 1, &desc_blobs("v2", 5, 300_000));
    assert_eq!(new.len(), 6, "{new:?}");
    let h = wait_final(&s, &id, 1, Duration::from_secs(90));
    assert_eq!(
        h.last().map(|p| p.0.as_str()),
        Some("UPDATED"),
        "{h:#?}\n{}",
        s.why()
    );
    for (sha, size) in &new {
        let data = std::fs::read(s.r.storage.join("objects").join(sha)).unwrap();
        assert_eq!(data.len() as u64, *size, "{sha}");
        assert_eq!(&pantavisor::storage::objects::sha256_hex(&data), sha);
    }
    // from the request log: when the metadata requests began, when the last download ended
    let (mut first, mut last) = (f64::MAX, 0f64);
    for l in s.hub.log() {
        let v = pantavisor::json::parse_str(&l, Default::default()).unwrap();
        let (Some(m), Some(p), Some(t)) = (
            v.get("method").and_then(|m| m.as_str()),
            v.get("path").and_then(|p| p.as_str()),
            v.get("t").and_then(|t| t.as_f64()),
        ) else {
            continue;
        };
        let ms = v.get("ms").and_then(|t| t.as_f64()).unwrap_or(0.0);
        if m == "GET" && p.starts_with("/objects/") {
            first = first.min(t);
        }
        if m == "GET" && p.starts_with("/local-s3/") {
            last = last.max(t + ms / 1000.0);
        }
    }
    let took = last - first;
    let (meta, s3) = (
        most_in_flight(&s, "GET objects"),
        most_in_flight(&s, "GET local-s3"),
    );
    println!("PH_UPDATER_TRANSFER_MAX_COUNT={max}: at most {meta} metadata requests and {s3} downloads in flight; objects in {took:.2} s");
    (meta, s3, took)
}

#[test]
fn transfers_keep_to_ph_updater_transfer_max_count_in_flight() {
    let (meta, s3, _) = parallel_update("hub-xfer3", 3);
    assert!((2..=3).contains(&meta), "{meta} metadata requests at once");
    assert!((2..=3).contains(&s3), "{s3} downloads at once");
}

#[test]
fn transfers_go_one_at_a_time_with_a_max_count_of_one() {
    let (meta, s3, _) = parallel_update("hub-xfer1", 1);
    assert_eq!((meta, s3), (1, 1), "metadata requests, downloads at once");
}

/// The requests the Hub got that `pred` picks.
fn count(s: &Setup, pred: impl Fn(&str) -> bool) -> usize {
    s.hub.log().iter().filter(|l| pred(l)).count()
}

fn is_register(l: &str) -> bool {
    l.contains("\"POST\"") && l.contains("\"/devices/\"")
}

#[test]
fn credentials_in_the_pv_phconfig_volume_keep_the_device_across_a_reboot() {
    let _g = SERIAL.lock();
    // desc("v1") with device.json declaring the credentials' volume, permanent (reference 2.6)
    let groups = r#"[{"name":"root","status_goal":"STARTED","restart_policy":"system","timeout":10},
        {"name":"app","status_goal":"STARTED","restart_policy":"container","timeout":10}]"#;
    let d = desc("v1");
    let description = format!(
        r#"{},"extra":{{"device.json":{{"groups":{groups},"volumes":{{"pv--phconfig":{{"persistence":"permanent"}}}}}}}}}}"#,
        d.strip_suffix('}').unwrap()
    );
    let env = [
        ("PH_FACTORY_AUTOTOK", "tok-1"),
        ("PV_STORAGE_PHCONFIG_VOL", "1"),
    ];
    let mut s = unbooted("hub-phconfig", &description, &env);
    s.boot();
    s.wait_ready("0");
    let id = claimed(&s);
    let vol = s.r.storage.join("disks/perm/bsp/pv--phconfig");
    let pc = std::fs::read_to_string(vol.join("pantahub.config"))
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", vol.display(), s.why()));
    assert!(pc.contains(&format!("PH_CREDS_ID={id}")), "{pc}");
    assert!(pc.contains("PH_CREDS_SECRET="), "{pc}");
    assert!(vol.join("unclaimed.config").exists());
    for f in ["pantahub.config", "unclaimed.config"] {
        assert!(
            !s.r.storage.join("config").join(f).exists(),
            "{f} in <storage>/config"
        );
    }
    assert_eq!(count(&s, is_register), 1, "{}", s.why());

    // after a reboot: the same device, its credentials read from the volume again
    assert!(matches!(finish(&mut s.dev), harness::End::PowerOff));
    let n = s.hub.log().len();
    s.boot();
    s.wait_ready("0 after the reboot");
    let polled = s.hub.wait_for(Duration::from_secs(30), |l| {
        l.contains(&format!("/trails/{id}/steps?")) && l.contains("\"status\": 200")
    });
    assert!(polled.is_some(), "{}", s.why());
    assert!(
        s.hub.log().len() > n
            && s.hub.log()[n..]
                .iter()
                .any(|l| l.contains(&format!("/trails/{id}/steps?"))),
        "no poll after the reboot: {}",
        s.why()
    );
    assert_eq!(count(&s, is_register), 1, "registered again: {}", s.why());
    assert_eq!(device_id(&s).as_deref(), Some(id.as_str()));
}

/// `/btools`, made on the host for the time of a test when this host has none (upstream's
/// handler folder is fixed); each device gets its own folder bound there, in its own mount
/// namespace only.
struct Btools {
    made: bool,
}

impl Btools {
    fn new() -> Btools {
        let made = !std::path::Path::new("/btools").exists();
        if made {
            std::fs::create_dir("/btools").unwrap();
        }
        Btools { made }
    }
}

impl Drop for Btools {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_dir("/btools");
        }
    }
}

/// Boots as [`Setup::boot`] does, with `dir` bound at /btools in the device's mount namespace.
fn boot_with_btools(s: &mut Setup, dir: &std::path::Path) {
    let (_, cmdline) = s.r.bl.pick();
    let console = std::fs::File::create(s.r.dir.join("console-btools.log")).unwrap();
    let cg =
        s.r.cgroup
            .as_ref()
            .map(|p| p.join("cgroup.procs").display().to_string())
            .unwrap_or_default();
    s.dev = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"[ -z "$CG" ] || echo $$ > "$CG"; exec unshare --pid --fork --kill-child --mount --mount-proc --uts --ipc sh -c 'mount --bind "$BTOOLS" /btools && exec "$@"' sh "$@""#)
        .arg("sh")
        .arg(harness::BIN)
        .arg("--config")
        .arg(&s.r.bl.config)
        .args(["--cmdline", &cmdline])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CG", cg)
        .env("BTOOLS", dir)
        .envs(s.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(console.try_clone().unwrap())
        .stderr(console)
        .spawn()
        .unwrap();
}

const EXT_ID: &str = "0123456789abcdef01234567";

/// A device already on the Hub whose `pantahub.config` has its id but no secret (a login
/// handler holds that), with `PH_CREDS_TYPE=ext-test`, and its (empty) /btools; not booted.
fn ext_device(name: &str) -> (Setup, std::path::PathBuf) {
    let s = unbooted(name, &desc("v1"), &[("PH_CREDS_TYPE", "ext-test")]);
    let (st, body) = s.hub.ctl(
        "POST",
        "/devices",
        &format!(r#"{{"id":"{EXT_ID}","secret":"s3cret","owner":"prn:::accounts:/owner1"}}"#),
    );
    assert_eq!(st, 200, "{body}");
    let state = std::fs::read_to_string(s.r.storage.join("trails/0/.pvr/json")).unwrap();
    let (st, body) = s.hub.ctl(
        "POST",
        &format!("/devices/{EXT_ID}/trail"),
        &format!(r#"{{"state":{state}}}"#),
    );
    assert_eq!(st, 200, "{body}");
    std::fs::create_dir_all(s.r.storage.join("config")).unwrap();
    std::fs::write(
        s.r.storage.join("config/pantahub.config"),
        format!("PH_CREDS_ID={EXT_ID}\nPH_CREDS_PRN=prn:::devices:/{EXT_ID}\n"),
    )
    .unwrap();
    std::fs::write(
        s.r.dir.join("keep"),
        format!("PRN=prn:::devices:/{EXT_ID}\nSECRET=s3cret\n"),
    )
    .unwrap();
    let dir = s.r.dir.join("btools");
    std::fs::create_dir_all(&dir).unwrap();
    (s, dir)
}

/// `ext-test.register` and `ext-test.login` in `dir`, as a device maker's: register posts to
/// the Hub with the auto-token `tok-1`, keeps the prn and the secret in `<rig>/keep` (the
/// device never sees them) and writes only the id into the creds work dir; login posts what
/// `keep` holds and prints the Hub's answer. Each run adds a line to `<rig>/runs`.
fn ext_handlers(s: &Setup, dir: &std::path::Path) {
    let curl = format!(
        "/usr/bin/curl -fsS --cacert {} -A 'Pantavisor/2 (Linux; x86_64) PV/ext-test Date/0' -H 'Content-Type: application/json'",
        s.hub.ca_pem().display()
    );
    let (hub, keep, runs) = (
        format!("https://127.0.0.1:{}", s.hub.port),
        s.r.dir.join("keep").display().to_string(),
        s.r.dir.join("runs").display().to_string(),
    );
    let creds = s.r.dir.join("run/phconfig").display().to_string();
    let register = format!(
        r#"#!/bin/sh
echo register >> {runs}
out=$({curl} -H 'Pantahub-Devices-Auto-Token-V1: tok-1' -d '{{}}' {hub}/devices/) || exit 1
f() {{ echo "$out" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }}
printf 'PRN=%s\nSECRET=%s\n' "$(f prn)" "$(f secret)" > {keep}
printf 'PH_CREDS_ID=%s\n' "$(f id)" > {creds}/unclaimed.config.tmp
mv {creds}/unclaimed.config.tmp {creds}/unclaimed.config
"#
    );
    let login = format!(
        r#"#!/bin/sh
echo login >> {runs}
. {keep}
exec {curl} -d "{{\"username\":\"$PRN\",\"password\":\"$SECRET\"}}" {hub}/auth/login
"#
    );
    use std::os::unix::fs::PermissionsExt;
    for (name, text) in [("ext-test.register", register), ("ext-test.login", login)] {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// How many times the handlers ran, `what` (`register`, `login`).
fn runs(s: &Setup, what: &str) -> usize {
    std::fs::read_to_string(s.r.dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .filter(|l| *l == what)
        .count()
}

#[test]
fn an_ext_login_handler_logs_the_device_in_and_again_after_a_401() {
    let _g = SERIAL.lock();
    let _b = Btools::new();
    let (mut s, dir) = ext_device("hub-ext");
    ext_handlers(&s, &dir);
    boot_with_btools(&mut s, &dir);
    s.wait_ready("0");
    let runs_of = || runs(&s, "login");
    // the device has no secret: a poll the Hub takes carries the handler's token
    let polled = s.hub.wait_for(Duration::from_secs(30), |l| {
        l.contains(&format!("/trails/{EXT_ID}/steps?")) && l.contains("\"status\": 200")
    });
    assert!(polled.is_some(), "{}", s.why());
    assert!(runs_of() >= 1);
    assert!(
        s.client_log().contains("external login handler called"),
        "{}",
        s.why()
    );
    assert_eq!(count(&s, is_register), 0, "{}", s.why());
    assert_eq!(runs(&s, "register"), 0);
    // every login the Hub saw is the handler's
    let logins = count(&s, |l| l.contains("\"/auth/login\""));
    assert_eq!(logins, runs_of(), "{}", s.why());

    // a 401 drops the token: the handler runs again and the polls go on
    let before = runs_of();
    logs_in_again_after_a_401(&s, ("/revoke-tokens", ""), &|_| runs_of() > before);
}

#[test]
fn a_missing_ext_handler_or_an_unknown_creds_type_sends_nothing_to_the_hub() {
    let _g = SERIAL.lock();
    let _b = Btools::new();
    let (mut s, dir) = ext_device("hub-ext-missing");
    boot_with_btools(&mut s, &dir);
    s.wait_ready("0");
    let said = |s: &mut Setup, line: &str, times: usize| {
        let line = line.to_string();
        s.r.wait(&mut s.dev, Duration::from_secs(30), &|r, _| {
            r.log().matches(line.as_str()).count() >= times
        })
    };
    // upstream's line, again at the next try, and not one request meanwhile
    let missing = "unable to stat trest client for cmd /btools/ext-test.login";
    assert!(said(&mut s, missing, 2), "{}", s.why());
    assert!(s.hub.log().is_empty(), "{}", s.why());

    // a type neither builtin nor ext-*: upstream's error, nothing sent either
    assert!(matches!(finish(&mut s.dev), harness::End::PowerOff));
    for (k, v) in s.env.iter_mut() {
        if k == "PH_CREDS_TYPE" {
            *v = "tpm".into();
        }
    }
    s.boot();
    s.wait_ready("0 again");
    let unknown = "unable to get trest client for creds_type tpm. Currently supported: builtin and ext-* handlers";
    assert!(said(&mut s, unknown, 2), "{}", s.why());
    assert!(s.hub.log().is_empty(), "{}", s.why());
}

#[test]
fn an_ext_register_handler_registers_then_the_device_is_claimed_and_synced() {
    let _g = SERIAL.lock();
    let _b = Btools::new();
    let mut s = unbooted(
        "hub-ext-register",
        &desc("v1"),
        &[("PH_CREDS_TYPE", "ext-test")],
    );
    let dir = s.r.dir.join("btools");
    std::fs::create_dir_all(&dir).unwrap();
    ext_handlers(&s, &dir);
    boot_with_btools(&mut s, &dir);
    s.wait_ready("0");
    // registered by the handler (which retries until the auto-token exists), claimed through
    // the handler's login, then the first sync
    let id = claimed(&s);
    let registered = |l: &str| is_register(l) && l.contains("\"status\": 200");
    assert_eq!(count(&s, registered), 1, "{}", s.why());
    assert!(runs(&s, "register") >= 1 && runs(&s, "login") >= 1);
    assert_eq!(
        count(&s, |l| l.contains("\"/auth/login\"")),
        runs(&s, "login"),
        "a login not by the handler: {}",
        s.why()
    );
    let pc = std::fs::read_to_string(s.r.storage.join("config/pantahub.config")).unwrap();
    assert!(pc.contains(&format!("PH_CREDS_ID={id}")), "{pc}");
    assert!(pc.contains("PH_CREDS_TYPE=ext-test"), "{pc}");
    assert!(
        !pc.contains("PH_CREDS_SECRET"),
        "the handler's secret: {pc}"
    );
}

#[test]
fn without_the_pv_phconfig_volume_the_device_runs_on_and_nothing_goes_to_the_hub() {
    let _g = SERIAL.lock();
    // PV_STORAGE_PHCONFIG_VOL=1 but the state declares no pv--phconfig: upstream's error
    let env = [
        ("PH_FACTORY_AUTOTOK", "tok-1"),
        ("PV_STORAGE_PHCONFIG_VOL", "1"),
    ];
    let mut s = setup("hub-no-phconfig", &env);
    let (st, body) = s.hub.ctl(
        "POST",
        "/autotokens",
        r#"{"token":"tok-1","owner":"prn:::accounts:/owner1"}"#,
    );
    assert_eq!(st, 200, "{body}");
    let missing = format!(
        "{}: does not exist but required by config",
        s.r.dir.join("volumes/bsp/pv--phconfig").display()
    );
    let unbound = "phconfig: not there, the device could not bind the Hub credentials";
    let said = s.r.wait(&mut s.dev, Duration::from_secs(30), &|r, _| {
        let log = r.log();
        log.contains(&missing) && log.matches(unbound).count() >= 2
    });
    assert!(said, "{}", s.why());
    assert!(s.hub.log().is_empty(), "{}", s.why());
    assert_eq!(s.r.status_of(&s.dev, "web").as_deref(), Some("STARTED"));
    assert!(!s.r.storage.join("config/unclaimed.config").exists());
}
