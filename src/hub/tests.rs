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
                for progress_pending in [false, true] {
                    let f = Facts {
                        authenticated,
                        trails,
                        update,
                        progress_pending,
                    };
                    let want = match (authenticated, trails, update, progress_pending) {
                        (false, ..) => Some(State::Login),
                        (true, Trails::Unknown, ..) => Some(State::WaitHub),
                        (true, Trails::Unsynced, ..) => Some(State::Sync),
                        (true, Trails::Synced, Update::NoneOrFinal, _) => Some(State::Idle),
                        (true, Trails::Synced, _, true) => None,
                        (true, Trails::Synced, Update::Queued, false) => Some(State::PrepDownload),
                        (true, Trails::Synced, Update::Downloading, false) => Some(State::Download),
                        (true, Trails::Synced, Update::Trying, false) => Some(State::Report),
                    };
                    assert_eq!(next(f), want, "{f:?}");
                }
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
fn one_progress_in_flight_and_the_newest_waiting() {
    let mut q = ProgressQueue::default();
    assert!(!q.pending());
    let p = |r: &str, b: &str| (r.to_string(), b.to_string());
    assert_eq!(q.push("1".into(), "QUEUED".into()), Some(p("1", "QUEUED")));
    assert!(q.pending());
    assert_eq!(q.push("1".into(), "DOWNLOADING 10".into()), None);
    assert_eq!(q.push("1".into(), "DOWNLOADING 20".into()), None);
    // only the newest waiting one goes next
    assert_eq!(q.done(), Some(p("1", "DOWNLOADING 20")));
    assert!(q.pending());
    assert_eq!(q.done(), None);
    assert!(!q.pending());
    assert_eq!(q.push("2".into(), "NEW".into()), Some(p("2", "NEW")));
    // a failed PUT ends the flight the same way
    assert_eq!(q.done(), None);
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
