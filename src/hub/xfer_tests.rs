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
