//! `pantavisor hub`: the Hub client daemon (README "The Hub client"). A host process the
//! device spawns in remote mode and respawns when it ends; everything from the network is
//! parsed here, never in PID 1. Its only way to the device is pv-ctrl (`PV_CTRL_SOCKET`), as
//! a privileged host caller: the device admits a Hub step, counts its retries, owns its
//! progress and runs its update through the one updater; this daemon registers, logs in,
//! syncs, fetches steps and objects, and carries progress, metadata and logs to the Hub.
//!
//! Blocking I/O with timeouts, one thing at a time (upstream's client is one state machine
//! too), but for an update's object metadata and downloads: up to
//! PH_UPDATER_TRANSFER_MAX_COUNT workers (`hub::xfer`) do their network and writes while
//! this thread decides and reports. SIGUSR1 (the device's UPDATE_METADATA) sends
//! device-meta at once, SIGTERM ends it.

use super::creds;
use super::download;
use super::fetch::{Fetcher, Got};
use super::logpush::{self, Pusher};
use super::meta::{self, Op};
use super::session::{Dialer, Reply, Route, Session};
use super::wire;
use super::xfer::{self, Event, Job, MetaErr, Next, Plan};
use super::{Facts, Reports, Sent, State as ClientState, Trails, Update};
use crate::config::{Config, Key, Level};
use crate::control::client::request;
use crate::json::{self, Limits, ObjectWriter};
use crate::storage::fs::RealFs;
use crate::update::progress::{msg, Downloads, Progress, Status};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A line to stderr, which the device keeps in pantavisor.log as `hub-err`.
macro_rules! say {
    ($lvl:literal, $($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), concat!($lvl, " ", "{}"), format_args!($($t)*));
    }};
}

/// Upstream's client retries a failed login, trail check or metadata request every 6 s, and
/// reports download progress as often.
const RETRY: Duration = Duration::from_secs(6);
/// How often the device's progress is read while it tries a revision (a local read).
const WATCH: Duration = Duration::from_millis(100);

/// Everything the daemon does next, each at its own time.
#[derive(Default)]
struct Due {
    round: Option<Instant>,
    login: Option<Instant>,
    trails: Option<Instant>,
    steps: Option<Instant>,
    /// The next try at the admitted step's preparation or download after one failed.
    work: Option<Instant>,
    usrmeta: Option<Instant>,
    devmeta: Option<Instant>,
    register: Option<Instant>,
}

fn due(at: Option<Instant>, now: Instant) -> bool {
    at.is_none_or(|t| now >= t)
}

/// The credentials (8.2): from `pantahub.config` (claimed) or `unclaimed.config`, whose
/// values win over what the device read at boot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Creds {
    id: Option<String>,
    prn: Option<String>,
    secret: Option<String>,
}

impl Creds {
    fn complete(&self) -> bool {
        self.id.is_some() && self.prn.is_some() && self.secret.is_some()
    }
}

/// The step being worked on and what is known of its objects.
struct Work {
    rev: String,
    state: String,
    /// (object id, size, signed URL), the ones not in the object store yet.
    objects: Vec<(String, u64, String)>,
    retries: u32,
    wrong: u32,
    /// The object metadata is in and the space checked: the objects are downloaded next.
    prepared: bool,
}

pub struct Daemon {
    ctrl: PathBuf,
    cfg: Config,
    storage: PathBuf,
    rundir: PathBuf,
    creds: Creds,
    claimed: bool,
    sess: Option<Session>,
    dial_key: String,
    trails: Trails,
    state: Option<ClientState>,
    due: Due,
    /// The admitted step: the device counted this process's attempt at it.
    work: Option<Work>,
    /// The revision REMOTE_RUN was asked for: not admitted again while the device takes it up.
    ran: Option<String>,
    fetcher: Fetcher,
    reports: Reports,
    /// Device-meta this daemon published (`pantahub.*`), to write only changes.
    published: BTreeMap<&'static str, String>,
    devmeta_sent: Option<String>,
    /// The device's user-meta as the previous round left it (upstream's `updated` flags).
    usrmeta_prev: Option<Vec<(String, String)>>,
    pusher: Option<Pusher<'static>>,
}

static FS: RealFs = RealFs;

/// One pv-ctrl request to the device; errors are lines for the log.
fn ctrl(sock: &Path, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    request(sock, method, path, body).map_err(|e| format!("pv-ctrl {method} {path}: {e}"))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The key=value pairs of a credentials file.
fn read_creds(path: &Path) -> Option<Creds> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut c = Creds::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_string();
        let v = (!v.is_empty()).then_some(v);
        match k.trim() {
            "PH_CREDS_ID" => c.id = v,
            "PH_CREDS_PRN" => c.prn = v,
            "PH_CREDS_SECRET" => c.secret = v,
            _ => {}
        }
    }
    Some(c)
}

impl Daemon {
    pub fn new(ctrl: PathBuf) -> Daemon {
        Daemon {
            ctrl,
            cfg: Config::new(),
            storage: PathBuf::from("/storage"),
            rundir: PathBuf::from("/pv"),
            creds: Creds::default(),
            claimed: false,
            sess: None,
            dial_key: String::new(),
            trails: Trails::Unknown,
            state: None,
            due: Due::default(),
            work: None,
            ran: None,
            fetcher: Fetcher::default(),
            reports: Reports::default(),
            published: BTreeMap::new(),
            devmeta_sent: None,
            usrmeta_prev: None,
            pusher: None,
        }
    }

    fn ctrl(&self, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        ctrl(&self.ctrl, method, path, body)
    }

    /// The device's configuration (`GET /config2`), with the credentials files over it.
    fn load_config(&mut self) -> Result<(), String> {
        let (st, body) = self.ctrl("GET", "/config2", b"")?;
        if st != 200 {
            return Err(format!("pv-ctrl GET /config2: {st}"));
        }
        let v = json::parse(&body, Limits::default()).map_err(|e| format!("/config2: {e}"))?;
        let mut cfg = Config::new();
        for e in v.as_array().unwrap_or_default() {
            let (Some(k), Some(val)) = (
                e.get("key").and_then(|k| k.as_str()),
                e.get("value").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            // a default stays a default: paths under the storage are rebased only then
            let default = e.get("modified").and_then(|m| m.as_str()) == Some("default");
            if val != "(null)" && !default {
                let _ = cfg.set(Level::Env, k, val);
            }
        }
        let _ = cfg.take_warnings();
        self.storage = PathBuf::from(cfg.storage_mntpoint());
        self.rundir = PathBuf::from(cfg.system_rundir());
        // upstream's error line and no Hub traffic for a type it does not know
        let ext = match creds::handler(cfg.creds_type())? {
            creds::Handler::Builtin => false,
            creds::Handler::External { .. } => true,
        };
        // the work dir the device bound; without it there are no credentials to keep
        let dir = creds::dir(&self.rundir);
        if !dir.is_dir() {
            return Err(format!(
                "{}: not there, the device could not bind the Hub credentials (see its log)",
                dir.display()
            ));
        }
        let boot = Creds {
            id: cfg.creds_id().map(str::to_string),
            prn: cfg.creds_prn().map(str::to_string),
            secret: cfg.creds_secret().map(str::to_string),
        };
        // an ext-* handler holds the secret: the device id is what makes credentials
        let complete = |c: &Creds| c.complete() || (ext && c.id.is_some());
        let claimed = read_creds(&creds::path(&self.rundir, creds::PANTAHUB));
        let unclaimed = read_creds(&creds::path(&self.rundir, creds::UNCLAIMED));
        (self.creds, self.claimed) = match (claimed, unclaimed) {
            (Some(c), _) if complete(&c) => (c, true),
            _ if complete(&boot) => (boot, true),
            (_, Some(u)) => (u, false),
            _ => (boot, false),
        };
        self.cfg = cfg;
        self.session()?;
        Ok(())
    }

    /// The session, made again when where or how to reach the Hub changed.
    fn session(&mut self) -> Result<(), String> {
        let c = &self.cfg;
        let plain = c.get_bool(Key::PH_CREDS_PLAIN_HTTP);
        let certs = c
            .get_str(Key::PV_LIBTHTTP_CERTSDIR)
            .unwrap_or("/certs")
            .to_string();
        let proxy = c
            .get_str(Key::PH_CREDS_PROXY_HOST)
            .map(|h| (h.to_string(), c.get_int(Key::PH_CREDS_PROXY_PORT) as u16));
        let route = Route {
            host: c.creds_host().to_string(),
            port: c.creds_port(),
            proxy,
            proxy_connect: c.get_int(Key::PH_CREDS_PROXY_NOPROXYCONNECT) == 0,
            timeout: Duration::from_secs(c.get_int(Key::PH_LIBEVENT_HTTP_TIMEOUT).max(1)),
        };
        let key = format!("{route:?} {plain} {certs}");
        if key == self.dial_key && self.sess.is_some() {
            return Ok(());
        }
        let tls = if plain {
            None
        } else {
            Some(super::tls::client_config(Path::new(&certs))?)
        };
        let threshold = c.get_int(Key::PH_ONLINE_REQUEST_THRESHOLD) as u32;
        self.sess = Some(Session::new(Dialer::new(route, tls), threshold));
        self.dial_key = key;
        Ok(())
    }

    /// Publishes a `pantahub.*` device-meta key when its value changed.
    fn publish(&mut self, key: &'static str, value: &str) {
        if self.published.get(key).map(String::as_str) == Some(value) {
            return;
        }
        match self.ctrl("PUT", &format!("/device-meta/{key}"), value.as_bytes()) {
            Ok((200, _)) => {
                self.published.insert(key, value.to_string());
            }
            Ok((st, b)) => say!(
                "WARN",
                "device-meta {key}: pv-ctrl answered {st} {}",
                String::from_utf8_lossy(&b)
            ),
            Err(e) => say!("WARN", "{e}"),
        }
    }

    fn set_state(&mut self, s: ClientState) {
        if self.state != Some(s) {
            self.state = Some(s);
            self.publish("pantahub.state", s.as_str());
        }
    }

    /// A Hub API call; publishes online/offline as it changes.
    fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        auth: bool,
    ) -> Result<Reply, String> {
        self.call_with(method, path, body, auth, &[])
    }

    fn call_with(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        auth: bool,
        extra: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let Some(sess) = self.sess.as_mut() else {
            return Err("no session".into());
        };
        let (res, changed) = sess.call(method, path, body, auth, extra);
        self.online_changed(changed);
        res
    }

    fn online_changed(&mut self, changed: Option<bool>) {
        if let Some(on) = changed {
            say!(
                "INFO",
                "the Hub is {}",
                if on { "online" } else { "offline" }
            );
            self.publish("pantahub.online", if on { "1" } else { "0" });
        }
    }

    fn authenticated(&self) -> bool {
        self.sess.as_ref().is_some_and(|s| s.token.is_some())
    }

    /// Where the update this process works on stands (for [`super::next`]).
    fn update(&self) -> Update {
        match (&self.ran, &self.work) {
            (Some(_), _) => Update::Trying,
            (None, Some(w)) if w.prepared => Update::Downloading,
            (None, Some(_)) => Update::Queued,
            (None, None) => Update::NoneOrFinal,
        }
    }

    /// One round of the client: the state [`super::next`] picks is acted on; returns how long
    /// to wait.
    pub fn tick(&mut self, now: Instant) -> Duration {
        // the configuration, metadata and logs once a second, also while a try is watched
        let round = due(self.due.round, now);
        if round {
            if let Err(e) = self.load_config() {
                say!("ERROR", "{e}");
                return RETRY;
            }
            self.due.round = Some(now + Duration::from_secs(1));
        }
        if !self.claimed {
            self.unclaimed(now);
            return Duration::from_secs(1);
        }
        let state = super::next(Facts {
            authenticated: self.authenticated(),
            trails: self.trails,
            update: self.update(),
        });
        self.set_state(state);
        let wait = match state {
            ClientState::Login => {
                if due(self.due.login, now) && !self.login() {
                    self.due.login = Some(now + RETRY);
                }
                // logged in: on at once
                return if self.authenticated() {
                    Duration::ZERO
                } else {
                    Duration::from_secs(1)
                };
            }
            ClientState::WaitHub => {
                if due(self.due.trails, now) {
                    self.check_trails();
                    self.due.trails = Some(now + RETRY);
                }
                Duration::from_secs(1)
            }
            ClientState::Sync => {
                if let Err(e) = self.sync() {
                    say!("ERROR", "first sync: {e}");
                }
                self.trails = Trails::Unknown;
                self.due.trails = Some(now + RETRY);
                Duration::from_secs(1)
            }
            ClientState::Idle => {
                if due(self.due.steps, now) {
                    self.due.steps = Some(now + self.interval(Key::PH_UPDATER_INTERVAL));
                    self.poll_steps();
                }
                // a step admitted or a try to watch: on at once
                if self.update() == Update::NoneOrFinal {
                    Duration::from_secs(1)
                } else {
                    Duration::ZERO
                }
            }
            ClientState::PrepDownload => {
                if due(self.due.work, now) {
                    match self.prepare() {
                        Ok(()) => {
                            if let Some(w) = self.work.as_mut() {
                                w.prepared = true;
                            }
                        }
                        Err(e) => {
                            say!("WARN", "{e}");
                            self.due.work = Some(now + RETRY);
                        }
                    }
                }
                Duration::from_millis(if self.update() == Update::Queued {
                    1000
                } else {
                    0
                })
            }
            ClientState::Download => {
                if due(self.due.work, now) {
                    self.download();
                    if self.update() == Update::Downloading {
                        // the Hub is in trouble: the download resumes a while later
                        self.due.work = Some(now + RETRY);
                    }
                }
                Duration::from_millis(if self.update() == Update::Downloading {
                    1000
                } else {
                    0
                })
            }
            _ => {
                if self.watch() {
                    WATCH
                } else {
                    Duration::ZERO
                }
            }
        };
        self.flush_reports();
        if round && self.trails == Trails::Synced {
            self.metadata(now);
            self.push_logs();
        }
        wait
    }

    /// While the device tries a revision it was asked to run, its progress is read often and
    /// each change forwarded (the Hub sees INPROGRESS and TESTING, unless a newer one replaced
    /// it first). True while that goes on.
    fn watch(&mut self) -> bool {
        let Some(rev) = self.ran.clone() else {
            return false;
        };
        let Some((p, raw)) = self.device_progress(&rev) else {
            return true;
        };
        self.report(&rev, raw);
        if p.status.is_final() {
            self.ran = None;
            return false;
        }
        true
    }

    fn interval(&self, k: Key) -> Duration {
        Duration::from_secs(self.cfg.get_int(k).max(1))
    }

    /// Registration and claiming (8.2), every PH_UPDATER_INTERVAL until claimed.
    fn unclaimed(&mut self, now: Instant) {
        if !due(self.due.register, now) {
            return;
        }
        self.due.register = Some(now + self.interval(Key::PH_UPDATER_INTERVAL));
        if let Err(e) = self.register_or_claim() {
            say!("WARN", "{e}");
        }
    }

    fn register_or_claim(&mut self) -> Result<(), String> {
        if let creds::Handler::External { register, .. } = creds::handler(self.cfg.creds_type())? {
            if self.creds.id.is_none() {
                self.set_state(ClientState::Register);
                // the handler writes the credentials files; they are read again here
                let (st, out) = creds::run(&register, creds::HANDLER_TIMEOUT)?;
                if st != crate::sys::WaitStatus::Exited(0) {
                    return Err(format!(
                        "registration attempt with cmd: {} ({st:?}): {}",
                        register.display(),
                        String::from_utf8_lossy(&out).trim()
                    ));
                }
                self.load_config()?;
                let Some(id) = self.creds.id.clone() else {
                    return Err(format!(
                        "{} left no PH_CREDS_ID in {}",
                        register.display(),
                        creds::dir(&self.rundir).display()
                    ));
                };
                say!(
                    "INFO",
                    "registered as device {id} by {}",
                    register.display()
                );
                self.write_run("device-id", &id);
                if self.claimed {
                    return Ok(());
                }
            }
        } else if !self.creds.complete() {
            self.set_state(ClientState::Register);
            let tok = self.cfg.factory_autotok().map(str::to_string);
            let extra: Vec<(&str, &str)> = tok
                .as_deref()
                .map(|t| ("Pantahub-Devices-Auto-Token-V1", t))
                .into_iter()
                .collect();
            let r = self.call_with("POST", "/devices/", Some(b"{}"), false, &extra)?;
            if !r.ok() {
                return Err(format!(
                    "register: the Hub answered {}: {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            let d = wire::device(&r.body)?;
            let (Some(prn), Some(secret)) = (d.prn.clone(), d.secret.clone()) else {
                return Err("register: the Hub's answer has no prn or secret".into());
            };
            self.creds = Creds {
                id: Some(d.id.clone()),
                prn: Some(prn),
                secret: Some(secret),
            };
            self.save_creds(false)?;
            say!("INFO", "registered as device {}", d.id);
            self.write_run("device-id", &d.id);
        }
        self.set_state(ClientState::Claim);
        if !self.authenticated() && !self.login() {
            return Err("claim: login failed".into());
        }
        let id = self.creds.id.clone().unwrap_or_default();
        self.write_run("device-id", &id);
        let r = self.call("GET", &format!("/devices/{id}"), None, true)?;
        if !r.ok() {
            return Err(format!("claim: GET /devices/{id}: {}", r.status));
        }
        let d = wire::device(&r.body)?;
        if d.owner.is_some() {
            self.save_creds(true)?;
            // unclaimed.config stays, as upstream's (`ls /storage/config` shows both)
            let _ = std::fs::remove_file(self.rundir.join("challenge"));
            self.claimed = true;
            // the token's claims hold the owner as at login: log in again
            if let Some(s) = self.sess.as_mut() {
                s.token = None;
            }
            self.publish("pantahub.claimed", "1");
            say!("INFO", "device {id} is claimed");
        } else if let Some(ch) = d.challenge {
            self.write_run("challenge", &ch);
        }
        Ok(())
    }

    fn save_creds(&mut self, claimed: bool) -> Result<(), String> {
        // the session's config is read again from the device each round: set them there
        let cfg = &mut self.cfg;
        for (k, v) in [
            ("PH_CREDS_ID", &self.creds.id),
            ("PH_CREDS_PRN", &self.creds.prn),
            ("PH_CREDS_SECRET", &self.creds.secret),
        ] {
            if let Some(v) = v {
                cfg.set(Level::Env, k, v)
                    .map_err(|e| format!("{k}: {e:?}"))?;
            }
        }
        creds::save(&RealFs, &self.rundir, cfg, claimed)
            .map(|_| ())
            .map_err(|e| format!("saving the credentials: {e}"))
    }

    /// `<rundir>/<name>` (device-id, challenge), replaced whole.
    fn write_run(&self, name: &str, text: &str) {
        let p = self.rundir.join(name);
        if std::fs::read_to_string(&p).ok().as_deref() == Some(text) {
            return;
        }
        if let Err(e) = crate::storage::fs::write_atomic(&RealFs, &p, text.as_bytes()) {
            say!("WARN", "{}: {e}", p.display());
        }
    }

    /// POST /auth/login (8.3), or the output of an `ext-*` login handler: the session's
    /// token, or false.
    fn login(&mut self) -> bool {
        let answer = match creds::handler(self.cfg.creds_type()) {
            Ok(creds::Handler::External { login, .. }) => {
                say!("INFO", "external login handler called: {}", login.display());
                // as upstream, what it printed is the answer whatever its exit status
                creds::run(&login, creds::HANDLER_TIMEOUT).map(|(_, out)| Reply {
                    status: 200,
                    body: out,
                })
            }
            Ok(creds::Handler::Builtin) => {
                let (Some(prn), Some(secret)) = (self.creds.prn.clone(), self.creds.secret.clone())
                else {
                    return false;
                };
                let mut o = ObjectWriter::new();
                o.str("username", &prn).str("password", &secret);
                let body = o.finish();
                self.call("POST", "/auth/login", Some(body.as_bytes()), false)
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(r) if r.ok() => match wire::token(&r.body) {
                Ok(t) => {
                    if let Some(s) = self.sess.as_mut() {
                        s.token = Some(t);
                    }
                    self.write_run("device-id", self.creds.id.as_deref().unwrap_or_default());
                    true
                }
                Err(e) => {
                    say!("WARN", "login: {e}");
                    false
                }
            },
            Ok(r) => {
                say!("WARN", "login: the Hub answered {}", r.status);
                false
            }
            Err(e) => {
                say!("WARN", "login: {e}");
                false
            }
        }
    }

    fn check_trails(&mut self) {
        match self.call("GET", "/trails/", None, true) {
            Ok(r) if r.ok() => match wire::has_trail(&r.body) {
                Ok(true) => self.trails = Trails::Synced,
                Ok(false) => self.trails = Trails::Unsynced,
                Err(e) => say!("WARN", "GET /trails/: {e}"),
            },
            Ok(r) => say!("WARN", "GET /trails/: the Hub answered {}", r.status),
            Err(e) => say!("WARN", "{e}"),
        }
    }

    /// The running revision, as the device says (`pantavisor.revision`).
    fn running(&self) -> Result<String, String> {
        let (st, body) = self.ctrl("GET", "/device-meta", b"")?;
        if st != 200 {
            return Err(format!("pv-ctrl GET /device-meta: {st}"));
        }
        let v = json::parse(&body, Limits::default()).map_err(|e| format!("/device-meta: {e}"))?;
        v.get("pantavisor.revision")
            .and_then(|r| r.as_str())
            .map(str::to_string)
            .ok_or_else(|| "/device-meta: no pantavisor.revision".into())
    }

    /// First sync: the running revision's objects, then its state byte-exact (8.5).
    fn sync(&mut self) -> Result<(), String> {
        let rev = self.running()?;
        let (st, raw) = self.ctrl("GET", &format!("/steps/{rev}"), b"")?;
        if st != 200 {
            return Err(format!("pv-ctrl GET /steps/{rev}: {st}"));
        }
        let state = crate::state::State::parse(&raw).map_err(|e| format!("revision {rev}: {e}"))?;
        for e in state.entries() {
            let crate::state::EntryValue::Object { sha } = &e.value else {
                continue;
            };
            let path = self.storage.join("objects").join(sha);
            let size = std::fs::metadata(&path)
                .map_err(|err| format!("{}: {err}", path.display()))?
                .len();
            let mut o = ObjectWriter::new();
            o.str("objectname", &e.key)
                .str("size", &size.to_string())
                .str("sha256sum", sha);
            let body = o.finish();
            let r = self.call("POST", "/objects/", Some(body.as_bytes()), true)?;
            if r.status == 409 {
                continue;
            }
            if !r.ok() {
                return Err(format!(
                    "POST /objects/ {sha}: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            let v = json::parse(&r.body, Limits::default())
                .map_err(|e| format!("POST /objects/: {e}"))?;
            let url = v
                .get("signed-puturl")
                .and_then(|u| u.as_str())
                .ok_or("POST /objects/: no signed-puturl")?
                .replace("\\u0026", "&");
            let at = url
                .find("/local-s3")
                .ok_or("signed-puturl: no /local-s3 path")?;
            let put_path = url.get(at..).unwrap_or_default().to_string();
            let Some(sess) = self.sess.as_mut() else {
                return Err("no session".into());
            };
            let (res, changed) = sess.upload(&put_path, &path);
            self.online_changed(changed);
            let r = res?;
            if !r.ok() {
                return Err(format!("PUT object {sha}: {}", r.status));
            }
        }
        let r = self.call("POST", "/trails/", Some(&raw), true)?;
        if !r.ok() {
            return Err(format!(
                "POST /trails/: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        say!("INFO", "revision {rev} synced to the Hub");
        Ok(())
    }

    // ---- updates (5.4) ----

    fn poll_steps(&mut self) {
        let id = self.creds.id.clone().unwrap_or_default();
        let r = match self.call("GET", &super::pending_steps_path(&id), None, true) {
            Ok(r) if r.ok() => r,
            Ok(r) => return say!("WARN", "GET steps: the Hub answered {}", r.status),
            Err(e) => return say!("WARN", "{e}"),
        };
        let step = match wire::first_step(&r.body) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => return say!("WARN", "GET steps: {e}"),
        };
        self.step(step);
    }

    /// The device's progress of `rev`: (parsed, raw JSON).
    fn device_progress(&self, rev: &str) -> Option<(Progress, String)> {
        match self.ctrl("GET", &format!("/steps/{rev}/progress"), b"") {
            Ok((200, body)) => {
                let p = Progress::from_json(&body)?;
                Some((p, String::from_utf8_lossy(&body).into_owned()))
            }
            _ => None,
        }
    }

    /// A step the Hub has not seen finished: the device's outcome or try is reported, or the
    /// step is admitted (prep download comes next).
    fn step(&mut self, s: wire::Step) {
        let rev = s.rev.clone();
        if let Some((p, raw)) = self.device_progress(&rev) {
            match p.status {
                st if st.is_final() => return self.report(&rev, raw),
                Status::Inprogress | Status::Testing => {
                    // being tried (this process asked for it before it restarted): watched
                    self.ran = Some(rev.clone());
                    return self.report(&rev, raw);
                }
                _ => {}
            }
        }
        self.admit(&s);
    }

    /// One processing attempt at a Hub step, counted by the device (`PUT /steps/<rev>`).
    fn admit(&mut self, s: &wire::Step) -> bool {
        let rev = &s.rev;
        match self.ctrl("PUT", &format!("/steps/{rev}"), s.state.as_bytes()) {
            Ok((200, body)) => {
                let p = Progress::from_json(&body);
                self.report(rev, String::from_utf8_lossy(&body).into_owned());
                self.work = Some(Work {
                    rev: rev.clone(),
                    state: s.state.clone(),
                    objects: Vec::new(),
                    retries: p.map_or(1, |p| p.retries),
                    wrong: 0,
                    prepared: false,
                });
                true
            }
            Ok((409, body)) => {
                if Progress::from_json(&body).is_some() {
                    self.report(rev, String::from_utf8_lossy(&body).into_owned());
                } else {
                    say!(
                        "WARN",
                        "revision {rev}: the device refused it: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                false
            }
            Ok((st, body)) => {
                say!(
                    "WARN",
                    "revision {rev}: pv-ctrl answered {st}: {}",
                    String::from_utf8_lossy(&body)
                );
                false
            }
            Err(e) => {
                say!("WARN", "{e}");
                false
            }
        }
    }

    /// Object metadata and the space check (prep download).
    fn prepare(&mut self) -> Result<(), String> {
        let Some((rev, raw)) = self
            .work
            .as_ref()
            .filter(|w| w.objects.is_empty())
            .map(|w| (w.rev.clone(), w.state.clone()))
        else {
            return Ok(());
        };
        self.set_state(ClientState::PrepDownload);
        let state =
            crate::state::State::parse(raw.as_bytes()).map_err(|e| format!("state: {e}"))?;
        let mut shas: Vec<String> = crate::storage::Storage::state_objects(&state)
            .into_iter()
            .collect();
        shas.retain(|sha| !self.storage.join("objects").join(sha).exists());
        self.fetcher.forget_others(&self.storage, &shas);
        let objects = self.objects_meta(shas)?;
        let needed: u64 = objects
            .iter()
            .map(|(sha, size, _)| size.saturating_sub(self.fetcher.kept(&self.storage, sha)))
            .sum();
        let mut free = self.real_free()?;
        if !download::fits(needed, free) {
            say!(
                "INFO",
                "revision {rev}: {needed} B needed, {free} B available: GC first"
            );
            match self.ctrl("POST", "/storage/gc", b"") {
                Ok((200, _)) => {}
                Ok((st, b)) => say!(
                    "WARN",
                    "GC: pv-ctrl answered {st} {}",
                    String::from_utf8_lossy(&b)
                ),
                Err(e) => say!("WARN", "{e}"),
            }
            free = self.real_free()?;
            if !download::fits(needed, free) {
                let p = Progress::new(Status::Wontgo, &msg::space_required(needed, free));
                self.put_progress(&rev, &p);
                self.work = None;
                return Ok(());
            }
        }
        if let Some(w) = self.work.as_mut() {
            w.objects = objects;
        }
        Ok(())
    }

    fn real_free(&self) -> Result<u64, String> {
        let s = crate::sys::logsys::fs_size(&self.storage)
            .map_err(|e| format!("{}: {e}", self.storage.display()))?;
        Ok(download::real_free(
            s.total,
            s.free,
            u64::from(self.cfg.storage_gc_reserved()),
        ))
    }

    /// The device records a progress of a revision not installed yet; the Hub gets what the
    /// device wrote.
    fn put_progress(&mut self, rev: &str, p: &Progress) {
        match self.ctrl(
            "PUT",
            &format!("/steps/{rev}/progress"),
            p.to_json().as_bytes(),
        ) {
            Ok((200, _)) => {}
            Ok((st, b)) => say!(
                "WARN",
                "revision {rev} progress: pv-ctrl answered {st} {}",
                String::from_utf8_lossy(&b)
            ),
            Err(e) => say!("WARN", "{e}"),
        }
        if let Some((_, raw)) = self.device_progress(rev) {
            self.report(rev, raw);
        }
    }

    /// Downloads (DOWNLOADING, bytes reported about every 6 s), then REMOTE_RUN.
    fn download(&mut self) {
        let Some((rev, retries, objects)) = self
            .work
            .as_ref()
            .map(|w| (w.rev.clone(), w.retries, w.objects.clone()))
        else {
            return;
        };
        self.set_state(ClientState::Download);
        let max = self.cfg.revision_retries();
        let total: u64 = objects.iter().map(|o| o.1).sum();
        let start = now_secs();
        let mut p = Progress::new(
            Status::Downloading,
            &msg::downloading_artifacts(retries, max),
        );
        p.downloads = Some(Downloads {
            total_size: total,
            total_downloaded: 0,
            start_time: start,
            current_time: start,
        });
        self.put_progress(&rev, &p);
        if !self.fetch_objects(&rev, &mut p, objects) {
            return;
        }
        let total = p.downloads.as_ref().map_or(0, |d| d.total_size);
        self.download_progress(&rev, &mut p, total);
        say!(
            "INFO",
            "revision {rev}: objects in, {} B received, {} B of them received before",
            self.fetcher.received,
            self.fetcher.again
        );
        let mut o = ObjectWriter::new();
        o.str("op", "REMOTE_RUN").str("payload", &rev);
        match self.ctrl("POST", "/commands", o.finish().as_bytes()) {
            Ok((200, _)) => self.ran = Some(rev.clone()),
            Ok((st, b)) => say!(
                "WARN",
                "REMOTE_RUN {rev}: pv-ctrl answered {st} {}",
                String::from_utf8_lossy(&b)
            ),
            Err(e) => say!("WARN", "{e}"),
        }
        self.work = None;
    }

    fn download_progress(&mut self, rev: &str, p: &mut Progress, have: u64) {
        if let Some(d) = p.downloads.as_mut() {
            d.total_downloaded = have;
            d.current_time = now_secs();
        }
        let p = p.clone();
        self.put_progress(rev, &p);
    }

    /// What the transfer workers need of the session.
    fn xfer_ctx(&self) -> Result<xfer::Ctx, String> {
        let s = self.sess.as_ref().ok_or("no session")?;
        Ok(xfer::Ctx {
            dialer: s.dialer.clone(),
            token: s.token.clone(),
            storage: self.storage.clone(),
        })
    }

    /// Workers for `jobs` transfers (PH_UPDATER_TRANSFER_MAX_COUNT).
    fn workers(&self, jobs: usize) -> usize {
        xfer::workers(self.cfg.get_int(Key::PH_UPDATER_TRANSFER_MAX_COUNT), jobs)
    }

    /// A worker's request answered or not: online/offline.
    fn answered(&mut self, answered: Option<bool>) {
        if let Some(a) = answered {
            let changed = self.sess.as_mut().and_then(|s| s.answered(a));
            self.online_changed(changed);
        }
    }

    /// Each object's size and signed URL (`GET /objects/<sha>`), with at most
    /// PH_UPDATER_TRANSFER_MAX_COUNT requests in flight. The first failure ends the round
    /// (the next poll asks again); a 401 drops the token, as any.
    fn objects_meta(&mut self, shas: Vec<String>) -> Result<Vec<(String, u64, String)>, String> {
        let ctx = self.xfer_ctx()?;
        let n = self.workers(shas.len());
        let mut plan = Plan::new(0..shas.len(), n);
        let mut found: Vec<Option<(u64, String)>> = vec![None; shas.len()];
        let mut failed = None;
        xfer::with_workers(n, &ctx, |pool| {
            while !plan.over() {
                while let Some(i) = plan.start() {
                    pool.send(Job::Meta(i, shas.get(i).cloned().unwrap_or_default()));
                }
                let ev = match pool.recv(RETRY) {
                    Ok(ev) => ev,
                    Err(e) => {
                        failed = Some(e);
                        return;
                    }
                };
                let Some(Event::Meta { id, res, answered }) = ev else {
                    continue;
                };
                plan.ended();
                self.answered(answered);
                match res {
                    Ok(o) => {
                        if let Some(f) = found.get_mut(id) {
                            *f = Some(o);
                        }
                    }
                    Err(e) => {
                        if e == MetaErr::Unauthorized {
                            if let Some(s) = self.sess.as_mut() {
                                s.token = None;
                            }
                        }
                        let sha = shas.get(id).map_or("", String::as_str);
                        let why = match e {
                            MetaErr::Unauthorized => {
                                format!("GET /objects/{sha}: the Hub answered 401")
                            }
                            MetaErr::Other(why) => why,
                        };
                        failed.get_or_insert(why);
                        plan.stop();
                    }
                }
            }
        });
        if let Some(why) = failed {
            return Err(why);
        }
        let mut objects = Vec::with_capacity(shas.len());
        for (sha, f) in shas.into_iter().zip(found) {
            let Some((size, url)) = f else {
                return Err(format!("GET /objects/{sha}: no answer"));
            };
            objects.push((sha, size, url));
        }
        Ok(objects)
    }

    /// The objects into the object store, at most PH_UPDATER_TRANSFER_MAX_COUNT downloads in
    /// flight, DOWNLOADING with the bytes held about every 6 s. True once all are stored;
    /// false when the update was refused, or when a try ended so that the next poll resumes.
    fn fetch_objects(
        &mut self,
        rev: &str,
        p: &mut Progress,
        mut objects: Vec<(String, u64, String)>,
    ) -> bool {
        let ctx = match self.xfer_ctx() {
            Ok(c) => c,
            Err(e) => {
                say!("WARN", "{e}");
                return false;
            }
        };
        let n = self.workers(objects.len());
        let mut plan = Plan::new(0..objects.len(), n);
        // by the object's place in `objects`: bytes held, URL renewals this round
        let mut held = vec![0u64; objects.len()];
        let mut renewed = vec![0u32; objects.len()];
        let (mut stored, mut refused) = (0, false);
        let mut every = xfer::Every::new(RETRY, Instant::now());
        xfer::with_workers(n, &ctx, |pool| {
            while !plan.over() {
                while let Some(id) = plan.start() {
                    let Some((sha, size, url)) = objects.get(id).cloned() else {
                        plan.ended();
                        continue;
                    };
                    let fetcher = self.fetcher.lend(&sha);
                    pool.send(Job::Fetch {
                        id,
                        sha,
                        size,
                        url,
                        fetcher,
                    });
                }
                let ev = match pool.recv(every.left(Instant::now())) {
                    Ok(ev) => ev,
                    Err(e) => return say!("ERROR", "revision {rev}: {e}"),
                };
                match ev {
                    Some(Event::Bytes(id, have)) => {
                        if let Some(h) = held.get_mut(id) {
                            *h = have;
                        }
                    }
                    Some(Event::Fetched {
                        id,
                        got,
                        answered,
                        fetcher,
                    }) => {
                        plan.ended();
                        self.fetcher.merge(fetcher);
                        self.answered(answered);
                        let (Some((sha, size, _)), false) = (objects.get(id).cloned(), refused)
                        else {
                            continue;
                        };
                        let wrong = if got == Got::WrongBytes {
                            say!(
                                "ERROR",
                                "object {sha}: the bytes served do not hash to it; not stored"
                            );
                            self.work.as_mut().map_or(xfer::WRONG_BYTES_TRIES, |w| {
                                w.wrong += 1;
                                w.wrong
                            })
                        } else {
                            0
                        };
                        let renewals = renewed.get(id).copied().unwrap_or(0);
                        match xfer::next(&got, wrong, renewals) {
                            Next::Stored => {
                                stored += 1;
                                if let Some(h) = held.get_mut(id) {
                                    *h = size;
                                }
                            }
                            Next::Again => plan.again(id),
                            next @ (Next::Renew | Next::RenewAndStop) => {
                                if let Got::Later(why) = &got {
                                    say!("WARN", "{why}");
                                }
                                if let Some(r) = renewed.get_mut(id) {
                                    *r += 1;
                                }
                                let fresh = self.renew(&sha);
                                if let (Some(url), Some(o)) = (&fresh, objects.get_mut(id)) {
                                    o.2.clone_from(url);
                                    self.keep_url(&sha, url);
                                }
                                if next == Next::Renew && fresh.is_some() {
                                    plan.again(id);
                                } else {
                                    plan.stop();
                                }
                            }
                            Next::Refuse => {
                                refused = true;
                                pool.abort();
                                plan.stop();
                                let p = Progress::new(Status::Wontgo, msg::BAD_OBJECT);
                                self.put_progress(rev, &p);
                                self.work = None;
                            }
                        }
                    }
                    _ => {}
                }
                if !refused && every.due(Instant::now()) {
                    self.download_progress(rev, p, held.iter().sum());
                }
            }
        });
        !refused && stored == objects.len()
    }

    /// A fresh signed URL for object `sha`: a resume asks the Hub again first, as the one
    /// held may have expired.
    fn renew(&mut self, sha: &str) -> Option<String> {
        let got = self
            .call("GET", &format!("/objects/{sha}"), None, true)
            .and_then(|r| {
                if !r.ok() {
                    return Err(format!("GET /objects/{sha}: the Hub answered {}", r.status));
                }
                wire::object(&r.body, sha).map(|o| o.url)
            });
        got.map_err(|e| say!("WARN", "{e}")).ok()
    }

    /// A renewed URL for the next round of the same step.
    fn keep_url(&mut self, sha: &str, url: &str) {
        let objects = self.work.as_mut().map(|w| w.objects.iter_mut());
        for o in objects.into_iter().flatten().filter(|o| o.0 == sha) {
            o.2 = url.to_string();
        }
    }

    /// A progress for the Hub: sent now unless the Hub has it already;
    /// a report that could not go waits, replaced by any newer one of its step.
    fn report(&mut self, rev: &str, body: String) {
        self.reports.push(rev, body);
        self.flush_reports();
    }

    fn flush_reports(&mut self) {
        // one round of the waiting ones: a Hub that fails them is tried again next round
        for _ in 0..8 {
            let Some((rev, body)) = self.reports.take() else {
                return;
            };
            let id = self.creds.id.clone().unwrap_or_default();
            let path = format!("/trails/{id}/steps/{rev}/progress");
            let res = self.call("PUT", &path, Some(body.as_bytes()), true);
            let how = Sent::of(res.as_ref().ok().map(|r| r.status));
            match (&res, how) {
                (_, Sent::Taken) => {}
                (Ok(r), Sent::Refused) => say!(
                    "WARN",
                    "progress of {rev}: the Hub refused it: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ),
                (Ok(r), _) => say!("WARN", "progress of {rev}: the Hub answered {}", r.status),
                (Err(e), _) => say!("WARN", "{e}"),
            }
            self.reports.done(rev, body, how);
            if how == Sent::Again {
                return;
            }
        }
    }

    // ---- metadata (8.6) and logs (8.7) ----

    fn metadata(&mut self, now: Instant) {
        if !self.sess.as_ref().is_some_and(|s| s.online.online) {
            return;
        }
        if due(self.due.usrmeta, now) {
            self.due.usrmeta = Some(now + self.interval(Key::PH_METADATA_USRMETA_INTERVAL));
            self.usrmeta();
        }
        if due(self.due.devmeta, now) {
            self.due.devmeta = Some(now + self.interval(Key::PH_METADATA_DEVMETA_INTERVAL));
            self.devmeta();
        }
    }

    /// UPDATE_METADATA: device-meta goes at the next round.
    pub fn devmeta_now(&mut self) {
        self.due.devmeta = None;
        self.devmeta_sent = None;
    }

    /// User-meta from the Hub (8.5): the Hub's keys set on the device, keys it does not have
    /// deleted (upstream's rule, see `meta::usermeta_ops`); the device applies config keys.
    fn usrmeta(&mut self) {
        let id = self.creds.id.clone().unwrap_or_default();
        let hub = match self.call("GET", &format!("/devices/{id}/user-meta"), None, true) {
            Ok(r) if r.ok() => match meta::pairs(&r.body, "the Hub's user-meta") {
                Ok(p) => p,
                Err(e) => return say!("WARN", "{e}"),
            },
            Ok(r) => return say!("WARN", "GET user-meta: the Hub answered {}", r.status),
            Err(e) => return say!("WARN", "{e}"),
        };
        let local = match self.ctrl("GET", "/user-meta", b"") {
            Ok((200, b)) => match meta::pairs(&b, "pv-ctrl /user-meta") {
                Ok(p) => p,
                Err(e) => return say!("WARN", "{e}"),
            },
            Ok((st, _)) => return say!("WARN", "pv-ctrl GET /user-meta: {st}"),
            Err(e) => return say!("WARN", "{e}"),
        };
        let ops = meta::usermeta_ops(&hub, &local, self.usrmeta_prev.as_deref());
        for op in &ops {
            let res = match op {
                Op::Put(k, v) => self.ctrl("PUT", &format!("/user-meta/{k}"), v.as_bytes()),
                Op::Delete(k) => self.ctrl("DELETE", &format!("/user-meta/{k}"), b""),
                Op::Refused(k, why) => {
                    say!(
                        "WARN",
                        "user-meta '{}' from the Hub not taken: {why}",
                        k.escape_debug()
                    );
                    continue;
                }
            };
            match res {
                Ok((200, _)) => {}
                Ok((st, b)) => say!(
                    "WARN",
                    "user-meta {op:?}: pv-ctrl answered {st} {}",
                    String::from_utf8_lossy(&b)
                ),
                Err(e) => say!("WARN", "{e}"),
            }
        }
        self.usrmeta_prev = Some(meta::after(&local, &ops));
    }

    /// Device-meta to the Hub (8.6): the device's whole device-meta, when it changed.
    fn devmeta(&mut self) {
        let local = match self.ctrl("GET", "/device-meta", b"") {
            Ok((200, b)) => match meta::pairs(&b, "pv-ctrl /device-meta") {
                Ok(p) => p,
                Err(e) => return say!("WARN", "{e}"),
            },
            Ok((st, _)) => return say!("WARN", "pv-ctrl GET /device-meta: {st}"),
            Err(e) => return say!("WARN", "{e}"),
        };
        let body = meta::devmeta_body(&local);
        if !meta::changed(self.devmeta_sent.as_deref(), &body) {
            return;
        }
        let id = self.creds.id.clone().unwrap_or_default();
        match self.call(
            "PUT",
            &format!("/devices/{id}/device-meta"),
            Some(body.as_bytes()),
            true,
        ) {
            Ok(r) if r.ok() => self.devmeta_sent = Some(body),
            Ok(r) => say!("WARN", "PUT device-meta: the Hub answered {}", r.status),
            Err(e) => say!("WARN", "{e}"),
        }
    }

    /// Log push (8.7): batches from the log tree while the Hub takes them; positions kept
    /// crash-safely by the pusher.
    fn push_logs(&mut self) {
        if !self.cfg.log_push() || !self.sess.as_ref().is_some_and(|s| s.online.online) {
            return;
        }
        if self.pusher.is_none() {
            let logdir = PathBuf::from(self.cfg.log_dir().into_owned());
            let state = self.storage.join("cache").join("hub-logpush");
            let _ = std::fs::create_dir_all(self.storage.join("cache"));
            match Pusher::open(&FS, &logdir, &state) {
                Ok(p) => self.pusher = Some(p),
                Err(e) => return say!("ERROR", "log push: {e}"),
            }
        }
        if let Ok(rev) = self.running() {
            if let Some(p) = self.pusher.as_mut() {
                p.set_current(&rev);
            }
        }
        // a few batches a round: the steps and metadata go on meanwhile
        for _ in 0..8 {
            let Some(p) = self.pusher.as_mut() else {
                return;
            };
            let batch = match p.next_batch() {
                Ok(Some(b)) => b,
                Ok(None) => break,
                Err(e) => {
                    say!("WARN", "log push: {e}");
                    break;
                }
            };
            let status = match self.call("POST", "/logs/", Some(batch.body.as_bytes()), true) {
                Ok(r) => Some(r.status),
                Err(_) => None,
            };
            let Some(p) = self.pusher.as_mut() else {
                return;
            };
            match logpush::answer(status) {
                logpush::Answer::Taken => {
                    if let Err(e) = p.commit(&batch) {
                        say!("WARN", "log push positions: {e}");
                    }
                }
                logpush::Answer::Refused if batch.entries > 1 => p.isolate(),
                logpush::Answer::Refused => {
                    say!(
                        "WARN",
                        "log push: the Hub refused a log line ({status:?}): dropped"
                    );
                    if let Err(e) = p.commit(&batch) {
                        say!("WARN", "log push positions: {e}");
                    }
                }
                logpush::Answer::Retry => break,
            }
        }
        if let Some(p) = self.pusher.as_mut() {
            let lost = p.take_lost();
            if lost > 0 {
                say!(
                    "WARN",
                    "log push: {lost} B of logs were rotated away before they were pushed"
                );
            }
        }
    }
}

/// `pantavisor hub`: runs until SIGTERM.
pub fn main() -> i32 {
    use crate::sys::event;
    let sock = std::env::var("PV_CTRL_SOCKET").unwrap_or_else(|_| "/pv/pv-ctrl".into());
    let sigs = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1];
    let fd = match event::block_signals(&sigs).and_then(|()| event::signalfd(&sigs)) {
        Ok(fd) => fd,
        Err(e) => {
            say!("ERROR", "signals: {e}");
            return 1;
        }
    };
    say!("INFO", "Hub client started (pv-ctrl {sock})");
    let mut d = Daemon::new(PathBuf::from(sock));
    loop {
        let wait = d.tick(Instant::now());
        use std::os::fd::AsRawFd;
        let ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        if event::poll(&[(fd.as_raw_fd(), libc::POLLIN)], ms).is_err() {
            continue;
        }
        while let Ok(Some((sig, _))) = event::read_signal(&fd) {
            if sig == libc::SIGUSR1 {
                d.devmeta_now();
            } else {
                say!("INFO", "Hub client ends (signal {sig})");
                return 0;
            }
        }
    }
}
