//! Local updates through pv-ctrl on a real device (root): objects and a step uploaded with
//! `pvcontrol`, LOCAL_RUN, then the harness's bootloader across the reboots. Reboot updates
//! commit (DONE, `pv_rev` advanced, `.pv/done`, hooks run), live updates end UPDATED without
//! touching the other containers, failures end ERROR and the device falls back by itself.
mod harness;
mod rig;
mod support;

use harness::End;
use rig::{finish, sh, Rig, FOREVER, SERIAL};
use std::time::Duration;

/// A BSP (kernel `kernel`), groups root and app, `os` in root, `web` and `app` in app;
/// `web` prints its /etc/motd (a `_config` overlay file) then idles. `extra_app` is merged
/// into app's description.
fn desc(kernel: &str, motd: &str, app_timeout: u32, extra_app: &str) -> String {
    format!(
        r#"{{"bsp":{{"kernel":"{kernel}"}},
 "groups":[{{"name":"root","status_goal":"STARTED","restart_policy":"system","timeout":10}},
           {{"name":"app","status_goal":"STARTED","restart_policy":"container","timeout":{app_timeout}}}],
 "containers":{{
   "os":{{"rootfs":"rootfs","cmd":{idle},"group":"root"}},
   "web":{{"rootfs":"rootfs","cmd":{web},"group":"app","config":{{"etc/motd":"{motd}"}}}},
   "app":{{"rootfs":"rootfs","cmd":{idle},"group":"app"{extra_app}}}}}}}"#,
        idle = sh(FOREVER),
        web = sh(&format!("cat /etc/motd; {FOREVER}")),
    )
}

fn base() -> String {
    desc("k1", "v1", 10, "")
}

fn rig_dir(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pv-ctl-{name}-{}", std::process::id()))
}

/// Boots what the bootloader picks and waits for every container STARTED.
fn boot_started(r: &mut Rig, want: &str) -> std::process::Child {
    let (rev, mut dev) = r.boot_rev();
    assert_eq!(rev, want, "the bootloader booted another revision");
    let up = r.wait(&mut dev, Duration::from_secs(30), &|r, d| {
        ["os", "web", "app"]
            .iter()
            .all(|c| r.status_of(d, c).as_deref() == Some("STARTED"))
    });
    if !up {
        let end = finish(&mut dev);
        panic!("{rev}: not all STARTED ({end:?}); log:\n{}", r.log_of(&rev));
    }
    dev
}

fn wait_progress(r: &Rig, dev: &mut std::process::Child, rev: &str, status: &str) -> bool {
    r.wait(dev, Duration::from_secs(40), &|r, _| {
        r.progress(rev).is_some_and(|(s, _)| s == status)
    })
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

#[test]
fn reboot_update_commits_with_pv_rev_advanced_and_hooks_run() {
    let _g = SERIAL.lock();
    let name = "upd-reboot";
    let dir = rig_dir(name);
    let mut r = Rig::with_config(
        name,
        &base(),
        &format!("PV_SYSTEM_LIBDIR={}/lib\n", dir.display()),
    );
    let hooks = dir.join("lib/pantavisor/pv/hooks/system.d");
    std::fs::create_dir_all(&hooks).unwrap();
    let hook = hooks.join("10-record");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$PV_OP rev=$PV_REV try=$PV_TRY tryboot=$PV_TRYBOOT status=$PV_STATUS\" >> {}/hooks.log\n",
            dir.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut dev = boot_started(&mut r, "0");
    let (objects, state) = r.make_revision("r1", &desc("k2", "v1", 10, ""));
    r.upload(&dev, &objects, &state, "locals/r1");
    assert_eq!(
        r.progress("locals/r1"),
        Some(pair("NEW", "Update ready to be run"))
    );
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run", "locals/r1"]);
    assert_eq!(code, 0, "{out}");
    // a BSP change: installed, pv_try set, and the device reboots by itself
    let end = harness::wait_end(&mut dev, Duration::from_secs(30));
    assert_eq!(end, End::Reboot, "log:\n{}", r.log_of("0"));
    assert_eq!(
        r.progress("locals/r1"),
        Some(pair("INPROGRESS", "Rebooting"))
    );
    assert_eq!(r.env(), (Some("0".into()), Some("locals/r1".into())));

    let mut dev = boot_started(&mut r, "locals/r1");
    let done = wait_progress(&r, &mut dev, "locals/r1", "DONE");
    let log = r.log_of("locals/r1");
    assert!(done, "not committed; log:\n{log}");
    assert_eq!(
        r.progress("locals/r1"),
        Some(pair(
            "DONE",
            "Update finished, revision set as rollback point"
        ))
    );
    assert_eq!(r.env(), (Some("locals/r1".into()), None));
    // progress DONE is written before `.pv/done`: wait for it rather than race it
    let marked = r.wait(&mut dev, Duration::from_secs(5), &|r, _| {
        r.storage.join("trails/locals/r1/.pv/done").exists()
    });
    assert!(marked, "no .pv/done");
    assert_eq!(
        std::fs::read_link(r.storage.join("trails/current")).ok(),
        Some("locals/r1".into())
    );
    assert_eq!(finish(&mut dev), End::PowerOff);
    let hooks_log = std::fs::read_to_string(dir.join("hooks.log")).unwrap_or_default();
    let lines: Vec<&str> = hooks_log.lines().collect();
    assert_eq!(
        lines,
        vec![
            "system-start rev=0 try= tryboot=false status=",
            "system-install-update rev=locals/r1 try= tryboot=false status=INPROGRESS",
            "system-start rev=locals/r1 try=locals/r1 tryboot=true status=",
            "system-boot-done rev=locals/r1 try= tryboot=false status=DONE",
        ],
        "{hooks_log}"
    );
    // the next boot runs the committed revision, nothing to try; MAKE_FACTORY then makes
    // its state revision 0 (unclaimed device) and runs it, committed after a reboot
    let mut dev = boot_started(&mut r, "locals/r1");
    let (code, out) = r.pvcontrol(&dev, &["cmd", "make-factory"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        harness::wait_end(&mut dev, Duration::from_secs(30)),
        End::Reboot
    );
    assert_eq!(
        std::fs::read(r.storage.join("trails/0/.pvr/json")).unwrap(),
        std::fs::read(r.storage.join("trails/locals/r1/.pvr/json")).unwrap()
    );
    assert_eq!(r.env(), (Some("locals/r1".into()), Some("0".into())));
    let mut dev = boot_started(&mut r, "0");
    assert!(wait_progress(&r, &mut dev, "0", "DONE"));
    assert_eq!(r.env(), (Some("0".into()), None));
    assert_eq!(finish(&mut dev), End::PowerOff);
}

#[test]
fn live_update_ends_updated_while_other_containers_keep_their_pids() {
    let _g = SERIAL.lock();
    let mut r = Rig::new("upd-live", &base());
    let mut dev = boot_started(&mut r, "0");
    let before = |c: &str| r.init_pid_of(c);
    let (os, app, web) = (before("os"), before("app"), before("web"));
    assert!(os.is_some() && app.is_some() && web.is_some());
    assert!(r.console_of("0", "web").contains("v1"));

    // only web's _config changes: web restarts, nothing else
    let (objects, state) = r.make_revision("live", &desc("k1", "v2", 10, ""));
    r.upload(&dev, &objects, &state, "locals/live");
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run", "locals/live"]);
    assert_eq!(code, 0, "{out}");
    let updated = wait_progress(&r, &mut dev, "locals/live", "UPDATED");
    let log = r.log_of("0") + &r.log_of("locals/live");
    assert!(updated, "not UPDATED; log:\n{log}");
    assert_eq!(
        r.progress("locals/live").map(|p| p.1),
        Some("Update finished, revision not set as rollback point".into())
    );
    assert_eq!(r.init_pid_of("os"), os, "os was restarted");
    assert_eq!(r.init_pid_of("app"), app, "app was restarted");
    let web_now = r.init_pid_of("web");
    assert!(web_now.is_some() && web_now != web, "web was not restarted");
    assert!(r.console_of("locals/live", "web").contains("v2"), "{log}");
    // 5.5: the boot env is untouched by a live update
    assert_eq!(r.env(), (Some("0".into()), Some("locals/live".into())));
    assert!(!r.storage.join("trails/locals/live/.pv/done").exists());
    assert_eq!(
        std::fs::read_link(r.storage.join("trails/current")).ok(),
        Some("locals/live".into())
    );

    // 3.7: a container app can be stopped and started; a system one cannot
    let (code, _) = r.pvcontrol(&dev, &["containers", "stop", "app"]);
    assert_eq!(code, 0);
    assert!(r.wait(&mut dev, Duration::from_secs(15), &|r, d| {
        r.status_of(d, "app").as_deref() == Some("STOPPED")
    }));
    let (code, out) = r.pvcontrol(&dev, &["ls"]);
    assert!(
        code == 0 && out.contains(r#""user_stopped":"true""#),
        "{out}"
    );
    let (code, _) = r.pvcontrol(&dev, &["containers", "start", "app"]);
    assert_eq!(code, 0);
    assert!(r.wait(&mut dev, Duration::from_secs(15), &|r, d| {
        r.status_of(d, "app").as_deref() == Some("STARTED")
    }));
    let (code, out) = r.pvcontrol(&dev, &["containers", "stop", "os"]);
    assert_ne!(code, 0, "{out}");
    assert_eq!(r.status_of(&dev, "os").as_deref(), Some("STARTED"));
    assert_eq!(finish(&mut dev), End::PowerOff);

    // the next boot tries the UPDATED revision and commits it
    let mut dev = boot_started(&mut r, "locals/live");
    assert!(wait_progress(&r, &mut dev, "locals/live", "DONE"));
    assert_eq!(r.env(), (Some("locals/live".into()), None));
    assert_eq!(finish(&mut dev), End::PowerOff);
}

/// Uploads `description` as `rev`, runs it, and follows the reboots until the device runs
/// revision 0 again; returns the revisions booted.
fn failing_update(r: &mut Rig, rev: &str, description: &str) -> Vec<String> {
    let mut dev = boot_started(r, "0");
    let (objects, state) = r.make_revision(rev.trim_start_matches("locals/"), description);
    r.upload(&dev, &objects, &state, rev);
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run", rev]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        harness::wait_end(&mut dev, Duration::from_secs(30)),
        End::Reboot
    );
    let mut booted = vec![];
    for _ in 0..3 {
        let (b, mut dev) = r.boot_rev();
        booted.push(b.clone());
        if b == "0" {
            let up = r.wait(&mut dev, Duration::from_secs(30), &|r, d| {
                r.status_of(d, "app").as_deref() == Some("STARTED") && r.env().1.is_none()
            });
            assert!(up, "fallback boot did not settle; log:\n{}", r.log_of("0"));
            assert_eq!(finish(&mut dev), End::PowerOff);
            return booted;
        }
        let end = harness::wait_end(&mut dev, Duration::from_secs(60));
        assert_eq!(end, End::Reboot, "log:\n{}", r.log_of(&b));
    }
    panic!("never fell back: {booted:?}");
}

#[test]
fn a_container_that_exits_at_once_ends_error_and_the_device_falls_back() {
    let _g = SERIAL.lock();
    let mut r = Rig::new("upd-fail", &base());
    let bad = desc("k2", "v1", 10, "")
        .replace(&sh(FOREVER), &sh("exit 3"))
        .replace(
            r#""group":"app"}"#,
            r#""group":"app","auto_recovery":{"policy":"no"}}"#,
        );
    let booted = failing_update(&mut r, "locals/bad", &bad);
    assert_eq!(booted, vec!["locals/bad", "0"]);
    assert_eq!(
        r.progress("locals/bad"),
        Some(pair("ERROR", "A container could not be started"))
    );
    assert_eq!(r.env(), (Some("0".into()), None));
    // the update's ERROR lines are in its progress
    let raw = std::fs::read_to_string(r.storage.join("trails/locals/bad/.pv/progress")).unwrap();
    assert!(raw.contains(r#""logs":"#), "{raw}");
    // each failure once: the same ERROR (timestamps aside) twice is a failure logged twice
    let v = pantavisor::json::parse(raw.as_bytes(), pantavisor::json::Limits::default()).unwrap();
    let logs = v.get("logs").and_then(|l| l.as_str()).unwrap_or_default();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(r#""lvl":"ERROR""#))
        .filter_map(|l| l.split_once(r#""platform""#).map(|(_, rest)| rest))
        .collect();
    assert!(!lines.is_empty(), "{logs}");
    let mut seen = std::collections::BTreeSet::new();
    for l in &lines {
        assert!(seen.insert(*l), "logged twice: {l}\n{logs}");
    }
}

/// A container whose init cannot be exec'd: the update's ERROR lines are upstream's verdict,
/// once (the engine's error was logged a second time by the device, so it landed twice); the
/// engine's reason is in the revision's log as a WARN, once per container (upstream: LXC's log).
#[test]
fn a_container_that_cannot_start_is_logged_once_and_rolls_back() {
    let _g = SERIAL.lock();
    let mut r = Rig::new("upd-noexec", &base());
    let bad = desc("k2", "v1", 10, "").replace(&sh(FOREVER), r#"["/nonexistent-init"]"#);
    let booted = failing_update(&mut r, "locals/noexec", &bad);
    assert_eq!(booted, vec!["locals/noexec", "0"]);
    assert_eq!(
        r.progress("locals/noexec"),
        Some(pair("ERROR", "A container could not be started"))
    );
    let raw = std::fs::read_to_string(r.storage.join("trails/locals/noexec/.pv/progress")).unwrap();
    let v = pantavisor::json::parse(raw.as_bytes(), pantavisor::json::Limits::default()).unwrap();
    let logs = v.get("logs").and_then(|l| l.as_str()).unwrap_or_default();
    let errors: Vec<(String, String)> = logs
        .lines()
        .filter_map(|l| pantavisor::json::parse(l.as_bytes(), Default::default()).ok())
        .filter(|v| v.get("lvl").and_then(|x| x.as_str()) == Some("ERROR"))
        .map(|v| {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
            (field("src"), field("msg"))
        })
        .collect();
    assert_eq!(errors.len(), 2, "{logs}");
    let (src, msg) = &errors[0];
    assert_eq!(src, "state", "{logs}");
    assert!(
        msg == "platform 'os' is not running" || msg == "platform 'app' is not running",
        "{logs}"
    );
    assert_eq!(
        errors[1],
        (
            "controller".to_string(),
            "a platform did not work as expected. Tearing down...".to_string()
        )
    );
    let log = r.log_of("locals/noexec");
    for c in ["os", "app"] {
        let reason = format!("WARN\t -- [container]: container {c}: exec /nonexistent-init");
        assert!(log.matches(&reason).count() <= 1, "{reason} twice:\n{log}");
    }
    assert!(
        log.contains("exec /nonexistent-init: No such file"),
        "{log}"
    );
}

#[test]
fn a_failing_live_update_rolls_back_through_two_reboots() {
    let _g = SERIAL.lock();
    let mut r = Rig::new("upd-livefail", &base());
    // only web changes (live), and it now exits at once without recovery
    let bad = base().replace(
        &format!(
            r#""web":{{"rootfs":"rootfs","cmd":{}"#,
            sh(&format!("cat /etc/motd; {FOREVER}"))
        ),
        &format!(
            r#""web":{{"rootfs":"rootfs","auto_recovery":{{"policy":"no"}},"cmd":{}"#,
            sh("exit 4")
        ),
    );
    assert_ne!(bad, base());
    let mut dev = boot_started(&mut r, "0");
    let (objects, state) = r.make_revision("livefail", &bad);
    r.upload(&dev, &objects, &state, "locals/livefail");
    assert_eq!(r.pvcontrol(&dev, &["cmd", "run", "locals/livefail"]).0, 0);
    // live: the device stays up until web fails, then reboots to roll back
    let end = harness::wait_end(&mut dev, Duration::from_secs(30));
    assert_eq!(end, End::Reboot, "log:\n{}", r.log_of("locals/livefail"));
    assert_eq!(
        r.progress("locals/livefail"),
        Some(pair("ERROR", "A container could not be started"))
    );
    // 5.5: pv_try still names it, so the bootloader tries it once; the boot refuses it
    // (trying a failed revision) and the next one falls back
    let mut booted = vec![];
    loop {
        let (b, mut dev) = r.boot_rev();
        booted.push(b.clone());
        if b == "0" {
            assert!(r.wait(&mut dev, Duration::from_secs(30), &|r, _| r
                .env()
                .1
                .is_none()));
            assert_eq!(finish(&mut dev), End::PowerOff);
            break;
        }
        assert_eq!(
            harness::wait_end(&mut dev, Duration::from_secs(30)),
            End::Reboot
        );
        assert!(booted.len() < 3, "{booted:?}");
    }
    assert_eq!(booted, vec!["locals/livefail", "0"]);
    assert_eq!(r.env(), (Some("0".into()), None));
}

#[test]
fn refused_updates_end_wontgo_and_the_device_runs_on() {
    let _g = SERIAL.lock();
    let mut r = Rig::with_config("upd-wontgo", &base(), "PV_REVISION_RETRIES=2\n");
    let mut dev = boot_started(&mut r, "0");
    // a state whose objects were never uploaded
    let (_objects, state) = r.make_revision("noobj", &desc("k9", "v9", 10, ""));
    let (code, out) = r.pvcontrol(
        &dev,
        &["steps", "put", state.to_str().unwrap(), "locals/noobj"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(r.pvcontrol(&dev, &["cmd", "run", "locals/noobj"]).0, 0);
    assert!(wait_progress(&r, &mut dev, "locals/noobj", "WONTGO"));
    assert_eq!(
        r.progress("locals/noobj").map(|p| p.1),
        Some("Internal error".into())
    );
    // a revision that keeps being processed: PV_REVISION_RETRIES bounds it
    let (objects, state) = r.make_revision("again", &desc("k1", "v1", 10, ""));
    r.upload(&dev, &objects, &state, "locals/again");
    let p = r.storage.join("trails/locals/again/.pv/progress");
    std::fs::write(
        &p,
        r#"{"status":"QUEUED","status-msg":"Retried 1 of 2","progress":5,"retries":1}"#,
    )
    .unwrap();
    assert_eq!(r.pvcontrol(&dev, &["cmd", "run", "locals/again"]).0, 0);
    assert!(wait_progress(&r, &mut dev, "locals/again", "WONTGO"));
    assert_eq!(
        r.progress("locals/again").map(|p| p.1),
        Some("Max update processing retries reached".into())
    );
    // nothing was tried: the device still runs 0, all up
    assert_eq!(r.env(), (Some("0".into()), None));
    assert_eq!(r.status_of(&dev, "app").as_deref(), Some("STARTED"));
    assert_eq!(finish(&mut dev), End::PowerOff);
}

#[test]
fn run_commit_forces_a_reboot_where_a_live_update_would_do() {
    let _g = SERIAL.lock();
    let mut r = Rig::new("upd-runcommit", &base());
    let mut dev = boot_started(&mut r, "0");
    // only web's _config changes: LOCAL_RUN would go live, LOCAL_RUN_COMMIT reboots
    let (objects, state) = r.make_revision("rc", &desc("k1", "v3", 10, ""));
    r.upload(&dev, &objects, &state, "locals/rc");
    let (code, out) = r.pvcontrol(&dev, &["cmd", "run-commit", "locals/rc"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        harness::wait_end(&mut dev, Duration::from_secs(30)),
        End::Reboot
    );
    assert_eq!(
        r.progress("locals/rc"),
        Some(pair("INPROGRESS", "Rebooting"))
    );
    let mut dev = boot_started(&mut r, "locals/rc");
    assert!(wait_progress(&r, &mut dev, "locals/rc", "DONE"));
    assert_eq!(r.env(), (Some("locals/rc".into()), None));
    assert_eq!(finish(&mut dev), End::PowerOff);
}
