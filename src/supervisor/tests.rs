use super::recovery::{backoff_delay, on_exit, Counters, Decision};
use super::*;
use crate::state::{AutoRecovery, BackoffPolicy, RecoveryPolicy, StatusGoal};

#[test]
fn status_order_is_upstreams() {
    use Status::*;
    let order = [
        None, Installed, Mounted, Blocked, Starting, Started, Ready, Recovering, Stopping, Stopped,
    ];
    for w in order.windows(2) {
        assert!(w[0] < w[1], "{:?} < {:?}", w[0], w[1]);
    }
    assert_eq!(Recovering.as_str(), "RECOVERING");
}

#[test]
fn goal_check_rows() {
    use Status::*;
    let g = StatusGoal::Started;
    assert_eq!(check_goal(Started, g, false), Goal::Achieved);
    assert_eq!(check_goal(Started, g, true), Goal::Achieved);
    // not yet started: no timeout applies
    assert_eq!(check_goal(Blocked, g, true), Goal::Unachieved);
    assert_eq!(check_goal(Installed, g, true), Goal::Unachieved);
    // started but below the goal: until the timer expires
    assert_eq!(check_goal(Starting, g, false), Goal::Unachieved);
    assert_eq!(check_goal(Starting, g, true), Goal::TimedOut);
    assert_eq!(check_goal(Started, StatusGoal::Ready, true), Goal::TimedOut);
    // past the goal
    assert_eq!(check_goal(Ready, g, false), Goal::NotBlocking);
    assert_eq!(check_goal(Stopped, g, false), Goal::NotBlocking);
    assert_eq!(
        check_goal(Mounted, StatusGoal::Mounted, false),
        Goal::Achieved
    );
}

#[test]
fn groups_and_revision() {
    use Status::*;
    assert_eq!(
        group_goal(&[Goal::Achieved, Goal::TimedOut]),
        Goal::TimedOut
    );
    assert_eq!(
        group_goal(&[Goal::Unachieved, Goal::TimedOut]),
        Goal::Unachieved
    );
    assert_eq!(
        group_goal(&[Goal::Achieved, Goal::NotBlocking]),
        Goal::Achieved
    );
    assert_eq!(group_goal(&[]), Goal::Achieved);
    assert_eq!(
        group_status(&[
            (Started, Goal::Achieved),
            (Starting, Goal::Unachieved),
            (Blocked, Goal::Unachieved)
        ]),
        Blocked
    );
    assert_eq!(
        group_status(&[(Started, Goal::Achieved), (Ready, Goal::NotBlocking)]),
        Ready
    );
    assert_eq!(revision_status(&[Ready, Started, Ready]), Started);
    assert!(may_start(&[Goal::Achieved, Goal::TimedOut]));
    assert!(!may_start(&[Goal::Achieved, Goal::Unachieved]));
    assert!(may_start(&[]));
}

#[test]
fn status_table_cells_that_matter() {
    use Action::*;
    use Event as E;
    use Status as S;
    let st = StatusGoal::Started;
    assert_eq!(next(S::Installed, E::Blocked, st), Become(S::Blocked));
    assert_eq!(next(S::Blocked, E::Unblocked, st), Mount);
    assert_eq!(
        next(S::Installed, E::Mounted, StatusGoal::Mounted),
        Become(S::Mounted)
    );
    assert_eq!(next(S::Installed, E::Mounted, st), Spawn);
    assert_eq!(next(S::Starting, E::Execed, st), Become(S::Started));
    assert_eq!(
        next(S::Started, E::SignalReady, StatusGoal::Ready),
        Become(S::Ready)
    );
    assert_eq!(
        next(S::Started, E::SignalReady, st),
        Ignore,
        "ready only for READY goals"
    );
    for s in [S::Starting, S::Started, S::Ready] {
        assert_eq!(next(s, E::Exited, st), Recover);
        assert_eq!(next(s, E::StopRequested, st), Halt);
    }
    assert_eq!(next(S::Stopping, E::GraceExpired, st), Kill);
    assert_eq!(next(S::Stopping, E::Exited, st), Unmount);
    assert_eq!(next(S::Stopping, E::StopRequested, st), Ignore);
    assert_eq!(next(S::Recovering, E::RetryTimer, st), Restart);
    assert_eq!(next(S::Recovering, E::StopRequested, st), Unmount);
    assert_eq!(next(S::Stopped, E::StartRequested, st), Restart);
    assert_eq!(
        next(S::Started, E::StartRequested, st),
        Ignore,
        "already running: no-op"
    );
    assert_eq!(next(S::Stopped, E::Exited, st), Ignore);
    assert_eq!(next(S::Ready, E::RetryTimer, st), Ignore, "stale timer");
}

#[test]
fn start_failures_and_recovery_outcomes() {
    use Action::*;
    use Event as E;
    use Status as S;
    let st = StatusGoal::Started;
    // a failed mount (INSTALLED/BLOCKED) or spawn (STARTING) counts as an exit
    for s in [S::None, S::Installed, S::Blocked, S::Starting] {
        assert_eq!(next(s, E::StartFailed, st), Recover, "{s:?}");
    }
    for s in [S::Started, S::Ready, S::Stopping, S::Stopped, S::Recovering] {
        assert_eq!(next(s, E::StartFailed, st), Ignore, "{s:?}");
    }
    // what auto-recovery decided, applied to the STOPPED container it left
    assert_eq!(next(S::Stopped, E::RetryNow, st), Restart);
    assert_eq!(next(S::Stopped, E::RetryLater, st), Become(S::Recovering));
    for s in [S::Installed, S::Started, S::Recovering, S::Stopping] {
        assert_eq!(next(s, E::RetryNow, st), Ignore, "{s:?}");
        assert_eq!(next(s, E::RetryLater, st), Ignore, "{s:?}");
    }
}

fn ar(
    policy: RecoveryPolicy,
    max: u32,
    delay: u32,
    factor: f64,
    backoff: BackoffPolicy,
) -> AutoRecovery {
    AutoRecovery {
        policy,
        max_retries: max,
        retry_delay: delay,
        backoff_factor: factor,
        backoff_policy: backoff,
        ..AutoRecovery::default()
    }
}

#[test]
fn no_policy_and_unless_stopped_are_errors() {
    for p in [RecoveryPolicy::No, RecoveryPolicy::UnlessStopped] {
        let a = ar(p, 5, 1, 2.0, BackoffPolicy::Never);
        assert_eq!(
            on_exit(&a, Counters::default(), 10, false).0,
            Decision::Error
        );
    }
}

#[test]
fn retries_grow_by_the_backoff_factor_then_follow_backoff_policy() {
    let a = ar(RecoveryPolicy::OnFailure, 3, 5, 2.0, BackoffPolicy::Never);
    let mut c = Counters::default();
    let mut delays = vec![];
    for _ in 0..3 {
        let (d, n) = on_exit(&a, c, 1, false);
        let Decision::Retry { delay } = d else {
            panic!("{d:?}")
        };
        delays.push(delay);
        c = n;
    }
    assert_eq!(delays, vec![5, 10, 20]);
    assert_eq!(on_exit(&a, c, 1, false).0, Decision::GiveUp);
    // the same exhaustion during an update is an error (rollback), whatever the policy
    assert_eq!(on_exit(&a, c, 1, true).0, Decision::Error);
    let reboot = AutoRecovery {
        backoff_policy: BackoffPolicy::Reboot,
        ..a
    };
    assert_eq!(on_exit(&reboot, c, 1, false).0, Decision::Error);
    let wait = AutoRecovery {
        backoff_policy: BackoffPolicy::Duration(60),
        ..a
    };
    assert_eq!(
        on_exit(&wait, c, 1, false),
        (Decision::Wait { delay: 60 }, Counters { retries: 0 })
    );
}

#[test]
fn unlimited_retries_reset_window_and_factor_edge_cases() {
    let a = ar(RecoveryPolicy::Always, 0, 0, 1.0, BackoffPolicy::Reboot);
    assert_eq!(
        on_exit(&a, Counters { retries: 1000 }, 1, false),
        (Decision::Retry { delay: 0 }, Counters { retries: 1001 })
    );
    let w = AutoRecovery {
        reset_window: 30,
        max_retries: 2,
        ..a
    };
    // ran longer than the window: the counter restarts
    assert_eq!(
        on_exit(&w, Counters { retries: 2 }, 31, false),
        (Decision::Retry { delay: 0 }, Counters { retries: 1 })
    );
    assert_eq!(
        on_exit(&w, Counters { retries: 2 }, 30, false).0,
        Decision::Error
    );
    // a factor at or below 1 is ignored; truncation to whole seconds; saturation
    let f = ar(RecoveryPolicy::OnFailure, 0, 3, 0.5, BackoffPolicy::Reboot);
    assert_eq!(backoff_delay(&f, 4), 3);
    let g = ar(RecoveryPolicy::OnFailure, 0, 3, 1.5, BackoffPolicy::Reboot);
    assert_eq!(backoff_delay(&g, 2), 4);
    assert_eq!(backoff_delay(&g, 3), 6);
    let huge = ar(
        RecoveryPolicy::OnFailure,
        0,
        u32::MAX,
        1e300,
        BackoffPolicy::Reboot,
    );
    assert_eq!(backoff_delay(&huge, u32::MAX), u64::MAX);
}
