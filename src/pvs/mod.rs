//! Signed states: pvs@2 JWS signatures in `_sigs/<name>.json` (reference 11.2,
//! `shared/spec/signatures.md`). The rule is to verify exactly what pvr signed: the payload is
//! `{` + `"key":<raw value>` of the selected keys in document order + `}`, never re-serialised.
//!
//! Everything here is pure but the cryptography (`crypto`, feature `pvs`): the selection glob,
//! coverage, the protected header and the mode's outcome. `verify` is the one call the device
//! and `check-state` make.

#[cfg(feature = "pvs")]
mod crypto;
#[cfg(not(feature = "pvs"))]
mod nocrypto;
#[cfg(not(feature = "pvs"))]
use nocrypto as crypto;

pub mod cli;
#[cfg(test)]
mod tests;

pub use crypto::Trust;

use crate::json;
use crate::state::State;
use std::fmt;

/// upstream's messages (pv: `pv_signature_sign_state_str`); pv-ctrl answers
/// `422 {"Error":"Secureboot: <message>"}`.
pub const VALIDATION_FAILED: &str = "Signature validation failed";
pub const NOT_COVERED: &str = "State not fully covered by signatures";

/// No clock can be right before this binary's source was: `SOURCE_DATE_EPOCH` of the build
/// (Buildroot sets it for reproducible builds), else the date of this release. Earlier, the
/// board has no real-time clock and certificate validity cannot be checked.
pub fn clock_floor() -> u64 {
    const RELEASE: u64 = 1_796_083_200; // 2026-12-01
    let built = option_env!("SOURCE_DATE_EPOCH").and_then(|s| s.trim().parse::<u64>().ok());
    built.unwrap_or(0).max(RELEASE)
}

/// `PV_SECUREBOOT_MODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Disabled,
    /// upstream's default: every present signature must verify, unsigned keys are fine.
    Lenient,
    /// as lenient, and every key but `_sigs/*` must be covered by some signature.
    Strict,
    /// as strict, but uncovered keys only warn.
    Audit,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "disabled" => Ok(Mode::Disabled),
            "lenient" => Ok(Mode::Lenient),
            "strict" => Ok(Mode::Strict),
            "audit" => Ok(Mode::Audit),
            _ => Err(format!(
                "secure boot mode '{s}': must be disabled, lenient, strict or audit"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Disabled => "disabled",
            Mode::Lenient => "lenient",
            Mode::Strict => "strict",
            Mode::Audit => "audit",
        }
    }
}

/// A state refused: upstream's `message`, and why, one line per signature or key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub message: &'static str,
    pub reasons: Vec<String>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)?;
        for r in &self.reasons {
            write!(f, "; {r}")?;
        }
        Ok(())
    }
}

/// Checks `state`'s signatures against `trust` as `mode` says, with certificate validity as of
/// `now` (seconds since 1970). Ok carries the warnings (audit's uncovered keys, signatures not
/// verified by a structure-only `Trust::none()`, an unset clock).
pub fn verify(state: &State, trust: &Trust, mode: Mode, now: u64) -> Result<Vec<String>, Refused> {
    if mode == Mode::Disabled {
        return Ok(Vec::new());
    }
    // without the crypto a signature cannot be verified, so a signed state is refused; an
    // unsigned one is judged on coverage alone, as with it (lenient takes it, strict does not)
    let signed = || {
        state
            .signatures()
            .iter()
            .any(|s| s.spec.as_deref() == Some("pvs@2"))
    };
    if cfg!(not(feature = "pvs")) && trust.verifies() && signed() {
        return Err(Refused {
            message: VALIDATION_FAILED,
            reasons: vec![format!(
                "secure boot mode {} needs signature verification, and this build has none \
                 (cargo feature pvs)",
                mode.as_str()
            )],
        });
    }
    let pairs = pairs(state);
    let mut warnings = Vec::new();
    let mut failures = Vec::new();
    let mut covered = vec![false; pairs.len()];
    for sig in state.signatures() {
        if sig.spec.as_deref() != Some("pvs@2") {
            // upstream reads only pvs@2 objects as signatures; this one verifies nothing
            continue;
        }
        match check_one(&pairs, sig, trust, now, &mut covered) {
            Ok(w) => warnings.extend(w.into_iter().map(|w| format!("{}: {w}", sig.key))),
            Err(e) => failures.push(format!("{}: {e}", sig.key)),
        }
    }
    let uncovered = pairs
        .iter()
        .zip(&covered)
        .filter(|(p, c)| !**c && !p.key.starts_with("_sigs/"))
        .map(|(p, _)| p.key)
        .collect::<Vec<_>>();
    outcome(mode, failures, &uncovered, warnings)
}

/// The device's secure boot: the mode and the trust material of `<etc>/pantavisor/pvs/trust/`,
/// read once at boot. Every state the device takes in is checked by [`Policy::check`]: a step
/// upload, LOCAL_RUN, a Hub step, and the booted revision.
pub struct Policy {
    pub mode: Mode,
    /// Err: a trust file that is there but cannot be read or parsed. Fail closed: every signed
    /// state is refused naming it (an unsigned one is judged on coverage, as always).
    trust: Result<Trust, String>,
}

impl Policy {
    pub fn new(mode: Mode, trust: Result<Trust, String>) -> Policy {
        Policy { mode, trust }
    }

    /// The device's, from its configuration (`PV_SECUREBOOT_*`, `PV_OEM_NAME`).
    pub fn of(cfg: &crate::config::Config) -> Policy {
        use crate::config::Key;
        let mode = cfg.secureboot_mode();
        if mode == Mode::Disabled {
            return Policy::disabled();
        }
        let trust = Trust::load(
            std::path::Path::new(cfg.system_etcdir()),
            cfg.get_str(Key::PV_SECUREBOOT_TRUSTSTORE)
                .unwrap_or("ca-certificates"),
            cfg.get_str(Key::PV_SECUREBOOT_OEM_TRUSTSTORE)
                .unwrap_or("ca-oem-certificates"),
            cfg.get_str(Key::PV_OEM_NAME),
        );
        if let Err(e) = &trust {
            crate::pvlog!(Error, "pvs", "secure boot trust store: {e}");
        }
        Policy { mode, trust }
    }

    pub fn disabled() -> Policy {
        Policy {
            mode: Mode::Disabled,
            trust: Ok(Trust::none()),
        }
    }

    /// [`verify`] as of now; warnings are logged.
    pub fn check(&self, state: &State) -> Result<(), Refused> {
        if self.mode == Mode::Disabled {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let warnings = match &self.trust {
            Ok(t) => verify(state, t, self.mode, now)?,
            Err(e) if !state.signatures().is_empty() => {
                return Err(Refused {
                    message: VALIDATION_FAILED,
                    reasons: vec![e.clone()],
                })
            }
            Err(_) => verify(state, &Trust::none(), self.mode, now)?,
        };
        for w in warnings {
            crate::pvlog!(Warn, "pvs", "{w}");
        }
        Ok(())
    }
}

/// The mode's verdict over every signature's result and the keys no signature covers
/// (pv: `pv_signature_verify`): audit forgives coverage only, never a bad signature.
pub(crate) fn outcome(
    mode: Mode,
    failures: Vec<String>,
    uncovered: &[&str],
    mut warnings: Vec<String>,
) -> Result<Vec<String>, Refused> {
    if mode == Mode::Disabled {
        return Ok(Vec::new());
    }
    if !failures.is_empty() {
        return Err(Refused {
            message: VALIDATION_FAILED,
            reasons: failures,
        });
    }
    let line = |k: &&str| format!("{k} is not covered by any signature");
    match mode {
        Mode::Strict if !uncovered.is_empty() => Err(Refused {
            message: NOT_COVERED,
            reasons: uncovered.iter().map(line).collect(),
        }),
        Mode::Audit => {
            warnings.extend(uncovered.iter().map(line));
            Ok(warnings)
        }
        _ => Ok(warnings),
    }
}

/// One top-level member of the state as pvs sees it: `#spec` too, document order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pair<'a> {
    pub key: &'a str,
    pub raw_key: &'a str,
    pub raw_value: &'a str,
}

fn pairs(state: &State) -> Vec<Pair<'_>> {
    let doc = state.raw_str();
    let mut entries = state.entries().iter();
    let mut out = Vec::with_capacity(state.entries().len() + 1);
    // the state keeps every member but `#spec` as an entry; its place comes from the document
    let Ok(root) = json::parse_str(doc, json::Limits::default()) else {
        return out;
    };
    for (k, v) in root.as_object().unwrap_or_default() {
        if k == "#spec" {
            out.push(Pair {
                key: "#spec",
                raw_key: "#spec",
                raw_value: v.raw(doc),
            });
        } else if let Some(e) = entries.next() {
            out.push(Pair {
                key: &e.key,
                raw_key: state.raw_key(e),
                raw_value: state.raw_value(e),
            });
        }
    }
    out
}

/// JWS algorithms: pvr makes RS256 for RSA keys and ES256/384/512 for EC keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alg {
    Rs256,
    Es256,
    Es384,
}

impl Alg {
    #[cfg_attr(not(feature = "pvs"), allow(dead_code))]
    pub(crate) fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }
}

pub(crate) fn alg(name: &str) -> Result<Alg, String> {
    match name {
        "RS256" => Ok(Alg::Rs256),
        "ES256" => Ok(Alg::Es256),
        "ES384" => Ok(Alg::Es384),
        // ring, the one crypto stack, has no P-521
        "ES512" => Err("unsupported algorithm ES512".into()),
        // no key, or a shared secret that would be the public key: never a signature
        "none" => Err("algorithm none refused".into()),
        a if a.starts_with("HS") => Err(format!("algorithm {a} refused")),
        a => Err(format!("unsupported algorithm {a}")),
    }
}

/// The protected header, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub alg: Alg,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// DER certificates, leaf first; empty: `pub.pem` is the key.
    pub x5c: Vec<Vec<u8>>,
}

pub(crate) fn header(protected: &str) -> Result<Header, String> {
    let raw = b64_decode(protected, true).ok_or("protected header: bad base64url")?;
    let h =
        json::parse(&raw, json::Limits::default()).map_err(|e| format!("protected header: {e}"))?;
    if h.as_object().is_none() {
        return Err("protected header: not a JSON object".into());
    }
    let string = |k: &str| {
        h.get(k)
            .and_then(|v| v.as_str())
            .ok_or(format!("protected header: no string \"{k}\""))
    };
    let typ = string("typ")?;
    if typ != "PVS" {
        return Err(format!("protected header: typ '{typ}' is not PVS"));
    }
    let alg = alg(string("alg")?)?;
    let pvs = h.get("pvs").ok_or("protected header: no \"pvs\"")?;
    let list = |k: &str| -> Result<Vec<String>, String> {
        let bad = || format!("protected header: pvs.{k} must be an array of strings");
        let a = pvs.get(k).and_then(|v| v.as_array()).ok_or_else(bad)?;
        a.iter()
            .map(|v| v.as_str().map(String::from).ok_or_else(bad))
            .collect()
    };
    let (include, exclude) = (list("include")?, list("exclude")?);
    let x5c = match h.get("x5c") {
        None => Vec::new(),
        Some(v) => {
            let bad =
                || "protected header: x5c must be an array of base64 certificates".to_string();
            let a = v.as_array().filter(|a| !a.is_empty()).ok_or_else(bad)?;
            a.iter()
                .map(|c| {
                    c.as_str()
                        .and_then(|s| b64_decode(s, false))
                        .ok_or_else(bad)
                })
                .collect::<Result<_, _>>()?
        }
    };
    Ok(Header {
        alg,
        include,
        exclude,
        x5c,
    })
}

/// What one signature selects: its payload, and which pairs it covers (include or exclude).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Selection {
    pub payload: String,
    /// indices of the pairs in the payload
    pub selected: Vec<usize>,
    pub covered: Vec<usize>,
}

/// pvr's `selectPayload`: a key is selected when some include matches and no exclude does.
pub(crate) fn select(
    pairs: &[Pair<'_>],
    include: &[String],
    exclude: &[String],
) -> Result<Selection, String> {
    let any = |globs: &[String], key: &str| -> Result<bool, String> {
        for g in globs {
            if glob(g, key)? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    let mut s = Selection {
        payload: String::from("{"),
        selected: Vec::new(),
        covered: Vec::new(),
    };
    for (i, p) in pairs.iter().enumerate() {
        let (inc, exc) = (any(include, p.key)?, any(exclude, p.key)?);
        if inc || exc {
            s.covered.push(i);
        }
        if inc && !exc {
            if !s.selected.is_empty() {
                s.payload.push(',');
            }
            s.payload.push('"');
            s.payload.push_str(p.raw_key);
            s.payload.push_str("\":");
            s.payload.push_str(p.raw_value);
            s.selected.push(i);
        }
    }
    s.payload.push('}');
    Ok(s)
}

/// The OEM trust store signs only what is neither the BSP nor the OEM's own configuration
/// (pv: `_is_oem_signable`), and only with a leaf whose CN is `PV_OEM_NAME`.
#[cfg_attr(not(feature = "pvs"), allow(dead_code))]
pub(crate) fn oem_store_applies(
    oem_name: Option<&str>,
    leaf_cn: Option<&str>,
    selected: &[&str],
) -> bool {
    let Some(oem) = oem_name.filter(|o| !o.is_empty()) else {
        return false;
    };
    if leaf_cn != Some(oem) {
        return false;
    }
    let own = format!("{oem}/**");
    !selected
        .iter()
        .any(|k| glob("bsp/**", k).unwrap_or(true) || glob(&own, k).unwrap_or(true))
}

fn check_one(
    pairs: &[Pair<'_>],
    sig: &crate::state::Signature,
    trust: &Trust,
    now: u64,
    covered: &mut [bool],
) -> Result<Vec<String>, String> {
    let protected = sig.protected.as_deref().ok_or("no \"protected\"")?;
    let signature = sig.signature.as_deref().ok_or("no \"signature\"")?;
    let h = header(protected)?;
    let s = select(pairs, &h.include, &h.exclude)?;
    for &i in &s.covered {
        if let Some(c) = covered.get_mut(i) {
            *c = true;
        }
    }
    let sig_bytes = b64_decode(signature, true).ok_or("signature: bad base64url")?;
    let input = format!("{protected}.{}", b64url(s.payload.as_bytes()));
    let selected: Vec<&str> = s
        .selected
        .iter()
        .filter_map(|&i| pairs.get(i).map(|p| p.key))
        .collect();
    trust.check(&h, &selected, input.as_bytes(), &sig_bytes, now)
}

/// Fuzz entry (crate::fuzz::pvs): the protected header as base64url text and as JSON, the
/// selection glob (`pattern\nkey`), and the DER/X.509 paths.
pub fn fuzz_input(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = header(&text);
    let _ = header(&b64url(data));
    if let Some((p, k)) = text.split_once('\n') {
        let _ = glob(p, k);
    }
    let _ = b64_decode(&text, false);
    #[cfg(feature = "pvs")]
    crypto::fuzz_input(data);
}

/// base64 (RFC 4648): the URL alphabet for JWS parts, the standard one for x5c; padding optional.
pub(crate) fn b64_decode(s: &str, url: bool) -> Option<Vec<u8>> {
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let (c62, c63) = if url { (b'-', b'_') } else { (b'+', b'/') };
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in body.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            _ if c == c62 => 62,
            _ if c == c63 => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // leftover bits must be zero: one encoding per byte string
    (acc & ((1 << bits) - 1) == 0).then_some(out)
}

/// base64url without padding, as JWS writes it.
pub(crate) fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// pvr's matcher (doublestar v1.3.4, separator '/'): `*`, `?`, `[a-z]`, `[^x]`, `{a,b}`, `\`
/// escapes; `**` as a whole component matches any number of components, so `**` is every key,
/// `**/src.json` any depth, and `X/**` everything under X but not X itself.
pub(crate) fn glob(pattern: &str, name: &str) -> Result<bool, String> {
    let names: Vec<&str> = name.split('/').collect();
    for p in alternatives(pattern, 0)? {
        let comps = split_unescaped(&p);
        if components(&comps, &names).map_err(|e| format!("pattern '{pattern}': {e}"))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `{a,b}` expanded into whole patterns (doublestar lets an alternative hold '/').
fn alternatives(p: &str, depth: usize) -> Result<Vec<String>, String> {
    let bad = |why: &str| format!("pattern '{p}': {why}");
    let b = p.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'{' => {
                let (mut level, mut j, mut cuts) = (0usize, i, vec![i]);
                loop {
                    j += 1;
                    match b.get(j) {
                        None => return Err(bad("unclosed '{'")),
                        Some(b'\\') => j += 1,
                        Some(b'{') => level += 1,
                        Some(b'}') if level == 0 => break,
                        Some(b'}') => level -= 1,
                        Some(b',') if level == 0 => cuts.push(j),
                        _ => {}
                    }
                }
                cuts.push(j);
                if depth > 8 {
                    return Err(bad("alternatives nested too deep"));
                }
                let (head, tail) = (&p[..i], &p[j + 1..]);
                let mut out = Vec::new();
                for w in cuts.windows(2) {
                    let option = &p[w[0] + 1..w[1]];
                    out.extend(alternatives(&format!("{head}{option}{tail}"), depth + 1)?);
                    if out.len() > 256 {
                        return Err(bad("too many alternatives"));
                    }
                }
                return Ok(out);
            }
            _ => i += 1,
        }
    }
    Ok(vec![p.to_string()])
}

fn split_unescaped(p: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (b, mut start, mut i) = (p.as_bytes(), 0, 0);
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'/' => {
                out.push(&p[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(p.get(start..).unwrap_or(""));
    out
}

fn components(pat: &[&str], names: &[&str]) -> Result<bool, String> {
    let Some((first, rest)) = pat.split_first() else {
        return Ok(names.is_empty());
    };
    if *first == "**" {
        if rest.is_empty() {
            return Ok(true);
        }
        for i in 0..names.len() {
            if components(rest, &names[i..])? {
                return Ok(true);
            }
        }
        return Ok(false);
    }
    let Some((name, names_rest)) = names.split_first() else {
        return Ok(false);
    };
    if !component(first, name)? {
        return Ok(false);
    }
    // doublestar: a pattern with components left never matches a name without any
    match (rest.is_empty(), names_rest.is_empty()) {
        (true, true) => Ok(true),
        (false, false) => components(rest, names_rest),
        _ => Ok(false),
    }
}

enum Tok {
    Star,
    Any,
    Lit(char),
    Class(bool, Vec<(char, char)>),
}

fn tokens(p: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = p.chars();
    while let Some(c) = it.next() {
        out.push(match c {
            '*' => Tok::Star,
            '?' => Tok::Any,
            '\\' => Tok::Lit(it.next().ok_or("'\\' at the end")?),
            '[' => {
                let mut set: Vec<char> = Vec::new();
                loop {
                    match it.next().ok_or("unclosed '['")? {
                        ']' => break,
                        '\\' => {
                            set.push('\\');
                            set.push(it.next().ok_or("unclosed '['")?)
                        }
                        c => set.push(c),
                    }
                }
                class(&set)?
            }
            c => Tok::Lit(c),
        });
    }
    Ok(out)
}

fn class(set: &[char]) -> Result<Tok, String> {
    let neg = set.first() == Some(&'^');
    let mut s = set
        .get(usize::from(neg)..)
        .unwrap_or_default()
        .iter()
        .peekable();
    let mut ranges = Vec::new();
    let unescape = |c: char, s: &mut std::iter::Peekable<std::slice::Iter<char>>| {
        if c == '\\' {
            s.next().copied().ok_or("bad '[' class")
        } else {
            Ok(c)
        }
    };
    while let Some(&c) = s.next() {
        if c == '-' {
            return Err("bad '[' class".into());
        }
        let low = unescape(c, &mut s)?;
        let mut high = low;
        if s.peek() == Some(&&'-') {
            s.next();
            match s.next() {
                None | Some('-') => return Err("bad '[' class".into()),
                Some(&h) => high = unescape(h, &mut s)?,
            }
        }
        ranges.push((low, high));
    }
    if set.is_empty() {
        return Err("empty '[]' class".into());
    }
    Ok(Tok::Class(neg, ranges))
}

/// One component; every token but `*` takes one character, so greedy matching with the last
/// star as the only backtrack point is exact and linear.
fn component(pattern: &str, name: &str) -> Result<bool, String> {
    let toks = tokens(pattern)?;
    let name: Vec<char> = name.chars().collect();
    let one = |t: &Tok, c: char| match t {
        Tok::Star => false,
        Tok::Any => true,
        Tok::Lit(l) => *l == c,
        Tok::Class(neg, r) => r.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *neg,
    };
    let (mut t, mut n, mut star) = (0, 0, None);
    while n < name.len() {
        match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, n));
                t += 1;
            }
            Some(tok) if one(tok, name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                Some((st, sn)) => {
                    star = Some((st, sn + 1));
                    t = st + 1;
                    n = sn + 1;
                }
                None => return Ok(false),
            },
        }
    }
    let left = toks.get(t..).unwrap_or_default();
    Ok(left.iter().all(|t| matches!(t, Tok::Star)))
}
