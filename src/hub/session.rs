//! The Hub daemon's session (reference 8.1, 8.3): one kept-alive connection to the Hub,
//! the bearer token (any 401 drops it: the client logs in again), online/offline, the
//! User-Agent, and object downloads from signed URLs on connections of their own.

use super::http::{self, Body, Head};
use super::tls::{self, Link, Target};
use super::Online;
use rustls::ClientConfig;
use std::io::{self, BufReader, Read};
use std::sync::Arc;
use std::time::Duration;

/// The largest answer body taken in memory (a step carries a whole state).
pub const MAX_BODY: u64 = 16 << 20;

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Where the Hub is and how to reach it (8.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub port: u16,
    pub proxy: Option<(String, u16)>,
    /// HTTP CONNECT through the proxy (PH_CREDS_PROXY_NOPROXYCONNECT=0).
    pub proxy_connect: bool,
    pub timeout: Duration,
}

/// Where a download's answer goes.
pub trait Sink {
    /// The answer's head: false to leave its body unread.
    fn head(&mut self, head: &Head) -> io::Result<bool>;
    fn data(&mut self, bytes: &[u8]) -> io::Result<()>;
}

/// How to open a connection: what a download needs, apart from the session.
#[derive(Clone)]
pub struct Dialer {
    pub route: Route,
    /// None: plain HTTP (`PH_CREDS_PLAIN_HTTP`, a lab only).
    tls: Option<Arc<ClientConfig>>,
    ua: String,
}

pub struct Session {
    pub dialer: Dialer,
    conn: Option<BufReader<Link>>,
    pub token: Option<String>,
    pub online: Online,
    pub threshold: u32,
}

/// `Pantavisor/2 (Linux; <arch>) PV/<version> Date/<build date>` (8.1).
pub fn user_agent() -> String {
    format!(
        "Pantavisor/2 (Linux; {}) PV/{} Date/{}",
        std::env::consts::ARCH,
        env!("CARGO_PKG_VERSION"),
        option_env!("PV_BUILD_DATE").unwrap_or("unknown")
    )
}

/// `https://host[:port]/path` (or `http://` on a plain-HTTP lab Hub) into its parts.
pub fn split_url(url: &str) -> Result<(bool, String, u16, String), String> {
    let bad = || {
        format!(
            "download URL '{}' is not an absolute http(s) URL",
            url.escape_debug()
        )
    };
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let (auth, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    if auth.is_empty() || auth.contains('@') {
        return Err(bad());
    }
    let (host, port) = match auth.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            (h, p.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (auth, if tls { 443 } else { 80 }),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad());
    }
    Ok((tls, host.to_string(), port, path.to_string()))
}

impl Dialer {
    pub fn new(route: Route, tls: Option<Arc<ClientConfig>>) -> Dialer {
        Dialer {
            route,
            tls,
            ua: user_agent(),
        }
    }

    fn dial(&self, host: &str, port: u16, tls: bool) -> Result<Link, String> {
        let proxy = self.route.proxy.as_ref().map(|(h, p)| (h.as_str(), *p));
        let t = Target {
            host,
            port,
            proxy,
            proxy_connect: self.route.proxy_connect,
            timeout: self.route.timeout,
        };
        if tls && self.tls.is_none() {
            return Err(format!(
                "{host}:{port}: an https URL while plain HTTP is configured"
            ));
        }
        tls::connect(&t, if tls { self.tls.as_ref() } else { None })
    }
}

impl Session {
    pub fn new(dialer: Dialer, threshold: u32) -> Session {
        Session {
            dialer,
            conn: None,
            token: None,
            online: Online::default(),
            threshold,
        }
    }

    /// Records whether the Hub answered; returns the new online value when it changed.
    fn record(&mut self, answered: bool) -> Option<bool> {
        self.online.record(answered, self.threshold)
    }

    /// One request to the Hub's API, the answer's body in memory. `auth`: with the bearer
    /// token (none held: an error, no request). A 401 drops the token. Returns also the new
    /// online value when it changed, for `pantahub.online`.
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        auth: bool,
        extra: &[(&str, &str)],
    ) -> (Result<Reply, String>, Option<bool>) {
        let bearer;
        let ua = self.dialer.ua.clone();
        let mut headers: Vec<(&str, &str)> = vec![("User-Agent", ua.as_str())];
        if auth {
            match &self.token {
                Some(t) => {
                    bearer = format!("Bearer {t}");
                    headers.push(("Authorization", bearer.as_str()));
                }
                None => return (Err("not logged in".into()), None),
            }
        }
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        headers.extend_from_slice(extra);
        let res = self.exchange(method, path, &headers, body.unwrap_or_default());
        let changed = self.record(res.is_ok());
        if let Ok(r) = &res {
            if r.status == 401 && auth {
                self.token = None;
            }
        }
        (res, changed)
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, String> {
        let host = self.dialer.route.host.clone();
        let port = self.dialer.route.port;
        let what = |e: &dyn std::fmt::Display| format!("{method} {path} on {host}:{port}: {e}");
        // a kept-alive connection the Hub closed meanwhile fails before any answer: once more
        // on a fresh one
        for fresh in [self.conn.is_none(), true] {
            if fresh {
                self.conn = None;
            }
            let mut conn = match self.conn.take() {
                Some(c) => c,
                None => BufReader::new(self.dialer.dial(&host, port, self.dialer.tls.is_some())?),
            };
            let sent = http::write_request(conn.get_mut(), method, &host, path, headers, body);
            let head = sent.and_then(|()| http::read_head(&mut conn, method == "HEAD"));
            let head = match head {
                Ok(h) => h,
                Err(_) if !fresh => continue,
                Err(e) => return Err(what(&e)),
            };
            let body = Body::new(&mut conn, head.framing)
                .read_all(MAX_BODY)
                .map_err(|e| what(&e))?;
            if !head.close {
                self.conn = Some(conn);
            }
            return Ok(Reply {
                status: head.status,
                body,
            });
        }
        Err(what(&"no answer"))
    }

    /// Drops the kept-alive connection (after a cut, or to let a fault take effect).
    pub fn hang_up(&mut self) {
        self.conn = None;
    }

    /// A request whose answer came (or not) outside `call` (a download): online/offline.
    pub fn answered(&mut self, answered: bool) -> Option<bool> {
        self.record(answered)
    }

    /// PUT of a file's bytes to a signed URL's path on the Hub's host (a first sync's
    /// objects: 8.5, the Hub's local-s3), streamed from storage.
    pub fn upload(
        &mut self,
        path: &str,
        file: &std::path::Path,
    ) -> (Result<Reply, String>, Option<bool>) {
        let res = self.upload_inner(path, file);
        let changed = self.record(!matches!(res, Err((false, _))));
        (res.map_err(|(_, e)| e), changed)
    }

    fn upload_inner(
        &mut self,
        path: &str,
        file: &std::path::Path,
    ) -> Result<Reply, (bool, String)> {
        use std::io::Write;
        let d = &self.dialer;
        let (host, port) = (d.route.host.clone(), d.route.port);
        let what = |e: &dyn std::fmt::Display| format!("PUT {path} on {host}:{port}: {e}");
        let mut f =
            std::fs::File::open(file).map_err(|e| (true, format!("{}: {e}", file.display())))?;
        let len = f
            .metadata()
            .map_err(|e| (true, format!("{}: {e}", file.display())))?
            .len();
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err((true, what(&"bad path")));
        }
        let link = d
            .dial(&host, port, d.tls.is_some())
            .map_err(|e| (false, e))?;
        let mut conn = BufReader::new(link);
        let head = format!(
            "PUT {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {}\r\nContent-Length: {len}\r\n\r\n",
            d.ua
        );
        let sent = conn
            .get_mut()
            .write_all(head.as_bytes())
            .and_then(|()| io::copy(&mut (&mut f).take(len), conn.get_mut()).map(|_| ()))
            .and_then(|()| conn.get_mut().flush());
        sent.map_err(|e| (false, what(&e)))?;
        let head = http::read_head(&mut conn, false).map_err(|e| (false, what(&e)))?;
        let body = Body::new(&mut conn, head.framing)
            .read_all(MAX_BODY)
            .map_err(|e| (true, what(&e)))?;
        Ok(Reply {
            status: head.status,
            body,
        })
    }
}

impl Dialer {
    /// GET of an absolute (signed) URL, no bearer token, on a connection of its own: the
    /// sink sees the head first (and says whether to take the body), then the body as it
    /// arrives. Returns the head.
    pub fn download(
        &self,
        url: &str,
        range: Option<&str>,
        sink: &mut dyn Sink,
    ) -> (Result<Head, String>, bool) {
        let res = self.download_inner(url, range, sink);
        let answered = !matches!(&res, Err((false, _)));
        (res.map_err(|(_, e)| e), answered)
    }

    /// Err((answered, why)).
    fn download_inner(
        &self,
        url: &str,
        range: Option<&str>,
        sink: &mut dyn Sink,
    ) -> Result<Head, (bool, String)> {
        let (tls, host, port, path) = split_url(url).map_err(|e| (true, e))?;
        let link = self.dial(&host, port, tls).map_err(|e| (false, e))?;
        let mut conn = BufReader::with_capacity(64 * 1024, link);
        let mut headers: Vec<(&str, &str)> = vec![("User-Agent", self.ua.as_str())];
        if let Some(r) = range {
            headers.push(("Range", r));
        }
        let what = |e: &dyn std::fmt::Display| format!("GET {host}:{port} object: {e}");
        http::write_request(conn.get_mut(), "GET", &host, &path, &headers, b"")
            .map_err(|e| (false, what(&e)))?;
        let head = http::read_head(&mut conn, false).map_err(|e| (false, what(&e)))?;
        if !sink.head(&head).map_err(|e| (true, what(&e)))? {
            return Ok(head);
        }
        let mut body = Body::new(&mut conn, head.framing);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = body.read(&mut buf).map_err(|e| (true, what(&e)))?;
            if n == 0 {
                break;
            }
            sink.data(buf.get(..n).unwrap_or_default())
                .map_err(|e| (true, what(&e)))?;
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split() {
        assert_eq!(
            split_url("https://127.0.0.1:8443/local-s3/ab?x=1&y=2").unwrap(),
            (
                true,
                "127.0.0.1".into(),
                8443,
                "/local-s3/ab?x=1&y=2".into()
            )
        );
        assert_eq!(
            split_url("https://s3.example.com/b/k").unwrap(),
            (true, "s3.example.com".into(), 443, "/b/k".into())
        );
        assert_eq!(
            split_url("http://h").unwrap(),
            (false, "h".into(), 80, "/".into())
        );
        for bad in [
            "ftp://x/",
            "https://",
            "https://u@h/",
            "https://h:99999/",
            "/rel",
            "https://h/a b",
        ] {
            assert!(split_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_agent_has_the_hub_shape() {
        let ua = user_agent();
        assert!(ua.starts_with("Pantavisor/2 (Linux; "), "{ua}");
        assert!(ua.contains(") PV/") && ua.contains(" Date/"), "{ua}");
    }
}
