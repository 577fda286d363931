//! The mock Pantacor Hub itself (issue 12's test double): its self-test, every device endpoint
//! and fault driven with curl (`selftest.sh`), and the Rust side (`mock.rs`) other tests use.
mod mock;
#[cfg(feature = "hub")]
mod tls;

use mock::MockHub;
use std::process::Command;
use std::time::Duration;

#[test]
fn selftest_every_endpoint_and_fault() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hub/selftest.sh");
    let out = Command::new("bash").arg(script).output().expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "tests/hub/selftest.sh failed: {text}");
}

#[test]
fn rust_side_starts_drives_and_stops_the_mock() {
    let dir = std::env::temp_dir().join(format!("pv-mockhub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let hub = MockHub::start(&dir, "127.0.0.1");
    let pid = hub.pid();

    let (status, body) = hub.ctl("POST", "/devices", r#"{"owner":"prn:::accounts:/u"}"#);
    assert_eq!(status, 200, "{body}");
    let id = body
        .split("\"id\": \"")
        .nth(1)
        .and_then(|r| r.get(..24))
        .expect("device id");
    assert_eq!(hub.ctl("GET", "/devices/nosuch", "").0, 404);
    let (status, body) = hub.ctl("POST", "/faults", r#"{"kind":"nope"}"#);
    assert!(
        status == 400 && body.contains("unknown kind"),
        "{status} {body}"
    );

    // a device-side request, verified against the run-time CA, shows in the log
    let url = format!("https://127.0.0.1:{}/devices/{id}", hub.port);
    let ca = hub.ca_pem();
    let curl = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "--cacert"])
        .arg(&ca)
        .args(["-A", "Pantavisor/2 (Linux; x86_64) PV/0 Date/0", &url])
        .status()
        .expect("curl must be installed");
    assert!(curl.success(), "curl against the mock: {curl}");
    let line = hub.wait_for(Duration::from_secs(10), |l| {
        l.contains(&format!("/devices/{id}"))
    });
    let line = line.expect("the request in the mock's log");
    assert!(
        line.contains("\"status\": 401"),
        "no bearer must be a 401: {line}"
    );

    drop(hub);
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(!alive, "the mock outlived its MockHub");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}
