//! The device: PID 1's state and its one loop. It wires the decisions (supervisor, update) to
//! the effects (container engine, storage, boot env) and the event sources (signals, timers).
//!
//! Flow (reference 3.3, 4, 5.5): every wake-up re-evaluates the containers in state order --
//! a container whose earlier groups are ACHIEVED or TIMEDOUT is mounted and started, a group
//! timeout marks it TIMEDOUT, an exit goes through auto-recovery -- then the update gates run
//! when the booted revision is on probation (goals reached -> TESTING -> commit delay ->
//! stability -> commit). Failure in steady state reboots; during an update it rolls back.
use crate::bootloader::Bootloader;
use crate::config::Config;
use crate::container::{self, Engine};
use crate::control::routes::{Ctl, CtrView, Effect};
use crate::control::Server;
use crate::event_loop::{EventLoop, Wake, SIGNALS};
use crate::pvlog;
use crate::state::{AutoRecovery, State, StatusGoal};
use crate::storage::meta::MetaStore;
use crate::storage::Storage;
use crate::supervisor::recovery::{self, Counters, Decision};
use crate::supervisor::{self, check_goal, Action, Event, Goal, Status};
use crate::sys::event as ev;
use crate::sys::power::Power;
use crate::update;
use crate::update::progress::{msg, Progress, Status as ProgressStatus};

/// Deadline tokens: kind in the high bits, container index in the low ones.
const TICK: u64 = 1 << 32;
const GOAL: u64 = 2 << 32;
const RETRY: u64 = 3 << 32;
const STABLE: u64 = 4 << 32;
const COMMIT: u64 = 5 << 32;
const ENGINE: u64 = 6 << 32;
/// pv-ctrl: the server's listener, connections and their deadlines (`CTRL + 0..=max_conns`).
const CTRL: u64 = 7 << 32;
const LOW: u64 = (1 << 32) - 1;

/// Re-evaluation period, as upstream's WAIT tick.
const TICK_MS: u64 = 2000;

struct Ctr {
    name: String,
    group: usize,
    goal: StatusGoal,
    status: Status,
    ar: AutoRecovery,
    counters: Counters,
    started_ms: u64,
    goal_timer_armed: bool,
    timed_out: bool,
    stable: bool,
    recovery_failed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Booted into an update: waiting for every goal.
    InProgress,
    /// Goals reached; commit when the delay passed and every container is stable.
    Testing {
        delay_over: bool,
    },
    Done,
}

pub struct Device<'a> {
    cfg: &'a Config,
    st: &'a Storage<'a>,
    bl: &'a dyn Bootloader,
    rev: String,
    state: State,
    engine: Engine,
    lp: EventLoop,
    ctrs: Vec<Ctr>,
    group_timeouts: Vec<u64>,
    gate: Option<Gate>,
    ending: Option<Power>,
    published: Option<Status>,
    orphans_reaped: u64,
    bsp: Option<container::bsp::BspVolumes>,
    modules: crate::drivers::ModuleIndex,
    /// pv-ctrl; taken out while it serves a wake (it needs the loop mutably).
    server: Option<Server>,
}

impl<'a> Device<'a> {
    /// `trying`: the booted revision is an update on probation (update::boot said so).
    pub fn new(
        cfg: &'a Config,
        st: &'a Storage<'a>,
        bl: &'a dyn Bootloader,
        rev: &str,
        state: State,
        trying: bool,
    ) -> std::io::Result<Device<'a>> {
        let lp = EventLoop::new(&SIGNALS)?;
        if ev::getpid() != 1 {
            // a plain process still reaps orphans of its containers' helpers
            let _ = ev::set_child_subreaper();
        }
        let goals_timeout = cfg.updater_goals_timeout();
        let group_timeouts = state
            .groups()
            .iter()
            .map(|g| g.timeout.map_or(goals_timeout, u64::from))
            .collect();
        let ctrs = state
            .containers()
            .iter()
            .map(|c| Ctr {
                name: c.name.clone(),
                group: state
                    .groups()
                    .iter()
                    .position(|g| g.name == c.group)
                    .unwrap_or(0),
                goal: c.status_goal,
                status: Status::Installed,
                ar: state.effective_auto_recovery(c),
                counters: Counters::default(),
                started_ms: 0,
                goal_timer_armed: false,
                timed_out: false,
                stable: false,
                recovery_failed: false,
            })
            .collect();
        let engine = Engine::new(
            container::Paths::from_config(cfg),
            container::Options::default(),
        );
        Ok(Device {
            cfg,
            st,
            bl,
            rev: rev.to_string(),
            state,
            engine,
            lp,
            ctrs,
            group_timeouts,
            gate: trying.then_some(Gate::InProgress),
            ending: None,
            published: None,
            orphans_reaped: 0,
            bsp: None,
            modules: crate::drivers::ModuleIndex::default(),
            server: None,
        })
    }

    /// Runs until the device must reboot or power off; containers are stopped by then.
    pub fn run(mut self) -> Power {
        // before any container is mounted: they only see sockets that exist then
        self.bind_ctrl();
        self.mount_bsp();
        self.lp.after(TICK_MS, TICK);
        let mut wakes = Vec::new();
        loop {
            self.evaluate();
            if let Some(p) = self.ending {
                if self.ctrs.iter().all(|c| {
                    matches!(
                        c.status,
                        Status::Stopped | Status::Installed | Status::Blocked | Status::Recovering
                    )
                }) {
                    pvlog!(
                        Info,
                        "device",
                        "all containers stopped ({} orphans reaped)",
                        self.orphans_reaped
                    );
                    if let Some(v) = self.bsp.take() {
                        self.engine.unmount_bsp(v);
                    }
                    return p;
                }
            }
            self.arm_engine_deadline();
            wakes.clear();
            if let Err(e) = self.lp.wait(&mut wakes, Some(TICK_MS)) {
                pvlog!(Error, "device", "event loop: {e}");
            }
            for w in std::mem::take(&mut wakes) {
                self.handle(w);
            }
        }
    }

    fn arm_engine_deadline(&mut self) {
        if let Some(at) = self.engine.next_deadline() {
            let ms = at
                .saturating_duration_since(std::time::Instant::now())
                .as_millis() as u64;
            self.lp.after(ms, ENGINE);
        }
    }

    fn handle(&mut self, w: Wake) {
        match w {
            Wake::Fd(t, _) | Wake::Deadline(t) if t & !LOW == CTRL => self.serve(w),
            Wake::Signal(sig, _) if sig == libc::SIGCHLD => self.reap(),
            Wake::Signal(sig, from) if sig == libc::SIGTERM => {
                self.end(Power::Reboot, &format!("SIGTERM from pid {from}"))
            }
            Wake::Signal(sig, from) => self.end(
                Power::PowerOff,
                &format!("{} from pid {from}", container::signal_name(sig)),
            ),
            Wake::Deadline(t) => {
                let i = (t & LOW) as usize;
                match t & !LOW {
                    TICK => {
                        // container consoles grow without pantavisor logging: keep the
                        // log directory within its budget from here too
                        crate::logs::maintain();
                        self.lp.after(TICK_MS, TICK);
                    }
                    GOAL => {
                        if let Some(c) = self.ctrs.get_mut(i) {
                            if check_goal(c.status, c.goal, false) == Goal::Unachieved
                                && c.status >= Status::Starting
                            {
                                pvlog!(
                                    Warn,
                                    "device",
                                    "container {}: status goal {:?} not reached in time",
                                    c.name,
                                    c.goal
                                );
                                c.timed_out = true;
                            }
                        }
                    }
                    RETRY => {
                        self.step(i, Event::RetryTimer);
                    }
                    STABLE => {
                        if let Some(c) = self.ctrs.get_mut(i) {
                            c.stable = matches!(c.status, Status::Started | Status::Ready);
                        }
                    }
                    COMMIT => {
                        if let Some(Gate::Testing { .. }) = self.gate {
                            self.gate = Some(Gate::Testing { delay_over: true });
                        }
                    }
                    ENGINE => self.engine.kill_overdue(std::time::Instant::now()),
                    _ => {}
                }
            }
            Wake::Fd(..) | Wake::Inbox => {}
        }
    }

    /// Binds pv-ctrl at `<PV_SYSTEM_RUNDIR>/pv-ctrl`; without it the device runs on, unmanaged.
    fn bind_ctrl(&mut self) {
        let dir = std::path::Path::new(self.cfg.system_rundir());
        if let Err(e) = std::fs::create_dir_all(dir) {
            pvlog!(Error, "ctrl", "create {}: {e}", dir.display());
            return;
        }
        let path = dir.join("pv-ctrl");
        match Server::bind(&path) {
            Ok(mut server) => {
                server.register(&mut self.lp, CTRL);
                pvlog!(Info, "ctrl", "pv-ctrl listening on {}", path.display());
                self.server = Some(server);
            }
            Err(e) => pvlog!(Error, "ctrl", "bind {}: {e}", path.display()),
        }
    }

    /// A pv-ctrl wake: the server runs the routes over a snapshot of the containers, then the
    /// effects they asked for are applied here (through the status table for READY).
    fn serve(&mut self, w: Wake) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let views = self
            .ctrs
            .iter()
            .filter_map(|c| {
                Some(CtrView {
                    spec: self.state.container(&c.name)?,
                    status: c.status,
                    goal: check_goal(c.status, c.goal, c.timed_out),
                    ar: c.ar,
                    retries: c.counters.retries,
                    stable: c.stable,
                    user_stopped: false,
                })
            })
            .collect();
        let mut ctl = Ctl {
            cfg: self.cfg,
            fs: self.st.fs,
            // the device runs on the real file system; streamed bodies outlive this wake
            stream_fs: &crate::storage::fs::RealFs,
            state: &self.state,
            ctrs: views,
            update_active: matches!(self.gate, Some(Gate::InProgress | Gate::Testing { .. })),
            ending: self.ending.is_some(),
            effects: Vec::new(),
        };
        server.handle(&mut self.lp, w, &mut ctl);
        let effects = std::mem::take(&mut ctl.effects);
        self.server = Some(server);
        for e in effects {
            match e {
                Effect::Ready(name) => {
                    if let Some(i) = self.ctrs.iter().position(|c| c.name == name) {
                        if self.step(i, Event::SignalReady) == Action::Become(Status::Ready) {
                            pvlog!(Info, "device", "container {name}: READY (signalled)");
                        }
                    }
                }
                Effect::Power(p, why) => self.end(p, &why),
            }
        }
    }

    /// Reaps every exited child: containers' inits go to the engine and auto-recovery,
    /// anything else (an orphan re-parented to us) is just reaped.
    fn reap(&mut self) {
        loop {
            match ev::reap_any() {
                Ok(Some((pid, status))) => match self.engine.handle_exit(pid, status) {
                    Some((name, exit)) => {
                        if let Some(i) = self.ctrs.iter().position(|c| c.name == name) {
                            pvlog!(Info, "device", "container {name}: init exited ({exit})");
                            self.exited(i);
                        }
                    }
                    None => self.orphans_reaped += 1,
                },
                Ok(None) => break,
                Err(e) => {
                    pvlog!(Error, "device", "waitpid: {e}");
                    break;
                }
            }
        }
    }

    /// Feeds `event` to the container status table (supervisor::next) and applies the status
    /// change the action implies; the caller performs the action's effects.
    fn step(&mut self, i: usize, event: Event) -> Action {
        let Some(c) = self.ctrs.get_mut(i) else {
            return Action::Ignore;
        };
        let action = supervisor::next(c.status, event, c.goal);
        match action {
            Action::Become(s) => c.status = s,
            Action::Spawn => c.status = Status::Starting,
            Action::Halt => c.status = Status::Stopping,
            Action::Unmount | Action::Recover => c.status = Status::Stopped,
            Action::Restart => c.status = Status::Installed,
            Action::Mount | Action::Kill | Action::Ignore => {}
        }
        action
    }

    fn exited(&mut self, i: usize) {
        let now = EventLoop::now_ms();
        let ending = self.ending.is_some();
        let update_active = matches!(self.gate, Some(Gate::InProgress | Gate::Testing { .. }));
        let action = self.step(i, Event::Exited);
        let Some(c) = self.ctrs.get_mut(i) else {
            return;
        };
        c.stable = false;
        if ending || action != Action::Recover {
            // a stop we asked for (Unmount: the engine already cleaned up), or a stale exit
            return;
        }
        let (d, counters) = recovery::on_exit(
            &c.ar,
            c.counters,
            now.saturating_sub(c.started_ms) / 1000,
            update_active,
        );
        c.counters = counters;
        let name = c.name.clone();
        match d {
            Decision::Retry { delay: 0 } => c.status = Status::Installed,
            Decision::Retry { delay } | Decision::Wait { delay } => {
                // the recovery decision itself is table-free: 4.2's algorithm (recovery.rs)
                c.status = Status::Recovering;
                pvlog!(
                    Info,
                    "device",
                    "container {name}: restarting in {delay} s (retry {})",
                    c.counters.retries
                );
                self.lp.after(delay.saturating_mul(1000), RETRY | i as u64);
            }
            Decision::GiveUp => {
                c.recovery_failed = true;
                pvlog!(
                    Error,
                    "device",
                    "container {name}: retries exhausted, left stopped (backoff_policy never)"
                );
            }
            Decision::Error => self.failed(&name, msg::CONTAINER_FAILED),
        }
    }

    /// A container failed for good: an update rolls back, a steady device reboots (3.3).
    fn failed(&mut self, name: &str, why: &str) {
        if matches!(self.gate, Some(Gate::InProgress | Gate::Testing { .. })) {
            pvlog!(
                Error,
                "update",
                "revision {}: container {name}: {why}",
                self.rev
            );
            if let Err(e) = update::fail(self.st, &self.rev, why) {
                pvlog!(Error, "update", "{e}");
            }
            self.gate = Some(Gate::Done);
            self.end(Power::Reboot, "rolling back");
        } else {
            self.end(
                Power::Reboot,
                &format!("container {name} failed without recovery"),
            );
        }
    }

    fn end(&mut self, p: Power, why: &str) {
        if self.ending.is_none() {
            pvlog!(
                Info,
                "device",
                "{} ({why})",
                if p == Power::Reboot {
                    "rebooting"
                } else {
                    "powering off"
                }
            );
            self.ending = Some(p);
        }
    }

    fn goals(&self) -> Vec<Goal> {
        self.ctrs
            .iter()
            .map(|c| check_goal(c.status, c.goal, c.timed_out))
            .collect()
    }

    fn evaluate(&mut self) {
        if self.ending.is_some() {
            self.stop_in_reverse_group_order();
            return;
        }
        let groups = self.group_timeouts.len();
        for i in 0..self.ctrs.len() {
            let goals = self.goals();
            let Some(c) = self.ctrs.get(i) else { continue };
            if !matches!(c.status, Status::Installed | Status::Blocked) {
                continue;
            }
            let earlier: Vec<Goal> = (0..c.group.min(groups))
                .map(|g| {
                    supervisor::group_goal(
                        &self
                            .ctrs
                            .iter()
                            .zip(&goals)
                            .filter(|(x, _)| x.group == g)
                            .map(|(_, g)| *g)
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            let event = if supervisor::may_start(&earlier) {
                Event::Unblocked
            } else {
                Event::Blocked
            };
            if self.step(i, event) == Action::Mount {
                self.start(i);
            }
            if self.ending.is_some() {
                return;
            }
        }
        // goals reached: arm stability timers once
        for i in 0..self.ctrs.len() {
            if let Some(c) = self.ctrs.get_mut(i) {
                if check_goal(c.status, c.goal, false) == Goal::Achieved
                    && !c.stable
                    && c.ar.stable_timeout > 0
                    && c.goal_timer_armed
                {
                    c.goal_timer_armed = false;
                    self.lp
                        .after(u64::from(c.ar.stable_timeout) * 1000, STABLE | i as u64);
                }
            }
        }
        self.update_gate();
        self.publish_status();
    }

    /// The BSP's modules and firmware images for this kernel; a failure is logged and the
    /// containers' drivers then fail to load (required ones stop their container).
    fn mount_bsp(&mut self) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let on_device = self.cfg.init_mode() == crate::config::InitMode::Embedded;
        match self
            .engine
            .mount_bsp(&self.rev, &self.state, &release, on_device)
        {
            Ok(v) => {
                if let Some(root) = &v.modules_root {
                    self.modules = crate::drivers::ModuleIndex::load(root);
                }
                self.bsp = Some(v);
            }
            Err(e) => pvlog!(Error, "device", "{e}"),
        }
    }

    /// Loads the container's required and optional drivers (3.3 step 3).
    fn load_drivers(&self, i: usize) -> Result<usize, String> {
        let Some(c) = self.ctrs.get(i).and_then(|c| self.state.container(&c.name)) else {
            return Ok(0);
        };
        let usermeta = MetaStore::new(self.st.fs, self.cfg.cache_usrmetadir().as_ref());
        let devmeta = MetaStore::new(self.st.fs, self.cfg.cache_devmetadir().as_ref());
        let meta = |store: &str, key: &str| {
            let s = if store == "device-meta" {
                &devmeta
            } else {
                &usermeta
            };
            s.get(key)
                .ok()
                .flatten()
                .map(|v| String::from_utf8_lossy(&v).trim().to_string())
        };
        let plan =
            crate::drivers::for_container(&self.state, c, self.cfg.bootloader_fitconfig(), &meta);
        crate::drivers::load_for(&self.modules, &c.name, &plan)
    }

    fn start(&mut self, i: usize) {
        let Some(c) = self.ctrs.get(i) else { return };
        let name = c.name.clone();
        if let Err(e) = self.engine.mount(&self.rev, &self.state, &name) {
            pvlog!(Error, "device", "{e}");
            return self.exited_at_start(i);
        }
        if self.step(i, Event::Mounted) != Action::Spawn {
            return; // a MOUNTED-goal container stops here
        }
        if let Err(e) = self.load_drivers(i) {
            pvlog!(Error, "device", "{e}");
            let _ = self.engine.unmount(&name);
            return self.exited_at_start(i);
        }
        match self.engine.start(&self.rev, &self.state, &name) {
            Ok(pid) => {
                let timeout = self
                    .ctrs
                    .get(i)
                    .and_then(|c| self.group_timeouts.get(c.group))
                    .copied()
                    .unwrap_or(120);
                self.step(i, Event::Execed);
                if let Some(c) = self.ctrs.get_mut(i) {
                    pvlog!(Info, "device", "container {name}: STARTED (pid {pid})");
                    c.started_ms = EventLoop::now_ms();
                    c.timed_out = false;
                    c.stable = false;
                    c.goal_timer_armed = true;
                    c.recovery_failed = false;
                }
                self.lp.after(timeout.saturating_mul(1000), GOAL | i as u64);
            }
            Err(e) => {
                pvlog!(Error, "device", "{e}");
                let _ = self.engine.unmount(&name);
                self.exited_at_start(i);
            }
        }
    }

    /// A start that failed counts as an exit for auto-recovery.
    fn exited_at_start(&mut self, i: usize) {
        if let Some(c) = self.ctrs.get_mut(i) {
            c.status = Status::Started;
            c.started_ms = EventLoop::now_ms();
        }
        self.exited(i);
    }

    fn stop_in_reverse_group_order(&mut self) {
        let running = |s: Status| {
            matches!(
                s,
                Status::Starting
                    | Status::Started
                    | Status::Ready
                    | Status::Stopping
                    | Status::Mounted
            )
        };
        let Some(last) = self
            .ctrs
            .iter()
            .filter(|c| running(c.status))
            .map(|c| c.group)
            .max()
        else {
            return;
        };
        let now = std::time::Instant::now();
        for i in 0..self.ctrs.len() {
            let Some(c) = self.ctrs.get(i) else { continue };
            if c.group != last {
                continue;
            }
            let name = c.name.clone();
            match self.step(i, Event::StopRequested) {
                Action::Halt => {
                    if !matches!(self.engine.request_stop(&name, now), Ok(Some(_))) {
                        // already gone: nothing to wait for
                        let _ = self.engine.unmount(&name);
                        if let Some(c) = self.ctrs.get_mut(i) {
                            c.status = Status::Stopped;
                        }
                    }
                }
                Action::Unmount => {
                    let _ = self.engine.unmount(&name);
                }
                _ => {}
            }
        }
    }

    /// 5.5 health gates while the booted revision is an update on probation.
    fn update_gate(&mut self) {
        let Some(gate) = self.gate else { return };
        let goals = self.goals();
        match gate {
            Gate::InProgress => {
                if goals.contains(&Goal::TimedOut) {
                    self.gate = Some(Gate::Done);
                    return self.failed("(group)", msg::GOAL_TIMEOUT);
                }
                if goals
                    .iter()
                    .all(|g| matches!(g, Goal::Achieved | Goal::NotBlocking))
                {
                    self.progress(ProgressStatus::Testing, msg::TESTING_REBOOT);
                    self.gate = Some(Gate::Testing { delay_over: false });
                    self.lp
                        .after(self.cfg.updater_commit_delay().saturating_mul(1000), COMMIT);
                }
            }
            Gate::Testing { delay_over: true } => {
                let waiting = self
                    .ctrs
                    .iter()
                    .any(|c| c.ar.stable_timeout > 0 && !c.stable && !c.recovery_failed);
                if waiting {
                    self.progress(ProgressStatus::Testing, msg::WAIT_STABLE);
                    return;
                }
                self.gate = Some(Gate::Done);
                match update::commit(self.st, self.bl, &self.rev) {
                    Ok(()) => pvlog!(Info, "update", "revision {} committed", self.rev),
                    Err(e) => pvlog!(Error, "update", "commit of {}: {e}", self.rev),
                }
            }
            Gate::Testing { delay_over: false } | Gate::Done => {}
        }
    }

    fn progress(&self, status: ProgressStatus, m: &str) {
        let old = self.st.read_progress(&self.rev);
        if old
            .as_ref()
            .is_some_and(|p| p.status == status && p.msg == m)
        {
            return;
        }
        let retries = old.map_or(0, |p| p.retries);
        if let Err(e) = self.st.write_progress(
            &self.rev,
            &Progress {
                retries,
                ..Progress::new(status, m)
            },
        ) {
            pvlog!(Error, "update", "{e}");
        }
    }

    /// Device-meta `pantavisor.status`: the revision status, the minimum over groups (3.1).
    fn publish_status(&mut self) {
        let goals = self.goals();
        let groups: Vec<Status> = (0..self.group_timeouts.len())
            .map(|g| {
                supervisor::group_status(
                    &self
                        .ctrs
                        .iter()
                        .zip(&goals)
                        .filter(|(c, _)| c.group == g)
                        .map(|(c, g)| (c.status, *g))
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let s = supervisor::revision_status(&groups);
        if self.published == Some(s) {
            return;
        }
        self.published = Some(s);
        pvlog!(
            Info,
            "device",
            "revision {} status {}",
            self.rev,
            s.as_str()
        );
        let store = MetaStore::new(self.st.fs, self.cfg.cache_devmetadir().as_ref());
        if let Err(e) = store.set("pantavisor.status", s.as_str().as_bytes()) {
            pvlog!(Warn, "device", "{e}");
        }
    }

    /// A summary line per container, for the demo and the logs.
    pub fn statuses(&self) -> Vec<(String, &'static str)> {
        self.ctrs
            .iter()
            .map(|c| (c.name.clone(), c.status.as_str()))
            .collect()
    }
}
