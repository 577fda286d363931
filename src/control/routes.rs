//! The pv-ctrl endpoints (reference 6.1-6.4) over a snapshot of the device: the device builds
//! a [`Ctl`] for each server wake, the server calls it as its [`Router`], and the device then
//! applies the [`Effect`]s it collected (a container signalled READY, a power command). No
//! device type is known here, so every route is testable without a device.
use super::http::JSON;
use super::{Caller, Method, Plan, Request, Response, Router};
use crate::config::Config;
use crate::json::{self, ArrayWriter, ObjectWriter};
use crate::state::{AutoRecovery, Container, RecoveryPolicy, RestartPolicy, State};
use crate::storage::fs::Fs;
use crate::storage::meta::{valid_key, MetaStore};
use crate::supervisor::{self, Action, Event, Goal, Status};
use crate::sys::power::Power;

/// Largest meta value accepted by PUT (reference 6.2).
pub const MAX_META: u64 = 4096;
/// Largest JSON body of POST /signal and POST /commands.
pub const MAX_JSON: usize = 4096;

const NOT_MGMT: &str = "Request not sent from mgmt platform";
const UNKNOWN_CALLER: &str = "Internal error, unknown caller";
const BAD_METHOD: &str = "Method not supported for this endpoint";
const SIGNAL_UNEXPECTED: &str = "Signal not expected from this platform";
const SIGNAL_BAD: &str = "Signal has bad format";
const COMMAND_BAD: &str = "Command has bad format";
const COMMAND_BUSY: &str = "A command is already in progress. Try again";
const UPDATE_BUSY: &str = "Cannot do this operation while update is ongoing";

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

/// What the device must do once the server returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// The container signalled ready: feed `Event::SignalReady` to the status table.
    Ready(String),
    /// Orderly reboot or power off.
    Power(Power, String),
}

/// The router of one server wake.
pub struct Ctl<'d> {
    pub cfg: &'d Config,
    pub fs: &'d dyn Fs,
    pub state: &'d State,
    pub ctrs: Vec<CtrView<'d>>,
    /// An update is on probation: power commands are refused (503).
    pub update_active: bool,
    /// The device is already ending: another command is refused (503).
    pub ending: bool,
    pub effects: Vec<Effect>,
}

/// The endpoints served; the rest answer "unknown endpoint".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Containers,
    Groups,
    Signal,
    Commands,
    Meta(MetaKind, Option<String>),
    Buildinfo,
    Drivers,
    Daemons,
    XconnectGraph,
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
        ["groups"] => Route::Groups,
        ["signal"] => Route::Signal,
        ["commands"] => Route::Commands,
        ["user-meta"] => Route::Meta(MetaKind::User, None),
        ["user-meta", k] => Route::Meta(MetaKind::User, Some(k.to_string())),
        ["device-meta"] => Route::Meta(MetaKind::Device, None),
        ["device-meta", k] => Route::Meta(MetaKind::Device, Some(k.to_string())),
        ["buildinfo"] => Route::Buildinfo,
        ["drivers"] => Route::Drivers,
        ["daemons"] => Route::Daemons,
        ["xconnect-graph"] => Route::XconnectGraph,
        _ => return None,
    })
}

/// Is the caller privileged (6.1)? `_pv_` is; a container is when its roles contain mgmt (an
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

/// GET /containers (6.2, 4.4).
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

/// GET /groups (6.2): each group with the status of its members (3.1).
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

/// GET /user-meta, /device-meta (6.3): values that are valid JSON are embedded raw, the
/// others as JSON strings.
pub fn meta_json(entries: &[(String, Vec<u8>)]) -> String {
    let mut o = ObjectWriter::new();
    for (k, v) in entries {
        match std::str::from_utf8(v) {
            Ok(text) if json::parse_str(text, json::Limits::default()).is_ok() => {
                o.raw(k, text.trim());
            }
            _ => {
                o.str(k, &String::from_utf8_lossy(v));
            }
        };
    }
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
    fn store(&self, kind: MetaKind) -> MetaStore<'_> {
        let dir = match kind {
            MetaKind::User => self.cfg.cache_usrmetadir(),
            MetaKind::Device => self.cfg.cache_devmetadir(),
        };
        MetaStore::new(self.fs, dir.as_ref())
    }

    /// POST /signal (3.4).
    fn signal(&mut self, caller: &Caller, body: &[u8]) -> Response {
        let Some((kind, _payload)) = two_strings(body, "type", "payload") else {
            return Response::error(400, SIGNAL_BAD);
        };
        let Some(c) = self.ctrs.iter_mut().find(|c| c.spec.name == caller.name) else {
            return Response::error(500, SIGNAL_UNEXPECTED);
        };
        if kind != "ready" {
            return Response::error(500, SIGNAL_UNEXPECTED);
        }
        if c.status == Status::Ready {
            return Response::ok();
        }
        match supervisor::next(c.status, Event::SignalReady, c.spec.status_goal) {
            Action::Become(s) => {
                c.status = s;
                c.goal = supervisor::check_goal(s, c.spec.status_goal, false);
                self.effects.push(Effect::Ready(c.spec.name.clone()));
                Response::ok()
            }
            _ => Response::error(500, SIGNAL_UNEXPECTED),
        }
    }

    /// POST /commands (6.4).
    fn command(&mut self, body: &[u8]) -> Response {
        let Some((op, payload)) = two_strings(body, "op", "payload") else {
            return Response::error(400, COMMAND_BAD);
        };
        let power = match op.as_str() {
            "REBOOT_DEVICE" => Power::Reboot,
            "POWEROFF_DEVICE" => Power::PowerOff,
            "UPDATE_METADATA" | "LOCAL_RUN" | "LOCAL_RUN_COMMIT" | "MAKE_FACTORY" | "RUN_GC"
            | "ENABLE_SSH" | "DISABLE_SSH" | "GO_REMOTE" | "DEFER_REBOOT" | "UNCLAIM"
            | "TRY_ONCE" | "LOCAL_APPLY" | "XCONNECT_GRAPH" => {
                return Response::error(400, &format!("Command {op} not supported yet"));
            }
            _ => return Response::error(400, COMMAND_BAD),
        };
        if self.ending || self.effects.iter().any(|e| matches!(e, Effect::Power(..))) {
            return Response::error(503, COMMAND_BUSY).with_header("Retry-After", "120".into());
        }
        if self.update_active {
            return Response::error(503, UPDATE_BUSY).with_header("Retry-After", "600".into());
        }
        let why = if payload.is_empty() {
            format!("pv-ctrl {op}")
        } else {
            format!("pv-ctrl {op}: {payload}")
        };
        self.effects.push(Effect::Power(power, why));
        Response::ok()
    }

    fn meta_get(&self, kind: MetaKind) -> Response {
        match self.store(kind).list() {
            Ok(entries) => Response::json(200, meta_json(&entries)),
            Err(e) => Response::error(500, &e.to_string()),
        }
    }

    fn meta_put(&self, kind: MetaKind, key: &str, body: &[u8]) -> Response {
        match self.store(kind).set(key, body) {
            Ok(()) => Response::ok(),
            Err(e) => Response::error(500, &e.to_string()),
        }
    }

    fn meta_delete(&self, kind: MetaKind, key: &str) -> Response {
        match self.store(kind).delete(key) {
            Ok(true) => Response::ok(),
            Ok(false) => Response::error(404, kind.missing()),
            Err(e) => Response::error(500, &e.to_string()),
        }
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
            // no driver of the caller is tracked yet: upstream's answer for none
            (Route::Drivers, Method::Get) => Plan::Reply(Response::new(200, JSON, b"{}".to_vec())),
            (Route::Daemons, Method::Get) => Plan::Reply(Response::json(200, "[]".into())),
            // built without pv-xconnect
            (Route::XconnectGraph, Method::Get) => {
                Plan::Reply(Response::error(404, "xconnect is not available"))
            }
            _ => bad_method(),
        }
    }

    fn finish(&mut self, req: &Request, body: Vec<u8>) -> Response {
        match route(&req.head.segments) {
            Some(Route::Signal) => self.signal(&req.caller, &body),
            Some(Route::Commands) => self.command(&body),
            Some(Route::Meta(kind, Some(k))) => self.meta_put(kind, &k, &body),
            _ => Response::error(400, BAD_METHOD),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Head;
    use crate::storage::simfs::SimFs;

    fn state() -> State {
        let d = r##"{"#spec":"pantavisor-service-system@1","bsp/run.json":{"linux":"k","initrd":"i"},"mgr/run.json":{"name":"mgr","type":"lxc"},"app/run.json":{"name":"app","type":"lxc","group":"app","roles":["nobody"],"status_goal":"READY","auto_recovery":{"policy":"always","max_retries":2,"backoff_policy":"60s"}}}"##;
        match State::parse(d.as_bytes()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn views(st: &State, status: Status) -> Vec<CtrView<'_>> {
        st.containers()
            .iter()
            .map(|c| CtrView {
                spec: c,
                status,
                goal: supervisor::check_goal(status, c.status_goal, false),
                ar: st.effective_auto_recovery(c),
                retries: 1,
                stable: false,
                user_stopped: false,
            })
            .collect()
    }

    fn req(caller: &str, method: Method, path: &str, len: u64) -> Request {
        Request {
            caller: Caller {
                pid: 7,
                uid: 0,
                name: caller.into(),
            },
            head: Head {
                method,
                path: path.into(),
                segments: path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
                content_length: len,
                keep_alive: false,
                expect_continue: false,
            },
        }
    }

    /// One request through head (and finish with `body` when buffered).
    fn call(ctl: &mut Ctl, caller: &str, method: Method, path: &str, body: &[u8]) -> Response {
        let r = req(caller, method, path, body.len() as u64);
        match ctl.head(&r) {
            Plan::Reply(resp) => resp,
            Plan::Buffer(limit) => {
                assert!(body.len() <= limit);
                ctl.finish(&r, body.to_vec())
            }
            Plan::Stream(..) => panic!("no streamed route"),
        }
    }

    fn text(r: &Response) -> String {
        String::from_utf8_lossy(&r.body).into_owned()
    }

    #[test]
    fn privileges_routes_and_json_shapes() {
        let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
        let mut ctl = Ctl {
            cfg: &cfg,
            fs: &fs,
            state: &st,
            ctrs: views(&st, Status::Started),
            update_active: false,
            ending: false,
            effects: vec![],
        };
        let r = call(&mut ctl, "", Method::Get, "/containers", b"");
        assert_eq!(
            (r.status, text(&r)),
            (500, r#"{"Error":"Internal error, unknown caller"}"#.into())
        );
        for who in ["app", "ghost"] {
            let r = call(&mut ctl, who, Method::Get, "/containers", b"");
            assert_eq!(r.status, 403, "{who}");
        }
        let r = call(&mut ctl, "mgr", Method::Get, "/containers", b"");
        assert_eq!(r.status, 200);
        assert_eq!(
            text(&r),
            r#"[{"name":"mgr","group":"root","status":"STARTED","status_goal":"STARTED","restart_policy":"system","roles":["mgmt"]},{"name":"app","group":"app","status":"STARTED","status_goal":"READY","restart_policy":"container","roles":["nobody"],"auto_recovery":{"policy":"always","max_retries":2,"current_retries":1,"stable_timeout":0,"is_stable":"false","backoff_policy":"1min"},"user_stopped":"false"}]"#
        );
        let r = call(&mut ctl, HOST_NAME, Method::Get, "/groups", b"");
        assert!(text(&r).contains(r#"{"name":"app","status_goal":"STARTED","restart_policy":"container","status":"STARTED","auto_recovery":{"max_retries":5,"stable_timeout":30,"backoff_policy":"reboot"}}"#), "{}", text(&r));
        assert!(text(&r).contains(r#"{"name":"root","status_goal":"STARTED","restart_policy":"system","status":"READY"}"#), "{}", text(&r));
        let r = call(&mut ctl, HOST_NAME, Method::Get, "/nope", b"");
        assert_eq!(
            (r.status, text(&r)),
            (400, r#"{"Error":"unknown endpoint: /nope"}"#.into())
        );
        let r = call(&mut ctl, HOST_NAME, Method::Delete, "/containers", b"");
        assert_eq!(r.status, 400);
        let r = call(&mut ctl, HOST_NAME, Method::Get, "/xconnect-graph", b"");
        assert_eq!(r.status, 404);
        assert_eq!(
            text(&call(&mut ctl, HOST_NAME, Method::Get, "/drivers", b"")),
            "{}"
        );
        assert_eq!(
            text(&call(&mut ctl, HOST_NAME, Method::Get, "/daemons", b"")),
            "[]"
        );
    }

    const HOST_NAME: &str = crate::control::HOST;

    #[test]
    fn signal_ready_goes_through_the_table() {
        let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
        let mut ctl = Ctl {
            cfg: &cfg,
            fs: &fs,
            state: &st,
            ctrs: views(&st, Status::Started),
            update_active: false,
            ending: false,
            effects: vec![],
        };
        let ready = br#"{"type":"ready","payload":""}"#;
        let r = call(&mut ctl, "app", Method::Post, "/signal", b"{bad");
        assert_eq!(r.status, 400);
        let r = call(&mut ctl, "mgr", Method::Post, "/signal", ready);
        assert_eq!(
            text(&r),
            r#"{"Error":"Signal not expected from this platform"}"#
        );
        let r = call(&mut ctl, HOST_NAME, Method::Post, "/signal", ready);
        assert_eq!(r.status, 500);
        let r = call(
            &mut ctl,
            "app",
            Method::Post,
            "/signal",
            br#"{"type":"alive","payload":""}"#,
        );
        assert_eq!(r.status, 500);
        let r = call(&mut ctl, "app", Method::Post, "/signal", ready);
        assert_eq!(r.status, 200);
        assert_eq!(ctl.effects, vec![Effect::Ready("app".into())]);
        // again: already READY, nothing more to do
        assert_eq!(
            call(&mut ctl, "app", Method::Post, "/signal", ready).status,
            200
        );
        assert_eq!(ctl.effects.len(), 1);
    }

    #[test]
    fn commands_and_meta() {
        let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
        let mut ctl = Ctl {
            cfg: &cfg,
            fs: &fs,
            state: &st,
            ctrs: views(&st, Status::Started),
            update_active: false,
            ending: false,
            effects: vec![],
        };
        let h = HOST_NAME;
        let bad = r#"{"Error":"Command has bad format"}"#;
        for body in [
            &b"nope"[..],
            br#"{"op":"REBOOT_DEVICE"}"#,
            br#"{"op":"FLY","payload":""}"#,
        ] {
            let r = call(&mut ctl, h, Method::Post, "/commands", body);
            assert_eq!((r.status, text(&r)), (400, bad.to_string()));
        }
        let r = call(
            &mut ctl,
            h,
            Method::Post,
            "/commands",
            br#"{"op":"RUN_GC","payload":""}"#,
        );
        assert_eq!(r.status, 400);
        assert!(text(&r).contains("not supported yet"));
        ctl.update_active = true;
        let r = call(
            &mut ctl,
            h,
            Method::Post,
            "/commands",
            br#"{"op":"REBOOT_DEVICE","payload":""}"#,
        );
        assert_eq!(r.status, 503);
        ctl.update_active = false;
        let r = call(
            &mut ctl,
            h,
            Method::Post,
            "/commands",
            br#"{"op":"POWEROFF_DEVICE","payload":"x"}"#,
        );
        assert_eq!(r.status, 200);
        assert_eq!(
            ctl.effects,
            vec![Effect::Power(
                Power::PowerOff,
                "pv-ctrl POWEROFF_DEVICE: x".into()
            )]
        );
        let r = call(
            &mut ctl,
            h,
            Method::Post,
            "/commands",
            br#"{"op":"REBOOT_DEVICE","payload":""}"#,
        );
        assert_eq!(r.status, 503);
        assert_eq!(r.headers, vec![("Retry-After", "120".to_string())]);

        assert_eq!(
            call(&mut ctl, h, Method::Put, "/user-meta/a", b"plain").status,
            200
        );
        assert_eq!(
            call(&mut ctl, h, Method::Put, "/user-meta/b", b"[1, 2]").status,
            200
        );
        assert_eq!(
            call(&mut ctl, h, Method::Put, "/user-meta/c", b"").status,
            400
        );
        assert_eq!(
            call(&mut ctl, h, Method::Put, "/user-meta/c", &[b'x'; 4097]).status,
            400
        );
        assert_eq!(
            call(&mut ctl, h, Method::Put, "/user-meta/c", &[b'x'; 4096]).status,
            200
        );
        assert_eq!(
            call(&mut ctl, h, Method::Delete, "/user-meta/c", b"").status,
            200
        );
        let r = call(&mut ctl, h, Method::Get, "/user-meta", b"");
        assert_eq!(text(&r), r#"{"a":"plain","b":[1, 2]}"#);
        let r = call(&mut ctl, h, Method::Delete, "/device-meta/a", b"");
        assert_eq!(
            (r.status, text(&r)),
            (404, r#"{"Error":"Device meta does not exist"}"#.into())
        );
        assert_eq!(
            text(&call(&mut ctl, h, Method::Get, "/device-meta", b"")),
            "{}"
        );
        assert_eq!(
            call(&mut ctl, "app", Method::Get, "/user-meta", b"").status,
            403
        );
    }
}
