//! Tier 2, upstream's own device tests: meta-pantavisor's `pvtests/local` (in
//! `../shared/upstream`, used where they are) run unmodified against the real binary as PID 1
//! of a new PID namespace, one fresh device per test, and compared with their golden `output`
//! after `tests/upstream/normalize.py` (the one file of normalization rules).
//!
//! Each test boots revision 0 made by scripts/pvmk from busybox stand-ins of the containers its
//! test.json names (`bsp.tgz`, `pvr-sdk.tgz`, ...), with its `PV_*` env, cmdline and
//! pantavisor.config; with its `pvs` (upstream's keys and trust stores), the device trusts a
//! CA made at run time in their place and revision 0 and the common tarballs are signed under
//! it ([`Pvs`]). The script runs as upstream's tester does, in a private mount namespace
//! rooted in a directory of its own (`tester/`): host `/usr`, `/etc`, `/dev`, `/sys`, a private
//! `/tmp`, `/home` and `/run`, the device's pv-ctrl at `/run/pantavisor/pv`, upstream's
//! `utils`/`common` installed at `/usr/share/pantavisor/pvtest`, upstream's pvtests at `/work`
//! (where its tester keeps them: `/work/local/<area>/<test>`), and a PATH of busybox applets,
//! host jq/curl/nc and the stand-ins of `tests/upstream/`. pvcontrol, pvcurl and pventer enter
//! the device's PID namespace and the control container's cgroup per call (`pv-exec`), so the
//! device names the caller `pvr-sdk` (SO_PEERCRED + /proc/<pid>/cgroup) and the script itself
//! outlives the device's reboots.
//!
//! Prints one line per test, `upstream pvtests: N of M pass` and the tier's time; fails when N
//! drops below the README's ratchet ("upstream pvtests ratchet: N"). Arguments filter tests by
//! substring (then the ratchet is not applied). `harness = false`: the lines print live.
mod harness;
mod rig;
#[allow(dead_code)] // the shared signer: what the runner needs of it
#[path = "pvs/signer.rs"]
mod signer;
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Upstream's material: `../shared/upstream` beside the checkout, or `PV_UPSTREAM`.
fn upstream() -> PathBuf {
    std::env::var_os("PV_UPSTREAM")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("../shared/upstream"))
}

/// Tests that need a later issue: they run and are reported, but cannot pass yet.
const EXCEPTIONS: &[(&str, &str)] = &[
    (
        "security/object-checksum",
        "a boot re-hash that skips a dm-verity manifest's data device (pvr-sdk/root.squashfs) \
         even when nothing mounts it through verity (appengine's PV_SECUREBOOT_HANDLERS=0), \
         as upstream's does: this build re-hashes what the kernel does not verify, so one of \
         the twelve golden lines differs on purpose",
    ),
    (
        "runtime/remount-policies",
        "skipped upstream (test.json skip) and its golden lists the real pvr-sdk's mount entries",
    ),
    (
        "security/container-roles",
        "the Hub's files in a mgmt container's /pantavisor (challenge, device-id, pantahub-host, \
         phconfig): the Hub issue (12); the log server's pv-ctrl-log and pv-fd-log sockets and its \
         per-container captures (lxc/lxc.log, var/log/messages, var/log/syslog): the mesh and \
         log-server issue (14); and the golden device's pantavisor.dtmodel (a device tree, which \
         this machine has not)",
    ),
    (
        "services/daemons",
        "the pv-xconnect daemon in /daemons: the mesh and log-server issue (14)",
    ),
    (
        "services/on-demand-gc",
        "the containers' var/log/messages capture: the mesh and log-server issue (14)",
    ),
];

/// The exception that names `test`, if any.
fn exception(test: &str) -> Option<&'static str> {
    EXCEPTIONS
        .iter()
        .find(|(prefix, _)| test.starts_with(prefix))
        .map(|(_, why)| *why)
}

/// The groups of upstream's bsp build (its device.json), as `pvcontrol groups ls` shows them,
/// with the 30 s goal timeout of upstream's default groups: runtime/status-goal-success-failure's
/// golden reports "waiting for more than 30 secs" under PV_UPDATER_GOALS_TIMEOUT=10, so the
/// group sets its own.
const GROUPS: &str = r#"[{"name":"data","status_goal":"MOUNTED","restart_policy":"system","timeout":30},
  {"name":"root","status_goal":"STARTED","restart_policy":"system","timeout":30},
  {"name":"platform","status_goal":"STARTED","restart_policy":"system","timeout":30},
  {"name":"app","status_goal":"STARTED","restart_policy":"container","timeout":30,
   "auto_recovery":{"max_retries":5,"stable_timeout":30,"backoff_policy":"reboot"}}]"#;

/// A stand-in's `_sigs/<part>.json`: the selection of upstream's build for that part (pvr sig
/// add's include/exclude, as the goldens' `pvr sig ls` shows them) in a protected header, not
/// yet signed: [`Pvs::resign`] signs it when the test installs trust material (`pvs`).
fn sig(include: &[&str], exclude: &[&str]) -> String {
    let list = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let header = format!(
        r#"{{"pvs":{{"include":[{}],"exclude":[{}]}}}}"#,
        list(include),
        list(exclude)
    );
    format!(
        r##"{{"#spec":"pvs@2","protected":"{}","signature":""}}"##,
        signer::b64(header.as_bytes(), true)
    )
}

/// What a container tarball of a test.json is replaced by, as pvmk description parts:
/// `("bsp", ..)`, `("groups", ..)`, `("extra", "\"key\":value")`, `("merge", path)` for a real
/// pvr export, `(container, ..)`. The keys are those of upstream's builds (the state's keys
/// and its 6 objects in runtime/steps-rw and control/basic-endpoints; but appengine's bsp has
/// no kernel.img, which a standalone device needs: normalize.py); pvr-sdk sees the device's
/// storage at /storage, as upstream's does (on-demand-gc looks), and has a dm-verity manifest
/// that its run.json does not use. Each part has its `_sigs/<part>.json` (fn [`sig`]); a
/// merged export has its own.
fn stand_in(
    tarball: &str,
    common: &Path,
    storage: &Path,
) -> Result<Vec<(&'static str, String)>, String> {
    // roles/group/restart_policy as `pvcontrol ls` shows them in the goldens
    let init = r#""rootfs":"rootfs","status_goal":"STARTED""#;
    let extra = |key: &str, v: &str| ("extra", format!("{key:?}:{v}"));
    Ok(match tarball {
        "bsp.tgz" => vec![
            ("bsp", r#"{"modules":"bsp/modules"}"#.into()),
            ("groups", GROUPS.into()),
            extra("bsp/src.json", "{}"),
            extra(
                "_sigs/bsp.json",
                &sig(
                    &["bsp/**", "#spec", "device.json"],
                    &["bsp/src.json", "bsp/build.json", "_sigs/bsp.json"],
                ),
            ),
        ],
        "pvr-sdk.tgz" => vec![
            (
                "pvr-sdk",
                format!(
                    r#"{{{init},"group":"platform","restart_policy":"system","roles":["mgmt"],"exports":["/usr/bin","/www/cgi-bin"],"lxc":["lxc.mount.entry = {} storage none bind,rw,create=dir 0 0"]}}"#,
                    storage.display()
                ),
            ),
            extra("pvr-sdk/src.json", "{}"),
            extra("pvr-sdk/pvpkg.json", "{}"),
            extra("_config/pvr-sdk/etc/pvr-sdk/config.json", "{}"),
            extra(
                "_sigs/pvr-sdk.json",
                &sig(
                    &["pvr-sdk/**", "_config/pvr-sdk/**"],
                    &["pvr-sdk/src.json", "_sigs/pvr-sdk.json"],
                ),
            ),
            extra(
                "pvr-sdk/root.squashfs.docker-digest",
                r#""stand-in digest""#,
            ),
            extra("pvr-sdk/root.squashfs.hash", r#""stand-in hash tree""#),
            extra(
                "pvr-sdk/_dm/root.squashfs.json",
                r#"{"type":"dm-verity","data_device":"root.squashfs","hash_device":"root.squashfs.hash","root_hash":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
            ),
        ],
        "pv-example-app.tgz" => vec![
            (
                "pv-example-app",
                format!(r#"{{{init},"group":"app","restart_policy":"container"}}"#),
            ),
            extra(
                "_sigs/pv-example-app.json",
                &sig(
                    &["pv-example-app/**", "_config/pv-example-app/**"],
                    &["pv-example-app/src.json", "_sigs/pv-example-app.json"],
                ),
            ),
        ],
        // in root, as security/container-roles' golden `ls` shows it
        "pv-example-norole.tgz" => vec![(
            "pv-example-norole",
            format!(r#"{{{init},"group":"root","roles":[]}}"#),
        )],
        t if common.join("tarballs").join(t).is_file() => vec![(
            "merge",
            format!(
                "{:?}",
                common.join("tarballs").join(t).display().to_string()
            ),
        )],
        t => return Err(format!("no stand-in for container tarball {t}")),
    })
}

/// Upstream's signing material (`common/pvs/*.tar.gz`) made again at run time under the same
/// names, as its leaves expire (the OEM one did on 2026-09-24, the developer one does on
/// 2026-12-20): per tarball, its trust store file, its CA's subject, its leaf's CN (as
/// `openssl x509 -noout -subject` reads them) and its leaf's key type. The first signs what
/// upstream's builds sign with the developer key: the stand-ins.
const PVS: &[(&str, &str, &str, &str)] = &[
    (
        "ca-certificates.crt",
        "/CN=Pantavisor Dev CA",
        "pv-developer-01",
        "rsa",
    ),
    (
        "ca-oem-certificates.crt",
        "/C=UK/ST=London/L=London/O=Pantacor/OU=Pantacor Engineering/CN=Pantacor Dev CA (OEM Root)",
        "pv-oem-developer-001",
        "P-384",
    ),
];

/// The run-time signing material of [`PVS`] (`ca<i>`, `leaf<i>`), and `tarballs/`: upstream's
/// `common/tarballs` with their `_sigs` re-signed by it, which the tester sees in their place.
/// Each re-signed tarball is checked to verify (`pantavisor check-state`) under every CA as an
/// ordinary store, so a device that refuses one refuses it for its store rules, not by an
/// accident of the signing: security/oem-secureboot's OEM-signed export covers
/// `pv-oem-developer-001/**`, the OEM's own configuration, which the OEM store may not sign
/// (reference 11.2), so its chain is checked against the developer store, which does not hold
/// the OEM root: "Signature validation failed", as the golden shows.
struct Pvs {
    pki: signer::Pki,
    tarballs: PathBuf,
}

impl Pvs {
    fn new(dir: &Path) -> Result<Pvs, String> {
        let pki = signer::Pki::new(dir.join("pki"));
        for (i, (_, subject, cn, kind)) in PVS.iter().enumerate() {
            let ca = format!("ca{i}");
            pki.ca_subject(&ca, subject);
            let (from, to) = ("20200101000000Z", "21200101000000Z");
            pki.leaf(&format!("leaf{i}"), cn, kind, &ca, from, to);
        }
        let pvs = Pvs {
            pki,
            tarballs: dir.join("tarballs"),
        };
        let io = |e: std::io::Error| format!("{}: {e}", pvs.tarballs.display());
        std::fs::create_dir_all(&pvs.tarballs).map_err(io)?;
        // every CA as an ordinary store: what was re-signed verifies, whatever the device's
        // store rules then make of it (security/oem-secureboot)
        let all = dir.join("all");
        std::fs::create_dir_all(&all).map_err(io)?;
        let mut cas = Vec::new();
        for i in 0..PVS.len() {
            let ca = pvs.pki.path(&format!("ca{i}.crt"));
            cas.extend(std::fs::read(&ca).map_err(|e| format!("{}: {e}", ca.display()))?);
        }
        std::fs::write(all.join("ca-certificates.crt"), cas).map_err(io)?;
        let common = upstream().join("pvtests/local/common/tarballs");
        for t in std::fs::read_dir(&common).map_err(io)?.flatten() {
            let name = t.file_name().to_string_lossy().into_owned();
            let tmp = dir.join("unpacked").join(&name);
            std::fs::create_dir_all(&tmp).map_err(io)?;
            run(Command::new("tar")
                .arg("xzf")
                .arg(t.path())
                .arg("-C")
                .arg(&tmp))?;
            let json = tmp.join("json");
            let mut state = load(&json)?;
            pvs.resign(&mut state).map_err(|e| format!("{name}: {e}"))?;
            std::fs::write(&json, signer::render(&state)).map_err(io)?;
            run(Command::new(rig::static_pantavisor())
                .args(["check-state", "--trust"])
                .arg(&all)
                .arg(&json))
            .map_err(|e| format!("{name} re-signed: {e}"))?;
            run(Command::new("tar")
                .arg("czf")
                .arg(pvs.tarballs.join(&name))
                .arg("-C")
                .arg(&tmp)
                .args(["json", "objects"]))?;
        }
        Ok(pvs)
    }

    /// The device's trust stores, at `<etc>/pantavisor/pvs/trust/`.
    fn install(&self, etc: &Path) -> Result<(), String> {
        let trust = etc.join("pantavisor/pvs/trust");
        let io = |e: std::io::Error| format!("{}: {e}", trust.display());
        std::fs::create_dir_all(&trust).map_err(io)?;
        for (i, (file, ..)) in PVS.iter().enumerate() {
            std::fs::copy(self.pki.path(&format!("ca{i}.crt")), trust.join(file)).map_err(io)?;
        }
        Ok(())
    }

    /// Signs every `_sigs/<part>.json` of `state` again, keeping its selection (its protected
    /// header's pvs include/exclude): by the run-time leaf of the CN its x5c leaf had, with
    /// the CA too when its x5c had a chain; a stand-in's (no x5c) by the developer leaf.
    fn resign(&self, state: &mut signer::State) -> Result<(), String> {
        let sigs: Vec<(String, String)> = state
            .iter()
            .filter(|(k, _)| k.starts_with("_sigs/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, raw) in sigs {
            let bad = |what: &str| format!("{key}: {what}");
            let v = pantavisor::json::parse_str(&raw, Default::default())
                .map_err(|e| bad(&format!("{e:?}")))?;
            let protected = v
                .get("protected")
                .and_then(|p| p.as_str())
                .and_then(signer::b64_decode)
                .ok_or_else(|| bad("no protected header"))?;
            let text = String::from_utf8_lossy(&protected).into_owned();
            let h = pantavisor::json::parse_str(&text, Default::default())
                .map_err(|e| bad(&format!("protected header: {e:?}")))?;
            let strings = |v: Option<&pantavisor::json::Value>| -> Vec<String> {
                v.and_then(|a| a.as_array())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            };
            let pvs = h.get("pvs");
            let include = strings(pvs.and_then(|p| p.get("include")));
            let exclude = strings(pvs.and_then(|p| p.get("exclude")));
            let x5c = strings(h.get("x5c"));
            let i = match x5c.first() {
                None => 0,
                Some(c) => {
                    let cn = signer::b64_decode(c)
                        .and_then(|der| signer::cert_cn(&der))
                        .ok_or_else(|| bad("x5c: no leaf CN"))?;
                    PVS.iter()
                        .position(|p| p.2 == cn)
                        .ok_or_else(|| bad(&format!("no run-time leaf of CN {cn}")))?
                }
            };
            let mut chain = vec![self.pki.path(&format!("leaf{i}.crt"))];
            if x5c.len() > 1 {
                chain.push(self.pki.path(&format!("ca{i}.crt")));
            }
            let name = key
                .strip_prefix("_sigs/")
                .and_then(|k| k.strip_suffix(".json"))
                .ok_or_else(|| bad("not _sigs/<part>.json"))?;
            let mut sig = signer::Sig::new(name, self.pki.path(&format!("leaf{i}.key")), chain);
            let include: Vec<&str> = include.iter().map(String::as_str).collect();
            sig.include = &include;
            sig.exclude = exclude;
            state.remove(&key);
            signer::sign(state, &sig);
        }
        Ok(())
    }
}

/// A state file as the signer keeps states (key -> raw value).
fn load(path: &Path) -> Result<signer::State, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v = pantavisor::json::parse_str(&text, Default::default())
        .map_err(|e| format!("{}: {e:?}", path.display()))?;
    Ok(v.as_object()
        .unwrap_or_default()
        .iter()
        .map(|(k, x)| (k.to_string(), x.raw(&text).to_string()))
        .collect())
}

/// Runs a tool; its stderr is the error.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A test's setup, from its test.json.
struct Setup {
    /// `setup.pvs`: upstream's trust material in the device's etc, its states signed
    pvs: bool,
    env: Vec<(String, String)>,
    cmdline: String,
    config: String,
    description: String,
    control: String,
    script: PathBuf,
}

/// A section (`[name]` up to the next) of tests/upstream/appengine.config, its placeholders
/// filled in for the device in `work`.
fn appengine(section: &str, work: &Path) -> String {
    let text = std::fs::read_to_string(Path::new(ROOT).join("tests/upstream/appengine.config"))
        .unwrap_or_default();
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name == section;
        } else if inside && !line.starts_with('#') {
            out += &line
                .replace("@STORAGE@", &work.join("storage").display().to_string())
                .replace("@WORK@", &work.display().to_string());
            out.push('\n');
        }
    }
    out
}

fn setup_of(dir: &Path, work: &Path) -> Result<Setup, String> {
    let path = dir.join("test.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v = pantavisor::json::parse_str(&text, Default::default())
        .map_err(|e| format!("{}: {e:?}", path.display()))?;
    let s = v.get("setup").ok_or("test.json: no setup")?;
    let str_of = |o: &pantavisor::json::Value, k: &str| {
        o.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    // appengine's environment first: the test's own keys override it
    let env = appengine("env", work)
        .split_whitespace()
        .chain(str_of(s, "env").split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = appengine("pantavisor.config", work)
        + &match str_of(s, "pantavisor.config") {
            c if c.is_empty() => String::new(),
            c => std::fs::read_to_string(dir.join(&c)).map_err(|e| format!("{c}: {e}"))?,
        }
        + "\n"
        + &appengine("device", work);
    let cs = s
        .get("containers")
        .ok_or("test.json: no setup.containers")?;
    let common = upstream().join("pvtests/local/common");
    let mut parts: Vec<(&str, String)> = vec![];
    for t in cs
        .get("tarballs")
        .and_then(|t| t.as_array())
        .unwrap_or_default()
    {
        let name = t.as_str().unwrap_or_default();
        let base = name.rsplit('/').next().unwrap_or(name);
        parts.extend(stand_in(base, &common, &work.join("storage"))?);
    }
    let join = |kind: &str| {
        parts
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let ctrs: Vec<String> = parts
        .iter()
        .filter(|(k, _)| !["bsp", "groups", "extra", "merge"].contains(k))
        .map(|(k, v)| format!("{k:?}:{v}"))
        .collect();
    let mut description = format!(
        r#"{{"containers":{{{}}},"extra":{{{}}},"merge":[{}]"#,
        ctrs.join(","),
        join("extra"),
        join("merge")
    );
    for kind in ["bsp", "groups"] {
        if parts.iter().any(|(k, _)| *k == kind) {
            description += &format!(r#","{kind}":{}"#, join(kind));
        }
    }
    description.push('}');
    Ok(Setup {
        pvs: !str_of(s, "pvs").is_empty(),
        env,
        cmdline: str_of(s, "cmdline"),
        config,
        description,
        control: str_of(cs, "control"),
        script: dir.join(str_of(&v, "test-script")),
    })
}

/// The local equivalents of the upstream assets that `pvr get` fetches from pvr.pantahub.com
/// (runtime/status-goal-success-failure): a container that reaches its READY goal by
/// signalling it, and a pvr-sdk variant whose READY goal never comes. The first is in the
/// platform group (restart policy system): the golden ends its update DONE, a reboot update's
/// end (in the app group, the default one, it would be a live update ending UPDATED).
const ASSETS: &str = r#"{"containers":{
  "container-ready-demo":{"rootfs":"rootfs","status_goal":"READY","group":"platform",
    "cmd":["/bin/sh","-c","/bin/pv pvcontrol -s /pantavisor/pv-ctrl signal ready; exec /sbin/init"]},
  "pvr-sdk_ready":{"rootfs":"rootfs","status_goal":"READY","group":"platform","restart_policy":"system","roles":["mgmt"]}}}"#;

/// The busybox rootfs additions of the stand-ins: an init that waits for SIGTERM (the
/// lifecycle scripts sed the `lxc.init.cmd = /sbin/init` line), the exported dirs, the tools
/// pventer runs inside, a pv-ctrl client, and the bsp's modules tree beside the rootfs.
fn prepare(rootfs: &Path) {
    let mk = |p: &Path| std::fs::create_dir_all(p).expect("mkdir");
    // what the scripts run inside containers through pventer
    for a in [
        "find", "sort", "grep", "wc", "awk", "sed", "test", "mkdir", "rm", "ls", "mount",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a));
    }
    for d in ["sbin", "usr/bin", "www/cgi-bin", "home"] {
        mk(&rootfs.join(d));
    }
    let init = rootfs.join("sbin/init");
    std::fs::write(
        &init,
        "#!/bin/sh\ntrap 'exit 0' TERM\nwhile :; do sleep 1; done\n",
    )
    .expect("init");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // the pv-ctrl client of the assets' containers (`pvcontrol signal ready`)
    std::fs::copy(rig::static_pantavisor(), rootfs.join("bin/pv")).expect("static pantavisor");
    let top = rootfs.parent().expect("rootfs parent");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let modules = top.join("bsp/modules").join(release.trim());
    mk(&modules);
    std::fs::write(modules.join("modules.dep"), "").expect("modules.dep");
}

/// How one test went.
#[derive(Debug, PartialEq)]
enum Outcome {
    Pass,
    Fail(String),
}

struct Device {
    /// Host PID of the running boot (0 between boots), for the stand-ins and for power off.
    pid: Arc<AtomicI32>,
    thread: std::thread::JoinHandle<Vec<(String, harness::End)>>,
}

/// Plays the bootloader until the device powers off or dies: every boot's PID goes to `pid`
/// and to `pid_file` (read by the stand-ins).
fn boot(
    mut bl: harness::Bootloader,
    cmdline: String,
    env: Vec<(String, String)>,
    pid_file: PathBuf,
) -> Device {
    let pid = Arc::new(AtomicI32::new(0));
    let shared = pid.clone();
    let thread = std::thread::spawn(move || {
        for _ in 0..8 {
            let (rev, boot_line) = bl.pick();
            let envs: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let mut child = bl.spawn(format!("{boot_line} {cmdline}").trim(), &envs);
            let t = Instant::now();
            let mut p = None;
            while p.is_none() && t.elapsed() < Duration::from_secs(5) {
                p = harness::device_pid(&child);
                std::thread::sleep(Duration::from_millis(10));
            }
            let p = p.unwrap_or(0);
            let _ = std::fs::write(&pid_file, p.to_string());
            shared.store(p, Ordering::SeqCst);
            let end = harness::wait_end(&mut child, Duration::from_secs(1800));
            shared.store(0, Ordering::SeqCst);
            bl.boots.push((rev, end.clone()));
            if end != harness::End::Reboot {
                break;
            }
        }
        bl.boots
    });
    Device { pid, thread }
}

/// Powers the device off as the harness does (SIGINT); one that has not ended 30 s later is
/// killed, so a device that hangs in its shutdown fails its test instead of the tier.
fn power_off(dev: &Device) {
    let signal = |sig: &str| {
        let pid = dev.pid.load(Ordering::SeqCst);
        if pid > 0 {
            let _ = Command::new("kill")
                .args([sig, &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    };
    signal("-INT");
    let t = Instant::now();
    while !dev.thread.is_finished() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal("-KILL");
}

/// `pvcontrol ARGS` from the host side, entered into the device's PID namespace.
fn pvcontrol(pid: i32, socket: &Path, args: &[&str]) -> Option<String> {
    let out = rig::pvcontrol_in(pid, socket, args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Waits as upstream's `wait_for_target_ready init "" DONE|UPDATED` does: pv-ctrl answers,
/// the current step is DONE or UPDATED, the device is READY.
fn wait_ready(dev: &Device, socket: &Path, limit: Duration) -> Result<(), String> {
    let t = Instant::now();
    let mut last = String::new();
    while t.elapsed() < limit {
        let pid = dev.pid.load(Ordering::SeqCst);
        if dev.thread.is_finished() {
            return Err("device ended before it was ready".into());
        }
        if pid > 0 {
            let meta = pvcontrol(pid, socket, &["devmeta", "ls"]).unwrap_or_default();
            let prog =
                pvcontrol(pid, socket, &["steps", "show-progress", "current"]).unwrap_or_default();
            let done =
                prog.contains(r#""status":"DONE""#) || prog.contains(r#""status":"UPDATED""#);
            if done && meta.contains(r#""pantavisor.status":"READY""#) {
                return Ok(());
            }
            last = format!("devmeta {meta} progress {prog}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("not ready after {limit:?}: {last}"))
}

/// The tester's root: stand-in PATH, the script (prefixed by `. utils`, as upstream's
/// exec_test does) and what the stand-ins read. The mounts are made by [`tester_setup`].
fn make_tester(work: &Path, setup: &Setup, cgroup: Option<&Path>) -> Result<PathBuf, String> {
    let r = work.join("tester");
    let io = |e: std::io::Error| format!("tester root: {e}");
    for d in [
        "pvbin",
        "pvtest",
        "usr",
        "etc",
        "dev",
        "sys",
        "proc",
        "tmp",
        "run",
        "home",
        "exports",
        "storage",
        "work",
        "upstream",
        "standins",
        "overlay/up",
        "overlay/work",
    ] {
        std::fs::create_dir_all(r.join(d)).map_err(io)?;
    }
    for top in ["bin", "sbin", "lib", "lib64", "lib32", "libx32"] {
        let host = Path::new("/").join(top);
        if let Ok(target) = std::fs::read_link(&host) {
            std::os::unix::fs::symlink(target, r.join(top)).map_err(io)?;
        }
    }
    let bin = r.join("pvbin");
    let list = Command::new("busybox").arg("--list").output().map_err(io)?;
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        std::os::unix::fs::symlink("/usr/bin/busybox", bin.join(applet)).map_err(io)?;
    }
    // host tools the scripts need in their full form: pvcurl needs `nc -U -N` (openbsd)
    for (name, target) in [
        ("jq", "/usr/bin/jq"),
        ("curl", "/usr/bin/curl"),
        ("nc", "/usr/bin/nc.openbsd"),
        ("pvcontrol", "/standins/pv-exec"),
        ("pvcurl", "/standins/pv-exec"),
        ("pventer", "/standins/pventer"),
        ("pvr", "/standins/pvr"),
        ("lxc-info", "/standins/lxc-info"),
    ] {
        let _ = std::fs::remove_file(bin.join(name));
        std::os::unix::fs::symlink(target, bin.join(name)).map_err(io)?;
    }
    let assets = r.join("pvtest/assets");
    std::fs::create_dir_all(&assets).map_err(io)?;
    std::fs::write(work.join("assets.desc.json"), ASSETS).map_err(io)?;
    harness::pvmk(&[
        work.join("assets.desc.json").as_os_str(),
        "--objects".as_ref(),
        assets.join("objects").as_os_str(),
        "--state".as_ref(),
        assets.join("json").as_os_str(),
    ]);
    let script = std::fs::read_to_string(&setup.script).map_err(io)?;
    std::fs::write(
        r.join("pvtest/test.sh"),
        format!(". /usr/share/pantavisor/pvtest/utils\n{script}"),
    )
    .map_err(io)?;
    let ctl = cgroup
        .map(|c| c.join("lxc").join(&setup.control).display().to_string())
        .unwrap_or_default();
    std::fs::write(r.join("pvtest/cgroup"), ctl).map_err(io)?;
    Ok(r)
}

/// The mounts of the tester's private mount namespace, then the script under busybox sh.
/// `tarballs`: upstream's common tarballs re-signed ([`Pvs`]), seen in their place.
fn tester_setup(r: &Path, work: &Path, installed: &Path, tarballs: Option<&Path>) -> String {
    let resigned = tarballs
        .map(|t| {
            format!(
                "mount --bind -o ro {} {}/work/local/common/tarballs\n",
                t.display(),
                r.display()
            )
        })
        .unwrap_or_default();
    let r = r.display();
    let w = work.display();
    format!(
        r#"set -e
mount --rbind /dev {r}/dev
mount --rbind /sys {r}/sys
mount -t proc proc {r}/proc
mount --bind /etc {r}/etc
mount -t overlay overlay -o lowerdir=/usr,upperdir={r}/overlay/up,workdir={r}/overlay/work {r}/usr
mkdir -p {r}/usr/share/pantavisor/pvtest
cp {installed}/utils {installed}/common {r}/usr/share/pantavisor/pvtest/
mount --bind -o ro {up} {r}/upstream
mount --bind -o ro {up}/pvtests {r}/work
{resigned}mount --bind -o ro {standins} {r}/standins
mount -t tmpfs tmpfs {r}/run
mkdir -p {r}/run/pantavisor/pv
mount --bind {w}/run {r}/run/pantavisor/pv
mount --bind {w}/exports {r}/exports
mount --bind {w}/storage {r}/storage
mount -t tmpfs tmpfs {r}/home
mkdir {r}/home/root
mount -t tmpfs tmpfs {r}/tmp
mkdir -p {r}{w}/storage
mount --bind {w}/storage {r}{w}/storage
exec chroot {r} /pvbin/sh /pvtest/test.sh
"#,
        installed = installed.display(),
        up = upstream().display(),
        standins = Path::new(ROOT).join("tests/upstream").display(),
    )
}

fn run_one(id: &str, dir: &Path, installed: &Path, pvs: &Pvs) -> Outcome {
    let slug = id.replace('/', "-");
    let work = std::env::temp_dir().join(format!("pv-up-{slug}-{}", std::process::id()));
    let setup = match setup_of(dir, &work) {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(format!("setup: {e}")),
    };
    let files = harness::make_device(
        &work,
        &format!("pv-up-{slug}"),
        &setup.description,
        &setup.config,
        &prepare,
    );
    let ph = files.storage.join("config/pantahub.config");
    let _ = std::fs::create_dir_all(files.storage.join("config"));
    if let Err(e) = std::fs::write(&ph, appengine("pantahub.config", &work)) {
        return Outcome::Fail(format!("{}: {e}", ph.display()));
    }
    let policy = work.join("etc/pantavisor/policies/test.config");
    let _ = std::fs::create_dir_all(work.join("etc/pantavisor/policies"));
    if let Err(e) = std::fs::write(&policy, appengine("policies/test.config", &work)) {
        return Outcome::Fail(format!("{}: {e}", policy.display()));
    }
    // upstream's tester installs the trust stores in the device's etc; its builds are signed
    if setup.pvs {
        let factory = files.storage.join("trails/0/.pvr/json");
        let signed = pvs.install(&work.join("etc")).and_then(|()| {
            let mut state = load(&factory)?;
            pvs.resign(&mut state)?;
            std::fs::write(&factory, signer::render(&state))
                .map_err(|e| format!("{}: {e}", factory.display()))
        });
        if let Err(e) = signed {
            return Outcome::Fail(format!("pvs: {e}"));
        }
    }
    let mut bl = harness::Bootloader::new(&files.storage, &files.config);
    bl.cgroup = files.cgroup.clone();
    let outcome = match make_tester(&work, &setup, files.cgroup.as_deref()) {
        Err(e) => Outcome::Fail(e),
        Ok(r) => {
            let dev = boot(
                bl,
                setup.cmdline.clone(),
                setup.env.clone(),
                r.join("pvtest/device.pid"),
            );
            let tarballs = setup.pvs.then_some(pvs.tarballs.as_path());
            let o = exercise(id, dir, &work, &r, &setup, &dev, installed, tarballs);
            power_off(&dev);
            let boots = dev.thread.join().unwrap_or_default();
            match boots.last() {
                Some((_, harness::End::PowerOff)) | None => o,
                Some((rev, end)) => match o {
                    Outcome::Pass => {
                        Outcome::Fail(format!("device ended with {end:?} in revision {rev}"))
                    }
                    f => f,
                },
            }
        }
    };
    // the device's side of a failure: its consoles and its logs, beside the transcript
    if let (Outcome::Fail(_), Some(k)) = (&outcome, std::env::var_os("PV_UPSTREAM_KEEP")) {
        let k = PathBuf::from(k).join(id.replace('/', "_"));
        let _ = std::fs::create_dir_all(&k);
        let _ = Command::new("cp")
            .arg("-a")
            .arg(work.join("consoles"))
            .arg(files.storage.join("logs"))
            .arg(&k)
            .status();
    }
    let cg = files.cgroup.clone();
    let left = std::panic::catch_unwind(|| {
        harness::tear_down(&work, cg.as_deref(), &support::assert_nothing_left)
    });
    match (outcome, left) {
        (o, Ok(())) => o,
        (_, Err(_)) => Outcome::Fail("left a mount, loop device or cgroup behind".into()),
    }
}

/// Boots, waits, runs the script, compares.
#[allow(clippy::too_many_arguments)]
fn exercise(
    id: &str,
    dir: &Path,
    work: &Path,
    r: &Path,
    setup: &Setup,
    dev: &Device,
    installed: &Path,
    tarballs: Option<&Path>,
) -> Outcome {
    let socket = work.join("run/pv-ctrl");
    if let Err(e) = wait_ready(dev, &socket, Duration::from_secs(60)) {
        // the last boot's FATAL line says why, if there is one
        let last = (1..)
            .map(|n| work.join(format!("consoles/boot-{n}.log")))
            .take_while(|p| p.exists())
            .last();
        let console = last.and_then(|p| std::fs::read_to_string(p).ok());
        let fatal = console.and_then(|c| harness::fatal_line(&c));
        return Outcome::Fail(fatal.map_or(e.clone(), |f| format!("{e}: {f}")));
    }
    // upstream's setup_test ends with a synchronous GC
    let _ = pvcontrol(dev.pid.load(Ordering::SeqCst), &socket, &["storage", "gc"]);
    let transcript = work.join("transcript");
    let Ok(out) = std::fs::File::create(&transcript) else {
        return Outcome::Fail("transcript file".into());
    };
    let Ok(err) = out.try_clone() else {
        return Outcome::Fail("transcript file".into());
    };
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(tester_setup(r, work, installed, tarballs))
        .env_clear()
        .env("PATH", "/pvbin")
        // upstream's tester is root: security/oem-secureboot's golden names pvr's ~/.pvr
        .env("HOME", "/home/root")
        .env("PVTEST_TEST_ID", id)
        .envs(setup.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // the setup shell runs with the host's PATH until it chroots
    cmd.env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin:/pvbin");
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    let Ok(mut child) = cmd.spawn() else {
        return Outcome::Fail("unshare (util-linux) must be installed".into());
    };
    let t = Instant::now();
    let limit = Duration::from_secs(300);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if t.elapsed() > limit => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    // whatever the script left running in its group
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let Some(_) = status else {
        return Outcome::Fail(format!("script still running after {limit:?}"));
    };
    let cmp = Command::new(Path::new(ROOT).join("tests/upstream/normalize.py"))
        .arg(dir.join("output"))
        .arg(&transcript)
        .arg(id)
        .output();
    let Ok(cmp) = cmp else {
        return Outcome::Fail("tests/upstream/normalize.py did not run".into());
    };
    let text = String::from_utf8_lossy(&cmp.stdout).into_owned();
    let first = text.lines().next().unwrap_or_default().to_string();
    if cmp.status.success() {
        println!("    {first}");
        Outcome::Pass
    } else {
        let keep = std::env::var_os("PV_UPSTREAM_KEEP").map(PathBuf::from);
        if let Some(k) = keep {
            let _ = std::fs::create_dir_all(&k);
            let _ = std::fs::copy(
                &transcript,
                k.join(format!("{}.transcript", id.replace('/', "_"))),
            );
        }
        // the head of the diff; the whole transcript with PV_UPSTREAM_KEEP
        const HEAD: usize = 40;
        let lines: Vec<&str> = text.lines().collect();
        let mut shown = lines[..lines.len().min(HEAD)].join("\n");
        if lines.len() > HEAD {
            shown += &format!(
                "\n... {} more lines (PV_UPSTREAM_KEEP=DIR keeps the transcript)",
                lines.len() - HEAD
            );
        }
        Outcome::Fail(shown)
    }
}

/// The ratchet: the README's "upstream pvtests ratchet: N".
fn ratchet() -> Option<usize> {
    std::fs::read_to_string(Path::new(ROOT).join("README.md"))
        .ok()?
        .lines()
        .find_map(|l| l.split("upstream pvtests ratchet: ").nth(1))
        .and_then(|r| {
            let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
}

/// Every `local/<area>/<test>` with a test.json, sorted.
fn tests() -> Vec<String> {
    let local = upstream().join("pvtests/local");
    let mut out = vec![];
    for area in std::fs::read_dir(&local).into_iter().flatten().flatten() {
        for t in std::fs::read_dir(area.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if t.path().join("test.json").is_file() {
                out.push(format!(
                    "{}/{}",
                    area.file_name().to_string_lossy(),
                    t.file_name().to_string_lossy()
                ));
            }
        }
    }
    out.sort();
    out
}

/// Upstream's two repositories disagree at the pinned commits: the pvtests (meta-pantavisor)
/// call `wait_for_revision_state LABEL REV STATE`, the runner's `utils` (pantavisor) takes
/// `REV STATE`, so every update test would wait for a revision named after its label. The
/// installed `utils` renames upstream's function and puts a wrapper in its place that drops the
/// label when given three arguments; nothing else of upstream's text changes.
fn utils_compat(utils: &str) -> String {
    const F: &str = "wait_for_revision_state() {";
    if !utils.contains(F) {
        return utils.to_string();
    }
    let mut text = utils.replacen(F, "_upstream_wait_for_revision_state() {", 1);
    text.push_str(
        "\n# tests/upstream_suite.rs: the pvtests pass a label first (see utils_compat)\n\
         wait_for_revision_state() { [ $# -ge 3 ] && shift; _upstream_wait_for_revision_state \"$@\"; }\n",
    );
    text
}

fn main() {
    let t0 = Instant::now();
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let all = tests();
    let chosen: Vec<&String> = all
        .iter()
        .filter(|t| filters.is_empty() || filters.iter().any(|f| t.contains(f.as_str())))
        .collect();
    if chosen.is_empty() && !filters.is_empty() {
        println!("upstream pvtests: none matches {filters:?}");
        return;
    }
    // the whole tier answers to the README's figure; a selection does not
    let floor = if filters.is_empty() {
        let Some(n) = ratchet() else {
            println!("upstream pvtests: README.md has no \"upstream pvtests ratchet: N\" line");
            std::process::exit(1);
        };
        println!("upstream pvtests: ratchet {n} (README)");
        Some(n)
    } else {
        None
    };
    let check = Command::new(Path::new(ROOT).join("tests/upstream/normalize.py"))
        .arg("--self-test")
        .output();
    if !check.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("upstream pvtests: tests/upstream/normalize.py --self-test failed: {check:?}");
        std::process::exit(1);
    }
    // upstream installs utils.in/common.in as plain copies named utils/common
    let installed = std::env::temp_dir().join(format!("pv-up-pvtest-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&installed);
    for f in ["utils", "common"] {
        let from = upstream().join(format!("pvtest/{f}.in"));
        let Ok(mut text) = std::fs::read_to_string(&from) else {
            eprintln!("upstream pvtests: {} is missing", from.display());
            std::process::exit(1);
        };
        if f == "utils" {
            text = utils_compat(&text);
        }
        if std::fs::write(installed.join(f), text).is_err() {
            eprintln!("upstream pvtests: cannot install {f}");
            std::process::exit(1);
        }
    }
    let pvs = match Pvs::new(&installed.join("pvs")) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("upstream pvtests: signing material: {e}");
            std::process::exit(1);
        }
    };
    let mut pass = 0;
    for id in &chosen {
        let dir = upstream().join("pvtests/local").join(id);
        let t = Instant::now();
        let o = run_one(id, &dir, &installed, &pvs);
        let secs = t.elapsed().as_secs();
        match (&o, exception(id)) {
            (Outcome::Pass, _) => {
                pass += 1;
                println!("upstream {id}: PASS ({secs} s)");
            }
            (Outcome::Fail(why), known) => {
                let known = known.map(|k| format!(" [needs {k}]")).unwrap_or_default();
                println!("upstream {id}: FAIL ({secs} s){known}");
                for l in why.lines() {
                    println!("    {l}");
                }
            }
        }
        let _ = std::io::stdout().flush();
    }
    let _ = std::fs::remove_dir_all(&installed);
    let line = format!(
        "upstream pvtests: {pass} of {} pass ({} s)",
        chosen.len(),
        t0.elapsed().as_secs()
    );
    println!("{line}");
    // for scripts/test's summary (this tier's lines are far up in cargo test's output)
    let _ = std::fs::write(
        Path::new(ROOT).join("target/upstream-pvtests.txt"),
        line + "\n",
    );
    if let Some(n) = floor.filter(|n| pass < *n) {
        println!("upstream pvtests: {pass} is below the README's ratchet of {n}");
        std::process::exit(1);
    }
}
