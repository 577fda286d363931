use super::*;

fn p(s: &str) -> Result<Value, Error> {
    parse(s.as_bytes(), Limits::default())
}

fn kind_of(s: &str) -> ErrorKind {
    match p(s) {
        Ok(v) => panic!("{s:?} parsed as {v:?}"),
        Err(e) => e.kind,
    }
}

#[test]
fn scalars_and_spans() {
    let doc = r#" {"a": [1, -2.5e3, true, false, null], "b" : "x\ty"} "#;
    let v = p(doc).unwrap();
    assert_eq!(
        v.raw(doc),
        r#"{"a": [1, -2.5e3, true, false, null], "b" : "x\ty"}"#
    );
    let a = v.get("a").unwrap();
    assert_eq!(a.raw(doc), "[1, -2.5e3, true, false, null]");
    let items = a.as_array().unwrap();
    assert_eq!(items[0].as_u64(), Some(1));
    assert_eq!(items[1].raw(doc), "-2.5e3");
    assert_eq!(items[1].as_f64(), Some(-2500.0));
    assert_eq!(items[1].as_i64(), None);
    assert_eq!(items[2].as_bool(), Some(true));
    assert_eq!(items[3].as_bool(), Some(false));
    assert_eq!(items[4].kind, Kind::Null);
    let b = v.get("b").unwrap();
    assert_eq!(b.as_str(), Some("x\ty"));
    assert_eq!(b.raw(doc), r#""x\ty""#);
    assert_eq!(
        v.raw("short"),
        "",
        "a foreign doc gives empty text, not a panic"
    );
}

#[test]
fn members_keep_document_order() {
    let v = p(r#"{"z":1,"a":2,"m":3}"#).unwrap();
    let keys: Vec<&str> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(keys, ["z", "a", "m"]);
}

#[test]
fn escapes() {
    let v = p(r#""\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac""#).unwrap();
    assert_eq!(v.as_str(), Some("\"\\/\u{8}\u{c}\n\r\tAé€"));
    assert_eq!(kind_of(r#""\x""#), ErrorKind::InvalidEscape);
    assert_eq!(kind_of(r#""\u12g4""#), ErrorKind::InvalidEscape);
    assert_eq!(kind_of(r#""\u12"#), ErrorKind::UnexpectedEnd);
    assert_eq!(kind_of("\"a\u{1}b\""), ErrorKind::ControlCharInString);
    assert_eq!(kind_of("\"a\nb\""), ErrorKind::ControlCharInString);
    assert_eq!(kind_of("\"abc"), ErrorKind::UnexpectedEnd);
    // raw UTF-8 passes through
    assert_eq!(p("\"grüß 😀\"").unwrap().as_str(), Some("grüß 😀"));
}

#[test]
fn surrogates() {
    assert_eq!(p(r#""\ud83d\ude00""#).unwrap().as_str(), Some("😀"));
    assert_eq!(p(r#""\uD834\uDD1E""#).unwrap().as_str(), Some("𝄞"));
    assert_eq!(kind_of(r#""\ud83d""#), ErrorKind::LoneSurrogate);
    assert_eq!(kind_of(r#""\ud83dx""#), ErrorKind::LoneSurrogate);
    assert_eq!(kind_of(r#""\ud83d\u0041""#), ErrorKind::LoneSurrogate);
    assert_eq!(kind_of(r#""\ude00""#), ErrorKind::LoneSurrogate);
    assert_eq!(kind_of(r#""\ud83d\n""#), ErrorKind::LoneSurrogate);
}

#[test]
fn numbers() {
    for ok in [
        "0",
        "-0",
        "1",
        "-1",
        "10",
        "0.5",
        "1e5",
        "1E+5",
        "1e-5",
        "-12.34e10",
    ] {
        let v = p(ok).unwrap();
        assert_eq!(v.number_text(), Some(ok), "{ok}");
    }
    for bad in [
        "01", "-01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "1.e3", "--1", "NaN",
    ] {
        assert!(p(bad).is_err(), "{bad} must be refused");
    }
    assert_eq!(p("18446744073709551615").unwrap().as_u64(), Some(u64::MAX));
    assert_eq!(p("18446744073709551616").unwrap().as_u64(), None);
    assert_eq!(p("-9223372036854775808").unwrap().as_i64(), Some(i64::MIN));
    assert_eq!(p("9223372036854775808").unwrap().as_i64(), None);
    assert_eq!(p("-1").unwrap().as_u64(), None);
    assert_eq!(p("1.0").unwrap().as_u64(), None);
    assert_eq!(p("2.0").unwrap().as_f64(), Some(2.0));
    assert_eq!(p("1e999").unwrap().as_f64(), None);
    assert_eq!(
        p("\"5\"").unwrap().as_u64(),
        None,
        "strings are not numbers"
    );
}

#[test]
fn structure_errors() {
    assert_eq!(kind_of(""), ErrorKind::UnexpectedEnd);
    assert_eq!(kind_of("   "), ErrorKind::UnexpectedEnd);
    assert_eq!(kind_of("[1,]"), ErrorKind::ExpectedValue);
    assert_eq!(kind_of(r#"{"a":1,}"#), ErrorKind::ExpectedKey);
    assert_eq!(kind_of(r#"{"a" 1}"#), ErrorKind::ExpectedColon);
    assert_eq!(kind_of(r#"{a:1}"#), ErrorKind::ExpectedKey);
    assert_eq!(kind_of("[1 2]"), ErrorKind::ExpectedCommaOrEnd);
    assert_eq!(kind_of("[1"), ErrorKind::UnexpectedEnd);
    assert_eq!(kind_of("{"), ErrorKind::UnexpectedEnd);
    assert_eq!(kind_of("/* c */ 1"), ErrorKind::ExpectedValue);
    assert_eq!(kind_of("tru"), ErrorKind::ExpectedValue);
    assert_eq!(kind_of("nul"), ErrorKind::ExpectedValue);
    assert_eq!(kind_of("\u{feff}{}"), ErrorKind::ExpectedValue, "no BOM");
}

#[test]
fn trailing_garbage() {
    assert_eq!(kind_of("{} x"), ErrorKind::TrailingCharacters);
    assert_eq!(kind_of("1 2"), ErrorKind::TrailingCharacters);
    assert_eq!(kind_of("{}{}"), ErrorKind::TrailingCharacters);
    let e = p("[] ]").unwrap_err();
    assert_eq!(e.offset, 3);
    assert!(p("{} \n\t\r ").is_ok());
}

#[test]
fn duplicate_keys() {
    let e = p(r#"{"a":1,"b":2,"a":3}"#).unwrap_err();
    assert_eq!(e.kind, ErrorKind::DuplicateKey("a".into()));
    assert!(e.to_string().contains("duplicate key \"a\""), "{e}");
    // also nested, and keys equal only after unescaping
    assert_eq!(
        kind_of(r#"{"x":{"k":1,"\u006b":2}}"#),
        ErrorKind::DuplicateKey("k".into())
    );
    // a big object is checked quickly
    let mut s = String::from("{");
    for i in 0..50_000 {
        s.push_str(&format!("\"k{i}\":0,"));
    }
    s.push_str("\"k49999\":1}");
    assert_eq!(kind_of(&s), ErrorKind::DuplicateKey("k49999".into()));
}

#[test]
fn depth_bomb() {
    let bomb = "[".repeat(1_000_000);
    assert_eq!(kind_of(&bomb), ErrorKind::TooDeep { max: 64 });
    let obj_bomb = "{\"a\":".repeat(1_000_000);
    assert_eq!(kind_of(&obj_bomb), ErrorKind::TooDeep { max: 64 });
    // exactly at the limit is fine
    let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
    assert!(p(&ok).is_ok());
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    assert_eq!(kind_of(&deep), ErrorKind::TooDeep { max: 64 });
    // a caller's huge limit is capped, so the stack stays safe
    let huge = Limits {
        max_depth: usize::MAX,
        max_len: usize::MAX,
        max_values: usize::MAX,
    };
    assert_eq!(
        parse(bomb.as_bytes(), huge).unwrap_err().kind,
        ErrorKind::TooDeep { max: DEPTH_CAP }
    );
}

#[test]
fn size_limit() {
    let mut big = vec![b' '; 17 * 1024 * 1024];
    big[0] = b'1';
    let e = parse(&big, Limits::default()).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::TooLarge {
            len: 17 * 1024 * 1024,
            max: 16 * 1024 * 1024
        }
    );
    let small = Limits {
        max_len: 3,
        ..Limits::default()
    };
    assert!(parse(b"[1]", small).is_ok());
    assert!(parse(b"[1] ", small).is_err());
}

#[test]
fn invalid_utf8() {
    let e = parse(b"{\"a\":\"\xff\"}", Limits::default()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidUtf8);
    assert_eq!(e.offset, 6);
    assert!(e.to_string().contains("byte 6"), "{e}");
    // truncated multi-byte sequence at the end
    assert_eq!(
        parse(b"\"\xe2\x82", Limits::default()).unwrap_err().kind,
        ErrorKind::InvalidUtf8
    );
}

#[test]
fn writer_escapes() {
    let mut s = String::new();
    escape_str("a\"b\\c\n\r\t\u{8}\u{c}\u{1}\u{1f}é/", &mut s);
    assert_eq!(s, r#""a\"b\\c\n\r\t\b\f\u0001\u001fé/""#);
}

#[test]
fn writer_round_trip() {
    let mut inner = ArrayWriter::new();
    inner.str("x").num(-3).uint(u64::MAX).bool(false).null();
    let inner = inner.finish();
    let mut w = ObjectWriter::new();
    w.str("status", "DONE")
        .str("status-msg", "quote \" and \\ and \u{7}")
        .num("progress", 100)
        .bool("ok", true)
        .null("none")
        .raw("list", &inner)
        .raw("empty", &ObjectWriter::new().finish());
    let out = w.finish();
    // compact, keys in call order
    assert!(
        out.starts_with(
            r#"{"status":"DONE","status-msg":"quote \" and \\ and \u0007","progress":100,"#
        ),
        "{out}"
    );
    assert!(out.ends_with(r#","empty":{}}"#), "{out}");
    let v = p(&out).unwrap();
    let keys: Vec<&str> = v
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "status",
            "status-msg",
            "progress",
            "ok",
            "none",
            "list",
            "empty"
        ]
    );
    assert_eq!(v.get("status").unwrap().as_str(), Some("DONE"));
    assert_eq!(
        v.get("status-msg").unwrap().as_str(),
        Some("quote \" and \\ and \u{7}")
    );
    assert_eq!(v.get("progress").unwrap().as_i64(), Some(100));
    assert_eq!(v.get("ok").unwrap().as_bool(), Some(true));
    assert_eq!(v.get("none").unwrap().kind, Kind::Null);
    let list = v.get("list").unwrap();
    assert_eq!(list.raw(&out), inner);
    let l = list.as_array().unwrap();
    assert_eq!(l[0].as_str(), Some("x"));
    assert_eq!(l[1].as_i64(), Some(-3));
    assert_eq!(l[2].as_u64(), Some(u64::MAX));
    assert_eq!(l[3].as_bool(), Some(false));
    assert_eq!(l[4].kind, Kind::Null);
    assert_eq!(
        v.get("empty").unwrap().as_object().map(|o| o.len()),
        Some(0)
    );
    assert_eq!(ArrayWriter::new().finish(), "[]");
}

#[test]
fn writer_round_trips_every_char_class() {
    let all: String = (0u32..0x800).filter_map(char::from_u32).collect();
    let mut s = String::new();
    escape_str(&all, &mut s);
    assert_eq!(p(&s).unwrap().as_str(), Some(all.as_str()));
}

/// Cheap deterministic fuzzing: mutations of every fixture must parse or fail, never panic.
#[test]
fn mutated_fixtures_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/states");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(parse(&bytes, Limits::default()).is_ok());
        for _ in 0..300 {
            let mut m = bytes.clone();
            for _ in 0..(1 + next() % 4) {
                let i = (next() as usize) % m.len().max(1);
                match next() % 4 {
                    0 => m[i] = next() as u8,
                    1 => {
                        m.truncate(i);
                    }
                    2 => m.insert(i, b"{}[]\",:\\0-e"[(next() % 11) as usize]),
                    _ => {
                        m.remove(i.min(m.len().saturating_sub(1)));
                    }
                }
                if m.is_empty() {
                    break;
                }
            }
            let _ = parse(&m, Limits::default());
            n += 1;
        }
    }
    assert!(n > 1000);
}

#[test]
fn value_count_limit_bounds_memory_of_tiny_values() {
    // 8 MiB of "0," is 4 Mi values: within max_len, refused by max_values before the
    // parser allocates ~256 MiB of values for it.
    let mut bomb = b"[".to_vec();
    bomb.extend(b"0,".repeat(4 * 1024 * 1024));
    bomb.extend(b"0]");
    assert_eq!(
        parse(&bomb, Limits::default()).unwrap_err().kind,
        ErrorKind::TooManyValues { max: 64 * 1024 }
    );
    let three = Limits {
        max_values: 3,
        ..Limits::default()
    };
    assert!(parse(b"[1,2]", three).is_ok());
    assert!(parse(b"[1,2,3]", three).is_err());
}

#[test]
fn value_count_is_a_lower_bound_of_the_values_parsed() {
    for (doc, least) in [
        (&b"[0,0,0]"[..], 3),
        (br#"{"a,b":[1,2],"c":"\",x"}"#, 3),
        (b"1", 1),
        (br#"["\\",","]"#, 2),
    ] {
        // whole and byte by byte alike
        let mut whole = ValueCount::default();
        whole.feed(doc);
        let mut bytes = ValueCount::default();
        doc.chunks(1).for_each(|b| bytes.feed(b));
        assert_eq!(
            (whole.at_least(), bytes.at_least()),
            (least, least),
            "{doc:?}"
        );
        let exact = Limits {
            max_values: least - 1,
            ..Limits::default()
        };
        assert!(
            parse(doc, exact).is_err(),
            "fewer values than counted: {doc:?}"
        );
    }
}

#[test]
fn numbers_parse_and_print_as_core_does_for_up_to_15_digits() {
    use super::{parse_f64, write_f64};
    let cases = [
        "0",
        "-0",
        "1",
        "2",
        "1.5",
        "+1.5",
        ".5",
        "5.",
        "1.e2",
        "0.1",
        "0.3",
        "2.25",
        "1e3",
        "1E-3",
        "-2500.0",
        "123456789012345",
        "1.23456789012345",
        "0.000000123",
        "1e22",
        "1e-22",
        "0.0000001",
        "1e20",
        "007.50",
        "1.0000000000000000000000001",
    ];
    for c in cases {
        let want: f64 = c.parse().unwrap();
        assert_eq!(parse_f64(c).map(f64::to_bits), Some(want.to_bits()), "{c}");
        let mut got = String::new();
        write_f64(&mut got, want);
        assert_eq!(got, want.to_string(), "{c}");
    }
    // Past 10^±22 the value is within a few ulps and prints the same 15 digits.
    for c in [
        "12345e-30",
        "9.87654321e200",
        "1e300",
        "1e-300",
        "100000000000000000000000",
    ] {
        let want: f64 = c.parse().unwrap();
        let got = parse_f64(c).unwrap();
        assert!(((got - want) / want).abs() < 1e-15, "{c}: {got} vs {want}");
        let mut s = String::new();
        write_f64(&mut s, got);
        assert_eq!(s, want.to_string(), "{c}");
    }
    for bad in [
        "", "-", ".", "e5", "1e", "1e+", "1.5x", "1..5", "inf", "nan", "1e999", "--1", "1 ",
    ] {
        assert_eq!(parse_f64(bad), None, "{bad:?}");
    }
}
