//! Support for the namespace-tier container tests (and `examples/ctr-bench.rs`): a busybox
//! squashfs image, a storage with revisions built through the crate's own storage code, and
//! the driver protocol that runs each scenario as PID 1 of fresh namespaces.
#![allow(dead_code)]
use pantavisor::container::{Options, Paths};
use pantavisor::state::State;
use pantavisor::storage::fs::RealFs;
use pantavisor::storage::objects::sha256_hex;
use pantavisor::storage::Storage;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Files of the test image besides busybox.
const IMAGE_FILES: &[(&str, &str)] = &[
    ("etc/motd", "hello from squashfs\n"),
    ("etc/shadowed", "from the rootfs\n"),
    (
        "etc/inittab",
        "::sysinit:/bin/echo init-up\n::shutdown:/bin/echo init-down\n",
    ),
    ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/group", "root:x:0:\ntty:x:5:\n"),
];
const IMAGE_DIRS: &[&str] = &[
    "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "srv", "run",
    "var",
];

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A busybox-static squashfs (built once, cached in `dir` under a name that hashes its
/// inputs). Returns its path.
pub fn busybox_image(dir: &Path) -> PathBuf {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static (/bin/busybox)");
    let mut key = sha256_hex(&busybox);
    for (p, c) in IMAGE_FILES {
        key.push_str(p);
        key.push_str(c);
    }
    let img = dir.join(format!(
        "busybox-{}.squashfs",
        &sha256_hex(key.as_bytes())[..16]
    ));
    if img.exists() {
        return img;
    }
    let root = dir.join(format!("rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for d in IMAGE_DIRS {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("bin/busybox"), &busybox).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let list = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = root.join(applet);
        if let Some(p) = link.parent() {
            std::fs::create_dir_all(p).unwrap();
        }
        let _ = std::os::unix::fs::symlink("/bin/busybox", &link);
    }
    for (p, c) in IMAGE_FILES {
        std::fs::write(root.join(p), c).unwrap();
    }
    let tmp = dir.join(format!("busybox-{}.squashfs.tmp", std::process::id()));
    run_ok(Command::new("mksquashfs").arg(&root).arg(&tmp).args([
        "-noappend",
        "-comp",
        "gzip",
        "-all-root",
        "-quiet",
    ]));
    std::fs::rename(&tmp, &img).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    img
}

/// A container of a revision.
#[derive(Clone)]
pub struct Ctr {
    pub name: String,
    pub group: Option<String>,
    pub roles: Option<Vec<String>>,
    /// The LXC config text (`lxc.container.conf`).
    pub config: String,
    /// (file name, image path): root-volume first.
    pub root_volume: Option<(String, PathBuf)>,
    pub volumes: Vec<(String, PathBuf)>,
    /// (name, persistence)
    pub storage: Vec<(String, String)>,
    /// `_config/<name>/<path>` files.
    pub overlay: Vec<(String, Vec<u8>)>,
    /// run.json `exports`.
    pub exports: Vec<String>,
}

impl Ctr {
    /// A busybox container with the default pvr-like shape: root.squashfs, lxc-overlay (boot).
    pub fn busybox(name: &str, image: &Path, config: &str) -> Ctr {
        Ctr {
            name: name.to_string(),
            group: Some("app".to_string()),
            roles: None,
            config: config.to_string(),
            root_volume: Some(("root.squashfs".to_string(), image.to_path_buf())),
            volumes: Vec::new(),
            storage: vec![("lxc-overlay".to_string(), "boot".to_string())],
            overlay: Vec::new(),
            exports: Vec::new(),
        }
    }
}

/// The base LXC config of the tests: pvr's template shape around `init_cmd`.
pub fn base_config(name: &str, extra: &str) -> String {
    format!(
        "lxc.tty.max = 8\n\
         lxc.pty.max = 1024\n\
         lxc.cgroup.devices.allow = a\n\
         lxc.rootfs.path = overlayfs:/volumes/{name}/root.squashfs:/volumes/{name}/lxc-overlay/upper\n\
         lxc.mount.auto = proc sys:rw cgroup\n\
         {extra}"
    )
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// Writes a revision of `containers` into the storage at `root` the way an install does:
/// objects, the state JSON, checkout. Returns the parsed state.
pub fn install_revision(root: &Path, rev: &str, containers: &[Ctr]) -> State {
    let st = Storage::new(&RealFs, root);
    st.init_layout().unwrap();
    let mut keys: Vec<(String, String)> = Vec::new();
    let mut object = |key: String, data: &[u8]| {
        let sha = sha256_hex(data);
        st.put_object(&sha, data).unwrap();
        keys.push((key, json_str(&sha)));
    };
    for c in containers {
        object(
            format!("{}/lxc.container.conf", c.name),
            c.config.as_bytes(),
        );
        if let Some((f, img)) = &c.root_volume {
            object(format!("{}/{f}", c.name), &std::fs::read(img).unwrap());
        }
        for (f, img) in &c.volumes {
            object(format!("{}/{f}", c.name), &std::fs::read(img).unwrap());
        }
        for (p, data) in &c.overlay {
            object(format!("_config/{}/{p}", c.name), data);
        }
    }
    for c in containers {
        let mut run = format!(
            "{{\"#spec\":\"service-manifest-run@1\",\"config\":\"lxc.container.conf\",\"name\":{},\"type\":\"lxc\"",
            json_str(&c.name)
        );
        if let Some(g) = &c.group {
            let _ = write!(run, ",\"group\":{}", json_str(g));
        }
        if let Some((f, _)) = &c.root_volume {
            let _ = write!(run, ",\"root-volume\":{}", json_str(f));
        }
        let vols: Vec<String> = c.volumes.iter().map(|(f, _)| json_str(f)).collect();
        let _ = write!(run, ",\"volumes\":[{}]", vols.join(","));
        let storage: Vec<String> = c
            .storage
            .iter()
            .map(|(n, p)| format!("{}:{{\"persistence\":{}}}", json_str(n), json_str(p)))
            .collect();
        let _ = write!(run, ",\"storage\":{{{}}}", storage.join(","));
        if let Some(r) = &c.roles {
            let r: Vec<String> = r.iter().map(|x| json_str(x)).collect();
            let _ = write!(run, ",\"roles\":[{}]", r.join(","));
        }
        if !c.exports.is_empty() {
            let e: Vec<String> = c.exports.iter().map(|x| json_str(x)).collect();
            let _ = write!(run, ",\"exports\":[{}]", e.join(","));
        }
        run.push('}');
        keys.push((format!("{}/run.json", c.name), run));
    }
    keys.sort();
    let mut doc = String::from("{\"#spec\":\"pantavisor-service-system@1\"");
    for (k, v) in &keys {
        let _ = write!(doc, ",{}:{v}", json_str(k));
    }
    doc.push('}');
    let state = State::parse(doc.as_bytes()).unwrap_or_else(|e| panic!("state: {e}\n{doc}"));
    st.install_state(rev, doc.as_bytes()).unwrap();
    st.checkout(rev, &state).unwrap();
    state
}

/// The engine's folders under a test directory.
pub fn paths(tmp: &Path) -> Paths {
    let run = tmp.join("run");
    Paths {
        storage: tmp.join("storage"),
        voldir: tmp.join("volumes"),
        exportsdir: tmp.join("exports"),
        confdir: tmp.join("configs"),
        logdir: tmp.join("storage/logs"),
        rootfs_mount: tmp.join("run.lxc/rootfs"),
        media: tmp.join("media"),
        rundir: run,
    }
}

pub fn options(grace: Duration) -> Options {
    Options {
        stop_grace: grace,
        ..Options::default()
    }
}

// ---- leak checks ----

/// Mount points under `dir` in this process's mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let d = dir.to_string_lossy().to_string();
    mi.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|m| m.starts_with(&d))
        .map(str::to_string)
        .collect()
}

/// Loop devices whose backing file is under `dir`.
pub fn loops_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().to_string();
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/block") {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if !n.starts_with("loop") {
                continue;
            }
            if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
                if b.trim().starts_with(&d) {
                    out.push(format!("{n}: {}", b.trim()));
                }
            }
        }
    }
    out
}

/// Waits (up to 2 s: detaching is asynchronous after the last close) until no mount and no
/// loop device under `dir` is left; panics with what leaked.
pub fn assert_nothing_left(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (m, l) = (mounts_under(dir), loops_under(dir));
        if m.is_empty() && l.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "leaked under {}: mounts {m:?}, loop devices {l:?}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- the driver protocol ----

pub const DRIVER_ENV: &str = "PV_TEST_DRIVER";

/// What a driver run produced.
pub struct DriverRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl DriverRun {
    pub fn assert_ok(&self) {
        assert!(
            // the filter must have matched: the scenario said it finished
            self.ok && self.stdout.contains("DRIVER-OK"),
            "driver failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
    }
}

fn cgroup2_root() -> Option<PathBuf> {
    pantavisor::container::discover_cgroup_root().ok()
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    for _ in 0..200 {
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            _ => return,
        }
    }
}

/// Runs scenario `name` as PID 1 of new PID, mount, UTS and IPC namespaces (this test binary
/// re-executed under util-linux unshare, which makes `/` rprivate), in its own temp dir and its
/// own cgroup. Afterwards checks that no mount and no loop device under the temp dir is left,
/// and removes the temp dir and the cgroups, also when the driver failed.
pub fn run_driver(name: &str, image: &Path, timeout: Duration) -> DriverRun {
    run_driver_with(name, image, timeout, &[])
}

/// As [`run_driver`], with more namespaces for unshare (`--net` for scenarios that make
/// bridges and veth pairs: never on the machine's own interfaces).
pub fn run_driver_with(
    name: &str,
    image: &Path,
    timeout: Duration,
    extra_unshare: &[&str],
) -> DriverRun {
    let tmp = std::env::temp_dir().join(format!("pv-ctr-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    let cg = cgroup2_root().map(|r| r.join(format!("pv-ctr-{name}-{}", std::process::id())));
    if let Some(cg) = &cg {
        if let Err(e) = std::fs::create_dir(cg) {
            panic!("cgroup {}: {e}", cg.display());
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--kill-child",
        "--mount",
        "--mount-proc",
        "--uts",
        "--ipc",
    ])
    .args(extra_unshare)
    .arg(&exe)
    .args(["--exact", "driver", "--nocapture", "--test-threads=1"])
    .env(DRIVER_ENV, name)
    .env("PV_TEST_TMP", &tmp)
    .env("PV_TEST_IMAGE", image)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if let Some(cg) = &cg {
        cmd.env("PV_TEST_CGROUP", cg);
    }
    let start = Instant::now();
    let mut child = cmd.spawn().expect("unshare");
    let out_pipe = child.stdout.take();
    let err_pipe = child.stderr.take();
    let reader = |p: Option<std::process::ChildStdout>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut p) = p {
                use std::io::Read;
                let _ = p.read_to_string(&mut s);
            }
            s
        })
    };
    let out_t = reader(out_pipe);
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = err_pipe {
            use std::io::Read;
            let _ = p.read_to_string(&mut s);
        }
        s
    });
    let mut timed_out = false;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if start.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            break child.wait().ok();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let stdout = out_t.join().unwrap_or_default();
    let mut stderr = err_t.join().unwrap_or_default();
    if timed_out {
        stderr.push_str(&format!("\n*** driver timed out after {timeout:?}\n"));
    }
    // leak checks on the host side (the driver checked its own namespace already)
    let leaked_mounts = mounts_under(&tmp);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut leaked_loops = loops_under(&tmp);
    while !leaked_loops.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        leaked_loops = loops_under(&tmp);
    }
    if let Some(cg) = &cg {
        remove_cgroup_tree(cg);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    assert!(
        leaked_mounts.is_empty() && leaked_loops.is_empty(),
        "leaked on the host: mounts {leaked_mounts:?}, loops {leaked_loops:?}\n--- stderr\n{stderr}"
    );
    if let Some(cg) = &cg {
        assert!(!cg.exists(), "cgroup {} left behind", cg.display());
    }
    DriverRun {
        ok: !timed_out && status.is_some_and(|s| s.success()),
        stdout,
        stderr,
        elapsed,
    }
}

/// The driver's environment: (temp dir, image); joins the test's cgroup.
pub fn driver_env() -> (PathBuf, PathBuf) {
    let tmp = PathBuf::from(std::env::var_os("PV_TEST_TMP").expect("PV_TEST_TMP"));
    let img = PathBuf::from(std::env::var_os("PV_TEST_IMAGE").expect("PV_TEST_IMAGE"));
    if let Some(cg) = std::env::var_os("PV_TEST_CGROUP") {
        std::fs::write(Path::new(&cg).join("cgroup.procs"), "0").expect("join the test cgroup");
    }
    assert_eq!(
        std::process::id(),
        1,
        "a driver runs as PID 1 of its namespace"
    );
    (tmp, img)
}
