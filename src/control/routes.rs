//! The pv-ctrl endpoints over a snapshot of the device: the device builds a [`Ctl`] for each
//! server wake and the server calls it as its [`Router`]. Routes parse and check HTTP; what a
//! request does to containers, commands and updates the device decides ([`DeviceApi`]), so
//! every route is testable without a device.
use super::http::JSON;
use super::{BodySink, Caller, Method, Plan, Request, Response, Router};
use crate::config::Config;
use crate::device::commands::{Answer, Command, CtrAction, Daemon, Refusal, Request as Ask};
use crate::device::meta::{placeholder, OwnMeta};
use crate::drivers::{self, ModuleIndex};
use crate::json::{self, ArrayWriter, ObjectWriter};
use crate::pvs::Policy;
use crate::state::{AutoRecovery, Container, RecoveryPolicy, RestartPolicy, State};
use crate::storage::fs::Fs;
use crate::storage::meta::{valid_key, MetaStore};
use crate::storage::objects::{valid_sha, ObjectWriter as ObjWriter};
use crate::storage::{self, valid_revision, ErrorKind, Storage};
use crate::supervisor::{self, Goal, Status};
use crate::sys::power::Power;
use crate::update;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Largest meta value accepted by PUT (upstream's limit).
pub const MAX_META: u64 = 4096;
/// Largest JSON body of POST /signal and POST /commands.
pub const MAX_JSON: usize = 4096;
/// Largest object accepted by PUT /objects/{sha} (streamed to disk).
pub const MAX_OBJECT: u64 = 1 << 30;
/// Objects up to this size are answered from memory; bigger ones are streamed from the file.
pub const OBJECT_IN_MEMORY: u64 = 1 << 20;
/// Largest state JSON accepted by PUT /steps/locals/{name}.
pub const MAX_STATE: usize = 4 << 20;
/// How long POST /storage/gc may wait for its GC.
pub const GC_WAIT_MS: u64 = 600_000;
/// Largest commit message (upstream's limit).
pub const MAX_COMMITMSG: u64 = 256;

const NOT_MGMT: &str = "Request not sent from a mgmt platform";
const UNKNOWN_CALLER: &str = "Internal error, unknown caller";
const BAD_METHOD: &str = "Method not supported for this endpoint";
const SIGNAL_UNEXPECTED: &str = "Signal not expected from this platform";
const SIGNAL_BAD: &str = "Signal has bad format";
const COMMAND_BAD: &str = "Command has bad format";
const COMMAND_BUSY: &str = "A command is already in progress. Try again";
const UPDATE_BUSY: &str = "Cannot do this operation while update is ongoing";
const NO_HUB: &str = "Cannot do this operation: built without a Pantacor Hub client";
const LOCAL_MODE: &str = "Cannot do this operation while on local mode";
const REMOTE_DISABLED: &str = "Cannot do this operation when remote mode is disabled by config";
const STATE_DIFFERS: &str = "Another state JSON is staged for this revision";
const NOT_ADMITTED: &str = "Revision is not admitted for a remote run";
const RUNNING: &str = "Revision is running or being installed";
const PROGRESS_BAD: &str = "Progress has bad format";
const CONTAINER_BAD: &str = "Container action has bad format";
const CONTAINER_UNKNOWN: &str = "Container does not exist";
const CONTAINER_NOT_OURS: &str = "Container restart_policy is not container";
const CONTAINER_STATE: &str = "Container cannot do this action in its current status";
const NOT_FOUND: &str = "Resource does not exist";
const BAD_CHECKSUM: &str = "Object has bad checksum";
const NO_SPACE: &str = "Not enough disk space available";
const BAD_OBJECT_NAME: &str = "Object name is not a sha256";
const BAD_REV_NAME: &str = "Bad revision name";
const BAD_STATE: &str = "Parser: State JSON has bad format";
const NO_REVISION: &str = "Revision does not exist";
const DAEMON_UNKNOWN: &str = "Daemon not found";

/// One container as the API shows it.
#[derive(Clone, Debug)]
pub struct CtrView<'a> {
    pub spec: &'a Container,
    pub status: Status,
    /// `check_goal` of the current status (with the goal timer), for group statuses.
    pub goal: Goal,
    /// The effective auto-recovery (own, else the group's).
    pub ar: AutoRecovery,
    pub retries: u32,
    pub stable: bool,
    pub user_stopped: bool,
}

/// The device as pv-ctrl sees it: a request goes in, typed; the device decides and
/// answers at once (what it then does happens after the wake).
pub trait DeviceApi {
    fn request(&mut self, r: Ask) -> Result<Answer, Refusal>;
}

/// The router of one server wake.
pub struct Ctl<'d> {
    pub cfg: &'d Config,
    pub fs: &'d dyn Fs,
    /// The file system of streamed bodies (PUT /objects): a sink outlives the wake that
    /// created it, so it cannot borrow `fs`. The same file system as `fs` (RealFs on a device).
    pub stream_fs: &'static dyn Fs,
    pub state: &'d State,
    pub ctrs: Vec<CtrView<'d>>,
    /// The revision running, named by `""` in MAKE_FACTORY.
    pub rev: &'d str,
    pub dev: &'d mut dyn DeviceApi,
    /// Meta keys set or deleted in this wake, for the device to publish and apply.
    pub meta_changed: Vec<(MetaKind, String)>,
    /// The device's own device-meta keys (kept current by the device, not stored).
    pub own_meta: &'d OwnMeta,
    pub daemons: &'d [Daemon],
    /// The BSP's modules, for the callers' manual drivers.
    pub modules: &'d ModuleIndex,
    /// A GC runs or is queued: uploads wait, so no fresh object is collected before its step
    /// names it (and a GC waits for the uploads under way: [`uploads_in_flight`]).
    pub storage_busy: bool,
    /// The revisions running, being installed or entered: the Hub client changes none.
    pub busy: Vec<String>,
    /// An update is queued, installing or on probation.
    pub update_active: bool,
    /// Secure boot: what a state upload is checked against.
    pub pvs: &'d Arc<Policy>,
}

/// The endpoints served; the rest answer "unknown endpoint".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Containers,
    Container(String),
    Config,
    Config2,
    StorageGc,
    Groups,
    Signal,
    Commands,
    Meta(MetaKind, Option<String>),
    Buildinfo,
    Drivers,
    /// `/drivers[/{alias}]/load|unload`: the caller's manual drivers (all, or one).
    DriverAction(Option<String>, bool),
    Daemons,
    Daemon(String),
    Wakelocks,
    XconnectGraph,
    /// `/objects` (None) or `/objects/{sha}`.
    Objects(Option<String>),
    Steps,
    /// `/steps/{rev}` with `locals/{name}` joined into one revision name.
    Step(String, StepPart),
}

/// What of a revision a `/steps/...` path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepPart {
    State,
    Progress,
    Commitmsg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKind {
    User,
    Device,
}

impl MetaKind {
    fn missing(self) -> &'static str {
        match self {
            MetaKind::User => "User meta does not exist",
            MetaKind::Device => "Device meta does not exist",
        }
    }
}

/// The route of a path (its percent-decoded segments).
pub fn route(segments: &[String]) -> Option<Route> {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    Some(match segs.as_slice() {
        ["containers"] => Route::Containers,
        ["containers", n] => Route::Container(n.to_string()),
        ["config"] => Route::Config,
        ["config2"] => Route::Config2,
        ["storage", "gc"] => Route::StorageGc,
        ["groups"] => Route::Groups,
        ["signal"] => Route::Signal,
        ["commands"] => Route::Commands,
        ["user-meta"] => Route::Meta(MetaKind::User, None),
        ["user-meta", k] => Route::Meta(MetaKind::User, Some(k.to_string())),
        ["device-meta"] => Route::Meta(MetaKind::Device, None),
        ["device-meta", k] => Route::Meta(MetaKind::Device, Some(k.to_string())),
        ["buildinfo"] => Route::Buildinfo,
        ["drivers"] => Route::Drivers,
        ["drivers", a @ ("load" | "unload")] => Route::DriverAction(None, *a == "load"),
        ["drivers", n, a @ ("load" | "unload")] => {
            Route::DriverAction(Some(n.to_string()), *a == "load")
        }
        ["daemons"] => Route::Daemons,
        ["daemons", n] => Route::Daemon(n.to_string()),
        ["wakelocks"] => Route::Wakelocks,
        ["xconnect-graph"] => Route::XconnectGraph,
        ["objects"] => Route::Objects(None),
        ["objects", sha] => Route::Objects(Some(sha.to_string())),
        ["steps"] => Route::Steps,
        ["steps", "locals", n] => Route::Step(format!("locals/{n}"), StepPart::State),
        ["steps", "locals", n, p] => Route::Step(format!("locals/{n}"), step_part(p)?),
        ["steps", r] => Route::Step(r.to_string(), StepPart::State),
        ["steps", r, p] => Route::Step(r.to_string(), step_part(p)?),
        _ => return None,
    })
}

fn step_part(p: &str) -> Option<StepPart> {
    match p {
        "progress" => Some(StepPart::Progress),
        "commitmsg" => Some(StepPart::Commitmsg),
        _ => None,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a time in seconds since the epoch (UTC, proleptic Gregorian).
pub fn utc_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // days since 1970-01-01 to a civil date (H. Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The answer to a storage error: 507 when the disk is full, else 500.
fn storage_error(e: &storage::Error) -> Response {
    if e.is_no_space() {
        Response::error(507, NO_SPACE)
    } else {
        Response::internal(&e)
    }
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// PUT /objects/{sha} of a new object: hashed and written chunk by chunk; published only when
/// the sha256 matches. Dropped unfinished (client gone, error), its temp file is removed.
struct ObjectSink {
    w: Option<ObjWriter<'static>>,
}

impl BodySink for ObjectSink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Response> {
        let Some(w) = self.w.as_mut() else {
            return Err(Response::error(500, "object upload already ended"));
        };
        if let Err(e) = w.write(chunk) {
            if let Some(w) = self.w.take() {
                w.abort();
            }
            return Err(storage_error(&e));
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Response {
        let Some(w) = self.w.take() else {
            return Response::error(500, "object upload already ended");
        };
        match w.finish() {
            Ok(_) => Response::ok(),
            Err(e) if matches!(e.kind, ErrorKind::BadChecksum { .. }) => {
                Response::error(422, BAD_CHECKSUM)
            }
            Err(e) => storage_error(&e),
        }
    }
}

impl ObjectSink {
    fn new(w: ObjWriter<'static>) -> ObjectSink {
        UPLOADS.fetch_add(1, Ordering::Relaxed);
        ObjectSink { w: Some(w) }
    }
}

impl Drop for ObjectSink {
    fn drop(&mut self) {
        if let Some(w) = self.w.take() {
            w.abort();
        }
        UPLOADS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Object uploads being streamed in: a GC must not start under them (a fresh object would be
/// collected before its step names it).
static UPLOADS: AtomicUsize = AtomicUsize::new(0);

pub fn uploads_in_flight() -> usize {
    UPLOADS.load(Ordering::Relaxed)
}

/// PUT /objects/{sha} of an object already present: the body is read and dropped.
struct DrainSink;

impl BodySink for DrainSink {
    fn write(&mut self, _chunk: &[u8]) -> Result<(), Response> {
        Ok(())
    }
    fn finish(self: Box<Self>) -> Response {
        Response::ok()
    }
}

/// PUT /steps/locals/{name} (a local update's state): written to a temp file in storage as it
/// arrives, so uploads hold no memory of PID 1 meanwhile; at its end read back once, validated,
/// stored byte-exact, progress NEW. A failed upload leaves no revision directory it created.
struct StateSink {
    fs: &'static dyn Fs,
    root: std::path::PathBuf,
    rev: String,
    tmp: std::path::PathBuf,
    out: Option<crate::storage::fs::FsWriter<'static>>,
    /// The JSON values seen so far: a state the parser would refuse for too many is refused
    /// without being read back (`[0,0,...]`). At its end, so the client, still sending,
    /// reads the answer.
    values: json::ValueCount,
    /// A Hub step (`PUT /steps/<n>`): the remote admission, with what the device knew at the
    /// request's head.
    remote: Option<RemoteFacts>,
    pvs: Arc<Policy>,
}

/// What the remote admission of a Hub step needs of the device.
#[derive(Clone, Copy, Debug)]
struct RemoteFacts {
    busy: bool,
    other_update: bool,
    max_retries: u64,
}

/// Names the temp files of state uploads under way.
static STATE_UPLOADS: AtomicUsize = AtomicUsize::new(0);

impl StateSink {
    fn new(
        fs: &'static dyn Fs,
        root: std::path::PathBuf,
        rev: &str,
        pvs: Arc<Policy>,
    ) -> Result<StateSink, Response> {
        let st = Storage::new(fs, root.clone());
        let dir = st.trails_dir();
        // `.tmp`: a crash leaves it to the next boot's cleanup of in-flight files
        let n = STATE_UPLOADS.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".pv-ctrl-state-{n}.tmp"));
        let out = crate::storage::fs::create_dir_all(fs, &dir)
            .and_then(|()| fs.create(&tmp))
            .map_err(|e| storage_error(&storage::Error::io("create", &tmp, e)))?;
        Ok(StateSink {
            fs,
            root,
            rev: rev.to_string(),
            tmp,
            out: Some(out),
            values: json::ValueCount::default(),
            remote: None,
            pvs,
        })
    }
}

impl BodySink for StateSink {
    fn write(&mut self, chunk: &[u8]) -> Result<(), Response> {
        let Some(out) = self.out.as_mut() else {
            return Err(Response::error(500, "state upload already ended"));
        };
        self.values.feed(chunk);
        out.write_all(chunk)
            .map_err(|e| storage_error(&storage::Error::io("write", &self.tmp, e)))
    }

    fn finish(mut self: Box<Self>) -> Response {
        let flushed = self.out.take().map_or(Ok(()), |mut o| o.flush());
        let max = json::Limits::default().max_values;
        if self.values.at_least() > max {
            let _ = self.fs.remove_file(&self.tmp);
            if let Some(f) = self.remote {
                // not read back: a Hub step's attempt ends WONTGO as one that does not parse
                let st = Storage::new(self.fs, self.root.clone());
                return remote_step(&st, &self.rev, b"", f, &self.pvs);
            }
            return Response::error(422, &format!("{BAD_STATE}: more than {max} values"));
        }
        let body = flushed.and_then(|()| self.fs.read(&self.tmp));
        let _ = self.fs.remove_file(&self.tmp);
        let st = Storage::new(self.fs, self.root.clone());
        match (body, self.remote) {
            (Ok(body), None) => stage_step(&st, &self.rev, &body, &self.pvs),
            (Ok(body), Some(f)) => remote_step(&st, &self.rev, &body, f, &self.pvs),
            (Err(e), _) => storage_error(&storage::Error::io("read", &self.tmp, e)),
        }
    }
}

impl Drop for StateSink {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = self.fs.remove_file(&self.tmp);
        }
    }
}

fn stage_step(st: &Storage, rev: &str, body: &[u8], pvs: &Policy) -> Response {
    let dir = match st.trail_dir(rev) {
        Ok(d) => d,
        Err(_) => return Response::error(400, BAD_REV_NAME),
    };
    let existed = crate::storage::fs::exists(st.fs, &dir).unwrap_or(true);
    let res = update::stage(st, rev, body, pvs);
    if res.is_err() && !existed {
        let _ = crate::storage::fs::remove_all(st.fs, &dir);
        if let Some(parent) = dir.parent() {
            let _ = st.fs.sync_dir(parent);
        }
    }
    match res {
        Ok(_) => Response::ok(),
        Err(update::Error::State { errors, .. }) => {
            Response::error(422, &format!("{BAD_STATE}: {}", errors.join("; ")))
        }
        Err(update::Error::Secureboot { refused, .. }) => {
            crate::pvlog!(Error, "pvs", "revision {rev}: {refused}");
            Response::error(422, &format!("Secureboot: {}", refused.message))
        }
        Err(update::Error::Storage(e)) => storage_error(&e),
        Err(e) => Response::internal(&e),
    }
}

/// The progress of `rev` as stored (it carries the update's captured log lines), else `p`.
fn progress_body(st: &Storage, rev: &str, p: &update::progress::Progress) -> String {
    st.progress_path(rev)
        .ok()
        .and_then(|path| st.fs.read(&path).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| p.to_json())
}

/// PUT /steps/<n> from the Hub client: one processing attempt (`update::remote::admit`).
/// 200 with the QUEUED progress, 409 with a WONTGO or standing progress, 409 for other bytes
/// than the ones staged, 503 while another update is under way.
fn remote_step(st: &Storage, rev: &str, body: &[u8], f: RemoteFacts, pvs: &Policy) -> Response {
    use update::remote::{Admission, Admitted};
    match update::remote::admit(st, rev, body, f.busy, f.other_update, f.max_retries, pvs) {
        Ok(Admitted::Queued(p)) => Response::json(200, progress_body(st, rev, &p)),
        Ok(Admitted::Wontgo(p) | Admitted::Refused(Admission::Standing, Some(p))) => {
            Response::json(409, progress_body(st, rev, &p))
        }
        Ok(Admitted::Refused(Admission::Differs, _)) => Response::error(409, STATE_DIFFERS),
        Ok(Admitted::Refused(Admission::UpdateActive, _)) => {
            Response::error(503, UPDATE_BUSY).with_header("Retry-After", "600".into())
        }
        Ok(Admitted::Refused(..)) => Response::error(409, RUNNING),
        Err(e) => storage_error(&e),
    }
}

/// Is the caller privileged? `_pv_` is; a container is when its roles contain mgmt (an
/// absent `roles` key means mgmt, see the state model); a name the state does not know is not.
/// An unidentified caller (empty name) is an error, as upstream.
pub fn privileged(caller: &Caller, state: &State) -> Result<bool, Response> {
    if caller.name.is_empty() {
        return Err(Response::error(500, UNKNOWN_CALLER));
    }
    if caller.is_host() {
        return Ok(true);
    }
    Ok(state
        .container(&caller.name)
        .is_some_and(Container::is_mgmt))
}

fn str_bool(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// GET /containers.
pub fn containers_json(ctrs: &[CtrView]) -> String {
    let mut arr = ArrayWriter::new();
    for c in ctrs {
        let mut o = ObjectWriter::new();
        o.str("name", &c.spec.name)
            .str("group", &c.spec.group)
            .str("status", c.status.as_str())
            .str("status_goal", c.spec.status_goal.as_str())
            .str("restart_policy", c.spec.restart_policy.as_str());
        let mut roles = ArrayWriter::new();
        for r in &c.spec.roles {
            roles.str(r.as_str());
        }
        o.raw("roles", &roles.finish());
        if c.ar.policy != RecoveryPolicy::No {
            let mut a = ObjectWriter::new();
            a.str("policy", c.ar.policy.as_str())
                .uint("max_retries", u64::from(c.ar.max_retries))
                .uint("current_retries", u64::from(c.retries))
                .uint("stable_timeout", u64::from(c.ar.stable_timeout))
                .str("is_stable", str_bool(c.stable))
                .str("backoff_policy", &c.ar.backoff_policy.render());
            o.raw("auto_recovery", &a.finish());
        }
        if c.spec.restart_policy == RestartPolicy::Container {
            o.str("user_stopped", str_bool(c.user_stopped));
        }
        arr.raw(&o.finish());
    }
    arr.finish()
}

/// GET /groups: each group with the status of its members.
pub fn groups_json(state: &State, ctrs: &[CtrView]) -> String {
    let mut arr = ArrayWriter::new();
    for g in state.groups() {
        let members: Vec<(Status, Goal)> = ctrs
            .iter()
            .filter(|c| c.spec.group == g.name)
            .map(|c| (c.status, c.goal))
            .collect();
        let mut o = ObjectWriter::new();
        o.str("name", &g.name)
            .str("status_goal", g.status_goal.as_str())
            .str("restart_policy", g.restart_policy.as_str())
            .str("status", supervisor::group_status(&members).as_str());
        if let Some(ar) = &g.auto_recovery {
            let mut a = ObjectWriter::new();
            a.uint("max_retries", u64::from(ar.max_retries))
                .uint("stable_timeout", u64::from(ar.stable_timeout))
                .str("backoff_policy", &ar.backoff_policy.render());
            o.raw("auto_recovery", &a.finish());
        }
        arr.raw(&o.finish());
    }
    arr.finish()
}

/// GET /user-meta, /device-meta: values that are a JSON object or array are embedded raw,
/// the others (numbers and `true` too, as upstream's `pv_json_is_valid`) as JSON strings.
pub fn meta_json(entries: &[(String, Vec<u8>)]) -> String {
    let mut o = ObjectWriter::new();
    for (k, v) in entries {
        let structured = |t: &str| {
            json::parse_str(t, json::Limits::default())
                .is_ok_and(|v| v.as_object().is_some() || v.as_array().is_some())
        };
        match std::str::from_utf8(v) {
            Ok(text) if structured(text) => {
                o.raw(k, text.trim());
            }
            _ => {
                o.str(k, &String::from_utf8_lossy(v));
            }
        };
    }
    o.finish()
}

/// The device's own device-meta keys, newest first as upstream lists them, then the stored
/// keys they do not shadow.
fn with_own(entries: Vec<(String, Vec<u8>)>, own: &OwnMeta) -> Vec<(String, Vec<u8>)> {
    let mine = own
        .newest_first()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()));
    let stored = entries.into_iter().filter(|(k, _)| own.get(k).is_none());
    mine.chain(stored).collect()
}

fn loaded_modules() -> std::collections::HashSet<String> {
    drivers::loaded_modules(&std::fs::read_to_string("/proc/modules").unwrap_or_default())
}

/// GET /daemons.
pub fn daemons_json(daemons: &[Daemon]) -> String {
    let mut arr = ArrayWriter::new();
    for d in daemons {
        let mut o = ObjectWriter::new();
        o.str("name", d.name)
            .num("pid", i64::from(d.pid))
            .bool("respawn", d.respawn);
        arr.raw(&o.finish());
    }
    arr.finish()
}

/// GET /wakelocks: upstream's power-management state. This device does no suspend
/// management: mode `disabled` (wakelock calls are no-ops), nothing held.
pub fn wakelocks_json() -> String {
    let mut held = ObjectWriter::new();
    for scope in [
        "boot",
        "update",
        "update_check",
        "devmeta",
        "usrmeta",
        "shutdown",
        "debug_shell",
        "poll",
    ] {
        held.bool(scope, false);
    }
    let mut o = ObjectWriter::new();
    o.str("mode", "disabled").uint("count", 0);
    for flag in ["degraded", "autosleep", "settling", "polling", "run_window"] {
        o.bool(flag, false);
    }
    o.raw("held", &held.finish());
    o.finish()
}

/// The string members `a` and `b` of a JSON object body; None if malformed.
fn two_strings(body: &[u8], a: &str, b: &str) -> Option<(String, String)> {
    let v = json::parse(body, json::Limits::default()).ok()?;
    let x = v.get(a)?.as_str()?.to_string();
    let y = v.get(b)?.as_str()?.to_string();
    Some((x, y))
}

impl Ctl<'_> {
    fn storage(&self) -> Storage<'_> {
        Storage::new(self.fs, self.cfg.storage_mntpoint())
    }

    /// A revision name of a GET: `current` is the revision `trails/current` names.
    fn resolve(&self, st: &Storage, rev: &str) -> Option<String> {
        if rev == "current" {
            return st.current().ok().flatten().filter(|r| valid_revision(r));
        }
        valid_revision(rev).then(|| rev.to_string())
    }

    /// GET /objects.
    fn objects_list(&self) -> Response {
        let st = self.storage();
        let shas = match st.list_objects() {
            Ok(s) => s,
            Err(e) => return storage_error(&e),
        };
        let mut arr = ArrayWriter::new();
        for sha in shas {
            let Ok(m) = self.fs.metadata(&st.objects_dir().join(&sha)) else {
                continue; // removed meanwhile (GC)
            };
            let mut o = ObjectWriter::new();
            o.str("sha256", &sha).str("size", &m.len.to_string());
            arr.raw(&o.finish());
        }
        Response::json(200, arr.finish())
    }

    /// GET /objects/{sha}: small objects in the answer, big ones streamed from the file as the
    /// client reads (the loop is never held by a slow reader).
    fn object_get(&self, sha: &str) -> Response {
        if !valid_sha(sha) {
            return Response::error(400, BAD_OBJECT_NAME);
        }
        let path = self.storage().objects_dir().join(sha);
        match self.fs.metadata(&path) {
            Ok(m) if m.len > OBJECT_IN_MEMORY => {
                return Response::file("application/octet-stream", path, m.len)
            }
            Ok(_) => {}
            Err(e) if not_found(&e) => return Response::error(404, NOT_FOUND),
            Err(e) => return Response::internal(&e),
        }
        match self.fs.read(&path) {
            Ok(data) => Response::new(200, "application/octet-stream", data),
            Err(e) if not_found(&e) => Response::error(404, NOT_FOUND),
            Err(e) => Response::internal(&e),
        }
    }

    /// PUT /objects/{sha}: a streamed body.
    fn object_put(&self, sha: &str) -> Plan {
        if !valid_sha(sha) {
            return Plan::Reply(Response::error(400, BAD_OBJECT_NAME));
        }
        if self.storage_busy {
            return Plan::Reply(
                Response::error(503, "Storage is being collected (GC). Try again")
                    .with_header("Retry-After", "10".into()),
            );
        }
        let st = Storage::new(self.stream_fs, self.cfg.storage_mntpoint());
        match st.has_object(sha) {
            Ok(true) => return Plan::Stream(Box::new(DrainSink), MAX_OBJECT),
            Ok(false) => {}
            Err(e) => return Plan::Reply(storage_error(&e)),
        }
        match st.object_writer(sha) {
            Ok(w) => Plan::Stream(Box::new(ObjectSink::new(w)), MAX_OBJECT),
            Err(e) => Plan::Reply(storage_error(&e)),
        }
    }

    /// GET /steps: every revision with a trail, `current` excluded.
    fn steps_list(&self) -> Response {
        let st = self.storage();
        let revs = match st.list_revisions() {
            Ok(r) => r,
            Err(e) => return storage_error(&e),
        };
        let mut arr = ArrayWriter::new();
        for rev in revs {
            let Ok(dir) = st.trail_dir(&rev) else {
                continue;
            };
            let Ok(m) = self.fs.metadata(&dir) else {
                continue;
            };
            let msg = st
                .commitmsg_path(&rev)
                .ok()
                .and_then(|p| self.fs.read(&p).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let progress = st
                .progress_path(&rev)
                .ok()
                .and_then(|p| self.fs.read(&p).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|t| json::parse_str(t, json::Limits::default()).is_ok())
                .map_or_else(|| "{}".to_string(), |t| t.trim().to_string());
            let mut o = ObjectWriter::new();
            o.str("name", &rev)
                .str("date", &utc_date(m.mtime))
                .str("commitmsg", &msg)
                .raw("progress", &progress);
            arr.raw(&o.finish());
        }
        Response::json(200, arr.finish())
    }

    /// GET /steps/{rev}[/progress]: the state JSON or the progress JSON, as stored.
    fn step_get(&self, rev: &str, part: StepPart) -> Response {
        let st = self.storage();
        let Some(rev) = self.resolve(&st, rev) else {
            return Response::error(404, NOT_FOUND);
        };
        let path = match part {
            StepPart::State => st.state_path(&rev),
            StepPart::Progress => st.progress_path(&rev),
            StepPart::Commitmsg => st.commitmsg_path(&rev),
        };
        let path = match path {
            Ok(p) => p,
            Err(_) => return Response::error(404, NOT_FOUND),
        };
        let ctype = if part == StepPart::Commitmsg {
            "text/plain"
        } else {
            JSON
        };
        match self.fs.read(&path) {
            Ok(data) => Response::new(200, ctype, data),
            Err(e) if not_found(&e) => Response::error(404, NOT_FOUND),
            Err(e) => Response::internal(&e),
        }
    }

    /// PUT /steps/{rev}/commitmsg: the revision must exist.
    fn commitmsg_put(&self, rev: &str, body: &[u8]) -> Response {
        let st = self.storage();
        let Some(rev) = self.resolve(&st, rev) else {
            return Response::error(404, NOT_FOUND);
        };
        if body.is_empty() {
            return Response::error(400, "Commit message is empty");
        }
        let (Ok(dir), Ok(path)) = (st.trail_dir(&rev), st.commitmsg_path(&rev)) else {
            return Response::error(404, NOT_FOUND);
        };
        match crate::storage::fs::exists(self.fs, &dir) {
            Ok(true) => {}
            Ok(false) => return Response::error(404, NOT_FOUND),
            Err(e) => return Response::internal(&e),
        }
        let res = path
            .parent()
            .map_or(Ok(()), |pv| crate::storage::fs::create_dir_all(self.fs, pv))
            .and_then(|()| crate::storage::fs::write_atomic(self.fs, &path, body))
            .map_err(|e| storage::Error::io("write", &path, e));
        match res {
            Ok(()) => Response::ok(),
            Err(e) => storage_error(&e),
        }
    }

    fn store(&self, kind: MetaKind) -> MetaStore<'_> {
        let dir = match kind {
            MetaKind::User => self.cfg.cache_usrmetadir(),
            MetaKind::Device => self.cfg.cache_devmetadir(),
        };
        MetaStore::new(self.fs, dir.as_ref())
    }

    /// POST /signal: only `ready`, from a container whose goal is READY.
    fn signal(&mut self, caller: &Caller, body: &[u8]) -> Response {
        let Some((kind, _payload)) = two_strings(body, "type", "payload") else {
            return Response::error(400, SIGNAL_BAD);
        };
        if kind != "ready" {
            return Response::error(500, SIGNAL_UNEXPECTED);
        }
        answer(self.dev.request(Ask::Ready(caller.name.clone())))
    }

    /// PUT /steps/<n>/progress: the Hub client's download report (`update::remote::record`):
    /// 200 with the progress written, 409 with the progress as it is when refused.
    fn progress_put(&self, rev: &str, body: &[u8]) -> Response {
        let Some(report) = update::remote::parse_report(body) else {
            return Response::error(400, PROGRESS_BAD);
        };
        let st = self.storage();
        let busy = self.busy.iter().any(|r| r == rev);
        match update::remote::record(&st, rev, &report, busy, self.cfg.revision_retries()) {
            Ok(Ok(p)) => Response::json(200, progress_body(&st, rev, &p)),
            Ok(Err(Some(p))) => Response::json(409, progress_body(&st, rev, &p)),
            Ok(Err(None)) => Response::error(404, NOT_FOUND),
            Err(e) => storage_error(&e),
        }
    }

    /// UPDATE_METADATA in remote mode: the Hub client is woken to send device-meta now, and,
    /// as upstream, the first member of a payload object (`{"key":"value"}`) becomes a
    /// device-meta key.
    fn update_metadata(&mut self, payload: &str) -> Response {
        let resp = answer(self.dev.request(Ask::UpdateMetadata));
        if resp.status != 200 {
            return resp;
        }
        let Ok(v) = json::parse_str(payload, json::Limits::default()) else {
            return resp;
        };
        match v.as_object().and_then(|o| o.first()) {
            Some((k, val)) if valid_key(k) => {
                let text = val.as_str().unwrap_or_else(|| val.raw(payload));
                self.meta_put(MetaKind::Device, k, text.as_bytes())
            }
            _ => resp,
        }
    }

    /// REMOTE_RUN's checks: a Hub revision with a state, admitted and not installed yet.
    fn remote_run(&self, caller: &Caller, rev: String) -> Result<Ask, Response> {
        if !caller.is_host() {
            return Err(Response::error(403, NOT_MGMT));
        }
        if !update::remote::is_hub_revision(&rev) {
            return Err(Response::error(400, COMMAND_BAD));
        }
        if !self.has_state(&rev) {
            return Err(Response::error(404, NO_REVISION));
        }
        let st = self.storage();
        match st.read_progress(&rev) {
            Some(p) if update::remote::runnable(Some(&p)) && !self.busy.contains(&rev) => {
                Ok(Ask::Command(Command::RemoteRun { rev }))
            }
            Some(p) => Err(Response::json(409, progress_body(&st, &rev, &p))),
            None => Err(Response::error(409, NOT_ADMITTED)),
        }
    }

    /// POST /commands: the op and payload checked here, admitted by the device.
    fn command(&mut self, caller: &Caller, body: &[u8]) -> Response {
        let Some((op, payload)) = two_strings(body, "op", "payload") else {
            return Response::error(400, COMMAND_BAD);
        };
        // the ops upstream answers without queueing anything
        match op.as_str() {
            "UPDATE_METADATA" | "GO_REMOTE" if !cfg!(feature = "hub") => {
                return Response::error(409, NO_HUB)
            }
            "GO_REMOTE" if !self.cfg.control_remote() => {
                return Response::error(409, REMOTE_DISABLED)
            }
            "UPDATE_METADATA" => return self.update_metadata(&payload),
            "DEFER_REBOOT" if !self.cfg.debug_shell() => {
                return Response::error(
                    409,
                    "Cannot do this operation when debug shell is not active",
                )
            }
            "UNCLAIM" => return Response::new(204, JSON, Vec::new()),
            "TRY_ONCE" | "LOCAL_APPLY" | "XCONNECT_GRAPH" => return Response::ok(),
            _ => {}
        }
        let request = match op.as_str() {
            "REBOOT_DEVICE" | "POWEROFF_DEVICE" => {
                let p = if op == "REBOOT_DEVICE" {
                    Power::Reboot
                } else {
                    Power::PowerOff
                };
                let why = if payload.is_empty() {
                    format!("pv-ctrl {op}")
                } else {
                    format!("pv-ctrl {op}: {payload}")
                };
                Ask::Power(p, why)
            }
            "LOCAL_RUN" | "LOCAL_RUN_COMMIT" if valid_revision(&payload) => {
                if !self.has_state(&payload) {
                    return Response::error(404, NO_REVISION);
                }
                Ask::Command(Command::LocalRun {
                    rev: payload,
                    commit: op == "LOCAL_RUN_COMMIT",
                })
            }
            "MAKE_FACTORY" => {
                let rev = if payload.is_empty() {
                    self.rev.to_string()
                } else {
                    payload
                };
                if !valid_revision(&rev) {
                    return Response::error(400, COMMAND_BAD);
                }
                if rev == "0" {
                    return Response::error(409, "Revision 0 is already the factory revision");
                }
                if !self.has_state(&rev) {
                    return Response::error(404, NO_REVISION);
                }
                Ask::Command(Command::MakeFactory { rev })
            }
            "RUN_GC" => Ask::Command(Command::RunGc),
            "GO_REMOTE" => Ask::Command(Command::GoRemote),
            "REMOTE_RUN" => match self.remote_run(caller, payload) {
                Ok(ask) => ask,
                Err(resp) => return resp,
            },
            "ENABLE_SSH" | "DISABLE_SSH" => Ask::Command(Command::DebugSsh(op == "ENABLE_SSH")),
            "DEFER_REBOOT" => Ask::Command(Command::DeferReboot(payload)),
            _ => return Response::error(400, COMMAND_BAD),
        };
        answer(self.dev.request(request))
    }

    /// PUT /containers/{name}: start, stop or restart.
    fn container_put(&mut self, name: &str, body: &[u8]) -> Response {
        let action = json::parse(body, json::Limits::default())
            .ok()
            .and_then(|v| v.get("action")?.as_str().map(str::to_string));
        let action = match action.as_deref() {
            Some("start") => CtrAction::Start,
            Some("stop") => CtrAction::Stop,
            Some("restart") => CtrAction::Restart,
            _ => return Response::error(400, CONTAINER_BAD),
        };
        answer(self.dev.request(Ask::Container(name.to_string(), action)))
    }

    /// PUT /daemons/{name}: `{"action":"start"|"stop"}`; an unknown daemon is a 404 first.
    fn daemon_put(&mut self, name: &str, body: &[u8]) -> Response {
        if !self.daemons.iter().any(|d| d.name == name) {
            return Response::error(404, DAEMON_UNKNOWN);
        }
        let action = json::parse(body, json::Limits::default())
            .ok()
            .and_then(|v| v.get("action")?.as_str().map(str::to_string));
        let start = match action.as_deref() {
            Some("start") => true,
            Some("stop") => false,
            // upstream answers 200 and does nothing for another action
            _ => return Response::ok(),
        };
        answer(self.dev.request(Ask::Daemon(name.to_string(), start)))
    }

    /// POST /storage/gc: answered `{"reclaimed":N}` once the GC ran (off the loop).
    fn storage_gc(&mut self) -> Plan {
        match self.dev.request(Ask::Gc) {
            Ok(Answer::Deferred(ticket)) => Plan::Defer {
                ticket,
                limit_ms: GC_WAIT_MS,
            },
            a => Plan::Reply(answer(a)),
        }
    }

    /// GET /config: the legacy dotted aliases with typed values.
    fn config_json(&self) -> String {
        let mut o = ObjectWriter::new();
        for (alias, v) in self.cfg.alias_entries() {
            match v {
                crate::config::AliasValue::Bool(b) => o.raw(alias, str_bool(b)),
                crate::config::AliasValue::Number(n) => o.uint(alias, n),
                crate::config::AliasValue::Str(s) => o.str(alias, s.unwrap_or("(null)")),
            };
        }
        o.finish()
    }

    /// GET /config2: every key, its value and the level that set it.
    fn config2_json(&self) -> String {
        let mut arr = ArrayWriter::new();
        for (key, value, level) in self.cfg.entries() {
            let mut o = ObjectWriter::new();
            o.str("key", key)
                .str("value", value.unwrap_or("(null)"))
                .str("modified", level);
            arr.raw(&o.finish());
        }
        arr.finish()
    }

    fn meta_get(&self, kind: MetaKind) -> Response {
        let mut entries = match self.store(kind).list() {
            Ok(entries) => entries,
            Err(e) => return Response::internal(&e),
        };
        if kind == MetaKind::Device {
            entries = with_own(entries, self.own_meta);
        }
        Response::json(200, meta_json(&entries))
    }

    /// Does revision `rev` have a state JSON (a LOCAL_RUN or MAKE_FACTORY may name it)?
    fn has_state(&self, rev: &str) -> bool {
        let st = self.storage();
        st.state_path(rev)
            .is_ok_and(|p| crate::storage::fs::exists(self.fs, &p).unwrap_or(false))
    }

    /// GET /drivers: the caller's driver aliases with type and status; `{}` for none (the
    /// host has none).
    fn drivers_get(&self, caller: &Caller) -> Response {
        let Some(c) = self.state.container(&caller.name) else {
            return Response::new(200, JSON, b"{}".to_vec());
        };
        let refs = drivers::refs(c);
        if refs.is_empty() {
            return Response::new(200, JSON, b"{}".to_vec());
        }
        let loaded = loaded_modules();
        let meta = |s: &str, k: &str| placeholder(self.fs, self.cfg, self.own_meta, s, k);
        let fit = self.cfg.bootloader_fitconfig();
        let mut arr = ArrayWriter::new();
        for (alias, ty) in refs {
            let mods = drivers::alias_modules(self.state, alias, fit, &meta);
            let mut o = ObjectWriter::new();
            o.str("name", alias)
                .str("type", ty.as_str())
                .str("status", drivers::alias_status(mods.as_deref(), &loaded));
            arr.raw(&o.finish());
        }
        Response::json(200, arr.finish())
    }

    /// PUT /drivers[/{alias}]/load|unload: the caller's manual drivers (upstream: a name
    /// that is not one of them does nothing). A load that fails is a 400; unloads are tried
    /// and logged.
    fn drivers_put(&self, caller: &Caller, name: Option<&str>, load: bool) -> Response {
        let Some(c) = self.state.container(&caller.name) else {
            return Response::ok();
        };
        let meta = |s: &str, k: &str| placeholder(self.fs, self.cfg, self.own_meta, s, k);
        let fit = self.cfg.bootloader_fitconfig();
        for (alias, ty) in drivers::refs(c) {
            if ty != drivers::DriverType::Manual || name.is_some_and(|n| n != alias) {
                continue;
            }
            let mods = drivers::alias_modules(self.state, alias, fit, &meta).unwrap_or_default();
            let res = if load {
                drivers::load_for(self.modules, &c.name, &[(alias.to_string(), mods, true)])
                    .map(|_| ())
            } else if drivers::alias_status(Some(&mods), &loaded_modules()) == "LOADED" {
                // as upstream: only an alias whose modules are all in
                drivers::unload(&mods)
            } else {
                continue;
            };
            match res {
                Ok(()) => crate::pvlog!(
                    Info,
                    "drivers",
                    "container {}: manual driver {alias} {}",
                    c.name,
                    if load { "loaded" } else { "unloaded" }
                ),
                Err(e) if load => {
                    crate::pvlog!(Error, "drivers", "{e}");
                    let what = if name.is_some() { "driver" } else { "drivers" };
                    return Response::error(400, &format!("Error loading {what}"));
                }
                Err(e) => crate::pvlog!(
                    Warn,
                    "drivers",
                    "container {}: manual driver {alias}: {e}",
                    c.name
                ),
            }
        }
        Response::ok()
    }

    fn meta_put(&mut self, kind: MetaKind, key: &str, body: &[u8]) -> Response {
        match self.store(kind).set(key, body) {
            Ok(()) => {
                self.meta_changed.push((kind, key.to_string()));
                Response::ok()
            }
            Err(e) => Response::internal(&e),
        }
    }

    fn meta_delete(&mut self, kind: MetaKind, key: &str) -> Response {
        // one of the device's own keys goes too (the device drops it: meta_changed)
        let own = kind == MetaKind::Device && self.own_meta.get(key).is_some();
        match self.store(kind).delete(key) {
            Ok(deleted) if deleted || own => {
                self.meta_changed.push((kind, key.to_string()));
                Response::ok()
            }
            Ok(_) => Response::error(404, kind.missing()),
            Err(e) => Response::internal(&e),
        }
    }
}

/// The device's answer as upstream's status and message.
fn answer(a: Result<Answer, Refusal>) -> Response {
    match a {
        Ok(Answer::Ok) => Response::ok(),
        Ok(Answer::Deferred(_)) => Response::error(500, "Internal error, an answer was deferred"),
        Err(r) => refused(&r),
    }
}

pub fn refused(r: &Refusal) -> Response {
    match r {
        Refusal::Busy => {
            Response::error(503, COMMAND_BUSY).with_header("Retry-After", "120".into())
        }
        Refusal::UpdateActive => {
            Response::error(503, UPDATE_BUSY).with_header("Retry-After", "600".into())
        }
        Refusal::NoBootEnv(why) => {
            // the detail names host paths: the log has it, the caller may be a container
            crate::pvlog!(Error, "ctrl", "boot env: {why}");
            Response::error(
                409,
                "Cannot read the boot env, so what must be kept is unknown",
            )
        }
        Refusal::FactoryInUse => Response::error(
            409,
            "Revision 0 is in use (running, committed or tried): it is the rollback point",
        ),
        Refusal::UnknownContainer => Response::error(404, CONTAINER_UNKNOWN),
        Refusal::UnknownDaemon => Response::error(404, DAEMON_UNKNOWN),
        Refusal::LocalMode => Response::error(409, LOCAL_MODE),
        // upstream answers an error with 204, whose body is never sent
        Refusal::AlreadyRemote => Response::new(204, JSON, Vec::new()),
        Refusal::NotOurs => Response::error(403, CONTAINER_NOT_OURS),
        Refusal::BadStatus => Response::error(400, CONTAINER_STATE),
        Refusal::SignalUnexpected => Response::error(500, SIGNAL_UNEXPECTED),
        Refusal::Storage { no_space: true, .. } => Response::error(507, NO_SPACE),
        Refusal::Storage { reason, .. } => Response::internal(reason),
    }
}

fn bad_method() -> Plan {
    Plan::Reply(Response::error(400, BAD_METHOD))
}

impl Router for Ctl<'_> {
    fn head(&mut self, req: &Request) -> Plan {
        let h = &req.head;
        let Some(r) = route(&h.segments) else {
            return Plan::Reply(Response::error(
                400,
                &format!("unknown endpoint: {}", h.path),
            ));
        };
        let mgmt = match privileged(&req.caller, self.state) {
            Ok(m) => m,
            Err(resp) => return Plan::Reply(resp),
        };
        if !mgmt && r != Route::Signal {
            return Plan::Reply(Response::error(403, NOT_MGMT));
        }
        match (r, h.method) {
            (Route::Containers, Method::Get) => {
                Plan::Reply(Response::json(200, containers_json(&self.ctrs)))
            }
            (Route::Groups, Method::Get) => {
                Plan::Reply(Response::json(200, groups_json(self.state, &self.ctrs)))
            }
            (Route::Signal | Route::Commands, Method::Post) => Plan::Buffer(MAX_JSON),
            (Route::Container(_), Method::Put) => Plan::Buffer(MAX_JSON),
            (Route::Config, Method::Get) => Plan::Reply(Response::json(200, self.config_json())),
            (Route::Config2, Method::Get) => Plan::Reply(Response::json(200, self.config2_json())),
            (Route::StorageGc, Method::Post) => self.storage_gc(),
            (Route::Meta(kind, None), Method::Get) => Plan::Reply(self.meta_get(kind)),
            (Route::Meta(_, Some(k)), Method::Put | Method::Delete) if !valid_key(&k) => {
                Plan::Reply(Response::error(400, "Bad meta key"))
            }
            (Route::Meta(_, Some(_)), Method::Put) => {
                if h.content_length == 0 || h.content_length > MAX_META {
                    Plan::Reply(Response::error(
                        400,
                        &format!("Meta value must be 1 to {MAX_META} bytes"),
                    ))
                } else {
                    Plan::Buffer(MAX_META as usize)
                }
            }
            (Route::Meta(kind, Some(k)), Method::Delete) => Plan::Reply(self.meta_delete(kind, &k)),
            (Route::Buildinfo, Method::Get) => Plan::Reply(Response::new(
                200,
                "text/plain",
                format!("pantavisor {}\n", env!("CARGO_PKG_VERSION")).into_bytes(),
            )),
            (Route::Drivers, Method::Get) => Plan::Reply(self.drivers_get(&req.caller)),
            (Route::DriverAction(name, load), Method::Put) => {
                Plan::Reply(self.drivers_put(&req.caller, name.as_deref(), load))
            }
            (Route::Daemons, Method::Get) => {
                Plan::Reply(Response::json(200, daemons_json(self.daemons)))
            }
            (Route::Daemon(_), Method::Put) => Plan::Buffer(MAX_JSON),
            (Route::Wakelocks, Method::Get) => Plan::Reply(Response::json(200, wakelocks_json())),
            // built without pv-xconnect
            (Route::XconnectGraph, Method::Get) => {
                Plan::Reply(Response::error(404, "xconnect is not available"))
            }
            (Route::Objects(None), Method::Get) => Plan::Reply(self.objects_list()),
            (Route::Objects(Some(sha)), Method::Get) => Plan::Reply(self.object_get(&sha)),
            (Route::Objects(Some(sha)), Method::Put) => self.object_put(&sha),
            (Route::Steps, Method::Get) => Plan::Reply(self.steps_list()),
            (Route::Step(rev, part), Method::Get) => Plan::Reply(self.step_get(&rev, part)),
            (Route::Step(rev, StepPart::State), Method::Put) => {
                let hub = update::remote::is_hub_revision(&rev);
                if !hub && (!rev.starts_with("locals/") || !valid_revision(&rev)) {
                    return Plan::Reply(Response::error(400, BAD_REV_NAME));
                }
                if hub && !req.caller.is_host() {
                    // the Hub client's call: a host process only
                    return Plan::Reply(Response::error(403, NOT_MGMT));
                }
                let root = self.cfg.storage_mntpoint().into();
                match StateSink::new(self.stream_fs, root, &rev, self.pvs.clone()) {
                    Ok(mut sink) => {
                        if hub {
                            let busy = self.busy.contains(&rev);
                            sink.remote = Some(RemoteFacts {
                                busy,
                                other_update: self.update_active && !busy,
                                max_retries: self.cfg.revision_retries(),
                            });
                        }
                        Plan::Stream(Box::new(sink), MAX_STATE as u64)
                    }
                    Err(resp) => Plan::Reply(resp),
                }
            }
            (Route::Step(rev, StepPart::Progress), Method::Put) => {
                if !update::remote::is_hub_revision(&rev) {
                    Plan::Reply(Response::error(400, BAD_REV_NAME))
                } else if !req.caller.is_host() {
                    Plan::Reply(Response::error(403, NOT_MGMT))
                } else {
                    Plan::Buffer(MAX_JSON)
                }
            }
            (Route::Step(_, StepPart::Commitmsg), Method::Put) => {
                if h.content_length == 0 || h.content_length > MAX_COMMITMSG {
                    Plan::Reply(Response::error(
                        400,
                        &format!("Commit message must be 1 to {MAX_COMMITMSG} bytes"),
                    ))
                } else {
                    Plan::Buffer(MAX_COMMITMSG as usize)
                }
            }
            _ => bad_method(),
        }
    }

    fn finish(&mut self, req: &Request, body: Vec<u8>) -> Response {
        match route(&req.head.segments) {
            Some(Route::Signal) => self.signal(&req.caller, &body),
            Some(Route::Commands) => self.command(&req.caller, &body),
            Some(Route::Container(name)) => self.container_put(&name, &body),
            Some(Route::Daemon(name)) => self.daemon_put(&name, &body),
            Some(Route::Meta(kind, Some(k))) => self.meta_put(kind, &k, &body),
            Some(Route::Step(rev, StepPart::Commitmsg)) => self.commitmsg_put(&rev, &body),
            Some(Route::Step(rev, StepPart::Progress)) => self.progress_put(&rev, &body),
            _ => Response::error(400, BAD_METHOD),
        }
    }

    fn trusted(&mut self, caller: &Caller) -> bool {
        privileged(caller, self.state).unwrap_or(false)
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
