//! The daemon table's decisions, case by case (upstream's daemons.c and ctrl_daemons_ep.c).
use super::super::commands::{Command, Refusal, Request};
use super::super::containers::Ctr;
use super::super::model::{step, Effect, Input, Model};
use super::super::timers::{self, Timer};
use super::{Run, RESPAWN_MS, TABLE};
use crate::config::InitMode;
use crate::state::{AutoRecovery, RestartPolicy, StatusGoal};
use crate::sys::power::Power;

fn device(ctrs: Vec<Ctr>, mode: InitMode) -> Model {
    Model::new(ctrs, vec![10], false, 3, 5000, mode)
}

fn spawns(fx: &[Effect]) -> usize {
    fx.iter()
        .filter(|e| matches!(e, Effect::SpawnDaemon(_)))
        .count()
}

/// Evaluates and, as the interpreter, answers a spawn with `pid`.
fn evaluate(m: &mut Model, pid: i32) -> Vec<Effect> {
    let fx = step(m, Input::Evaluate, 0);
    for e in &fx {
        if let Effect::SpawnDaemon(i) = e {
            step(m, Input::DaemonSpawned(*i, Some(pid)), 0);
        }
    }
    fx
}

fn hwrngd(m: &Model) -> (i32, bool, Run) {
    let d = &m.daemons.list[0];
    (d.pid(), d.respawn, d.run)
}

/// Upstream's row, exactly, and the Hub client's.
#[test]
fn table_is_upstreams() {
    assert_eq!(TABLE.len(), 2);
    let d = &TABLE[0];
    assert_eq!(d.name, "hwrngd");
    assert_eq!(d.testpath, "/usr/bin/rngd");
    assert_eq!(d.argv, ["/usr/bin/rngd", "-f"]);
    assert_eq!(d.modes, [InitMode::Embedded, InitMode::Standalone]);
    assert!(!d.remote);
    let h = &TABLE[1];
    assert_eq!(h.name, "hub");
    assert_eq!(h.argv, ["/proc/self/exe", "hub"]);
    assert_eq!(h.modes, [InitMode::Embedded, InitMode::Standalone]);
    assert!(h.remote);
    assert!(super::env(d, "/run/pv").is_empty());
    assert_eq!(super::env(h, "/run/pv"), ["PV_CTRL_SOCKET=/run/pv/pv-ctrl"]);
}

/// At start a daemon of the init mode is spawned once; another mode leaves it (pid 0,
/// respawn set, as upstream lists hwrngd in appengine mode).
#[test]
fn spawned_at_start_in_its_modes_only() {
    for mode in [InitMode::Embedded, InitMode::Standalone] {
        let mut m = device(vec![], mode);
        assert_eq!(hwrngd(&m), (0, true, Run::Idle));
        let fx = evaluate(&mut m, 42);
        assert_eq!(fx.first(), Some(&Effect::SpawnDaemon(0)));
        assert_eq!(hwrngd(&m), (42, true, Run::Up(42)));
        assert_eq!(spawns(&evaluate(&mut m, 43)), 0, "spawned once");
        assert_eq!(m.daemons.of_pid(42), Some(0));
        assert_eq!(m.daemons.of_pid(43), None);
    }
    let mut m = device(vec![], InitMode::Appengine);
    assert_eq!(spawns(&evaluate(&mut m, 42)), 0);
    assert_eq!(hwrngd(&m), (0, true, Run::Idle));
}

/// A missing testpath clears respawn: pid 0, never tried again (upstream's "daemon not found").
#[test]
fn missing_testpath_disables_respawn() {
    let mut m = device(vec![], InitMode::Embedded);
    assert_eq!(spawns(&step(&mut m, Input::Evaluate, 0)), 1);
    let fx = step(&mut m, Input::DaemonSpawned(0, None), 0);
    assert!(fx.iter().any(|e| matches!(e, Effect::Log(_, _, l)
        if l == "daemon not found hwrngd: disabling respawn")));
    assert_eq!(hwrngd(&m), (0, false, Run::Idle));
    assert_eq!(spawns(&evaluate(&mut m, 42)), 0);
    assert!(m.daemons.down());
}

/// An exit: pid 0 and a respawn 5 s later, not before.
#[test]
fn exit_respawns_after_5_s() {
    let mut m = device(vec![], InitMode::Standalone);
    evaluate(&mut m, 42);
    let fx = step(&mut m, Input::DaemonExited(0), 0);
    assert!(fx.contains(&Effect::Arm(Timer::Respawn(0), RESPAWN_MS)));
    assert_eq!(RESPAWN_MS, 5000);
    assert_eq!(hwrngd(&m), (0, true, Run::Due));
    assert_eq!(spawns(&evaluate(&mut m, 43)), 0, "not before the timer");
    step(&mut m, Input::Timer(Timer::Respawn(0)), 5000);
    assert_eq!(spawns(&evaluate(&mut m, 43)), 1);
    assert_eq!(hwrngd(&m), (43, true, Run::Up(43)));
    // an exit already handled, or of a pid gone, changes nothing
    assert!(step(&mut m, Input::Timer(Timer::Respawn(0)), 9000).is_empty());
    assert_eq!(hwrngd(&m), (43, true, Run::Up(43)));
}

/// A daemon that exits at once, again and again: one spawn per 5 s timer, never a tight loop;
/// a spawn that fails (fork) counts as an exit.
#[test]
fn exiting_at_once_is_no_tight_loop() {
    let mut m = device(vec![], InitMode::Standalone);
    let mut spawned = 0;
    for round in 0..10 {
        // many wakes between two timers spawn nothing
        for _ in 0..5 {
            let fx = step(&mut m, Input::Evaluate, 0);
            spawned += spawns(&fx);
            if round % 3 == 2 && spawns(&fx) > 0 {
                // the fork failed
                step(&mut m, Input::DaemonExited(0), 0);
            } else if spawns(&fx) > 0 {
                step(&mut m, Input::DaemonSpawned(0, Some(100 + round)), 0);
                let fx = step(&mut m, Input::DaemonExited(0), 0);
                assert!(fx.contains(&Effect::Arm(Timer::Respawn(0), RESPAWN_MS)));
            }
        }
        assert_eq!(spawned, round as usize + 1);
        assert_eq!(m.daemons.list[0].run, Run::Due);
        step(&mut m, Input::Timer(Timer::Respawn(0)), 0);
    }
}

/// PUT /daemons/{name} stop: respawn cleared, SIGTERM, pid -1 once reaped and not respawned;
/// start: respawn set and spawned at once.
#[test]
fn stop_and_start_from_pv_ctrl() {
    let mut m = device(vec![], InitMode::Standalone);
    evaluate(&mut m, 42);
    let (_, fx) = m.request(Request::Daemon("hwrngd".into(), false)).unwrap();
    assert!(fx.contains(&Effect::StopDaemon(42)));
    assert_eq!(hwrngd(&m), (42, false, Run::Stopping(42)));
    let fx = step(&mut m, Input::DaemonExited(0), 0);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Arm(..))));
    assert_eq!(hwrngd(&m), (-1, false, Run::Ended));
    assert_eq!(spawns(&evaluate(&mut m, 43)), 0);
    // stop again: nothing to signal
    let (_, fx) = m.request(Request::Daemon("hwrngd".into(), false)).unwrap();
    assert!(!fx.iter().any(|e| matches!(e, Effect::StopDaemon(_))));

    let (_, fx) = m.request(Request::Daemon("hwrngd".into(), true)).unwrap();
    assert_eq!(spawns(&fx), 0, "spawned by the evaluation that follows");
    assert_eq!(hwrngd(&m), (0, true, Run::Idle));
    assert_eq!(spawns(&evaluate(&mut m, 43)), 1);
    assert_eq!(hwrngd(&m), (43, true, Run::Up(43)));
    // start while it runs: nothing
    let (_, fx) = m.request(Request::Daemon("hwrngd".into(), true)).unwrap();
    assert!(!fx.iter().any(|e| matches!(e, Effect::StopDaemon(_))));
    assert_eq!(spawns(&evaluate(&mut m, 44)), 0);
    assert_eq!(
        m.request(Request::Daemon("rngd".into(), true)).unwrap_err(),
        Refusal::UnknownDaemon
    );
}

/// Stop while its respawn is due: the timer is dropped, pid -1; start then waits for nothing.
/// Start while due keeps the delay.
#[test]
fn stop_and_start_while_respawn_due() {
    let mut m = device(vec![], InitMode::Standalone);
    evaluate(&mut m, 42);
    step(&mut m, Input::DaemonExited(0), 0);
    let (_, fx) = m.request(Request::Daemon("hwrngd".into(), true)).unwrap();
    assert!(fx.iter().all(|e| matches!(e, Effect::Log(..))));
    assert_eq!(spawns(&evaluate(&mut m, 43)), 0, "the 5 s still hold");
    let (_, fx) = m.request(Request::Daemon("hwrngd".into(), false)).unwrap();
    assert!(fx.contains(&Effect::Cancel(Timer::Respawn(0))));
    assert_eq!(hwrngd(&m), (-1, false, Run::Ended));
    m.request(Request::Daemon("hwrngd".into(), true)).unwrap();
    assert_eq!(spawns(&evaluate(&mut m, 43)), 1);
}

/// `pvcontrol daemons restart` is stop then start: the start while it stops sets respawn
/// back, so its exit is respawned 5 s later (upstream's `sleep 5`); one that ignored the
/// SIGTERM is killed at the end.
#[test]
fn restart_and_a_daemon_ignoring_its_sigterm() {
    let mut m = device(vec![], InitMode::Standalone);
    evaluate(&mut m, 42);
    m.request(Request::Daemon("hwrngd".into(), false)).unwrap();
    m.request(Request::Daemon("hwrngd".into(), true)).unwrap();
    assert_eq!(hwrngd(&m), (42, true, Run::Stopping(42)));
    assert_eq!(spawns(&evaluate(&mut m, 43)), 0);
    let fx = step(&mut m, Input::DaemonExited(0), 0);
    assert!(fx.contains(&Effect::Arm(Timer::Respawn(0), RESPAWN_MS)));
    step(&mut m, Input::Timer(Timer::Respawn(0)), 5000);
    assert_eq!(spawns(&evaluate(&mut m, 43)), 1);

    m.request(Request::Daemon("hwrngd".into(), false)).unwrap();
    step(&mut m, Input::Signal(Power::PowerOff, "test".into()), 0);
    let fx = step(&mut m, Input::Evaluate, 0);
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::StopDaemon(_))),
        "signalled already"
    );
    assert!(fx.contains(&Effect::Arm(Timer::DaemonGrace, 5000)));
    let fx = step(&mut m, Input::Timer(Timer::DaemonGrace), 5000);
    assert!(fx.contains(&Effect::KillDaemon(43)));
    assert_eq!(m.finished(), None);
    step(&mut m, Input::DaemonExited(0), 5001);
    assert_eq!(m.finished(), Some(Power::PowerOff));
}

/// Power off: the containers stop first, then every daemon is SIGTERMed with respawn cleared
/// (once), the device ends when they are reaped, and one that stays is killed after the grace.
#[test]
fn shutdown_stops_daemons_after_containers() {
    let web = Ctr::installed(
        "web",
        0,
        StatusGoal::Started,
        RestartPolicy::System,
        AutoRecovery::default(),
    );
    let mut m = device(vec![web], InitMode::Standalone);
    evaluate(&mut m, 42);
    for i in [Input::Mounted(0), Input::Spawned(0)] {
        step(&mut m, i, 0);
    }
    step(&mut m, Input::Signal(Power::PowerOff, "test".into()), 0);
    let fx = step(&mut m, Input::Evaluate, 0);
    assert!(fx.contains(&Effect::Halt(0)));
    assert!(!fx.iter().any(|e| matches!(e, Effect::StopDaemon(_))));
    step(&mut m, Input::Exited(0), 0);
    let fx = step(&mut m, Input::Evaluate, 0);
    assert!(fx.contains(&Effect::StopDaemon(42)));
    assert!(fx.contains(&Effect::Arm(Timer::DaemonGrace, 5000)));
    assert_eq!(hwrngd(&m), (42, false, Run::Stopping(42)));
    assert_eq!(m.finished(), None, "waits for the daemon");
    assert!(
        step(&mut m, Input::Evaluate, 0).is_empty(),
        "SIGTERMed once"
    );
    let fx = step(&mut m, Input::Timer(Timer::DaemonGrace), 5000);
    assert!(fx.contains(&Effect::KillDaemon(42)));
    let fx = step(&mut m, Input::DaemonExited(0), 5001);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Arm(..))));
    assert_eq!(hwrngd(&m), (-1, false, Run::Ended));
    assert_eq!(m.finished(), Some(Power::PowerOff));
    // a start asked now spawns nothing
    m.request(Request::Daemon("hwrngd".into(), true)).ok();
    assert_eq!(spawns(&step(&mut m, Input::Evaluate, 0)), 0);
}

/// Ending while a respawn is due: dropped, nothing to wait for; an exit while ending is not
/// respawned.
#[test]
fn shutdown_drops_a_due_respawn() {
    let mut m = device(vec![], InitMode::Standalone);
    evaluate(&mut m, 42);
    step(&mut m, Input::DaemonExited(0), 0);
    step(&mut m, Input::Signal(Power::Reboot, "test".into()), 0);
    let fx = step(&mut m, Input::Evaluate, 0);
    assert!(fx.contains(&Effect::Cancel(Timer::Respawn(0))));
    assert!(!fx.iter().any(|e| matches!(e, Effect::Arm(..))));
    assert_eq!(m.finished(), Some(Power::Reboot));

    let mut m = device(vec![], InitMode::Standalone);
    evaluate(&mut m, 42);
    step(&mut m, Input::Signal(Power::Reboot, "test".into()), 0);
    // it ends on its own before its SIGTERM
    let fx = step(&mut m, Input::DaemonExited(0), 0);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Arm(..))));
    assert_eq!(m.finished(), Some(Power::Reboot));
}

#[test]
fn tokens() {
    for t in [Timer::Respawn(0), Timer::Respawn(7), Timer::DaemonGrace] {
        assert_eq!(Timer::from_token(t.token()), Some(t));
        assert!(!timers::is_daemon_log(t.token()));
    }
    assert!(timers::is_daemon_log(timers::DAEMON_LOG + 9));
    assert!(!timers::is_ctrl(timers::DAEMON_LOG + 9));
    assert_eq!(Timer::from_token(timers::DAEMON_LOG + 9), None);
}

/// Upstream's `_pv_run`: PV_CONTROL_REMOTE, a local revision local unless
/// PV_CONTROL_REMOTE_ALWAYS (which forces remote there).
#[test]
fn remote_mode_as_upstream_decides_it() {
    use super::remote_mode;
    let hub = cfg!(feature = "hub");
    for always in [false, true] {
        assert_eq!(remote_mode(true, always, false), hub);
        assert!(!remote_mode(false, always, false));
    }
    assert!(!remote_mode(true, false, true));
    assert_eq!(remote_mode(true, true, true), hub);
    assert_eq!(remote_mode(false, true, true), hub);
}

fn hub(m: &Model) -> Option<(i32, bool, Run)> {
    let d = m.daemons.list.iter().find(|d| d.spec.name == "hub")?;
    Some((d.pid(), d.respawn, d.run))
}

fn listed(m: &Model) -> Vec<&'static str> {
    m.daemons.views().iter().map(|d| d.name).collect()
}

/// Issue 12: the Hub client runs in remote mode only: spawned and listed when the device is
/// remote, stopped (not respawned) and unlisted when a local revision runs, spawned again by
/// GO_REMOTE; UPDATE_METADATA wakes it (SIGUSR1) and is refused in local mode.
#[test]
fn the_hub_client_runs_in_remote_mode_only() {
    if !cfg!(feature = "hub") {
        assert_eq!(
            Model::new(vec![], vec![10], false, 3, 5000, InitMode::Standalone)
                .daemons
                .list
                .len(),
            1
        );
        return;
    }
    let mut m = device(vec![], InitMode::Standalone);
    evaluate(&mut m, 40);
    assert_eq!(
        hub(&m),
        Some((0, true, Run::Idle)),
        "not before the mode is known"
    );
    assert_eq!(listed(&m), ["hwrngd"]);
    assert_eq!(
        m.request(Request::UpdateMetadata).map(|_| ()),
        Err(Refusal::LocalMode)
    );
    let fx = step(
        &mut m,
        Input::RevisionRuns {
            local: false,
            remote: true,
        },
        0,
    );
    assert!(fx.contains(&Effect::Mode(true)), "{fx:?}");
    let fx = evaluate(&mut m, 50);
    assert_eq!(fx, vec![Effect::SpawnDaemon(1)]);
    assert_eq!(hub(&m), Some((50, true, Run::Up(50))));
    assert_eq!(listed(&m), ["hwrngd", "hub"]);
    let (_, fx) = m.request(Request::UpdateMetadata).unwrap();
    assert_eq!(fx, vec![Effect::NotifyHub(50)]);
    assert_eq!(
        m.request(Request::Command(Command::GoRemote)).map(|_| ()),
        Err(Refusal::AlreadyRemote)
    );
    // its exit in remote mode: respawned 5 s later, as any daemon
    let fx = step(&mut m, Input::DaemonExited(1), 0);
    assert!(fx.contains(&Effect::Arm(Timer::Respawn(1), RESPAWN_MS)));
    step(&mut m, Input::Timer(Timer::Respawn(1)), 0);
    evaluate(&mut m, 51);
    // a local revision runs (a live switch): stopped, unlisted, and not respawned
    let fx = step(
        &mut m,
        Input::RevisionRuns {
            local: true,
            remote: false,
        },
        0,
    );
    assert!(fx.contains(&Effect::StopDaemon(51)), "{fx:?}");
    assert!(fx.contains(&Effect::Mode(false)));
    assert_eq!(listed(&m), ["hwrngd"]);
    let fx = step(&mut m, Input::DaemonExited(1), 0);
    assert!(!fx.iter().any(|e| matches!(e, Effect::Arm(..))), "{fx:?}");
    assert_eq!(hub(&m), Some((0, true, Run::Idle)));
    assert!(evaluate(&mut m, 52).is_empty());
    // GO_REMOTE: queued as a command, carried out by the model, the client spawned again
    m.request(Request::Command(Command::GoRemote)).unwrap();
    let fx = evaluate(&mut m, 53);
    assert!(fx.contains(&Effect::Mode(true)), "{fx:?}");
    assert_eq!(m.command, None);
    evaluate(&mut m, 53);
    assert_eq!(hub(&m), Some((53, true, Run::Up(53))));
    assert!(m.remote);
}
