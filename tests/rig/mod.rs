//! A device booted by the harness with pv-ctrl in reach: `pvcontrol` from the host side
//! (entered into the device's PID namespace with nsenter, so SO_PEERCRED names a process the
//! device can see) and a static pantavisor in every container's rootfs as /bin/pv. Dropping a
//! rig checks that no mount, loop device or cgroup is left.
#![allow(dead_code)]
use crate::harness::{self, End};
use crate::support;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One device at a time, as the other namespace tests.
pub static SERIAL: Mutex<()> = Mutex::new(());

/// A statically linked pantavisor for the containers' rootfs: the test binary if it is static,
/// else the musl build (built here into its own target dir when missing).
pub fn static_pantavisor() -> PathBuf {
    let is_static = |p: &Path| {
        Command::new("file")
            .arg("-L")
            .arg(p)
            .output()
            .map(|o| {
                let t = String::from_utf8_lossy(&o.stdout).into_owned();
                t.contains("statically linked") || t.contains("static-pie linked")
            })
            .unwrap_or(false)
    };
    let bin = PathBuf::from(harness::BIN);
    if is_static(&bin) {
        return bin;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let musl = root.join("target/x86_64-unknown-linux-musl/release/pantavisor");
    if musl.exists() && is_static(&musl) {
        return musl;
    }
    let own = root.join("target/pvctrl-musl");
    let built = own.join("x86_64-unknown-linux-musl/release/pantavisor");
    if !built.exists() {
        let st = Command::new("cargo")
            .current_dir(root)
            .args([
                "build",
                "--release",
                "--target",
                "x86_64-unknown-linux-musl",
            ])
            .env("CARGO_TARGET_DIR", &own)
            .status()
            .unwrap();
        assert!(st.success(), "musl build of pantavisor failed");
    }
    built
}

pub struct Rig {
    pub dir: PathBuf,
    pub storage: PathBuf,
    pub socket: PathBuf,
    pub cgroup: Option<PathBuf>,
    pub bl: harness::Bootloader,
}

impl Rig {
    pub fn new(name: &str, description: &str) -> Rig {
        Rig::with_config(name, description, "")
    }

    pub fn with_config(name: &str, description: &str, extra_config: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("pv-ctl-{name}-{}", std::process::id()));
        let harness::DeviceFiles {
            storage,
            config,
            cgroup,
        } = harness::make_device(
            &dir,
            &format!("pv-ctl-{name}"),
            description,
            extra_config,
            &|rootfs| {
                std::fs::copy(static_pantavisor(), rootfs.join("bin/pv")).unwrap();
            },
        );
        let run = dir.join("run");
        let mut bl = harness::Bootloader::new(&storage, &config);
        bl.cgroup = cgroup.clone();
        Rig {
            dir,
            storage,
            socket: run.join("pv-ctrl"),
            cgroup,
            bl,
        }
    }

    pub fn boot(&mut self) -> Child {
        let (_, cmdline) = self.bl.pick();
        self.bl.spawn(&cmdline, &[])
    }

    /// Boots what the harness's bootloader picks; returns the revision and the device.
    pub fn boot_rev(&mut self) -> (String, Child) {
        let (rev, cmdline) = self.bl.pick();
        let dev = self.bl.spawn(&cmdline, &[]);
        (rev, dev)
    }

    /// A new revision from a pvmk description (paths relative to the rig's dir, where the
    /// busybox `rootfs` is): (objects dir, state JSON file).
    pub fn make_revision(&self, name: &str, description: &str) -> (PathBuf, PathBuf) {
        let desc = self.dir.join(format!("{name}.desc.json"));
        std::fs::write(&desc, description).unwrap();
        let objects = self.dir.join(format!("{name}.objects"));
        let state = self.dir.join(format!("{name}.json"));
        harness::pvmk(&[
            desc.as_os_str(),
            "--objects".as_ref(),
            objects.as_os_str(),
            "--state".as_ref(),
            state.as_os_str(),
        ]);
        (objects, state)
    }

    /// Uploads a revision's objects and its state as `rev` (`locals/...`) through pvcontrol.
    pub fn upload(&self, dev: &Child, objects: &Path, state: &Path, rev: &str) {
        self.upload_objects(dev, objects);
        let (code, out) = self.pvcontrol(dev, &["steps", "put", state.to_str().unwrap(), rev]);
        assert_eq!(code, 0, "steps put {rev}: {out}");
    }

    /// Uploads every file of `objects` (named by its sha256) through pvcontrol.
    pub fn upload_objects(&self, dev: &Child, objects: &Path) {
        for e in std::fs::read_dir(objects).unwrap() {
            let p = e.unwrap().path();
            let sha = p.file_name().unwrap().to_string_lossy().into_owned();
            let (code, out) = self.pvcontrol(dev, &["objects", "put", p.to_str().unwrap(), &sha]);
            assert_eq!(code, 0, "objects put {sha}: {out}");
        }
    }

    /// The progress of `rev` as stored: (status, status-msg).
    pub fn progress(&self, rev: &str) -> Option<(String, String)> {
        let raw = std::fs::read(self.storage.join("trails").join(rev).join(".pv/progress")).ok()?;
        let v = pantavisor::json::parse(&raw, Default::default()).ok()?;
        Some((
            v.get("status")?.as_str()?.to_string(),
            v.get("status-msg")?.as_str()?.to_string(),
        ))
    }

    /// pv_rev and pv_try of the boot env.
    pub fn env(&self) -> (Option<String>, Option<String>) {
        harness::read_env(&self.storage)
    }

    pub fn log_of(&self, rev: &str) -> String {
        std::fs::read_to_string(
            self.storage
                .join(format!("logs/{rev}/pantavisor/pantavisor.log")),
        )
        .unwrap_or_default()
    }

    pub fn console_of(&self, rev: &str, c: &str) -> String {
        std::fs::read_to_string(self.storage.join(format!("logs/{rev}/{c}/lxc/console.log")))
            .unwrap_or_default()
    }

    /// The host PIDs in container `name`'s cgroup (`<device cgroup>/lxc/<name>`).
    pub fn pids_of(&self, name: &str) -> Vec<i32> {
        let Some(cg) = &self.cgroup else {
            return vec![];
        };
        std::fs::read_to_string(cg.join("lxc").join(name).join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The host PID of container `name`'s init: the process of its cgroup that is PID 1 of
    /// its own PID namespace (`NSpid` ends in 1).
    pub fn init_pid_of(&self, name: &str) -> Option<i32> {
        self.pids_of(name).into_iter().find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().map(|x| x == "1"))
                .unwrap_or(false)
        })
    }

    pub fn console(&self, c: &str) -> String {
        std::fs::read_to_string(self.storage.join(format!("logs/0/{c}/lxc/console.log")))
            .unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.storage.join("logs/0/pantavisor/pantavisor.log"))
            .unwrap_or_default()
    }

    /// `pantavisor pvcontrol -s <socket> ARGS` run in the device's PID namespace: (exit,
    /// stdout then stderr, where an error answer is shown as upstream's pvcontrol does).
    pub fn pvcontrol(&self, device: &Child, args: &[&str]) -> (i32, String) {
        let Some(mut cmd) = self.pvcontrol_cmd(device, args) else {
            return (-1, String::new());
        };
        let out = cmd.output().unwrap();
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// The `pvcontrol` command line of [`Rig::pvcontrol`], to run as one likes; None when
    /// the device is gone.
    pub fn pvcontrol_cmd(&self, device: &Child, args: &[&str]) -> Option<Command> {
        Some(pvcontrol_in(
            harness::device_pid(device)?,
            &self.socket,
            args,
        ))
    }

    /// Polls `until` every 50 ms for at most `limit`; false if the device ended or time ran out.
    pub fn wait(
        &self,
        device: &mut Child,
        limit: Duration,
        until: &dyn Fn(&Rig, &Child) -> bool,
    ) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if device.try_wait().unwrap().is_some() {
                return false;
            }
            if until(self, device) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The status of container `name` in `pvcontrol ls`.
    pub fn status_of(&self, device: &Child, name: &str) -> Option<String> {
        let (code, out) = self.pvcontrol(device, &["ls"]);
        if code != 0 {
            return None;
        }
        let v = pantavisor::json::parse_str(&out, Default::default()).ok()?;
        v.as_array()?
            .iter()
            .find(|c| c.get("name").and_then(|n| n.as_str()) == Some(name))
            .and_then(|c| c.get("status")?.as_str().map(str::to_string))
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        harness::tear_down(
            &self.dir,
            self.cgroup.as_deref(),
            &support::assert_nothing_left,
        );
    }
}

/// `pantavisor pvcontrol -s <socket> ARGS` entered into the PID namespace of the device whose
/// host PID is `device_pid`.
pub fn pvcontrol_in(device_pid: i32, socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.args([
        "-t",
        &device_pid.to_string(),
        "-p",
        harness::BIN,
        "pvcontrol",
        "-s",
    ])
    .arg(socket)
    .args(args);
    cmd
}

/// Stops a device still running (SIGINT) and returns how it ended.
pub fn finish(device: &mut Child) -> End {
    if device.try_wait().unwrap().is_none() {
        harness::signal_device(device, "INT");
    }
    harness::wait_end(device, Duration::from_secs(20))
}

pub fn sh(body: &str) -> String {
    format!(
        r#"["/bin/sh","-c","trap 'exit 0' TERM; {}"]"#,
        body.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

pub const FOREVER: &str = "while :; do sleep 0.2; done";

/// One raw pv-ctrl answer: status, head fields, body.
#[derive(Debug)]
pub struct Http {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Http {
    /// The value of head field `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Display for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}", self.code)?;
        for (k, v) in &self.headers {
            write!(f, " [{k}: {v}]")?;
        }
        match self.body.trim() {
            "" => Ok(()),
            b => write!(f, " {b}"),
        }
    }
}

/// One HTTP/1.1 request over a unix socket (argv: socket method path body), printing the
/// whole answer, head included, as it came; 10 s at most.
const HTTP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
body = sys.argv[4].encode()
s.sendall(("%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
           % (sys.argv[2], sys.argv[3], len(body))).encode() + body)
data = b""
while True:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if sep:
        n = None
        for l in head.split(b"\r\n")[1:]:
            k, _, v = l.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v.strip())
        if n is not None and len(rest) >= n:
            break
    d = s.recv(65536)
    if not d:
        break
    data += d
sys.stdout.buffer.write(data)
"#;

impl Rig {
    /// A raw request to pv-ctrl from the host side (python3 entered into the device's PID
    /// namespace, so the device sees the caller): the answer with its head fields, which
    /// `pvcontrol` does not show (`Retry-After`). None when the device is gone or the answer
    /// is not HTTP.
    pub fn http(&self, device: &Child, method: &str, path: &str, body: &str) -> Option<Http> {
        http_in(
            harness::device_pid(device)?,
            &self.socket,
            method,
            path,
            body,
        )
    }

    /// Every file under `dir` (relative paths) with its bytes; empty if `dir` is missing.
    pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
        fn walk(root: &Path, d: &Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(root, &p, out);
                } else if let Ok(b) = std::fs::read(&p) {
                    out.insert(p.strip_prefix(root).unwrap_or(&p).to_path_buf(), b);
                }
            }
        }
        let mut out = std::collections::BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }
}

/// Declared before a rig (so dropped after it): removes the rig's cgroup tree once its
/// processes are gone. After a failed test the rig's tear-down kills the device, but the
/// containers of its PID namespace die asynchronously, and a cgroup that still holds one
/// cannot be removed yet; this retries for up to 10 s.
#[derive(Default)]
pub struct CgroupSweep(pub Option<PathBuf>);

impl Drop for CgroupSweep {
    fn drop(&mut self) {
        let Some(cg) = &self.0 else { return };
        let t = Instant::now();
        while cg.exists() && t.elapsed() < Duration::from_secs(10) {
            harness::remove_cgroup_tree(cg);
            if cg.exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// [`Rig::http`] without a rig: a raw pv-ctrl request to the socket at `socket`, from the
/// PID namespace of the device whose host PID is `device_pid` (so a thread that polls while
/// the test holds the device's `Child` can ask too). None when the answer is not HTTP.
pub fn http_in(
    device_pid: i32,
    socket: &Path,
    method: &str,
    path: &str,
    body: &str,
) -> Option<Http> {
    http_as(device_pid, None, socket, method, path, body)
}

/// [`http_in`] from the cgroup whose `cgroup.procs` is `cgroup_procs` (a container's: the
/// device names a caller by its cgroup), joined before it connects.
pub fn http_as(
    device_pid: i32,
    cgroup_procs: Option<&Path>,
    socket: &Path,
    method: &str,
    path: &str,
    body: &str,
) -> Option<Http> {
    let join = "import os, sys\nif sys.argv[5]: open(sys.argv[5], 'w').write(str(os.getpid()))\n";
    let out = Command::new("nsenter")
        .args([
            "-t",
            &device_pid.to_string(),
            "-p",
            "python3",
            "-c",
            &format!("{join}{HTTP_CLIENT}"),
        ])
        .arg(socket)
        .args([method, path, body])
        .arg(cgroup_procs.unwrap_or(Path::new("")))
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let code = lines
        .next()?
        .strip_prefix("HTTP/1.")?
        .get(2..5)?
        .parse()
        .ok()?;
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Some(Http {
        code,
        headers,
        body: body.to_string(),
    })
}

/// Follows a text file as it grows (a device log): each complete line with the instant this
/// tail saw it, polled every 20 ms by a thread until [`Tail::stop`]. A file that shrinks
/// (rotated) is read again from its start.
pub struct Tail {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    lines: std::sync::Arc<Mutex<Vec<(Instant, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tail {
    pub fn follow(path: PathBuf) -> Tail {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lines = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), lines.clone());
        let thread = std::thread::spawn(move || {
            let (mut off, mut partial) = (0usize, String::new());
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let raw = std::fs::read(&path).unwrap_or_default();
                if raw.len() < off {
                    off = 0;
                    partial.clear();
                }
                if raw.len() > off {
                    let now = Instant::now();
                    partial.push_str(&String::from_utf8_lossy(&raw[off..]));
                    off = raw.len();
                    while let Some(i) = partial.find('\n') {
                        let line: String = partial.drain(..=i).collect();
                        l.lock().unwrap().push((now, line.trim_end().to_string()));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Tail {
            stop,
            lines,
            thread: Some(thread),
        }
    }

    /// The lines seen so far.
    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.lines.lock().unwrap().clone()
    }

    pub fn stop(&mut self) -> Vec<(Instant, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.lines()
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop();
    }
}
