//! The device: PID 1's state and its one loop. It wires the decisions (supervisor, update) to
//! the effects (container engine, storage, boot env) and the event sources (signals, timers).
//!
//! Flow (reference 3.3, 4, 5.5): every wake-up re-evaluates the containers in state order --
//! a container whose earlier groups are ACHIEVED or TIMEDOUT is mounted and started, a group
//! timeout marks it TIMEDOUT, an exit goes through auto-recovery -- then the update gates run
//! when the booted revision is on probation (goals reached -> TESTING -> commit delay ->
//! stability -> commit). Failure in steady state reboots; during an update it rolls back.
pub mod init;
use crate::bootloader::Bootloader;
use crate::config::Config;
use crate::container::{self, Engine};
use crate::control::routes::{Command, Ctl, CtrAction, CtrView, Effect, MetaKind};
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
use crate::update::hooks::{self, Hooks};
use crate::update::progress::{msg, Progress, Status as ProgressStatus};
use crate::update::transition::{self, Transition};

/// Deadline tokens: kind in the high bits; for per-container kinds, the generation of the
/// container list (bits 16..32, it changes at a live update) and the index (bits 0..16).
const TICK: u64 = 1 << 32;
const GOAL: u64 = 2 << 32;
const RETRY: u64 = 3 << 32;
const STABLE: u64 = 4 << 32;
const COMMIT: u64 = 5 << 32;
const ENGINE: u64 = 6 << 32;
/// pv-ctrl: the server's listener, connections and their deadlines (`CTRL + 0..=max_conns`).
const CTRL: u64 = 7 << 32;
const LOW: u64 = (1 << 32) - 1;
const INDEX: u64 = (1 << 16) - 1;

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
    /// Stopped through pv-ctrl (3.7): not restarted, not waited for.
    user_stopped: bool,
    /// Start again once the stop in progress ends (PUT /containers restart, or start while
    /// STOPPING).
    restart_after_stop: bool,
}

impl Ctr {
    fn new(state: &State, c: &crate::state::Container) -> Ctr {
        Ctr {
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
            user_stopped: false,
            restart_after_stop: false,
        }
    }
}

/// A live update (5.8) under way: the containers in `stop` are stopped, then the device
/// adopts `state` as revision `rev`.
struct Switch {
    rev: String,
    state: State,
    stop: Vec<String>,
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
    /// Mutable: user-meta keys override configuration at the `metadata` level (6.3).
    cfg: &'a mut Config,
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
    /// The command pv-ctrl queued (6.4), run when no update is on probation.
    command: Option<Command>,
    switch: Option<Switch>,
    /// The update on probation entered live (no reboot): it ends UPDATED.
    live: bool,
    /// Generation of `ctrs`, in per-container deadline tokens.
    gen: u64,
    hooks: Hooks,
}

impl<'a> Device<'a> {
    /// `trying`: the booted revision is an update on probation (update::boot said so).
    pub fn new(
        cfg: &'a mut Config,
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
        let group_timeouts = group_timeouts(cfg, &state);
        let usermeta = MetaStore::new(st.fs, cfg.cache_usrmetadir().as_ref())
            .list()
            .unwrap_or_default();
        for (k, v) in usermeta {
            apply_user_meta(cfg, &k, Some(&v));
        }
        let ctrs = state
            .containers()
            .iter()
            .map(|c| Ctr::new(&state, c))
            .collect();
        let engine = Engine::new(
            container::Paths::from_config(cfg),
            container::Options::default(),
        );
        let hooks = Hooks::new(
            cfg.system_libdir(),
            std::path::Path::new(cfg.storage_mntpoint()),
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
            command: None,
            switch: None,
            live: false,
            gen: 0,
            hooks,
        })
    }

    fn token(&self, kind: u64, i: usize) -> u64 {
        kind | (self.gen & INDEX) << 16 | (i as u64 & INDEX)
    }

    /// Runs until the device must reboot or power off; containers are stopped by then.
    pub fn run(mut self) -> Power {
        // before any container is mounted: they only see sockets that exist then
        self.bind_ctrl();
        self.publish_all_meta();
        self.mount_bsp();
        self.lp.after(TICK_MS, TICK);
        if let Err(e) = self.hook(hooks::Op::Start, "") {
            pvlog!(Fatal, "hooks", "{e}");
            self.end(Power::Reboot, "system-start hook failed");
        }
        if self.gate.is_some() {
            self.capture(true);
        }
        self.resume_interrupted();
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
                let i = (t & INDEX) as usize;
                let current = (t & LOW) >> 16 == self.gen & INDEX;
                match t & !LOW {
                    // a timer of the container list before a live update
                    GOAL | RETRY | STABLE if !current => {}
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
                    user_stopped: c.user_stopped,
                })
            })
            .collect();
        let gc_keep = self.gc_keep();
        let mut ctl = Ctl {
            cfg: &*self.cfg,
            fs: self.st.fs,
            // the device runs on the real file system; streamed bodies outlive this wake
            stream_fs: &crate::storage::fs::RealFs,
            state: &self.state,
            ctrs: views,
            update_active: self.update_active(),
            ending: self.ending.is_some(),
            command_pending: self.command.is_some(),
            rev: &self.rev,
            gc_keep,
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
                Effect::Command(c) => {
                    pvlog!(Info, "ctrl", "command queued: {c:?}");
                    self.command = Some(c);
                }
                Effect::Container(name, action) => self.user_action(&name, action),
                Effect::Meta(kind, key) => {
                    let value = self.meta_store(kind).get(&key).ok().flatten();
                    if kind == MetaKind::User {
                        apply_user_meta(self.cfg, &key, value.as_deref());
                    }
                    self.publish_meta(kind, &key, value.as_deref());
                }
            }
        }
    }

    fn meta_store(&self, kind: MetaKind) -> MetaStore<'_> {
        let dir = match kind {
            MetaKind::User => self.cfg.cache_usrmetadir(),
            MetaKind::Device => self.cfg.cache_devmetadir(),
        };
        MetaStore::new(self.st.fs, dir.into_owned())
    }

    /// The run-time views of one meta key (6.3): `<rundir>/<kind>/<key>` for mgmt containers,
    /// `<rundir>/<kind>.<c>/<rest>` for container `<c>` when the key is `<c>.<rest>`. `None`
    /// removes them.
    fn publish_meta(&self, kind: MetaKind, key: &str, value: Option<&[u8]>) {
        let base = match kind {
            MetaKind::User => "user-meta",
            MetaKind::Device => "device-meta",
        };
        let run = std::path::Path::new(self.cfg.system_rundir());
        let mut views = vec![run.join(base).join(key)];
        if let Some((c, rest)) = crate::storage::meta::container_view(key) {
            views.push(run.join(format!("{base}.{c}")).join(rest));
        }
        for v in views {
            let res = match value {
                Some(val) => v
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&v, val)),
                None => match std::fs::remove_file(&v) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            if let Err(e) = res {
                pvlog!(Warn, "device", "meta view {}: {e}", v.display());
            }
        }
    }

    /// At start: the views hold exactly what the stores hold.
    fn publish_all_meta(&self) {
        let run = std::path::Path::new(self.cfg.system_rundir());
        if let Ok(rd) = std::fs::read_dir(run) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("user-meta") || n.starts_with("device-meta") {
                    let _ = crate::storage::fs::remove_all(&crate::storage::fs::RealFs, &e.path());
                }
            }
        }
        for kind in [MetaKind::User, MetaKind::Device] {
            for (k, v) in self.meta_store(kind).list().unwrap_or_default() {
                self.publish_meta(kind, &k, Some(&v));
            }
        }
    }

    /// An update is on probation or being entered: updates and power commands wait.
    fn update_active(&self) -> bool {
        self.switch.is_some() || matches!(self.gate, Some(Gate::InProgress | Gate::Testing { .. }))
    }

    /// The revisions GC keeps (1.5): running, committed, tried, entering, and 0 if asked.
    fn gc_keep(&self) -> Vec<String> {
        let mut keep = vec![self.rev.clone()];
        if let Ok(env) = self.bl.read(self.st.fs) {
            keep.extend(env.rev);
            keep.extend(env.try_rev);
        }
        if let Some(sw) = &self.switch {
            keep.push(sw.rev.clone());
        }
        if self.cfg.storage_gc_keep_factory() {
            keep.push("0".into());
        }
        keep
    }

    /// PUT /containers/{name} (3.7), already checked by the route.
    fn user_action(&mut self, name: &str, action: CtrAction) {
        let Some(i) = self.ctrs.iter().position(|c| c.name == name) else {
            return;
        };
        pvlog!(Info, "ctrl", "container {name}: {action:?} asked");
        let now = std::time::Instant::now();
        let status = self.ctrs.get(i).map_or(Status::None, |c| c.status);
        let running = matches!(status, Status::Starting | Status::Started | Status::Ready);
        let (stop, restart) = match action {
            CtrAction::Stop => (true, false),
            CtrAction::Start if running => return,
            CtrAction::Start | CtrAction::Restart => (running, true),
        };
        if stop || status == Status::Stopping {
            self.stop(i, now);
        }
        if let Some(c) = self.ctrs.get_mut(i) {
            c.user_stopped = !restart;
            c.restart_after_stop = restart;
        }
        self.restart_if_stopped(i);
    }

    /// A container whose stop ended and that must start again goes back to INSTALLED with
    /// fresh retries (3.7).
    fn restart_if_stopped(&mut self, i: usize) {
        let Some(c) = self.ctrs.get_mut(i) else {
            return;
        };
        if c.restart_after_stop && matches!(c.status, Status::Stopped | Status::Recovering) {
            c.restart_after_stop = false;
            c.user_stopped = false;
            c.counters = Counters::default();
            c.status = Status::Installed;
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
        let update_active = self.update_active();
        let action = self.step(i, Event::Exited);
        let Some(c) = self.ctrs.get_mut(i) else {
            return;
        };
        c.stable = false;
        if ending || action != Action::Recover {
            // a stop we asked for (Unmount: the engine already cleaned up), or a stale exit
            if !ending {
                self.restart_if_stopped(i);
            }
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
                let t = self.token(RETRY, i);
                self.lp.after(delay.saturating_mul(1000), t);
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
            self.capture(false);
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
        if self.switch.is_some() {
            if !self.drive_switch() {
                return;
            }
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
                    let ms = u64::from(c.ar.stable_timeout) * 1000;
                    let t = self.token(STABLE, i);
                    self.lp.after(ms, t);
                }
            }
        }
        self.update_gate();
        if self.ending.is_none() && !self.update_active() {
            if let Some(cmd) = self.command.take() {
                self.run_command(cmd);
            }
        }
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
                let t = self.token(GOAL, i);
                self.lp.after(timeout.saturating_mul(1000), t);
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
            self.stop(i, now);
        }
    }

    /// Asks container `i` to stop through the status table: a running one gets its halt
    /// signal (STOPPING until it exits), a mounted or waiting one is unmounted.
    fn stop(&mut self, i: usize, now: std::time::Instant) {
        let Some(name) = self.ctrs.get(i).map(|c| c.name.clone()) else {
            return;
        };
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

    /// 5.5 health gates while the booted revision is an update on probation.
    fn update_gate(&mut self) {
        let Some(gate) = self.gate else { return };
        let goals = self.goals();
        match gate {
            Gate::InProgress => {
                if let Some(c) = self
                    .ctrs
                    .iter()
                    .zip(&goals)
                    .find(|(_, g)| **g == Goal::TimedOut)
                    .map(|(c, _)| c.name.clone())
                {
                    // failed() ends the gate: it must still see the update on probation
                    return self.failed(&c, msg::GOAL_TIMEOUT);
                }
                if goals
                    .iter()
                    .all(|g| matches!(g, Goal::Achieved | Goal::NotBlocking))
                {
                    let m = if self.live {
                        msg::TESTING_LIVE
                    } else {
                        msg::TESTING_REBOOT
                    };
                    self.progress(ProgressStatus::Testing, m);
                    self.gate = Some(Gate::Testing { delay_over: false });
                    self.lp
                        .after(self.cfg.updater_commit_delay().saturating_mul(1000), COMMIT);
                }
            }
            Gate::Testing { delay_over: true } => {
                let waiting = self.ctrs.iter().any(|c| {
                    c.ar.stable_timeout > 0 && !c.stable && !c.recovery_failed && !c.user_stopped
                });
                if waiting {
                    self.progress(ProgressStatus::Testing, msg::WAIT_STABLE);
                    return;
                }
                self.gate = Some(Gate::Done);
                self.finalize();
            }
            Gate::Testing { delay_over: false } | Gate::Done => {}
        }
    }

    /// The update held: DONE and committed after a reboot, UPDATED after a live entry (5.5).
    fn finalize(&mut self) {
        self.capture(false);
        let (res, op) = if self.live {
            (update::finish_live(self.st, &self.rev), hooks::Op::Done)
        } else {
            (
                update::commit(self.st, self.bl, &self.rev),
                hooks::Op::BootDone,
            )
        };
        match res {
            Ok(()) => {
                let what = if self.live {
                    "updated live"
                } else {
                    "committed"
                };
                pvlog!(Info, "update", "revision {} {what}", self.rev);
                if let Err(e) = self.hook(op, if self.live { "UPDATED" } else { "DONE" }) {
                    pvlog!(Error, "hooks", "{e}");
                }
            }
            Err(e) => pvlog!(Error, "update", "finishing {}: {e}", self.rev),
        }
        self.live = false;
    }

    fn hook(&self, op: hooks::Op, status: &str) -> Result<usize, String> {
        let env = self.bl.read(self.st.fs).unwrap_or_default();
        self.hooks
            .run(op, &hooks::Env::new(&env, &self.rev, status))
    }

    /// ERROR lines logged while an update is processed or tried go to its `.pv/logs` (5.2);
    /// at the end they are folded into its progress.
    fn capture(&self, on: bool) {
        self.capture_rev(&self.rev, on);
    }

    fn capture_rev(&self, rev: &str, on: bool) {
        let Ok(dir) = self.st.trail_dir(rev) else {
            return;
        };
        if on {
            crate::logs::start_update_capture(&dir.join(".pv"));
        } else {
            crate::logs::stop_update_capture();
            if let Some(p) = self.st.read_progress(rev) {
                let _ = self.st.write_progress(rev, &p);
            }
        }
    }

    /// An update that was being processed when the device went down is run again, once per
    /// boot, until it ends (its retries bound it).
    fn resume_interrupted(&mut self) {
        let env = self.bl.read(self.st.fs).unwrap_or_default();
        let Ok(revs) = self.st.list_revisions() else {
            return;
        };
        for rev in revs {
            let Some(p) = self.st.read_progress(&rev) else {
                continue;
            };
            let is_try = env.try_rev.as_deref() == Some(rev.as_str());
            if update::interrupted(p.status, is_try, rev == self.rev) && self.command.is_none() {
                pvlog!(
                    Warn,
                    "update",
                    "revision {rev} was interrupted ({}), running it again",
                    p.status.as_str()
                );
                self.command = Some(Command::LocalRun { rev, commit: false });
            }
        }
    }

    fn run_command(&mut self, cmd: Command) {
        match cmd {
            Command::RunGc => {
                let keep = self.gc_keep();
                let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
                match self.st.gc(&keep, &Default::default()) {
                    Ok(n) => pvlog!(Info, "storage", "GC reclaimed {n} bytes"),
                    Err(e) => pvlog!(Error, "storage", "GC: {e}"),
                }
            }
            Command::LocalRun { rev, commit } => self.local_run(&rev, commit),
            Command::MakeFactory { rev } => {
                if self.make_factory(&rev) {
                    self.local_run("0", true);
                }
            }
        }
    }

    /// MAKE_FACTORY (5.7): a fresh `trails/0` with the state of `rev`. Refused while revision
    /// 0 runs or is the rollback point: its trail is what the device falls back to.
    fn make_factory(&mut self, rev: &str) -> bool {
        let env = self.bl.read(self.st.fs).unwrap_or_default();
        if self.rev == "0" || env.rev.as_deref() == Some("0") || env.try_rev.as_deref() == Some("0")
        {
            pvlog!(
                Error,
                "update",
                "MAKE_FACTORY: revision 0 is in use (running, committed or tried)"
            );
            return false;
        }
        let raw = match self.st.read_state(rev) {
            Ok(r) => r,
            Err(e) => {
                pvlog!(Error, "update", "MAKE_FACTORY: {e}");
                return false;
            }
        };
        let res = self
            .st
            .trail_dir("0")
            .and_then(|dir| {
                crate::storage::fs::remove_all(self.st.fs, &dir)
                    .map_err(|e| crate::storage::Error::io("remove", &dir, e))
            })
            .map_err(update::Error::from)
            .and_then(|()| update::stage(self.st, "0", &raw));
        match res {
            Ok(_) => true,
            Err(e) => {
                pvlog!(Error, "update", "MAKE_FACTORY: {e}");
                false
            }
        }
    }

    /// LOCAL_RUN (5.7 step 4): admit, decide reboot or live (5.8), install, then reboot or
    /// begin the live switch. Every refusal is recorded in the revision's progress.
    fn local_run(&mut self, rev: &str, force_reboot: bool) {
        if self.st.trail_dir(rev).is_err() {
            return pvlog!(Error, "update", "LOCAL_RUN: bad revision name {rev:?}");
        }
        self.capture_rev(rev, true);
        let max = self.cfg.revision_retries();
        let admitted = match update::admit(self.st, rev, max) {
            Ok(Ok(state)) => Some(state),
            Ok(Err(update::Refused::Final(s))) => {
                pvlog!(
                    Warn,
                    "update",
                    "revision {rev} already ended {}: not run again",
                    s.as_str()
                );
                None
            }
            Ok(Err(update::Refused::Wontgo(m, why))) => {
                pvlog!(Error, "update", "revision {rev}: WONTGO {m}: {why}");
                None
            }
            Err(e) => {
                pvlog!(Error, "update", "revision {rev}: {e}");
                None
            }
        };
        let Some(state) = admitted else {
            return self.capture_rev(rev, false);
        };
        let decision = if force_reboot {
            Transition::Reboot {
                why: "a reboot was asked".into(),
            }
        } else {
            transition::decide(&self.state, &state)
        };
        let entry = match &decision {
            Transition::Reboot { why } => {
                pvlog!(Info, "update", "revision {rev}: reboot update ({why})");
                update::Entry::Reboot
            }
            Transition::Live { stop } => {
                pvlog!(
                    Info,
                    "update",
                    "revision {rev}: live update, restarting [{}]",
                    stop.join(", ")
                );
                update::Entry::Live
            }
        };
        match update::install(self.st, self.bl, &self.hooks, rev, &state, entry) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                pvlog!(Error, "update", "revision {rev}: install refused: {e:?}");
                return self.capture_rev(rev, false);
            }
            Err(e) => {
                pvlog!(Error, "update", "revision {rev}: install: {e}");
                let _ = update::fail(self.st, rev, msg::INTERNAL);
                return self.capture_rev(rev, false);
            }
        }
        self.capture_rev(rev, false);
        match decision {
            Transition::Reboot { .. } => self.end(Power::Reboot, &format!("update to {rev}")),
            Transition::Live { stop } => {
                self.switch = Some(Switch {
                    rev: rev.to_string(),
                    state,
                    stop,
                });
            }
        }
    }

    /// Stops the containers a live update replaces; true once they all are down and the
    /// new state was adopted.
    fn drive_switch(&mut self) -> bool {
        let Some(sw) = &self.switch else { return true };
        let stop = sw.stop.clone();
        let now = std::time::Instant::now();
        let mut waiting = false;
        for name in &stop {
            let Some(i) = self.ctrs.iter().position(|c| &c.name == name) else {
                continue;
            };
            self.stop(i, now);
            if let Some(c) = self.ctrs.get_mut(i) {
                c.restart_after_stop = false;
                waiting |= c.status == Status::Stopping;
            }
        }
        if waiting {
            return false;
        }
        self.apply_switch();
        true
    }

    /// Adopts the new state (5.8 live path): kept containers keep running (and their PIDs),
    /// changed and new ones start through the normal group order, and the revision is on
    /// probation as after a reboot, ending UPDATED.
    fn apply_switch(&mut self) {
        let Some(sw) = self.switch.take() else { return };
        let mut old: Vec<Option<Ctr>> = std::mem::take(&mut self.ctrs)
            .into_iter()
            .map(Some)
            .collect();
        self.gen = self.gen.wrapping_add(1);
        let mut ctrs = Vec::new();
        for c in sw.state.containers() {
            let kept = old
                .iter_mut()
                .find(|o| o.as_ref().is_some_and(|o| o.name == c.name))
                .filter(|_| !sw.stop.contains(&c.name))
                .and_then(Option::take);
            let mut fresh = Ctr::new(&sw.state, c);
            if let Some(k) = kept {
                fresh.status = match k.status {
                    // its retry timer belonged to the old list: retry now
                    Status::Recovering => Status::Installed,
                    s => s,
                };
                fresh.counters = k.counters;
                fresh.started_ms = k.started_ms;
                fresh.timed_out = k.timed_out;
                fresh.stable = k.stable;
                // re-arm the stability timer (old tokens are void) once the goal holds
                fresh.goal_timer_armed = !k.stable;
                fresh.recovery_failed = k.recovery_failed;
                fresh.user_stopped = k.user_stopped;
            }
            ctrs.push(fresh);
        }
        for (i, c) in ctrs.iter().enumerate() {
            if c.status >= Status::Starting
                && check_goal(c.status, c.goal, false) == Goal::Unachieved
            {
                let timeout = self.group_timeouts.get(c.group).copied().unwrap_or(120);
                self.lp
                    .after(timeout.saturating_mul(1000), self.token(GOAL, i));
            }
        }
        self.ctrs = ctrs;
        self.group_timeouts = group_timeouts(self.cfg, &sw.state);
        self.state = sw.state;
        self.rev = sw.rev;
        self.published = None;
        crate::logs::set_revision(&self.rev);
        if let Err(e) = self.st.set_current(&self.rev) {
            pvlog!(Error, "update", "{e}");
        }
        pvlog!(Info, "update", "revision {} entered live", self.rev);
        self.live = true;
        self.gate = Some(Gate::InProgress);
        self.capture(true);
        self.progress(ProgressStatus::Inprogress, msg::TRYING);
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
        self.publish_meta(
            MetaKind::Device,
            "pantavisor.status",
            Some(s.as_str().as_bytes()),
        );
    }

    /// A summary line per container, for the demo and the logs.
    pub fn statuses(&self) -> Vec<(String, &'static str)> {
        self.ctrs
            .iter()
            .map(|c| (c.name.clone(), c.status.as_str()))
            .collect()
    }
}

/// Each group's goal timeout: its own, else PV_UPDATER_GOALS_TIMEOUT (5.9).
fn group_timeouts(cfg: &Config, state: &State) -> Vec<u64> {
    let goals_timeout = cfg.updater_goals_timeout();
    state
        .groups()
        .iter()
        .map(|g| g.timeout.map_or(goals_timeout, u64::from))
        .collect()
}

/// A user-meta key that names a configuration key overrides it at the `metadata` level; its
/// deletion restores the level below (6.3). Other keys are not configuration.
fn apply_user_meta(cfg: &mut Config, key: &str, value: Option<&[u8]>) {
    if !Config::knows(key) {
        return;
    }
    match value {
        Some(v) => {
            let v = String::from_utf8_lossy(v);
            if cfg
                .set(crate::config::Level::UserMeta, key, v.trim())
                .is_ok()
            {
                pvlog!(Info, "config", "{key} set by user-meta");
            }
        }
        None => {
            cfg.unset(crate::config::Level::UserMeta, key);
        }
    }
}
