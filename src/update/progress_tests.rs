use super::*;

#[test]
fn statuses_round_trip_with_their_numbers() {
    for (s, name, n) in STATUSES {
        assert_eq!(Status::parse(name), Some(s));
        assert_eq!(s.as_str(), name);
        assert_eq!(s.percent(), n);
    }
    assert_eq!(Status::parse("SYNCING"), None);
}

#[test]
fn json_shape_is_upstreams() {
    let mut p = Progress::new(
        Status::Downloading,
        "Downloading update artifacts, retry 1 of 10",
    );
    p.retries = 1;
    p.downloads = Some(Downloads {
        total_size: 123456,
        total_downloaded: 4096,
        start_time: 1700000000,
        current_time: 1700000006,
    });
    assert_eq!(
        p.to_json(),
        "{\"status\":\"DOWNLOADING\",\"status-msg\":\"Downloading update artifacts, retry 1 of 10\",\"progress\":25,\"retries\":1,\"downloads\":{\"total\":{\"object_name\":\"total\",\"object_id\":\"none\",\"total_size\":123456,\"total_downloaded\":4096,\"start_time\":1700000000,\"current_time\":1700000006}}}"
    );
    assert_eq!(Progress::from_json(p.to_json().as_bytes()), Some(p));
    let mut e = Progress::new(Status::Error, msg::CONTAINER_FAILED);
    e.logs = Some("{\"lvl\":\"ERROR\",\"msg\":\"a \\\"b\\\"\"}\n".into());
    assert_eq!(Progress::from_json(e.to_json().as_bytes()), Some(e));
}

#[test]
fn lenient_read_back() {
    let p = Progress::from_json(br#"{"status":"DONE","extra":[1,2]}"#).unwrap();
    assert_eq!(
        (p.status, p.progress, p.retries, p.msg.as_str()),
        (Status::Done, 100, 0, "")
    );
    assert_eq!(Progress::from_json(br#"{"status":"BOGUS"}"#), None);
    assert_eq!(Progress::from_json(b"{\"status\":"), None);
    assert_eq!(Progress::from_json(b"\xff"), None);
}

/// The parameterised status messages, word for word as upstream's remote pvtests expect them
/// (`insufficient-disk-space`, `update-retries-*`).
#[test]
fn parameterised_messages_are_upstreams() {
    assert_eq!(msg::retried(1, 3), "Retried 1 of 3");
    assert_eq!(
        msg::downloading_metadata(2, 10),
        "Downloading update metadata, retry 2 of 10"
    );
    assert_eq!(
        msg::downloading_artifacts(1, 10),
        "Downloading update artifacts, retry 1 of 10"
    );
    assert_eq!(
        msg::space_required(52_428_800, 0),
        "Space required 52428800 B, available 0 B"
    );
}
