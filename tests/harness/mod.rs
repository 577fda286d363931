//! The bootloader a test harness plays (interfaces.md), around the real binary as PID 1 of a
//! new PID namespace:
//!
//! ```text
//! read pv_rev, pv_try from <storage>/boot/uboot.txt; pv_trying is the harness's own memory
//! if pv_try set:
//!     if pv_trying == pv_try: boot pv_rev, forget pv_trying           (second attempt: fall back)
//!     else:                   pv_trying = pv_try, boot pv_try          (first attempt)
//! else: boot pv_rev
//! cmdline: "pv_rev=<booted> pv_try=<pv_try>" (pv_try part only when set)
//! ```
//! The harness never writes uboot.txt. The device's end tells what happened: killed by
//! SIGHUP (unshare: 129) = reboot, boot again; SIGINT (130) = powered off, stop; anything else
//! is a "kernel panic", a test failure.
//!
//! Each boot's console (the device's stdout and stderr) is kept in `<dir of the config>/
//! consoles/boot-<n>.log`. A device that hits a fatal error prints one `FATAL <step>:
//! <reason>` line and reboots; it would do so forever, so [`Bootloader::run`] stops after
//! [`FATAL_BOOTS`] consecutive boots that rebooted after the same FATAL line and returns
//! [`End::Fatal`] with it: the test fails on the line instead of looping.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pantavisor");

/// Reads pv_rev / pv_try from a uboot.txt (records `key=value\0`, ended by `\0\0`).
pub fn read_env(storage: &Path) -> (Option<String>, Option<String>) {
    let data = std::fs::read(storage.join("boot/uboot.txt")).unwrap_or_default();
    let mut rev = None;
    let mut try_ = None;
    for rec in data.split(|&b| b == 0) {
        if rec.is_empty() {
            break;
        }
        let s = String::from_utf8_lossy(rec);
        if let Some((k, v)) = s.split_once('=') {
            let v = (!v.is_empty()).then(|| v.to_string());
            match k {
                "pv_rev" => rev = v,
                "pv_try" => try_ = v,
                _ => {}
            }
        }
    }
    (rev, try_)
}

/// How one boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    Reboot,
    PowerOff,
    /// Any other end: the test fails on it.
    Panic(String),
    /// [`FATAL_BOOTS`] boots in a row rebooted after this same `FATAL <step>: <reason>` line.
    Fatal(String),
}

/// Consecutive boots ending in a reboot after the same FATAL line before the harness stops.
pub const FATAL_BOOTS: usize = 3;

/// The `FATAL <step>: <reason>` of a console: the message of the last FATAL record
/// (`[pantavisor] <tsec> FATAL\t -- [init]: FATAL <step>: <reason>`), without the record's
/// time stamp so boots compare equal.
pub fn fatal_line(console: &str) -> Option<String> {
    console.lines().rev().find_map(|l| {
        let i = l.find("FATAL ")?;
        let msg = &l[i..];
        let (step, _) = msg["FATAL ".len()..].split_once(": ")?;
        let word = !step.is_empty() && step.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
        word.then(|| msg.to_string())
    })
}

pub struct Bootloader {
    pub storage: PathBuf,
    pub config: PathBuf,
    pub trying: Option<String>,
    /// Every boot: (booted revision, how it ended).
    pub boots: Vec<(String, End)>,
    /// The cgroup the devices run in (interfaces.md: each device gets its own).
    pub cgroup: Option<PathBuf>,
    /// Where each boot's console is kept (`boot-<n>.log`, n from 1).
    pub console_dir: PathBuf,
    /// The console file of every boot spawned, in order.
    pub consoles: Vec<PathBuf>,
}

impl Bootloader {
    pub fn new(storage: &Path, config: &Path) -> Bootloader {
        Bootloader {
            storage: storage.into(),
            config: config.into(),
            trying: None,
            boots: vec![],
            cgroup: None,
            console_dir: config.parent().unwrap_or(Path::new(".")).join("consoles"),
            consoles: vec![],
        }
    }

    /// What the last boot spawned wrote on its console so far.
    pub fn last_console(&self) -> String {
        self.consoles
            .last()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The revision to boot now and the command line, updating `pv_trying`.
    pub fn pick(&mut self) -> (String, String) {
        let (rev, try_) = read_env(&self.storage);
        let rev = rev.unwrap_or_else(|| "0".into());
        let booted = match &try_ {
            Some(t) if self.trying.as_deref() == Some(t.as_str()) => {
                self.trying = None;
                rev
            }
            Some(t) => {
                self.trying = Some(t.clone());
                t.clone()
            }
            None => rev,
        };
        let cmdline = match &try_ {
            Some(t) => format!("pv_rev={booted} pv_try={t}"),
            None => format!("pv_rev={booted}"),
        };
        (booted, cmdline)
    }

    /// Starts one boot: the binary as PID 1 of new PID, mount, UTS and IPC namespaces, in
    /// the harness's cgroup when it has one; its console goes to the next `boot-<n>.log`.
    pub fn spawn(&mut self, cmdline: &str, extra_env: &[(&str, &str)]) -> Child {
        std::fs::create_dir_all(&self.console_dir).expect("console dir");
        let path = self
            .console_dir
            .join(format!("boot-{}.log", self.consoles.len() + 1));
        let out = std::fs::File::create(&path).expect("console file");
        let err = out.try_clone().expect("console file");
        self.consoles.push(path);
        let mut c = Command::new("sh");
        let cg = self
            .cgroup
            .as_ref()
            .map(|p| p.join("cgroup.procs").display().to_string())
            .unwrap_or_default();
        c.arg("-c")
            .arg(r#"[ -z "$CG" ] || echo $$ > "$CG"; exec unshare --pid --fork --kill-child --mount --mount-proc --uts --ipc "$@""#)
            .arg("sh")
            .arg(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(["--cmdline", cmdline])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CG", cg)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        c.spawn()
            .expect("sh and unshare (util-linux) must be installed")
    }

    /// Boots until the device powers off, panics, reboots [`FATAL_BOOTS`] times in a row
    /// after the same FATAL line ([`End::Fatal`]), or `max_boots` boots happened; each boot
    /// is bounded by `per_boot`. Returns how the last boot ended (`boots` records each
    /// boot's own end: `Reboot` for the FATAL ones).
    pub fn run(&mut self, max_boots: usize, per_boot: Duration) -> End {
        let mut same: Vec<String> = vec![];
        for _ in 0..max_boots {
            let (booted, cmdline) = self.pick();
            let mut child = self.spawn(&cmdline, &[]);
            let end = wait_end(&mut child, per_boot);
            self.boots.push((booted, end.clone()));
            if end != End::Reboot {
                return end;
            }
            match fatal_line(&self.last_console()) {
                Some(line) if same.last().is_none_or(|l| *l == line) => same.push(line),
                Some(line) => same = vec![line],
                None => same.clear(),
            }
            if same.len() >= FATAL_BOOTS {
                return End::Fatal(same.swap_remove(0));
            }
        }
        End::Reboot
    }
}

/// Waits for a boot to end, killing it after `limit`.
pub fn wait_end(child: &mut Child, limit: Duration) -> End {
    let t = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                // unshare re-raises the signal that killed its child on itself (a shell shows
                // 128 + n: 129 / 130)
                use std::os::unix::process::ExitStatusExt;
                return match (status.code(), status.signal()) {
                    (Some(129), _) | (_, Some(libc::SIGHUP)) => End::Reboot,
                    (Some(130), _) | (_, Some(libc::SIGINT)) => End::PowerOff,
                    _ => End::Panic(format!("device ended with {status}")),
                };
            }
            Ok(None) if t.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                return End::Panic(format!("device still running after {limit:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return End::Panic(format!("wait: {e}")),
        }
    }
}

/// The device's pid on the host: the child of `unshare` (the harness's direct child).
pub fn device_pid(unshare: &Child) -> Option<i32> {
    let p = unshare.id();
    let kids = std::fs::read_to_string(format!("/proc/{p}/task/{p}/children")).ok()?;
    kids.split_whitespace().next()?.parse().ok()
}

/// Sends `sig` to the device (PID 1 of its namespace).
pub fn signal_device(unshare: &Child, sig: &str) -> bool {
    match device_pid(unshare) {
        Some(pid) => Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success()),
        None => false,
    }
}

/// Runs scripts/pvmk, the host-side revision maker.
pub fn pvmk(args: &[&std::ffi::OsStr]) {
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pvmk"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pvmk: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// pantavisor's own cgroup, under which a test device gets one of its own.
pub fn cgroup2() -> Option<PathBuf> {
    pantavisor::container::discover_cgroup_root().ok()
}

/// Removes a cgroup and its children (leaves first).
pub fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// What a test device is made of: a storage made by pvmk and its pantavisor.config, in `dir`.
pub struct DeviceFiles {
    pub storage: PathBuf,
    pub config: PathBuf,
    /// The device's own cgroup (interfaces.md: devices side by side never share lxc/<name>).
    pub cgroup: Option<PathBuf>,
}

/// A busybox root file system (`prepare` may add files before it is squashed), a factory
/// storage made by pvmk from `description`, a standalone config with every path under `dir`
/// (the run dir is left for the device to create) plus `extra_config`, and a fresh cgroup.
pub fn make_device(
    dir: &Path,
    tag: &str,
    description: &str,
    extra_config: &str,
    prepare: &dyn Fn(&Path),
) -> DeviceFiles {
    let _ = std::fs::remove_dir_all(dir);
    let rootfs = dir.join("rootfs");
    for d in [
        "bin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "data",
        "pantavisor",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static");
    for a in ["sh", "sleep", "cat", "echo", "ls", "seq", "true", "false"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
    }
    std::fs::write(rootfs.join("etc/motd"), "from the rootfs\n").unwrap();
    prepare(&rootfs);
    let desc = dir.join("desc.json");
    std::fs::write(&desc, description).unwrap();
    let storage = dir.join("storage");
    pvmk(&[desc.as_os_str(), "--factory".as_ref(), storage.as_os_str()]);
    let d = |n: &str| {
        let p = dir.join(n);
        std::fs::create_dir_all(&p).unwrap();
        p.display().to_string()
    };
    let config = dir.join("pantavisor.config");
    std::fs::write(
        &config,
        format!(
            "PV_SYSTEM_INIT_MODE=standalone\nPV_STORAGE_MNTPOINT={}\nPV_SYSTEM_RUNDIR={}\nPV_DISK_VOLDIR={}\nPV_DISK_EXPORTSDIR={}\nPV_SYSTEM_CONFDIR={}\nPV_DISK_WRITABLEDIR={}\nPV_LOG_LEVEL=4\nPV_UPDATER_COMMIT_DELAY=1\nPV_CONTROL_REMOTE=0\n{extra_config}",
            storage.display(),
            dir.join("run").display(),
            d("volumes"),
            d("exports"),
            d("configs"),
            d("writable")
        ),
    )
    .unwrap();
    let cgroup = cgroup2().map(|r| r.join(format!("{tag}-{}", std::process::id())));
    if let Some(cg) = &cgroup {
        remove_cgroup_tree(cg);
        std::fs::create_dir_all(cg).unwrap();
    }
    DeviceFiles {
        storage,
        config,
        cgroup,
    }
}

/// SIGKILLs every process whose command line names `dir` (a device a failed test left
/// running: its mounts and loop devices go with its namespaces), and waits for them to go.
pub fn kill_devices_of(dir: &Path) {
    let needle = dir.display().to_string();
    let mut killed = vec![];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if pid != std::process::id() as i32
            && String::from_utf8_lossy(&cmd).contains(&needle)
            && Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success())
        {
            killed.push(pid);
        }
    }
    let t = Instant::now();
    // gone, or a zombie whose namespaces (and mounts) are released already
    let alive = |p: &i32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .and_then(|st| {
                st.rsplit(')')
                    .next()
                    .map(|r| r.trim_start().starts_with('Z'))
            })
            .is_some_and(|zombie| !zombie)
    };
    while t.elapsed() < Duration::from_secs(5) && killed.iter().any(alive) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The end of a device rig: a device its failed test left running is killed, then (unless the
/// test is failing already) `nothing_left` checks mounts and loop devices, the device's cgroup
/// must go, and the directory is removed (kept with PV_TEST_KEEP).
pub fn tear_down(dir: &Path, cgroup: Option<&Path>, nothing_left: &dyn Fn(&Path)) {
    kill_devices_of(dir);
    if !std::thread::panicking() {
        nothing_left(dir);
    }
    if let Some(cg) = cgroup {
        remove_cgroup_tree(cg);
        if !std::thread::panicking() {
            assert!(!cg.exists(), "cgroup {} left behind", cg.display());
        }
    }
    if std::env::var_os("PV_TEST_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
