use super::*;

const UPDATES: [Update; 4] = [
    Update::NoneOrFinal,
    Update::Queued,
    Update::Downloading,
    Update::Trying,
];

/// Every combination of facts, against upstream's order written out as a table.
#[test]
fn next_state_for_every_combination_of_facts() {
    for authenticated in [false, true] {
        for trails in [Trails::Unknown, Trails::Unsynced, Trails::Synced] {
            for update in UPDATES {
                let f = Facts {
                    authenticated,
                    trails,
                    update,
                };
                let want = match (authenticated, trails, update) {
                    (false, ..) => State::Login,
                    (true, Trails::Unknown, _) => State::WaitHub,
                    (true, Trails::Unsynced, _) => State::Sync,
                    (true, Trails::Synced, Update::NoneOrFinal) => State::Idle,
                    (true, Trails::Synced, Update::Queued) => State::PrepDownload,
                    (true, Trails::Synced, Update::Downloading) => State::Download,
                    (true, Trails::Synced, Update::Trying) => State::Report,
                };
                assert_eq!(next(f), want, "{f:?}");
            }
        }
    }
}

#[test]
fn state_names_are_upstreams() {
    let names: Vec<&str> = [
        State::Init,
        State::Register,
        State::Claim,
        State::Sync,
        State::Login,
        State::WaitHub,
        State::Report,
        State::Idle,
        State::PrepDownload,
        State::Download,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(
        names,
        [
            "init",
            "register",
            "claim",
            "sync",
            "login",
            "wait Hub",
            "report",
            "idle",
            "prep download",
            "download"
        ]
    );
}

#[test]
fn online_after_any_answer_offline_only_past_the_threshold() {
    let mut o = Online::default();
    assert!(!o.online);
    // offline from the start: failures change nothing to publish
    assert_eq!(o.record(false, 2), None);
    assert!(o.any_failure);
    assert_eq!(o.record(true, 2), Some(true));
    assert_eq!(o.record(true, 2), None);
    o.reset_failure();
    assert!(!o.any_failure);
    // threshold 2: the third failure in a row goes offline, once
    assert_eq!(o.record(false, 2), None);
    assert_eq!(o.record(false, 2), None);
    assert!(o.online);
    assert_eq!(o.record(false, 2), Some(false));
    assert_eq!(o.record(false, 2), None);
    // an answer resets the count
    assert_eq!(o.record(true, 2), Some(true));
    assert_eq!(o.record(false, 2), None);
    assert_eq!(o.record(true, 2), None);
    assert_eq!(o.record(false, 2), None);
    assert_eq!(o.record(false, 2), None);
    assert!(o.online);
    // threshold 0: the first failure goes offline
    let mut o = Online::default();
    o.record(true, 0);
    assert_eq!(o.record(false, 0), Some(false));
    // the count saturates instead of wrapping back under the threshold
    let mut o = Online::default();
    o.record(true, u32::MAX - 1);
    o.failed = u32::MAX - 1;
    assert_eq!(o.record(false, u32::MAX - 1), Some(false));
    assert_eq!(o.record(false, u32::MAX - 1), None);
}

#[test]
fn a_put_ends_taken_refused_or_to_send_again() {
    assert_eq!(Sent::of(Some(200)), Sent::Taken);
    assert_eq!(Sent::of(Some(204)), Sent::Taken);
    assert_eq!(Sent::of(Some(400)), Sent::Refused);
    assert_eq!(Sent::of(Some(404)), Sent::Refused);
    assert_eq!(Sent::of(Some(499)), Sent::Refused);
    assert_eq!(Sent::of(Some(401)), Sent::Again);
    assert_eq!(Sent::of(Some(500)), Sent::Again);
    assert_eq!(Sent::of(Some(503)), Sent::Again);
    assert_eq!(Sent::of(Some(302)), Sent::Again);
    assert_eq!(Sent::of(None), Sent::Again);
}

#[test]
fn the_newest_report_of_each_step_waits_and_the_hubs_copy_is_not_sent_again() {
    let p = |r: &str, b: &str| Some((r.to_string(), b.to_string()));
    let mut q = Reports::default();
    assert!(!q.pending());
    assert_eq!(q.take(), None);
    q.push("1", "QUEUED".into());
    q.push("1", "DOWNLOADING 10".into());
    q.push("2", "NEW".into());
    q.push("1", "DOWNLOADING 20".into());
    assert!(q.pending());
    // only step 1's newest, in the order the steps first waited
    assert_eq!(q.take(), p("1", "DOWNLOADING 20"));
    q.done("1".into(), "DOWNLOADING 20".into(), Sent::Taken);
    // what the Hub has is not sent again
    q.push("1", "DOWNLOADING 20".into());
    assert_eq!(q.take(), p("2", "NEW"));
    // failed: sent again, after the others
    q.push("1", "UPDATED".into());
    q.done("2".into(), "NEW".into(), Sent::Again);
    assert_eq!(q.take(), p("1", "UPDATED"));
    // refused: dropped; the Hub's copy stays what it took
    q.done("1".into(), "UPDATED".into(), Sent::Refused);
    assert_eq!(q.take(), p("2", "NEW"));
    assert!(!q.pending());
    // a failed report does not come back over a newer one of its step
    q.push("2", "QUEUED".into());
    q.done("2".into(), "NEW".into(), Sent::Again);
    assert_eq!(q.take(), p("2", "QUEUED"));
    assert_eq!(q.take(), None);
    // the Hub's copy arriving makes a waiting duplicate go
    q.push("3", "DONE".into());
    q.done("3".into(), "DONE".into(), Sent::Taken);
    q.push("3", "DONE".into());
    assert!(!q.pending());
}

#[test]
fn pending_steps_path_asks_for_the_unfinished_statuses() {
    let path = pending_steps_path("5f0c");
    let (base, query) = path.split_once('?').unwrap();
    assert_eq!(base, "/trails/5f0c/steps");
    let (key, value) = query.split_once('=').unwrap();
    assert_eq!(key, "progress.status");
    // no character the query needs escaped is left raw
    assert!(!value.contains(['{', '}', '"', '[', ']', ' ']), "{value}");
    let filter = crate::control::http::percent_decode(value.as_bytes()).unwrap();
    assert_eq!(
        filter,
        r#"{"$in":["NEW","DOWNLOADING","INPROGRESS","TESTING","QUEUED"]}"#
    );
}
