//! TEMPORARY stand-in until helper H10's rustls transport merges: plain TCP only.
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub struct ClientConfig;
pub fn client_config(_certsdir: &Path) -> Result<Arc<ClientConfig>, String> {
    Err("TLS not built yet".into())
}
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub proxy: Option<(&'a str, u16)>,
    pub proxy_connect: bool,
    pub timeout: Duration,
}
pub struct Link(TcpStream);
impl Read for Link {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.read(b)
    }
}
impl Write for Link {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
pub fn connect(t: &Target, tls: Option<&Arc<ClientConfig>>) -> Result<Link, String> {
    if tls.is_some() {
        return Err("TLS not built yet".into());
    }
    let addr = (t.host, t.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}:{}: {e}", t.host, t.port))?
        .next()
        .ok_or("no address")?;
    let s = TcpStream::connect_timeout(&addr, t.timeout)
        .map_err(|e| format!("{}:{}: {e}", t.host, t.port))?;
    let _ = s.set_read_timeout(Some(t.timeout));
    let _ = s.set_write_timeout(Some(t.timeout));
    Ok(Link(s))
}
