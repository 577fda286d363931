//! The spawn plan: everything the container's first process does between `clone` and `execve`,
//! computed before `clone` as C strings and numbers. Building it is pure: no file system access, so
//! every decision here is unit-tested.
use super::lxc::{CgroupMode, Create, LxcConfig, MountEntry, NetKind, Rootfs, SysMode};
use super::ms;
use super::net::NetPlan;
use super::Paths;
use crate::sys::CStrArray;
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// One operation of the child. Paths named `parent`/`target` are relative to the container's
/// root file system and resolved inside it (openat2 RESOLVE_IN_ROOT), so a symlink in an image
/// or a writable upper dir cannot point a mount at the host.
#[derive(Debug)]
pub(crate) enum OpKind {
    SetHostname(CString),
    /// `mount(NULL, target, flags)` on an absolute path: a propagation change.
    Propagation {
        target: CString,
        flags: u64,
    },
    /// The root file system onto the (absolute) rootfs mount point.
    MountRootfs {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: u64,
        data: Option<CString>,
    },
    /// Opens the rootfs mount point (the root of every later resolution) and enters it.
    EnterRoot(CString),
    /// Binds rootfs directory `rel` onto `rel` below `dir` (`<exportsdir>/<name>`, resolved
    /// inside `dir`); `host` is that target's path, for a namespace without /proc.
    Export {
        rel: CString,
        dir: CString,
        host: CString,
    },
    /// `mkdirat(parent, name)`; an existing entry is fine.
    Mkdir {
        parent: CString,
        name: CString,
        mode: u32,
    },
    /// An empty file for a file bind mount, unless `target` already resolves.
    CreateFile {
        target: CString,
        parent: CString,
        name: CString,
    },
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: u64,
        data: Option<CString>,
    },
    /// `mknodat(parent, name)`; an existing entry is kept (a mount entry may have put it).
    Mknod {
        parent: CString,
        name: CString,
        mode: u32,
        dev: u64,
    },
    /// `symlinkat(target, parent, name)`; an existing entry is kept.
    Symlink {
        parent: CString,
        name: CString,
        target: CString,
    },
    /// `pivot_root(".", ".")` + lazy unmount of the old root; on EINVAL (the device root is
    /// the initramfs) MS_MOVE + chroot, reported as a warning.
    PivotRoot,
    Chdir(CString),
    /// PR_CAPBSET_DROP of each capability.
    DropCaps(Vec<u32>),
}

#[derive(Debug)]
pub(crate) struct Op {
    pub kind: OpKind,
    /// Ops of one config line share a group: an optional one is skipped as a whole.
    pub group: u32,
    pub optional: bool,
}

/// How the parent names an op in an error: "<step> <path>".
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Desc {
    pub step: &'static str,
    pub path: String,
    /// A skipped optional op that is expected on some kernels: logged at debug level.
    pub quiet: bool,
}

/// Everything the child needs, and what the parent needs to explain its failures.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    /// CLONE_NEW* flags.
    pub clone_flags: u64,
    pub ops: Vec<Op>,
    /// Parallel to `ops`.
    pub descs: Vec<Desc>,
    /// Paths execve tries in order (PATH search done here).
    pub exec_paths: Vec<CString>,
    pub argv: CStrArray,
    pub envp: CStrArray,
    /// The init's stdout/stderr go to the console log (false: `lxc.console.path = none`).
    pub console: bool,
    /// The network to set up in the new namespace (`Host`: none is made).
    pub net: NetPlan,
    pub halt_signal: i32,
    /// Things the config asks for that the engine does not do, to log.
    pub notes: Vec<String>,
    /// `lxc.no_new_privs = 1`: set just before execve.
    pub no_new_privs: bool,
    /// The compiled `lxc.seccomp.profile` (empty: none), installed just before execve.
    pub seccomp: Vec<libc::sock_filter>,
    /// The child stops after its setup until the parent lets it exec: the device program is
    /// attached then, after the container's /dev is made (LXC's order).
    pub barrier: bool,
}

/// What the parent prepares on the host before clone (directories the plan relies on).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct HostPrep {
    pub dirs: Vec<PathBuf>,
    /// The export mount points in pantavisor's namespace, detached when the container ends.
    pub exports: Vec<PathBuf>,
}

/// A problem in the configuration found while planning.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct PlanError {
    pub step: &'static str,
    pub path: String,
    pub message: String,
}

fn perr(step: &'static str, path: impl Into<String>, message: impl Into<String>) -> PlanError {
    PlanError {
        step,
        path: path.into(),
        message: message.into(),
    }
}

/// What planning needs besides the LXC config.
pub(crate) struct Inputs<'a> {
    pub name: &'a str,
    pub group: &'a str,
    pub rev: &'a str,
    pub cfg: &'a LxcConfig,
    pub paths: &'a Paths,
    pub mgmt: bool,
    /// `<confdir>/<name>` when `_config/<name>/` exists in the revision.
    pub config_overlay: Option<PathBuf>,
    /// The container's cgroup directory, if it has one.
    pub cgroup_dir: Option<PathBuf>,
    /// pantavisor's own cgroup (for `cgroup-full`).
    pub cgroup_root: Option<PathBuf>,
    /// The kernel command line without `console=`, to bind over /proc/cmdline.
    pub cmdline: Option<PathBuf>,
    /// `automodfw` (upstream's option): the host's /lib/firmware when it exists, and the BSP
    /// modules volume with the running kernel's release, read-only.
    pub firmware: Option<PathBuf>,
    pub modules: Option<(PathBuf, String)>,
    /// `/proc/sys/kernel/cap_last_cap`.
    pub cap_last_cap: u32,
    /// Sockets that exist now in the run dir (`pv-ctrl`, `pv-ctrl-log`): the others are
    /// optional binds until the API exists.
    pub existing_sockets: &'a [&'a str],
    /// run.json `exports`, as written.
    pub exports: &'a [String],
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn cstr(step: &'static str, s: &str) -> Result<CString, PlanError> {
    CString::new(s).map_err(|_| perr(step, s.replace('\0', "\\0"), "contains a NUL byte"))
}

fn cpath(step: &'static str, p: &Path) -> Result<CString, PlanError> {
    match p.to_str() {
        Some(s) => cstr(step, s),
        None => Err(perr(step, p.to_string_lossy(), "not valid UTF-8")),
    }
}

/// A target inside the rootfs as normal relative components: a leading `/` and `.` are
/// dropped; `..` is refused (resolution stays inside the root anyway, but an entry that climbs
/// is a mistake worth naming).
fn rel_components(target: &str) -> Result<Vec<&str>, PlanError> {
    let mut out = Vec::new();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(perr("mount", target, "target must not contain '..'")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// run.json `exports` as paths relative to the rootfs: a leading `/` is allowed (upstream's
/// entries have it), `..` and the root itself are refused, and so is an entry at or below
/// another, whose host mount point would lie in the container's own directory.
pub(crate) fn export_entries(entries: &[String]) -> Result<Vec<String>, PlanError> {
    let mut out: Vec<String> = Vec::new();
    for e in entries {
        let bad = |m: String| perr("export", e.as_str(), m);
        let parts = rel_components(e).map_err(|_| bad("must not contain '..'".into()))?;
        if parts.is_empty() {
            return Err(bad("must name a directory below the root".into()));
        }
        let rel = parts.join("/");
        let within = |a: &str, b: &str| {
            b.strip_prefix(a)
                .is_some_and(|r| r.is_empty() || r.starts_with('/'))
        };
        if let Some(o) = out.iter().find(|o| within(o, &rel) || within(&rel, o)) {
            return Err(bad(format!("overlaps the export /{o}")));
        }
        out.push(rel);
    }
    Ok(out)
}

fn join_rel(parts: &[&str]) -> String {
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// Overlay option values cannot carry ',' (option separator) or ':' (lowerdir separator).
fn overlay_safe(p: &Path) -> Result<&str, PlanError> {
    let s = p
        .to_str()
        .ok_or_else(|| perr("rootfs", p.to_string_lossy(), "not valid UTF-8"))?;
    if s.contains([',', ':', '\\']) || s.is_empty() {
        return Err(perr(
            "rootfs",
            s,
            "overlay directories cannot contain ',', ':' or '\\'",
        ));
    }
    Ok(s)
}

struct Builder {
    ops: Vec<Op>,
    descs: Vec<Desc>,
    group: u32,
}

impl Builder {
    fn push(&mut self, kind: OpKind, optional: bool, step: &'static str, path: String) {
        self.ops.push(Op {
            kind,
            group: self.group,
            optional,
        });
        self.descs.push(Desc {
            step,
            path,
            quiet: false,
        });
    }
    fn next_group(&mut self) {
        self.group += 1;
    }

    /// mkdir -p of `parts` inside the rootfs, one op per component.
    fn mkdir_p(&mut self, parts: &[&str], optional: bool) -> Result<(), PlanError> {
        for i in 0..parts.len() {
            let (parent, name) = match (parts.get(..i), parts.get(i)) {
                (Some(p), Some(n)) => (join_rel(p), *n),
                _ => continue,
            };
            let shown = format!("/{}", join_rel(parts.get(..=i).unwrap_or_default()));
            self.push(
                OpKind::Mkdir {
                    parent: cstr("mkdir", &parent)?,
                    name: cstr("mkdir", name)?,
                    mode: 0o755,
                },
                optional,
                "mkdir",
                shown,
            );
        }
        Ok(())
    }

    /// One mount into the rootfs, with what `create` asks first and the remount that bind
    /// mounts need for their flags.
    #[allow(clippy::too_many_arguments)]
    fn mount(
        &mut self,
        source: Option<&str>,
        target: &str,
        fstype: Option<&str>,
        flags: u64,
        data: &str,
        create: Option<Create>,
        optional: bool,
    ) -> Result<(), PlanError> {
        let parts = rel_components(target)?;
        let rel = join_rel(&parts);
        match create {
            Some(Create::Dir) => self.mkdir_p(&parts, optional)?,
            Some(Create::File) => {
                if let Some((name, dirs)) = parts.split_last() {
                    self.mkdir_p(dirs, optional)?;
                    self.push(
                        OpKind::CreateFile {
                            target: cstr("create", &rel)?,
                            parent: cstr("create", &join_rel(dirs))?,
                            name: cstr("create", name)?,
                        },
                        optional,
                        "create",
                        format!("/{rel}"),
                    );
                }
            }
            None => {}
        }
        let inside = format!("/{}", parts.join("/"));
        let shown = match source {
            Some(s) if s.starts_with('/') => format!("{s} on {inside}"),
            _ => inside,
        };
        let is_bind = flags & ms::BIND != 0;
        // Bind mounts ignore most flags on creation: they are applied by a remount.
        let bind_extra = flags
            & (ms::RDONLY
                | ms::NOSUID
                | ms::NODEV
                | ms::NOEXEC
                | ms::NOATIME
                | ms::NODIRATIME
                | ms::RELATIME
                | ms::STRICTATIME
                | ms::NOSYMFOLLOW);
        let first_flags = if is_bind {
            flags & (ms::BIND | ms::REC)
        } else {
            flags
        };
        let data_c = if data.is_empty() {
            None
        } else {
            Some(cstr("mount", data)?)
        };
        self.push(
            OpKind::Mount {
                source: source.map(|s| cstr("mount", s)).transpose()?,
                target: cstr("mount", &rel)?,
                fstype: fstype.map(|s| cstr("mount", s)).transpose()?,
                flags: first_flags,
                data: if is_bind { None } else { data_c },
            },
            optional,
            "mount",
            shown.clone(),
        );
        if is_bind && bind_extra != 0 {
            self.push(
                OpKind::Mount {
                    source: None,
                    target: cstr("mount", &rel)?,
                    fstype: None,
                    flags: (ms::REMOUNT | ms::BIND) | bind_extra,
                    data: None,
                },
                optional,
                "remount",
                shown,
            );
        }
        Ok(())
    }

    /// A bind of a path onto itself, remounted with `flags` (read-only windows in /proc).
    fn rebind(&mut self, target: &str, flags: u64, optional: bool) -> Result<(), PlanError> {
        let rel = cstr("mount", target)?;
        let shown = format!("/{target}");
        self.push(
            OpKind::Mount {
                source: Some(rel.clone()),
                target: rel.clone(),
                fstype: None,
                flags: ms::BIND,
                data: None,
            },
            optional,
            "mount",
            shown.clone(),
        );
        self.push(
            OpKind::Mount {
                source: None,
                target: rel,
                fstype: None,
                flags: (ms::REMOUNT | ms::BIND) | flags,
                data: None,
            },
            optional,
            "remount",
            shown,
        );
        Ok(())
    }
}

/// The network of `lxc.net.0` (LXC's default without one: `empty`); `Host` when the
/// namespace is kept or the type is `none`. Further entries are reported, not configured.
pub(crate) fn net_plan(cfg: &LxcConfig, notes: &mut Vec<String>) -> Result<NetPlan, PlanError> {
    if cfg.namespace_keep.net {
        return Ok(NetPlan::Host);
    }
    if cfg.net.len() > 1 {
        notes.push(format!(
            "{} network entries: only lxc.net.{} is configured",
            cfg.net.len(),
            cfg.net.first().map(|n| n.index).unwrap_or(0)
        ));
    }
    let Some(n) = cfg.net.first() else {
        return Ok(NetPlan::Empty);
    };
    let key = format!("lxc.net.{}", n.index);
    Ok(match n.kind {
        NetKind::None => NetPlan::Host,
        NetKind::Empty => NetPlan::Empty,
        NetKind::Veth => NetPlan::Veth {
            bridge: n.link.clone().unwrap_or_else(|| "lxcbr0".to_string()),
            ipv4: n.ipv4_address,
            gateway: n.ipv4_gateway,
            up: n.flags_up,
            name_inside: n.name.clone().unwrap_or_else(|| "eth0".to_string()),
            hwaddr: match &n.hwaddr {
                None => None,
                Some(h) => Some(parse_mac(h).ok_or_else(|| {
                    perr(
                        "network",
                        format!("{key}.hwaddr"),
                        format!("bad MAC address {h:?}"),
                    )
                })?),
            },
        },
        NetKind::Phys => NetPlan::Phys {
            link: n
                .link
                .clone()
                .ok_or_else(|| perr("network", format!("{key}.link"), "phys needs a link"))?,
            name_inside: n.name.clone(),
        },
        NetKind::Macvlan | NetKind::Ipvlan | NetKind::Vlan => {
            return Err(perr(
                "network",
                format!("{key}.type"),
                format!("{:?} networks are not supported", n.kind).to_lowercase(),
            ))
        }
    })
}

/// `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The namespaces a container gets: mount, pid and uts always; ipc unless kept; net unless the
/// network plan is the host's.
pub(crate) fn namespaces(cfg: &LxcConfig, net: &NetPlan) -> u64 {
    let mut flags = (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS) as u64;
    if !cfg.namespace_keep.ipc {
        flags |= libc::CLONE_NEWIPC as u64;
    }
    if *net != NetPlan::Host {
        flags |= libc::CLONE_NEWNET as u64;
    }
    flags
}

/// A signal in LXC's forms: a number, `SIG<NAME>`, `SIGRTMIN+n`, `SIGRTMAX-n`.
pub(crate) fn signal_number(v: &str) -> Option<i32> {
    if let Ok(n) = v.trim().parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let up = v.trim().to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "ILL" => libc::SIGILL,
        "TRAP" => libc::SIGTRAP,
        "ABRT" | "IOT" => libc::SIGABRT,
        "BUS" => libc::SIGBUS,
        "FPE" => libc::SIGFPE,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "SEGV" => libc::SIGSEGV,
        "USR2" => libc::SIGUSR2,
        "PIPE" => libc::SIGPIPE,
        "ALRM" => libc::SIGALRM,
        "TERM" => libc::SIGTERM,
        "STKFLT" => 16,
        "CHLD" => libc::SIGCHLD,
        "CONT" => libc::SIGCONT,
        "STOP" => libc::SIGSTOP,
        "TSTP" => libc::SIGTSTP,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "URG" => libc::SIGURG,
        "XCPU" => libc::SIGXCPU,
        "XFSZ" => libc::SIGXFSZ,
        "VTALRM" => libc::SIGVTALRM,
        "PROF" => libc::SIGPROF,
        "WINCH" => libc::SIGWINCH,
        "IO" | "POLL" => libc::SIGIO,
        "PWR" => libc::SIGPWR,
        "SYS" => libc::SIGSYS,
        // glibc reserves the first two real-time signals: SIGRTMIN is 34, SIGRTMAX 64
        "RTMIN" => 34,
        "RTMAX" => 64,
        other => {
            if let Some(n) = other.strip_prefix("RTMIN+") {
                34 + n.parse::<i32>().ok().filter(|n| *n <= 30)?
            } else if let Some(n) = other.strip_prefix("RTMAX-") {
                64 - n.parse::<i32>().ok().filter(|n| *n <= 30)?
            } else {
                return None;
            }
        }
    };
    Some(n)
}

/// The halt signal: `lxc.signal.halt`, else SIGPWR for an init (busybox and sysvinit halt on
/// it; LXC's default), else SIGTERM (an application run as init: a shell or a daemon). As the
/// first process of a PID namespace the init only gets signals it handles; the grace period
/// and the cgroup kill cover the rest.
pub(crate) fn halt_signal(cfg: &LxcConfig) -> i32 {
    if let Some(s) = cfg.signal_halt.as_deref().and_then(signal_number) {
        return s;
    }
    let base = cfg
        .init_cmd
        .first()
        .and_then(|a| a.rsplit('/').next())
        .unwrap_or("");
    if base == "init" {
        libc::SIGPWR
    } else {
        libc::SIGTERM
    }
}

/// The init's environment: `lxc.environment` (a later value of a key wins), then
/// `container=pv-<group>` as upstream sets the LXC container type.
pub(crate) fn environment(cfg: &LxcConfig, group: &str) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in &cfg.environment {
        if k == "container" {
            continue;
        }
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env.push(("container".to_string(), format!("pv-{group}")));
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// execve candidates: the command itself when it has a '/', else each PATH directory.
pub(crate) fn exec_paths(argv0: &str, env: &[String]) -> Vec<String> {
    if argv0.contains('/') {
        return vec![argv0.to_string()];
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| format!("{}/{argv0}", d.trim_end_matches('/')))
        .collect()
}

/// Overlay lower dirs (top first), upper and work dir of the root file system, host paths.
pub(crate) struct RootLayers {
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

pub(crate) fn root_layers(inp: &Inputs) -> Result<Option<RootLayers>, PlanError> {
    match &inp.cfg.rootfs {
        Some(Rootfs::Overlay { lowers, upper }) => {
            let upper = inp.paths.map_host_path(upper);
            let work = upper.parent().map(|p| p.join("work")).ok_or_else(|| {
                perr("rootfs", upper.to_string_lossy(), "upper dir has no parent")
            })?;
            let mut all: Vec<PathBuf> = inp.config_overlay.iter().cloned().collect();
            all.extend(lowers.iter().map(|l| inp.paths.map_host_path(l)));
            Ok(Some(RootLayers {
                lowers: all,
                upper,
                work,
            }))
        }
        Some(Rootfs::Dir(_)) => Ok(None),
        None => Err(perr(
            "rootfs",
            "lxc.rootfs.path",
            "missing in the LXC config",
        )),
    }
}

/// Builds the plan and the host directories it relies on.
pub(crate) fn build(inp: &Inputs) -> Result<(ChildPlan, HostPrep), PlanError> {
    let cfg = inp.cfg;
    let mut notes = Vec::new();
    let net = net_plan(cfg, &mut notes)?;
    let new_netns = net != NetPlan::Host;
    let clone_flags = namespaces(cfg, &net);
    let k = cfg.namespace_keep;
    for (kept, ns) in [(k.mnt, "mnt"), (k.pid, "pid"), (k.uts, "uts")] {
        if kept {
            notes.push(format!(
                "lxc.namespace.keep {ns}: not supported, a new one is made"
            ));
        }
    }
    let mut prep = HostPrep::default();
    let mut b = Builder {
        ops: Vec::new(),
        descs: Vec::new(),
        group: 0,
    };
    let hostname = cfg.uts_name.as_deref().unwrap_or(inp.name);
    if hostname.is_empty() || hostname.len() > 64 {
        return Err(perr("sethostname", hostname, "must be 1 to 64 bytes"));
    }
    b.push(
        OpKind::SetHostname(cstr("sethostname", hostname)?),
        false,
        "sethostname",
        hostname.to_string(),
    );
    // root file system
    let rootmnt = &inp.paths.rootfs_mount;
    let rootmnt_c = cpath("rootfs", rootmnt)?;
    let exports = export_entries(inp.exports)?;
    let private_root = || OpKind::Propagation {
        target: c"/".into(),
        flags: ms::REC | ms::PRIVATE,
    };
    if exports.is_empty() {
        // nothing of the child propagates back to pantavisor
        b.push(private_root(), false, "make private", "/".to_string());
    } else {
        // Exports reach pantavisor by mount propagation, which every kernel has (open_tree +
        // move_mount would need 5.2): pantavisor keeps <exportsdir> a shared mount and the
        // rootfs mount point a private one. The child's copy of the first is a peer, so its
        // binds there appear on the host; mounting the rootfs on the private copy of the
        // second propagates nothing. Then everything is made private, before any other mount.
        b.push(
            OpKind::Propagation {
                target: rootmnt_c.clone(),
                flags: ms::PRIVATE,
            },
            false,
            "make private",
            rootmnt.display().to_string(),
        );
    }
    b.next_group();
    match (&cfg.rootfs, root_layers(inp)?) {
        (_, Some(layers)) => {
            let lowers = layers
                .lowers
                .iter()
                .map(|l| overlay_safe(l))
                .collect::<Result<Vec<_>, _>>()?;
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                lowers.join(":"),
                overlay_safe(&layers.upper)?,
                overlay_safe(&layers.work)?
            );
            // the kernel takes one page of mount options
            if data.len() >= 4096 {
                return Err(perr(
                    "rootfs",
                    "lowerdir",
                    "overlay options exceed 4095 bytes",
                ));
            }
            prep.dirs.push(layers.upper.clone());
            prep.dirs.push(layers.work.clone());
            b.push(
                OpKind::MountRootfs {
                    source: cstr("rootfs", "overlay")?,
                    target: rootmnt_c.clone(),
                    fstype: Some(cstr("rootfs", "overlay")?),
                    flags: 0,
                    data: Some(cstr("rootfs", &data)?),
                },
                false,
                "mount",
                format!("overlay on {}", rootmnt.display()),
            );
        }
        (Some(Rootfs::Dir(dir)), None) => {
            let dir = inp.paths.map_host_path(dir);
            b.push(
                OpKind::MountRootfs {
                    source: cpath("rootfs", &dir)?,
                    target: rootmnt_c.clone(),
                    fstype: None,
                    flags: (ms::BIND | ms::REC),
                    data: None,
                },
                false,
                "mount",
                format!("{} on {}", dir.display(), rootmnt.display()),
            );
        }
        (_, None) => {
            return Err(perr(
                "rootfs",
                "lxc.rootfs.path",
                "missing in the LXC config",
            ))
        }
    }
    prep.dirs.push(rootmnt.clone());
    b.push(
        OpKind::EnterRoot(rootmnt_c),
        false,
        "open",
        rootmnt.display().to_string(),
    );
    if !exports.is_empty() {
        let dir = inp.paths.exportsdir.join(inp.name);
        let dir_c = cpath("export", &dir)?;
        for rel in &exports {
            let host = dir.join(rel);
            b.push(
                OpKind::Export {
                    rel: cstr("export", rel)?,
                    dir: dir_c.clone(),
                    host: cpath("export", &host)?,
                },
                false,
                "export",
                format!("/{rel}"),
            );
            prep.dirs.push(host.clone());
            prep.exports.push(host);
        }
        b.push(private_root(), false, "make private", "/".to_string());
    }

    // a fresh /dev first, so mount entries can bind devices into it (LXC's order)
    if cfg.autodev {
        b.next_group();
        b.mount(
            Some("tmpfs"),
            "dev",
            Some("tmpfs"),
            ms::NOSUID,
            "mode=755,size=500000",
            Some(Create::Dir),
            false,
        )?;
    }

    // lxc.mount.auto
    let ma = cfg.mount_auto;
    let nx = ms::NOSUID | ms::NODEV | ms::NOEXEC;
    if ma.proc {
        b.next_group();
        b.mount(
            Some("proc"),
            "proc",
            Some("proc"),
            nx,
            "",
            Some(Create::Dir),
            false,
        )?;
        if let Some(cmdline) = &inp.cmdline {
            // the kernel command line without console= (as upstream)
            b.next_group();
            let src = cmdline
                .to_str()
                .ok_or_else(|| perr("mount", cmdline.to_string_lossy(), "not valid UTF-8"))?;
            b.mount(
                Some(src),
                "proc/cmdline",
                None,
                ms::BIND | ms::RDONLY,
                "",
                None,
                true,
            )?;
        }
        if !ma.proc_rw {
            // proc:mixed: /proc/sys and /proc/sysrq-trigger read-only
            b.next_group();
            b.rebind("proc/sys", ms::RDONLY | nx, false)?;
            if new_netns {
                // the container's own network sysctls stay writable
                b.rebind("proc/sys/net", nx, false)?;
            }
            b.next_group();
            // absent without CONFIG_MAGIC_SYSRQ
            b.rebind("proc/sysrq-trigger", ms::RDONLY | nx, true)?;
            for d in b.descs.iter_mut().rev().take(2) {
                d.quiet = true;
            }
        }
    }
    if ma.sys != SysMode::None {
        b.next_group();
        let ro = if ma.sys == SysMode::Rw { 0 } else { ms::RDONLY };
        b.mount(
            Some("sysfs"),
            "sys",
            Some("sysfs"),
            nx | ro,
            "",
            Some(Create::Dir),
            false,
        )?;
        if ma.sys == SysMode::Mixed && new_netns {
            // sys:mixed: the container's own network devices stay writable
            b.next_group();
            b.rebind("sys/devices/virtual/net", nx, true)?;
        }
    }
    if ma.cgroup {
        // no cgroup namespace: the container's own cgroup is bound at /sys/fs/cgroup
        // (cgroup-full: pantavisor's whole subtree, read-only unless :rw)
        let dir = if ma.cgroup_full {
            inp.cgroup_root.as_ref()
        } else {
            inp.cgroup_dir.as_ref()
        };
        if let Some(dir) = dir {
            b.next_group();
            let dir = dir
                .to_str()
                .ok_or_else(|| perr("cgroup", dir.to_string_lossy(), "not valid UTF-8"))?;
            let ro = match (ma.cgroup_mode, ma.cgroup_full) {
                (CgroupMode::Ro, _) => ms::RDONLY,
                (CgroupMode::Rw, _) => 0,
                (_, true) => ms::RDONLY,
                (_, false) => 0,
            };
            b.mount(
                Some(dir),
                "sys/fs/cgroup",
                None,
                ms::BIND | nx | ro,
                "",
                Some(Create::Dir),
                false,
            )?;
        } else {
            notes.push("lxc.mount.auto cgroup: no cgroup v2, nothing mounted".to_string());
        }
    }

    // lxc.mount.entry, then the /pantavisor view as upstream appends it
    for e in &cfg.mount_entries {
        b.next_group();
        entry(&mut b, inp, e)?;
    }
    for e in pantavisor_view(inp, &mut prep) {
        b.next_group();
        entry(&mut b, inp, &e)?;
    }
    let ro_bind = ms::BIND | ms::RDONLY;
    let mut modfw = Vec::new();
    if let Some(fw) = &inp.firmware {
        modfw.push((fw.clone(), "lib/firmware".to_string()));
    }
    if let Some((m, release)) = &inp.modules {
        if !release.is_empty() && !release.contains('/') {
            modfw.push((m.clone(), format!("lib/modules/{release}")));
        }
    }
    for (src, target) in modfw {
        b.next_group();
        let src = src
            .to_str()
            .ok_or_else(|| perr("mount", src.to_string_lossy(), "not valid UTF-8"))?;
        b.mount(
            Some(src),
            &target,
            None,
            ro_bind,
            "",
            Some(Create::Dir),
            true,
        )?;
    }

    // populate /dev
    if cfg.autodev {
        b.next_group();
        let console = !cfg.console_disabled();
        // /dev/console: the init's output is the console log (stdout/stderr); a write to
        // /dev/console is discarded until a pty console exists (it is not the host console).
        let mut nodes: Vec<(&str, u32, u32, u32)> = vec![
            ("null", 1, 3, 0o666),
            ("zero", 1, 5, 0o666),
            ("full", 1, 7, 0o666),
            ("random", 1, 8, 0o666),
            ("urandom", 1, 9, 0o666),
            ("tty", 5, 0, 0o666),
        ];
        if console {
            nodes.push(("console", 1, 3, 0o620));
        }
        for (name, major, minor, mode) in nodes {
            b.push(
                OpKind::Mknod {
                    parent: cstr("mknod", "dev")?,
                    name: cstr("mknod", name)?,
                    mode: libc::S_IFCHR | mode,
                    dev: crate::sys::makedev(major, minor),
                },
                false,
                "mknod",
                format!("/dev/{name}"),
            );
        }
        b.next_group();
        let mut pts = String::from("newinstance,ptmxmode=0666,mode=0620,gid=5");
        if let Some(max) = cfg.pty_max {
            pts.push_str(&format!(",max={max}"));
        }
        b.mount(
            Some("devpts"),
            "dev/pts",
            Some("devpts"),
            ms::NOSUID | ms::NOEXEC,
            &pts,
            Some(Create::Dir),
            false,
        )?;
        b.next_group();
        for (name, target) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            b.push(
                OpKind::Symlink {
                    parent: cstr("symlink", "dev")?,
                    name: cstr("symlink", name)?,
                    target: cstr("symlink", target)?,
                },
                false,
                "symlink",
                format!("/dev/{name}"),
            );
        }
    }

    b.next_group();
    b.push(
        OpKind::PivotRoot,
        false,
        "pivot_root",
        rootmnt.display().to_string(),
    );
    let cwd = cfg.init_cwd.as_deref().unwrap_or("/");
    b.push(
        OpKind::Chdir(cstr("chdir", cwd)?),
        false,
        "chdir",
        cwd.to_string(),
    );
    let drop = cfg.caps_to_drop(inp.cap_last_cap);
    if !drop.is_empty() {
        b.push(
            OpKind::DropCaps(drop),
            false,
            "capability",
            "bounding set".to_string(),
        );
    }

    let argv0 = cfg
        .init_cmd
        .first()
        .ok_or_else(|| perr("exec", "lxc.init.cmd", "empty command"))?;
    let env = environment(cfg, inp.group);
    let exec_paths = exec_paths(argv0, &env)
        .iter()
        .map(|p| cstr("exec", p))
        .collect::<Result<Vec<_>, _>>()?;
    let argv = cfg
        .init_cmd
        .iter()
        .map(|a| cstr("exec", a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env
        .iter()
        .map(|e| cstr("environment", e))
        .collect::<Result<Vec<_>, _>>()?;
    let _ = inp.rev;
    Ok((
        ChildPlan {
            clone_flags,
            ops: b.ops,
            descs: b.descs,
            exec_paths,
            argv: CStrArray::new(argv),
            envp: CStrArray::new(envp),
            console: !cfg.console_disabled(),
            net,
            halt_signal: halt_signal(cfg),
            notes,
            no_new_privs: cfg.no_new_privs,
            seccomp: Vec::new(),
            barrier: false,
        },
        prep,
    ))
}

/// One `lxc.mount.entry`: bind sources that are pvr host paths are mapped to the configured
/// folders.
fn entry(b: &mut Builder, inp: &Inputs, e: &MountEntry) -> Result<(), PlanError> {
    let is_bind = e.flags & ms::BIND != 0;
    let source = if is_bind && e.source.starts_with('/') {
        inp.paths
            .map_host_path(&e.source)
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| perr("mount", &e.source, "not valid UTF-8"))?
    } else {
        e.source.clone()
    };
    let fstype = if is_bind || e.fstype == "none" {
        None
    } else {
        Some(e.fstype.as_str())
    };
    b.mount(
        Some(&source),
        &e.target,
        fstype,
        e.flags,
        &e.data,
        e.create,
        e.optional,
    )?;
    if e.propagation != 0 {
        let parts = rel_components(&e.target)?;
        b.push(
            OpKind::Mount {
                source: None,
                target: cstr("mount", &join_rel(&parts))?,
                fstype: None,
                flags: e.propagation,
                data: None,
            },
            e.optional,
            "propagation",
            format!("/{}", parts.join("/")),
        );
    }
    Ok(())
}

/// Upstream's /pantavisor view: the whole run dir (read-only) for `mgmt`; the
/// control sockets and the container's own logs and metadata for the others. Sources that are
/// directories are created on the host; a socket that does not exist yet is an optional bind.
fn pantavisor_view(inp: &Inputs, prep: &mut HostPrep) -> Vec<MountEntry> {
    let p = inp.paths;
    let ro_bind = ms::BIND | ms::RDONLY;
    let mk =
        |source: PathBuf, target: &str, flags: u64, create: Create, optional: bool| MountEntry {
            source: source.to_string_lossy().into_owned(),
            target: target.to_string(),
            fstype: "none".to_string(),
            flags,
            propagation: 0,
            data: String::new(),
            create: Some(create),
            optional,
        };
    let own_logs = p.logdir.join(inp.rev).join(inp.name);
    if inp.mgmt {
        let dirs = [
            p.rundir.join("logs"),
            p.rundir.join("user-meta"),
            p.rundir.join("device-meta"),
        ];
        prep.dirs.extend(dirs.iter().cloned());
        vec![
            mk(p.rundir.clone(), "pantavisor", ro_bind, Create::Dir, false),
            mk(
                p.logdir.clone(),
                "pantavisor/logs",
                ro_bind,
                Create::Dir,
                false,
            ),
            mk(
                p.rundir.join("user-meta"),
                "pantavisor/user-meta",
                ro_bind,
                Create::Dir,
                false,
            ),
            mk(
                p.rundir.join("device-meta"),
                "pantavisor/device-meta",
                ro_bind,
                Create::Dir,
                false,
            ),
        ]
    } else {
        let usr = p.rundir.join(format!("user-meta.{}", inp.name));
        let dev = p.rundir.join(format!("device-meta.{}", inp.name));
        prep.dirs
            .extend([own_logs.clone(), usr.clone(), dev.clone()]);
        let sock = |n: &str| {
            mk(
                p.rundir.join(n),
                &format!("pantavisor/{n}"),
                ms::BIND,
                Create::File,
                !inp.existing_sockets.contains(&n),
            )
        };
        vec![
            sock("pv-ctrl-log"),
            sock("pv-ctrl"),
            mk(own_logs, "pantavisor/logs", ro_bind, Create::Dir, false),
            mk(usr, "pantavisor/user-meta", ro_bind, Create::Dir, false),
            mk(dev, "pantavisor/device-meta", ro_bind, Create::Dir, false),
        ]
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
