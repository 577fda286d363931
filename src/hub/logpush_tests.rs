use super::*;

fn parse(e: &str) -> crate::json::Value {
    crate::json::parse(e.as_bytes(), Default::default()).unwrap()
}

#[test]
fn an_entry_names_platform_and_source_as_upstream() {
    let e = parse(&entry("5", "pvr-sdk/lxc/console.log", b"hello \"x\"\tz"));
    let field = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_string);
    assert_eq!(field("plat").as_deref(), Some("pvr-sdk"));
    assert_eq!(field("src").as_deref(), Some("/lxc/console.log"));
    assert_eq!(field("rev").as_deref(), Some("5"));
    assert_eq!(field("lvl").as_deref(), Some("INFO"));
    assert_eq!(field("msg").as_deref(), Some("hello \"x\"\tz"));
    assert_eq!(e.get("tsec").and_then(|v| v.as_u64()), Some(0));
    assert_eq!(e.get("tnano").and_then(|v| v.as_u64()), Some(0));
    // pantavisor's own log
    let e = parse(&entry("locals/a", "pantavisor/pantavisor.log", b"x"));
    assert_eq!(e.get("plat").and_then(|v| v.as_str()), Some("pantavisor"));
    assert_eq!(
        e.get("src").and_then(|v| v.as_str()),
        Some("/pantavisor.log")
    );
    // a file right under the revision
    let e = parse(&entry("0", "pv.log", b"x"));
    assert_eq!(
        e.get("plat").and_then(|v| v.as_str()),
        Some("pantavisor-UNKNOWN")
    );
    assert_eq!(e.get("src").and_then(|v| v.as_str()), Some("pv.log"));
    // NUL bytes and bad UTF-8 still make valid JSON
    let e = parse(&entry("0", "a/b", b"a\0b\xffc"));
    assert_eq!(e.get("msg").and_then(|v| v.as_str()), Some("a b\u{fffd}c"));
    // a long platform name is cut at 63 bytes, on a character boundary
    let long = format!("{}/x", "é".repeat(40));
    let e = parse(&entry("0", &long, b"x"));
    let plat = e.get("plat").and_then(|v| v.as_str()).unwrap().to_string();
    assert_eq!(plat, "é".repeat(31));
}

#[test]
fn lines_end_where_the_newlines_are() {
    assert_eq!(
        lines(b"a\nbc\n\nd", false),
        vec![(&b"a"[..], 2), (&b"bc"[..], 5), (&b""[..], 6)]
    );
    // the unfinished last line waits, even in a full block that has lines
    assert_eq!(lines(b"a\nd", true), vec![(&b"a"[..], 2)]);
    // a full block with no newline goes as one line; a short one waits
    assert_eq!(lines(b"abc", true), vec![(&b"abc"[..], 3)]);
    assert!(lines(b"abc", false).is_empty());
    assert!(lines(b"", true).is_empty());
}

#[test]
fn batches_keep_to_the_hubs_limits() {
    assert_eq!(batch(&[], false), 0);
    assert_eq!(batch(&[10; 500], false), MAX_ENTRIES);
    assert_eq!(batch(&[10; 5], false), 5);
    // an oversized entry still goes, alone
    assert_eq!(batch(&[MAX_BYTES * 2, 1], false), 1);
    // isolation: one at a time
    assert_eq!(batch(&[10; 5], true), 1);
    // the byte limit counts the body exactly: brackets and commas
    for lens in [
        vec![1000; 300],
        vec![MAX_BYTES / 2 - 2, 1, 1],
        vec![65_535; 9],
    ] {
        let n = batch(&lens, false);
        let entries: Vec<String> = lens[..n].iter().map(|&l| "x".repeat(l)).collect();
        assert!(body(&entries).len() <= MAX_BYTES, "{n} of {lens:?}");
        if n < lens.len() && n < MAX_ENTRIES {
            let more: Vec<String> = lens[..=n].iter().map(|&l| "x".repeat(l)).collect();
            assert!(
                body(&more).len() > MAX_BYTES,
                "{n} of {lens:?} could take one more"
            );
        }
    }
    assert_eq!(batch(&[MAX_BYTES - 2], false), 1);
    assert_eq!(batch(&[MAX_BYTES - 3, 1], false), 1);
    assert_eq!(batch(&[MAX_BYTES - 4, 1], false), 2);
}

#[test]
fn the_body_is_a_json_array_of_the_entries() {
    let entries = vec![entry("1", "a/b", b"one"), entry("1", "a/b", b"two")];
    let v = parse(&body(&entries));
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2);
    assert_eq!(arr[1].get("msg").and_then(|m| m.as_str()), Some("two"));
    assert_eq!(body(&[]), "[]");
}
