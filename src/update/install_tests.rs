use super::*;
use crate::storage::fs::Fs;
use crate::storage::objects::sha256_hex;
use crate::storage::simfs::SimFs;

fn staged(st: &Storage, rev: &str) -> State {
    let k = b"kernel".to_vec();
    let raw = format!(
        "{{\"#spec\":\"pantavisor-service-system@1\",\"bsp/k\":\"{}\",\"bsp/run.json\":{{\"linux\":\"k\",\"initrd\":\"k\"}}}}",
        sha256_hex(&k)
    );
    st.init_layout().unwrap();
    st.put_object(&sha256_hex(&k), &k).unwrap();
    stage(st, rev, raw.as_bytes(), &Policy::disabled()).unwrap()
}

#[test]
fn the_phases_of_an_install_keep_the_boot_env_last() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let bl = crate::bootloader::for_type("uboot", &st.root).unwrap();
    let state = staged(&st, "1");
    prepare(&st, "1", &state).unwrap();
    // prepared: the trail is complete, nothing names it yet
    assert!(verify(&st, "1", &state, Check::Rehash).is_ok());
    assert_eq!(bl.read(&fs).unwrap().try_rev, None);
    assert_eq!(st.read_progress("1").unwrap().status, Status::New);
    let env = hook_env(&st, bl.as_ref(), "1").unwrap();
    assert_eq!((env.rev.as_str(), env.status.as_str()), ("1", "INPROGRESS"));
    enter(&st, bl.as_ref(), "1", Entry::Live).unwrap();
    let p = st.read_progress("1").unwrap();
    assert_eq!(
        (p.status, p.msg.as_str()),
        (Status::Inprogress, msg::TRANSITIONING)
    );
    assert_eq!(bl.read(&fs).unwrap().try_rev.as_deref(), Some("1"));
}

#[test]
fn a_failed_prepare_is_refused_with_wontgo_and_the_boot_env_untouched() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let bl = crate::bootloader::for_type("uboot", &st.root).unwrap();
    let state = staged(&st, "1");
    fs.remove_file(&st.object_path(&sha256_hex(b"kernel")).unwrap())
        .unwrap();
    let e = prepare(&st, "1", &state).unwrap_err();
    let why = e.to_string();
    assert!(
        matches!(refuse(&st, "1", why.clone()).unwrap(), Refused::Wontgo(m, w) if m == msg::INTERNAL && w == why)
    );
    assert_eq!(st.read_progress("1").unwrap().status, Status::Wontgo);
    assert_eq!(bl.read(&fs).unwrap().try_rev, None);
    // the blocking composition refuses the same way
    assert!(matches!(
        install(
            &st,
            bl.as_ref(),
            &hooks::Hooks::none(),
            "1",
            &state,
            Entry::Reboot
        )
        .unwrap(),
        Err(Refused::Wontgo(..))
    ));
}

#[test]
fn a_state_this_build_cannot_run_is_refused_at_admission() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    st.init_layout().unwrap();
    let img = b"squashfs".to_vec();
    let raw = format!(
        r##"{{"#spec":"pantavisor-service-system@1","a/root.squashfs":"{}","a/run.json":{{"name":"a","type":"lxc","root-volume":"dm:root.squashfs"}}}}"##,
        sha256_hex(&img)
    );
    st.put_object(&sha256_hex(&img), &img).unwrap();
    stage(&st, "1", raw.as_bytes(), &Policy::disabled()).unwrap();
    let r = admit(&st, "1", 10, &Policy::disabled()).unwrap();
    assert!(
        matches!(&r, Err(Refused::Wontgo(m, why)) if *m == msg::BAD_STATE && why.contains("no \"a/_dm/root.squashfs.json\"")),
        "{r:?}"
    );
    assert_eq!(st.read_progress("1").unwrap().status, Status::Wontgo);
}

/// Strict secure boot with a structure-only trust: an unsigned state is not covered.
fn strict() -> Policy {
    Policy::new(crate::pvs::Mode::Strict, Ok(crate::pvs::Trust::none()))
}

#[test]
fn secure_boot_refuses_at_upload_at_run_and_at_the_boot_of_a_try() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let bl = crate::bootloader::for_type("uboot", &st.root).unwrap();
    staged(&st, "0");
    bl.commit(&fs, "0").unwrap();
    let raw = st.read_state("0").unwrap();
    // upload: refused with upstream's message, nothing stored
    match stage(&st, "2", &raw, &strict()) {
        Err(Error::Secureboot { refused, .. }) => {
            assert_eq!(refused.message, crate::pvs::NOT_COVERED);
            assert!(refused.reasons.iter().any(|r| r.contains("bsp/run.json")));
        }
        other => panic!("{other:?}"),
    }
    assert!(st.read_state("2").is_err());
    // run: a state already on the storage is WONTGO with the message
    stage(&st, "1", &raw, &Policy::disabled()).unwrap();
    let r = admit(&st, "1", 10, &strict()).unwrap();
    assert!(
        matches!(&r, Err(Refused::Wontgo(m, _)) if *m == crate::pvs::NOT_COVERED),
        "{r:?}"
    );
    assert_eq!(st.read_progress("1").unwrap().status, Status::Wontgo);
    // boot: the revision on probation fails its check: ERROR with the message, rollback
    let state = staged(&st, "3");
    install(
        &st,
        bl.as_ref(),
        &hooks::Hooks::none(),
        "3",
        &state,
        Entry::Reboot,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        boot(&st, bl.as_ref(), "3", Check::Rehash, &strict()).unwrap(),
        Boot::Rollback
    );
    let p = st.read_progress("3").unwrap();
    assert_eq!(
        (p.status, p.msg.as_str()),
        (Status::Error, crate::pvs::NOT_COVERED)
    );
    // the committed revision that fails is an error the caller reports (no fallback exists)
    bl.clear_try(&fs).unwrap();
    let r = boot(&st, bl.as_ref(), "0", Check::Rehash, &strict());
    assert!(matches!(r, Err(Error::Secureboot { .. })), "{r:?}");
}
