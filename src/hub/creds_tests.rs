use super::*;
use crate::storage::simfs::SimFs;

fn registered() -> Config {
    let mut c = Config::new();
    c.apply_text(
        Level::PhConfFile,
        "pantahub.config",
        "PH_CREDS_HOST=hub.example\nPH_CREDS_PORT=8443\n",
    );
    c.set(Level::PhConfFile, "PH_CREDS_ID", "5f0c").unwrap();
    c.set(Level::PhConfFile, "PH_CREDS_PRN", "prn:::devices:/5f0c")
        .unwrap();
    c.set(Level::PhConfFile, "PH_CREDS_SECRET", "s3cret")
        .unwrap();
    c
}

#[test]
fn every_hub_key_with_a_value_and_nothing_else() {
    let text = render(&registered());
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "PH_CREDS_HOST=hub.example",
        "PH_CREDS_PORT=8443",
        "PH_CREDS_ID=5f0c",
        "PH_CREDS_PRN=prn:::devices:/5f0c",
        "PH_CREDS_SECRET=s3cret",
        "PH_CREDS_TYPE=builtin",
    ] {
        assert!(lines.contains(&want), "{want} in\n{text}");
    }
    assert!(lines.iter().all(|l| l.starts_with("PH_")), "{text}");
    // keys without a value are left out
    assert!(!text.contains("PH_FACTORY_AUTOTOK"), "{text}");
    // read back at the same level, the file gives the same credentials
    let mut again = Config::new();
    again.apply_text(Level::PhConfFile, "pantahub.config", &text);
    assert!(again.take_warnings().is_empty());
    for k in [
        Key::PH_CREDS_ID,
        Key::PH_CREDS_PRN,
        Key::PH_CREDS_SECRET,
        Key::PH_CREDS_HOST,
    ] {
        assert_eq!(again.get(k), registered().get(k), "{k:?}");
    }
    assert_eq!(render(&again), text);
}

#[test]
fn saved_crash_safely_in_the_creds_work_dir() {
    let fs = SimFs::new();
    let run = Path::new("/pv");
    let c = registered();
    // not bound (no <storage>/config, no pv--phconfig volume): nothing is saved anywhere
    assert!(save(&fs, run, &c, false).is_err());
    crate::storage::fs::create_dir_all(&fs, &dir(run)).unwrap();
    let p = save(&fs, run, &c, false).unwrap();
    assert_eq!(p, Path::new("/pv/phconfig/unclaimed.config"));
    assert_eq!(fs.read(&p).unwrap(), render(&c).into_bytes());
    let p = save(&fs, run, &c, true).unwrap();
    assert_eq!(p, Path::new("/pv/phconfig/pantahub.config"));
    assert_eq!(fs.read(&p).unwrap(), render(&c).into_bytes());
    // nothing in flight is left behind
    assert!(fs
        .read(Path::new("/pv/phconfig/pantahub.config.tmp"))
        .is_err());
}

#[test]
fn creds_type_picks_the_handler_as_upstream() {
    assert_eq!(handler("builtin"), Ok(Handler::Builtin));
    assert_eq!(
        handler("ext-tpm"),
        Ok(Handler::External {
            register: PathBuf::from("/btools/ext-tpm.register"),
            login: PathBuf::from("/btools/ext-tpm.login"),
        })
    );
    for bad in ["", "Builtin", "ext", "tpm", "ext-../../bin/sh", "x-ext-a"] {
        let e = handler(bad).unwrap_err();
        assert!(
            e.ends_with("Currently supported: builtin and ext-* handlers"),
            "{bad}: {e}"
        );
        assert!(e.contains(&format!("creds_type {bad}.")), "{bad}: {e}");
    }
}

#[test]
fn a_handler_runs_bounded_and_its_output_is_both_streams() {
    let d = std::env::temp_dir().join(format!("pv-creds-handler-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let script = |name: &str, body: &str, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        let p = d.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    let ok = script("ok", r#"echo '{"token":'; echo '"t1"}' >&2; exit 3"#, 0o755);
    let (st, out) = run(&ok, Duration::from_secs(10)).unwrap();
    assert_eq!(st, WaitStatus::Exited(3));
    assert_eq!(String::from_utf8_lossy(&out), "{\"token\":\n\"t1\"}\n");

    let missing = d.join("missing");
    let e = run(&missing, Duration::from_secs(10)).unwrap_err();
    assert!(e.starts_with("unable to stat trest client for cmd "), "{e}");
    let plain = script("plain", "echo x", 0o644);
    let e = run(&plain, Duration::from_secs(10)).unwrap_err();
    assert!(e.ends_with("... not executable."), "{e}");

    // hung, with a child holding the pipe: both killed at the time out
    let hung = script("hung", "sleep 600 & sleep 600", 0o755);
    let t = Instant::now();
    let e = run(&hung, Duration::from_millis(300)).unwrap_err();
    assert!(e.contains("killed"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let flood = script("flood", "while :; do echo 0123456789abcdef; done", 0o755);
    let e = run(&flood, Duration::from_secs(10)).unwrap_err();
    assert!(e.contains("more than 65536 B"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}
