//! A signer that works as `pvr sig add` does (pvr `libpvr/pvslib.go` `JwsSign`), for tests
//! only: canonical state JSON (keys sorted, no spaces), the selected keys' `"key":value` in that
//! order as the payload, a JWS with typ `PVS`, the `pvs` selection and `x5c` in the protected
//! header, and `_sigs/<name>.json` = `{"#spec":"pvs@2","protected":..,"signature":..}`.
//! Keys, certificates and signatures are made by the `openssl` CLI, so none of it shares code
//! with the verifier under test.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A state as pvr keeps it: key -> raw JSON value, serialised with keys sorted.
pub type State = BTreeMap<String, String>;

pub fn render(s: &State) -> String {
    let body: Vec<String> = s.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", body.join(","))
}

fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut c = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl CLI");
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Test PKI in a directory: CAs and leaves made at run time, valid for decades unless dated.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn new(dir: PathBuf) -> Pki {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Pki { dir }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    fn p(&self, f: &str) -> String {
        self.path(f).display().to_string()
    }

    fn key(&self, name: &str, kind: &str) {
        let k = self.p(&format!("{name}.key"));
        let (alg, opt) = match kind {
            "rsa" => ("RSA", "rsa_keygen_bits:2048".to_string()),
            curve => ("EC", format!("ec_paramgen_curve:{curve}")),
        };
        openssl(
            &["genpkey", "-algorithm", alg, "-pkeyopt", &opt, "-out", &k],
            b"",
        );
    }

    /// A self-signed CA `<name>.key`/`<name>.crt`.
    pub fn ca(&self, name: &str, cn: &str) {
        self.ca_subject(name, &format!("/CN={cn}"));
    }

    /// A self-signed CA `<name>.key`/`<name>.crt` of subject `subj` (`/C=UK/.../CN=...`).
    pub fn ca_subject(&self, name: &str, subj: &str) {
        self.key(name, "P-256");
        let (k, c) = (
            self.p(&format!("{name}.key")),
            self.p(&format!("{name}.crt")),
        );
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &k,
                "-out",
                &c,
                "-subj",
                subj,
                "-days",
                "36500",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            b"",
        );
    }

    /// A code-signing leaf `<name>.key`/`<name>.crt` of key `kind` (`rsa`, `P-256`, ...) issued
    /// by CA `ca`, valid from `start` to `end` (`YYYYMMDDHHMMSSZ`).
    pub fn leaf(&self, name: &str, cn: &str, kind: &str, ca: &str, start: &str, end: &str) {
        self.key(name, kind);
        let d = self.path(&format!("{name}.ca"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.txt"), "").unwrap();
        std::fs::write(d.join("serial"), "01\n").unwrap();
        let cnf = d.join("ca.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[ca]\ndefault_ca=d\n[d]\ndatabase={0}/index.txt\nnew_certs_dir={0}\n\
                 serial={0}/serial\ndefault_md=sha256\npolicy=p\nunique_subject=no\n\
                 x509_extensions=x\n[p]\ncommonName=supplied\n[x]\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n",
                d.display()
            ),
        )
        .unwrap();
        let (k, csr, crt) = (
            self.p(&format!("{name}.key")),
            self.p(&format!("{name}.csr")),
            self.p(&format!("{name}.crt")),
        );
        let subj = format!("/CN={cn}");
        openssl(
            &["req", "-new", "-key", &k, "-out", &csr, "-subj", &subj],
            b"",
        );
        let (cac, cak) = (self.p(&format!("{ca}.crt")), self.p(&format!("{ca}.key")));
        let cnf = cnf.display().to_string();
        openssl(
            &[
                "ca",
                "-batch",
                "-notext",
                "-config",
                &cnf,
                "-cert",
                &cac,
                "-keyfile",
                &cak,
                "-in",
                &csr,
                "-out",
                &crt,
                "-startdate",
                start,
                "-enddate",
                end,
            ],
            b"",
        );
    }

    /// `pub.pem` of a key.
    pub fn public_pem(&self, name: &str) -> Vec<u8> {
        openssl(
            &["pkey", "-in", &self.p(&format!("{name}.key")), "-pubout"],
            b"",
        )
    }
}

/// One `pvr sig add`.
pub struct Sig<'a> {
    pub name: &'a str,
    pub key: PathBuf,
    /// PEM files of the x5c chain, leaf first; empty: no x5c (the device uses `pub.pem`).
    pub x5c: Vec<PathBuf>,
    pub include: &'a [&'a str],
    /// pvr's default: the signature's own key
    pub exclude: Vec<String>,
    /// None: what pvr picks for the key (RS256, ES256, ES384, ES512).
    pub alg: Option<&'a str>,
    /// ECDSA as DER rather than JWS's `r||s` (what upstream's C expected).
    pub der: bool,
    pub typ: &'a str,
}

impl<'a> Sig<'a> {
    pub fn new(name: &'a str, key: PathBuf, x5c: Vec<PathBuf>) -> Sig<'a> {
        Sig {
            name,
            key,
            x5c,
            include: &["**"],
            exclude: v(&[&format!("_sigs/{name}.json")]),
            alg: None,
            der: false,
            typ: "PVS",
        }
    }
}

pub fn b64(data: &[u8], url: bool) -> String {
    let a: &[u8] = if url {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    } else {
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    };
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(a[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if !url {
                out.push('=');
            }
        }
    }
    out
}

pub fn v(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// pvr's selection (doublestar) for the patterns these tests use.
fn matches(p: &str, k: &str) -> bool {
    if p == "**" {
        return true;
    }
    if let Some(d) = p.strip_suffix("/**") {
        return k.starts_with(&format!("{d}/"));
    }
    if let Some(f) = p.strip_prefix("**/") {
        return k == f || k.ends_with(&format!("/{f}"));
    }
    p == k
}

fn der_certs(pem: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(pem).unwrap();
    let mut out = Vec::new();
    for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
        let body = block.split("-----END CERTIFICATE-----").next().unwrap();
        let one = format!("-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----\n");
        out.push(openssl(&["x509", "-outform", "DER"], one.as_bytes()));
    }
    out
}

/// ECDSA DER `SEQUENCE { INTEGER r, INTEGER s }` to JWS's fixed-width `r||s`.
fn der_to_raw(der: &[u8], width: usize) -> Vec<u8> {
    let mut i = if der[1] & 0x80 != 0 { 3 } else { 2 };
    let mut out = Vec::new();
    for _ in 0..2 {
        assert_eq!(der[i], 2);
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(width)..];
        out.extend(std::iter::repeat_n(0, width - int.len()));
        out.extend(int);
        i += 2 + len;
    }
    out
}

/// Signs `state` and adds `_sigs/<name>.json` to it; returns the signature object.
pub fn sign(state: &mut State, sig: &Sig<'_>) -> String {
    let key_info = String::from_utf8(openssl(
        &[
            "pkey",
            "-in",
            &sig.key.display().to_string(),
            "-noout",
            "-text",
        ],
        b"",
    ))
    .unwrap();
    let picked = if key_info.contains("modulus") {
        "RS256"
    } else if key_info.contains("P-384") {
        "ES384"
    } else if key_info.contains("P-521") {
        "ES512"
    } else {
        "ES256"
    };
    let alg = sig.alg.unwrap_or(picked);
    let list = |v: &[&str]| {
        let q: Vec<String> = v.iter().map(|s| format!("\"{s}\"")).collect();
        format!("[{}]", q.join(","))
    };
    let x5c: Vec<String> = sig
        .x5c
        .iter()
        .flat_map(|p| der_certs(p))
        .map(|d| format!("\"{}\"", b64(&d, false)))
        .collect();
    let x5c = if x5c.is_empty() {
        String::new()
    } else {
        format!(",\"x5c\":[{}]", x5c.join(","))
    };
    let header = format!(
        "{{\"alg\":\"{alg}\",\"pvs\":{{\"exclude\":{},\"include\":{}}},\"typ\":\"{}\"{x5c}}}",
        list(&sig.exclude.iter().map(String::as_str).collect::<Vec<_>>()),
        list(sig.include),
        sig.typ
    );
    let selected: Vec<String> = state
        .iter()
        .filter(|(k, _)| {
            sig.include.iter().any(|p| matches(p, k)) && !sig.exclude.iter().any(|p| matches(p, k))
        })
        .map(|(k, v)| format!("\"{k}\":{v}"))
        .collect();
    let payload = format!("{{{}}}", selected.join(","));
    let protected = b64(header.as_bytes(), true);
    let input = format!("{protected}.{}", b64(payload.as_bytes(), true));
    let key = sig.key.display().to_string();
    let signature = match alg {
        "none" => Vec::new(),
        "HS256" => {
            // HMAC keyed with the public key's PEM: the classic JWS key-confusion forgery
            let public = openssl(&["pkey", "-in", &key, "-pubout"], b"");
            let hex: String = public.iter().map(|b| format!("{b:02x}")).collect();
            let mac = format!("hexkey:{hex}");
            openssl(
                &[
                    "dgst", "-sha256", "-mac", "HMAC", "-macopt", &mac, "-binary",
                ],
                input.as_bytes(),
            )
        }
        _ => {
            let md = match &alg[2..] {
                "384" => "-sha384",
                "512" => "-sha512",
                _ => "-sha256",
            };
            let s = openssl(&["dgst", md, "-sign", &key, "-binary"], input.as_bytes());
            match alg {
                "ES256" if !sig.der => der_to_raw(&s, 32),
                "ES384" if !sig.der => der_to_raw(&s, 48),
                "ES512" if !sig.der => der_to_raw(&s, 66),
                _ => s,
            }
        }
    };
    let obj = format!(
        "{{\"#spec\":\"pvs@2\",\"protected\":\"{protected}\",\"signature\":\"{}\"}}",
        b64(&signature, true)
    );
    state.insert(format!("_sigs/{}.json", sig.name), obj.clone());
    obj
}

/// Base64 (standard or url alphabet, padded or not); None for a character of neither.
#[allow(dead_code)] // tests/upstream_suite.rs
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6 | v as u32) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The subject CN of a DER certificate (upstream's CNs hold no commas).
#[allow(dead_code)] // tests/upstream_suite.rs
pub fn cert_cn(der: &[u8]) -> Option<String> {
    let out = openssl(
        &[
            "x509", "-inform", "DER", "-noout", "-subject", "-nameopt", "RFC2253",
        ],
        der,
    );
    let text = String::from_utf8_lossy(&out);
    text.trim()
        .trim_start_matches("subject=")
        .split(',')
        .find_map(|p| p.strip_prefix("CN="))
        .map(str::to_string)
}
