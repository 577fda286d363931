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
