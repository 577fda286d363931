//! pv-ctrl on a real device (root): the binary as PID 1 of a new PID namespace (booted by the
//! harness), busybox containers made by scripts/pvmk, and `pantavisor pvcontrol` talking to
//! the real socket -- from the host side (entered into the device's PID namespace with
//! nsenter, so SO_PEERCRED names a process the device can see) and from inside containers
//! (a static pantavisor binary copied into their rootfs as /bin/pv). Every test checks that
//! no mount, loop device or cgroup is left.
mod harness;
mod rig;
mod support;

use harness::End;
use std::time::Duration;

use rig::{finish, sh, Rig, FOREVER, SERIAL};

#[test]
fn host_lists_containers_and_groups_manages_usrmeta_and_powers_off() {
    let _g = SERIAL.lock();
    let desc = format!(
        r#"{{"containers":{{"alpha":{{"rootfs":"rootfs","cmd":{f}}},"beta":{{"rootfs":"rootfs","cmd":{f},"auto_recovery":{{"policy":"on-failure","max_retries":3}}}}}}}}"#,
        f = sh(FOREVER)
    );
    let mut r = Rig::new("host", &desc);
    let mut dev = r.boot();
    let up = r.wait(&mut dev, Duration::from_secs(20), &|r, d| {
        r.status_of(d, "alpha").as_deref() == Some("STARTED")
            && r.status_of(d, "beta").as_deref() == Some("STARTED")
    });
    if !up {
        let end = finish(&mut dev);
        panic!(
            "containers not STARTED via pv-ctrl ({end:?}); log:\n{}",
            r.log()
        );
    }

    let (code, out) = r.pvcontrol(&dev, &["ls"]);
    assert_eq!(code, 0, "{out}");
    let v = pantavisor::json::parse_str(&out, Default::default()).unwrap();
    let ctrs = v.as_array().unwrap();
    assert_eq!(ctrs.len(), 2, "{out}");
    let alpha = ctrs
        .iter()
        .find(|c| c.get("name").unwrap().as_str() == Some("alpha"))
        .unwrap();
    assert_eq!(alpha.get("status_goal").unwrap().as_str(), Some("STARTED"));
    assert_eq!(alpha.get("roles").unwrap().raw(&out), r#"["mgmt"]"#);
    assert!(alpha.get("auto_recovery").is_none(), "{out}");
    let beta = ctrs
        .iter()
        .find(|c| c.get("name").unwrap().as_str() == Some("beta"))
        .unwrap();
    let ar = beta.get("auto_recovery").unwrap();
    assert_eq!(ar.get("policy").unwrap().as_str(), Some("on-failure"));
    assert_eq!(ar.get("max_retries").unwrap().as_u64(), Some(3));
    assert!(matches!(
        ar.get("is_stable").unwrap().as_str(),
        Some("true" | "false")
    ));

    let (code, out) = r.pvcontrol(&dev, &["groups", "ls"]);
    assert_eq!(code, 0, "{out}");
    let v = pantavisor::json::parse_str(&out, Default::default()).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.get("name").unwrap().as_str().unwrap())
        .collect();
    assert_eq!(names, ["data", "root", "platform", "app"], "{out}");
    for g in v.as_array().unwrap() {
        // every group reached its goal (empty ones trivially)
        assert_eq!(g.get("status").unwrap().as_str(), Some("READY"), "{out}");
    }

    assert_eq!(r.pvcontrol(&dev, &["usrmeta", "save", "k1", "hello"]).0, 0);
    assert_eq!(
        r.pvcontrol(&dev, &["usrmeta", "save", "k2", r#"{"a":1}"#])
            .0,
        0
    );
    let (code, out) = r.pvcontrol(&dev, &["usrmeta", "ls"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), r#"{"k1":"hello","k2":{"a":1}}"#);
    assert_eq!(r.pvcontrol(&dev, &["usrmeta", "delete", "k1"]).0, 0);
    let (code, out) = r.pvcontrol(&dev, &["usrmeta", "delete", "k1"]);
    assert_eq!(code, 255);
    assert!(out.contains("User meta does not exist"), "{out}");
    assert_eq!(
        r.pvcontrol(&dev, &["usrmeta", "ls"]).1.trim(),
        r#"{"k2":{"a":1}}"#
    );
    let (code, out) = r.pvcontrol(&dev, &["devmeta", "ls"]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""pantavisor.status":"READY""#), "{out}");

    let (code, out) = r.pvcontrol(&dev, &["buildinfo"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("pantavisor "), "{out}");
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run-gc"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = r.pvcontrol(&dev, &["storage", "gc"]);
    assert_eq!((code, out.trim()), (0, r#"{"reclaimed":0}"#), "{out}");
    let (code, out) = r.pvcontrol(&dev, &["cmd", "go-remote"]);
    assert_eq!(code, 255, "{out}");

    // a user-meta key that names a config key overrides it at the metadata level (upstream's config levels)
    let delay = |r: &Rig, dev: &std::process::Child| {
        let (code, out) = r.pvcontrol(dev, &["conf", "ls"]);
        assert_eq!(code, 0);
        let v = pantavisor::json::parse_str(&out, Default::default()).unwrap();
        let item = v
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i.get("key").and_then(|k| k.as_str()) == Some("PV_UPDATER_COMMIT_DELAY"))
            .cloned()
            .unwrap();
        let f = |k: &str| {
            item.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string()
        };
        (f("value"), f("modified"))
    };
    assert_eq!(delay(&r, &dev), ("1".into(), "pv conf file".into()));
    assert_eq!(
        r.pvcontrol(&dev, &["usrmeta", "save", "PV_UPDATER_COMMIT_DELAY", "42"])
            .0,
        0
    );
    assert_eq!(delay(&r, &dev), ("42".into(), "metadata".into()));
    let (code, out) = r.pvcontrol(&dev, &["config", "ls"]);
    assert!(
        code == 0 && out.contains(r#""updater.commit.delay":42"#),
        "{out}"
    );
    assert_eq!(
        r.pvcontrol(&dev, &["usrmeta", "delete", "PV_UPDATER_COMMIT_DELAY"])
            .0,
        0
    );
    assert_eq!(delay(&r, &dev), ("1".into(), "pv conf file".into()));

    let (code, out) = r.pvcontrol(&dev, &["cmd", "poweroff", "test over"]);
    assert_eq!(code, 0, "{out}");
    let end = harness::wait_end(&mut dev, Duration::from_secs(20));
    assert_eq!(end, End::PowerOff, "log:\n{}", r.log());
    assert!(r.log().contains("pv-ctrl POWEROFF_DEVICE: test over"));
    assert!(!r.socket.exists(), "pv-ctrl socket left behind");
}

#[test]
fn nobody_container_is_refused_but_signals_ready() {
    let _g = SERIAL.lock();
    let pvc = "/bin/pv pvcontrol -s /pantavisor/pv-ctrl";
    // each waits for a user-meta key the host sets: app sees its own view, mgr all keys
    let wait_for =
        |f: &str| format!("until cat {f} 2>/dev/null; do sleep 0.1; done; echo; echo seen");
    let app = sh(&format!(
        "{pvc} ls; rc=$?; echo; echo ls=$rc; {pvc} signal ready; rc=$?; echo; echo signal=$rc; {}; {FOREVER}",
        wait_for("/pantavisor/user-meta/greeting")
    ));
    let mgr = sh(&format!(
        "{pvc} ls > /dev/null; echo ls=$?; {pvc} signal ready; rc=$?; echo; echo signal=$rc; {}; {FOREVER}",
        wait_for("/pantavisor/user-meta/app.greeting")
    ));
    let desc = format!(
        r#"{{"containers":{{"app":{{"rootfs":"rootfs","cmd":{app},"roles":["nobody"],"status_goal":"READY"}},"mgr":{{"rootfs":"rootfs","cmd":{mgr}}}}}}}"#
    );
    let mut r = Rig::new("nobody", &desc);
    let mut dev = r.boot();
    let ready = r.wait(&mut dev, Duration::from_secs(20), &|r, d| {
        r.status_of(d, "app").as_deref() == Some("READY") && r.console("mgr").contains("signal=")
    });
    // upstream's `<container>.<key>` views: `app.greeting` is shown to app as `greeting`, to mgmt
    // containers as itself
    let (code, out) = r.pvcontrol(&dev, &["usrmeta", "save", "app.greeting", "hello-app"]);
    assert_eq!(code, 0, "{out}");
    let seen = r.wait(&mut dev, Duration::from_secs(10), &|r, _| {
        r.console("app").contains("hello-app\nseen") && r.console("mgr").contains("hello-app\nseen")
    });
    let end = finish(&mut dev);
    assert!(
        seen,
        "user-meta views not seen;
app:
{}
mgr:
{}",
        r.console("app"),
        r.console("mgr")
    );
    let (app_out, mgr_out) = (r.console("app"), r.console("mgr"));
    assert!(
        ready,
        "app not READY ({end:?});\napp:\n{app_out}\nmgr:\n{mgr_out}\nlog:\n{}",
        r.log()
    );
    assert_eq!(end, End::PowerOff);
    // the non-mgmt container may not list, but may signal
    assert!(
        app_out.contains(r#"{"Error":"Request not sent from a mgmt platform"}"#),
        "{app_out}"
    );
    assert!(app_out.contains("ls=255"), "{app_out}");
    assert!(app_out.contains("signal=0"), "{app_out}");
    // a mgmt container may list; its goal is STARTED so a ready signal is unexpected
    assert!(mgr_out.contains("ls=0"), "{mgr_out}");
    assert!(
        mgr_out.contains("Signal not expected from this platform"),
        "{mgr_out}"
    );
    assert!(mgr_out.contains("signal=255"), "{mgr_out}");
    assert!(r.log().contains("container app: READY (signalled)"));
}

#[test]
fn host_uploads_objects_and_a_local_step() {
    let _g = SERIAL.lock();
    let desc = format!(
        r#"{{"containers":{{"alpha":{{"rootfs":"rootfs","cmd":{f}}}}}}}"#,
        f = sh(FOREVER)
    );
    let mut r = Rig::new("steps", &desc);
    let mut dev = r.boot();
    let up = r.wait(&mut dev, Duration::from_secs(20), &|r, d| {
        r.status_of(d, "alpha").as_deref() == Some("STARTED")
    });
    if !up {
        let end = finish(&mut dev);
        panic!("alpha not STARTED ({end:?}); log:\n{}", r.log());
    }
    let objects = r.storage.join("objects");
    let leftovers = || {
        std::fs::read_dir(&objects)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count()
    };

    // an object: stored under its sha, listed with its size
    let data = b"an object uploaded through pv-ctrl\n".repeat(5000);
    let file = r.dir.join("obj.bin");
    std::fs::write(&file, &data).unwrap();
    let sha = pantavisor::storage::objects::sha256_hex(&data);
    let f = file.to_str().unwrap();
    let (code, out) = r.pvcontrol(&dev, &["objects", "put", f, &sha]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(std::fs::read(objects.join(&sha)).unwrap(), data);
    let (code, out) = r.pvcontrol(&dev, &["objects", "ls"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(r#"{{"sha256":"{sha}","size":"{}"}}"#, data.len())),
        "{out}"
    );
    // a big object comes back whole, streamed from its file by the loop
    let big = b"a line of a big object, streamed back by pv-ctrl\n".repeat(400_000);
    let big_file = r.dir.join("big.bin");
    std::fs::write(&big_file, &big).unwrap();
    let big_sha = pantavisor::storage::objects::sha256_hex(&big);
    let (code, out) = r.pvcontrol(
        &dev,
        &["objects", "put", big_file.to_str().unwrap(), &big_sha],
    );
    assert_eq!(code, 0, "{out}");
    let (code, out) = r.pvcontrol(&dev, &["objects", "get", &big_sha]);
    assert_eq!(code, 0);
    assert_eq!(out.len(), big.len());
    assert!(out.as_bytes() == big.as_slice(), "streamed object differs");
    // again: already there, fine
    assert_eq!(r.pvcontrol(&dev, &["objects", "put", f, &sha]).0, 0);
    // a bad checksum: exit 60, nothing stored
    let wrong = pantavisor::storage::objects::sha256_hex(b"something else");
    let (code, out) = r.pvcontrol(&dev, &["objects", "put", f, &wrong]);
    assert_eq!(code, 60, "{out}");
    assert!(out.contains("Object has bad checksum"), "{out}");
    assert!(!objects.join(&wrong).exists());
    assert_eq!(leftovers(), 0);

    // a local step: the factory state, stored byte-exact, progress NEW
    let raw = std::fs::read(r.storage.join("trails/0/.pvr/json")).unwrap();
    let json = r.dir.join("x.json");
    std::fs::write(&json, &raw).unwrap();
    let (code, out) = r.pvcontrol(&dev, &["steps", "put", json.to_str().unwrap(), "locals/x"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read(r.storage.join("trails/locals/x/.pvr/json")).unwrap(),
        raw
    );
    let (code, out) = r.pvcontrol(&dev, &["steps", "show-progress", "locals/x"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#""status":"NEW""#), "{out}");
    let (code, out) = r.pvcontrol(&dev, &["steps", "get", "locals/x"]);
    assert_eq!(
        (code, out.trim()),
        (0, String::from_utf8_lossy(&raw).trim())
    );
    let (code, out) = r.pvcontrol(&dev, &["steps", "ls"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#"{"name":"locals/x","date":"20"#), "{out}");
    // a bad state: upstream's parser message, which its pvcontrol maps to 255 (70 is only
    // for "State verification has failed"); no revision directory
    let bad = r.dir.join("bad.json");
    std::fs::write(
        &bad,
        br##"{"#spec":"pantavisor-service-system@1","nope":1}"##,
    )
    .unwrap();
    let (code, out) = r.pvcontrol(&dev, &["steps", "put", bad.to_str().unwrap(), "locals/bad"]);
    assert_eq!(code, 255, "{out}");
    assert!(out.contains("State JSON has bad format"), "{out}");
    assert!(!r.storage.join("trails/locals/bad").exists());

    let end = finish(&mut dev);
    assert_eq!(end, End::PowerOff, "log:\n{}", r.log());
}

/// Issue 5: a client sending one byte a second and a hundred clients at once cannot delay
/// supervision -- a crashing container is restarted on its auto-recovery schedule meanwhile.
#[test]
fn supervision_keeps_its_schedule_under_a_slow_client_and_a_hundred_clients() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let _g = SERIAL.lock();
    let crash = sh("echo start $(cut -d' ' -f1 /proc/uptime); exit 3");
    let desc = format!(
        r#"{{"containers":{{"crasher":{{"rootfs":"rootfs","cmd":{crash},"restart_policy":"container","auto_recovery":{{"policy":"on-failure","max_retries":5,"retry_delay":1,"backoff_factor":1.0,"backoff_policy":"never"}}}},"steady":{{"rootfs":"rootfs","cmd":{f}}}}}}}"#,
        f = sh(FOREVER)
    );
    let mut r = Rig::new("schedule", &desc);
    let mut dev = r.boot();
    assert!(r.wait(&mut dev, Duration::from_secs(20), &|r, _| r.socket.exists()));
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    // boot-relative seconds, the clock the containers print their start times in
    let uptime = || -> f64 {
        let up = std::fs::read_to_string("/proc/uptime").unwrap();
        up.split_whitespace().next().unwrap().parse().unwrap()
    };
    // the slow client: one byte a second, never a whole request
    let (connected_tx, connected) = std::sync::mpsc::channel();
    let slow = {
        let path = r.socket.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut s = UnixStream::connect(&path).unwrap();
            let started = std::time::Instant::now();
            let connected_up = uptime();
            connected_tx.send(()).unwrap();
            // the reader sees the drop at once, not at the next byte the writer sends; a
            // server that never drops it fails the test instead of hanging it
            let mut reader = s.try_clone().unwrap();
            reader
                .set_read_timeout(Some(Duration::from_secs(20)))
                .unwrap();
            let read = std::thread::spawn(move || {
                let mut out = String::new();
                let _ = reader.read_to_string(&mut out);
                (started.elapsed(), out, connected_up..uptime())
            });
            for b in b"GET /containers HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
                if stop.load(Ordering::SeqCst) || read.is_finished() || s.write_all(&[*b]).is_err()
                {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            read.join().unwrap()
        })
    };
    // the crowd only once the slow client is queued first: on a loaded machine its thread can
    // run late, and behind a hundred connections it would get a 503 instead of a slot
    connected.recv().unwrap();
    // a hundred clients at once, each asking again 20 ms after its answer (~4,000 requests
    // a second in all: enough to keep the server busy without starving the machine's two
    // cores, which would delay the device through the scheduler, not through its loop)
    let crowd: Vec<_> = (0..100)
        .map(|_| {
            let path = r.socket.clone();
            let stop = stop.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match pantavisor::control::client::request(&path, "GET", "/containers", b"") {
                        Ok((code, _)) => {
                            assert!(matches!(code, 200 | 500 | 503), "answer {code}");
                            answered.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        })
        .collect();
    let done = r.wait(&mut dev, Duration::from_secs(30), &|r, _| {
        r.log().contains("left stopped")
    });
    stop.store(true, Ordering::SeqCst);
    for c in crowd {
        c.join().unwrap();
    }
    let (slow_after, slow_out, slow_held) = slow.join().unwrap();
    let end = finish(&mut dev);
    assert!(done, "recovery did not finish ({end:?}); log:\n{}", r.log());
    assert_eq!(end, End::PowerOff);
    let starts: Vec<f64> = r
        .console("crasher")
        .lines()
        .filter_map(|l| l.strip_prefix("start "))
        .filter_map(|t| t.trim().parse().ok())
        .collect();
    assert_eq!(starts.len(), 6, "first start + 5 retries: {starts:?}");
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    // each gap is the 1 s delay plus an exit and a start: never less (the printed times have
    // 10 ms steps); more only by what the load costs a start, never by the 5 s a blocked
    // loop would wait for the slow client
    for g in &gaps {
        assert!(
            (0.98..4.0).contains(g),
            "retry gaps {gaps:?}, want 1 s each"
        );
    }
    // the slow client was dropped when its head's time was up (3 s from its first byte), with
    // a 408: not before (that byte is sent after the connect), nor seconds after
    assert!(slow_out.starts_with("HTTP/1.1 408 "), "{slow_out}");
    assert!(
        slow_after >= Duration::from_millis(2950) && slow_after < Duration::from_secs(8),
        "slow client held {slow_after:?}"
    );
    // supervision went on while the slow client held its connection: starts inside that
    // window (~5 on an idle machine). A loop that waits on the slow client makes at most the
    // one already under way when it connected.
    let during = starts.iter().filter(|t| slow_held.contains(*t)).count();
    assert!(
        during >= 2,
        "{during} starts while the slow client was held ({slow_held:?}): starts {starts:?}"
    );
    let n = answered.load(Ordering::SeqCst);
    assert!(n > 1000, "only {n} answers");
    println!("retry gaps under load (s): {gaps:.2?}; {n} requests answered meanwhile; slow client dropped after {slow_after:.1?}, {during} starts while it was held");
}

/// A storage with no room: an upload is answered 507 (pvcontrol exit 48), nothing of it is
/// kept, and the device runs on.
#[test]
fn full_storage_answers_507_and_keeps_nothing() {
    let _g = SERIAL.lock();
    let desc = format!(
        r#"{{"containers":{{"alpha":{{"rootfs":"rootfs","cmd":{f}}}}}}}"#,
        f = sh(FOREVER)
    );
    let mut r = Rig::new("full", &desc);
    // the whole storage on a 12 MiB tmpfs (objects are hard-linked into trails: one fs)
    let storage = r.storage.clone();
    let keep = r.dir.join("storage.factory");
    std::fs::rename(&storage, &keep).unwrap();
    std::fs::create_dir(&storage).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "pv-test-full"])
        .arg(&storage)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs (needs root)");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(keep.join("."))
        .arg(&storage)
        .status()
        .unwrap();
    assert!(copied.success());
    let objects = storage.join("objects");
    let mut dev = r.boot();
    let up = r.wait(&mut dev, Duration::from_secs(20), &|r, d| {
        r.status_of(d, "alpha").as_deref() == Some("STARTED")
    });
    let big = b"more than the storage holds\n".repeat(600_000);
    let file = r.dir.join("big.bin");
    std::fs::write(&file, &big).unwrap();
    let sha = pantavisor::storage::objects::sha256_hex(&big);
    let (code, out) = if up {
        r.pvcontrol(&dev, &["objects", "put", file.to_str().unwrap(), &sha])
    } else {
        (-1, String::new())
    };
    let left: Vec<String> = std::fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(&sha))
        .collect();
    let still = r.status_of(&dev, "alpha");
    let end = finish(&mut dev);
    let logs = r.log();
    let _ = std::process::Command::new("umount").arg(&storage).status();
    assert!(up, "alpha not STARTED ({end:?}); log:\n{logs}");
    assert_eq!(code, 48, "{out}");
    assert!(out.contains("Not enough disk space available"), "{out}");
    assert!(left.is_empty(), "kept: {left:?}");
    assert_eq!(still.as_deref(), Some("STARTED"));
    assert_eq!(end, End::PowerOff);
}

/// The devmeta of a device as pvcontrol shows it, parsed.
fn devmeta(r: &Rig, dev: &std::process::Child) -> Option<pantavisor::json::Value> {
    let (code, out) = r.pvcontrol(dev, &["devmeta", "ls"]);
    (code == 0)
        .then(|| pantavisor::json::parse_str(&out, Default::default()).ok())
        .flatten()
}

fn str_of(v: &pantavisor::json::Value, k: &str) -> Option<String> {
    Some(v.get(k)?.as_str()?.to_string())
}

/// Issues 3, 4, 6, 12 on one device, as upstream's control/basic-endpoints, status-codes and
/// services/daemons tests see it: device-meta has upstream's keys (revision, status, arch,
/// mode, Hub state, and `time`/`sysinfo`/`storage`/`interfaces` kept current), the revision
/// follows a live update; drivers, daemons, wakelocks and the SSH commands answer upstream's
/// codes; `cmd run` of a revision never put leaves nothing; a meta key the store cannot hold
/// is a 400 naming no path; the factory revision shows upstream's progress.
#[test]
fn device_meta_status_codes_and_refusals() {
    let _g = SERIAL.lock();
    let desc = |motd: &str| {
        format!(
            r#"{{"containers":{{"mgr":{{"rootfs":"rootfs","cmd":{f},"group":"platform"}},"web":{{"rootfs":"rootfs","cmd":{f},"group":"app","roles":["nobody"],"config":{{"etc/motd":"{motd}"}}}}}}}}"#,
            f = sh(FOREVER)
        )
    };
    let mut sweep = rig::CgroupSweep::default();
    let mut r = Rig::new("devmeta", &desc("v1"));
    sweep.0 = r.cgroup.clone();
    // the exports folder is made at boot, as upstream's (no container here exports)
    std::fs::remove_dir(r.dir.join("exports")).unwrap();
    let mut dev = r.boot();
    let ready = r.wait(&mut dev, Duration::from_secs(20), &|r, d| {
        devmeta(r, d).is_some_and(|m| str_of(&m, "pantavisor.status").as_deref() == Some("READY"))
    });
    if !ready {
        let end = finish(&mut dev);
        panic!("not READY in device-meta ({end:?}); log:\n{}", r.log());
    }
    assert!(r.dir.join("exports").is_dir());
    // what upstream's golden shows of basic-endpoints, less what it deletes as volatile
    let m = devmeta(&r, &dev).unwrap();
    for (k, v) in [
        ("pantahub.claimed", "0"),
        ("pantahub.online", "0"),
        ("pantavisor.arch", "x86_64/64/EL"),
        ("pantavisor.mode", "local"),
        ("pantavisor.revision", "0"),
        ("pantavisor.status", "READY"),
        ("pantavisor.version", env!("CARGO_PKG_VERSION")),
    ] {
        assert_eq!(str_of(&m, k).as_deref(), Some(v), "{k}");
    }
    // services/metadata-crud's golden lists them unsorted: upstream's order, newest first
    let volatile = [
        "storage",
        "interfaces",
        "sysinfo",
        "time",
        "pantavisor.uname",
        "pantavisor.cpumodel",
        "pantavisor.version",
    ];
    let order: Vec<&str> = m
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !volatile.contains(k))
        .collect();
    assert_eq!(
        order,
        [
            "pantavisor.status",
            "pantahub.claimed",
            "pantahub.online",
            "pantavisor.mode",
            "pantavisor.revision",
            "pantavisor.arch"
        ]
    );
    let uname = m.get("pantavisor.uname").and_then(|u| u.get("kernel.name"));
    assert_eq!(uname.and_then(|n| n.as_str()), Some("Linux"));
    let total = m.get("storage").and_then(|s| s.get("total")?.as_u64());
    assert!(total.is_some_and(|t| t > 0), "storage: {total:?}");
    assert!(m
        .get("sysinfo")
        .and_then(|s| s.get("uptime")?.as_u64())
        .is_some());
    assert!(m.get("interfaces").and_then(|i| i.as_object()).is_some());
    // containers see them in their device-meta view
    let view = r.dir.join("run/device-meta/pantavisor.revision");
    assert_eq!(std::fs::read_to_string(&view).ok().as_deref(), Some("0"));
    // a stored key of the same name does not hide the device's own, in GET or in the views
    let (code, out) = r.pvcontrol(&dev, &["devmeta", "save", "pantavisor.status", "STALE"]);
    assert_eq!(code, 0, "{out}");
    let m = devmeta(&r, &dev).unwrap();
    assert_eq!(str_of(&m, "pantavisor.status").as_deref(), Some("READY"));
    let view = r.dir.join("run/device-meta/pantavisor.status");
    assert_eq!(
        std::fs::read_to_string(&view).ok().as_deref(),
        Some("READY")
    );
    // DELETE of one of the device's own keys drops it until the device sets it again, as
    // upstream's single list does (it answered 404)
    let (code, out) = r.pvcontrol(&dev, &["devmeta", "delete", "pantavisor.mode"]);
    assert_eq!(code, 0, "{out}");
    let m = devmeta(&r, &dev).unwrap();
    assert!(m.get("pantavisor.mode").is_none(), "{m:?}");
    assert!(!r.dir.join("run/device-meta/pantavisor.mode").exists());
    let (code, out) = r.pvcontrol(&dev, &["devmeta", "delete", "pantavisor.mode"]);
    assert_eq!(
        (code, out.trim()),
        (255, r#"{"Error":"Device meta does not exist"}"#)
    );

    // `time` is refreshed on the loop every PH_METADATA_DEVMETA_INTERVAL (from user-meta)
    let secs = |r: &Rig, d: &std::process::Child| {
        devmeta(r, d).and_then(|m| m.get("time")?.get("timeval")?.get("tv_sec")?.as_u64())
    };
    let t0 = secs(&r, &dev).unwrap();
    let (code, out) = r.pvcontrol(
        &dev,
        &["usrmeta", "save", "PH_METADATA_DEVMETA_INTERVAL", "1"],
    );
    assert_eq!(code, 0, "{out}");
    let ticked = r.wait(&mut dev, Duration::from_secs(15), &|r, d| {
        secs(r, d).is_some_and(|t| t > t0)
    });
    assert!(ticked, "device-meta time not refreshed");

    // issue 4: upstream's status codes (control/status-codes, services/daemons)
    let code_of = |r: &Rig, d: &std::process::Child, m: &str, p: &str, b: &str| {
        r.http(d, m, p, b).map(|h| (h.code, h.body))
    };
    for p in ["/drivers/load", "/drivers/unload"] {
        assert_eq!(
            code_of(&r, &dev, "PUT", p, "").map(|c| c.0),
            Some(200),
            "{p}"
        );
    }
    assert_eq!(
        code_of(&r, &dev, "GET", "/drivers", ""),
        Some((200, "{}".into()))
    );
    assert_eq!(
        code_of(
            &r,
            &dev,
            "PUT",
            "/daemons/nonexistent-daemon",
            r#"{"action":"stop"}"#
        )
        .map(|c| c.0),
        Some(404)
    );
    // upstream's hwrngd is spawned only where /usr/bin/rngd exists (tests/daemons.rs); without
    // it, respawn is cleared
    let daemons = code_of(&r, &dev, "GET", "/daemons", "");
    if std::path::Path::new("/usr/bin/rngd").exists() {
        let (code, body) = daemons.unwrap();
        assert!(code == 200 && body.contains(r#""respawn":true"#), "{body}");
    } else {
        assert_eq!(
            daemons,
            Some((200, r#"[{"name":"hwrngd","pid":0,"respawn":false}]"#.into()))
        );
    }
    let wl = code_of(&r, &dev, "GET", "/wakelocks", "").unwrap();
    assert!(
        wl.0 == 200 && wl.1.starts_with(r#"{"mode":"disabled","count":0,"#),
        "{wl:?}"
    );
    // from inside containers, where the caller matters: mgmt mgr may, nobody web may not
    // the device names a container caller by its cgroup: without cgroup v2 there is none
    let cg = r.cgroup.clone().expect("cgroup v2 (containers' callers)");
    let procs = |c: &str| Some(cg.join("lxc").join(c).join("cgroup.procs"));
    let pid = harness::device_pid(&dev).unwrap();
    let from = |c: &str, m: &str, p: &str| {
        rig::http_as(pid, procs(c).as_deref(), &r.socket, m, p, "").map(|h| (h.code, h.body))
    };
    assert_eq!(from("mgr", "GET", "/drivers"), Some((200, "{}".into())));
    assert_eq!(from("mgr", "PUT", "/drivers/load").map(|c| c.0), Some(200));
    assert_eq!(from("web", "PUT", "/drivers/load").map(|c| c.0), Some(403));
    // a platform container's ready signal: upstream's 500 (its goal is STARTED)
    let sig = rig::http_as(
        pid,
        procs("mgr").as_deref(),
        &r.socket,
        "POST",
        "/signal",
        r#"{"type":"ready","payload":""}"#,
    );
    assert_eq!(sig.map(|h| h.code), Some(500));
    // ENABLE_SSH / DISABLE_SSH set PV_DEBUG_SSH at the command level, one command at a time
    let ssh = |r: &Rig, d: &mut std::process::Child, op: &str, want: &str| {
        let (code, out) = r.pvcontrol(d, &["cmd", op]);
        assert_eq!(code, 0, "{op}: {out}");
        r.wait(d, Duration::from_secs(10), &|r, d| {
            let (_, out) = r.pvcontrol(d, &["conf", "ls"]);
            out.contains(&format!(
                r#"{{"key":"PV_DEBUG_SSH","value":"{want}","modified":"command"}}"#
            ))
        })
    };
    assert!(ssh(&r, &mut dev, "enable-ssh", "1"), "enable-ssh");
    assert!(ssh(&r, &mut dev, "disable-ssh", "0"), "disable-ssh");
    let (code, out) = r.pvcontrol(&dev, &["cmd", "defer-reboot", "120"]);
    assert_eq!(code, 0, "{out}");

    // issue 6: a revision never put is refused and nothing of it is made
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run", "locals/nonexistent"]);
    assert_eq!(code, 255, "{out}");
    assert!(out.contains("Revision does not exist"), "{out}");
    assert!(!r.storage.join("trails/locals/nonexistent").exists());
    let (code, steps) = r.pvcontrol(&dev, &["steps", "ls"]);
    assert_eq!(code, 0);
    assert!(!steps.contains("nonexistent"), "{steps}");
    // the factory revision, as upstream's golden shows it
    assert!(
        steps.contains(r#"{"status":"DONE","status-msg":"Factory revision","progress":100"#),
        "{steps}"
    );

    // issue 12: a key the store cannot hold is a 400, and no answer names a host path
    let long = "k".repeat(255);
    let a = r
        .http(&dev, "PUT", &format!("/user-meta/{long}"), "v")
        .unwrap();
    assert_eq!(
        (a.code, a.body.as_str()),
        (400, r#"{"Error":"Bad meta key"}"#)
    );

    // issue 3: the revision follows a live update (only web's config changes)
    let rev = "locals/live";
    let (objects, state) = r.make_revision("live", &desc("v2"));
    r.upload(&dev, &objects, &state, rev);
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run", rev]);
    assert_eq!(code, 0, "{out}");
    let switched = r.wait(&mut dev, Duration::from_secs(30), &|r, d| {
        devmeta(r, d).is_some_and(|m| str_of(&m, "pantavisor.revision").as_deref() == Some(rev))
    });
    let end = finish(&mut dev);
    assert!(
        switched,
        "revision not {rev} in device-meta ({end:?}); log:\n{}",
        r.log_of(rev)
    );
    assert_eq!(end, End::PowerOff);
}
