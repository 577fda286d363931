use super::*;

// One test function: the signal mask is per thread and libtest runs tests on threads.
#[test]
fn deadlines_inbox_fds_and_signals() {
    let mut lp = EventLoop::new(&[libc::SIGUSR2]).unwrap();
    let mut out = Vec::new();
    let t0 = EventLoop::now_ms();
    lp.after(80, 2);
    let first = lp.after(30, 1);
    let cancelled = lp.after(10, 99);
    lp.cancel(cancelled);
    let _ = first;
    while out.len() < 2 {
        lp.wait(&mut out, Some(1000)).unwrap();
    }
    assert_eq!(out, vec![Wake::Deadline(1), Wake::Deadline(2)]);
    let took = EventLoop::now_ms() - t0;
    assert!((80..500).contains(&took), "deadlines fired after {took} ms");
    assert_eq!(lp.pending_deadlines(), 0);

    // inbox from another thread
    out.clear();
    let fd = lp.inbox_fd();
    std::thread::spawn(move || ev::eventfd_signal(fd).unwrap())
        .join()
        .unwrap();
    lp.wait(&mut out, Some(1000)).unwrap();
    assert_eq!(out, vec![Wake::Inbox]);

    // a watched pipe
    out.clear();
    let (r, w) = std::io::pipe().unwrap();
    lp.watch(r.as_raw_fd(), libc::POLLIN, 7);
    use std::io::Write;
    (&w).write_all(b"x").unwrap();
    lp.wait(&mut out, Some(1000)).unwrap();
    assert_eq!(out, vec![Wake::Fd(7, libc::POLLIN)]);
    lp.unwatch(r.as_raw_fd());

    // a signal to this thread arrives through the signalfd
    out.clear();
    // to the calling thread, where SIGUSR2 is blocked (a process-wide kill could hit
    // another test thread and end the process)
    ev::raise(libc::SIGUSR2).unwrap();
    lp.wait(&mut out, Some(1000)).unwrap();
    assert!(
        matches!(out.as_slice(), [Wake::Signal(s, _)] if *s == libc::SIGUSR2),
        "{out:?}"
    );

    // nothing pending: the bounded wait returns empty
    out.clear();
    lp.wait(&mut out, Some(20)).unwrap();
    assert!(out.is_empty());
}

#[test]
fn the_longest_handling_between_two_waits_is_measured() {
    let mut lp = EventLoop::new(&[]).unwrap();
    let mut out = Vec::new();
    assert_eq!(lp.max_stall_us(), 0);
    lp.wait(&mut out, Some(0)).unwrap();
    assert_eq!(
        lp.max_stall_us(),
        0,
        "nothing handled before the first wait"
    );
    // the device holds the loop for 50 ms handling what woke it
    std::thread::sleep(std::time::Duration::from_millis(50));
    lp.wait(&mut out, Some(0)).unwrap();
    let slow = lp.max_stall_us();
    assert!((50_000..5_000_000).contains(&slow), "{slow} us");
    assert_eq!(lp.last_stall_us(), slow);
    // a quick batch after it: the maximum stays, the last is small
    lp.wait(&mut out, Some(0)).unwrap();
    assert_eq!(lp.max_stall_us(), slow);
    assert!(lp.last_stall_us() < slow);
    // the time spent waiting in poll is not handling time
    lp.reset_max_stall();
    lp.wait(&mut out, Some(80)).unwrap();
    lp.wait(&mut out, Some(0)).unwrap();
    assert!(lp.max_stall_us() < 50_000, "{} us", lp.max_stall_us());
}
