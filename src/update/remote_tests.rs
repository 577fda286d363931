//! Remote admission and the daemon's reports, case by case, over the simulated file system.
use super::*;
use crate::pvs::Policy;
use crate::storage::objects::sha256_hex;
use crate::storage::simfs::SimFs;

fn state() -> String {
    format!(
        "{{\"#spec\":\"pantavisor-service-system@1\",\"bsp/k\":\"{}\",\"bsp/run.json\":{{\"linux\":\"k\",\"initrd\":\"k\"}}}}",
        sha256_hex(b"kernel")
    )
}

/// One attempt of an idle device with secure boot disabled.
fn admit_plain(st: &Storage, rev: &str, raw: &[u8], max_retries: u64) -> Admitted {
    admit(st, rev, raw, false, false, max_retries, &Policy::disabled()).unwrap()
}

fn p(status: Status, retries: u32) -> Progress {
    Progress {
        retries,
        ..Progress::new(status, "x")
    }
}

fn facts(progress: Option<&Progress>) -> Facts<'_> {
    Facts {
        progress,
        same_state: None,
        busy: false,
        other_update: false,
        max_retries: 3,
    }
}

#[test]
fn hub_revisions_are_step_numbers() {
    for ok in ["0", "1", "42", "1234567"] {
        assert!(is_hub_revision(ok), "{ok}");
    }
    for bad in ["", "01", "locals/1", "1a", "-1", "1/2", &"9".repeat(64)] {
        assert!(!is_hub_revision(bad), "{bad}");
    }
}

/// upstream's counting (update-retries-pv-crash): attempts 1 and 2 run with retries 1 and 2,
/// the third ends WONTGO with retries 3; a crash in any earlier status counts the same.
#[test]
fn every_attempt_counts_and_the_limit_is_reached_at_max() {
    assert_eq!(admission(&facts(None)), Admission::Proceed { retries: 1 });
    for s in [
        Status::New,
        Status::Queued,
        Status::Downloading,
        Status::Inprogress,
    ] {
        let one = p(s, 1);
        assert_eq!(
            admission(&facts(Some(&one))),
            Admission::Proceed { retries: 2 }
        );
        let two = p(s, 2);
        assert_eq!(
            admission(&facts(Some(&two))),
            Admission::TooManyRetries { retries: 3 }
        );
    }
}

#[test]
fn final_running_differing_or_busy_change_nothing() {
    for s in [Status::Done, Status::Updated, Status::Wontgo, Status::Error] {
        let f = p(s, 0);
        assert_eq!(admission(&facts(Some(&f))), Admission::Standing, "{s:?}");
    }
    let q = p(Status::Queued, 1);
    let busy = Facts {
        busy: true,
        ..facts(Some(&q))
    };
    assert_eq!(admission(&busy), Admission::Standing);
    let differs = Facts {
        same_state: Some(false),
        ..facts(Some(&q))
    };
    assert_eq!(admission(&differs), Admission::Differs);
    let same = Facts {
        same_state: Some(true),
        ..facts(Some(&q))
    };
    assert_eq!(admission(&same), Admission::Proceed { retries: 2 });
    let other = Facts {
        other_update: true,
        ..facts(None)
    };
    assert_eq!(admission(&other), Admission::UpdateActive);
}

#[test]
fn admit_stages_byte_exact_and_queues_then_counts_each_attempt() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    st.init_layout().unwrap();
    let raw = state();
    let Admitted::Queued(q) = admit_plain(&st, "5", raw.as_bytes(), 3) else {
        panic!("not queued")
    };
    assert_eq!(
        q.to_json(),
        r#"{"status":"QUEUED","status-msg":"Downloading update metadata, retry 1 of 3","progress":5,"retries":1}"#
    );
    assert_eq!(st.read_state("5").unwrap(), raw.as_bytes());
    assert_eq!(st.read_progress("5"), Some(q));
    // the same bytes again (the daemon restarted, the device rebooted): the next attempt
    let Admitted::Queued(q) = admit_plain(&st, "5", raw.as_bytes(), 3) else {
        panic!("not queued")
    };
    assert_eq!(q.retries, 2);
    // other bytes: refused, nothing changed
    let other = format!("{raw} ");
    let before = st.read_progress("5");
    assert!(matches!(
        admit(
            &st,
            "5",
            other.as_bytes(),
            false,
            false,
            3,
            &Policy::disabled()
        )
        .unwrap(),
        Admitted::Refused(Admission::Differs, _)
    ));
    assert_eq!(st.read_progress("5"), before);
    assert_eq!(st.read_state("5").unwrap(), raw.as_bytes());
    // the third attempt reaches the limit
    let Admitted::Wontgo(w) = admit_plain(&st, "5", raw.as_bytes(), 3) else {
        panic!("not refused")
    };
    assert_eq!(
        w.to_json(),
        r#"{"status":"WONTGO","status-msg":"Max update processing retries reached","progress":100,"retries":3}"#
    );
    // final: refused with it, nothing changed
    match admit_plain(&st, "5", raw.as_bytes(), 3) {
        Admitted::Refused(Admission::Standing, Some(f)) => assert_eq!(f, w),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_state_is_wontgo_and_not_staged() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    st.init_layout().unwrap();
    let Admitted::Wontgo(w) = admit_plain(&st, "7", b"{not json", 10) else {
        panic!("not refused")
    };
    assert_eq!(
        (w.status, w.msg.as_str(), w.retries),
        (Status::Wontgo, msg::BAD_STATE, 1)
    );
    assert!(st.read_state("7").is_err());
}

#[test]
fn reports_only_while_queued_or_downloading() {
    use Status::*;
    let all = [
        New,
        Queued,
        Downloading,
        Inprogress,
        Testing,
        Updated,
        Done,
        Wontgo,
        Error,
    ];
    for from in all {
        for to in all {
            let want =
                matches!(from, Queued | Downloading) && matches!(to, Downloading | Wontgo | Error);
            assert_eq!(report(Some(from), to, false), want, "{from:?} -> {to:?}");
            assert!(!report(Some(from), to, true), "busy {from:?} -> {to:?}");
        }
        assert!(!report(None, from, false));
    }
}

#[test]
fn a_report_keeps_the_devices_retries_and_words() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    st.init_layout().unwrap();
    admit_plain(&st, "3", state().as_bytes(), 3);
    let body = br#"{"status":"DOWNLOADING","status-msg":"whatever","progress":25,"retries":9,
        "downloads":{"total":{"object_name":"total","object_id":"none","total_size":10,"total_downloaded":4,"start_time":1,"current_time":2}}}"#;
    let r = parse_report(body).unwrap();
    let Ok(p) = record(&st, "3", &r, false, 3).unwrap() else {
        panic!("refused")
    };
    assert_eq!(
        p.to_json(),
        r#"{"status":"DOWNLOADING","status-msg":"Downloading update artifacts, retry 1 of 3","progress":25,"retries":1,"downloads":{"total":{"object_name":"total","object_id":"none","total_size":10,"total_downloaded":4,"start_time":1,"current_time":2}}}"#
    );
    let space = parse_report(
        br#"{"status":"WONTGO","status-msg":"Space required 52428800 B, available 0 B","progress":100}"#,
    )
    .unwrap();
    let Ok(w) = record(&st, "3", &space, false, 3).unwrap() else {
        panic!("refused")
    };
    assert_eq!(
        w.to_json(),
        r#"{"status":"WONTGO","status-msg":"Space required 52428800 B, available 0 B","progress":100,"retries":1}"#
    );
    // final now: a late report is refused with the progress as it is
    assert_eq!(record(&st, "3", &r, false, 3).unwrap(), Err(Some(w)));
    assert_eq!(parse_report(b"[]"), None);
    assert_eq!(parse_report(br#"{"status":"NOPE","status-msg":""}"#), None);
    assert_eq!(parse_report(br#"{"status":"ERROR"}"#), None);
}

#[test]
fn an_interrupted_hub_step_is_put_again_by_the_hub_client() {
    assert!(left_to_hub("4", Status::Queued, true));
    assert!(left_to_hub("4", Status::Downloading, true));
    assert!(
        !left_to_hub("4", Status::Inprogress, true),
        "installed: the boot runs it"
    );
    assert!(
        !left_to_hub("4", Status::Queued, false),
        "no Hub client in local mode"
    );
    assert!(!left_to_hub("locals/a", Status::Queued, true));
}

#[test]
fn a_hub_step_that_secure_boot_refuses_is_wontgo_with_its_message() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    st.init_layout().unwrap();
    let strict = Policy::new(crate::pvs::Mode::Strict, Ok(crate::pvs::Trust::none()));
    let raw = state();
    let Admitted::Wontgo(w) = admit(&st, "4", raw.as_bytes(), false, false, 3, &strict).unwrap()
    else {
        panic!("not refused")
    };
    assert_eq!(w.msg, crate::pvs::NOT_COVERED);
    assert_eq!(w.status, Status::Wontgo);
    assert!(st.read_state("4").is_err(), "a refused state is not staged");
}
