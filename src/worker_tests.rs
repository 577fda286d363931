use super::*;
use crate::event_loop::{EventLoop, Wake};
use std::sync::mpsc;
use std::time::Duration;

/// Waits on the loop until the inbox wakes it, then drains (as the device does).
fn next_results(lp: &mut EventLoop, w: &mut Workers) -> Vec<(JobId, Done)> {
    let mut wakes = Vec::new();
    for _ in 0..100 {
        lp.wait(&mut wakes, Some(100)).unwrap();
        if wakes.contains(&Wake::Inbox) {
            let r = w.drain();
            if !r.is_empty() {
                return r;
            }
        }
        wakes.clear();
    }
    panic!("no result within 10 s");
}

fn gc(n: u64) -> Done {
    Done::Gc(Ok(n))
}

#[test]
fn a_job_runs_off_the_loop_and_its_result_wakes_it() {
    let mut lp = EventLoop::new(&[]).unwrap();
    let mut w = Workers::new(lp.inbox_fd());
    assert_eq!(w.busy(), 0);
    assert!(w.drain().is_empty());
    let (release, gate) = mpsc::channel::<()>();
    let t0 = EventLoop::now_ms();
    let id = w.spawn(move || {
        let _ = gate.recv(); // holds until the test lets it go
        gc(42)
    });
    // spawn did not wait for the job, and nothing is there yet
    assert!(EventLoop::now_ms() - t0 < 1000);
    assert_eq!(w.busy(), 1);
    std::thread::sleep(Duration::from_millis(30));
    assert!(
        w.drain().is_empty(),
        "drain never blocks nor invents results"
    );
    release.send(()).unwrap();
    let r = next_results(&mut lp, &mut w);
    assert!(
        matches!(r.as_slice(), [(i, Done::Gc(Ok(42)))] if *i == id),
        "{r:?}"
    );
    assert_eq!(w.busy(), 0);
}

#[test]
fn jobs_run_one_at_a_time_in_order() {
    let mut lp = EventLoop::new(&[]).unwrap();
    let mut w = Workers::new(lp.inbox_fd());
    let ids: Vec<JobId> = (0..4u64)
        .map(|n| {
            w.spawn(move || {
                // the first is the slowest: a second thread would finish the others first
                std::thread::sleep(Duration::from_millis(if n == 0 { 80 } else { 1 }));
                gc(n)
            })
        })
        .collect();
    assert_eq!(w.busy(), 4);
    let mut got = Vec::new();
    while got.len() < 4 {
        got.extend(next_results(&mut lp, &mut w));
    }
    let order: Vec<(JobId, u64)> = got
        .iter()
        .map(|(id, d)| match d {
            Done::Gc(Ok(n)) => (*id, *n),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, ids.iter().copied().zip(0..4).collect::<Vec<_>>());
    assert_eq!(w.busy(), 0);
    w.shutdown();
    // a job after shutdown starts a new thread
    let id = w.spawn(|| gc(7));
    let r = next_results(&mut lp, &mut w);
    assert!(matches!(r.as_slice(), [(i, Done::Gc(Ok(7)))] if *i == id));
}

#[test]
fn a_panicking_job_is_reported_and_the_worker_goes_on() {
    let mut lp = EventLoop::new(&[]).unwrap();
    let mut w = Workers::new(lp.inbox_fd());
    let bad = w.spawn(|| panic!("a bug in a job (expected by this test)"));
    let r = next_results(&mut lp, &mut w);
    assert!(
        matches!(r.as_slice(), [(i, Done::Panicked)] if *i == bad),
        "{r:?}"
    );
    let good = w.spawn(|| Done::Prepared {
        rev: "1".into(),
        result: Ok(()),
    });
    let r = next_results(&mut lp, &mut w);
    assert!(
        matches!(r.as_slice(), [(i, Done::Prepared { rev, result: Ok(()) })] if *i == good && rev == "1"),
        "{r:?}"
    );
}

/// A real storage in a temp dir with revision `rev` staged (objects and `.pvr/json`), as
/// pv-ctrl leaves it before LOCAL_RUN.
fn staged(root: &std::path::Path, rev: &str, tag: &str) -> State {
    use crate::storage::objects::sha256_hex;
    let st = Storage::new(&RealFs, root);
    st.init_layout().unwrap();
    let kernel = format!("kernel {tag}").into_bytes();
    let initrd = b"initrd shared by every revision".to_vec();
    let raw = format!(
        "{{\"#spec\":\"pantavisor-service-system@1\",\"bsp/k\":\"{}\",\"bsp/i\":\"{}\",\"bsp/run.json\":{{\"linux\":\"k\",\"initrd\":\"i\"}}}}",
        sha256_hex(&kernel),
        sha256_hex(&initrd)
    );
    for o in [&kernel, &initrd] {
        st.put_object(&sha256_hex(o), o).unwrap();
    }
    update::stage(&st, rev, raw.as_bytes(), &crate::pvs::Policy::disabled()).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pv-worker-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Bytes the files under `dir` hold on the file system: each inode once.
fn disk_bytes(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut total = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert(m.ino()) {
                total += m.len();
            }
        }
    }
    total
}

#[test]
fn prepare_and_gc_run_as_jobs_on_the_real_storage() {
    let root = tmp("storage");
    let mut lp = EventLoop::new(&[]).unwrap();
    let mut w = Workers::new(lp.inbox_fd());
    let s0 = staged(&root, "0", "zero");
    let s1 = staged(&root, "1", "one");
    for (rev, s) in [("0", s0), ("1", s1.clone())] {
        let id = w.spawn(prepare_job(root.clone(), rev.into(), s));
        let r = next_results(&mut lp, &mut w);
        assert!(
            matches!(r.as_slice(), [(i, Done::Prepared { rev: r, result: Ok(()) })] if *i == id && r == rev),
            "{r:?}"
        );
    }
    let st = Storage::new(&RealFs, &root);
    assert!(update::verify(&st, "1", &s1, crate::storage::trail::Check::Rehash).is_ok());
    st.set_current("1").unwrap();

    // GC of everything but 1: the count is what the file system got back
    let before = disk_bytes(&root);
    w.spawn(gc_job(root.clone(), vec!["1".into()], BTreeSet::new()));
    let r = next_results(&mut lp, &mut w);
    let [(_, Done::Gc(Ok(n)))] = r.as_slice() else {
        panic!("{r:?}")
    };
    assert!(*n > "kernel zero".len() as u64, "{n}");
    assert_eq!(*n, before - disk_bytes(&root));
    assert_eq!(st.list_revisions().unwrap(), vec!["1".to_string()]);

    // a damaged object fails the prepare with the revision named
    let s2 = staged(&root, "2", "two");
    let k2 = crate::storage::objects::sha256_hex(b"kernel two");
    std::fs::write(root.join("objects").join(&k2), b"kernel tw0").unwrap();
    w.spawn(prepare_job(root.clone(), "2".into(), s2));
    let r = next_results(&mut lp, &mut w);
    assert!(
        matches!(r.as_slice(), [(_, Done::Prepared { rev, result: Err(update::Error::Verify { .. }) })] if rev == "2"),
        "{r:?}"
    );
    let _ = std::fs::remove_dir_all(&root);
}
