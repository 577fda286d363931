use super::*;

const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

#[test]
fn registration_and_claim_answers() {
    // pantahub-base's answer to POST /devices/ (Go's JSON: & escaped)
    let d = device(
        br#"{"challenge":"fair-owl","device-meta":{},"id":"5f0c1a2b3c4d5e6f7a8b9c0d","nick":"x",
             "owner":"","prn":"prn:::devices:/5f0c1a2b3c4d5e6f7a8b9c0d","public":false,
             "secret":"s3cr\u0026t","user-meta":{}}"#,
    )
    .unwrap();
    assert_eq!(d.id, "5f0c1a2b3c4d5e6f7a8b9c0d");
    assert_eq!(d.secret.as_deref(), Some("s3cr&t"));
    assert_eq!(d.challenge.as_deref(), Some("fair-owl"));
    assert_eq!(d.owner, None, "an empty owner is not claimed");
    let d = device(br#"{"id":"abc","owner":"prn:::accounts:/u"}"#).unwrap();
    assert_eq!(d.owner.as_deref(), Some("prn:::accounts:/u"));
    // an id that would leave its folder, or none
    for bad in [
        &br#"{"id":"../x"}"#[..],
        br#"{"id":"a/b"}"#,
        br#"{"id":""}"#,
        br#"{"id":7}"#,
        br#"{}"#,
        b"not json",
    ] {
        assert!(device(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    assert!(check_id("5f0c").is_ok() && check_id("a b").is_err());
}

#[test]
fn login_token() {
    assert_eq!(token(br#"{"token":"eyJ.a-b_c"}"#).unwrap(), "eyJ.a-b_c");
    for bad in [
        &br#"{"token":""}"#[..],
        br#"{"token":"a b"}"#,
        br#"{"token":"a\r\nX: y"}"#,
        br#"{"Error":"x"}"#,
    ] {
        assert!(token(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn trails() {
    assert!(!has_trail(b"[]").unwrap());
    assert!(has_trail(br#"[{"id":"x"}]"#).unwrap());
    assert!(has_trail(br#"{"id":"x"}"#).is_err());
}

#[test]
fn the_first_step_keeps_its_state_byte_for_byte() {
    let state =
        "{\"#spec\": \"pantavisor-service-system@1\",\n  \"bsp/run.json\":{\"a\":[1, 2.50]}}";
    let body = format!(
        r#"[{{"commit-msg":"m","rev":3,"state":{state},"progress":{{"status":"NEW","progress":0}}}},
            {{"rev":4,"state":{{}}}}]"#
    );
    let s = first_step(body.as_bytes()).unwrap().unwrap();
    assert_eq!(s.rev, "3");
    assert_eq!(s.state, state);
    assert_eq!(
        s.progress.as_deref(),
        Some(r#"{"status":"NEW","progress":0}"#)
    );
    assert_eq!(s.commit_msg.as_deref(), Some("m"));
    assert_eq!(first_step(b"[]").unwrap(), None);
    for bad in [
        &br#"[{"rev":"3","state":{}}]"#[..],
        br#"[{"rev":-1,"state":{}}]"#,
        br#"[{"rev":1.5,"state":{}}]"#,
        br#"[{"state":{}}]"#,
        br#"[{"rev":3}]"#,
        br#"[{"rev":3,"state":"{}"}]"#,
        br#"{"rev":3}"#,
    ] {
        assert!(first_step(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn object_metadata() {
    let body = format!(
        r#"{{"id":"x","objectname":"root.squashfs","sha256sum":"{SHA}","size":"52428800",
            "sizeint":52428800,"signed-geturl":"https://hub/local-s3/{SHA}?e=1\u0026s=2"}}"#
    );
    let o = object(body.as_bytes(), SHA).unwrap();
    assert_eq!(o.size, 52_428_800);
    assert_eq!(o.url, format!("https://hub/local-s3/{SHA}?e=1&s=2"));
    let other = "0".repeat(64);
    assert!(object(body.as_bytes(), &other)
        .unwrap_err()
        .contains("asked for"));
    for (size, url) in [
        (r#""-1""#, "https://h/x"),
        (r#""1e3""#, "https://h/x"),
        (r#"null"#, "https://h/x"),
        (r#""5""#, "file:///etc/passwd"),
        (r#""5""#, "/local-s3/x"),
        (r#""5""#, "https://h/x y"),
    ] {
        let b = format!(r#"{{"sha256sum":"{SHA}","size":{size},"signed-geturl":"{url}"}}"#);
        assert!(object(b.as_bytes(), SHA).is_err(), "{b}");
    }
}

#[test]
fn user_meta_values_as_the_device_stores_them() {
    let m =
        user_meta(br#"{"a":"x","b":{"k":[1, 2]},"c":null,"d":5,"pantahub.log.push":"0"}"#).unwrap();
    assert_eq!(
        m,
        [
            ("a".to_string(), "x".to_string()),
            ("b".to_string(), r#"{"k":[1, 2]}"#.to_string()),
            ("d".to_string(), "5".to_string()),
            ("pantahub.log.push".to_string(), "0".to_string()),
        ]
    );
    assert!(user_meta(b"[]").is_err());
}
