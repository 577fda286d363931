use super::*;
use std::os::unix::fs::PermissionsExt;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pv-hooks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("pantavisor/pv/hooks/system.d")).unwrap();
    d
}

fn hook(lib: &Path, name: &str, body: &str, exec: bool) {
    let p = lib.join("pantavisor/pv/hooks/system.d").join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mode = if exec { 0o755 } else { 0o644 };
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn env() -> Env {
    Env::new(
        &BootEnv {
            rev: Some("1".into()),
            try_rev: Some("2".into()),
        },
        "2",
        "INPROGRESS",
    )
}

#[test]
fn hooks_run_in_name_order_with_the_pv_environment() {
    let lib = tmp("order");
    let out = lib.join("out");
    let o = out.display();
    hook(&lib, "20-b", &format!("echo b $PV_OP >> {o}"), true);
    hook(
        &lib,
        "10-a",
        &format!("echo a $PV_OP $PV_REV $PV_TRY $PV_TRYBOOT $PV_STATUS $PV_OBJ_STORAGE $PV_TRAILS_STORAGE >> {o}"),
        true,
    );
    hook(&lib, "30-not-executable", &format!("echo c >> {o}"), false);
    let h = Hooks::new(lib.to_str().unwrap(), Path::new("/storage"));
    assert_eq!(h.run_blocking(Op::InstallUpdate, &env()), Ok(2));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        text,
        "a system-install-update 2 2 true INPROGRESS /storage/objects /storage/trails\nb system-install-update\n"
    );
    let _ = std::fs::remove_dir_all(&lib);
}

#[test]
fn a_failing_hook_stops_the_rest_and_is_named() {
    let lib = tmp("fail");
    let out = lib.join("out");
    hook(&lib, "1-fails", "exit 3", true);
    hook(&lib, "2-never", &format!("touch {}", out.display()), true);
    let h = Hooks::new(lib.to_str().unwrap(), Path::new("/storage"));
    let err = h
        .run_blocking(Op::BootDone, &env())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1-fails") && err.contains("system-boot-done"),
        "{err}"
    );
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&lib);
}

#[test]
fn no_hook_directory_runs_nothing() {
    let h = Hooks::new("/nonexistent-libdir", Path::new("/storage"));
    assert_eq!(h.run_blocking(Op::Start, &env()), Ok(0));
    assert_eq!(Hooks::none().run_blocking(Op::Start, &env()), Ok(0));
}

#[test]
fn tryboot_is_false_when_the_revision_is_not_pv_try() {
    let e = Env::new(
        &BootEnv {
            rev: Some("1".into()),
            try_rev: None,
        },
        "1",
        "DONE",
    );
    assert!(!e.tryboot);
    assert_eq!(e.try_rev, "");
}

/// Plays the device's loop for one run: reaps the hook (here with a wait for its pid; the
/// device's is `waitpid(-1)`), or calls `timed_out` once its deadline passed.
fn drive(mut run: HookRun) -> (Vec<i32>, Result<usize, HookError>) {
    let mut pids = vec![run.pid()];
    loop {
        let step = match crate::sys::waitpid(run.pid(), true).unwrap() {
            Some(status) => run.exited(status),
            None if crate::sys::event::monotonic_ms() >= run.deadline_ms() => {
                let step = run.timed_out();
                crate::sys::waitpid(run.pid(), false).unwrap();
                step
            }
            None => {
                std::thread::sleep(std::time::Duration::from_millis(5));
                continue;
            }
        };
        match step {
            HookStep::Next => pids.push(run.pid()),
            HookStep::Running => {}
            HookStep::Done(r) => return (pids, r),
        }
    }
}

#[test]
fn the_loop_driven_run_keeps_order_and_environment() {
    let lib = tmp("loop-order");
    let out = lib.join("out");
    let o = out.display();
    hook(
        &lib,
        "20-b",
        &format!("echo b $PV_OP $PV_STATUS >> {o}"),
        true,
    );
    hook(
        &lib,
        "10-a",
        &format!("echo a $PV_REV $PV_TRY >> {o}"),
        true,
    );
    let h = Hooks::new(lib.to_str().unwrap(), Path::new("/storage"));
    let t0 = crate::sys::event::monotonic_ms();
    let run = h.start(Op::Start, &env()).unwrap().unwrap();
    assert_eq!(run.op(), Op::Start);
    assert!(
        run.deadline_ms() >= t0 + 60_000,
        "the default timeout is 60 s"
    );
    let (pids, r) = drive(run);
    assert_eq!(r, Ok(2));
    assert_eq!(pids.len(), 2);
    assert_ne!(pids[0], pids[1]);
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text, "a 2 2\nb system-start INPROGRESS\n");
    // nothing to run: no run at all
    assert!(Hooks::none().start(Op::Start, &env()).unwrap().is_none());
    let _ = std::fs::remove_dir_all(&lib);
}

#[test]
fn exit_codes_and_signals_fail_the_run_and_stop_the_rest() {
    let lib = tmp("loop-fail");
    let out = lib.join("out");
    hook(&lib, "1-fails", "exit 3", true);
    hook(&lib, "2-never", &format!("touch {}", out.display()), true);
    let h = Hooks::new(lib.to_str().unwrap(), Path::new("/storage"));
    let (pids, r) = drive(h.start(Op::InstallUpdate, &env()).unwrap().unwrap());
    let hook1 = lib.join("pantavisor/pv/hooks/system.d/1-fails");
    assert_eq!(pids.len(), 1);
    let e = r.unwrap_err();
    assert_eq!(
        e,
        HookError::Exit {
            hook: hook1.clone(),
            op: Op::InstallUpdate,
            code: 3
        }
    );
    assert_eq!(
        e.to_string(),
        format!(
            "hook {} (system-install-update): failed: exit code 3",
            hook1.display()
        )
    );
    assert!(!out.exists());
    // a hook that kills itself
    hook(&lib, "1-fails", "kill -TERM $$", true);
    let (_, r) = drive(h.start(Op::Done, &env()).unwrap().unwrap());
    assert_eq!(
        r,
        Err(HookError::Signal {
            hook: hook1,
            op: Op::Done,
            signal: libc::SIGTERM
        })
    );
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&lib);
}

fn gone(pid: i32) -> bool {
    // gone, or a zombie waiting for its new parent to reap it
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_hook_that_hangs_is_killed_at_its_deadline_with_its_children() {
    let lib = tmp("loop-hang");
    let child = lib.join("child");
    let after = lib.join("after");
    hook(
        &lib,
        "1-hangs",
        &format!("sleep 1000 & echo $! > {}\nwait", child.display()),
        true,
    );
    hook(&lib, "2-never", &format!("touch {}", after.display()), true);
    let mut h = Hooks::new(lib.to_str().unwrap(), Path::new("/storage"));
    h.timeout_ms = 300;
    let t0 = crate::sys::event::monotonic_ms();
    let run = h.start(Op::BootDone, &env()).unwrap().unwrap();
    assert!(run.deadline_ms() >= t0 + 300 && run.deadline_ms() < t0 + 1000);
    let (_, r) = drive(run);
    let took = crate::sys::event::monotonic_ms() - t0;
    assert!((300..5000).contains(&took), "killed after {took} ms");
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            HookError::TimedOut {
                secs: 1,
                op: Op::BootDone,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .ends_with("1-hangs (system-boot-done): failed: killed after 1 s"),
        "{e}"
    );
    assert!(!after.exists(), "the run ended at the timeout");
    // the hook's own child went with it (same process group)
    let pid: i32 = std::fs::read_to_string(&child)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut n = 0;
    while !gone(pid) && n < 200 {
        std::thread::sleep(std::time::Duration::from_millis(10));
        n += 1;
    }
    assert!(gone(pid), "the hook's child {pid} survived");
    // the blocking runner keeps the same limit
    let t0 = crate::sys::event::monotonic_ms();
    let e = h.run_blocking(Op::BootDone, &env()).unwrap_err();
    assert!(matches!(e, HookError::TimedOut { .. }), "{e:?}");
    assert!(crate::sys::event::monotonic_ms() - t0 < 5000);
    let _ = std::fs::remove_dir_all(&lib);
}

#[test]
fn the_timeout_comes_from_the_builder() {
    let h = Hooks::new("/x", Path::new("/storage")).with_timeout(5);
    assert_eq!(h.timeout_ms, 5000);
    assert_eq!(Hooks::none().with_timeout(0).timeout_ms, 1000);
}
