//! The device: PID 1's one loop and the interpreter of its state machine. The decisions are
//! the model's ([`model::step`], pure, tested without root); this file turns what happened
//! (signals, reaped children, timers, pv-ctrl requests) into typed inputs and carries out the
//! effects on the engine, the storage, the boot env and the loop.
//!
//! - `model.rs`: the model, inputs, effects and `step`; upstream's states;
//! - `containers.rs`: the container table, start order, exits, stops, per-run timers;
//! - `probation.rs`: the health gates of an update and how the device ends;
//! - `commands.rs`: what pv-ctrl hands the device and its admission;
//! - `daemons.rs`: upstream's managed daemons, their spawn, respawn, stop and output;
//! - `timers.rs`: typed timers owned by what armed them;
//! - `meta.rs`: user-meta and device-meta views, configuration from user-meta, the device's
//!   own device-meta;
//! - `updates.rs`: the commands' work (LOCAL_RUN, MAKE_FACTORY, GC) and the commit;
//! - `work.rs`: slow work off the loop -- worker jobs and hooks reaped with a deadline;
//! - `init.rs`: upstream's INIT, before the model exists, and the FATAL path.
pub mod commands;
pub mod containers;
pub mod daemons;
pub mod init;
pub(crate) mod meta;
pub mod model;
pub mod probation;
pub mod timers;
mod updates;
mod work;

use crate::bootloader::Bootloader;
use crate::config::Config;
use crate::container::{self, Engine};
use crate::control::routes::{Ctl, CtrView, DeviceApi};
use crate::control::Server;
use crate::event_loop::{EventLoop, Wake, SIGNALS};
use crate::pvlog;
use crate::state::State;
use crate::storage::meta::MetaStore;
use crate::storage::Storage;
use crate::sys::event as ev;
use crate::sys::power::Power;
use crate::update::hooks::{self, HookRun, Hooks};
use crate::update::progress::{Progress, Status as ProgressStatus};
use crate::worker::Workers;
use commands::{Answer, Command, Refusal, Request};
use containers::Ctr;
use model::{Effect, Input, Model, TICK_MS};
use std::collections::VecDeque;
use timers::{Timer, Timers};

/// Evaluations of one wake before the device stops re-evaluating (each one changed
/// something; a container table of any real size settles in a few).
const MAX_SETTLE: usize = 64;

pub struct Device<'a> {
    /// Mutable: user-meta keys override configuration at the `metadata` level.
    cfg: &'a mut Config,
    st: &'a Storage<'a>,
    bl: &'a dyn Bootloader,
    rev: String,
    state: State,
    engine: Engine,
    lp: EventLoop,
    m: Model,
    timers: Timers,
    orphans_reaped: u64,
    bsp: Option<container::bsp::BspVolumes>,
    modules: crate::drivers::ModuleIndex,
    /// pv-ctrl; taken out while it serves a wake (it needs the loop mutably).
    server: Option<Server>,
    /// The revision and state a live update switches to once its containers are down.
    entering: Option<(String, State)>,
    hooks: Hooks,
    workers: Workers,
    /// The update being installed (its prepare on the worker, then its hook).
    installing: Option<work::Install>,
    gc: Option<work::Gc>,
    /// The hook that runs, and what follows it; reporting hooks wait behind it.
    hook: Option<(HookRun, work::AfterHook)>,
    hook_queue: VecDeque<(hooks::Op, hooks::Env)>,
    /// The loop's longest handling, as last published.
    stall_published: u64,
    /// The device's own device-meta keys (`pantavisor.*`, `time`, ...), and when the
    /// changing ones were last read.
    devmeta: meta::OwnMeta,
    devmeta_refreshed: u64,
    /// The managed daemons' stdout and stderr pipes, and the last pipe's number.
    daemon_pipes: Vec<daemons::Pipe>,
    daemon_pipe_serial: u64,
    /// Secure boot: the mode and trust store every state taken in is checked against.
    pvs: std::sync::Arc<crate::pvs::Policy>,
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
        let usermeta = MetaStore::new(st.fs, cfg.cache_usrmetadir().as_ref())
            .list()
            .unwrap_or_default();
        for (k, v) in usermeta {
            meta::apply_user_meta(cfg, &k, Some(&v));
        }
        let engine = Engine::new(
            container::Paths::from_config(cfg),
            container::Options {
                verity: cfg.verity(),
                ..container::Options::default()
            },
        );
        let m = Model::new(
            containers(&state),
            group_timeouts(cfg, &state),
            trying,
            cfg.updater_commit_delay(),
            engine.options().stop_grace.as_millis() as u64,
            cfg.init_mode(),
        );
        let hooks = Hooks::new(
            cfg.system_libdir(),
            std::path::Path::new(cfg.storage_mntpoint()),
        )
        .with_timeout(cfg.system_hook_timeout());
        let workers = Workers::new(lp.inbox_fd());
        let pvs = std::sync::Arc::new(crate::pvs::Policy::of(cfg));
        Ok(Device {
            cfg,
            st,
            bl,
            rev: rev.to_string(),
            state,
            engine,
            lp,
            m,
            timers: Timers::default(),
            orphans_reaped: 0,
            bsp: None,
            modules: crate::drivers::ModuleIndex::default(),
            server: None,
            entering: None,
            hooks,
            workers,
            installing: None,
            gc: None,
            hook: None,
            hook_queue: VecDeque::new(),
            stall_published: 0,
            devmeta: Default::default(),
            devmeta_refreshed: 0,
            daemon_pipes: Vec::new(),
            daemon_pipe_serial: 0,
            pvs,
        })
    }

    /// Runs until the device must reboot or power off; containers are stopped by then.
    pub fn run(mut self) -> Power {
        // before any container is mounted: they only see sockets that exist then
        self.bind_ctrl();
        // the meta stores may live on BSP volumes (pv--usrmeta, pv--devmeta)
        self.mount_bsp();
        self.publish_all_meta();
        self.init_own_meta();
        self.timers.arm(&mut self.lp, Timer::Tick, TICK_MS);
        // before any container starts, and bounded by the hook timeout
        if let Err(e) = self
            .hooks
            .run_blocking(hooks::Op::Start, &self.hook_env(""))
        {
            pvlog!(Fatal, "hooks", "{e}");
            self.feed(Input::Signal(
                Power::Reboot,
                "system-start hook failed".into(),
            ));
        }
        if self.m.on_probation() {
            self.capture(true);
        }
        self.revision_runs();
        self.resume_interrupted();
        let mut wakes = Vec::new();
        loop {
            self.settle();
            if let Some(p) = self.m.finished() {
                pvlog!(
                    Info,
                    "device",
                    "all containers stopped ({} orphans reaped)",
                    self.orphans_reaped
                );
                if let Some(v) = self.bsp.take() {
                    self.engine.unmount_bsp(v);
                }
                self.workers.shutdown();
                pvlog!(
                    Info,
                    "device",
                    "loop: max stall {} us",
                    self.lp.max_stall_us()
                );
                return p;
            }
            wakes.clear();
            if let Err(e) = self.lp.wait(&mut wakes, Some(TICK_MS)) {
                pvlog!(Error, "device", "event loop: {e}");
            }
            for w in std::mem::take(&mut wakes) {
                self.handle(w);
            }
        }
    }

    /// Feeds one input and every input its effects produce.
    fn feed(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(i) = queue.pop_front() {
            for e in model::step(&mut self.m, i, EventLoop::now_ms()) {
                if let Some(next) = self.apply(e) {
                    queue.push_back(next);
                }
            }
        }
    }

    /// Re-evaluates until nothing changes (a container mounted can unblock the next group).
    fn settle(&mut self) {
        for _ in 0..MAX_SETTLE {
            let fx = model::step(&mut self.m, Input::Evaluate, EventLoop::now_ms());
            if fx.is_empty() {
                return;
            }
            for e in fx {
                if let Some(next) = self.apply(e) {
                    self.feed(next);
                }
            }
        }
        pvlog!(
            Warn,
            "device",
            "still changing after {MAX_SETTLE} evaluations; going on at the next wake"
        );
    }

    fn name(&self, i: usize) -> Option<String> {
        self.m.ctrs.get(i).map(|c| c.name.clone())
    }

    /// Carries out one effect; what it produced comes back as an input.
    fn apply(&mut self, e: Effect) -> Option<Input> {
        match e {
            Effect::Mount(i) => {
                let name = self.name(i)?;
                // the engine logs its own failures, once
                Some(match self.engine.mount(&self.rev, &self.state, &name) {
                    Ok(()) => Input::Mounted(i),
                    Err(_) => Input::StartFailed(i),
                })
            }
            Effect::Spawn(i) => {
                let name = self.name(i)?;
                if let Err(e) = self.load_drivers(i) {
                    pvlog!(Error, "device", "{e}");
                    let _ = self.engine.unmount(&name);
                    return Some(Input::StartFailed(i));
                }
                Some(match self.engine.start(&self.rev, &self.state, &name) {
                    Ok(pid) => {
                        pvlog!(Info, "device", "container {name}: STARTED (pid {pid})");
                        Input::Spawned(i)
                    }
                    Err(_) => {
                        let _ = self.engine.unmount(&name);
                        Input::StartFailed(i)
                    }
                })
            }
            Effect::Halt(i) => {
                let name = self.name(i)?;
                match self.engine.request_stop(&name, std::time::Instant::now()) {
                    Ok(Some(_)) => None,
                    // already gone: nothing to wait for
                    _ => {
                        let _ = self.engine.unmount(&name);
                        Some(Input::Exited(i))
                    }
                }
            }
            Effect::Kill(i) => {
                let name = self.name(i)?;
                self.engine.kill(&name);
                None
            }
            Effect::Unmount(i) => {
                let name = self.name(i)?;
                let _ = self.engine.unmount(&name);
                None
            }
            Effect::Arm(t, ms) => {
                self.timers.arm(&mut self.lp, t, ms);
                None
            }
            Effect::Cancel(t) => {
                self.timers.cancel(&mut self.lp, t);
                None
            }
            Effect::Progress(s, m) => {
                self.progress(s, m);
                None
            }
            Effect::Capture(on) => {
                self.capture(on);
                None
            }
            Effect::Finish { live } => {
                self.finish(live);
                None
            }
            Effect::Fail { container, why } => {
                // the verdict was logged at ERROR in upstream's words (Model::failed)
                pvlog!(
                    Info,
                    "update",
                    "revision {}: container {container}: {why}",
                    self.rev
                );
                if let Err(e) = crate::update::fail(self.st, &self.rev, why) {
                    pvlog!(Error, "update", "{e}");
                }
                self.capture(false);
                None
            }
            Effect::Run(cmd) => self.run_command(cmd).map(Input::CommandDone),
            Effect::Adopt => {
                self.adopt();
                None
            }
            Effect::Publish(s) => {
                self.publish_status(s);
                None
            }
            Effect::SpawnDaemon(i) => self.spawn_daemon(i),
            Effect::StopDaemon(pid) => {
                self.signal_daemon(pid, libc::SIGTERM);
                None
            }
            Effect::KillDaemon(pid) => {
                self.signal_daemon(pid, libc::SIGKILL);
                None
            }
            Effect::NotifyHub(pid) => {
                self.signal_daemon(pid, libc::SIGUSR1);
                None
            }
            Effect::Mode(remote) => {
                let mode = if remote { "remote" } else { "local" };
                self.set_own_meta("pantavisor.mode", mode.to_string());
                None
            }
            Effect::Log(level, src, line) => {
                crate::logs::log(level, src, format_args!("{line}"));
                None
            }
        }
    }

    fn handle(&mut self, w: Wake) {
        match w {
            Wake::Fd(t, _) | Wake::Deadline(t) if timers::is_ctrl(t) => self.serve(w),
            Wake::Fd(t, _) if timers::is_daemon_log(t) => self.daemon_output(t),
            Wake::Signal(sig, _) if sig == libc::SIGCHLD => self.reap(),
            Wake::Signal(sig, from) if sig == libc::SIGTERM => self.feed(Input::Signal(
                Power::Reboot,
                format!("SIGTERM from pid {from}"),
            )),
            Wake::Signal(sig, from) => self.feed(Input::Signal(
                Power::PowerOff,
                format!("{} from pid {from}", container::signal_name(sig)),
            )),
            Wake::Deadline(t) => {
                let Some(timer) = self.timers.fired(t) else {
                    return; // cancelled with its owner
                };
                match timer {
                    Timer::Hook => return self.hook_timed_out(),
                    Timer::Tick => {
                        // container consoles grow without pantavisor logging: keep the log
                        // directory within its budget from here too
                        crate::logs::maintain();
                        self.publish_stall();
                        self.refresh_own_meta_due(EventLoop::now_ms());
                    }
                    _ => {}
                }
                self.feed(Input::Timer(timer));
            }
            Wake::Inbox => self.worker_done(),
            Wake::Fd(..) => {}
        }
    }

    /// Reaps every exited child: hooks, daemons and containers' inits go to their owners and
    /// the model, anything else (an orphan re-parented to us) is just reaped.
    fn reap(&mut self) {
        loop {
            match ev::reap_any() {
                Ok(Some((pid, status))) if self.hook_exited(pid, status) => {}
                Ok(Some((pid, status))) if self.daemon_reaped(pid, status) => {}
                Ok(Some((pid, status))) => match self.engine.handle_exit(pid, status) {
                    Some((name, exit)) => {
                        if let Some(i) = self.m.index(&name) {
                            pvlog!(Info, "device", "container {name}: init exited ({exit})");
                            self.feed(Input::Exited(i));
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
                server.register(&mut self.lp, timers::CTRL);
                pvlog!(Info, "ctrl", "pv-ctrl listening on {}", path.display());
                self.server = Some(server);
            }
            Err(e) => pvlog!(Error, "ctrl", "bind {}: {e}", path.display()),
        }
    }

    /// A pv-ctrl wake: the routes parse requests and hand them to the model through a
    /// [`Front`]; what the model decided is carried out once the server returned.
    fn serve(&mut self, w: Wake) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let views = self
            .m
            .ctrs
            .iter()
            .filter_map(|c| {
                Some(CtrView {
                    spec: self.state.container(&c.name)?,
                    status: c.status,
                    goal: c.goal_check(),
                    ar: c.ar,
                    retries: c.counters.retries,
                    stable: c.stable,
                    user_stopped: c.user_stopped,
                })
            })
            .collect();
        let storage_busy = self.gc.is_some() || self.m.command == Some(Command::RunGc);
        let daemons = self.m.daemons.views();
        let pending = self.pending();
        let busy: Vec<String> = std::iter::once(self.rev.clone())
            .chain(pending.iter().cloned())
            .collect();
        let update_active = self.m.update_active();
        let mut front = Front {
            m: &mut self.m,
            st: self.st,
            bl: self.bl,
            rev: &self.rev,
            pending,
            keep_factory: self.cfg.storage_gc_keep_factory(),
            workers: &mut self.workers,
            gc: &mut self.gc,
            fx: Vec::new(),
        };
        let mut ctl = Ctl {
            cfg: &*self.cfg,
            fs: self.st.fs,
            // the device runs on the real file system; streamed bodies outlive this wake
            stream_fs: &crate::storage::fs::RealFs,
            state: &self.state,
            ctrs: views,
            rev: &self.rev,
            dev: &mut front,
            meta_changed: Vec::new(),
            own_meta: &self.devmeta,
            daemons: &daemons,
            modules: &self.modules,
            storage_busy,
            busy,
            update_active,
            pvs: &self.pvs,
        };
        server.handle(&mut self.lp, w, &mut ctl);
        let meta_changed = std::mem::take(&mut ctl.meta_changed);
        let fx = std::mem::take(&mut front.fx);
        self.server = Some(server);
        for e in fx {
            if let Some(next) = self.apply(e) {
                self.feed(next);
            }
        }
        for (kind, key) in meta_changed {
            self.meta_changed(kind, &key);
        }
    }

    /// The BSP's modules and firmware images for this kernel; a failure is logged and the
    /// containers' drivers then fail to load (required ones stop their container). Then the
    /// device.json volumes, the meta stores on theirs, and the creds work dir
    /// `<rundir>/phconfig`, as upstream's `pv_state_start`, `pv_metadata_init` and
    /// `pv_config_load_creds`.
    fn mount_bsp(&mut self) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string();
        let on_device = self.cfg.init_mode() == crate::config::InitMode::Embedded;
        let mut v = match self
            .engine
            .mount_bsp(&self.rev, &self.state, &release, on_device)
        {
            Ok(v) => {
                if let Some(root) = &v.modules_root {
                    self.modules = crate::drivers::ModuleIndex::load(root);
                }
                v
            }
            Err(e) => {
                pvlog!(Error, "device", "{e}");
                container::bsp::BspVolumes::default()
            }
        };
        self.engine
            .mount_bsp_volumes(&self.rev, &self.state, &mut v);
        let usr = std::path::PathBuf::from(self.cfg.cache_usrmetadir().as_ref());
        let dev = std::path::PathBuf::from(self.cfg.cache_devmetadir().as_ref());
        if self
            .engine
            .mount_meta_volumes(&self.state, [&usr, &dev], &mut v)
        {
            // configuration keys in user-meta, read before the store moved to its volume
            for (k, val) in self
                .meta_store(crate::control::routes::MetaKind::User)
                .list()
                .unwrap_or_default()
            {
                meta::apply_user_meta(self.cfg, &k, Some(&val));
            }
        }
        let from_volume = self
            .cfg
            .get_bool(crate::config::Key::PV_STORAGE_PHCONFIG_VOL);
        match self.engine.mount_phconfig(from_volume, &mut v) {
            // from <storage>/config, init read pantahub.config already (see init.rs); from the
            // volume, only now can it be read, as upstream does
            Ok(dir) if from_volume => {
                let ph = dir.join("pantahub.config");
                if let Ok(text) = std::fs::read_to_string(&ph) {
                    let src = ph.display().to_string();
                    self.cfg
                        .apply_text(crate::config::Level::PhConfFile, &src, &text);
                }
            }
            Ok(_) => {}
            Err(e) => pvlog!(Error, "device", "{e}; the Hub client has no credentials"),
        }
        self.bsp = Some(v);
    }

    /// Loads the container's required and optional drivers (before its init is spawned).
    fn load_drivers(&self, i: usize) -> Result<usize, String> {
        let Some(c) = self
            .m
            .ctrs
            .get(i)
            .and_then(|c| self.state.container(&c.name))
        else {
            return Ok(0);
        };
        let meta = |store: &str, key: &str| {
            meta::placeholder(self.st.fs, self.cfg, &self.devmeta, store, key)
        };
        let plan =
            crate::drivers::for_container(&self.state, c, self.cfg.bootloader_fitconfig(), &meta);
        crate::drivers::load_for(&self.modules, &c.name, &plan)
    }

    /// A revision starts to run (boot, live switch): upstream's `_pv_run` decides the remote
    /// mode again from the configuration and the revision's name.
    pub(super) fn revision_runs(&mut self) {
        let local = self.rev.starts_with("locals/");
        let remote = daemons::remote_mode(
            self.cfg.control_remote(),
            self.cfg.control_remote_always(),
            local,
        );
        self.m.network_timeout_s = self.cfg.hub_network_timeout();
        self.feed(Input::RevisionRuns { local, remote });
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

    /// The loop's longest handling so far, readable by a test while the device runs:
    /// `<PV_SYSTEM_RUNDIR>/loop-max-stall-us` (a tmpfs on a device: no flash wear).
    fn publish_stall(&mut self) {
        let us = self.lp.max_stall_us();
        if us == self.stall_published {
            return;
        }
        self.stall_published = us;
        let p = std::path::Path::new(self.cfg.system_rundir()).join("loop-max-stall-us");
        if let Err(e) = std::fs::write(&p, format!("{us}\n")) {
            pvlog!(Warn, "device", "{}: {e}", p.display());
        }
    }

    /// A summary line per container, for the demo and the logs.
    pub fn statuses(&self) -> Vec<(String, &'static str)> {
        self.m
            .ctrs
            .iter()
            .map(|c| (c.name.clone(), c.status.as_str()))
            .collect()
    }
}

/// pv-ctrl's way into the model during one wake: admission and the model's change happen
/// here, at once; the effects wait until the server returned.
struct Front<'d> {
    m: &'d mut Model,
    st: &'d Storage<'d>,
    bl: &'d dyn Bootloader,
    rev: &'d str,
    /// Revisions being installed or entered: GC keeps them.
    pending: Vec<String>,
    keep_factory: bool,
    workers: &'d mut Workers,
    gc: &'d mut Option<work::Gc>,
    fx: Vec<Effect>,
}

impl DeviceApi for Front<'_> {
    fn request(&mut self, r: Request) -> Result<Answer, Refusal> {
        let guarded = matches!(
            r,
            Request::Gc | Request::Command(Command::RunGc | Command::MakeFactory { .. })
        );
        if guarded {
            // what GC and MAKE_FACTORY must not touch is named by the boot env: without it,
            // refuse rather than guess
            self.m.admit(false)?;
            if !matches!(r, Request::Command(Command::MakeFactory { .. }))
                && crate::control::routes::uploads_in_flight() > 0
            {
                // GC and uploads are serialized: a fresh object is not yet named by a step
                return Err(Refusal::Busy);
            }
            let env = self
                .bl
                .read(self.st.fs)
                .map_err(|e| Refusal::NoBootEnv(e.to_string()))?;
            if matches!(r, Request::Command(Command::MakeFactory { .. }))
                && updates::factory_in_use(self.rev, &env)
            {
                return Err(Refusal::FactoryInUse);
            }
            if r == Request::Gc {
                // on the worker, from a keep-set taken now; pv-ctrl answers when it is done
                let mut pending = std::mem::take(&mut self.pending);
                pending.extend(updates::admitted(self.st));
                let keep = updates::gc_keep(self.rev, &env, &pending, self.keep_factory);
                self.m.request(Request::Gc)?;
                let gc = work::start_gc(self.workers, self.st.root().to_path_buf(), keep, true);
                let job = gc.job;
                *self.gc = Some(gc);
                return Ok(Answer::Deferred(job));
            }
        }
        let (answer, fx) = self.m.request(r)?;
        self.fx.extend(fx);
        Ok(answer)
    }
}

/// The containers of a state, as the model first sees them.
fn containers(state: &State) -> Vec<Ctr> {
    state
        .containers()
        .iter()
        .map(|c| Ctr::new(state, c))
        .collect()
}

/// Each group's goal timeout: its own, else PV_UPDATER_GOALS_TIMEOUT.
fn group_timeouts(cfg: &Config, state: &State) -> Vec<u64> {
    let goals_timeout = cfg.updater_goals_timeout();
    state
        .groups()
        .iter()
        .map(|g| g.timeout.map_or(goals_timeout, u64::from))
        .collect()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
