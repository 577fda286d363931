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
    assert_eq!(h.run(Op::InstallUpdate, &env()), Ok(2));
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
    let err = h.run(Op::BootDone, &env()).unwrap_err();
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
    assert_eq!(h.run(Op::Start, &env()), Ok(0));
    assert_eq!(Hooks::none().run(Op::Start, &env()), Ok(0));
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
