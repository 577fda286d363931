//! The container engine: containers built by hand from a checked-out revision, with
//! clone/mount/pivot_root (no liblxc, no runc).
//!
//! Life of a container, as the PID 1 loop drives it (none of these calls blocks for long):
//! [`Engine::mount`] (volumes, status MOUNTED) -> [`Engine::start`] (STARTING; returns once
//! the init exec'd: STARTED) -> [`Engine::request_stop`] (halt signal, STOPPING, deadline) ->
//! [`Engine::kill_overdue`] at the deadline -> [`Engine::handle_exit`] with the status the loop
//! reaped (STOPPED: cgroup removed, network detached, volumes unmounted). The engine never
//! calls `waitpid(-1)`; only the blocking conveniences for tests and benchmarks
//! ([`Engine::stop_and_wait`], [`Engine::wait_exit`]) reap their own child by pid.
//!
//! The sequence of a start:
//! - parent, in pantavisor's mount namespace: volumes (`LOOP_CTL_GET_FREE`, open or mknod
//!   `/dev/loopN`, `LOOP_CONFIGURE` read-only+autoclear, mount; bind mounts; tmpfs), the
//!   `_config` copy, the cgroup `<own cgroup>/lxc/<name>` and its knobs, the console log
//!   (O_APPEND), the plan (`plan.rs`), two close-on-exec pipes;
//! - `clone3(CLONE_NEWNS|NEWPID|NEWUTS[|NEWIPC][|NEWNET], CLONE_INTO_CGROUP)` (or `clone`
//!   plus a write to `cgroup.procs`); the network is attached while the child waits;
//! - child (`spawn.rs`, no allocation, no lock): sethostname; `/` rprivate; overlay on the
//!   rootfs mount point (with run.json `exports`: the mount point private, the overlay, the
//!   exports bound onto the shared `<exportsdir>`, then `/` rprivate); every later target resolved inside the rootfs (openat2
//!   RESOLVE_IN_ROOT) and mounted through `/proc/self/fd/N`: tmpfs /dev, proc (+ read-only
//!   /proc/sys), sysfs, the container's cgroup, `lxc.mount.entry`, the /pantavisor view,
//!   firmware/modules; device nodes, devpts, ptmx; `pivot_root(".", ".")` +
//!   `umount2(".", MNT_DETACH)` (EINVAL: MS_MOVE + chroot); chdir; PR_CAPBSET_DROP; with
//!   device rules a barrier while the parent attaches the device program (`devices.rs`) to
//!   the cgroup; stdio; signals reset; no_new_privs and the seccomp filter (`seccomp.rs`);
//!   execve. A failing step is reported as (step, errno).
pub mod lxc;
pub mod net;

pub mod bsp;
mod cgroup;
mod devices;
mod disk;
mod ext4;
mod plan;
mod seccomp;
mod spawn;
mod syscalls;
mod verity;
mod volumes;

use crate::config::Config;
use crate::pvlog;
use crate::state::{one_line, State};
use crate::sys;
use std::fmt;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use cgroup::discover_root as discover_cgroup_root;

/// MS_* mount flags as u64 (the LXC parser's constants, Linux ABI values).
pub(crate) mod ms {
    pub use super::lxc::{
        MS_BIND as BIND, MS_MOVE as MOVE, MS_NOATIME as NOATIME, MS_NODEV as NODEV,
        MS_NODIRATIME as NODIRATIME, MS_NOEXEC as NOEXEC, MS_NOSUID as NOSUID,
        MS_NOSYMFOLLOW as NOSYMFOLLOW, MS_PRIVATE as PRIVATE, MS_RDONLY as RDONLY, MS_REC as REC,
        MS_RELATIME as RELATIME, MS_REMOUNT as REMOUNT, MS_SHARED as SHARED,
        MS_STRICTATIME as STRICTATIME,
    };
}

/// What went wrong, one line: `container <name>: <step> <path>: <error>`.
#[derive(Debug)]
pub struct Error {
    pub container: String,
    /// The failing step: `mount`, `loop`, `pivot_root`, `exec`, `config`, `cgroup`, ...
    pub step: &'static str,
    /// What the step worked on (a host path, or a path inside the container).
    pub path: String,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    /// errno of the failing syscall.
    Os(i32),
    /// A problem of the revision or the configuration.
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "container {}: {} {}: ",
            one_line(&self.container),
            self.step,
            one_line(&self.path)
        )?;
        match &self.kind {
            ErrorKind::Os(e) => write!(f, "{}", io::Error::from_raw_os_error(*e)),
            ErrorKind::Invalid(m) => write!(f, "{}", one_line(m)),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    fn io(container: &str, step: &'static str, path: &Path, e: &io::Error) -> Error {
        Error {
            container: container.to_string(),
            step,
            path: path.display().to_string(),
            kind: ErrorKind::Os(sys::errno_of(e)),
        }
    }
    fn invalid(
        container: &str,
        step: &'static str,
        path: impl AsRef<Path>,
        msg: impl Into<String>,
    ) -> Error {
        Error {
            container: container.to_string(),
            step,
            path: path.as_ref().display().to_string(),
            kind: ErrorKind::Invalid(msg.into()),
        }
    }
    /// The errno, for an OS error.
    pub fn errno(&self) -> Option<i32> {
        match self.kind {
            ErrorKind::Os(e) => Some(e),
            ErrorKind::Invalid(_) => None,
        }
    }
}

/// The host folders the engine works in (the configured standalone-mode paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    /// `PV_STORAGE_MNTPOINT`: trails, disks, objects.
    pub storage: PathBuf,
    /// `PV_DISK_VOLDIR`: `<voldir>/<container>/<volume>`.
    pub voldir: PathBuf,
    /// `PV_DISK_EXPORTSDIR`.
    pub exportsdir: PathBuf,
    /// `PV_SYSTEM_CONFDIR`: `<confdir>/<container>` = copy of `_config/<container>/`.
    pub confdir: PathBuf,
    /// `PV_SYSTEM_RUNDIR`: sockets and the /pantavisor view.
    pub rundir: PathBuf,
    /// `PV_LOG_DIR`: `<logdir>/<rev>/<container>/lxc/console.log`.
    pub logdir: PathBuf,
    /// Where each container mounts its root file system in its own mount namespace before
    /// pivot_root (upstream: `<libdir>/lxc/rootfs`); `<rundir>.lxc/rootfs` by default, beside
    /// the rundir and not in it: a mgmt container sees the rundir whole as /pantavisor, where
    /// upstream shows nothing of its engine. The containers' /proc/cmdline is made beside it.
    pub rootfs_mount: PathBuf,
    /// `PV_SYSTEM_MEDIADIR`: dm-crypt disks are mounted at `<media>/pv/dmcrypt/<disk>`.
    pub media: PathBuf,
}

impl Paths {
    pub fn from_config(c: &Config) -> Paths {
        let rundir = PathBuf::from(c.system_rundir());
        Paths {
            storage: PathBuf::from(c.storage_mntpoint()),
            voldir: PathBuf::from(c.disk_voldir()),
            exportsdir: PathBuf::from(c.disk_exportsdir()),
            confdir: PathBuf::from(c.system_confdir()),
            logdir: PathBuf::from(c.log_dir().as_ref()),
            rootfs_mount: engine_dir(&rundir).join("rootfs"),
            media: PathBuf::from(c.system_mediadir()),
            rundir,
        }
    }

    /// The LXC parser's prefix map for these folders.
    pub fn path_map(&self) -> lxc::PathMap {
        let s = |p: &Path| p.to_string_lossy().into_owned();
        lxc::PathMap {
            volumes: s(&self.voldir),
            exports: s(&self.exportsdir),
            storage: s(&self.storage),
            pv: s(&self.rundir),
        }
    }

    /// pvr writes host paths for an embedded device into LXC configs (`/volumes/...`,
    /// `/exports/...`, `/storage/...`, `/pv/...`); they are mapped by prefix to the configured
    /// folders so pvr-made configs run unchanged. Other paths are kept.
    pub fn map_host_path(&self, p: &str) -> PathBuf {
        PathBuf::from(self.path_map().map(p))
    }

    /// `<logdir>/<rev>/<container>/lxc/console.log`.
    pub fn console_log(&self, rev: &str, container: &str) -> PathBuf {
        self.logdir
            .join(rev)
            .join(container)
            .join("lxc")
            .join("console.log")
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct Options {
    /// Between the halt signal and the kill (upstream: 5 s).
    pub stop_grace: Duration,
    /// How long `start` waits for the init's exec.
    pub exec_timeout: Duration,
    /// The cgroup under which `lxc/<name>` is made; None = pantavisor's own (discovered).
    pub cgroup_root: Option<PathBuf>,
    /// Take the paths of kernels older than 5.8 (clone(2) + cgroup.procs instead of clone3
    /// CLONE_INTO_CGROUP, LOOP_SET_FD instead of LOOP_CONFIGURE): for the tests of those paths.
    pub legacy_kernel: bool,
    /// `dm:` volumes through dm-verity: `PV_SECUREBOOT_HANDLERS` and no `pv_verityoff` (else
    /// they are mounted as plain images, as upstream does).
    pub verity: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            stop_grace: Duration::from_secs(5),
            exec_timeout: Duration::from_secs(10),
            cgroup_root: None,
            legacy_kernel: false,
            verity: true,
        }
    }
}

/// The engine's part of upstream's container statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Mounted,
    Starting,
    Started,
    Stopping,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Mounted => "MOUNTED",
            Status::Starting => "STARTING",
            Status::Started => "STARTED",
            Status::Stopping => "STOPPING",
            Status::Stopped => "STOPPED",
        }
    }
}

/// How a container's init ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s} ({})", signal_name(*s)),
        }
    }
}

pub fn signal_name(s: i32) -> &'static str {
    match s {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGTERM => "SIGTERM",
        libc::SIGPWR => "SIGPWR",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        _ => "signal",
    }
}

/// A running init.
#[derive(Debug)]
struct Run {
    pid: sys::Pid,
    cgroup: Option<cgroup::Cgroup>,
    net: Option<net::NetHandle>,
    halt_signal: i32,
    stop_deadline: Option<Instant>,
    killed: bool,
    /// Export mount points in pantavisor's namespace.
    exports: Vec<PathBuf>,
}

#[derive(Debug)]
struct Instance {
    name: String,
    rev: String,
    status: Status,
    volumes: Vec<volumes::Mounted>,
    run: Option<Run>,
    exit: Option<Exit>,
}

/// The containers of this device as the engine knows them.
pub struct Engine {
    paths: Paths,
    opts: Options,
    cgroup_root: Option<PathBuf>,
    instances: Vec<Instance>,
    /// Binds on themselves made for exports (see [`export_mounts`]).
    own_mounts: Vec<PathBuf>,
}

impl Engine {
    pub fn new(paths: Paths, opts: Options) -> Engine {
        let cgroup_root = match &opts.cgroup_root {
            Some(r) => Some(r.clone()),
            None => match cgroup::discover_root() {
                Ok(r) => Some(r),
                Err(e) => {
                    pvlog!(Warn, "container", "no cgroup v2 for containers: {e}");
                    None
                }
            },
        };
        if let Some(r) = &cgroup_root {
            pvlog!(
                Debug,
                "container",
                "container cgroups under {}/lxc",
                r.display()
            );
        }
        Engine {
            paths,
            opts,
            cgroup_root,
            instances: Vec::new(),
            own_mounts: Vec::new(),
        }
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }
    pub fn options(&self) -> &Options {
        &self.opts
    }
    /// pantavisor's cgroup, under which `lxc/<name>` are made.
    pub fn cgroup_root(&self) -> Option<&Path> {
        self.cgroup_root.as_deref()
    }

    fn find(&self, name: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.name == name)
    }
    fn find_mut(&mut self, name: &str) -> Option<&mut Instance> {
        self.instances.iter_mut().find(|i| i.name == name)
    }

    pub fn status(&self, name: &str) -> Option<Status> {
        self.find(name).map(|i| i.status)
    }
    /// The init's pid as pantavisor sees it, while it runs.
    pub fn pid(&self, name: &str) -> Option<i32> {
        self.find(name).and_then(|i| i.run.as_ref()).map(|r| r.pid)
    }
    /// How the last run ended.
    pub fn last_exit(&self, name: &str) -> Option<Exit> {
        self.find(name).and_then(|i| i.exit)
    }
    /// The container's cgroup directory while it runs.
    pub fn cgroup_dir(&self, name: &str) -> Option<&Path> {
        self.find(name)
            .and_then(|i| i.run.as_ref())
            .and_then(|r| r.cgroup.as_ref())
            .map(|c| c.dir.as_path())
    }

    /// Mounts the container's volumes (status MOUNTED). Already mounted for `rev`: nothing.
    pub fn mount(&mut self, rev: &str, state: &State, name: &str) -> Result<(), Error> {
        // every failure is logged here, once, as a WARN (the engine's detail, as LXC's own log
        // has it upstream); the device logs its verdict at ERROR
        self.mount_volumes(rev, state, name)
            .inspect_err(|e| pvlog!(Warn, "container", "{e}"))
    }

    fn mount_volumes(&mut self, rev: &str, state: &State, name: &str) -> Result<(), Error> {
        // the name becomes a path component of volumes, cgroup, logs and config copies
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(Error::invalid(
                name,
                "config",
                rev,
                "not a usable container name",
            ));
        }
        if let Some(i) = self.find(name) {
            if i.run.is_some() || i.rev == rev && i.status == Status::Mounted {
                return Ok(());
            }
        }
        self.unmount(name)?;
        let c = state.container(name).ok_or_else(|| {
            Error::invalid(name, "config", rev, "no such container in the revision")
        })?;
        let vols = volumes::mount_all(
            &self.paths,
            rev,
            state,
            c,
            self.opts.legacy_kernel,
            self.opts.verity,
        )?;
        pvlog!(
            Info,
            "container",
            "container {name}: {} volumes mounted",
            vols.len()
        );
        self.instances.retain(|i| i.name != name);
        self.instances.push(Instance {
            name: name.to_string(),
            rev: rev.to_string(),
            status: Status::Mounted,
            volumes: vols,
            run: None,
            exit: None,
        });
        Ok(())
    }

    /// Unmounts the volumes of a container that does not run, and forgets it.
    pub fn unmount(&mut self, name: &str) -> Result<(), Error> {
        let Some(pos) = self.instances.iter().position(|i| i.name == name) else {
            return Ok(());
        };
        if self.instances.get(pos).is_some_and(|i| i.run.is_some()) {
            return Err(Error::invalid(
                name,
                "unmount",
                &self.paths.voldir,
                "container is running",
            ));
        }
        let i = self.instances.remove(pos);
        volumes::unmount_all(name, i.volumes);
        Ok(())
    }

    /// Starts the container of `rev` (mounting its volumes first when needed) and returns the
    /// init's pid once it exec'd (STARTED). On failure everything this call did is undone, the
    /// volumes are unmounted, and the error is logged (once, here, as a WARN: callers do not log
    /// it again) and returned.
    pub fn start(&mut self, rev: &str, state: &State, name: &str) -> Result<i32, Error> {
        if self.find(name).is_some_and(|i| i.run.is_some()) {
            let e = Error::invalid(name, "start", rev, "already running");
            pvlog!(Warn, "container", "{e}");
            return Err(e);
        }
        self.mount(rev, state, name)?;
        if let Some(i) = self.find_mut(name) {
            i.status = Status::Starting;
            i.exit = None;
        }
        pvlog!(
            Info,
            "container",
            "container {name}: STARTING (revision {rev})"
        );
        match self.launch(rev, state, name) {
            Ok(run) => {
                let pid = run.pid;
                if let Some(i) = self.find_mut(name) {
                    i.run = Some(run);
                    i.status = Status::Started;
                }
                pvlog!(
                    Info,
                    "container",
                    "container {name}: STARTED, init pid {pid}"
                );
                Ok(pid)
            }
            Err(e) => {
                pvlog!(Warn, "container", "{e}");
                if let Some(i) = self.find_mut(name) {
                    i.status = Status::Mounted;
                }
                let _ = self.unmount(name);
                Err(e)
            }
        }
    }

    fn launch(&mut self, rev: &str, state: &State, name: &str) -> Result<Run, Error> {
        let c = state.container(name).ok_or_else(|| {
            Error::invalid(name, "config", rev, "no such container in the revision")
        })?;
        let trail = self.paths.storage.join("trails").join(rev);
        let cfg_rel = c.config.as_deref().ok_or_else(|| {
            Error::invalid(
                name,
                "config",
                trail.join(name),
                "run.json names no LXC config",
            )
        })?;
        if cfg_rel.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(Error::invalid(
                name,
                "config",
                trail.join(name).join(cfg_rel),
                "the LXC config must be a path inside the container's directory",
            ));
        }
        let cfg_path = trail.join(name).join(cfg_rel);
        let text =
            fs::read_to_string(&cfg_path).map_err(|e| Error::io(name, "config", &cfg_path, &e))?;
        let cfg = lxc::parse(&text, &cfg_path.to_string_lossy())
            .map_err(|e| Error::invalid(name, "config", &cfg_path, e.to_string()))?;
        // the parser logged its warnings already
        report_unenforced(name, &cfg);
        // the seccomp filter before anything is made: a bad profile fails the start cleanly
        let mut seccomp = Vec::new();
        if let Some(v) = &cfg.seccomp_profile {
            let dir = cfg_path.parent().unwrap_or(&trail);
            let path = seccomp::resolve(v, dir, &self.paths);
            let (filter, warnings) =
                seccomp::load(&path).map_err(|e| Error::invalid(name, "seccomp", &path, e))?;
            for w in warnings {
                pvlog!(
                    Warn,
                    "container",
                    "container {name}: {}: {w}",
                    path.display()
                );
            }
            seccomp = filter;
        }

        // _config/<name>/ -> <confdir>/<name>, fresh at each start (cp -aL)
        let conf_src = trail.join("_config").join(name);
        let conf_dst = self.paths.confdir.join(name);
        match fs::remove_dir_all(&conf_dst) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(Error::io(name, "remove", &conf_dst, &e))
            }
            _ => {}
        }
        let config_overlay = if conf_src.is_dir() {
            copy_tree(&conf_src, &conf_dst, 0).map_err(|(p, e)| Error::io(name, "copy", &p, &e))?;
            Some(conf_dst)
        } else {
            None
        };

        // console log: where the log tree wants it once logging is set up (it rotates it)
        let log = crate::logs::container_log_path(rev, name, "lxc/console.log")
            .unwrap_or_else(|| self.paths.console_log(rev, name));
        if let Some(d) = log.parent() {
            fs::create_dir_all(d).map_err(|e| Error::io(name, "mkdir", d, &e))?;
        }
        let console: OwnedFd = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&log)
            .map_err(|e| Error::io(name, "open", &log, &e))?
            .into();

        let mut existing = Vec::new();
        for s in ["pv-ctrl", "pv-ctrl-log"] {
            if self.paths.rundir.join(s).exists() {
                existing.push(s);
            }
        }
        // cgroup (its path is part of the plan: the cgroup auto-mount binds it)
        let mut cg = None;
        if let Some(root) = &self.cgroup_root {
            let g = cgroup::Cgroup::create(root, name)
                .map_err(|e| Error::io(name, "cgroup", &root.join("lxc").join(name), &e))?;
            let (knobs, notes) = cgroup::v2_knobs(&cfg.cgroup_knobs);
            for n in notes {
                pvlog!(Warn, "container", "container {name}: {n}");
            }
            let applied = g.apply(root, &knobs);
            match applied {
                Ok(notes) => {
                    for n in notes {
                        pvlog!(Info, "container", "container {name}: {n}");
                    }
                }
                Err(k) => {
                    let e = Error::io(name, "cgroup", &k.path, &k.error);
                    let _ = g.remove();
                    return Err(e);
                }
            }
            cg = Some(g);
        } else if !cfg.cgroup_knobs.is_empty() {
            pvlog!(
                Warn,
                "container",
                "container {name}: no cgroup v2: cgroup knobs not applied"
            );
        }
        let undo_cgroup = |cg: Option<cgroup::Cgroup>| {
            if let Some(g) = cg {
                let dir = g.dir.clone();
                if let Err(e) = g.remove() {
                    pvlog!(
                        Warn,
                        "container",
                        "container {name}: cgroup {}: {e}",
                        dir.display()
                    );
                }
            }
        };
        // the device program, attached to the cgroup once the container's /dev is made
        let device_prog = match (devices::load(&cfg.cgroup_devices), &cg) {
            (Ok(None), _) => None,
            (Ok(Some(p)), Some(_)) => Some(p),
            (Ok(Some(_)), None) => {
                return Err(Error::invalid(
                    name,
                    "devices",
                    "lxc.cgroup.devices",
                    "no cgroup v2 to enforce the device rules with",
                ))
            }
            (Err(e), _) => {
                let dir = cg.as_ref().map(|g| g.dir.clone()).unwrap_or_default();
                undo_cgroup(cg);
                return Err(Error::io(name, "devices", &dir, &e));
            }
        };

        let inputs = plan::Inputs {
            name,
            group: &c.group,
            rev,
            cfg: &cfg,
            paths: &self.paths,
            mgmt: c.is_mgmt(),
            config_overlay,
            cgroup_dir: cg.as_ref().map(|g| g.dir.clone()),
            cgroup_root: self.cgroup_root.clone(),
            cmdline: stripped_cmdline(&self.paths),
            firmware: Some(PathBuf::from("/lib/firmware")).filter(|p| c.automodfw && p.is_dir()),
            modules: Some(self.paths.voldir.join("bsp/modules.squashfs"))
                .filter(|p| c.automodfw && p.exists())
                .and_then(|p| {
                    let r = fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
                    Some((p, r.trim().to_string()))
                }),
            cap_last_cap: cap_last_cap(),
            existing_sockets: &existing,
            exports: &c.exports,
        };
        let (mut plan, prep) = match plan::build(&inputs) {
            Ok(p) => p,
            Err(e) => {
                undo_cgroup(cg);
                return Err(Error::invalid(name, e.step, &e.path, e.message));
            }
        };
        for n in &plan.notes {
            pvlog!(Warn, "container", "container {name}: {n}");
        }
        plan.seccomp = seccomp;
        plan.barrier = device_prog.is_some();
        for d in &prep.dirs {
            if let Err(e) = fs::create_dir_all(d) {
                undo_cgroup(cg);
                return Err(Error::io(name, "mkdir", d, &e));
            }
        }
        if !prep.exports.is_empty() {
            if let Err((p, e)) = export_mounts(&self.paths, &mut self.own_mounts) {
                undo_cgroup(cg);
                return Err(Error::io(name, "export", &p, &e));
            }
        }

        // clone; the child waits until cgroup and network are in place
        let mut child = match spawn::clone_child(
            &plan,
            cg.as_ref().map(|g| g.fd()),
            &console,
            !self.opts.legacy_kernel,
        ) {
            Ok(c) => c,
            Err(e) => {
                undo_cgroup(cg);
                return Err(spawn_error(name, &plan, e));
            }
        };
        let pid = child.pid;
        pvlog!(
            Debug,
            "container",
            "container {name}: pid {pid} made by {:?}",
            child.how
        );
        if let Some(g) = &cg {
            if child.how != sys::CloneHow::Clone3IntoCgroup {
                if let Err(e) = g.add_pid(pid) {
                    child.abort();
                    let p = g.dir.join("cgroup.procs");
                    undo_cgroup(cg);
                    return Err(Error::io(name, "cgroup", &p, &e));
                }
            }
        }
        // the network of the new namespace, configured while the child waits
        let net = match u32::try_from(pid)
            .map_err(|_| io::Error::from_raw_os_error(libc::ESRCH).to_string())
            .and_then(|p| net::attach(&plan.net, name, p).map_err(|e| e.to_string()))
        {
            Ok(h) => h,
            Err(e) => {
                child.abort();
                undo_cgroup(cg);
                return Err(Error::invalid(name, "network", "lxc.net.0", e));
            }
        };
        let cg_fd = cg.as_ref().map(|g| g.fd());
        let mut attach = || match (&device_prog, cg_fd) {
            (Some(p), Some(c)) => sys::filter::attach_cgroup_device(c, p.as_fd())
                .map_err(|e| spawn::SpawnError::Parent("attach device program", e)),
            _ => Ok(()),
        };
        match child.release(self.opts.exec_timeout, &mut attach) {
            Ok(notes) => {
                for r in notes {
                    log_record(name, &plan, r);
                }
            }
            Err(e) => {
                child.abort();
                detach_exports(name, &prep.exports);
                if let Some(h) = net {
                    detach_net(name, h);
                }
                undo_cgroup(cg);
                return Err(spawn_error(name, &plan, e));
            }
        }
        Ok(Run {
            pid,
            cgroup: cg,
            net,
            halt_signal: plan.halt_signal,
            stop_deadline: None,
            killed: false,
            exports: prep.exports,
        })
    }

    /// Sends the halt signal and returns the deadline after which [`Engine::kill_overdue`]
    /// kills the container (None: it does not run). A zero grace kills at once.
    pub fn request_stop(&mut self, name: &str, now: Instant) -> Result<Option<Instant>, Error> {
        let grace = self.opts.stop_grace;
        self.request_stop_with(name, now, grace)
    }

    fn request_stop_with(
        &mut self,
        name: &str,
        now: Instant,
        grace: Duration,
    ) -> Result<Option<Instant>, Error> {
        let Some(i) = self.find_mut(name) else {
            return Ok(None);
        };
        let Some(run) = i.run.as_mut() else {
            return Ok(None);
        };
        if let Some(d) = run.stop_deadline {
            return Ok(Some(d));
        }
        i.status = Status::Stopping;
        let deadline = now + grace;
        run.stop_deadline = Some(deadline);
        if grace.is_zero() {
            kill_run(name, run);
            return Ok(Some(deadline));
        }
        pvlog!(
            Info,
            "container",
            "container {name}: STOPPING ({} to pid {}, {} ms grace)",
            signal_name(run.halt_signal),
            run.pid,
            grace.as_millis()
        );
        match sys::kill(run.pid, run.halt_signal) {
            Ok(()) => {}
            // already gone: its exit is on its way to handle_exit
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(Error::io(name, "stop", Path::new(&run.pid.to_string()), &e)),
        }
        Ok(Some(deadline))
    }

    /// Kills every stopping container whose grace period ended by `now`.
    pub fn kill_overdue(&mut self, now: Instant) {
        for i in &mut self.instances {
            if let Some(run) = i.run.as_mut() {
                if !run.killed && run.stop_deadline.is_some_and(|d| d <= now) {
                    pvlog!(
                        Warn,
                        "container",
                        "container {}: still running after the grace period, killing it",
                        i.name
                    );
                    kill_run(&i.name, run);
                }
            }
        }
    }

    /// Kills a stopping container now (its grace, timed by the device, passed).
    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.find_mut(name) {
            if let Some(run) = i.run.as_mut() {
                if !run.killed {
                    pvlog!(
                        Warn,
                        "container",
                        "container {name}: still running after the grace period, killing it"
                    );
                    kill_run(name, run);
                }
            }
        }
    }

    /// The nearest stop deadline not handled yet.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.instances
            .iter()
            .filter_map(|i| i.run.as_ref())
            .filter(|r| !r.killed)
            .filter_map(|r| r.stop_deadline)
            .min()
    }

    /// Routes an exit reaped by the PID 1 loop: when `pid` is a container's init, the
    /// container is cleaned up (cgroup, network, volumes: STOPPED) and its name and exit are
    /// returned. Other pids: None.
    pub fn handle_exit(&mut self, pid: i32, wait_status: i32) -> Option<(String, Exit)> {
        let exit = match sys::decode_wait_status(wait_status) {
            sys::WaitStatus::Exited(c) => Exit::Code(c),
            sys::WaitStatus::Signaled(s) => Exit::Signal(s),
            sys::WaitStatus::Other => return None,
        };
        let i = self
            .instances
            .iter_mut()
            .find(|i| i.run.as_ref().is_some_and(|r| r.pid == pid))?;
        let name = i.name.clone();
        if let Some(run) = i.run.take() {
            detach_exports(&name, &run.exports);
            if let Some(h) = run.net {
                detach_net(&name, h);
            }
            if let Some(g) = run.cgroup {
                if g.populated() {
                    // processes that left the init's PID namespace (setns) die with it
                    let _ = g.kill();
                }
                let dir = g.dir.clone();
                if let Err(e) = g.remove() {
                    pvlog!(
                        Warn,
                        "container",
                        "container {name}: cgroup {}: {e}",
                        dir.display()
                    );
                }
            }
        }
        let vols = std::mem::take(&mut i.volumes);
        i.status = Status::Stopped;
        i.exit = Some(exit);
        volumes::unmount_all(&name, vols);
        pvlog!(Info, "container", "container {name}: STOPPED, {exit}");
        Some((name, exit))
    }

    /// Blocking stop for tests and benchmarks: halt signal, wait up to `grace`, kill, reap
    /// (waitpid on this pid only), clean up. None when it was not running.
    pub fn stop_and_wait(&mut self, name: &str, grace: Duration) -> Result<Option<Exit>, Error> {
        let Some(pid) = self.pid(name) else {
            return Ok(None);
        };
        let now = Instant::now();
        let deadline = self.request_stop_with(name, now, grace)?.unwrap_or(now);
        let status = match wait_pid_until(pid, Some(deadline)) {
            Ok(Some(s)) => s,
            Ok(None) => {
                self.kill_overdue(Instant::now().max(deadline));
                match wait_pid_until(pid, None) {
                    Ok(Some(s)) => s,
                    Ok(None) | Err(_) => 0,
                }
            }
            Err(e) => return Err(Error::io(name, "wait", Path::new(&pid.to_string()), &e)),
        };
        Ok(self.handle_exit(pid, status).map(|(_, e)| e))
    }

    /// Blocking wait for a container's init to end by itself (tests), up to `timeout`;
    /// cleans up like [`Engine::handle_exit`]. None on timeout or when it was not running.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> Result<Option<Exit>, Error> {
        let Some(pid) = self.pid(name) else {
            return Ok(None);
        };
        match wait_pid_until(pid, Some(Instant::now() + timeout)) {
            Ok(Some(s)) => Ok(self.handle_exit(pid, s).map(|(_, e)| e)),
            Ok(None) => Ok(None),
            Err(e) => Err(Error::io(name, "wait", Path::new(&pid.to_string()), &e)),
        }
    }
}

impl Drop for Engine {
    /// Nothing outlives the engine: running containers are killed and reaped, volumes and the
    /// binds made for exports unmounted (PID 1 never drops it; tests and tools do).
    fn drop(&mut self) {
        let names: Vec<String> = self.instances.iter().map(|i| i.name.clone()).collect();
        for n in names {
            let _ = self.stop_and_wait(&n, Duration::ZERO);
            let _ = self.unmount(&n);
        }
        detach_exports("(exports)", &std::mem::take(&mut self.own_mounts));
    }
}

/// Pantavisor's side of exports (see plan.rs): `<exportsdir>` a shared mount in a peer group
/// of its own, the rootfs mount point a private mount; each a bind on itself when it is not a
/// mount point yet (added to `own`). A few syscalls at each start of an exporting container.
fn export_mounts(paths: &Paths, own: &mut Vec<PathBuf>) -> Result<(), (PathBuf, io::Error)> {
    for (dir, flags) in [
        (&paths.exportsdir, &[ms::PRIVATE, ms::SHARED][..]),
        (&paths.rootfs_mount, &[ms::PRIVATE][..]),
    ] {
        let er = |e| (dir.clone(), e);
        let c = volumes::c_path(dir).map_err(er)?;
        for (i, &f) in flags.iter().enumerate() {
            match sys::mount(None, &c, None, f, None) {
                // not a mount point yet
                Err(e) if i == 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                    sys::mount(Some(&c), &c, None, ms::BIND, None).map_err(er)?;
                    own.push(dir.clone());
                    sys::mount(None, &c, None, f, None).map_err(er)?;
                }
                r => r.map_err(er)?,
            }
        }
    }
    Ok(())
}

/// Detaches mounts made for exports from pantavisor's namespace, last first. A container's
/// exports hold its rootfs overlay busy: they go before its volumes are unmounted.
fn detach_exports(name: &str, exports: &[PathBuf]) {
    for t in exports.iter().rev() {
        let flags = libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW;
        match volumes::c_path(t).and_then(|c| sys::umount2(&c, flags)) {
            Ok(()) => {}
            // not mounted: the child failed before it
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => pvlog!(
                Warn,
                "container",
                "container {name}: umount {}: {e}",
                t.display()
            ),
        }
    }
}

fn detach_net(name: &str, h: net::NetHandle) {
    if let Err(e) = net::detach(h) {
        pvlog!(Warn, "container", "container {name}: network: {e}");
    }
}

fn kill_run(name: &str, run: &mut Run) {
    run.killed = true;
    if let Some(g) = &run.cgroup {
        match g.kill() {
            Ok(()) => return,
            Err(e) => pvlog!(
                Warn,
                "container",
                "container {name}: cgroup.kill: {e}; killing pid {}",
                run.pid
            ),
        }
    }
    // killing the first process of a PID namespace kills the whole namespace
    let _ = sys::kill(run.pid, libc::SIGKILL);
}

/// Waits for `pid` (our child) to end, until `deadline` (None: for ever); the raw status.
fn wait_pid_until(pid: sys::Pid, deadline: Option<Instant>) -> io::Result<Option<i32>> {
    let Some(deadline) = deadline else {
        return sys::waitpid(pid, false);
    };
    let pidfd = sys::pidfd_open(pid).ok();
    loop {
        if let Some(s) = sys::waitpid(pid, true)? {
            return Ok(Some(s));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        match &pidfd {
            Some(fd) => {
                let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
                sys::poll_readable(fd.as_fd(), ms)?;
            }
            None => std::thread::sleep(left.min(Duration::from_millis(5))),
        }
    }
}

/// `<rundir>.lxc` (`/pv.lxc` on a device): see [`Paths::rootfs_mount`].
fn engine_dir(rundir: &Path) -> PathBuf {
    match rundir.file_name() {
        Some(n) => rundir.with_file_name(format!("{}.lxc", n.to_string_lossy())),
        None => PathBuf::from("/.pv.lxc"),
    }
}

/// `/proc/cmdline` without `console=` words, written to `cmdline` beside the rootfs mount point
/// for the containers' /proc/cmdline (as upstream's containers see it). None when it cannot be
/// made.
fn stripped_cmdline(paths: &Paths) -> Option<PathBuf> {
    let text = fs::read_to_string("/proc/cmdline").ok()?;
    let words: Vec<&str> = text
        .split_whitespace()
        .filter(|w| !w.starts_with("console="))
        .collect();
    let dir = paths.rootfs_mount.parent()?;
    fs::create_dir_all(dir).ok()?;
    let path = dir.join("cmdline");
    let tmp = dir.join("cmdline.tmp");
    // a fresh file renamed over the old one: containers running keep the inode they bound
    fs::write(&tmp, format!("{}\n", words.join(" "))).ok()?;
    fs::rename(&tmp, &path).ok()?;
    Some(path)
}

fn cap_last_cap() -> u32 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Keys parsed but not enforced yet are reported, never ignored silently.
fn report_unenforced(name: &str, cfg: &lxc::LxcConfig) {
    if let Some(n) = cfg.tty_max {
        pvlog!(
            Info,
            "container",
            "container {name}: lxc.tty.max = {n}: no ttys allocated"
        );
    }
    if let Some(f) = &cfg.log_file {
        pvlog!(
            Info,
            "container",
            "container {name}: lxc.log.file = {f}: engine messages go to pantavisor's log"
        );
    }
}

fn desc_of(plan: &plan::ChildPlan, index: u32) -> (&'static str, String) {
    desc_quiet(plan, index).0
}

fn desc_quiet(plan: &plan::ChildPlan, index: u32) -> ((&'static str, String), bool) {
    if index == spawn::exec_index(plan) {
        let argv0 = plan
            .argv
            .strings()
            .first()
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default();
        return (("exec", argv0), false);
    }
    if index == spawn::stdio_index(plan) {
        return (("stdio", "0 1 2".to_string()), false);
    }
    if index == spawn::filter_index(plan) {
        return (("seccomp", "lxc.seccomp.profile".to_string()), false);
    }
    match usize::try_from(index).ok().and_then(|i| plan.descs.get(i)) {
        Some(d) => ((d.step, d.path.clone()), d.quiet),
        None => (("setup", format!("step {index}")), false),
    }
}

fn log_record(name: &str, plan: &plan::ChildPlan, r: spawn::Record) {
    let ((step, path), quiet) = desc_quiet(plan, r.index);
    let err = io::Error::from_raw_os_error(r.errno);
    if quiet {
        pvlog!(
            Debug,
            "container",
            "container {name}: optional {step} {path}: {err}: skipped"
        );
    } else if r.kind == spawn::KIND_PIVOT_FALLBACK {
        pvlog!(
            Warn,
            "container",
            "container {name}: pivot_root {path}: {err}: the root is the initramfs; fell back to MS_MOVE + chroot (weaker isolation)"
        );
    } else {
        pvlog!(
            Warn,
            "container",
            "container {name}: optional {step} {path}: {err}: skipped"
        );
    }
}

fn spawn_error(name: &str, plan: &plan::ChildPlan, e: spawn::SpawnError) -> Error {
    match e {
        spawn::SpawnError::Parent(step, e) => Error {
            container: name.to_string(),
            step,
            path: String::new(),
            kind: ErrorKind::Os(sys::errno_of(&e)),
        },
        spawn::SpawnError::Child(fatal, notes) => {
            for r in notes {
                log_record(name, plan, r);
            }
            let (step, path) = desc_of(plan, fatal.index);
            Error {
                container: name.to_string(),
                step,
                path,
                kind: ErrorKind::Os(fatal.errno),
            }
        }
        spawn::SpawnError::Timeout => Error {
            container: name.to_string(),
            step: "exec",
            path: String::new(),
            kind: ErrorKind::Invalid("no exec within the start timeout".to_string()),
        },
    }
}

/// `cp -aL`: symlinks followed, mode, owner and modification time kept. Errors carry the
/// path. Depth-limited against symlink loops.
fn copy_tree(src: &Path, dst: &Path, depth: u32) -> Result<(), (PathBuf, io::Error)> {
    if depth > 32 {
        return Err((src.to_path_buf(), io::Error::from_raw_os_error(libc::ELOOP)));
    }
    let er = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let meta = fs::metadata(src).map_err(er(src))?;
    if meta.is_dir() {
        fs::create_dir_all(dst).map_err(er(dst))?;
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(er(src))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        crate::sort(&mut names);
        for n in names {
            copy_tree(&src.join(&n), &dst.join(&n), depth + 1)?;
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(er(dst))?;
    } else if meta.is_file() {
        fs::copy(src, dst).map_err(er(dst))?;
    } else {
        // devices, fifos and sockets are not configuration files
        pvlog!(
            Warn,
            "container",
            "config overlay: {} is not a file, skipped",
            src.display()
        );
        return Ok(());
    }
    std::os::unix::fs::chown(dst, Some(meta.uid()), Some(meta.gid())).map_err(er(dst))?;
    if let Ok(m) = meta.modified() {
        if let Ok(f) = fs::File::open(dst) {
            let _ = f.set_modified(m);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
