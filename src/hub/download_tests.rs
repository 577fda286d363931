use super::*;

#[test]
fn what_to_ask_for_what_is_kept() {
    assert_eq!(ask(0, 100), Ask::All);
    assert_eq!(ask(1, 100), Ask::From(1));
    assert_eq!(ask(99, 100), Ask::From(99));
    assert_eq!(ask(100, 100), Ask::Verify);
    // longer than the object: not a prefix of it
    assert_eq!(ask(101, 100), Ask::All);
    // an empty object is whole at once
    assert_eq!(ask(0, 0), Ask::All);
    assert_eq!(
        range_header(Ask::From(4096)).as_deref(),
        Some("bytes=4096-")
    );
    assert_eq!(range_header(Ask::All), None);
    assert_eq!(range_header(Ask::Verify), None);
}

#[test]
fn content_range_parsing() {
    assert_eq!(
        parse_content_range("bytes 10-99/100"),
        Some((10, Some(100)))
    );
    assert_eq!(parse_content_range("bytes 0-0/1"), Some((0, Some(1))));
    assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
    for bad in [
        "",
        "bytes",
        "bytes 10-99",
        "bytes 99-10/100",
        "bytes 10-100/100",
        "bytes a-b/c",
        "items 1-2/3",
        "bytes -5/100",
        "bytes 18446744073709551616-1/2",
    ] {
        assert_eq!(parse_content_range(bad), None, "{bad}");
    }
}

#[test]
fn what_an_answer_means() {
    let size = 100;
    let from = Ask::From(40);
    // the rest, exactly
    assert_eq!(then(from, size, 206, Some("bytes 40-99/100")), Then::Append);
    // a 206 from the start: the whole object again
    assert_eq!(
        then(from, size, 206, Some("bytes 0-99/100")),
        Then::WriteFromZero
    );
    // a 206 from elsewhere, of another size, or without its range: not trusted
    for cr in [
        Some("bytes 41-99/100"),
        Some("bytes 39-99/100"),
        Some("bytes 40-99/200"),
        Some("bytes 40-99/*"),
        Some("garbage"),
        None,
    ] {
        assert_eq!(then(from, size, 206, cr), Then::Discard, "{cr:?}");
    }
    // the Range ignored: the whole object comes
    assert_eq!(then(from, size, 200, None), Then::WriteFromZero);
    assert_eq!(then(Ask::All, size, 200, None), Then::WriteFromZero);
    // nothing more to send: check what is kept
    assert_eq!(then(from, size, 416, Some("bytes */100")), Then::Verify);
    // an expired or refused signed URL: a fresh one, keeping the bytes
    assert_eq!(then(from, size, 403, None), Then::NewUrl);
    assert_eq!(then(Ask::All, size, 401, None), Then::NewUrl);
    // trouble: later, keeping the bytes
    for status in [404, 408, 429, 500, 502, 503, 504] {
        assert_eq!(then(from, size, status, None), Then::Later, "{status}");
    }
    // a 206 to a request without Range is taken when it starts at zero and names the size (a
    // short one too: what arrives is kept and the rest asked for next time)
    for cr in ["bytes 0-99/100", "bytes 0-49/100"] {
        assert_eq!(
            then(Ask::All, size, 206, Some(cr)),
            Then::WriteFromZero,
            "{cr}"
        );
    }
    assert_eq!(
        then(Ask::All, size, 206, Some("bytes 10-49/100")),
        Then::Discard
    );
    assert_eq!(then(Ask::All, size, 206, None), Then::Discard);
    assert_eq!(then(Ask::All, size, 416, None), Then::Later);
}

#[test]
fn space_above_the_reserve() {
    // 1 GiB storage, 5 % reserved (51 MiB and a bit)
    let gib = 1u64 << 30;
    let reserved = gib * 5 / 100;
    assert_eq!(real_free(gib, gib, 5), gib - reserved);
    assert_eq!(real_free(gib, reserved + 10, 5), 10);
    assert_eq!(real_free(gib, reserved, 5), 0);
    assert_eq!(real_free(gib, 1, 5), 0);
    assert_eq!(real_free(gib, 7, 0), 7);
    // a percent past 100 reserves everything; huge sizes do not overflow
    assert_eq!(real_free(gib, gib, 250), 0);
    assert_eq!(real_free(u64::MAX, u64::MAX, 1), u64::MAX - u64::MAX / 100);
    assert!(fits(10, 10) && fits(0, 0) && !fits(11, 10));
    // upstream's remote test: a 50 MiB object, nothing left
    assert!(!fits(52_428_800, 0));
}
