//! The Hub client's byte stream (reference 8.1; upstream's libthttp): TCP to the Hub or through
//! an HTTP CONNECT proxy, then TLS with rustls + ring (README "TLS for the Hub client"), the
//! server's certificate verified against the PEM certificates of `PV_LIBTHTTP_CERTSDIR` and its
//! name against the Hub's host. `hub::http` writes and reads HTTP/1.1 over a [`Link`].

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore,
    SignatureScheme, StreamOwned,
};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Server certificates are verified against every PEM certificate in `certsdir` (upstream's
/// PV_LIBTHTTP_CERTSDIR; its regular files, any number of certificates each, other PEM sections
/// and text around them ignored); none there: Err naming the dir. Never compiled-in roots.
/// A file with a broken certificate is an error naming it rather than a CA silently missing.
pub fn client_config(certsdir: &Path) -> Result<Arc<ClientConfig>, String> {
    let dir = certsdir.display();
    let mut files: Vec<PathBuf> = std::fs::read_dir(certsdir)
        .and_then(|d| d.map(|e| e.map(|e| e.path())).collect())
        .map_err(|e| format!("certificate directory {dir}: {e}"))?;
    crate::sort(&mut files);
    let mut roots = RootCertStore::empty();
    for f in files.iter().filter(|f| f.is_file()) {
        let at = |e: &dyn std::fmt::Display| format!("certificate file {}: {e}", f.display());
        for cert in CertificateDer::pem_file_iter(f).map_err(|e| at(&e))? {
            roots.add(cert.map_err(|e| at(&e))?).map_err(|e| at(&e))?;
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "certificate directory {dir}: no PEM certificate, so no Hub can be verified"
        ));
    }
    // rustls 0.23.48 deprecates ring's provider for having no post-quantum key exchange
    // (ML-KEM); aws-lc-rs, which has it, costs twice ring's bytes (README "TLS for the Hub
    // client"). X25519 and the NIST curves remain.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("TLS: {e}"))?;
    let floor = clock_floor();
    if UnixTime::now() < floor {
        say_unset_clock(floor);
    }
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UnsetClock { inner, floor }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// [`crate::pvs::clock_floor`]: earlier, the board has no real-time clock.
fn clock_floor() -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(crate::pvs::clock_floor()))
}

fn say_unset_clock(floor: UnixTime) {
    let _ = writeln!(
        io::stderr(),
        "WARN the clock reads before {} s since 1970, so it is not set (a board without a \
         real-time clock): the Hub's certificates are checked as of that time, and one issued \
         later as of its own start",
        floor.as_secs()
    );
}

/// The Hub's certificate verified by webpki, chain, name and validity, but a board without
/// a real-time clock boots in 1970 and would refuse every certificate as not valid yet (upstream
/// never sees this: its libthttp does not verify the server at all). While the clock reads
/// earlier than [`clock_floor`], validity is checked as of the floor, or, for a chain issued
/// after it, as of the latest start in the chain. A chain that expired before the floor is
/// still refused, as is every wrong signature or name; one that expired later cannot be told
/// from a valid one without a clock (the price of reaching the Hub at all). A set clock is used
/// as it is.
#[derive(Debug)]
struct UnsetClock {
    inner: Arc<WebPkiServerVerifier>,
    floor: UnixTime,
}

impl ServerCertVerifier for UnsetClock {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verify = |at| {
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, at)
        };
        if now >= self.floor {
            return verify(now);
        }
        let mut at = self.floor;
        // each certificate of the chain may start later than the one before
        for _ in 0..8 {
            match verify(at) {
                Err(rustls::Error::InvalidCertificate(CertificateError::NotValidYetContext {
                    not_before,
                    ..
                })) if not_before > at => at = not_before,
                r => return r,
            }
        }
        verify(at)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Where [`connect`] goes.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    /// PH_CREDS_PROXY_HOST/PORT; with `proxy_connect` (PH_CREDS_PROXY_NOPROXYCONNECT == 0) an
    /// HTTP CONNECT tunnel is opened through it first, else the stream (and TLS, verifying the
    /// Hub's name) goes to the proxy itself.
    pub proxy: Option<(&'a str, u16)>,
    pub proxy_connect: bool,
    /// connect, read and write timeout (PH_LIBEVENT_HTTP_TIMEOUT): [`connect`] as a whole
    /// (name lookup aside: musl's resolver has its own) and then each read or write
    pub timeout: Duration,
}

/// A connected stream to the Hub.
pub struct Link {
    inner: Inner,
}

enum Inner {
    Plain(TcpStream),
    // boxed: a TLS connection is over a kilobyte, the plain variant a file descriptor
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// A connected stream: TLS (config Some) or plain TCP (None: only when the plain-HTTP key
/// asks for it). Errors are one line naming host:port and the cause (DNS, refused, timeout,
/// certificate: unknown issuer / wrong name / expired, proxy answered 407 ...).
pub fn connect(t: &Target, tls: Option<&Arc<ClientConfig>>) -> Result<Link, String> {
    let via = match t.proxy {
        Some((h, p)) => format!(" via proxy {h}:{p}"),
        None => String::new(),
    };
    open(t, tls).map_err(|e| format!("{}:{}{via}: {e}", t.host, t.port))
}

fn open(t: &Target, tls: Option<&Arc<ClientConfig>>) -> Result<Link, String> {
    if t.timeout.is_zero() {
        return Err("timeout 0 s (PH_LIBEVENT_HTTP_TIMEOUT): would wait for ever".into());
    }
    let deadline = Instant::now()
        .checked_add(t.timeout)
        .ok_or("timeout too long (PH_LIBEVENT_HTTP_TIMEOUT)")?;
    let (host, port) = t.proxy.unwrap_or((t.host, t.port));
    let mut tcp = dial(host, port, deadline)?;
    if t.proxy.is_some() && t.proxy_connect {
        tunnel(&mut tcp, t, deadline)?;
    }
    let inner = match tls {
        None => Inner::Plain(tcp),
        Some(config) => Inner::Tls(Box::new(handshake(tcp, t.host, config, deadline)?)),
    };
    let link = Link { inner };
    let tcp = link.tcp();
    tcp.set_read_timeout(Some(t.timeout))
        .and_then(|_| tcp.set_write_timeout(Some(t.timeout)))
        .map_err(|e| cause(&e))?;
    Ok(link)
}

/// The time left to `deadline` as the socket's read and write timeout.
fn arm(tcp: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    tcp.set_read_timeout(Some(left))?;
    tcp.set_write_timeout(Some(left))
}

/// Name lookup (musl: /etc/hosts, then DNS), then each address in turn.
fn dial(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, String> {
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last = format!("cannot resolve {host}: no address");
    for a in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match TcpStream::connect_timeout(&a, left) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("connect to {a}: {}", cause(&e)),
        }
    }
    Err(last)
}

/// `CONNECT host:port` through the proxy `tcp` is connected to. The answer's head is read a
/// byte at a time: what follows it is the tunnel, the TLS server's, not ours to buffer.
fn tunnel(tcp: &mut TcpStream, t: &Target, deadline: Instant) -> Result<(), String> {
    let authority = if t.host.contains(':') {
        format!("[{}]:{}", t.host, t.port)
    } else {
        format!("{}:{}", t.host, t.port)
    };
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    let mut head = Vec::new();
    let exchange = (|| {
        arm(tcp, deadline)?;
        tcp.write_all(req.as_bytes())?;
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= super::http::MAX_HEAD {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
            }
            arm(tcp, deadline)?;
            if tcp.read(&mut b)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the head ended",
                ));
            }
            head.push(b[0]);
        }
        super::http::read_head(&mut &head[..], true)
    })();
    let answer = exchange.map_err(|e| format!("proxy CONNECT {authority}: {}", cause(&e)))?;
    if !(200..300).contains(&answer.status) {
        return Err(format!(
            "proxy answered {} to CONNECT {authority}",
            answer.status
        ));
    }
    Ok(())
}

fn handshake(
    mut tcp: TcpStream,
    host: &str,
    config: &Arc<ClientConfig>,
    deadline: Instant,
) -> Result<StreamOwned<ClientConnection, TcpStream>, String> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is not a host name or IP address TLS can verify"))?;
    let mut conn = ClientConnection::new(Arc::clone(config), name).map_err(|e| tls_error(&e))?;
    while conn.is_handshaking() {
        let step = arm(&tcp, deadline).and_then(|_| conn.complete_io(&mut tcp));
        match step {
            Ok((0, 0)) => return Err("TLS handshake: connection closed".into()),
            Ok(_) => {}
            Err(e) => {
                let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
                return Err(match inner {
                    Some(tls) => tls_error(tls),
                    None => format!("TLS handshake: {}", cause(&e)),
                });
            }
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

fn tls_error(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate: unknown issuer (no CA of the certificate directory signed it)".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::BadSignature) => {
            "certificate: bad signature (not by the key of the CA of that name)".into()
        }
        // rustls names the expected and the presented names, or the dates
        rustls::Error::InvalidCertificate(c) => format!("certificate: {c}"),
        other => format!("TLS: {other}"),
    }
}

/// An I/O error as a cause in a one-line message.
fn cause(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::UnexpectedEof => format!("connection closed early ({e})"),
        _ => e.to_string(),
    }
}

impl Link {
    fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(s) => s,
            Inner::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for Link {
    /// A TLS peer that closes without close_notify reads as the end of the stream, not as
    /// an error (many servers close so): no byte received is
    /// lost, and a body cut short is still caught by its framing -- `hub::http::Body` fails a
    /// Content-Length or chunked body that ends early, and objects are sha256-verified. Only a
    /// body framed by the close itself cannot tell a cut, as over plain TCP.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.read(buf),
            Inner::Tls(s) => match s.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            },
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(s) => s.write(buf),
            Inner::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(s) => s.flush(),
            Inner::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
