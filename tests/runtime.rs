//! Namespace tier (root): the real binary as PID 1 of a new PID namespace, booted by the
//! harness that plays U-Boot, with busybox containers made by scripts/pvmk. Timers are
//! shortened by configuration. Every test checks that no mount, loop device or cgroup is left.
mod harness;
mod support;

use harness::{pvmk, Bootloader, End};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Timing assertions need the two cores: one device at a time.
static SERIAL: Mutex<()> = Mutex::new(());

struct Rig {
    dir: PathBuf,
    storage: PathBuf,
    cgroup: Option<PathBuf>,
    bl: Bootloader,
}

/// The init of a test container: traps SIGTERM so stops are quick, prints the boot-relative
/// time it started (for interval measurements), then runs `body`.
fn sh(body: &str) -> String {
    format!(
        r#"["/bin/sh","-c","trap 'exit 0' TERM; read up idle < /proc/uptime; echo start $up; {}"]"#,
        body.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

fn forever() -> &'static str {
    "while :; do sleep 0.2; done"
}

impl Rig {
    fn new(name: &str, description: &str, extra_config: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("pv-rt-{name}-{}", std::process::id()));
        let harness::DeviceFiles {
            storage,
            config,
            cgroup,
        } = harness::make_device(
            &dir,
            &format!("pv-rt-{name}"),
            description,
            extra_config,
            &|_| {},
        );
        let mut bl = Bootloader::new(&storage, &config);
        bl.cgroup = cgroup.clone();
        Rig {
            dir,
            storage,
            cgroup,
            bl,
        }
    }

    fn log(&self, rev: &str) -> String {
        std::fs::read_to_string(
            self.storage
                .join(format!("logs/{rev}/pantavisor/pantavisor.log")),
        )
        .unwrap_or_default()
    }

    fn console(&self, rev: &str, c: &str) -> String {
        std::fs::read_to_string(self.storage.join(format!("logs/{rev}/{c}/lxc/console.log")))
            .unwrap_or_default()
    }

    /// Start times (boot-relative seconds) a container printed, one per start.
    fn starts(&self, rev: &str, c: &str) -> Vec<f64> {
        self.console(rev, c)
            .lines()
            .filter_map(|l| l.strip_prefix("start "))
            .filter_map(|t| t.trim().parse().ok())
            .collect()
    }

    /// Boots once, waits until `until` holds (or the device ends, or `limit`), then powers it
    /// off with SIGINT unless it already ended. Returns how it ended.
    fn boot_until(&mut self, limit: Duration, until: &dyn Fn(&Rig) -> bool) -> End {
        let (booted, cmdline) = self.bl.pick();
        let mut child = self.bl.spawn(&cmdline, &[]);
        let t = Instant::now();
        while t.elapsed() < limit && child.try_wait().unwrap().is_none() && !until(self) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            harness::signal_device(&child, "INT");
        }
        let end = harness::wait_end(&mut child, Duration::from_secs(20));
        self.bl.boots.push((booted, end.clone()));
        end
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

fn ctr(cmd: &str, extra: &str) -> String {
    format!(r#"{{"rootfs":"rootfs","cmd":{cmd}{extra}}}"#)
}

fn line_of(log: &str, needle: &str) -> usize {
    log.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no '{needle}' in the log:\n{log}"))
}

#[test]
fn default_groups_put_the_first_alphabetical_in_root_and_start_groups_in_order() {
    let _g = SERIAL.lock();
    let f = sh(forever());
    let desc = format!(
        r#"{{"containers":{{"zeta":{},"alpha":{},"mid":{}}}}}"#,
        ctr(&f, ""),
        ctr(&f, ""),
        ctr(&f, "")
    );
    let mut r = Rig::new("defgroups", &desc, "");
    let end = r.boot_until(Duration::from_secs(20), &|r| {
        r.log("0").matches(": STARTED (pid").count() == 3
    });
    assert_eq!(end, End::PowerOff);
    let log = r.log("0");
    // alpha is in root (group 2 of data/root/platform/app): it starts before the platform ones
    let a = line_of(&log, "container alpha: STARTED");
    assert!(
        a < line_of(&log, "container mid: STARTED") && a < line_of(&log, "container zeta: STARTED"),
        "{log}"
    );
    // shutdown in reverse group order: the platform containers stop before root's alpha
    let stop_alpha = line_of(&log, "container alpha: STOPPING");
    assert!(
        line_of(&log, "container mid: STOPPING") < stop_alpha,
        "{log}"
    );
    assert!(
        line_of(&log, "container zeta: STOPPING") < stop_alpha,
        "{log}"
    );
}

#[test]
fn declared_groups_start_in_order_and_a_goal_timeout_still_unblocks_later_groups() {
    let _g = SERIAL.lock();
    let f = sh(forever());
    // "first" waits for a READY signal that never comes: after its 2 s timeout "second" starts
    let desc = format!(
        r#"{{"groups":[{{"name":"first","status_goal":"READY","restart_policy":"system","timeout":2}},{{"name":"second","timeout":30}}],
            "containers":{{"aaa":{},"bbb":{}}}}}"#,
        ctr(&f, r#","group":"second""#),
        ctr(&f, r#","group":"first""#)
    );
    let mut r = Rig::new("groups", &desc, "");
    let end = r.boot_until(Duration::from_secs(20), &|r| {
        !r.starts("0", "aaa").is_empty()
    });
    assert_eq!(end, End::PowerOff);
    let (b, a) = (r.starts("0", "bbb"), r.starts("0", "aaa"));
    assert_eq!((b.len(), a.len()), (1, 1), "bbb {b:?} aaa {a:?}");
    let waited = a[0] - b[0];
    assert!(
        (1.8..4.0).contains(&waited),
        "second group started {waited:.2} s after the first (timeout 2 s)"
    );
    assert!(r
        .log("0")
        .contains("platform 'bbb' status goal timed out after waiting for more than 2 secs"));
}

#[test]
fn on_failure_retries_grow_by_the_backoff_factor_then_never_leaves_it_stopped() {
    let _g = SERIAL.lock();
    let crash = sh("exit 3");
    let f = sh(forever());
    let desc = format!(
        r#"{{"containers":{{"crasher":{},"steady":{}}}}}"#,
        ctr(
            &crash,
            r#","group":"app","auto_recovery":{"policy":"on-failure","max_retries":3,"retry_delay":1,"backoff_factor":2.0,"backoff_policy":"never"}"#
        ),
        ctr(&f, r#","group":"app""#)
    );
    let mut r = Rig::new("backoff", &desc, "");
    let end = r.boot_until(Duration::from_secs(25), &|r| {
        r.log("0").contains("left stopped")
    });
    assert_eq!(
        end,
        End::PowerOff,
        "the device keeps running when recovery gives up"
    );
    let s = r.starts("0", "crasher");
    assert_eq!(s.len(), 4, "first start + 3 retries: {s:?}");
    let gaps: Vec<f64> = s.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([1.0, 2.0, 4.0]) {
        assert!(
            (want - 0.15..want + 0.8).contains(gap),
            "retry delays {gaps:?}, want 1, 2, 4 s"
        );
    }
    println!("measured retry delays (s): {gaps:.2?} for retry_delay 1, backoff_factor 2");
    // the other container ran throughout: started once, never restarted
    assert_eq!(r.starts("0", "steady").len(), 1);
}

#[test]
fn retries_exhausted_with_reboot_policy_reboots() {
    let _g = SERIAL.lock();
    let crash = sh("exit 1");
    let desc = format!(
        r#"{{"containers":{{"c":{}}}}}"#,
        ctr(
            &crash,
            r#","group":"app","auto_recovery":{"policy":"always","max_retries":1,"retry_delay":0,"backoff_policy":"reboot"}"#
        )
    );
    let mut r = Rig::new("reboot", &desc, "");
    let end = r.boot_until(Duration::from_secs(15), &|_| false);
    assert_eq!(end, End::Reboot);
    assert_eq!(r.starts("0", "c").len(), 2, "one start and one retry");
}

#[test]
fn duration_backoff_policy_tries_again_after_the_wait() {
    let _g = SERIAL.lock();
    let crash = sh("exit 1");
    let desc = format!(
        r#"{{"containers":{{"c":{}}}}}"#,
        ctr(
            &crash,
            r#","group":"app","auto_recovery":{"policy":"on-failure","max_retries":1,"retry_delay":0,"backoff_policy":"2s"}"#
        )
    );
    let mut r = Rig::new("duration", &desc, "");
    let end = r.boot_until(Duration::from_secs(15), &|r| r.starts("0", "c").len() >= 4);
    assert_eq!(end, End::PowerOff);
    let s = r.starts("0", "c");
    // start, immediate retry, 2 s wait, start (counter reset), immediate retry
    let gaps: Vec<f64> = s.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] < 0.8 && (1.85..3.0).contains(&gaps[1]) && gaps[2] < 0.8,
        "gaps {gaps:?}"
    );
}

#[test]
fn a_crash_without_recovery_policy_reboots_the_device() {
    let _g = SERIAL.lock();
    let crash = sh("sleep 0.5; exit 1");
    let f = sh(forever());
    let desc = format!(
        r#"{{"containers":{{"a":{},"b":{}}}}}"#,
        ctr(&f, ""),
        ctr(&crash, "")
    );
    let mut r = Rig::new("crash", &desc, "");
    let end = r.boot_until(Duration::from_secs(15), &|_| false);
    assert_eq!(end, End::Reboot);
    assert!(
        r.log("0").contains("failed without recovery"),
        "{}",
        r.log("0")
    );
}

#[test]
fn a_thousand_orphans_leave_no_zombie() {
    let _g = SERIAL.lock();
    let f = sh(forever());
    let desc = format!(r#"{{"containers":{{"a":{}}}}}"#, ctr(&f, ""));
    let mut r = Rig::new("orphans", &desc, "");
    let (_, cmdline) = r.bl.pick();
    let mut child = r.bl.spawn(&cmdline, &[]);
    let t = Instant::now();
    while r.starts("0", "a").is_empty() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let dev = harness::device_pid(&child).expect("device pid");
    // 1000 processes whose parent exits at once: all re-parented to the device (PID 1 there)
    let out = Command::new("nsenter")
        .args([
            "-t",
            &dev.to_string(),
            "-p",
            "-m",
            "--",
            "/bin/sh",
            "-c",
            "for i in $(seq 1000); do (sleep 0.3 &); done",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // wait for the event, not for a time: every orphan has exited and been reaped, i.e. the
    // device has no `sleep` child left and no zombie child at all. A device that does not
    // reap keeps its zombies until the limit, and the test fails below.
    let dev_s = dev.to_string();
    let children = || -> Vec<(String, String)> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter_map(|st| {
                // pid (comm) state ppid ...
                let (head, after) = st.rsplit_once(')')?;
                let comm = head.split_once(" (")?.1.to_string();
                let f: Vec<&str> = after.split_whitespace().collect();
                if f.get(1) != Some(&dev_s.as_str()) {
                    return None;
                }
                Some((comm, f.first()?.to_string()))
            })
            .collect()
    };
    let waited = Instant::now();
    let left = loop {
        let left: Vec<(String, String)> = children()
            .into_iter()
            .filter(|(comm, state)| comm == "sleep" || state == "Z")
            .collect();
        if left.is_empty() || waited.elapsed() > Duration::from_secs(30) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let zombies = left.iter().filter(|(_, state)| state == "Z").count();
    eprintln!(
        "orphans gone {:?} after the spawner returned; left: {} ({zombies} zombies)",
        waited.elapsed(),
        left.len()
    );
    harness::signal_device(&child, "INT");
    assert_eq!(
        harness::wait_end(&mut child, Duration::from_secs(20)),
        End::PowerOff
    );
    assert_eq!(zombies, 0, "zombies left under the device after 30 s");
    assert!(
        left.is_empty(),
        "orphans still running after 30 s: {left:?}"
    );
    let log = r.log("0");
    let reaped: u64 = log
        .lines()
        .filter_map(|l| l.split("all containers stopped (").nth(1))
        .filter_map(|x| x.split_whitespace().next()?.parse().ok())
        .next()
        .unwrap_or(0);
    assert!(reaped >= 1000, "orphans reaped: {reaped}\n{log}");
}

/// Writes revision `rev` (made by pvmk from `desc`) into the storage and sets pv_try, as an
/// installer would; `break_it` damages it first.
fn stage_update(r: &Rig, rev: &str, desc: &str, break_it: &dyn Fn(&Path, &mut Vec<u8>)) {
    let d = r.dir.join(format!("desc-{rev}.json"));
    std::fs::write(&d, desc).unwrap();
    let state_file = r.dir.join(format!("state-{rev}.json"));
    let objects = r.storage.join("objects");
    pvmk(&[
        d.as_os_str(),
        "--objects".as_ref(),
        objects.as_os_str(),
        "--state".as_ref(),
        state_file.as_os_str(),
    ]);
    let mut raw = std::fs::read(&state_file).unwrap();
    break_it(&r.storage.join("objects"), &mut raw);
    let t = r.storage.join("trails").join(rev).join(".pvr");
    std::fs::create_dir_all(&t).unwrap();
    std::fs::write(t.join("json"), &raw).unwrap();
    std::fs::write(
        r.storage.join("boot/uboot.txt"),
        format!("pv_rev=0\0pv_try={rev}\0\0"),
    )
    .unwrap();
}

#[test]
fn a_broken_revision_does_not_crash_pid1_and_the_boot_falls_back() {
    let _g = SERIAL.lock();
    let f = sh(forever());
    let desc = format!(r#"{{"containers":{{"a":{}}}}}"#, ctr(&f, ""));
    let mut r = Rig::new("broken", &desc, "");
    assert_eq!(
        r.boot_until(Duration::from_secs(10), &|r| !r.starts("0", "a").is_empty()),
        End::PowerOff
    );

    // revision 1: one run.json with a wrong type
    stage_update(&r, "1", &desc, &|_, raw| {
        let s = String::from_utf8(raw.clone()).unwrap().replacen(
            "\"volumes\":[]",
            "\"volumes\":\"x\"",
            1,
        );
        *raw = s.into_bytes();
    });
    // revision 2: an object missing from the store (its own LXC config; the root volume is
    // shared with revision 0)
    let desc2 = format!(
        r#"{{"containers":{{"a":{}}}}}"#,
        ctr(&sh("echo two; while :; do sleep 0.2; done"), "")
    );
    stage_update(&r, "2", &desc2, &|objects, raw| {
        let v = String::from_utf8_lossy(raw).to_string();
        let key = "a/lxc.container.conf\":\"";
        let i = v.find(key).unwrap() + key.len();
        std::fs::remove_file(objects.join(&v[i..i + 64])).unwrap();
    });
    for (rev, why) in [
        ("1", "State JSON has bad format"),
        ("2", "Object validation went wrong"),
    ] {
        std::fs::write(
            r.storage.join("boot/uboot.txt"),
            format!("pv_rev=0\0pv_try={rev}\0\0"),
        )
        .unwrap();
        // try boot: refused, reboot; the fallback boot runs 0 and clears pv_try
        assert_eq!(
            r.boot_until(Duration::from_secs(10), &|_| false),
            End::Reboot,
            "revision {rev}"
        );
        let end = r.boot_until(Duration::from_secs(10), &|r| {
            harness::read_env(&r.storage).1.is_none()
        });
        assert_eq!(end, End::PowerOff);
        assert_eq!(harness::read_env(&r.storage), (Some("0".into()), None));
        let p =
            std::fs::read_to_string(r.storage.join(format!("trails/{rev}/.pv/progress"))).unwrap();
        assert!(p.contains("\"status\":\"ERROR\"") && p.contains(why), "{p}");
    }
    let booted: Vec<&str> = r.bl.boots.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(booted, ["0", "1", "0", "2", "0"]);
}

#[test]
fn bsp_modules_are_mounted_and_drivers_loaded_required_ones_gate_the_start() {
    let _g = SERIAL.lock();
    // a modules image for the running kernel with one module and its modules.dep
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap()
        .trim()
        .to_string();
    let tmp = std::env::temp_dir().join(format!("pv-rt-mods-{}", std::process::id()));
    let mods = tmp.join("modules").join(&release);
    std::fs::create_dir_all(mods.join("kernel")).unwrap();
    std::fs::write(mods.join("kernel/pvdummy.ko"), b"not an ELF").unwrap();
    std::fs::write(mods.join("modules.dep"), "kernel/pvdummy.ko:\n").unwrap();
    std::fs::create_dir_all(tmp.join("firmware")).unwrap();
    std::fs::write(tmp.join("firmware/blob.bin"), b"fw").unwrap();
    let f = sh(forever());
    let desc = format!(
        r#"{{"bsp":{{"modules":"{m}","firmware":"{fw}","drivers":{{"dummy":["pvdummy opt=1"]}}}},
            "containers":{{"opt":{},"req":{}}}}}"#,
        ctr(&f, r#","group":"app","drivers":{"optional":["dummy"]}"#),
        ctr(
            &f,
            r#","group":"app","drivers":{"required":["dummy"]},"auto_recovery":{"policy":"on-failure","max_retries":1,"backoff_policy":"never"}"#
        ),
        m = tmp.join("modules").display(),
        fw = tmp.join("firmware").display()
    );
    let mut r = Rig::new("drivers", &desc, "");
    let voldir = r.dir.join("volumes/bsp");
    let end = r.boot_until(Duration::from_secs(20), &|r| {
        r.log("0").contains("left stopped")
    });
    let _ = std::fs::remove_dir_all(&tmp);
    assert_eq!(end, End::PowerOff);
    let log = r.log("0");
    // this host kernel cannot load modules (finit_module fails): the optional driver only
    // warns and its container runs; the required one keeps its container from starting
    // the images were mounted (in the device's mount namespace) where the loader looked
    assert!(log.contains("bsp: 2 volumes mounted"), "{log}");
    let ko = voldir.join(format!("modules/{release}/kernel/pvdummy.ko"));
    assert!(
        log.contains(&format!(
            "container opt: optional driver dummy: module pvdummy ({})",
            ko.display()
        )),
        "{log}"
    );
    assert!(
        log.contains("container req: required driver dummy: module pvdummy"),
        "{log}"
    );
    assert_eq!(r.starts("0", "opt").len(), 1);
    assert!(r.starts("0", "req").is_empty());
}

#[test]
fn a_chatty_console_is_rotated_and_the_log_budget_holds() {
    let _g = SERIAL.lock();
    let spam = sh("while :; do echo 'a line of console output that a chatty container repeats'; sleep 0.005; done");
    let desc = format!(r#"{{"containers":{{"spam":{}}}}}"#, ctr(&spam, ""));
    // budget 64 KiB: archives at ~6.5 KiB, old archives deleted above 0.9 * 64 KiB
    let mut r = Rig::new("logbudget", &desc, "PV_LOG_DIR_MAXSIZE=65536\n");
    let logs = r.storage.join("logs");
    let du = |d: &Path| -> u64 {
        fn walk(d: &Path) -> u64 {
            std::fs::read_dir(d).map_or(0, |rd| {
                rd.flatten()
                    .map(|e| match e.file_type() {
                        Ok(t) if t.is_dir() => walk(&e.path()),
                        Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
                        _ => 0,
                    })
                    .sum()
            })
        }
        walk(d)
    };
    let end = r.boot_until(Duration::from_secs(12), &|_| false);
    assert_eq!(end, End::PowerOff);
    let peak = du(&logs);
    let lxc = logs.join("0/spam/lxc");
    let archives = std::fs::read_dir(&lxc)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".gz"))
        .count();
    assert!(
        archives >= 1,
        "console.log was never archived: {:?}",
        std::fs::read_dir(&lxc)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect::<Vec<_>>()
    );
    // ~12 s at ~10 KiB/s would be ~120 KiB unbounded; the walk keeps it near the budget
    assert!(
        peak < 2 * 65536,
        "log directory grew to {peak} bytes with a 65536-byte budget"
    );
    println!(
        "chatty console: {archives} archives, log directory {peak} bytes at the end (budget 65536)"
    );
}
