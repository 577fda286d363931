//! `hub::tls` against the real mock Hub (its run-time CA, its CONNECT proxy): what the Hub
//! daemon's connections verify and how each failure reads.
use super::mock::MockHub;
use pantavisor::hub::http;
use pantavisor::hub::tls::{client_config, connect, Link, Target};
use std::io::BufReader;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const AGENT: &str = "Pantavisor/2 (Linux; x86_64) PV/0 Date/0";

/// A temp dir with the mock's certificates and a certificate directory holding its CA alone,
/// as the device gets it in PV_LIBTHTTP_CERTSDIR.
struct Setup {
    root: PathBuf,
    hub: Option<MockHub>,
}

impl Setup {
    fn new(name: &str) -> Setup {
        let root = std::env::temp_dir().join(format!("pv-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("certs")).expect("temp dir");
        let hub = MockHub::start(&root.join("hub"), "127.0.0.1");
        std::fs::copy(hub.ca_pem(), root.join("certs/ca.pem")).expect("copy the CA");
        Setup {
            root,
            hub: Some(hub),
        }
    }

    fn hub(&self) -> &MockHub {
        self.hub.as_ref().expect("the mock")
    }

    fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }

    fn target<'a>(&self, host: &'a str) -> Target<'a> {
        Target {
            host,
            port: self.hub().port,
            proxy: None,
            proxy_connect: true,
            timeout: Duration::from_secs(30),
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        drop(self.hub.take());
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// GET `path` over the link: the answer's status (its body read whole, through the link).
fn get(link: &mut Link, host: &str, path: &str) -> std::io::Result<u16> {
    http::write_request(link, "GET", host, path, &[("User-Agent", AGENT)], b"")?;
    let mut r = BufReader::new(link);
    let head = http::read_head(&mut r, false)?;
    http::Body::new(&mut r, head.framing).read_all(1 << 20)?;
    Ok(head.status)
}

#[test]
fn handshake_and_get_with_the_hub_ca_by_ip_and_by_name() {
    let s = Setup::new("good");
    let config = client_config(&s.certs()).expect("the mock's CA");
    for host in ["127.0.0.1", "localhost"] {
        let mut link = connect(&s.target(host), Some(&config)).expect("TLS to the mock");
        // any answer proves the path; without a bearer the mock says 401
        let status = get(&mut link, host, "/devices/").expect("an HTTP answer");
        assert_eq!(status, 401, "{host}");
        // the connection is kept: a second request on it
        let status = get(&mut link, host, "/devices/").expect("a second answer");
        assert_eq!(status, 401, "{host}");
    }
    let seen = s
        .hub()
        .log()
        .iter()
        .filter(|l| l.contains("/devices/"))
        .count();
    assert_eq!(seen, 4, "{:?}", s.hub().log());
}

#[test]
fn a_certificate_for_another_name_or_from_another_ca_is_refused() {
    let s = Setup::new("refused");
    let config = client_config(&s.certs()).expect("the mock's CA");
    let (status, body) = s.hub().ctl("POST", "/cert", r#"{"cert":"wrong"}"#);
    assert_eq!(status, 200, "{body}");
    let e = connect(&s.target("127.0.0.1"), Some(&config))
        .err()
        .expect("a certificate for wrong.invalid must be refused");
    let port = s.hub().port;
    assert!(
        e.starts_with(&format!("127.0.0.1:{port}: certificate: "))
            && e.contains("not valid for name")
            && e.contains("wrong.invalid"),
        "{e}"
    );
    s.hub().ctl("POST", "/cert", r#"{"cert":"good"}"#);

    // a directory with only another CA (of another name: one of the same name is a bad
    // signature)
    let only_other = s.root.join("only-other");
    std::fs::create_dir_all(&only_other).expect("dir");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=another CA", "-keyout"])
        .arg(only_other.join("ca.key"))
        .arg("-out")
        .arg(only_other.join("ca.pem"))
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let config = client_config(&only_other).expect("a CA");
    let e = connect(&s.target("127.0.0.1"), Some(&config))
        .err()
        .expect("an unknown CA must be refused");
    assert!(e.contains("unknown issuer"), "{e}");

    // no CA at all: no config, so no connection
    let empty = s.root.join("empty");
    std::fs::create_dir_all(&empty).expect("dir");
    let e = client_config(&empty).expect_err("no CA");
    assert!(e.contains(&empty.display().to_string()), "{e}");
}

#[test]
fn through_the_connect_proxy() {
    let s = Setup::new("proxy");
    let config = client_config(&s.certs()).expect("the mock's CA");
    let t = Target {
        proxy: Some(("127.0.0.1", s.hub().proxy)),
        ..s.target("127.0.0.1")
    };
    let mut link = connect(&t, Some(&config)).expect("TLS through the proxy");
    assert_eq!(
        get(&mut link, "127.0.0.1", "/devices/").expect("answer"),
        401
    );
    let port = s.hub().port;
    let tunnel = s
        .hub()
        .wait_for(Duration::from_secs(10), |l| l.contains("\"connect\""));
    let tunnel = tunnel.expect("the CONNECT in the mock's log");
    assert!(
        tunnel.contains(&format!("127.0.0.1:{port}")) && tunnel.contains("200"),
        "{tunnel}"
    );

    // the mock's proxy tunnels to the device port only: elsewhere it answers 403
    let elsewhere = Target {
        port: s.hub().control,
        ..t
    };
    let e = connect(&elsewhere, Some(&config)).err().expect("403");
    assert!(
        e.contains("via proxy") && e.contains("proxy answered 403 to CONNECT"),
        "{e}"
    );
}

#[test]
fn plain_tcp_to_tls_and_tls_to_plain_fail_cleanly() {
    let s = Setup::new("mismatch");
    let t = s.target("127.0.0.1");
    let start = Instant::now();
    // plain HTTP to the TLS port: the stream opens, the request gets no HTTP answer
    let mut link = connect(&t, None).expect("TCP to the TLS port");
    assert!(get(&mut link, "127.0.0.1", "/devices/").is_err());
    // TLS to the plain-HTTP control port: the handshake fails
    let config = client_config(&s.certs()).expect("the mock's CA");
    let control = Target {
        port: s.hub().control,
        ..t
    };
    let e = connect(&control, Some(&config))
        .err()
        .expect("no TLS there");
    assert!(
        e.starts_with(&format!("127.0.0.1:{}: TLS", control.port)),
        "{e}"
    );
    // neither waited for the timeout
    assert!(start.elapsed() < t.timeout, "{:?}", start.elapsed());
}

/// connect (TLS handshake) and a read on an open link each end within the timeout.
#[test]
fn a_silent_server_times_out() {
    let config = {
        let s = Setup::new("silent-ca");
        client_config(&s.certs()).expect("the mock's CA")
    };
    // the kernel accepts (backlog), nobody ever answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = silent.local_addr().expect("addr").port();
    let timeout = Duration::from_secs(2);
    let t = Target {
        host: "127.0.0.1",
        port,
        proxy: None,
        proxy_connect: true,
        timeout,
    };
    let start = Instant::now();
    let e = connect(&t, Some(&config)).err().expect("a timeout");
    let took = start.elapsed();
    assert!(e.contains("timed out"), "{e}");
    // margin for a loaded 2-core machine
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(5),
        "{took:?}"
    );

    // an established link whose answer never comes: the read times out
    let s = Setup::new("silent-read");
    let (status, body) = s.hub().ctl(
        "POST",
        "/faults",
        r#"{"kind":"hang","path":"/devices","seconds":30}"#,
    );
    assert_eq!(status, 200, "{body}");
    let config = client_config(&s.certs()).expect("the mock's CA");
    let t = Target {
        timeout,
        ..s.target("127.0.0.1")
    };
    let mut link = connect(&t, Some(&config)).expect("TLS to the mock");
    let start = Instant::now();
    let e = get(&mut link, "127.0.0.1", "/devices/").expect_err("a hung answer");
    let took = start.elapsed();
    assert!(
        matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{e}"
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(5),
        "{took:?}"
    );
}
