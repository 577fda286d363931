use super::*;
use crate::state::State;

#[test]
fn glob_is_pvrs_doublestar() {
    // (pattern, key, matches) -- signatures.md: as pvr (doublestar v1.3.4), not as fnmatch
    let table: &[(&str, &str, bool)] = &[
        ("**", "bsp/run.json", true),
        ("**", "#spec", true),
        ("**", "device.json", true),
        ("*", "device.json", true),
        ("*", "bsp/run.json", false),
        ("bsp/**", "bsp/run.json", true),
        ("bsp/**", "bsp/a/b/c", true),
        ("bsp/**", "bsp", false),
        ("bsp/**", "bspx/run.json", false),
        ("bsp/**", "_config/bsp/x", false),
        ("**/src.json", "src.json", true),
        ("**/src.json", "a/src.json", true),
        ("**/src.json", "a/b/c/src.json", true),
        ("**/src.json", "a/xsrc.json", false),
        ("**/src.json", "a/src.json/x", false),
        ("a/**/z", "a/z", true),
        ("a/**/z", "a/b/c/z", true),
        ("a/**/z", "a/b/c/y", false),
        ("_sigs/bsp.json", "_sigs/bsp.json", true),
        ("_sigs/bsp.json", "_sigs/bsp.jsonx", false),
        ("a*/b", "abc/b", true),
        ("a*/b", "abc/d/b", false),
        ("*.json", "device.json", true),
        ("h?llo/**", "hello/run.json", true),
        ("h?llo/**", "hllo/run.json", false),
        ("[a-c]x", "bx", true),
        ("[a-c]x", "dx", false),
        ("[^a-c]x", "dx", true),
        ("[^a-c]x", "ax", false),
        ("{hello,world}/**", "world/run.json", true),
        ("{hello,world}/**", "other/run.json", false),
        ("{a/b,c}/d", "a/b/d", true),
        ("\\*", "*", true),
        ("\\*", "x", false),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXbYcZ", false),
        ("*a", "aaa", true),
        ("", "x", false),
    ];
    for (p, k, want) in table {
        assert_eq!(glob(p, k), Ok(*want), "{p} ~ {k}");
    }
    for bad in ["[", "[]", "\\", "{a,b", "[-a]", "[a-]"] {
        let e = glob(bad, "a").unwrap_err();
        assert!(e.contains(&format!("pattern '{bad}'")), "{bad}: {e}");
    }
    // many stars over a long key stay linear (the header is untrusted input)
    let long = "a".repeat(4000);
    assert_eq!(glob(&format!("{}b", "*a".repeat(40)), &long), Ok(false));
}

fn p<'a>(key: &'a str, value: &'a str) -> Pair<'a> {
    Pair {
        key,
        raw_key: key,
        raw_value: value,
    }
}

#[test]
fn selection_is_the_raw_payload_pvr_signs() {
    let pairs = [
        p("#spec", "\"pantavisor-service-system@1\""),
        p("_sigs/bsp.json", "{\"#spec\":\"pvs@2\"}"),
        p("bsp/run.json", "{\"linux\":\"k\"}"),
        p("bsp/src.json", "{}"),
        p("device.json", "{ \"groups\" : [] }"),
        p("hello/run.json", "{}"),
    ];
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let s = select(
        &pairs,
        &v(&["bsp/**", "#spec", "device.json"]),
        &v(&["bsp/src.json", "_sigs/bsp.json"]),
    )
    .unwrap();
    assert_eq!(
        s.payload,
        "{\"#spec\":\"pantavisor-service-system@1\",\"bsp/run.json\":{\"linux\":\"k\"},\
         \"device.json\":{ \"groups\" : [] }}"
    );
    assert_eq!(s.selected, [0, 2, 4]);
    assert_eq!(s.covered, [0, 1, 2, 3, 4], "an exclude covers too");
    // `**` selects every key; an empty include selects none and signs `{}`
    let all = select(&pairs, &v(&["**"]), &[]).unwrap();
    assert_eq!(all.selected, [0, 1, 2, 3, 4, 5]);
    let none = select(&pairs, &[], &[]).unwrap();
    assert_eq!((none.payload.as_str(), none.covered.len()), ("{}", 0));
    assert!(select(&pairs, &v(&["["]), &[]).is_err());
}

#[test]
fn outcome_by_mode() {
    let fail = || vec!["_sigs/a.json: signature does not verify".to_string()];
    let w = || vec!["w".to_string()];
    for mode in [Mode::Lenient, Mode::Strict, Mode::Audit] {
        // a bad signature fails every mode but disabled, audit too (upstream forgives coverage only)
        let e = outcome(mode, fail(), &[], w()).unwrap_err();
        assert_eq!((e.message, e.reasons), (VALIDATION_FAILED, fail()));
        assert_eq!(outcome(mode, vec![], &[], w()), Ok(w()));
    }
    assert_eq!(outcome(Mode::Disabled, fail(), &["x"], w()), Ok(vec![]));
    assert_eq!(outcome(Mode::Lenient, vec![], &["x"], w()), Ok(w()));
    let e = outcome(Mode::Strict, vec![], &["x", "#spec"], w()).unwrap_err();
    assert_eq!(e.message, NOT_COVERED);
    assert_eq!(
        e.reasons,
        [
            "x is not covered by any signature",
            "#spec is not covered by any signature"
        ]
    );
    let ok = outcome(Mode::Audit, vec![], &["x"], w()).unwrap();
    assert_eq!(ok, ["w", "x is not covered by any signature"]);
    assert_eq!(
        e.to_string(),
        "State not fully covered by signatures; x is not covered by any signature; \
         #spec is not covered by any signature"
    );
}

#[test]
fn modes_parse() {
    for (s, m) in [
        ("disabled", Mode::Disabled),
        ("lenient", Mode::Lenient),
        ("strict", Mode::Strict),
        ("audit", Mode::Audit),
    ] {
        assert_eq!(Mode::parse(s), Ok(m));
        assert_eq!(m.as_str(), s);
    }
    assert!(Mode::parse("Strict").unwrap_err().contains("'Strict'"));
}

#[test]
fn algorithms() {
    assert_eq!(alg("RS256"), Ok(Alg::Rs256));
    assert_eq!(alg("ES256"), Ok(Alg::Es256));
    assert_eq!(alg("ES384"), Ok(Alg::Es384));
    assert_eq!(alg("ES512"), Err("unsupported algorithm ES512".into()));
    assert_eq!(alg("none"), Err("algorithm none refused".into()));
    assert_eq!(alg("HS256"), Err("algorithm HS256 refused".into()));
    assert_eq!(alg("PS256"), Err("unsupported algorithm PS256".into()));
}

fn hdr(json: &str) -> Result<Header, String> {
    header(&b64url(json.as_bytes()))
}

#[test]
fn protected_header() {
    let h =
        hdr(r#"{"alg":"ES256","typ":"PVS","pvs":{"include":["**"],"exclude":[]},"x5c":["AAEC"]}"#)
            .unwrap();
    assert_eq!(h.alg, Alg::Es256);
    assert_eq!((h.include, h.exclude), (vec!["**".to_string()], vec![]));
    assert_eq!(h.x5c, [vec![0, 1, 2]]);
    let no_x5c = hdr(r#"{"alg":"RS256","typ":"PVS","pvs":{"include":[],"exclude":[]}}"#).unwrap();
    assert!(no_x5c.x5c.is_empty());
    let cases = [
        (
            r#"{"alg":"RS256","typ":"JWT","pvs":{"include":[],"exclude":[]}}"#,
            "typ 'JWT' is not PVS",
        ),
        (
            r#"{"alg":"RS256","pvs":{"include":[],"exclude":[]}}"#,
            "no string \"typ\"",
        ),
        (
            r#"{"alg":"none","typ":"PVS","pvs":{"include":[],"exclude":[]}}"#,
            "algorithm none refused",
        ),
        (r#"{"alg":"RS256","typ":"PVS"}"#, "no \"pvs\""),
        (
            r#"{"alg":"RS256","typ":"PVS","pvs":{"include":["a"]}}"#,
            "pvs.exclude must be",
        ),
        (
            r#"{"alg":"RS256","typ":"PVS","pvs":{"include":[1],"exclude":[]}}"#,
            "pvs.include must be",
        ),
        (
            r#"{"alg":"RS256","typ":"PVS","pvs":{"include":[],"exclude":[]},"x5c":[]}"#,
            "x5c must be",
        ),
        (
            r#"{"alg":"RS256","typ":"PVS","pvs":{"include":[],"exclude":[]},"x5c":["a-b_"]}"#,
            "x5c must be",
        ),
        ("[]", "not a JSON object"),
        ("{", "protected header: "),
    ];
    for (json, want) in cases {
        let e = hdr(json).unwrap_err();
        assert!(e.contains(want), "{json}: {e}");
    }
    assert_eq!(
        header("e30*"),
        Err("protected header: bad base64url".into())
    );
}

#[test]
fn base64() {
    for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"\xff\xfe\xfd\xfc"] {
        let e = b64url(data);
        assert!(!e.contains('='));
        assert_eq!(b64_decode(&e, true).as_deref(), Some(data));
    }
    assert_eq!(b64url(b"\xfb\xff"), "-_8");
    assert_eq!(b64_decode("+/8=", false), Some(vec![0xfb, 0xff]));
    assert_eq!(
        b64_decode("+/8", true),
        None,
        "standard alphabet in a JWS part"
    );
    assert_eq!(b64_decode("-_8", false), None);
    assert_eq!(b64_decode("Zm9v!", true), None);
    assert_eq!(b64_decode("Z", true), None, "a lone sextet is no byte");
    assert_eq!(b64_decode("Zh", true), None, "non-zero leftover bits");
    assert_eq!(b64_decode("Zg===", true), None);
}

#[test]
fn oem_store_rule() {
    let ok = ["hello/run.json", "_config/hello/x", "device.json"];
    assert!(oem_store_applies(Some("acme"), Some("acme"), &ok));
    assert!(!oem_store_applies(None, Some("acme"), &ok));
    assert!(!oem_store_applies(Some(""), Some(""), &ok));
    assert!(!oem_store_applies(Some("acme"), Some("other"), &ok));
    assert!(!oem_store_applies(Some("acme"), None, &ok));
    assert!(!oem_store_applies(
        Some("acme"),
        Some("acme"),
        &["bsp/run.json"]
    ));
    assert!(!oem_store_applies(
        Some("acme"),
        Some("acme"),
        &["acme/default.config"]
    ));
    assert!(oem_store_applies(
        Some("acme"),
        Some("acme"),
        &["acmex/run.json"]
    ));
    assert!(oem_store_applies(Some("acme"), Some("acme"), &[]));
}

/// A minimal service-system@1 state (no BSP, no containers) with `_sigs/x.json` signed by a
/// P-256 key made here, for the whole of `verify` without files.
#[cfg(feature = "pvs")]
mod with_keys {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn spki_p256(point: &[u8]) -> Vec<u8> {
        let mut alg = vec![0x30, 0x13, 6, 7, 0x2a, 0x86, 0x48, 0xce, 0x3d, 2, 1];
        alg.extend([6, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7]);
        let mut bits = vec![3, point.len() as u8 + 1, 0];
        bits.extend(point);
        let mut out = vec![0x30, (alg.len() + bits.len()) as u8];
        out.extend(alg);
        out.extend(bits);
        out
    }

    #[test]
    fn es256_raw_and_der_and_wrong_key() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let spki = spki_p256(key.public_key().as_ref());
        let sig = key.sign(&rng, b"msg").unwrap();
        let sig = sig.as_ref();
        assert_eq!(
            crypto::verify_signature(Alg::Es256, &spki, b"msg", sig),
            Ok(())
        );
        assert!(crypto::verify_signature(Alg::Es256, &spki, b"msh", sig).is_err());
        assert!(crypto::verify_signature(Alg::Es256, &spki, b"msg", &sig[..63]).is_err());
        // the same r||s as DER: INTEGERs with a leading zero where the top bit is set
        let int = |x: &[u8]| {
            let mut v = x.to_vec();
            while v.len() > 1 && v[0] == 0 && v[1] < 0x80 {
                v.remove(0);
            }
            if v[0] >= 0x80 {
                v.insert(0, 0);
            }
            let mut out = vec![2, v.len() as u8];
            out.extend(v);
            out
        };
        let (r, s) = (int(&sig[..32]), int(&sig[32..]));
        let mut der = vec![0x30, (r.len() + s.len()) as u8];
        der.extend(r);
        der.extend(s);
        assert_eq!(
            crypto::verify_signature(Alg::Es256, &spki, b"msg", &der),
            Ok(())
        );
        // an algorithm that does not fit the key
        let e = crypto::verify_signature(Alg::Rs256, &spki, b"msg", sig).unwrap_err();
        assert!(e.contains("does not fit"), "{e}");
        assert!(crypto::verify_signature(Alg::Es384, &spki, b"msg", sig).is_err());
    }
}

fn minimal() -> State {
    State::parse(br##"{"#spec":"pantavisor-service-system@1"}"##).unwrap()
}

#[test]
fn structure_only_still_decides_coverage() {
    let s = minimal();
    assert_eq!(verify(&s, &Trust::none(), Mode::Lenient, 0), Ok(vec![]));
    let e = verify(&s, &Trust::none(), Mode::Strict, 0).unwrap_err();
    assert_eq!(e.message, NOT_COVERED);
    assert_eq!(e.reasons, ["#spec is not covered by any signature"]);
}

#[cfg(not(feature = "pvs"))]
#[test]
fn without_the_feature_a_signed_state_is_refused_and_an_unsigned_one_judged_on_coverage() {
    let t = Trust::from_dir(
        std::path::Path::new("/nowhere"),
        "ca-certificates",
        "x",
        None,
    )
    .unwrap();
    let signed = State::parse(
        br##"{"#spec":"pantavisor-service-system@1","_sigs/a.json":{"#spec":"pvs@2","protected":"e30","signature":"AA"}}"##,
    )
    .unwrap();
    for m in [Mode::Lenient, Mode::Strict, Mode::Audit] {
        let e = verify(&signed, &t, m, 0).unwrap_err();
        assert_eq!(e.message, VALIDATION_FAILED);
        assert!(
            e.reasons[0].contains(m.as_str()) && e.reasons[0].contains("feature pvs"),
            "{e}"
        );
    }
    assert_eq!(verify(&signed, &t, Mode::Disabled, 0), Ok(vec![]));
    // unsigned: what coverage alone decides (a build without the feature still boots it)
    let unsigned = minimal();
    assert_eq!(verify(&unsigned, &t, Mode::Lenient, 0), Ok(vec![]));
    let e = verify(&unsigned, &t, Mode::Strict, 0).unwrap_err();
    assert_eq!(e.message, NOT_COVERED);
}
