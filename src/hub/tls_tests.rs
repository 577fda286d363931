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

/// A server certificate for localhost and 127.0.0.1 signed by [`CA`], and its key: the
/// in-process handshake below runs ring's assembler on every port (under qemu-user).
const SERVER: &str = "-----BEGIN CERTIFICATE-----
MIIBtjCCAV2gAwIBAgIBBzAKBggqhkjOPQQDAjAiMSAwHgYDVQQDDBdwYW50YXZp
c29yIHVuaXQtdGVzdCBDQTAgFw0yNjEyMDcxNzU0MTdaGA8yMTI2MTExMzE3NTQx
N1owFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD
QgAE0eZKeHttdnkv9lBjhKXCDGe5+FtFIm8cy7x91UaMXgbGfgrRdbW64+d3TqJl
RS02Yi1R8R61hVrWKMT4jBJT9qOBjzCBjDAaBgNVHREEEzARgglsb2NhbGhvc3SH
BH8AAAEwCQYDVR0TBAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYB
BQUHAwEwHQYDVR0OBBYEFL63krKSiohl1t3ipVqvQL3FbR/GMB8GA1UdIwQYMBaA
FBCBPhM9QdF6olQNndq0zs6tM9LaMAoGCCqGSM49BAMCA0cAMEQCIDnmIqNlVkAm
l5r/5vkZIiLFm0j+PYkRxHDyKLtc1fJVAiBOhM9G25NWSck6RP9TwnWBN8UG3XIZ
oS+70A21HHmWZA==
-----END CERTIFICATE-----
";
const SERVER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgf8dm3R51y+i6gV/f
S3mdcVXOVoANYTT10MygVSMX5sShRANCAATR5kp4e212eS/2UGOEpcIMZ7n4W0Ui
bxzLvH3VRoxeBsZ+CtF1tbrj53dOomVFLTZiLVHxHrWFWtYoxPiMElP2
-----END PRIVATE KEY-----
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

/// One TLS server connection on a thread: reads a request head, writes `answer`, then closes
/// with or without close_notify.
fn serve_once(
    version: &'static rustls::SupportedProtocolVersion,
    answer: &'static [u8],
    close_notify: bool,
) -> (u16, std::thread::JoinHandle<()>) {
    use rustls::pki_types::PrivateKeyDer;
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(SERVER.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(SERVER_KEY.as_bytes()).unwrap(),
        )
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let mut s = StreamOwned::new(conn, tcp);
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap() == 1 {
            head.push(b[0]);
        }
        s.write_all(answer).unwrap();
        if close_notify {
            s.conn.send_close_notify();
        }
        s.flush().unwrap();
    });
    (port, server)
}

#[test]
fn handshake_get_and_eof_with_or_without_close_notify() {
    let d = Dir::new(&[("ca.pem", CA)]);
    let config = client_config(&d.0).unwrap();
    let length: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    let close: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello";
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    for version in versions {
        for (answer, close_notify) in [(length, false), (close, false), (close, true)] {
            let (port, server) = serve_once(version, answer, close_notify);
            let t = Target {
                host: "127.0.0.1",
                port,
                proxy: None,
                proxy_connect: true,
                timeout: Duration::from_secs(30),
            };
            // made on one thread, used on another (the daemon may hand links around)
            let c = Arc::clone(&config);
            let mut link = std::thread::spawn(move || connect(&t, Some(&c)))
                .join()
                .unwrap()
                .unwrap();
            crate::hub::http::write_request(&mut link, "GET", "127.0.0.1", "/", &[], b"").unwrap();
            let mut r = io::BufReader::new(&mut link);
            let head = crate::hub::http::read_head(&mut r, false).unwrap();
            let body = crate::hub::http::Body::new(&mut r, head.framing).read_all(100);
            let what = format!("{version:?} {close_notify}");
            assert_eq!(body.unwrap(), b"hello", "{what}");
            // the end of the stream, not an error, once the server has gone
            server.join().unwrap();
            let mut rest = Vec::new();
            assert_eq!(r.read_to_end(&mut rest).unwrap(), 0, "{what}");
        }
    }
}

#[test]
fn a_board_without_a_clock_still_verifies_chain_name_and_expiry() {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CA.as_bytes()).unwrap())
        .unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .unwrap();
    let leaf = CertificateDer::from_pem_slice(SERVER.as_bytes()).unwrap();
    let name = |n: &str| ServerName::try_from(n.to_string()).unwrap();
    let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));
    let year_2200 = at(7_258_118_400);
    let v = UnsetClock {
        inner: inner.clone(),
        floor: clock_floor(),
    };
    let check =
        |v: &UnsetClock, host: &str, now| v.verify_server_cert(&leaf, &[], &name(host), &[], now);
    // webpki alone refuses a leaf issued on 2026-12-07 at a 1970 clock
    let bare = inner.verify_server_cert(&leaf, &[], &name("localhost"), &[], at(0));
    assert!(
        matches!(
            bare,
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYetContext { .. }
            ))
        ),
        "{bare:?}"
    );
    // the floor (2026-12-01) is before the leaf's start: checked as of that start
    assert!(check(&v, "localhost", at(0)).is_ok());
    assert!(check(&v, "127.0.0.1", at(1_000_000)).is_ok());
    // the name is still checked
    assert!(matches!(
        check(&v, "hub.example.com", at(0)),
        Err(rustls::Error::InvalidCertificate(_))
    ));
    // a set clock is used as it is: expired in 2126
    assert!(matches!(
        check(&v, "localhost", year_2200),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext { .. }
        ))
    ));
    // a chain that expired before the floor is refused at an unset clock
    let late = UnsetClock {
        inner,
        floor: year_2200,
    };
    assert!(matches!(
        check(&late, "localhost", at(0)),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext { .. }
        ))
    ));
}
