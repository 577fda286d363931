//! Starts and stops one busybox container N times with the container engine alone (no PID 1
//! runtime) and prints per-iteration times, for scripts/bench (section `ctr`) to compare with
//! crun.
//!
//! ```sh
//! cargo build --release --example ctr-bench
//! unshare --pid --fork --kill-child --mount --mount-proc \
//!     target/release/examples/ctr-bench IMAGE.squashfs 20 [--sleep] [--dir ROOTFS_DIR]
//! ```
//! Default: the init is `/bin/true`; an iteration is `start` (volumes, cgroup, clone, mounts,
//! pivot_root, exec) then waiting for its exit and the teardown. `--sleep`: the init is
//! `sleep 1000` and stop is the kill path (`stop_and_wait` with no grace: cgroup.kill).
//! The storage, volumes and cgroup live in a temporary directory / child cgroup that are
//! removed at the end.
#[path = "../tests/support/mod.rs"]
mod support;

use pantavisor::container::{Engine, Exit};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(image), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u32>().ok()))
    else {
        eprintln!("usage: ctr-bench IMAGE.squashfs N [--sleep]");
        std::process::exit(2);
    };
    let sleep = args.iter().any(|a| a == "--sleep");
    if std::process::id() != 1 {
        eprintln!("ctr-bench: run me as PID 1 of new namespaces: unshare --pid --fork --kill-child --mount --mount-proc ...");
        std::process::exit(2);
    }
    let tmp = std::env::temp_dir().join(format!("pv-ctr-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).expect("temp dir");
    // a cgroup of our own, so lxc/bench never meets another device's
    let cg = pantavisor::container::discover_cgroup_root()
        .ok()
        .map(|r| r.join(format!("pv-ctr-bench-{}", std::process::id())));
    if let Some(cg) = &cg {
        if std::fs::create_dir(cg).is_ok() {
            let _ = std::fs::write(cg.join("cgroup.procs"), "0");
        }
    }
    let cmd = if sleep {
        "lxc.init.cmd = /bin/sleep \"1000\"\n"
    } else {
        "lxc.init.cmd = /bin/true\n"
    };
    // --dir DIR: the root file system is a plain directory (no loop device, no squashfs, no
    // overlay), to compare the engine itself with a runtime given a prepared directory
    let dir = args
        .iter()
        .position(|a| a == "--dir")
        .and_then(|i| args.get(i + 1));
    let ctr = match dir {
        Some(d) => {
            let config = support::base_config("bench", &format!("{cmd}lxc.rootfs.path = {d}\n"));
            let mut c = support::Ctr::busybox("bench", &PathBuf::from(image), &config);
            c.root_volume = None;
            c.storage.clear();
            c
        }
        None => support::Ctr::busybox(
            "bench",
            &PathBuf::from(image),
            &support::base_config("bench", cmd),
        ),
    };
    let state = support::install_revision(&tmp.join("storage"), "1", &[ctr]);
    let mut engine = Engine::new(support::paths(&tmp), support::options(Duration::ZERO));

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut totals = Vec::new();
    let mut failed = false;
    for i in 0..n {
        let t0 = Instant::now();
        if let Err(e) = engine.start("1", &state, "bench") {
            eprintln!("iteration {i}: {e}");
            failed = true;
            break;
        }
        let t1 = Instant::now();
        let exit = if sleep {
            engine.stop_and_wait("bench", Duration::ZERO)
        } else {
            engine.wait_exit("bench", Duration::from_secs(10))
        };
        let t2 = Instant::now();
        let ok = matches!(
            exit,
            Ok(Some(Exit::Code(0))) | Ok(Some(Exit::Signal(libc::SIGKILL)))
        );
        println!(
            "iteration {i}: start {:.2} ms, stop {:.2} ms, total {:.2} ms{}",
            ms(t1 - t0),
            ms(t2 - t1),
            ms(t2 - t0),
            if ok {
                String::new()
            } else {
                format!(" ({exit:?})")
            }
        );
        totals.push(ms(t2 - t0));
        if !ok {
            failed = true;
            break;
        }
    }
    drop(engine);
    if !totals.is_empty() {
        let mut s = totals.clone();
        s.sort_by(f64::total_cmp);
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        println!(
            "summary: n {} mean {:.2} ms median {:.2} ms min {:.2} ms max {:.2} ms",
            s.len(),
            mean,
            s.get(s.len() / 2).copied().unwrap_or(0.0),
            s.first().copied().unwrap_or(0.0),
            s.last().copied().unwrap_or(0.0)
        );
    }
    let leaked = (support::mounts_under(&tmp), support::loops_under(&tmp));
    let _ = std::fs::remove_dir_all(&tmp);
    if let Some(cg) = &cg {
        // leave our cgroup before removing it
        if let Ok(parent) = pantavisor::container::discover_cgroup_root() {
            if let Some(up) = parent.parent() {
                let _ = std::fs::write(up.join("cgroup.procs"), "0");
            }
        }
        let _ = std::fs::remove_dir(cg.join("lxc"));
        let _ = std::fs::remove_dir(cg);
    }
    if !leaked.0.is_empty() || !leaked.1.is_empty() {
        eprintln!("leaked: mounts {:?} loops {:?}", leaked.0, leaked.1);
        failed = true;
    }
    std::process::exit(i32::from(failed));
}
