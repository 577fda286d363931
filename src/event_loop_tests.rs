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
