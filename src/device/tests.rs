//! The device's decisions, row by row, without root: the model is driven by typed inputs and
//! the effects it asks for are checked.
use super::commands::{Answer, Command, CtrAction, Refusal, Request};
use super::containers::Ctr;
use super::model::{step, Effect, Input, Model, Outcome, Phase};
use super::probation::Gate;
use super::timers::Timer;
use super::updates::{factory_in_use, gc_keep};
use crate::bootloader::BootEnv;
use crate::logs::Level;
use crate::state::{AutoRecovery, BackoffPolicy, RecoveryPolicy, RestartPolicy, StatusGoal};
use crate::supervisor::Status;
use crate::sys::power::Power;
use crate::update::progress::{msg, Status as P};

fn ctr(name: &str, group: usize, goal: StatusGoal, ar: AutoRecovery) -> Ctr {
    Ctr::installed(name, group, goal, RestartPolicy::Container, ar)
}

fn on_failure(retry_delay: u32, stable_timeout: u32) -> AutoRecovery {
    AutoRecovery {
        policy: RecoveryPolicy::OnFailure,
        retry_delay,
        stable_timeout,
        backoff_policy: BackoffPolicy::Reboot,
        ..AutoRecovery::default()
    }
}

fn none() -> AutoRecovery {
    AutoRecovery::default()
}

/// In appengine mode, where no daemon of this build runs (`daemons_tests.rs` has theirs).
fn model(ctrs: Vec<Ctr>, groups: usize, trying: bool) -> Model {
    Model::new(
        ctrs,
        vec![10; groups],
        trying,
        3,
        5000,
        crate::config::InitMode::Appengine,
    )
}

/// Feeds `input` and, like the interpreter, every input the effects produce when the engine
/// succeeds (mounts mount, spawns exec); returns every effect seen.
fn run(m: &mut Model, input: Input, now: u64) -> Vec<Effect> {
    let mut all = Vec::new();
    let mut queue = vec![input];
    while let Some(i) = queue.pop() {
        for e in step(m, i, now) {
            match &e {
                Effect::Mount(i) => queue.push(Input::Mounted(*i)),
                Effect::Spawn(i) => queue.push(Input::Spawned(*i)),
                _ => {}
            }
            all.push(e);
        }
    }
    all
}

/// Evaluates until nothing changes.
fn settle(m: &mut Model, now: u64) -> Vec<Effect> {
    let mut all = Vec::new();
    for _ in 0..32 {
        let fx = run(m, Input::Evaluate, now);
        if fx.is_empty() {
            return all;
        }
        all.extend(fx);
    }
    panic!("the model does not settle: {all:?}")
}

fn status(m: &Model, name: &str) -> Status {
    m.ctrs[m.index(name).unwrap()].status
}

fn run_of(m: &Model, name: &str) -> u32 {
    m.ctrs[m.index(name).unwrap()].run
}

fn has(fx: &[Effect], e: &Effect) -> bool {
    fx.contains(e)
}

#[test]
fn groups_start_in_order_and_the_status_is_published() {
    let mut m = model(
        vec![
            ctr("data", 0, StatusGoal::Mounted, none()),
            ctr("os", 1, StatusGoal::Started, none()),
            ctr("app", 2, StatusGoal::Started, none()),
        ],
        3,
        false,
    );
    let fx = run(&mut m, Input::Evaluate, 0);
    // one pass: data mounted (its goal), os blocked behind it in this pass, app blocked
    assert!(has(&fx, &Effect::Mount(0)));
    assert!(
        !has(&fx, &Effect::Spawn(0)),
        "a MOUNTED goal is not spawned"
    );
    assert_eq!(status(&m, "data"), Status::Mounted);
    assert_eq!(status(&m, "app"), Status::Blocked);
    let fx = settle(&mut m, 0);
    assert!(has(&fx, &Effect::Spawn(1)) && has(&fx, &Effect::Spawn(2)));
    assert_eq!(status(&m, "os"), Status::Started);
    assert_eq!(status(&m, "app"), Status::Started);
    assert!(has(
        &fx,
        &Effect::Arm(Timer::Goal(run_of(&m, "os")), 10_000)
    ));
    assert!(has(&fx, &Effect::Publish(Status::Ready)));
    // settled: nothing more happens
    assert!(settle(&mut m, 0).is_empty());
    assert_eq!(m.upstream_state(), "WAIT");
}

#[test]
fn every_start_is_a_new_run() {
    let mut m = model(
        vec![ctr("a", 0, StatusGoal::Started, on_failure(0, 0))],
        1,
        false,
    );
    settle(&mut m, 0);
    let first = run_of(&m, "a");
    let fx = run(&mut m, Input::Exited(0), 5000);
    assert!(has(&fx, &Effect::Cancel(Timer::Goal(first))));
    assert_eq!(status(&m, "a"), Status::Installed, "retry_delay 0: at once");
    settle(&mut m, 5000);
    assert_ne!(run_of(&m, "a"), first);
    assert_eq!(status(&m, "a"), Status::Started);
}

/// Defect: a STABLE timer armed before a crash-and-restart marked the new run stable early,
/// so an update committed without its full stability hold.
#[test]
fn a_stable_timer_of_an_ended_run_is_cancelled_and_void() {
    let mut m = model(
        vec![ctr("a", 0, StatusGoal::Started, on_failure(1, 8))],
        1,
        true,
    );
    let fx = settle(&mut m, 0);
    let r1 = run_of(&m, "a");
    assert!(has(&fx, &Effect::Arm(Timer::Stable(r1), 8000)));
    assert!(has(&fx, &Effect::Progress(P::Testing, msg::TESTING_REBOOT)));
    // it crashes 3 s in: the run's timers are cancelled, a retry is armed
    let fx = run(&mut m, Input::Exited(0), 3000);
    assert!(has(&fx, &Effect::Cancel(Timer::Stable(r1))));
    assert!(has(&fx, &Effect::Arm(Timer::Retry(r1), 1000)));
    assert_eq!(status(&m, "a"), Status::Recovering);
    run(&mut m, Input::Timer(Timer::Retry(r1)), 4000);
    let fx = settle(&mut m, 4000);
    let r2 = run_of(&m, "a");
    assert_ne!(r1, r2);
    assert!(has(&fx, &Effect::Arm(Timer::Stable(r2), 8000)));
    // the commit delay passes; a late fire of the old run's timer must not count
    run(&mut m, Input::Timer(Timer::Commit), 5000);
    run(&mut m, Input::Timer(Timer::Stable(r1)), 8000);
    let fx = settle(&mut m, 8000);
    assert!(has(&fx, &Effect::Progress(P::Testing, msg::WAIT_STABLE)));
    assert!(!fx.iter().any(|e| matches!(e, Effect::Finish { .. })));
    assert!(!m.ctrs[0].stable);
    // the new run's own timer commits
    run(&mut m, Input::Timer(Timer::Stable(r2)), 12_000);
    let fx = settle(&mut m, 12_000);
    assert!(has(&fx, &Effect::Finish { live: false }));
    assert_eq!(m.gate, Some(Gate::Done));
}

/// Defect: a GOAL timer of an earlier run set `timed_out` on the next one -- on probation a
/// false rollback.
#[test]
fn a_goal_timer_of_an_ended_run_does_not_time_out_the_next() {
    let mut m = model(
        vec![ctr("a", 0, StatusGoal::Ready, on_failure(0, 0))],
        1,
        true,
    );
    settle(&mut m, 0);
    let r1 = run_of(&m, "a");
    run(&mut m, Input::Exited(0), 2000);
    let fx = settle(&mut m, 2000);
    assert_eq!(status(&m, "a"), Status::Started);
    assert!(has(&fx, &Effect::Cancel(Timer::Goal(r1))) || !fx.is_empty());
    run(&mut m, Input::Timer(Timer::Goal(r1)), 10_000);
    let fx = settle(&mut m, 10_000);
    assert!(!m.ctrs[0].timed_out);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Fail { .. })));
    // its own goal timer does
    let r2 = run_of(&m, "a");
    let mut fx = run(&mut m, Input::Timer(Timer::Goal(r2)), 12_000);
    fx.extend(settle(&mut m, 12_000));
    assert!(has(
        &fx,
        &Effect::Fail {
            container: "a".into(),
            why: msg::GOAL_TIMEOUT
        }
    ));
    // upstream's words: the update's progress carries these ERROR lines
    assert_eq!(
        errors(&fx),
        [
            (
                "platforms",
                "platform 'a' status goal timed out after waiting for more than 10 secs".into()
            ),
            (
                "controller",
                "timed out before all goals were met. Rolling back...".into()
            )
        ]
    );
    assert_eq!(m.phase, Phase::Ending(Power::Reboot));
    assert_eq!(m.upstream_state(), "ROLLBACK");
}

/// The ERROR lines among the effects: (source, line).
fn errors(fx: &[Effect]) -> Vec<(&'static str, String)> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Log(Level::Error, src, line) => Some((*src, line.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn probation_commits_after_the_delay_and_stability() {
    let mut m = model(
        vec![
            ctr("a", 0, StatusGoal::Started, on_failure(1, 2)),
            ctr("b", 0, StatusGoal::Started, none()),
        ],
        1,
        true,
    );
    assert_eq!(m.upstream_state(), "UPDATE");
    let fx = settle(&mut m, 0);
    assert!(has(&fx, &Effect::Arm(Timer::Commit, 3000)));
    assert!(matches!(
        m.gate,
        Some(Gate::Testing {
            delay_over: false,
            ..
        })
    ));
    // stable before the delay: the delay decides
    let a = run_of(&m, "a");
    run(&mut m, Input::Timer(Timer::Stable(a)), 2000);
    assert!(settle(&mut m, 2000).is_empty());
    run(&mut m, Input::Timer(Timer::Commit), 3000);
    let fx = settle(&mut m, 3000);
    assert!(has(&fx, &Effect::Finish { live: false }));
    // and only once
    assert!(settle(&mut m, 3000).is_empty());
}

#[test]
fn a_container_without_recovery_rolls_an_update_back_and_reboots_a_steady_device() {
    let mut m = model(vec![ctr("a", 0, StatusGoal::Started, none())], 1, true);
    settle(&mut m, 0);
    let fx = run(&mut m, Input::Exited(0), 1000);
    assert!(has(
        &fx,
        &Effect::Fail {
            container: "a".into(),
            why: msg::CONTAINER_FAILED
        }
    ));
    assert!(m.rollback);
    let verdict = [
        ("state", "platform 'a' is not running".to_string()),
        (
            "controller",
            "a platform did not work as expected. Tearing down...".to_string(),
        ),
    ];
    assert_eq!(errors(&fx), verdict);
    let mut m = model(vec![ctr("a", 0, StatusGoal::Started, none())], 1, false);
    settle(&mut m, 0);
    let fx = run(&mut m, Input::Exited(0), 1000);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Fail { .. })));
    assert_eq!(errors(&fx), verdict);
    assert_eq!(m.phase, Phase::Ending(Power::Reboot));
    assert!(!m.rollback);
    assert_eq!(m.upstream_state(), "REBOOT");
}

#[test]
fn a_failed_start_counts_as_an_exit_through_the_table() {
    let mut m = model(
        vec![ctr("a", 0, StatusGoal::Started, on_failure(2, 0))],
        1,
        false,
    );
    let fx = step(&mut m, Input::Evaluate, 0);
    assert_eq!(fx.first(), Some(&Effect::Mount(0)));
    let fx = step(&mut m, Input::StartFailed(0), 0);
    let r = run_of(&m, "a");
    assert!(has(&fx, &Effect::Arm(Timer::Retry(r), 2000)));
    assert_eq!(status(&m, "a"), Status::Recovering);
    assert_eq!(m.ctrs[0].counters.retries, 1);
    // a spawn that fails after the mount: the same
    run(&mut m, Input::Timer(Timer::Retry(r)), 2000);
    step(&mut m, Input::Evaluate, 2000);
    let fx = step(&mut m, Input::Mounted(0), 2000);
    assert_eq!(fx, vec![Effect::Spawn(0)]);
    assert_eq!(status(&m, "a"), Status::Starting);
    step(&mut m, Input::StartFailed(0), 2000);
    assert_eq!(status(&m, "a"), Status::Recovering);
    assert_eq!(m.ctrs[0].counters.retries, 2);
}

#[test]
fn backoff_never_leaves_it_stopped_and_the_device_running() {
    let ar = AutoRecovery {
        max_retries: 1,
        backoff_policy: BackoffPolicy::Never,
        ..on_failure(0, 5)
    };
    let mut m = model(vec![ctr("a", 0, StatusGoal::Started, ar)], 1, false);
    settle(&mut m, 0);
    run(&mut m, Input::Exited(0), 100);
    settle(&mut m, 100);
    run(&mut m, Input::Exited(0), 200);
    assert_eq!(status(&m, "a"), Status::Stopped);
    assert!(m.ctrs[0].recovery_failed);
    assert_eq!(m.phase, Phase::Wait);
    assert!(settle(&mut m, 200)
        .iter()
        .all(|e| matches!(e, Effect::Publish(_))));
}

#[test]
fn shutdown_stops_groups_in_reverse_order_with_a_grace() {
    let mut m = model(
        vec![
            ctr("os", 0, StatusGoal::Started, none()),
            ctr("app", 1, StatusGoal::Started, none()),
            ctr("web", 1, StatusGoal::Started, none()),
        ],
        2,
        false,
    );
    settle(&mut m, 0);
    run(&mut m, Input::Signal(Power::PowerOff, "SIGINT".into()), 0);
    assert_eq!(m.upstream_state(), "POWEROFF");
    let fx = settle(&mut m, 0);
    assert!(has(&fx, &Effect::Halt(1)) && has(&fx, &Effect::Halt(2)));
    assert!(
        !has(&fx, &Effect::Halt(0)),
        "the first group waits for the last"
    );
    let web = run_of(&m, "web");
    assert!(has(&fx, &Effect::Arm(Timer::Grace(web), 5000)));
    // exits during shutdown are not recovered, and no error follows
    run(&mut m, Input::Exited(1), 10);
    assert!(settle(&mut m, 10).is_empty());
    // web overstays its grace: killed
    let fx = run(&mut m, Input::Timer(Timer::Grace(web)), 5000);
    assert_eq!(fx, vec![Effect::Kill(2)]);
    let fx = run(&mut m, Input::Exited(2), 5001);
    assert!(has(&fx, &Effect::Cancel(Timer::Grace(web))));
    let fx = settle(&mut m, 5001);
    assert!(has(&fx, &Effect::Halt(0)));
    assert_eq!(m.finished(), None);
    run(&mut m, Input::Exited(0), 5002);
    assert_eq!(m.finished(), Some(Power::PowerOff));
}

#[test]
fn a_live_switch_stops_what_it_replaces_then_adopts_keeping_the_rest() {
    let mut m = model(
        vec![
            ctr("os", 0, StatusGoal::Started, none()),
            ctr("web", 1, StatusGoal::Started, on_failure(1, 0)),
        ],
        2,
        false,
    );
    settle(&mut m, 0);
    let os = run_of(&m, "os");
    assert!(m
        .request(Request::Command(Command::LocalRun {
            rev: "1".into(),
            commit: false
        }))
        .is_ok());
    let fx = settle(&mut m, 0);
    assert!(has(
        &fx,
        &Effect::Run(Command::LocalRun {
            rev: "1".into(),
            commit: false
        })
    ));
    assert_eq!(m.upstream_state(), "COMMAND");
    run(
        &mut m,
        Input::CommandDone(Outcome::Live {
            stop: vec!["web".into()],
        }),
        0,
    );
    assert_eq!(m.upstream_state(), "UPDATE");
    let fx = settle(&mut m, 0);
    assert!(has(&fx, &Effect::Halt(1)));
    assert!(!has(&fx, &Effect::Adopt), "web still stopping");
    run(&mut m, Input::Exited(1), 100);
    assert_eq!(status(&m, "web"), Status::Stopped, "a stop is not a crash");
    let fx = run(&mut m, Input::Evaluate, 100);
    assert!(has(&fx, &Effect::Adopt));
    // the interpreter adopts the new state's containers
    let fx = m.adopt(
        vec![
            ctr("os", 0, StatusGoal::Started, none()),
            ctr("web", 1, StatusGoal::Started, none()),
            ctr("new", 1, StatusGoal::Started, none()),
        ],
        vec![10, 10],
    );
    assert!(has(&fx, &Effect::Progress(P::Inprogress, msg::TRYING)));
    assert_eq!(status(&m, "os"), Status::Started);
    assert_eq!(run_of(&m, "os"), os, "kept: same run, same timers");
    assert_eq!(status(&m, "web"), Status::Installed);
    let fx = settle(&mut m, 200);
    assert!(has(&fx, &Effect::Spawn(1)) && has(&fx, &Effect::Spawn(2)));
    assert!(has(&fx, &Effect::Progress(P::Testing, msg::TESTING_LIVE)));
    run(&mut m, Input::Timer(Timer::Commit), 3200);
    let fx = settle(&mut m, 3200);
    assert!(has(&fx, &Effect::Finish { live: true }));
}

#[test]
fn commands_one_at_a_time_and_none_during_an_update() {
    let mut m = model(vec![ctr("a", 0, StatusGoal::Started, none())], 1, false);
    settle(&mut m, 0);
    assert_eq!(
        m.request(Request::Command(Command::RunGc)).map(|r| r.0),
        Ok(Answer::Ok)
    );
    assert_eq!(
        m.request(Request::Power(Power::Reboot, "x".into())),
        Err(Refusal::Busy)
    );
    assert_eq!(m.request(Request::Gc), Err(Refusal::Busy));
    settle(&mut m, 0);
    assert_eq!(m.phase, Phase::Command);
    assert_eq!(m.request(Request::Gc), Err(Refusal::Busy), "while it runs");
    run(&mut m, Input::CommandDone(Outcome::Done), 0);
    assert_eq!(m.phase, Phase::Wait);
    // on probation: updates, power commands, user GC and MAKE_FACTORY wait
    let mut m = model(vec![ctr("a", 0, StatusGoal::Started, none())], 1, true);
    settle(&mut m, 0);
    for r in [
        Request::Gc,
        Request::Command(Command::RunGc),
        Request::Command(Command::MakeFactory { rev: "1".into() }),
        Request::Command(Command::LocalRun {
            rev: "2".into(),
            commit: true,
        }),
        Request::Power(Power::PowerOff, "x".into()),
    ] {
        assert_eq!(m.request(r.clone()), Err(Refusal::UpdateActive), "{r:?}");
    }
    // and a queued update blocks them too
    let mut m = model(vec![], 1, false);
    m.command = Some(Command::LocalRun {
        rev: "2".into(),
        commit: false,
    });
    assert!(m.update_active());
    // ending: nothing more
    let mut m = model(vec![], 1, false);
    run(&mut m, Input::Signal(Power::Reboot, "x".into()), 0);
    assert_eq!(m.request(Request::Gc), Err(Refusal::Busy));
}

#[test]
fn container_actions_by_status() {
    use CtrAction::*;
    let mut m = model(
        vec![
            ctr("a", 0, StatusGoal::Started, on_failure(5, 0)),
            Ctr {
                restart_policy: RestartPolicy::System,
                ..ctr("sys", 0, StatusGoal::Started, none())
            },
        ],
        1,
        false,
    );
    settle(&mut m, 0);
    let req = |n: &str, a| Request::Container(n.into(), a);
    assert_eq!(m.request(req("nope", Stop)), Err(Refusal::UnknownContainer));
    assert_eq!(m.request(req("sys", Stop)), Err(Refusal::NotOurs));
    // running: start is a no-op
    let (_, fx) = m.request(req("a", Start)).unwrap();
    assert!(!fx.iter().any(|e| matches!(e, Effect::Halt(_))));
    // stop: halted, user_stopped, not restarted after its exit
    let (_, fx) = m.request(req("a", Stop)).unwrap();
    assert!(has(&fx, &Effect::Halt(0)));
    assert_eq!(m.request(req("a", Restart)), Err(Refusal::BadStatus));
    run(&mut m, Input::Exited(0), 10);
    assert_eq!(status(&m, "a"), Status::Stopped);
    assert!(m.ctrs[0].user_stopped);
    assert_eq!(m.ctrs[0].counters.retries, 0, "no retry consumed");
    settle(&mut m, 10);
    assert_eq!(status(&m, "a"), Status::Stopped);
    // start from STOPPED: fresh, through the normal start path
    m.request(req("a", Start)).unwrap();
    assert_eq!(status(&m, "a"), Status::Installed);
    assert!(!m.ctrs[0].user_stopped);
    settle(&mut m, 20);
    assert_eq!(status(&m, "a"), Status::Started);
    // restart while running: stopped, then started again once down
    m.request(req("a", Restart)).unwrap();
    assert_eq!(status(&m, "a"), Status::Stopping);
    run(&mut m, Input::Exited(0), 30);
    assert_eq!(status(&m, "a"), Status::Installed);
    settle(&mut m, 30);
    assert_eq!(status(&m, "a"), Status::Started);
    // a crash puts it in RECOVERING; restart from there cancels the retry
    run(&mut m, Input::Exited(0), 40);
    let r = run_of(&m, "a");
    assert_eq!(status(&m, "a"), Status::Recovering);
    let (_, fx) = m.request(req("a", Restart)).unwrap();
    assert!(has(&fx, &Effect::Cancel(Timer::Retry(r))));
    assert_eq!(status(&m, "a"), Status::Installed);
    assert_eq!(m.ctrs[0].counters.retries, 0);
    // stop from INSTALLED (not yet mounted) unmounts at once
    let (_, fx) = m.request(req("a", Stop)).unwrap();
    assert!(has(&fx, &Effect::Unmount(0)));
    assert_eq!(status(&m, "a"), Status::Stopped);
}

#[test]
fn ready_only_for_a_ready_goal() {
    let mut m = model(
        vec![
            ctr("r", 0, StatusGoal::Ready, none()),
            ctr("s", 0, StatusGoal::Started, none()),
        ],
        1,
        false,
    );
    assert_eq!(
        m.request(Request::Ready("r".into())),
        Err(Refusal::SignalUnexpected),
        "not started yet"
    );
    settle(&mut m, 0);
    assert!(m.request(Request::Ready("r".into())).is_ok());
    assert_eq!(status(&m, "r"), Status::Ready);
    assert!(
        m.request(Request::Ready("r".into())).is_ok(),
        "again: no-op"
    );
    assert_eq!(
        m.request(Request::Ready("s".into())),
        Err(Refusal::SignalUnexpected)
    );
    assert_eq!(
        m.request(Request::Ready("_pv_".into())),
        Err(Refusal::SignalUnexpected)
    );
}

#[test]
fn gc_keeps_what_the_boot_env_names_and_revision_0_is_guarded() {
    let env = BootEnv {
        rev: Some("3".into()),
        try_rev: Some("4".into()),
    };
    assert_eq!(gc_keep("4", &env, &[], false), vec!["4", "3", "4"]);
    assert_eq!(
        gc_keep("3", &BootEnv::default(), &["locals/x".to_string()], true),
        vec!["3", "locals/x", "0"]
    );
    assert!(factory_in_use("0", &BootEnv::default()));
    assert!(factory_in_use(
        "1",
        &BootEnv {
            rev: Some("0".into()),
            try_rev: None
        }
    ));
    assert!(factory_in_use(
        "1",
        &BootEnv {
            rev: Some("1".into()),
            try_rev: Some("0".into())
        }
    ));
    assert!(!factory_in_use("2", &env));
}

#[test]
fn timer_tokens_round_trip_and_stay_clear_of_pv_ctrl() {
    for t in [
        Timer::Tick,
        Timer::Goal(7),
        Timer::Stable(u32::MAX),
        Timer::Retry(1),
        Timer::Grace(2),
        Timer::Commit,
        Timer::Hook,
    ] {
        assert_eq!(Timer::from_token(t.token()), Some(t));
        assert!(!super::timers::is_ctrl(t.token()));
    }
    assert!(super::timers::is_ctrl(super::timers::CTRL + 3));
    assert_eq!(Timer::from_token(super::timers::CTRL), None);
}

/// PUT /daemons: the flag of a known daemon not run in this init mode (upstream's hwrngd in
/// appengine mode: pid 0, no spawn), 404 for another; ENABLE_SSH is taken while an
/// update is on (upstream refuses only updates, power and UNCLAIM then), a reboot is not.
#[test]
fn daemons_and_ssh_commands() {
    let mut m = model(vec![], 1, true);
    assert_eq!(
        m.request(Request::Daemon("nonexistent-daemon".into(), false))
            .unwrap_err(),
        Refusal::UnknownDaemon
    );
    m.request(Request::Daemon("hwrngd".into(), false)).unwrap();
    assert!(!m.daemons.list[0].respawn);
    assert_eq!(
        m.daemons.list[0].pid(),
        0,
        "never spawned in appengine mode"
    );
    let (_, fx) = m.request(Request::Daemon("hwrngd".into(), true)).unwrap();
    assert!(m.daemons.list[0].respawn);
    assert!(!fx.iter().any(|e| matches!(e, Effect::SpawnDaemon(_))));
    assert!(!step(&mut m, Input::Evaluate, 0)
        .iter()
        .any(|e| matches!(e, Effect::SpawnDaemon(_))));
    assert!(m.update_active());
    assert_eq!(
        m.request(Request::Power(Power::Reboot, "x".into()))
            .unwrap_err(),
        Refusal::UpdateActive
    );
    let (a, _) = m
        .request(Request::Command(Command::DebugSsh(true)))
        .unwrap();
    assert_eq!(a, Answer::Ok);
    assert_eq!(m.command, Some(Command::DebugSsh(true)));
    // one command slot
    assert_eq!(
        m.request(Request::Command(Command::DeferReboot("60".into())))
            .unwrap_err(),
        Refusal::Busy
    );
}

/// Device-meta renderings, as upstream's metadata.c writes them.
#[test]
fn device_meta_values() {
    use super::meta::*;
    assert_eq!(arch("x86_64", 64, true), "x86_64/64/EL");
    assert_eq!(arch("mips", 32, false), "mips/32/EB");
    let cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nstepping\t: 0\nmodel name\t: second\n";
    assert_eq!(
        cpu_model(cpuinfo).as_deref(),
        Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
    );
    assert_eq!(cpu_model("processor\t: 0\nmodel\t\t: 5\n"), None);
    assert_eq!(
        dt_model(b"Raspberry Pi 4 Model B\0").as_deref(),
        Some("Raspberry Pi 4 Model B")
    );
    assert_eq!(dt_model(b""), None);
    assert_eq!(
        time_json(1_700_000_000, 42),
        r#"{"timeval":{"tv_sec":1700000000,"tv_usec":42},"timezone":{"tz_minuteswest":0,"tz_dsttime":0}}"#
    );
    // 5% of 1000 reserved; free beyond it
    assert_eq!(
        storage_json(1000, 300, 5),
        r#"{"total":1000,"free":300,"reserved":50,"real_free":250}"#
    );
    assert_eq!(
        storage_json(1000, 10, 5),
        r#"{"total":1000,"free":10,"reserved":50,"real_free":0}"#
    );
    // no overflow on a huge disk
    assert!(storage_json(u64::MAX, 0, 100).contains(&format!(r#""reserved":{}"#, u64::MAX)));
    let a = |n: &str, f: &'static str, v: &str| (n.to_string(), f, v.to_string());
    assert_eq!(
        interfaces_json(vec![
            a("lo", "ipv4", "127.0.0.1"),
            a("eth0", "ipv6", "fe80::1"),
            a("eth0", "ipv4", "10.0.0.2"),
            a("eth0", "mac", "02:00:00:00:00:01"),
            a("eth0", "ipv4", "10.0.0.3"),
            a("lo", "ipv6", "::1"),
        ]),
        r#"{"lo.ipv4":["127.0.0.1"],"eth0.ipv6":["fe80::1"],"eth0.ipv4":["10.0.0.2","10.0.0.3"],"eth0.mac":["02:00:00:00:00:01"],"lo.ipv6":["::1"]}"#
    );
    assert_eq!(interfaces_json(vec![]), "{}");
    let u = crate::sys::host::Uname {
        sysname: "Linux".into(),
        release: "6.1.0".into(),
        version: "#1 SMP".into(),
        nodename: "dev".into(),
        machine: "x86_64".into(),
    };
    assert_eq!(
        uname_json(&u),
        r##"{"kernel.name":"Linux","kernel.release":"6.1.0","kernel.version":"#1 SMP","node.name":"dev","machine":"x86_64"}"##
    );
    let s = sysinfo_json(&crate::sys::host::SysInfo {
        uptime: 5,
        mem_unit: 1,
        ..Default::default()
    });
    assert!(
        s.starts_with(r#"{"uptime":5,"loads.0":0,"#) && s.ends_with(r#""mem_unit":1}"#),
        "{s}"
    );
}

/// Issue 12: upstream's remote-only gate. A Hub revision tried in remote mode goes on to
/// TESTING only once `pantahub.online` is 1; without it, PH_UPDATER_NETWORK_TIMEOUT rolls it
/// back with "Hub not reachable"; local revisions and local mode never wait for the Hub.
#[test]
fn a_hub_revision_on_probation_waits_for_the_hub_then_commits_or_rolls_back() {
    let tried = |local: bool, remote: bool| {
        let mut m = model(vec![ctr("a", 0, StatusGoal::Started, none())], 1, true);
        m.network_timeout_s = 7;
        run(&mut m, Input::RevisionRuns { local, remote }, 0);
        m
    };
    // online before the goals: no wait
    let mut m = tried(false, true);
    run(&mut m, Input::HubOnline(true), 0);
    let fx = settle(&mut m, 0);
    assert!(has(&fx, &Effect::Arm(Timer::Commit, 3000)), "{fx:?}");
    assert!(has(&fx, &Effect::Cancel(Timer::Network)), "{fx:?}");
    // goals reached, the Hub not yet: waits, armed once; online later: TESTING
    let mut m = tried(false, true);
    let fx = settle(&mut m, 0);
    assert!(has(&fx, &Effect::Arm(Timer::Network, 7000)), "{fx:?}");
    assert!(!has(&fx, &Effect::Arm(Timer::Commit, 3000)));
    assert_eq!(m.gate, Some(Gate::InProgress));
    assert!(m.waits_for_hub());
    assert!(settle(&mut m, 1000).is_empty(), "armed once");
    run(&mut m, Input::HubOnline(true), 2000);
    let fx = settle(&mut m, 2000);
    assert!(has(&fx, &Effect::Arm(Timer::Commit, 3000)), "{fx:?}");
    // the timer of an earlier wait, fired late, does nothing
    assert!(run(&mut m, Input::Timer(Timer::Network), 7000).is_empty());
    // never online: rolled back with upstream's message and line
    let mut m = tried(false, true);
    settle(&mut m, 0);
    let fx = run(&mut m, Input::Timer(Timer::Network), 7000);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Fail { why, .. } if *why == msg::HUB_UNREACHABLE)),
        "{fx:?}"
    );
    assert_eq!(
        errors(&fx),
        vec![(
            "controller",
            "timed out before getting any response from cloud. Rolling back...".to_string()
        )]
    );
    assert!(m.rollback);
    assert_eq!(m.phase, Phase::Ending(Power::Reboot));
    // a local revision (PV_CONTROL_REMOTE_ALWAYS), or local mode: no wait, no timer
    for (local, remote) in [(true, true), (false, false)] {
        let mut m = tried(local, remote);
        let fx = settle(&mut m, 0);
        assert!(
            has(&fx, &Effect::Arm(Timer::Commit, 3000)),
            "{local} {remote}"
        );
        assert!(!has(&fx, &Effect::Arm(Timer::Network, 7000)));
    }
}

/// Issue 12: a Hub step admitted and downloading is kept by GC (the Hub client's space check
/// asks for one), one ended or never admitted is not.
#[test]
fn gc_keeps_the_hub_steps_being_downloaded() {
    use crate::storage::{simfs::SimFs, Storage};
    use crate::update::progress::Progress;
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    st.init_layout().unwrap();
    for (rev, status) in [
        ("1", P::Done),
        ("2", P::Queued),
        ("3", P::Downloading),
        ("4", P::Wontgo),
        ("locals/a", P::New),
    ] {
        st.write_progress(rev, &Progress::new(status, "x")).unwrap();
    }
    assert_eq!(super::updates::admitted(&st), vec!["2", "3"]);
}

/// Issue 12: upstream rolls a Hub revision back when the Hub communication fails while
/// TESTING ("Hub communication not stable"); here when the Hub client reports it lost.
#[test]
fn a_hub_revision_losing_the_hub_while_testing_rolls_back() {
    let tried = |local: bool| {
        let mut m = model(vec![ctr("a", 0, StatusGoal::Started, none())], 1, true);
        run(
            &mut m,
            Input::RevisionRuns {
                local,
                remote: true,
            },
            0,
        );
        run(&mut m, Input::HubOnline(true), 0);
        settle(&mut m, 0);
        assert!(matches!(m.gate, Some(Gate::Testing { .. })));
        m
    };
    let mut m = tried(false);
    // online again, or offline before it was ever online: nothing
    assert!(run(&mut m, Input::HubOnline(true), 100).is_empty());
    let fx = run(&mut m, Input::HubOnline(false), 200);
    assert!(
        fx.iter()
            .any(|e| matches!(e, Effect::Fail { why, .. } if *why == msg::HUB_UNSTABLE)),
        "{fx:?}"
    );
    assert_eq!(
        errors(&fx),
        vec![(
            "controller",
            "connection with cloud not stable during testing, Rolling back...".to_string()
        )]
    );
    assert!(m.rollback);
    // a local revision does not depend on the Hub
    let mut m = tried(true);
    assert!(run(&mut m, Input::HubOnline(false), 200).is_empty());
    assert!(!m.rollback);
}
