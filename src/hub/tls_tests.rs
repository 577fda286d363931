use super::*;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A self-signed P-256 CA (valid to 2126); only its encoding matters here, the handshakes are
/// in tests/hub/tls.rs against the mock Hub's run-time CA.
const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBmzCCAUGgAwIBAgIUUs9/LoEBwQturvCmaSIY3odhPMYwCgYIKoZIzj0EAwIw
IjEgMB4GA1UEAwwXcGFudGF2aXNvciB1bml0LXRlc3QgQ0EwIBcNMjYxMjA3MTcz
OTMwWhgPMjEyNjExMTMxNzM5MzBaMCIxIDAeBgNVBAMMF3BhbnRhdmlzb3IgdW5p
dC10ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqjZ1ftSYGTmsvDqm
Ba4uakcCxgRd7MegPwZiZI3l1526v+5XevwLW4qitcgPvXuU9FXrKlcvFJueNJ85
HYvo6aNTMFEwHQYDVR0OBBYEFBCBPhM9QdF6olQNndq0zs6tM9LaMB8GA1UdIwQY
MBaAFBCBPhM9QdF6olQNndq0zs6tM9LaMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZI
zj0EAwIDSAAwRQIhAJvgu+0wYRbsbQ9AxmpcsLmWS4sqpyWjsqyQfC+6lLvLAiB2
dmXxx35y3uuUUIugPVlerGyoOaYroI8Q9YputBtaOA==
-----END CERTIFICATE-----
";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh certificate directory under the system temp dir, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("pv-tls-{}-{seq}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        for (name, text) in files {
            fs::write(p.join(name), text).unwrap();
        }
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn err(files: &[(&str, &str)]) -> (String, String) {
    let d = Dir::new(files);
    let e = client_config(&d.0).expect_err("a refused directory");
    (e, d.0.display().to_string())
}

#[test]
fn a_dir_without_a_certificate_is_refused_naming_it() {
    // empty; text and a private key only (a key is no CA)
    let key = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
    for files in [
        &[][..],
        &[("README", "certificates go here\n"), ("hub.key", key)][..],
    ] {
        let (e, dir) = err(files);
        assert!(e.contains(&dir) && e.contains("no PEM certificate"), "{e}");
    }
    let e = client_config(Path::new("/nonexistent/pv-certs")).expect_err("no directory");
    assert!(e.contains("/nonexistent/pv-certs"), "{e}");
}

#[test]
fn a_certificate_next_to_other_files_is_taken() {
    let d = Dir::new(&[
        ("README", "certificates go here\n"),
        ("hub-ca.pem", CA),
        (
            "bundle.crt",
            &format!("text before\n{CA}text between\n{CA}"),
        ),
    ]);
    fs::create_dir(d.0.join("subdir")).unwrap();
    assert!(client_config(&d.0).is_ok());
}

#[test]
fn a_broken_certificate_file_is_refused_naming_it() {
    let body: String = CA.lines().filter(|l| !l.starts_with("-----")).collect();
    let cases = [
        // not base64
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_string(),
        // no end marker
        CA.replace("-----END CERTIFICATE-----\n", ""),
        // base64 of something that is no certificate
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n".into(),
        // a certificate cut short
        format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            &body[..200]
        ),
    ];
    for bad in cases {
        let (e, dir) = err(&[("a-good.pem", CA), ("b-bad.pem", &bad)]);
        assert!(e.contains(&format!("{dir}/b-bad.pem")), "{bad}: {e}");
    }
}

#[test]
fn connect_errors_name_the_target_and_the_cause() {
    // a port nobody listens on: bound, then closed
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let t = Target {
        host: "127.0.0.1",
        port,
        proxy: None,
        proxy_connect: true,
        timeout: Duration::from_secs(5),
    };
    let e = connect(&t, None).err().expect("refused");
    assert!(
        e.starts_with(&format!("127.0.0.1:{port}: ")) && e.contains("refused"),
        "{e}"
    );
    let proxied = Target {
        proxy: Some(("127.0.0.1", port)),
        ..t
    };
    let e = connect(&proxied, None).err().expect("refused");
    assert!(e.contains(&format!("via proxy 127.0.0.1:{port}")), "{e}");
    let never = Target {
        timeout: Duration::ZERO,
        ..t
    };
    let e = connect(&never, None).err().expect("no timeout");
    assert!(e.contains("PH_LIBEVENT_HTTP_TIMEOUT"), "{e}");
}

#[test]
fn certificate_errors_say_what_is_wrong() {
    let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
    assert!(tls_error(&unknown).contains("unknown issuer"));
    let forged = rustls::Error::InvalidCertificate(CertificateError::BadSignature);
    assert!(tls_error(&forged).contains("bad signature"));
    let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
    assert!(tls_error(&expired).starts_with("certificate: "));
}
