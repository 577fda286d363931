//! The real binary, as interfaces.md fixes its command line: `--version`, `check-state` exit
//! codes, and the standalone boot with `--config`/`--cmdline` over a real storage directory
//! (what this build does of a boot: boot env, resume decision, trail verification).
use pantavisor::bootloader;
use pantavisor::storage::fs::RealFs;
use pantavisor::storage::objects::sha256_hex;
use pantavisor::storage::Storage;
use pantavisor::update::{self, progress::Status};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pantavisor");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/states")
        .join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env_clear().output().unwrap()
}

struct TempDir(PathBuf);
impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("pv-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn version_is_one_line() {
    let o = run(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    let s = String::from_utf8(o.stdout).unwrap();
    assert!(
        s.starts_with("pantavisor ") && s.contains("features:") && s.lines().count() == 1,
        "{s}"
    );
}

#[test]
fn check_state_exit_codes() {
    let o = run(&["check-state", fixture("awconnect.json").to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("valid") && out.contains("awconnect"), "{out}");

    // a valid state this build cannot run (metadata on a DCP crypt disk, which needs the
    // SoC): refused, the reason named, nothing said valid
    let o = run(&["check-state", fixture("bsp_init.json").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8(o.stderr).unwrap();
    let want = "refused: device.json: storage 'pv--usrmeta': disk 'dm-secrets' (dm-crypt-dcp) needs the SoC's DCP";
    assert!(err.contains(want), "{want} not in {err}");
    // a dm-verity root volume and metadata on a versatile crypt disk: this build runs them
    let o = run(&[
        "check-state",
        fixture("initial_state.json").to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let t = TempDir::new("check");
    let bad = t.0.join("bad.json");
    std::fs::write(&bad, br##"{"#spec":"pantavisor-service-system@1","app/run.json":{"name":"app","volumes":"x"},"app/root.squashfs":"NOTASHA"}"##).unwrap();
    let o = run(&["check-state", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8(o.stderr).unwrap();
    assert!(
        err.lines().any(|l| l.contains("app/root.squashfs")),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l.contains("app/run.json") && l.contains("volumes")),
        "{err}"
    );

    assert_eq!(
        run(&["check-state", t.0.join("missing.json").to_str().unwrap()])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["check-state"]).status.code(), Some(2));
    assert_eq!(run(&["--bogus"]).status.code(), Some(2));
}

fn state(tag: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let kernel = format!("kernel {tag}").into_bytes();
    let initrd = b"initrd".to_vec();
    let raw = format!(
        "{{\"#spec\":\"pantavisor-service-system@1\",\"bsp/i\":\"{}\",\"bsp/k\":\"{}\",\"bsp/run.json\":{{\"initrd\":\"i\",\"linux\":\"k\"}}}}",
        sha256_hex(&initrd),
        sha256_hex(&kernel)
    );
    (raw.into_bytes(), vec![kernel, initrd])
}

fn put(st: &Storage, rev: &str, tag: &str) -> pantavisor::state::State {
    let (raw, objects) = state(tag);
    for o in &objects {
        st.put_object(&sha256_hex(o), o).unwrap();
    }
    update::stage(st, rev, &raw, &pantavisor::pvs::Policy::disabled()).unwrap()
}

/// A boot of the binary as a plain process with `conf`: it runs the device until it must
/// reboot or power off; with no containers it only waits, so it is powered off (SIGINT ->
/// exit 130) once `done` holds (or after 10 s).
fn boot_until(conf: &std::path::Path, cmdline: &str, done: &dyn Fn() -> bool) -> Output {
    let mut child = Command::new(BIN)
        .args(["--config", conf.to_str().unwrap(), "--cmdline", cmdline])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while !done() && child.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

#[test]
fn standalone_boot_resumes_updates_as_the_boot_env_says() {
    let t = TempDir::new("boot");
    let storage = t.0.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let conf = t.0.join("pantavisor.config");
    std::fs::write(
        &conf,
        format!("PV_SYSTEM_INIT_MODE=standalone\nPV_STORAGE_MNTPOINT={}\nPV_LOG_LEVEL=3\nPV_BOGUS_KEY=1\nPV_CONTROL_REMOTE=0\n", storage.display()),
    )
    .unwrap();
    let fs = RealFs;
    let st = Storage::new(&fs, &storage);
    st.init_layout().unwrap();
    let s0 = put(&st, "0", "zero");
    st.checkout("0", &s0).unwrap();
    let bl = bootloader::for_type("uboot", &storage).unwrap();
    bl.commit(&fs, "0").unwrap();
    let boot_until = |cmdline: &str, done: &dyn Fn() -> bool| boot_until(&conf, cmdline, done);
    let boot = |cmdline: &str| boot_until(cmdline, &|| false);

    // factory first boot; the unknown key is reported by name
    let o = boot_until("console=ttyS0 pv_rev=0", &|| st.is_done("0"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("PV_BOGUS_KEY"), "{err}");
    let p0 = st.read_progress("0").unwrap();
    assert_eq!(
        (p0.status, p0.msg.as_str()),
        (Status::Done, "Factory revision")
    );
    assert!(st.is_done("0"));
    assert_eq!(
        std::fs::read_link(storage.join("trails/current")).unwrap(),
        PathBuf::from("0")
    );
    assert!(
        storage.join("logs/0/pantavisor/pantavisor.log").exists(),
        "pantavisor.log"
    );

    // an installed update is tried
    let s1 = put(&st, "1", "one");
    update::install(
        &st,
        bl.as_ref(),
        &update::hooks::Hooks::none(),
        "1",
        &s1,
        update::Entry::Reboot,
    )
    .unwrap()
    .unwrap();
    assert_eq!(bl.read(&fs).unwrap().try_rev.as_deref(), Some("1"));
    let o = boot_until("pv_rev=1 pv_try=1", &|| {
        st.read_progress("1")
            .is_some_and(|p| p.status == Status::Testing)
    });
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // no containers: every goal is reached at once, the update waits for the commit delay
    assert_eq!(
        st.read_progress("1").unwrap().msg,
        "Awaiting to set rollback point if update is stable"
    );

    // once it failed, booting it again means rolling back: exit 129 (reboot)
    update::fail(&st, "1", "A container could not be started").unwrap();
    assert_eq!(boot("pv_rev=1 pv_try=1").status.code(), Some(129));

    // the fallback boot clears pv_try; the recorded failure stays
    let o = boot_until("pv_rev=0 pv_try=1", &|| {
        bl.read(&fs).unwrap().try_rev.is_none()
    });
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let env = bl.read(&fs).unwrap();
    assert_eq!((env.rev.as_deref(), env.try_rev), (Some("0"), None));
    assert_eq!(st.read_progress("1").unwrap().status, Status::Error);

    // a damaged object of the revision being tried: ERROR "Object validation went wrong", rollback
    let s2 = put(&st, "2", "two");
    update::install(
        &st,
        bl.as_ref(),
        &update::hooks::Hooks::none(),
        "2",
        &s2,
        update::Entry::Reboot,
    )
    .unwrap()
    .unwrap();
    std::fs::write(storage.join("trails/2/bsp/k"), b"kernel tw0").unwrap();
    assert_eq!(boot("pv_rev=2 pv_try=2").status.code(), Some(129));
    assert_eq!(
        st.read_progress("2").unwrap().msg,
        "Object validation went wrong"
    );
}

/// The `FATAL <step>: <reason>` lines of a device's console (stderr here): the message of a
/// FATAL record (`[pantavisor] <tsec> FATAL\t -- [init]: FATAL <step>: <reason>`).
fn fatal_lines(console: &str) -> Vec<&str> {
    console
        .lines()
        .filter_map(|l| l.find("FATAL ").map(|i| &l[i..]))
        .collect()
}

/// A plain process (not PID 1) that hits a fatal error of INIT prints exactly one
/// `FATAL <step>: <reason>` line and exits 1 at once (the 5 s pause is for PID 1's console);
/// it used to exit 2, which as PID 1 is a kernel panic.
#[test]
fn fatal_errors_print_one_line_and_exit_1() {
    let t = TempDir::new("fatal");
    let file = t.0.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let empty = t.0.join("empty-storage");
    std::fs::create_dir_all(&empty).unwrap();
    let standalone = |storage: &Path| {
        format!(
            "PV_SYSTEM_INIT_MODE=standalone\nPV_STORAGE_MNTPOINT={}\n",
            storage.display()
        )
    };
    let cases: &[(&str, String, &str, &str)] = &[
        // (case, pantavisor.config, kernel command line, the line expected)
        (
            "bad storage layout",
            standalone(&file),
            "pv_rev=0",
            "FATAL storage: layout: create ",
        ),
        (
            "no pv_rev anywhere",
            standalone(&empty),
            "console=ttyS0",
            "FATAL boot-env: no pv_rev on the command line nor in the boot env",
        ),
        (
            "appengine mode",
            "PV_SYSTEM_INIT_MODE=appengine\n".to_string(),
            "pv_rev=0",
            "FATAL config: PV_SYSTEM_INIT_MODE=appengine is not supported",
        ),
    ];
    for (i, (case, config, cmdline, want)) in cases.iter().enumerate() {
        let conf = t.0.join(format!("c{i}.config"));
        std::fs::write(&conf, config).unwrap();
        let started = std::time::Instant::now();
        let o = run(&["--config", conf.to_str().unwrap(), "--cmdline", cmdline]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{case}: {err}");
        let fatal = fatal_lines(&err);
        assert_eq!(fatal.len(), 1, "{case}: one FATAL line: {err}");
        assert!(fatal[0].starts_with(want), "{case}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{case}: no pause outside PID 1"
        );
    }
    // an unreadable --config is a FATAL of the config step as well
    let o = run(&["--config", t.0.join("missing").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(fatal_lines(&err).len(), 1, "{err}");
    assert!(
        fatal_lines(&err)[0].starts_with("FATAL config: --config "),
        "{err}"
    );
    // a caller's mistake on the command line of a plain process stays a usage error
    let o = run(&["--config"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(fatal_lines(&String::from_utf8_lossy(&o.stderr)).is_empty());
}

/// `PV_BOOTLOADER_TYPE=rpiab` / `uboot-ab` (upstream values without a backend here) used to
/// reach `bootloader::for_type` and end every boot with exit 2. The config refuses them when
/// it reads them, naming key and value, and the device boots with the default `uboot`.
#[test]
fn unsupported_bootloader_is_refused_by_the_config_and_the_device_boots() {
    let t = TempDir::new("rpiab");
    let storage = t.0.join("storage");
    std::fs::create_dir_all(&storage).unwrap();
    let fs = RealFs;
    let st = Storage::new(&fs, &storage);
    st.init_layout().unwrap();
    let s0 = put(&st, "0", "zero");
    st.checkout("0", &s0).unwrap();
    bootloader::for_type("uboot", &storage)
        .unwrap()
        .commit(&fs, "0")
        .unwrap();
    for kind in ["rpiab", "uboot-ab"] {
        let conf = t.0.join(format!("{kind}.config"));
        std::fs::write(
            &conf,
            format!(
                "PV_SYSTEM_INIT_MODE=standalone\nPV_STORAGE_MNTPOINT={}\nPV_BOOTLOADER_TYPE={kind}\n",
                storage.display()
            ),
        )
        .unwrap();
        // booted once the factory revision is DONE; then powered off (SIGINT -> 130)
        let o = boot_until(&conf, "pv_rev=0", &|| st.is_done("0"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(130), "{kind}: {err}");
        assert!(fatal_lines(&err).is_empty(), "{kind}: {err}");
        assert!(
            err.lines().any(|l| l.contains("PV_BOOTLOADER_TYPE")
                && l.contains(&format!("'{kind}'"))
                && l.contains("supports uboot, uboot-pvk, grub")),
            "{kind}: the refusal names key and value: {err}"
        );
        assert_eq!(
            bootloader::for_type("uboot", &storage)
                .unwrap()
                .read(&fs)
                .unwrap()
                .rev
                .as_deref(),
            Some("0")
        );
    }
}

/// What `pvcontrol` does before it reaches a device -- usage, `--help`, `-h`, a socket that
/// is not there -- is upstream's `tools/pvcontrol` (run under `busybox sh`, as on devices) to
/// the byte: stdout, stderr and exit code, for every command's usage.
#[test]
fn pvcontrol_usage_and_missing_socket_as_upstream() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/upstream/tools/pvcontrol");
    let cases: &[&[&str]] = &[
        &["-h"],
        &["--help"],
        &[],
        &["frobnicate"],
        &["ls", "x"],
        &["ls", "--help"],
        &["list", "--help"],
        &["containers"],
        &["containers", "start"],
        &["containers", "--help"],
        &["groups"],
        &["groups", "--help"],
        &["signal"],
        &["signal", "--help"],
        &["cmd"],
        &["cmd", "run"],
        &["cmd", "run-commit"],
        &["cmd", "defer-reboot"],
        &["command", "--help"],
        &["commands", "bogus"],
        &["devmeta"],
        &["devmeta", "save"],
        &["devmeta", "delete"],
        &["devmeta", "--help"],
        &["usrmeta", "upload", "k", "v"],
        &["usrmeta", "--help"],
        &["buildinfo", "x"],
        &["buildinfo", "--help"],
        &["storage"],
        &["storage", "--help"],
        &["objects"],
        &["objects", "put", "f"],
        &["objects", "get"],
        &["objects", "--help"],
        &["steps"],
        &["steps", "install"],
        &["steps", "put", "f"],
        &["steps", "get"],
        &["steps", "show-progress"],
        &["steps", "--help"],
        &["config"],
        &["config", "--help"],
        &["conf"],
        &["configuration", "--help"],
        &["graph"],
        &["graph", "--help"],
        &["daemons"],
        &["daemons", "stop"],
        &["daemons", "--help"],
        // valid commands: the socket is checked after the command line
        &["ls"],
        &["-v", "-m", "msg", "groups", "ls"],
        &["objects", "get", "abc"],
        &["steps", "install", "x.tgz"],
    ];
    let mut differ = vec![];
    for args in cases {
        let full: Vec<&str> = ["-s", "/nonexistent/pv-ctrl"]
            .iter()
            .chain(args.iter())
            .copied()
            .collect();
        let theirs = Command::new("busybox")
            .arg("sh")
            .arg(&script)
            .args(&full)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .output()
            .expect("busybox-static");
        let ours = Command::new(BIN)
            .arg("pvcontrol")
            .args(&full)
            .env_clear()
            .output()
            .unwrap();
        let view = |o: &Output| {
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        };
        if view(&theirs) != view(&ours) {
            differ.push(format!(
                "{args:?}:\n  upstream {:?}\n  ours     {:?}",
                view(&theirs),
                view(&ours)
            ));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

/// `pvcontrol --help | head -1`: a reader that went away is no panic (print! aborts on EPIPE);
/// the usage is still the answer, exit 0. The same for the binary's own `--help`/`--version`.
#[test]
fn help_survives_a_closed_stdout() {
    for args in [&["pvcontrol", "--help"][..], &["--help"], &["--version"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = Command::new(BIN)
            .args(args)
            .env_clear()
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
