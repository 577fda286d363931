//! Signed states (pvs@2) through the real binary's `check-state`, with a CA and leaves made at
//! run time and states signed as `pvr sig add` signs them (tests/pvs/signer.rs); and the library's
//! `pvs::verify` where the clock must be chosen.
#![cfg(feature = "pvs")]

#[path = "pvs/signer.rs"]
mod signer;

use pantavisor::pvs::{self, Mode, Trust};
use pantavisor::state::State as Parsed;
use signer::{render, sign, v, Pki, Sig, State};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_pantavisor");
const SHA: &str = "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"";
const LONG_AGO: &str = "20200101000000Z";
const FAR: &str = "21200101000000Z";

/// The material every test shares, made once: CA `ca` (trusted), CA `rogue` (not), CA `oemca`
/// (the OEM store), and leaves of each kind.
fn pki() -> &'static Pki {
    static P: OnceLock<Pki> = OnceLock::new();
    P.get_or_init(|| {
        // under target/tmp, replaced by the next run: a static is never dropped
        let p = Pki::new(Path::new(env!("CARGO_TARGET_TMPDIR")).join("pvs"));
        p.ca("ca", "Test Pantavisor CA");
        p.ca("rogue", "Test Pantavisor CA");
        p.ca("oemca", "Test OEM Root");
        p.leaf("rsa", "dev-rsa", "rsa", "ca", LONG_AGO, FAR);
        p.leaf("p256", "dev-p256", "P-256", "ca", LONG_AGO, FAR);
        p.leaf("p384", "dev-p384", "P-384", "ca", LONG_AGO, FAR);
        p.leaf("p521", "dev-p521", "P-521", "ca", LONG_AGO, FAR);
        p.leaf(
            "expired",
            "dev-old",
            "P-256",
            "ca",
            LONG_AGO,
            "20210101000000Z",
        );
        p.leaf("future", "dev-new", "P-256", "ca", "21100101000000Z", FAR);
        p.leaf("untrusted", "dev-rsa", "P-256", "rogue", LONG_AGO, FAR);
        p.leaf("oem", "acme", "P-256", "oemca", LONG_AGO, FAR);
        p.leaf("oemother", "other", "P-256", "oemca", LONG_AGO, FAR);
        for (dir, pubkey) in [("trust", "p256"), ("trust-wrongpub", "p384")] {
            let d = p.path(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(p.path("ca.crt"), d.join("ca-certificates.crt")).unwrap();
            std::fs::copy(p.path("oemca.crt"), d.join("ca-oem-certificates.crt")).unwrap();
            std::fs::write(d.join("pub.pem"), p.public_pem(pubkey)).unwrap();
        }
        p
    })
}

/// bsp + an app's files + a top-level file: what a device state holds, canonical (as pvr has it).
fn base() -> State {
    let mut s = State::new();
    for (k, v) in [
        ("#spec", "\"pantavisor-service-system@1\""),
        ("bsp/kernel.img", SHA),
        ("bsp/pantavisor", SHA),
        (
            "bsp/run.json",
            r#"{"initrd":"pantavisor","linux":"kernel.img"}"#,
        ),
        ("bsp/src.json", r#"{"x":1}"#),
        ("acme/default.config", SHA),
        ("hello/file.txt", SHA),
        ("notes.txt", SHA),
    ] {
        s.insert(k.into(), v.into());
    }
    s
}

fn leaf(name: &str) -> (PathBuf, Vec<PathBuf>) {
    let p = pki();
    (
        p.path(&format!("{name}.key")),
        vec![p.path(&format!("{name}.crt"))],
    )
}

/// Signs `base()` with one leaf over every key but its own signature.
fn signed_by(name: &str) -> State {
    let mut s = base();
    let (key, x5c) = leaf(name);
    let mut sig = Sig::new("all", key, x5c);
    sig.exclude = v(&["_sigs/all.json"]);
    sign(&mut s, &sig);
    s
}

struct Out {
    code: i32,
    stderr: String,
}

fn check_text(text: &str, args: &[&str]) -> Out {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let f = pki().path(&format!("state-{n}.json"));
    std::fs::write(&f, text).unwrap();
    let o = Command::new(BIN)
        .arg("check-state")
        .args(args)
        .arg(&f)
        .env_clear()
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&f);
    Out {
        code: o.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn trust_dir(name: &str) -> String {
    pki().path(name).display().to_string()
}

/// check-state with the test trust store in `mode`.
fn check(s: &State, mode: &str) -> Out {
    check_text(
        &render(s),
        &["--trust", &trust_dir("trust"), "--secureboot", mode],
    )
}

fn ok(o: &Out) {
    assert_eq!(o.code, 0, "expected valid: {}", o.stderr);
}

fn refused(o: &Out, message: &str, reason: &str) {
    assert_eq!(o.code, 1, "expected refused: {}", o.stderr);
    assert!(
        o.stderr.contains(&format!(": {message}\n")) && o.stderr.contains(reason),
        "want '{message}' and '{reason}' in: {}",
        o.stderr
    );
}

#[test]
fn each_algorithm_verifies_and_es512_is_refused() {
    for (leaf, der) in [
        ("rsa", false),
        ("p256", false),
        ("p256", true),
        ("p384", false),
        ("p384", true),
    ] {
        let mut s = base();
        let (key, x5c) = self::leaf(leaf);
        let mut sig = Sig::new("all", key, x5c);
        sig.exclude = v(&["_sigs/all.json"]);
        sig.der = der;
        sign(&mut s, &sig);
        let o = check(&s, "strict");
        assert_eq!(o.code, 0, "{leaf} der={der}: {}", o.stderr);
        assert_eq!(o.stderr, "", "{leaf}: a verified state has nothing to say");
    }
    refused(
        &check(&signed_by("p521"), "lenient"),
        pvs::VALIDATION_FAILED,
        "_sigs/all.json: unsupported algorithm ES512",
    );
}

#[test]
fn a_changed_covered_byte_fails_and_an_excluded_one_does_not() {
    let good = signed_by("rsa");
    ok(&check(&good, "lenient"));
    let mut bad = good.clone();
    bad.insert(
        "bsp/run.json".into(),
        r#"{"initrd":"pantavisor","linux":"kernel.imh"}"#.into(),
    );
    refused(
        &check(&bad, "lenient"),
        pvs::VALIDATION_FAILED,
        "_sigs/all.json: signature does not verify",
    );
    // excluded from the payload but covered: its bytes are free to change
    let mut s = base();
    let (key, x5c) = leaf("p256");
    let mut sig = Sig::new("bsp", key, x5c);
    sig.include = &["**"];
    sig.exclude = v(&["bsp/src.json", "_sigs/bsp.json"]);
    sign(&mut s, &sig);
    s.insert("bsp/src.json".into(), r#"{"x":2}"#.into());
    ok(&check(&s, "strict"));
}

#[test]
fn pretty_printed_and_reordered_copies_fail() {
    let s = signed_by("p256");
    ok(&check(&s, "lenient"));
    let pretty = render(&s).replace("\",\"", "\",\n  \"");
    assert_ne!(pretty, render(&s));
    let o = check_text(&pretty, &["--trust", &trust_dir("trust")]);
    refused(&o, pvs::VALIDATION_FAILED, "signature does not verify");
    // the same members, document order reversed
    let body: Vec<String> = s
        .iter()
        .rev()
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    let o = check_text(
        &format!("{{{}}}", body.join(",")),
        &["--trust", &trust_dir("trust")],
    );
    refused(&o, pvs::VALIDATION_FAILED, "signature does not verify");
}

#[test]
fn chain_must_reach_the_trust_store() {
    refused(
        &check(&signed_by("untrusted"), "lenient"),
        pvs::VALIDATION_FAILED,
        "x5c: certificate chain not trusted by",
    );
    refused(
        &check(&signed_by("expired"), "lenient"),
        pvs::VALIDATION_FAILED,
        "CertExpired",
    );
    refused(
        &check(&signed_by("future"), "lenient"),
        pvs::VALIDATION_FAILED,
        "CertNotValidYet",
    );
}

/// A clock earlier than the build (a board without a real-time clock) cannot tell an expired
/// leaf: the validity is skipped with a warning, the chain and the signature are not.
#[test]
fn an_unset_clock_skips_validity_only() {
    let trust = Trust::from_dir(&pki().path("trust"), "ca-certificates", "x", None).unwrap();
    let verify = |s: &State, now| {
        let parsed = Parsed::parse(render(s).as_bytes()).unwrap();
        pvs::verify(&parsed, &trust, Mode::Strict, now)
    };
    let unset = 86_400; // 1970-01-02
    let w = verify(&signed_by("expired"), unset).unwrap();
    assert!(
        w.len() == 1 && w[0].contains("validity was not checked"),
        "{w:?}"
    );
    assert!(verify(&signed_by("future"), unset).is_ok());
    let e = verify(&signed_by("untrusted"), unset).unwrap_err();
    assert!(e.reasons[0].contains("not trusted"), "{e}");
    let mut bad = signed_by("expired");
    bad.insert("notes.txt".into(), SHA.replace('a', "b"));
    assert_eq!(
        verify(&bad, unset).unwrap_err().message,
        pvs::VALIDATION_FAILED
    );
    // a set clock checks it
    let set = pvs::clock_floor() + 1;
    assert!(verify(&signed_by("expired"), set).is_err());
}

#[test]
fn without_x5c_pub_pem_is_the_key() {
    let mut s = base();
    sign(&mut s, &Sig::new("k", pki().path("p256.key"), vec![]));
    // `**` covers the signature's own key too, so strict is satisfied
    ok(&check(&s, "strict"));
    let wrong = check_text(&render(&s), &["--trust", &trust_dir("trust-wrongpub")]);
    refused(
        &wrong,
        pvs::VALIDATION_FAILED,
        "_sigs/k.json: algorithm ES256 does not fit the P-384 key",
    );
    let none = check_text(&render(&s), &["--trust", &trust_dir("nowhere")]);
    refused(&none, pvs::VALIDATION_FAILED, "no x5c, and ");
    assert!(
        none.stderr.contains("nowhere/pub.pem: missing"),
        "{}",
        none.stderr
    );
    // another P-256 key: the right kind, the wrong key
    let mut other = base();
    sign(&mut other, &Sig::new("k", pki().path("oem.key"), vec![]));
    refused(
        &check(&other, "lenient"),
        pvs::VALIDATION_FAILED,
        "signature does not verify",
    );
}

#[test]
fn coverage_by_mode() {
    let mut s = base();
    let (key, x5c) = leaf("p256");
    let mut sig = Sig::new("app", key, x5c);
    sig.include = &["hello/**"];
    sig.exclude = v(&["_sigs/app.json"]);
    sign(&mut s, &sig);
    ok(&check(&s, "lenient"));
    let o = check(&s, "strict");
    refused(
        &o,
        pvs::NOT_COVERED,
        "notes.txt is not covered by any signature",
    );
    assert!(o.stderr.contains("#spec is not covered"), "{}", o.stderr);
    assert!(!o.stderr.contains("hello/file.txt is not"), "{}", o.stderr);
    let a = check(&s, "audit");
    ok(&a);
    assert!(
        a.stderr.contains("warning: notes.txt is not covered"),
        "{}",
        a.stderr
    );
    ok(&check(&s, "disabled"));
    // unsigned
    refused(
        &check(&base(), "strict"),
        pvs::NOT_COVERED,
        "bsp/run.json is not covered",
    );
    ok(&check(&base(), "lenient"));
}

#[test]
fn empty_selection_signs_an_empty_object() {
    let mut s = base();
    let (key, x5c) = leaf("rsa");
    let mut sig = Sig::new("none", key, x5c);
    sig.include = &[];
    sig.exclude = v(&["**"]);
    sign(&mut s, &sig);
    // nothing signed, everything covered (by the exclude)
    ok(&check(&s, "strict"));
    let mut changed = s.clone();
    changed.insert("notes.txt".into(), SHA.replace('a', "c"));
    ok(&check(&changed, "strict"));
}

#[test]
fn oem_store() {
    let with_oem = |s: &State, name: &str| {
        check_text(
            &render(s),
            &["--trust", &trust_dir("trust"), "--oem-name", name],
        )
    };
    let oem_signed = |leaf_name: &str, include: &'static [&'static str]| {
        let mut s = base();
        let (key, x5c) = leaf(leaf_name);
        let mut sig = Sig::new("oem", key, x5c);
        sig.include = include;
        sign(&mut s, &sig);
        s
    };
    let app = oem_signed("oem", &["hello/**", "notes.txt"]);
    ok(&with_oem(&app, "acme"));
    // without PV_OEM_NAME, or another name, the leaf is checked against the main store
    let o = check_text(&render(&app), &["--trust", &trust_dir("trust")]);
    refused(&o, pvs::VALIDATION_FAILED, "not trusted by");
    refused(
        &with_oem(&app, "other"),
        pvs::VALIDATION_FAILED,
        "not trusted by",
    );
    // a leaf of the OEM CA whose CN is not the OEM's name
    let other = oem_signed("oemother", &["hello/**"]);
    refused(
        &with_oem(&other, "acme"),
        pvs::VALIDATION_FAILED,
        "ca-certificates.crt",
    );
    // the OEM may sign neither the BSP nor its own configuration
    for include in [&["bsp/**"][..], &["acme/**"][..]] {
        let s = oem_signed("oem", include);
        refused(
            &with_oem(&s, "acme"),
            pvs::VALIDATION_FAILED,
            "ca-certificates.crt",
        );
    }
}

/// Replaces `_sigs/all.json`'s fields in `s`.
fn tamper(s: &State, protected: Option<&str>, signature: Option<&str>) -> State {
    let obj = &s["_sigs/all.json"];
    let field = |f: &str| {
        let start = obj.find(&format!("\"{f}\":\"")).unwrap() + f.len() + 4;
        obj[start..start + obj[start..].find('"').unwrap()].to_string()
    };
    let (p, g) = (field("protected"), field("signature"));
    let mut t = s.clone();
    t.insert(
        "_sigs/all.json".into(),
        format!(
            "{{\"#spec\":\"pvs@2\",\"protected\":\"{}\",\"signature\":\"{}\"}}",
            protected.unwrap_or(&p),
            signature.unwrap_or(&g)
        ),
    );
    t
}

#[test]
fn malformed_signatures() {
    let s = signed_by("rsa");
    let sig = &s["_sigs/all.json"];
    let g = sig[sig.find("\"signature\":\"").unwrap() + 13..sig.len() - 2].to_string();
    let cases = [
        (
            tamper(&s, None, Some(&g[..g.len() - 2])),
            "signature does not verify",
        ),
        (
            tamper(&s, None, Some(&format!("{}*", &g[1..]))),
            "signature: bad base64url",
        ),
        (
            tamper(&s, Some("e30*"), None),
            "protected header: bad base64url",
        ),
    ];
    for (t, reason) in cases {
        refused(&check(&t, "lenient"), pvs::VALIDATION_FAILED, reason);
    }
    let variant = |alg: Option<&'static str>, typ: &'static str, key: &str| {
        let mut s = base();
        let (key, x5c) = leaf(key);
        let mut sig = Sig::new("all", key, x5c);
        sig.alg = alg;
        sig.typ = typ;
        sign(&mut s, &sig);
        s
    };
    refused(
        &check(&variant(None, "JWT", "rsa"), "lenient"),
        pvs::VALIDATION_FAILED,
        "typ 'JWT' is not PVS",
    );
    refused(
        &check(&variant(Some("none"), "PVS", "rsa"), "lenient"),
        pvs::VALIDATION_FAILED,
        "algorithm none refused",
    );
    refused(
        &check(&variant(Some("HS256"), "PVS", "p256"), "lenient"),
        pvs::VALIDATION_FAILED,
        "algorithm HS256 refused",
    );
}

#[test]
fn without_trust_structure_only() {
    let mut s = signed_by("rsa");
    let (key, x5c) = leaf("p256");
    sign(&mut s, &Sig::new("second", key, x5c));
    let o = check_text(&render(&s), &[]);
    assert_eq!(o.code, 0, "{}", o.stderr);
    let lines: Vec<&str> = o.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one warning per signature: {}", o.stderr);
    assert!(
        lines.iter().all(|l| l.contains("signature not verified")),
        "{lines:?}"
    );
    // structure is still checked
    let bad = tamper(&s, Some("e30"), None);
    refused(
        &check_text(&render(&bad), &[]),
        pvs::VALIDATION_FAILED,
        "no string \"typ\"",
    );
}

#[test]
fn usage_errors_exit_2() {
    let text = render(&base());
    for args in [
        &["--secureboot", "paranoid"][..],
        &["--trust"][..],
        &["--bogus"][..],
    ] {
        let o = check_text(&text, args);
        assert_eq!(o.code, 2, "{args:?}: {}", o.stderr);
        assert!(
            o.stderr.contains("usage: pantavisor check-state"),
            "{}",
            o.stderr
        );
    }
    // a trust store that is there but is no certificate bundle
    let d = pki().path("trust-broken");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("ca-certificates.crt"), "garbage").unwrap();
    let o = check_text(&text, &["--trust", &d.display().to_string()]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(
        o.stderr.contains("ca-certificates.crt: no certificate"),
        "{}",
        o.stderr
    );
}

/// Upstream's developer keys (`pvs.defaultkeys.tar.gz`, used from there), unpacked under `dir`
/// of the test PKI: the directory holding them.
fn upstream_keys(dir: &str) -> PathBuf {
    let tgz = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/upstream/pvtests/local/common/pvs/pvs.defaultkeys.tar.gz");
    let d = pki().path(dir);
    std::fs::create_dir_all(&d).unwrap();
    let st = Command::new("tar")
        .arg("xzf")
        .arg(&tgz)
        .arg("-C")
        .arg(&d)
        .status()
        .unwrap();
    assert!(st.success(), "{}", tgz.display());
    d.join("pvs")
}

/// Upstream's developer key and leaf (`pvs.defaultkeys.tar.gz`) sign with this signer, and the
/// state verifies against upstream's `ca-certificates.crt`: interop with the real CA material.
/// That leaf expires on 2026-12-20, so the clock is fixed inside its validity here.
#[test]
fn upstream_developer_keys_verify() {
    let pvs_dir = upstream_keys("upstream");
    let mut s = base();
    let mut sig = Sig::new(
        "bsp",
        pvs_dir.join("key.default.pem"),
        vec![pvs_dir.join("x5c.default.pem")],
    );
    sig.include = &["bsp/**", "#spec"];
    sig.exclude = v(&["bsp/src.json", "_sigs/bsp.json"]);
    sign(&mut s, &sig);
    let trust = Trust::from_dir(&pvs_dir, "ca-certificates", "ca-oem-certificates", None).unwrap();
    let parsed = Parsed::parse(render(&s).as_bytes()).unwrap();
    let dec_5_2026 = 1_796_428_800;
    assert_eq!(
        pvs::verify(&parsed, &trust, Mode::Lenient, dec_5_2026),
        Ok(vec![])
    );
    let mut bad = s.clone();
    bad.insert("bsp/pantavisor".into(), SHA.replace('a', "d"));
    let parsed = Parsed::parse(render(&bad).as_bytes()).unwrap();
    assert!(pvs::verify(&parsed, &trust, Mode::Lenient, dec_5_2026).is_err());
}

/// Signatures made by the real pvr: upstream's signed fixture states, re-serialised as pvr
/// keeps states (canonical JSON: the stored copies are pretty-printed), verify against the
/// developer CA they were made with. Their leaves expired on 2024-09-14, so the clock is one
/// before the build, which skips validity only.
#[test]
fn pvr_made_signatures_verify() {
    let upstream = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    let trust = Trust::from_dir(&upstream_keys("pvr-made"), "ca-certificates", "x", None).unwrap();
    let (mut total, mut failed) = (0, Vec::new());
    let mut files: Vec<PathBuf> = std::fs::read_dir(upstream.join("fixtures/states"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for p in files {
        let canonical = Command::new("python3")
            .args([
                "-c",
                "import json,sys; sys.stdout.write(json.dumps(json.load(open(sys.argv[1])), \
                 sort_keys=True, separators=(',',':'), ensure_ascii=False))",
            ])
            .arg(&p)
            .output()
            .unwrap();
        assert!(canonical.status.success(), "{}", p.display());
        let s = Parsed::parse(&canonical.stdout).unwrap();
        total += s.signatures().len();
        if let Err(r) = pvs::verify(&s, &trust, Mode::Lenient, 86_400) {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            failed.extend(r.reasons.into_iter().map(|r| format!("{name}: {r}")));
        }
    }
    assert_eq!(total, 17, "signatures in the fixture states");
    // bsp_init's BSP leaf is of another CA ("PVS Sign Sub CA (EC)"); initial_state's
    // _hostconfig signature includes `_hostconfig/**`, which that state no longer has
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(
        failed[0].starts_with("bsp_init.json: _sigs/bsp.json: x5c: certificate chain not trusted")
    );
    assert!(failed[0].ends_with("UnknownIssuer"), "{}", failed[0]);
    assert_eq!(
        failed[1],
        "initial_state.json: _sigs/_hostconfig.json: signature does not verify"
    );
}
