//! Process-crash safety of a local update (root): 52 times, an update is started through
//! pv-ctrl and the device's whole PID namespace is SIGKILLed at a random moment of one
//! phase -- download (an object upload), install (after LOCAL_RUN), try (the boot into the
//! new revision) or commit (around the end of the commit delay) -- then the harness's
//! bootloader boots on until the device settles. Every time the device must run the old or
//! the new revision, its trail must verify (objects re-hashed), `pv_try` must be clear, and
//! the update must have ended (DONE on the new revision, a failure or never run on the old).
//! A SIGKILL keeps the page cache: this is process-crash safety; power loss is the crash
//! simulation's (tests/crash_consistency.rs) and the VM tier's job.
mod harness;
mod rig;
mod support;

use harness::End;
use pantavisor::state::State;
use pantavisor::storage::fs::RealFs;
use pantavisor::storage::objects::sha256_hex;
use pantavisor::storage::trail::Check;
use pantavisor::storage::Storage;
use rig::{finish, sh, Rig, FOREVER, SERIAL};
use std::process::Child;
use std::time::{Duration, Instant};

const PHASES: [&str; 4] = ["download", "install", "try", "commit"];
const PER_PHASE: usize = 13;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn desc(kernel: &str) -> String {
    format!(
        r#"{{"bsp":{{"kernel":"{kernel}"}},
 "containers":{{"os":{{"rootfs":"rootfs","cmd":{idle}}},
               "app":{{"rootfs":"rootfs","cmd":{idle},"restart_policy":"container"}}}}}}"#,
        idle = sh(FOREVER)
    )
}

/// SIGKILL to the device's PID 1: the kernel kills its whole namespace.
fn cut(dev: &mut Child) -> bool {
    let hit = dev.try_wait().unwrap().is_none() && harness::signal_device(dev, "KILL");
    let _ = harness::wait_end(dev, Duration::from_secs(20));
    hit
}

fn up(r: &Rig, dev: &mut Child) -> bool {
    r.wait(dev, Duration::from_secs(30), &|r, d| {
        r.status_of(d, "app").as_deref() == Some("STARTED")
    })
}

/// Every revision's progress: no update may stay between QUEUED and TESTING.
fn unfinished(r: &Rig) -> Vec<String> {
    let st = Storage::new(&RealFs, &r.storage);
    st.list_revisions()
        .unwrap_or_default()
        .into_iter()
        .filter(|rev| {
            r.progress(rev).is_some_and(|(s, _)| {
                matches!(
                    s.as_str(),
                    "QUEUED" | "DOWNLOADING" | "INPROGRESS" | "TESTING"
                )
            })
        })
        .collect()
}

#[test]
fn power_cuts_during_updates_leave_the_old_or_the_new_revision() {
    let _g = SERIAL.lock();
    let seed = std::env::var("PV_POWERCUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    println!("power-cut seed {seed} (PV_POWERCUT_SEED to replay)");
    let mut rng = Rng(seed);
    let mut r = Rig::new("powercut", &desc("k1"));
    // the two bases an update alternates between (they differ in the BSP: reboot updates)
    let base_a = std::fs::read_to_string(r.storage.join("trails/0/.pvr/json")).unwrap();
    let (objects_b, state_b) = r.make_revision("b", &desc("k2"));
    let base_b = std::fs::read_to_string(&state_b).unwrap();
    let objects_a = r.storage.join("objects");
    let a_objects: Vec<std::path::PathBuf> = std::fs::read_dir(&objects_a)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let stash_a = r.dir.join("a.objects");
    std::fs::create_dir_all(&stash_a).unwrap();
    for p in &a_objects {
        std::fs::copy(p, stash_a.join(p.file_name().unwrap())).unwrap();
    }

    let mut hits = [0usize; 4];
    let mut misses = [0usize; 4];
    let (mut on_new, mut on_old) = (0, 0);
    let started = Instant::now();
    let mut i = 0;
    while hits.iter().any(|&h| h < PER_PHASE) {
        i += 1;
        assert!(
            i < 150,
            "too many missed cuts: hits {hits:?} misses {misses:?}"
        );
        let phase = (i - 1) % 4;
        if hits[phase] >= PER_PHASE {
            continue;
        }
        let (old, try_) = r.env();
        assert_eq!(try_, None, "iteration {i}: pv_try left set");
        let old = old.unwrap();
        let mut dev = {
            let (booted, mut dev) = r.boot_rev();
            assert_eq!(booted, old);
            assert!(up(&r, &mut dev), "iteration {i}: {old} not up");
            dev
        };
        // keep the storage small: drop the revisions of earlier iterations
        assert_eq!(r.pvcontrol(&dev, &["storage", "gc"]).0, 0);

        // the update: the other base plus an object of its own, 2 MiB of noise
        let running = std::fs::read_to_string(r.storage.join(format!("trails/{old}/.pvr/json")))
            .unwrap_or_default();
        let on_a = running.contains(&sha256_hex(b"k1"));
        let (template, objects) = if on_a {
            (&base_b, &objects_b)
        } else {
            (&base_a, &stash_a)
        };
        // big enough that a cut falls inside its upload: 24 MiB when the cut is in download
        let mib = if PHASES[phase] == "download" { 24 } else { 2 };
        let noise: Vec<u8> = (0..(mib << 20) / 8)
            .flat_map(|_| rng.next().to_le_bytes())
            .collect();
        let noise_sha = sha256_hex(&noise);
        let noise_file = r.dir.join("noise.bin");
        std::fs::write(&noise_file, &noise).unwrap();
        let raw = template.replacen(
            '{',
            &format!("{{\"_config/app/noise.bin\":\"{noise_sha}\","),
            1,
        );
        let state_file = r.dir.join("update.json");
        std::fs::write(&state_file, &raw).unwrap();
        let rev = format!("locals/pc{i}");

        let hit;
        match PHASES[phase] {
            "download" => {
                r.upload_objects(&dev, objects);
                // the big object in flight when the power goes
                let put = ["objects", "put", noise_file.to_str().unwrap(), &noise_sha];
                let mut upload = r
                    .pvcontrol_cmd(&dev, &put)
                    .unwrap()
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap();
                std::thread::sleep(Duration::from_millis(5 + rng.below(40)));
                hit = upload.try_wait().unwrap().is_none() && cut(&mut dev);
                let _ = upload.wait();
                if !hit {
                    cut(&mut dev);
                }
            }
            p => {
                r.upload(&dev, objects, &state_file, &rev);
                let (code, out) = r.pvcontrol(
                    &dev,
                    &["objects", "put", noise_file.to_str().unwrap(), &noise_sha],
                );
                assert_eq!(code, 0, "{out}");
                assert_eq!(r.pvcontrol(&dev, &["cmd", "run", &rev]).0, 0);
                if p == "install" {
                    std::thread::sleep(Duration::from_millis(rng.below(60)));
                    hit = cut(&mut dev);
                } else {
                    let end = harness::wait_end(&mut dev, Duration::from_secs(30));
                    assert_eq!(end, End::Reboot, "iteration {i}: {}", r.log_of(&old));
                    let (booted, mut dev2) = r.boot_rev();
                    assert_eq!(booted, rev);
                    if p == "try" {
                        std::thread::sleep(Duration::from_millis(rng.below(1200)));
                    } else {
                        // the commit comes PV_UPDATER_COMMIT_DELAY (1 s) after TESTING
                        let testing = r.wait(&mut dev2, Duration::from_secs(30), &|r, _| {
                            r.progress(&rev).is_some_and(|(s, _)| s == "TESTING")
                        });
                        assert!(testing, "iteration {i}: no TESTING; {}", r.log_of(&rev));
                        std::thread::sleep(Duration::from_millis(960 + rng.below(80)));
                    }
                    hit = cut(&mut dev2);
                }
            }
        }
        if hit {
            hits[phase] += 1;
        } else {
            misses[phase] += 1;
        }

        // boot on until the device settles: no pv_try, every update ended, all up
        let mut settled = None;
        for _ in 0..6 {
            let (booted, mut dev) = r.boot_rev();
            let ok = r.wait(&mut dev, Duration::from_secs(30), &|r, d| {
                r.env().1.is_none()
                    && unfinished(r).is_empty()
                    && r.status_of(d, "app").as_deref() == Some("STARTED")
            });
            if ok {
                assert_eq!(finish(&mut dev), End::PowerOff);
                settled = Some(booted);
                break;
            }
            let end = harness::wait_end(&mut dev, Duration::from_secs(30));
            assert_eq!(
                end,
                End::Reboot,
                "iteration {i} ({}): {booted} ended {end:?}; log:\n{}",
                PHASES[phase],
                r.log_of(&booted)
            );
        }
        let booted = settled.unwrap_or_else(|| panic!("iteration {i}: never settled"));
        let (pv_rev, pv_try) = r.env();
        let pv_rev = pv_rev.unwrap();
        assert_eq!(pv_try, None);
        assert_eq!(
            booted, pv_rev,
            "iteration {i}: runs {booted}, committed {pv_rev}"
        );
        assert!(
            pv_rev == old || pv_rev == rev,
            "iteration {i}: {pv_rev} is neither {old} nor {rev}"
        );
        let st = Storage::new(&RealFs, &r.storage);
        let state = State::parse(&st.read_state(&pv_rev).unwrap()).unwrap();
        if let Err(p) = st.verify_trail(&pv_rev, &state, Check::Rehash) {
            panic!("iteration {i}: {pv_rev} does not verify: {p:?}");
        }
        let progress = r.progress(&rev).map(|p| p.0);
        if pv_rev == rev {
            on_new += 1;
            assert_eq!(progress.as_deref(), Some("DONE"), "iteration {i}");
            assert!(st.is_done(&rev));
        } else {
            on_old += 1;
            assert!(
                matches!(progress.as_deref(), None | Some("NEW" | "ERROR" | "WONTGO")),
                "iteration {i}: {rev} left {progress:?}"
            );
        }
    }
    let total: usize = hits.iter().sum();
    println!(
        "power cuts: {total} (download {}, install {}, try {}, commit {}; {} fell after the phase ended and were not counted); settled on the new revision {on_new} times, on the old {on_old}; {:.1} s",
        hits[0],
        hits[1],
        hits[2],
        hits[3],
        misses.iter().sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    assert!(total >= 50);
}
