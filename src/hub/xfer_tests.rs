use super::*;

#[test]
fn workers_are_at_least_one_at_most_the_jobs_and_the_bound() {
    assert_eq!(workers(5, 6), 5);
    assert_eq!(workers(3, 2), 2);
    assert_eq!(workers(0, 6), 1);
    assert_eq!(workers(u64::MAX, 1000), MAX_WORKERS);
    assert_eq!(workers(5, 0), 0);
}

#[test]
fn a_plan_keeps_at_most_max_in_flight_in_order() {
    let mut p = Plan::new(["a", "b", "c", "d"], 2);
    assert_eq!(p.start(), Some("a"));
    assert_eq!(p.start(), Some("b"));
    assert_eq!(p.start(), None, "two in flight already");
    assert!(!p.over());
    p.ended();
    assert_eq!(p.start(), Some("c"));
    assert_eq!(p.start(), None);
    // a job tried again goes before the others
    p.ended();
    p.again("a");
    assert_eq!(p.start(), Some("a"));
    p.ended();
    p.ended();
    assert_eq!(p.start(), Some("d"));
    assert!(!p.over());
    p.ended();
    assert_eq!(p.start(), None);
    assert!(p.over());
}

#[test]
fn a_stopped_plan_starts_nothing_and_is_over_once_the_flight_landed() {
    let mut p = Plan::new(1..=5, 3);
    assert_eq!((p.start(), p.start()), (Some(1), Some(2)));
    p.stop();
    assert!(p.stopped());
    assert_eq!(p.start(), None);
    p.ended();
    assert!(!p.over(), "one still in flight");
    p.ended();
    assert!(p.over());
    // a max of 0 is upstream's minimum, 1
    let mut one = Plan::new([7, 8], 0);
    assert_eq!((one.start(), one.start()), (Some(7), None));
    assert!(Plan::<u8>::new([], 4).over());
}

#[test]
fn what_a_try_at_an_object_leads_to() {
    assert_eq!(next(&Got::Stored, 0, 0), Next::Stored);
    assert_eq!(next(&Got::WrongBytes, 1, 0), Next::Again);
    assert_eq!(next(&Got::WrongBytes, 2, 0), Next::Again);
    assert_eq!(next(&Got::WrongBytes, WRONG_BYTES_TRIES, 0), Next::Refuse);
    assert_eq!(next(&Got::NewUrl, 0, 0), Next::Renew);
    assert_eq!(next(&Got::NewUrl, 0, RENEWALS - 1), Next::Renew);
    // a URL refused over and over: the next round, not a loop
    assert_eq!(next(&Got::NewUrl, 0, RENEWALS), Next::RenewAndStop);
    assert_eq!(next(&Got::Later("cut".into()), 0, 0), Next::RenewAndStop);
}

#[test]
fn every_is_due_once_a_period() {
    let t0 = Instant::now();
    let s = Duration::from_secs(1);
    let mut e = Every::new(6 * s, t0);
    assert!(!e.due(t0));
    assert_eq!(e.left(t0 + 2 * s), 4 * s);
    assert!(!e.due(t0 + 5 * s));
    assert!(e.due(t0 + 6 * s));
    assert!(!e.due(t0 + 7 * s), "the period starts again when due");
    assert_eq!(e.left(t0 + 7 * s), 5 * s);
    assert!(e.due(t0 + 20 * s));
    assert_eq!(e.left(t0 + 30 * s), Duration::ZERO);
    // a clock read before the start is not a panic
    assert_eq!(Every::new(s, t0 + s).left(t0), s);
}

/// The pool itself, with jobs that need no network: every job sent comes back as an event,
/// the workers end when the daemon's side returns, and none at all is an error, not a hang.
#[test]
fn workers_answer_every_job_and_end_with_the_round() {
    use crate::hub::session::Route;
    let dir = std::env::temp_dir().join(format!("pv-xfer-{}", std::process::id()));
    let data = b"an object already stored";
    let sha = crate::storage::objects::sha256_hex(data);
    std::fs::create_dir_all(dir.join("objects")).unwrap();
    std::fs::write(dir.join("objects").join(&sha), data).unwrap();
    let route = Route {
        host: "127.0.0.1".into(),
        port: 9,
        proxy: None,
        proxy_connect: false,
        timeout: Duration::from_secs(1),
    };
    let ctx = Ctx {
        dialer: Dialer::new(route, None),
        // no token: a metadata job is a 401 without a request
        token: None,
        storage: dir.clone(),
    };
    let (mut meta, mut fetched) = (None, None);
    with_workers(2, &ctx, |pool| {
        pool.send(Job::Meta(0, "ab".into()));
        pool.send(Job::Fetch {
            id: 1,
            sha: sha.clone(),
            size: data.len() as u64,
            url: "http://127.0.0.1:9/x".into(),
            fetcher: Fetcher::default(),
        });
        while meta.is_none() || fetched.is_none() {
            match pool.recv(Duration::from_secs(30)) {
                Ok(Some(Event::Meta { id, res, answered })) => meta = Some((id, res, answered)),
                Ok(Some(Event::Fetched {
                    id, got, answered, ..
                })) => fetched = Some((id, got, answered)),
                Ok(Some(Event::Bytes(..))) => {}
                Ok(None) => panic!("no event in 30 s"),
                Err(e) => panic!("{e}"),
            }
        }
    });
    assert_eq!(meta, Some((0, Err(MetaErr::Unauthorized), None)));
    assert_eq!(fetched, Some((1, Got::Stored, None)));
    let none = with_workers(0, &ctx, |pool| pool.recv(Duration::from_secs(30)));
    assert!(none.is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
