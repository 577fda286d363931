//! Upstream's managed daemons on a real device (root): the binary as PID 1 of a new PID
//! namespace, and a test script at hwrngd's testpath `/usr/bin/rngd`, put there only inside
//! the device's own mount namespace (a read-only overlay of /usr/bin), as a root file system
//! with rng-tools would have it. The daemon is spawned, killed (respawned 5 s later, not
//! before), stopped and started through `PUT /daemons/hwrngd`, and SIGTERMed at power off.
mod harness;
mod rig;
mod support;

use harness::End;
use rig::{finish, sh, Rig, FOREVER, SERIAL};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Records its start (pid, arguments, process group and session, signal mask, environment)
/// and its SIGTERM in `events`; prints a line on stdout and one on stderr; waits on a fifo,
/// so it has no child of its own.
fn rngd_script(events: &Path, fifo: &Path) -> String {
    format!(
        r#"#!/bin/sh
exec 3<>{fifo}
set -- $$ "$*" $(cut -d' ' -f5,6 /proc/$$/stat) $(grep SigBlk /proc/$$/status | cut -f2)
echo "start $1 args=$2 pgrp=$3 sid=$4 sigblk=$5 env=$(env | grep -v '^PWD=' | tr '\n' ' ')" >> {events}
trap 'echo "term $1" >> {events}; exit 0' TERM
echo "rngd says hello"
echo "rngd complains" >&2
while :; do read -r x <&3; done
"#,
        fifo = fifo.display(),
        events = events.display()
    )
}

/// Boots the rig's device as the harness does, with `lower` laid over /usr/bin in the
/// device's mount namespace (gone with it).
fn boot_with_usr_bin(r: &mut Rig, lower: &Path) -> Child {
    let (_, cmdline) = r.bl.pick();
    let console = std::fs::File::create(r.dir.join("console.log")).unwrap();
    let cg = r
        .cgroup
        .as_ref()
        .map(|p| p.join("cgroup.procs").display().to_string())
        .unwrap_or_default();
    Command::new("sh")
        .arg("-c")
        .arg(r#"[ -z "$CG" ] || echo $$ > "$CG"; exec unshare --pid --fork --kill-child --mount --mount-proc --uts --ipc sh -c 'mount -t overlay overlay -o "lowerdir=$LOWER:/usr/bin" /usr/bin && exec "$@"' sh "$@""#)
        .arg("sh")
        .arg(harness::BIN)
        .arg("--config")
        .arg(&r.bl.config)
        .args(["--cmdline", &cmdline])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CG", cg)
        .env("LOWER", lower)
        .stdin(Stdio::null())
        .stdout(console.try_clone().unwrap())
        .stderr(console)
        .spawn()
        .unwrap()
}

/// hwrngd's (pid, respawn) in `pvcontrol daemons ls`.
fn hwrngd(r: &Rig, dev: &Child) -> Option<(i64, bool)> {
    let (code, out) = r.pvcontrol(dev, &["daemons", "ls"]);
    if code != 0 {
        return None;
    }
    let v = pantavisor::json::parse_str(&out, Default::default()).ok()?;
    let d = v
        .as_array()?
        .iter()
        .find(|d| d.get("name").and_then(|n| n.as_str()) == Some("hwrngd"))?;
    let pid = d.get("pid")?.raw(&out).parse().ok()?;
    Some((pid, d.get("respawn")?.as_bool()?))
}

fn events(r: &Rig) -> String {
    std::fs::read_to_string(r.dir.join("events")).unwrap_or_default()
}

/// Waits until hwrngd runs with a pid other than `old`; its pid.
fn wait_up(r: &Rig, dev: &mut Child, old: i64, limit: Duration) -> Option<i64> {
    let seen = std::cell::Cell::new(0);
    r.wait(dev, limit, &|r, d| match hwrngd(r, d) {
        Some((p, true)) if p > 0 && p != old => {
            seen.set(p);
            true
        }
        _ => false,
    })
    .then(|| seen.get())
}

#[test]
fn hwrngd_spawned_respawned_stopped_started_and_stopped_at_power_off() {
    let _g = SERIAL.lock();
    let desc = format!(
        r#"{{"containers":{{"alpha":{{"rootfs":"rootfs","cmd":{}}}}}}}"#,
        sh(FOREVER)
    );
    let mut r = Rig::new("daemons", &desc);
    let lower = r.dir.join("usr-bin");
    std::fs::create_dir_all(&lower).unwrap();
    let fifo = r.dir.join("fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let rngd = lower.join("rngd");
    std::fs::write(&rngd, rngd_script(&r.dir.join("events"), &fifo)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rngd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut dev = boot_with_usr_bin(&mut r, &lower);
    let console = || std::fs::read_to_string(r.dir.join("console.log")).unwrap_or_default();

    // spawned at start, with upstream's arguments, in its own session, signals unblocked
    // and a clean environment; /daemons lists its real pid
    let Some(p1) = wait_up(&r, &mut dev, 0, Duration::from_secs(20)) else {
        let end = finish(&mut dev);
        panic!(
            "hwrngd not running ({end:?}): {:?}\nconsole:\n{}",
            hwrngd(&r, &dev),
            console()
        );
    };
    let start = format!("start {p1} args=-f pgrp={p1} sid={p1} sigblk=0000000000000000 env=PATH=/bin:/sbin:/usr/bin:/usr/sbin:/lib/pv:/lib/pv/volmount/crypt \n");
    assert!(
        r.wait(&mut dev, Duration::from_secs(5), &|r, _| events(r) == start),
        "{:?} != {start:?}",
        events(&r)
    );
    // its stdout and stderr, lines of pantavisor.log under upstream's sources
    let logged = r.wait(&mut dev, Duration::from_secs(10), &|r, _| {
        let log = r.log();
        log.contains("[hwrngd-out]: rngd says hello")
            && log.contains("[hwrngd-err]: rngd complains")
    });
    assert!(logged, "{}", r.log());

    // killed: reaped as a daemon (pid 0 meanwhile) and respawned 5 s later, not before
    let killed = Instant::now();
    let pid = harness::device_pid(&dev).unwrap().to_string();
    assert!(Command::new("nsenter")
        .args(["-t", &pid, "-p", "kill", "-KILL", "--", &format!("-{p1}")])
        .status()
        .unwrap()
        .success());
    assert!(
        r.wait(&mut dev, Duration::from_secs(4), &|r, d| hwrngd(r, d)
            == Some((0, true))),
        "{:?}",
        hwrngd(&r, &dev)
    );
    let p2 = wait_up(&r, &mut dev, p1, Duration::from_secs(15)).expect("respawned");
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_millis(4990) && after < Duration::from_secs(12),
        "respawned {after:?} after the kill"
    );
    assert!(r
        .log()
        .contains(&format!("daemon hwrngd (pid {p1}) exited: SIGKILL")));

    // stopped through pv-ctrl: SIGTERM, pid -1, respawn false, and not spawned again -- once
    // the respawned script has set its trap (it says hello right after)
    let trapped = r.wait(&mut dev, Duration::from_secs(5), &|r, _| {
        r.log().matches("[hwrngd-out]: rngd says hello").count() >= 2
    });
    assert!(trapped, "the respawned hwrngd never said hello");
    let (code, out) = r.pvcontrol(&dev, &["daemons", "stop", "hwrngd"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        r.wait(&mut dev, Duration::from_secs(5), &|r, d| hwrngd(r, d)
            == Some((-1, false))),
        "{:?}",
        hwrngd(&r, &dev)
    );
    assert!(
        events(&r).contains(&format!("term {p2}\n")),
        "{}",
        events(&r)
    );
    let starts = events(&r).matches("start ").count();
    assert_eq!(starts, 2);
    let respawned = r.wait(&mut dev, Duration::from_secs(7), &|r, _| {
        events(r).matches("start ").count() != starts
    });
    assert!(!respawned, "stopped, yet spawned again: {}", events(&r));
    assert_eq!(hwrngd(&r, &dev), Some((-1, false)));

    // started through pv-ctrl: spawned at once (not after the respawn delay)
    let asked = Instant::now();
    let (code, out) = r.pvcontrol(&dev, &["daemons", "start", "hwrngd"]);
    assert_eq!(code, 0, "{out}");
    let p3 = wait_up(&r, &mut dev, p2, Duration::from_secs(10)).expect("started");
    // the respawn delay would make it 5 s at least
    assert!(
        asked.elapsed() < Duration::from_millis(4500),
        "{:?}",
        asked.elapsed()
    );
    // an unknown daemon is a 404
    let (code, _) = r.pvcontrol(&dev, &["daemons", "stop", "nonexistent-daemon"]);
    assert_ne!(code, 0);

    // power off: SIGTERMed once the containers are down, reaped before the device ends,
    // no orphan
    assert_eq!(finish(&mut dev), End::PowerOff, "{}", console());
    assert!(
        events(&r).ends_with(&format!("term {p3}\n")),
        "{}",
        events(&r)
    );
    let log = r.log();
    let off = log.find("powering off").expect("powering off");
    let reaped = log
        .find(&format!("daemon hwrngd (pid {p3}) exited: exit code 0"))
        .expect("reaped at power off");
    let end = log.find("all containers stopped").expect("the end");
    assert!(off < reaped && reaped < end, "{log}");
    assert!(
        log.contains("all containers stopped (0 orphans reaped)"),
        "{log}"
    );
}
