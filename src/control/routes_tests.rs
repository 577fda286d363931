use super::*;
use crate::control::Head;
use crate::storage::simfs::SimFs;
use std::cell::RefCell;

thread_local! {
    /// What the routes asked the device in this test, and the refusal it answers with.
    static ASKED: RefCell<Vec<Ask>> = const { RefCell::new(Vec::new()) };
    static REFUSE: RefCell<Option<Refusal>> = const { RefCell::new(None) };
}

/// The device as the routes see it: records each request; admission is the device's and is
/// tested there (device/tests.rs), here only what the routes make of its answers.
struct Rec;

impl DeviceApi for Rec {
    fn request(&mut self, r: Ask) -> Result<Answer, Refusal> {
        let gc = r == Ask::Gc;
        ASKED.with(|a| a.borrow_mut().push(r));
        match REFUSE.with(|x| x.borrow().clone()) {
            Some(refusal) => Err(refusal),
            None if gc => Ok(Answer::Deferred(7)),
            None => Ok(Answer::Ok),
        }
    }
}

fn asked() -> Vec<Ask> {
    ASKED.with(|a| std::mem::take(&mut *a.borrow_mut()))
}

fn refuse(r: Option<Refusal>) {
    REFUSE.with(|x| *x.borrow_mut() = r);
}

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
            chunked: false,
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
        Plan::Stream(mut sink, limit) => {
            assert!(body.len() as u64 <= limit);
            // in pieces, as the server hands them over
            for chunk in body.chunks(7) {
                if let Err(resp) = sink.write(chunk) {
                    return resp;
                }
            }
            sink.finish()
        }
        // the device answers later (tests/defects.rs, tests/pvctrl.rs): a 202 stands for it here
        Plan::Defer { ticket, limit_ms } => {
            assert_eq!(limit_ms, GC_WAIT_MS);
            Response::json(202, format!("{{\"ticket\":{ticket}}}"))
        }
    }
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

#[test]
fn privileges_routes_and_json_shapes() {
    let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
    let mut ctl = ctl_on(&cfg, &fs, &st);
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
    assert!(
        text(&r).contains(
            r#"{"name":"root","status_goal":"STARTED","restart_policy":"system","status":"READY"}"#
        ),
        "{}",
        text(&r)
    );
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
        r#"[{"name":"hwrngd","pid":0,"respawn":true}]"#
    );
}

const HOST_NAME: &str = crate::control::HOST;

#[test]
fn signal_ready_is_handed_to_the_device() {
    let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
    let mut ctl = ctl_on(&cfg, &fs, &st);
    let ready = br#"{"type":"ready","payload":""}"#;
    let r = call(&mut ctl, "app", Method::Post, "/signal", b"{bad");
    assert_eq!(r.status, 400);
    let r = call(
        &mut ctl,
        "app",
        Method::Post,
        "/signal",
        br#"{"type":"alive","payload":""}"#,
    );
    assert_eq!(r.status, 500);
    assert!(asked().is_empty(), "only ready reaches the device");
    let r = call(&mut ctl, "app", Method::Post, "/signal", ready);
    assert_eq!(r.status, 200);
    assert_eq!(asked(), vec![Ask::Ready("app".into())]);
    refuse(Some(Refusal::SignalUnexpected));
    let r = call(&mut ctl, "mgr", Method::Post, "/signal", ready);
    assert_eq!(
        (r.status, text(&r)),
        (
            500,
            r#"{"Error":"Signal not expected from this platform"}"#.to_string()
        )
    );
    assert_eq!(asked(), vec![Ask::Ready("mgr".into())]);
}

#[test]
fn commands_and_meta() {
    let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
    let mut ctl = ctl_on(&cfg, &fs, &st);
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
    assert!(
        asked().is_empty(),
        "malformed commands never reach the device"
    );
    refuse(Some(Refusal::UpdateActive));
    let r = call(
        &mut ctl,
        h,
        Method::Post,
        "/commands",
        br#"{"op":"REBOOT_DEVICE","payload":""}"#,
    );
    assert_eq!(r.status, 503);
    refuse(None);
    asked();
    let r = call(
        &mut ctl,
        h,
        Method::Post,
        "/commands",
        br#"{"op":"POWEROFF_DEVICE","payload":"x"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        asked(),
        vec![Ask::Power(
            Power::PowerOff,
            "pv-ctrl POWEROFF_DEVICE: x".into()
        )]
    );
    refuse(Some(Refusal::Busy));
    let r = call(
        &mut ctl,
        h,
        Method::Post,
        "/commands",
        br#"{"op":"REBOOT_DEVICE","payload":""}"#,
    );
    assert_eq!(r.status, 503);
    assert_eq!(r.headers, vec![("Retry-After", "120".to_string())]);
    refuse(None);

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

/// A file system whose every file write fails with ENOSPC.
struct FullFs(SimFs);

struct FullWriter;

impl std::io::Write for FullWriter {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::from_raw_os_error(28))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Fs for FullFs {
    fn read(&self, p: &std::path::Path) -> std::io::Result<Vec<u8>> {
        self.0.read(p)
    }
    fn open(&self, p: &std::path::Path) -> std::io::Result<Box<dyn std::io::Read + '_>> {
        self.0.open(p)
    }
    fn metadata(&self, p: &std::path::Path) -> std::io::Result<crate::storage::fs::Meta> {
        self.0.metadata(p)
    }
    fn read_dir(&self, p: &std::path::Path) -> std::io::Result<Vec<String>> {
        self.0.read_dir(p)
    }
    fn read_link(&self, p: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
        self.0.read_link(p)
    }
    fn create_dir(&self, p: &std::path::Path) -> std::io::Result<()> {
        self.0.create_dir(p)
    }
    fn create(&self, p: &std::path::Path) -> std::io::Result<crate::storage::fs::FsWriter<'_>> {
        drop(self.0.create(p)?);
        Ok(Box::new(FullWriter))
    }
    fn sync_file(&self, p: &std::path::Path) -> std::io::Result<()> {
        self.0.sync_file(p)
    }
    fn sync_dir(&self, p: &std::path::Path) -> std::io::Result<()> {
        self.0.sync_dir(p)
    }
    fn rename(&self, a: &std::path::Path, b: &std::path::Path) -> std::io::Result<()> {
        self.0.rename(a, b)
    }
    fn hard_link(&self, a: &std::path::Path, b: &std::path::Path) -> std::io::Result<()> {
        self.0.hard_link(a, b)
    }
    fn symlink(&self, a: &std::path::Path, b: &std::path::Path) -> std::io::Result<()> {
        self.0.symlink(a, b)
    }
    fn remove_file(&self, p: &std::path::Path) -> std::io::Result<()> {
        self.0.remove_file(p)
    }
    fn remove_dir(&self, p: &std::path::Path) -> std::io::Result<()> {
        self.0.remove_dir(p)
    }
}

/// A router over `fs` with every container STARTED; streamed bodies go to the real file system.
fn ctl_on<'a>(cfg: &'a Config, fs: &'a dyn Fs, st: &'a State) -> Ctl<'a> {
    Ctl {
        cfg,
        fs,
        stream_fs: &crate::storage::fs::RealFs,
        state: st,
        ctrs: views(st, Status::Started),
        rev: "1",
        dev: Box::leak(Box::new(Rec)),
        meta_changed: vec![],
        own_meta: Box::leak(Box::default()),
        daemons: Box::leak(
            crate::device::daemons::Daemons::new(
                crate::device::daemons::TABLE,
                crate::config::InitMode::Standalone,
            )
            .views()
            .into_boxed_slice(),
        ),
        modules: Box::leak(Box::default()),
        storage_busy: false,
        busy: vec!["1".into()],
        update_active: false,
        pvs: Box::leak(Box::new(
            std::sync::Arc::new(crate::pvs::Policy::disabled()),
        )),
    }
}

/// Revision `rev` with a state JSON in the storage of `fs`.
fn put_state(cfg: &Config, fs: &dyn Fs, rev: &str) {
    let st = Storage::new(fs, cfg.storage_mntpoint());
    let p = st.state_path(rev).unwrap();
    crate::storage::fs::create_dir_all(fs, p.parent().unwrap()).unwrap();
    crate::storage::fs::write_atomic(fs, &p, MINI.as_bytes()).unwrap();
}

/// The same, with streamed bodies on `fs` too.
fn ctl<'a>(cfg: &'a Config, fs: &'static dyn Fs, st: &'a State) -> Ctl<'a> {
    Ctl {
        stream_fs: fs,
        ..ctl_on(cfg, fs, st)
    }
}

const MINI: &str =
    r##"{"#spec":"pantavisor-service-system@1","bsp/run.json":{"linux":"k","initrd":"i"}}"##;

#[test]
fn utc_dates() {
    assert_eq!(utc_date(0), "1970-01-01T00:00:00Z");
    assert_eq!(utc_date(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(utc_date(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(utc_date(1_709_251_199), "2024-02-29T23:59:59Z");
    assert_eq!(utc_date(4_102_444_800), "2100-01-01T00:00:00Z");
    assert_eq!(utc_date(-1), "1969-12-31T23:59:59Z");
}

/// Uploads and GC are serialized: while a GC runs or is queued, PUT /objects waits (503), and
/// an upload under way is counted for the device, which then refuses a GC.
#[test]
fn uploads_wait_for_a_gc_and_are_counted_for_it() {
    let (cfg, st) = (Config::new(), state());
    let fs: &'static SimFs = Box::leak(Box::new(SimFs::new()));
    let mut ctl = ctl(&cfg, fs, &st);
    let data = b"an object uploaded while a GC runs";
    let path = format!("/objects/{}", crate::storage::objects::sha256_hex(data));
    ctl.storage_busy = true;
    let r = call(&mut ctl, HOST_NAME, Method::Put, &path, data);
    assert_eq!(r.status, 503);
    assert_eq!(r.headers, vec![("Retry-After", "10".to_string())]);
    ctl.storage_busy = false;
    let r = req(HOST_NAME, Method::Put, &path, data.len() as u64);
    let Plan::Stream(sink, _) = ctl.head(&r) else {
        panic!("PUT /objects must stream")
    };
    // other tests of this binary may upload at the same time: at least this one counts
    assert!(uploads_in_flight() >= 1);
    drop(sink);
}

#[test]
fn objects_list_get_and_put() {
    let (cfg, st) = (Config::new(), state());
    let fs: &'static SimFs = Box::leak(Box::new(SimFs::new()));
    let mut ctl = ctl(&cfg, fs, &st);
    let h = HOST_NAME;
    let r = call(&mut ctl, h, Method::Get, "/objects", b"");
    assert_eq!((r.status, text(&r)), (200, "[]".into()));
    let data = b"hello object, in more than one chunk";
    let sha = crate::storage::objects::sha256_hex(data);
    let path = format!("/objects/{sha}");
    let r = call(&mut ctl, h, Method::Get, &path, b"");
    assert_eq!(
        (r.status, text(&r)),
        (404, r#"{"Error":"Resource does not exist"}"#.into())
    );
    // a mismatch: 422, nothing stored, no temp left
    let r = call(&mut ctl, h, Method::Put, &path, b"other content");
    assert_eq!(
        (r.status, text(&r)),
        (422, r#"{"Error":"Object has bad checksum"}"#.into())
    );
    assert_eq!(
        fs.read_dir(std::path::Path::new("/storage/objects"))
            .unwrap_or_default(),
        Vec::<String>::new()
    );
    assert_eq!(call(&mut ctl, h, Method::Put, &path, data).status, 200);
    // present: drained, 200 (even with a body that would not match)
    assert_eq!(call(&mut ctl, h, Method::Put, &path, b"junk").status, 200);
    let r = call(&mut ctl, h, Method::Get, &path, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/octet-stream");
    assert_eq!(r.body, data);
    let r = call(&mut ctl, h, Method::Get, "/objects", b"");
    assert_eq!(
        text(&r),
        format!(r#"[{{"sha256":"{sha}","size":"{}"}}]"#, data.len())
    );
    for bad in ["/objects/abc", "/objects/..", &path.to_uppercase()[..]] {
        let bad = bad.replace("/OBJECTS/", "/objects/");
        assert_eq!(
            call(&mut ctl, h, Method::Get, &bad, b"").status,
            400,
            "{bad}"
        );
        assert_eq!(
            call(&mut ctl, h, Method::Put, &bad, b"x").status,
            400,
            "{bad}"
        );
    }
    assert_eq!(call(&mut ctl, h, Method::Delete, &path, b"").status, 400);
    assert_eq!(
        call(&mut ctl, "app", Method::Get, "/objects", b"").status,
        403
    );
    // a big object is answered as a file the server streams
    let big = vec![7u8; (OBJECT_IN_MEMORY + 1) as usize];
    let bsha = crate::storage::objects::sha256_hex(&big);
    let bpath = format!("/objects/{bsha}");
    assert_eq!(call(&mut ctl, h, Method::Put, &bpath, &big).status, 200);
    let r = call(&mut ctl, h, Method::Get, &bpath, b"");
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(r.len(), OBJECT_IN_MEMORY + 1);
    assert_eq!(
        r.file.map(|f| f.0),
        Some(std::path::PathBuf::from(format!("/storage/objects/{bsha}")))
    );
}

#[test]
fn full_disk_gives_507() {
    let (cfg, st) = (Config::new(), state());
    let fs: &'static FullFs = Box::leak(Box::new(FullFs(SimFs::new())));
    let mut ctl = ctl(&cfg, fs, &st);
    let h = HOST_NAME;
    let data = b"data";
    let sha = crate::storage::objects::sha256_hex(data);
    let r = call(&mut ctl, h, Method::Put, &format!("/objects/{sha}"), data);
    assert_eq!(
        (r.status, text(&r)),
        (507, r#"{"Error":"Not enough disk space available"}"#.into())
    );
    assert_eq!(
        fs.read_dir(std::path::Path::new("/storage/objects"))
            .unwrap_or_default(),
        Vec::<String>::new()
    );
    let r = call(&mut ctl, h, Method::Put, "/steps/locals/x", MINI.as_bytes());
    assert_eq!(r.status, 507, "{}", text(&r));
    assert!(
        !crate::storage::fs::exists(fs, std::path::Path::new("/storage/trails/locals/x")).unwrap()
    );
}

#[test]
fn steps_put_get_progress_commitmsg_and_list() {
    let (cfg, st) = (Config::new(), state());
    let fs: &'static SimFs = Box::leak(Box::new(SimFs::new()));
    let mut ctl = ctl(&cfg, fs, &st);
    let h = HOST_NAME;
    assert_eq!(text(&call(&mut ctl, h, Method::Get, "/steps", b"")), "[]");
    let nf = r#"{"Error":"Resource does not exist"}"#;
    for p in [
        "/steps/locals/x",
        "/steps/3",
        "/steps/locals/x/progress",
        "/steps/current",
        "/steps/..",
    ] {
        let r = call(&mut ctl, h, Method::Get, p, b"");
        assert_eq!((r.status, text(&r)), (404, nf.to_string()), "{p}");
    }
    // bad names
    for p in [
        "/steps/locals/.hidden",
        "/steps/03",
        "/steps/x",
        "/steps/locals/a%20b",
    ] {
        let p = p.replace("%20", " ");
        let r = call(&mut ctl, h, Method::Put, &p, MINI.as_bytes());
        assert_eq!(r.status, 400, "{p}");
    }
    // a bad state: 422 with the detail, no revision directory left
    let r = call(
        &mut ctl,
        h,
        Method::Put,
        "/steps/locals/bad",
        br##"{"#spec":"nope"}"##,
    );
    assert_eq!(r.status, 422);
    assert!(
        text(&r).starts_with(r#"{"Error":"Parser: State JSON has bad format: "#),
        "{}",
        text(&r)
    );
    let trails = std::path::Path::new("/storage/trails");
    assert!(!crate::storage::fs::exists(fs, &trails.join("locals/bad")).unwrap());
    // a good one: byte-exact, progress NEW
    let raw = format!("{MINI}\n");
    let r = call(&mut ctl, h, Method::Put, "/steps/locals/x", raw.as_bytes());
    assert_eq!((r.status, text(&r)), (200, String::new()));
    assert_eq!(
        fs.read(&trails.join("locals/x/.pvr/json")).unwrap(),
        raw.as_bytes()
    );
    let r = call(&mut ctl, h, Method::Get, "/steps/locals/x", b"");
    assert_eq!((r.status, r.body.clone()), (200, raw.clone().into_bytes()));
    let r = call(&mut ctl, h, Method::Get, "/steps/locals/x/progress", b"");
    assert_eq!(r.status, 200);
    assert_eq!(
        text(&r),
        r#"{"status":"NEW","status-msg":"Update ready to be run","progress":0,"retries":0}"#
    );
    // commit message
    let cm = "/steps/locals/x/commitmsg";
    assert_eq!(call(&mut ctl, h, Method::Put, cm, b"").status, 400);
    assert_eq!(call(&mut ctl, h, Method::Put, cm, &[b'm'; 257]).status, 400);
    assert_eq!(
        call(&mut ctl, h, Method::Put, "/steps/locals/y/commitmsg", b"m").status,
        404
    );
    assert_eq!(call(&mut ctl, h, Method::Put, cm, &[b'm'; 256]).status, 200);
    assert_eq!(
        call(&mut ctl, h, Method::Put, cm, b"first \"local\"").status,
        200
    );
    assert_eq!(
        fs.read(&trails.join("locals/x/.pv/commitmsg")).unwrap(),
        b"first \"local\""
    );
    // a Hub revision without progress, and the current link
    let s = Storage::new(fs, "/storage");
    s.install_state("0", MINI.as_bytes()).unwrap();
    s.set_current("0").unwrap();
    let r = call(&mut ctl, h, Method::Get, "/steps/current", b"");
    assert_eq!((r.status, text(&r)), (200, MINI.to_string()));
    assert_eq!(
        call(&mut ctl, h, Method::Get, "/steps/0/progress", b"").status,
        404
    );
    let r = call(&mut ctl, h, Method::Get, "/steps", b"");
    assert_eq!(r.status, 200);
    let t = text(&r);
    let v = json::parse_str(&t, json::Limits::default()).unwrap();
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2, "{t}");
    let names: Vec<&str> = arr
        .iter()
        .map(|s| s.get("name").unwrap().as_str().unwrap())
        .collect();
    assert_eq!(names, ["0", "locals/x"], "{t}");
    let date = arr[0].get("date").unwrap().as_str().unwrap();
    let mtime = fs.metadata(&trails.join("0")).unwrap().mtime;
    assert_eq!(date, utc_date(mtime));
    assert_eq!(date.len(), 20);
    assert!(t.contains(r#"{"name":"0","date":""#), "{t}");
    assert!(t.contains(r#","commitmsg":"","progress":{}}"#), "{t}");
    assert!(
        t.contains(r#""commitmsg":"first \"local\"","progress":{"status":"NEW","status-msg":"Update ready to be run","progress":0,"retries":0}}"#),
        "{t}"
    );
    // containers upload locals only (a Hub step is the host's Hub client's); other methods
    // refused
    assert_eq!(
        call(&mut ctl, "mgr", Method::Put, "/steps/0", MINI.as_bytes()).status,
        403
    );
    assert_eq!(
        call(&mut ctl, h, Method::Put, "/steps/locals/x/progress", b"{}").status,
        400
    );
    assert_eq!(
        call(&mut ctl, h, Method::Delete, "/steps/locals/x", b"").status,
        400
    );
    assert_eq!(
        call(&mut ctl, h, Method::Get, "/steps/locals/x/nope", b"").status,
        400
    );
    assert_eq!(
        call(&mut ctl, "app", Method::Get, "/steps", b"").status,
        403
    );
    // re-upload of a bad state over an existing revision keeps it
    let r = call(&mut ctl, h, Method::Put, "/steps/locals/x", b"[]");
    assert_eq!(r.status, 422);
    assert_eq!(
        fs.read(&trails.join("locals/x/.pvr/json")).unwrap(),
        raw.as_bytes()
    );
}

fn post_cmd(ctl: &mut Ctl, body: &str) -> Response {
    call(ctl, HOST_NAME, Method::Post, "/commands", body.as_bytes())
}

#[test]
fn update_commands_are_handed_to_the_device_and_its_refusals_answered() {
    let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
    for rev in ["locals/a", "locals/b", "1"] {
        put_state(&cfg, &fs, rev);
    }
    let mut ctl = ctl_on(&cfg, &fs, &st);
    // issue 6: a revision never put is refused here, so nothing of it is made
    for op in ["LOCAL_RUN", "LOCAL_RUN_COMMIT", "MAKE_FACTORY"] {
        let r = post_cmd(
            &mut ctl,
            &format!(r#"{{"op":"{op}","payload":"locals/nonexistent"}}"#),
        );
        assert_eq!(
            (r.status, text(&r)),
            (404, r#"{"Error":"Revision does not exist"}"#.into()),
            "{op}"
        );
    }
    assert!(asked().is_empty());
    assert!(!crate::storage::fs::exists(
        &fs,
        &Storage::new(&fs, cfg.storage_mntpoint())
            .trail_dir("locals/nonexistent")
            .unwrap()
    )
    .unwrap());
    // no revision name: bad format
    let r = post_cmd(&mut ctl, r#"{"op":"LOCAL_RUN","payload":"../x"}"#);
    assert_eq!(r.status, 400);
    assert!(asked().is_empty());
    let r = post_cmd(&mut ctl, r#"{"op":"LOCAL_RUN","payload":"locals/a"}"#);
    assert_eq!(r.status, 200);
    let r = post_cmd(
        &mut ctl,
        r#"{"op":"LOCAL_RUN_COMMIT","payload":"locals/b"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        post_cmd(&mut ctl, r#"{"op":"RUN_GC","payload":""}"#).status,
        200
    );
    // MAKE_FACTORY of "" is the running revision
    assert_eq!(
        post_cmd(&mut ctl, r#"{"op":"MAKE_FACTORY","payload":""}"#).status,
        200
    );
    assert_eq!(
        asked(),
        vec![
            Ask::Command(Command::LocalRun {
                rev: "locals/a".into(),
                commit: false
            }),
            Ask::Command(Command::LocalRun {
                rev: "locals/b".into(),
                commit: true
            }),
            Ask::Command(Command::RunGc),
            Ask::Command(Command::MakeFactory { rev: "1".into() }),
        ]
    );
    // the device's refusals, as upstream answers them
    for (refusal, status, retry) in [
        (Refusal::Busy, 503, Some("120")),
        (Refusal::UpdateActive, 503, Some("600")),
        (Refusal::NoBootEnv("bad uboot.txt".into()), 409, None),
        (Refusal::FactoryInUse, 409, None),
    ] {
        refuse(Some(refusal.clone()));
        let r = post_cmd(&mut ctl, r#"{"op":"MAKE_FACTORY","payload":"locals/a"}"#);
        assert_eq!(r.status, status, "{refusal:?}");
        let want: Vec<(&str, String)> = retry
            .map(|s| ("Retry-After", s.to_string()))
            .into_iter()
            .collect();
        assert_eq!(r.headers, want, "{refusal:?}");
        // issue 12: no host detail (a path) reaches the caller
        assert!(!text(&r).contains("uboot.txt"), "{}", text(&r));
    }
    refuse(None);
    asked();
    ctl.rev = "0";
    assert_eq!(
        post_cmd(&mut ctl, r#"{"op":"MAKE_FACTORY","payload":""}"#).status,
        409
    );
    assert!(asked().is_empty());
}

#[test]
fn commands_without_a_hub_or_a_debug_shell() {
    let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
    let mut ctl = ctl_on(&cfg, &fs, &st);
    for (op, code) in [("UNCLAIM", 204), ("TRY_ONCE", 200), ("LOCAL_APPLY", 200)] {
        let r = post_cmd(&mut ctl, &format!(r#"{{"op":"{op}","payload":""}}"#));
        assert_eq!(r.status, code, "{op}");
    }
    assert!(asked().is_empty());
    // queued as upstream queues them (one command slot: 503 while busy)
    for (op, payload) in [
        ("ENABLE_SSH", ""),
        ("DISABLE_SSH", ""),
        ("DEFER_REBOOT", "120"),
    ] {
        let r = post_cmd(
            &mut ctl,
            &format!(r#"{{"op":"{op}","payload":"{payload}"}}"#),
        );
        assert_eq!(r.status, 200, "{op}");
    }
    assert_eq!(
        asked(),
        vec![
            Ask::Command(Command::DebugSsh(true)),
            Ask::Command(Command::DebugSsh(false)),
            Ask::Command(Command::DeferReboot("120".into())),
        ]
    );
    // DEFER_REBOOT without a debug shell: upstream's 409
    let mut cfg = Config::new();
    cfg.set(crate::config::Level::PvConfFile, "PV_DEBUG_SHELL", "0")
        .unwrap();
    let mut ctl = ctl_on(&cfg, &fs, &st);
    let r = post_cmd(&mut ctl, r#"{"op":"DEFER_REBOOT","payload":"120"}"#);
    assert_eq!(r.status, 409);
    assert!(asked().is_empty());
}

/// Issue 4: drivers, daemons and wakelocks as upstream's status-codes and daemons tests
/// assert them.
#[test]
fn drivers_daemons_and_wakelocks() {
    let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
    let mut ctl = ctl_on(&cfg, &fs, &st);
    let h = HOST_NAME;
    for path in [
        "/drivers/load",
        "/drivers/unload",
        "/drivers/x/load",
        "/drivers/x/unload",
    ] {
        // the host and mgr have no manual drivers: nothing to do, 200
        for who in [h, "mgr"] {
            let r = call(&mut ctl, who, Method::Put, path, b"");
            assert_eq!(r.status, 200, "{who} {path}: {}", text(&r));
        }
        assert_eq!(call(&mut ctl, h, Method::Get, path, b"").status, 400);
    }
    let r = call(
        &mut ctl,
        h,
        Method::Put,
        "/daemons/nonexistent-daemon",
        br#"{"action":"stop"}"#,
    );
    assert_eq!(
        (r.status, text(&r)),
        (404, r#"{"Error":"Daemon not found"}"#.into())
    );
    assert!(asked().is_empty());
    let put = |ctl: &mut Ctl, action: &str| {
        let body = format!(r#"{{"action":"{action}"}}"#);
        call(ctl, h, Method::Put, "/daemons/hwrngd", body.as_bytes())
    };
    assert_eq!(put(&mut ctl, "stop").status, 200);
    assert_eq!(asked(), vec![Ask::Daemon("hwrngd".into(), false)]);
    refuse(Some(Refusal::UnknownDaemon));
    let r = put(&mut ctl, "start");
    assert_eq!(r.status, 404);
    refuse(None);
    asked();
    let r = call(&mut ctl, h, Method::Get, "/wakelocks", b"");
    assert_eq!(
        (r.status, text(&r)),
        (200, r#"{"mode":"disabled","count":0,"degraded":false,"autosleep":false,"settling":false,"polling":false,"run_window":false,"held":{"boot":false,"update":false,"update_check":false,"devmeta":false,"usrmeta":false,"shutdown":false,"debug_shell":false,"poll":false}}"#.into())
    );
}

/// A container's manual drivers: listed with type and status; loading one that drivers.json
/// does not define is upstream's 400.
#[test]
fn manual_drivers_of_the_caller() {
    let d = r##"{"#spec":"pantavisor-service-system@1","bsp/run.json":{"linux":"k","initrd":"i"},"bsp/drivers.json":{"#spec":"driver-aliases@1","all":{"wifi":["pv_test_no_such_module debug=${user-meta:wifi.debug}"]}},"mgr/run.json":{"name":"mgr","type":"lxc","drivers":{"required":["nope"],"manual":["wifi","ghost"]}}}"##;
    let st = State::parse(d.as_bytes()).unwrap();
    let (cfg, fs) = (Config::new(), SimFs::new());
    let mut ctl = ctl_on(&cfg, &fs, &st);
    let r = call(&mut ctl, "mgr", Method::Get, "/drivers", b"");
    assert_eq!(
        text(&r),
        r#"[{"name":"nope","type":"REQUIRED","status":"UNKNOWN"},{"name":"wifi","type":"MANUAL","status":"UNLOADED"},{"name":"ghost","type":"MANUAL","status":"UNKNOWN"}]"#
    );
    // the empty module index has no such module: the load fails
    let r = call(&mut ctl, "mgr", Method::Put, "/drivers/load", b"");
    assert_eq!(
        (r.status, text(&r)),
        (400, r#"{"Error":"Error loading drivers"}"#.into())
    );
    let r = call(&mut ctl, "mgr", Method::Put, "/drivers/wifi/load", b"");
    assert_eq!(
        (r.status, text(&r)),
        (400, r#"{"Error":"Error loading driver"}"#.into())
    );
    // a required driver is not the caller's to load
    let r = call(&mut ctl, "mgr", Method::Put, "/drivers/nope/load", b"");
    assert_eq!(r.status, 200);
    // nothing of them is loaded: an unload has nothing to remove
    let r = call(&mut ctl, "mgr", Method::Put, "/drivers/unload", b"");
    assert_eq!(r.status, 200);
}

/// Device-meta shows the device's own keys over what containers stored; issue 12: a key the
/// store cannot hold (its crash-safe write adds `.tmp`) is a 400 naming no host path.
#[test]
fn device_meta_own_keys_and_key_limits() {
    let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
    let mut own = crate::device::meta::OwnMeta::default();
    for (k, v) in [
        ("pantavisor.revision", "0"),
        ("time", r#"{"timeval":{"tv_sec":1}}"#),
        ("pantavisor.status", "STARTING"),
    ] {
        assert!(own.set(k, v.into()));
    }
    assert!(!own.set("time", r#"{"timeval":{"tv_sec":1}}"#.into()));
    assert!(
        own.set("pantavisor.status", "READY".into()),
        "changed, not moved"
    );
    let mut ctl = ctl_on(&cfg, &fs, &st);
    ctl.own_meta = &own;
    let h = HOST_NAME;
    for (k, v) in [("pantavisor.status", "STALE"), ("mine", "x")] {
        let r = call(
            &mut ctl,
            h,
            Method::Put,
            &format!("/device-meta/{k}"),
            v.as_bytes(),
        );
        assert_eq!(r.status, 200);
    }
    let r = call(&mut ctl, h, Method::Get, "/device-meta", b"");
    assert_eq!(
        text(&r),
        r#"{"pantavisor.status":"READY","time":{"timeval":{"tv_sec":1}},"pantavisor.revision":"0","mine":"x"}"#
    );
    let longest = "k".repeat(251);
    let r = call(
        &mut ctl,
        h,
        Method::Put,
        &format!("/user-meta/{longest}"),
        b"v",
    );
    assert_eq!(r.status, 200, "{}", text(&r));
    for n in [252, 255, 300] {
        let key = "k".repeat(n);
        let r = call(&mut ctl, h, Method::Put, &format!("/user-meta/{key}"), b"v");
        assert_eq!(
            (r.status, text(&r)),
            (400, r#"{"Error":"Bad meta key"}"#.into()),
            "{n}"
        );
    }
}

#[test]
fn container_actions_are_handed_to_the_device() {
    let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
    let mut ctl = ctl_on(&cfg, &fs, &st);
    let put = |ctl: &mut Ctl, path: &str, body: &str| {
        call(ctl, HOST_NAME, Method::Put, path, body.as_bytes()).status
    };
    assert_eq!(put(&mut ctl, "/containers/app", r#"{"action":"fly"}"#), 400);
    assert!(asked().is_empty());
    assert_eq!(
        put(&mut ctl, "/containers/app", r#"{"action":"stop"}"#),
        200
    );
    assert_eq!(
        put(&mut ctl, "/containers/app", r#"{"action":"restart"}"#),
        200
    );
    assert_eq!(
        put(&mut ctl, "/containers/app", r#"{"action":"start"}"#),
        200
    );
    assert_eq!(
        asked(),
        vec![
            Ask::Container("app".into(), CtrAction::Stop),
            Ask::Container("app".into(), CtrAction::Restart),
            Ask::Container("app".into(), CtrAction::Start)
        ]
    );
    for (refusal, status) in [
        (Refusal::UnknownContainer, 404),
        (Refusal::NotOurs, 403),
        (Refusal::BadStatus, 400),
    ] {
        refuse(Some(refusal.clone()));
        assert_eq!(
            put(&mut ctl, "/containers/x", r#"{"action":"stop"}"#),
            status,
            "{refusal:?}"
        );
    }
    refuse(None);
    asked();
    // a non-mgmt caller is refused before anything
    let r = call(
        &mut ctl,
        "app",
        Method::Put,
        "/containers/app",
        br#"{"action":"stop"}"#,
    );
    assert_eq!(r.status, 403);
    assert!(asked().is_empty());
}

#[test]
fn config_views_and_storage_gc() {
    let (mut cfg, fs, st) = (Config::new(), SimFs::new(), state());
    cfg.set(
        crate::config::Level::Cmdline,
        "PV_UPDATER_COMMIT_DELAY",
        "7",
    )
    .unwrap();
    let mut ctl = ctl_on(&cfg, &fs, &st);
    let r = call(&mut ctl, HOST_NAME, Method::Get, "/config2", b"");
    assert_eq!(r.status, 200);
    let v = json::parse(&r.body, json::Limits::default()).unwrap();
    let items = v.as_array().unwrap();
    let delay = items
        .iter()
        .find(|i| i.get("key").and_then(|k| k.as_str()) == Some("PV_UPDATER_COMMIT_DELAY"))
        .unwrap();
    assert_eq!(delay.get("value").and_then(|x| x.as_str()), Some("7"));
    assert_eq!(
        delay.get("modified").and_then(|x| x.as_str()),
        Some("pv cmdline")
    );
    let r = call(&mut ctl, HOST_NAME, Method::Get, "/config", b"");
    let v = json::parse(&r.body, json::Limits::default()).unwrap();
    assert_eq!(
        v.get("updater.commit.delay").and_then(|x| x.as_u64()),
        Some(7)
    );
    let r = call(&mut ctl, HOST_NAME, Method::Post, "/storage/gc", b"");
    assert_eq!((r.status, text(&r)), (202, r#"{"ticket":7}"#.to_string()));
    assert_eq!(asked(), vec![Ask::Gc]);
    refuse(Some(Refusal::NoBootEnv("no uboot.txt".into())));
    let r = call(&mut ctl, HOST_NAME, Method::Post, "/storage/gc", b"");
    assert_eq!(r.status, 409);
    // issue 12: the detail (host paths) is the log's, not the caller's
    assert_eq!(
        text(&r),
        r#"{"Error":"Cannot read the boot env, so what must be kept is unknown"}"#
    );
    refuse(Some(Refusal::UpdateActive));
    let r = call(&mut ctl, HOST_NAME, Method::Post, "/storage/gc", b"");
    assert_eq!(r.status, 503);
    assert_eq!(r.headers, vec![("Retry-After", "600".to_string())]);
    refuse(None);
    assert_eq!(
        call(&mut ctl, HOST_NAME, Method::Get, "/storage/gc", b"").status,
        400
    );
}
/// core/legacy-config-overload: the /config view of its command line and environment, and a
/// legacy alias saved as user-meta (the device applies it: device/meta.rs); the values its
/// golden shows that do not come from upstream's shipped config files.
#[test]
fn legacy_config_view_as_upstream_golden() {
    let mut cfg = Config::new();
    cfg.apply_text(
        crate::config::Level::PvConfFile,
        "pantavisor.config",
        "PV_SYSTEM_INIT_MODE=appengine\nPV_LOG_LEVEL=4\n",
    );
    cfg.apply_cmdline("pv_policy=test ph_creds.port=43 ph_metadata.devmeta.interval=15");
    cfg.apply_env([("PV_DEBUG_SSH".to_string(), "0".to_string())]);
    let (fs, st) = (SimFs::new(), state());
    let text = ctl_on(&cfg, &fs, &st).config_json();
    let v = json::parse_str(&text, Default::default()).unwrap();
    let raw = |k: &str| v.get(k).map(|x| x.raw(&text).to_string());
    assert_eq!(raw("system.init.mode").as_deref(), Some("2"));
    assert_eq!(raw("creds.host").as_deref(), Some(r#""api.pantahub.com""#));
    assert_eq!(raw("policy").as_deref(), Some(r#""test""#));
    assert_eq!(raw("creds.port").as_deref(), Some("43"));
    assert_eq!(raw("metadata.devmeta.interval").as_deref(), Some("15"));
    assert_eq!(raw("debug.ssh").as_deref(), Some("false"));
    assert_eq!(raw("log.level").as_deref(), Some("4"));
    crate::device::meta::apply_user_meta(&mut cfg, "log.level", Some(b"5"));
    let text = ctl_on(&cfg, &fs, &st).config_json();
    assert!(text.contains(r#""log.level":5"#), "{text}");
}

/// Issue 12: GO_REMOTE and UPDATE_METADATA with the Hub client built in, as upstream answers
/// them: GO_REMOTE refused by config (409), already remote (204), else queued; UPDATE_METADATA
/// in local mode 409.
#[test]
fn go_remote_and_update_metadata() {
    let (cfg, fs, st) = (Config::new(), SimFs::new(), state());
    let mut ctl = ctl_on(&cfg, &fs, &st);
    for op in ["GO_REMOTE", "UPDATE_METADATA"] {
        let r = post_cmd(&mut ctl, &format!(r#"{{"op":"{op}","payload":""}}"#));
        if cfg!(feature = "hub") {
            assert_eq!(r.status, 200, "{op}");
        } else {
            assert_eq!(
                (r.status, text(&r)),
                (409, format!(r#"{{"Error":"{NO_HUB}"}}"#))
            );
        }
    }
    if !cfg!(feature = "hub") {
        return;
    }
    assert_eq!(
        asked(),
        vec![Ask::Command(Command::GoRemote), Ask::UpdateMetadata]
    );
    // as upstream, a payload's first member becomes a device-meta key
    let r = post_cmd(
        &mut ctl,
        r#"{"op":"UPDATE_METADATA","payload":"{\"pantahub.state\":\"sync\",\"x\":\"y\"}"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(asked(), vec![Ask::UpdateMetadata]);
    assert_eq!(
        ctl.meta_changed,
        vec![(MetaKind::Device, "pantahub.state".to_string())]
    );
    let devmeta = MetaStore::new(&fs, cfg.cache_devmetadir().as_ref());
    assert_eq!(
        devmeta.get("pantahub.state").unwrap(),
        Some(b"sync".to_vec())
    );
    for (refusal, status, body) in [
        (
            Refusal::LocalMode,
            409,
            r#"{"Error":"Cannot do this operation while on local mode"}"#,
        ),
        (Refusal::AlreadyRemote, 204, ""),
    ] {
        refuse(Some(refusal));
        let r = post_cmd(&mut ctl, r#"{"op":"UPDATE_METADATA","payload":""}"#);
        assert_eq!((r.status, text(&r).as_str()), (status, body));
    }
    refuse(None);
    asked();
    let mut cfg = Config::new();
    cfg.set(crate::config::Level::PvConfFile, "PV_CONTROL_REMOTE", "0")
        .unwrap();
    let mut ctl = ctl_on(&cfg, &fs, &st);
    let r = post_cmd(&mut ctl, r#"{"op":"GO_REMOTE","payload":""}"#);
    assert_eq!(
        (r.status, text(&r)),
        (
            409,
            r#"{"Error":"Cannot do this operation when remote mode is disabled by config"}"#.into()
        )
    );
    assert!(asked().is_empty());
}

/// Issue 12: the Hub client's calls -- PUT /steps/<n>, PUT /steps/<n>/progress, REMOTE_RUN --
/// from the host only (upstream's 403 text for a container, mgmt or not), answered with the
/// progress the device wrote.
#[test]
fn hub_client_calls_are_the_hosts_and_answer_progress() {
    let (cfg, st) = (Config::new(), state());
    let fs: &'static SimFs = Box::leak(Box::new(SimFs::new()));
    let mut ctl = ctl(&cfg, fs, &st);
    let forbidden = r#"{"Error":"Request not sent from a mgmt platform"}"#;
    for who in ["mgr", "app"] {
        for (m, p, b) in [
            (Method::Put, "/steps/5", MINI),
            (
                Method::Put,
                "/steps/5/progress",
                r#"{"status":"DOWNLOADING","status-msg":""}"#,
            ),
            (
                Method::Post,
                "/commands",
                r#"{"op":"REMOTE_RUN","payload":"5"}"#,
            ),
        ] {
            let r = call(&mut ctl, who, m, p, b.as_bytes());
            assert_eq!((r.status, text(&r).as_str()), (403, forbidden), "{who} {p}");
        }
    }
    let h = HOST_NAME;
    // not admitted yet: nothing to run, nothing to report on
    let r = post_cmd(&mut ctl, r#"{"op":"REMOTE_RUN","payload":"5"}"#);
    assert_eq!(r.status, 404);
    let report = r#"{"status":"DOWNLOADING","status-msg":"","progress":25}"#;
    let r = call(
        &mut ctl,
        h,
        Method::Put,
        "/steps/5/progress",
        report.as_bytes(),
    );
    assert_eq!(r.status, 404);
    let r = call(&mut ctl, h, Method::Put, "/steps/5", MINI.as_bytes());
    assert_eq!(
        (r.status, text(&r)),
        (
            200,
            r#"{"status":"QUEUED","status-msg":"Downloading update metadata, retry 1 of 10","progress":5,"retries":1}"#.into()
        )
    );
    let r = call(&mut ctl, h, Method::Put, "/steps/5/progress", b"{");
    assert_eq!(r.status, 400);
    let r = call(
        &mut ctl,
        h,
        Method::Put,
        "/steps/5/progress",
        report.as_bytes(),
    );
    assert_eq!(
        (r.status, text(&r)),
        (
            200,
            r#"{"status":"DOWNLOADING","status-msg":"Downloading update artifacts, retry 1 of 10","progress":25,"retries":1}"#.into()
        )
    );
    assert!(asked().is_empty());
    let r = post_cmd(&mut ctl, r#"{"op":"REMOTE_RUN","payload":"5"}"#);
    assert_eq!(r.status, 200);
    assert_eq!(
        asked(),
        vec![Ask::Command(Command::RemoteRun { rev: "5".into() })]
    );
    // the running revision ("1" here) is the device's: 409, nothing changes
    let r = call(&mut ctl, h, Method::Put, "/steps/1", MINI.as_bytes());
    assert_eq!(r.status, 409);
    assert!(Storage::new(fs, cfg.storage_mntpoint())
        .read_progress("1")
        .is_none());
    // another update under way: 503, retry later
    ctl.update_active = true;
    let r = call(&mut ctl, h, Method::Put, "/steps/6", MINI.as_bytes());
    assert_eq!(r.status, 503);
    assert_eq!(r.headers, vec![("Retry-After", "600".to_string())]);
    // a final revision: 409 with its progress; another run refused alike
    ctl.update_active = false;
    let wontgo = br#"{"status":"WONTGO","status-msg":"Space required 52428800 B, available 0 B","progress":100}"#;
    let r = call(&mut ctl, h, Method::Put, "/steps/5/progress", wontgo);
    assert_eq!(r.status, 200);
    let want = r#"{"status":"WONTGO","status-msg":"Space required 52428800 B, available 0 B","progress":100,"retries":1}"#;
    let r = call(&mut ctl, h, Method::Put, "/steps/5", MINI.as_bytes());
    assert_eq!((r.status, text(&r).as_str()), (409, want));
    let r = post_cmd(&mut ctl, r#"{"op":"REMOTE_RUN","payload":"5"}"#);
    assert_eq!((r.status, text(&r).as_str()), (409, want));
    let r = call(
        &mut ctl,
        h,
        Method::Put,
        "/steps/5/progress",
        report.as_bytes(),
    );
    assert_eq!((r.status, text(&r).as_str()), (409, want));
    assert!(asked().is_empty());
    // a state past the parser's value limit, never read back: WONTGO as one that does not parse
    let many = format!("[{}0]", "0,".repeat(70_000));
    let r = call(&mut ctl, h, Method::Put, "/steps/8", many.as_bytes());
    assert_eq!(
        (r.status, text(&r)),
        (
            409,
            r#"{"status":"WONTGO","status-msg":"State JSON has bad format","progress":100,"retries":1}"#.into()
        )
    );
    // REMOTE_RUN names a Hub revision only
    let r = post_cmd(&mut ctl, r#"{"op":"REMOTE_RUN","payload":"locals/a"}"#);
    assert_eq!(r.status, 400);
}
