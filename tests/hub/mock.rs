//! The mock Pantacor Hub (`tests/hub/mockhub.py`) from Rust tests: a CA made at run time, the
//! device API over HTTPS, the control API (see the script's docstring) over plain HTTP on
//! 127.0.0.1, the JSON-lines request log; the mock is killed on drop.
//! Another test file uses it with `#[path = "hub/mock.rs"] mod mock;`.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct MockHub {
    child: Child,
    /// the certificates (`ca.pem` is what the device gets in PV_LIBTHTTP_CERTSDIR, alone) and
    /// the request log
    pub dir: PathBuf,
    /// the device API (HTTPS), the control API (HTTP, 127.0.0.1), the CONNECT proxy
    pub port: u16,
    pub control: u16,
    pub proxy: u16,
}

impl MockHub {
    /// Makes the CA in `dir` and starts serving; `host` is the device's PH_CREDS_HOST (signed
    /// URLs point there; `127.0.0.1` needs no name lookup).
    pub fn start(dir: &Path, host: &str) -> MockHub {
        MockHub::start_with(dir, host, &[])
    }

    /// [`MockHub::start`] with more `serve` arguments.
    pub fn start_with(dir: &Path, host: &str, args: &[&str]) -> MockHub {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hub/mockhub.py");
        let made = Command::new("python3")
            .arg(&script)
            .arg("--make-ca")
            .arg(dir)
            .args(["--host", host])
            .status()
            .expect("python3 must be installed");
        assert!(
            made.success(),
            "mockhub --make-ca {}: {made}",
            dir.display()
        );
        let mut child = Command::new("python3")
            .arg(&script)
            .arg("serve")
            .arg("--certs")
            .arg(dir)
            .args(["--host", host, "--proxy-port", "0", "--log"])
            .arg(dir.join("requests.jsonl"))
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 must be installed");
        // the mock prints its ports once it listens (an empty line if it died first)
        let mut line = String::new();
        let out = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(out).read_line(&mut line);
        let ports = (
            field(&line, "port"),
            field(&line, "control"),
            field(&line, "proxy"),
        );
        let (Some(port), Some(control), Some(proxy)) = ports else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mockhub did not start (its line: {line:?})")
        };
        MockHub {
            child,
            dir: dir.to_path_buf(),
            port,
            control,
            proxy,
        }
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("requests.jsonl")
    }

    /// One control API request (`path` after `/control`): its status and body.
    pub fn ctl(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.control)).expect("mockhub control port");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        let len = body.len();
        write!(
            s,
            "{method} /control{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n{body}"
        )
        .expect("mockhub control request");
        let mut answer = String::new();
        s.read_to_string(&mut answer)
            .expect("mockhub control answer");
        let status = answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
        (status, body.unwrap_or_default())
    }

    /// The request log so far, a JSON object a line.
    pub fn log(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.lines().map(str::to_string).collect()
    }

    /// Polls the log until a line satisfies `pred`; None after `limit`.
    pub fn wait_for(&self, limit: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let start = Instant::now();
        loop {
            if let Some(line) = self.log().into_iter().find(|l| pred(l)) {
                return Some(line);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `"key": 123` in the mock's one-line JSON.
fn field(line: &str, key: &str) -> Option<u16> {
    let at = line.find(&format!("\"{key}\": "))? + key.len() + 4;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
