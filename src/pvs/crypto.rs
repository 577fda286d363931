//! The trust material and the cryptography (feature `pvs`): the x5c chain to the trust store by
//! rustls-webpki, the signature by ring -- the crypto stack of the Hub's TLS, no other.

use super::{oem_store_applies, Alg, Header};
use pki_types::pem::PemObject;
use pki_types::{
    CertificateDer, SignatureVerificationAlgorithm, SubjectPublicKeyInfoDer, UnixTime,
};
use std::path::Path;
use std::time::Duration;
use webpki::{EndEntityCert, KeyUsage};

/// `<etc>/pantavisor/pvs/trust/`: the CA bundle, the OEM's, `pub.pem`. A file that is missing
/// fails only the signatures that need it, naming it; one that is there but unreadable fails
/// `load`.
pub struct Trust {
    /// None: structure only (`check-state` without `--trust`)
    stores: Option<Stores>,
}

type Store = Result<Vec<CertificateDer<'static>>, String>;

struct Stores {
    ca: (String, Store),
    oem: Option<(String, String, Store)>,
    pub_key: Result<Vec<u8>, String>,
}

/// extendedKeyUsage codeSigning (1.3.6.1.5.5.7.3.3): what pvs leaves carry; one that lists
/// other purposes only is not a signing certificate.
const CODE_SIGNING: &[u8] = &[0x2b, 6, 1, 5, 5, 7, 3, 3];

static CHAIN_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::ED25519,
];

impl Trust {
    /// No trust material: signatures are checked for structure and each one warns that it was
    /// not verified.
    pub fn none() -> Trust {
        Trust { stores: None }
    }

    /// The device's: `<etc>/pantavisor/pvs/trust/`, the store names of `PV_SECUREBOOT_TRUSTSTORE`
    /// and `PV_SECUREBOOT_OEM_TRUSTSTORE` (`.crt` added as upstream does), `PV_OEM_NAME`.
    pub fn load(
        etc: &Path,
        truststore: &str,
        oem_truststore: &str,
        oem_name: Option<&str>,
    ) -> Result<Trust, String> {
        let dir = etc.join("pantavisor/pvs/trust");
        Trust::from_dir(&dir, truststore, oem_truststore, oem_name)
    }

    /// As `load`, from the trust directory itself (`check-state --trust DIR`).
    pub fn from_dir(
        dir: &Path,
        truststore: &str,
        oem_truststore: &str,
        oem_name: Option<&str>,
    ) -> Result<Trust, String> {
        let file = |name: &str| {
            let f = if name.ends_with(".crt") {
                name.to_string()
            } else {
                format!("{name}.crt")
            };
            dir.join(f).display().to_string()
        };
        let ca = file(truststore);
        let stores = Stores {
            ca: (ca.clone(), certs(&ca)?),
            oem: match oem_name.filter(|n| !n.is_empty()) {
                Some(n) => {
                    let f = file(oem_truststore);
                    Some((n.to_string(), f.clone(), certs(&f)?))
                }
                None => None,
            },
            pub_key: pub_key(&dir.join("pub.pem").display().to_string())?,
        };
        Ok(Trust {
            stores: Some(stores),
        })
    }

    /// Whether signatures are verified (false: structure only).
    pub fn verifies(&self) -> bool {
        self.stores.is_some()
    }

    /// One signature's key and signature over `input`; Ok carries warnings.
    pub(crate) fn check(
        &self,
        h: &Header,
        selected: &[&str],
        input: &[u8],
        sig: &[u8],
        now: u64,
    ) -> Result<Vec<String>, String> {
        let Some(st) = &self.stores else {
            return Ok(vec!["signature not verified (no trust store given)".into()]);
        };
        let mut warnings = Vec::new();
        let spki = match h.x5c.split_first() {
            None => st.pub_key.clone().map_err(|e| format!("no x5c, and {e}"))?,
            Some((leaf, rest)) => {
                let leaf = CertificateDer::from(leaf.as_slice());
                let rest: Vec<CertificateDer<'_>> = rest
                    .iter()
                    .map(|c| CertificateDer::from(c.as_slice()))
                    .collect();
                let ee = EndEntityCert::try_from(&leaf).map_err(|e| format!("x5c leaf: {e:?}"))?;
                let cn = common_name(ee.subject());
                let (file, store) = match &st.oem {
                    Some((name, file, store))
                        if oem_store_applies(Some(name), cn.as_deref(), selected) =>
                    {
                        (file, store)
                    }
                    _ => (&st.ca.0, &st.ca.1),
                };
                let store = store.as_ref().map_err(|e| format!("x5c: {e}"))?;
                chain(&ee, store, &rest, now, &mut warnings)
                    .map_err(|e| format!("x5c: certificate chain not trusted by {file}: {e:?}"))?;
                ee.subject_public_key_info().as_ref().to_vec()
            }
        };
        verify_signature(h.alg, &spki, input, sig)?;
        Ok(warnings)
    }
}

fn read(path: &str) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

fn certs(path: &str) -> Result<Store, String> {
    let Some(pem) = read(path)? else {
        return Ok(Err(format!("{path}: missing")));
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{path}: {e}"))?;
    for c in &certs {
        webpki::anchor_from_trusted_cert(c).map_err(|e| format!("{path}: {e:?}"))?;
    }
    if certs.is_empty() {
        return Err(format!("{path}: no certificate"));
    }
    Ok(Ok(certs))
}

fn pub_key(path: &str) -> Result<Result<Vec<u8>, String>, String> {
    let Some(pem) = read(path)? else {
        return Ok(Err(format!("{path}: missing")));
    };
    let k = SubjectPublicKeyInfoDer::from_pem_slice(&pem).map_err(|e| format!("{path}: {e}"))?;
    spki(k.as_ref()).ok_or(format!("{path}: not an RSA, P-256 or P-384 public key"))?;
    Ok(Ok(k.as_ref().to_vec()))
}

/// The chain of `ee` to one of `store` and its validity at `now`. A clock earlier than this
/// binary's build cannot be right (a board without a real-time clock): then the validity is
/// not checked, with a warning, and the chain and signatures still are.
fn chain(
    ee: &EndEntityCert<'_>,
    store: &[CertificateDer<'static>],
    intermediates: &[CertificateDer<'_>],
    now: u64,
    warnings: &mut Vec<String>,
) -> Result<(), webpki::Error> {
    let anchors: Vec<_> = store
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    let at = |secs: u64| {
        let t = UnixTime::since_unix_epoch(Duration::from_secs(secs));
        let usage = KeyUsage::required_if_present(CODE_SIGNING);
        ee.verify_for_usage(CHAIN_ALGS, &anchors, intermediates, t, usage, None, None)
            .map(|_| ())
    };
    let floor = super::clock_floor();
    if now >= floor {
        return at(now);
    }
    warnings.push(format!(
        "the clock reads before {floor} s since 1970 (not set: a board without a real-time \
         clock), so certificate validity was not checked"
    ));
    // some time inside every certificate's validity: each error names the bound to move to
    let mut t = now;
    for _ in 0..8 {
        match at(t) {
            Err(webpki::Error::CertNotValidYet { not_before, .. }) => t = not_before.as_secs(),
            Err(webpki::Error::CertExpired { not_after, .. }) => t = not_after.as_secs(),
            r => return r,
        }
    }
    at(t)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::Rsa => "RSA",
            KeyKind::P256 => "P-256",
            KeyKind::P384 => "P-384",
        })
    }
}

/// ring over the SubjectPublicKeyInfo's key: RS256 PKCS#1 v1.5, ES256/ES384 as JWS writes them
/// (`r||s`, RFC 7518) or DER (what upstream's mbedTLS takes).
pub(crate) fn verify_signature(
    alg: Alg,
    spki_der: &[u8],
    msg: &[u8],
    sig: &[u8],
) -> Result<(), String> {
    use ring::signature as s;
    let (kind, key) = spki(spki_der).ok_or("public key: not an RSA, P-256 or P-384 key")?;
    let algs: &[&'static dyn s::VerificationAlgorithm] = match (alg, kind) {
        (Alg::Rs256, KeyKind::Rsa) => &[&s::RSA_PKCS1_2048_8192_SHA256],
        (Alg::Es256, KeyKind::P256) => &[&s::ECDSA_P256_SHA256_FIXED, &s::ECDSA_P256_SHA256_ASN1],
        (Alg::Es384, KeyKind::P384) => &[&s::ECDSA_P384_SHA384_FIXED, &s::ECDSA_P384_SHA384_ASN1],
        (a, k) => return Err(format!("algorithm {} does not fit the {k} key", a.name())),
    };
    if algs
        .iter()
        .any(|a| s::UnparsedPublicKey::new(*a, key).verify(msg, sig).is_ok())
    {
        Ok(())
    } else {
        Err("signature does not verify".into())
    }
}

/// One DER element: (tag, content, rest).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l, mut b) = b.split_first()?;
    let len = if l < 0x80 {
        usize::from(l)
    } else {
        let n = usize::from(l & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let (len, rest) = b.split_at_checked(n)?;
        b = rest;
        len.iter().fold(0, |a, x| a << 8 | usize::from(*x))
    };
    let (content, rest) = b.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// SubjectPublicKeyInfo: the key kind and the subjectPublicKey bits ring takes.
fn spki(b: &[u8]) -> Option<(KeyKind, &[u8])> {
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 1, 1];
    const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 2, 1];
    const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 3, 1, 7];
    const P384: &[u8] = &[0x2b, 0x81, 4, 0, 0x22];
    let (0x30, seq, _) = der(b)? else { return None };
    let (0x30, alg, rest) = der(seq)? else {
        return None;
    };
    let (0x03, bits, _) = der(rest)? else {
        return None;
    };
    let (0, key) = bits.split_first()? else {
        return None;
    };
    let (0x06, oid, params) = der(alg)? else {
        return None;
    };
    let kind = match oid {
        RSA => KeyKind::Rsa,
        EC => match der(params)? {
            (0x06, P256, _) => KeyKind::P256,
            (0x06, P384, _) => KeyKind::P384,
            _ => return None,
        },
        _ => return None,
    };
    Some((kind, key))
}

/// The subject's commonName (2.5.4.3), the name the OEM store rule compares.
fn common_name(mut name: &[u8]) -> Option<String> {
    while let Some((0x31, set, rest)) = der(name) {
        let mut atvs = set;
        while let Some((0x30, atv, more)) = der(atvs) {
            if let Some((0x06, [0x55, 4, 3], value)) = der(atv) {
                let (_, v, _) = der(value)?;
                return String::from_utf8(v.to_vec()).ok();
            }
            atvs = more;
        }
        name = rest;
    }
    None
}

/// The certificate and key parsers over untrusted bytes (an x5c entry, a pub.pem).
pub(crate) fn fuzz_input(data: &[u8]) {
    let cert = CertificateDer::from(data);
    if let Ok(ee) = EndEntityCert::try_from(&cert) {
        let _ = common_name(ee.subject());
        let _ = spki(ee.subject_public_key_info().as_ref());
    }
    let _ = spki(data);
    let _ = common_name(data);
    let _ = verify_signature(Alg::Es256, data, b"m", data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_truncation() {
        assert_eq!(der(&[0x30, 1, 9, 7]), Some((0x30, &[9u8][..], &[7u8][..])));
        assert_eq!(der(&[4, 0x81, 2, 1, 2]), Some((4, &[1u8, 2][..], &[][..])));
        assert_eq!(
            der(&[4, 0x81, 3, 1, 2]),
            None,
            "content shorter than its length"
        );
        assert_eq!(der(&[4, 0x80]), None, "indefinite length is not DER");
        assert_eq!(der(&[4, 0x84, 0, 0, 0, 1, 0]), None, "over 3 length bytes");
        assert_eq!(der(&[4]), None);
        assert_eq!(spki(&[0x30, 0]), None);
    }

    #[test]
    fn common_name_of_a_subject() {
        // SET { SEQ { OID 2.5.4.6, PrintableString "UK" } }, SET { SEQ { OID 2.5.4.3, UTF8 "ab" } }
        let name = [
            0x31, 9, 0x30, 7, 6, 3, 0x55, 4, 6, 0x13, 0, 0x31, 11, 0x30, 9, 6, 3, 0x55, 4, 3, 0x0c,
            2, b'a', b'b',
        ];
        assert_eq!(common_name(&name).as_deref(), Some("ab"));
        assert_eq!(common_name(&name[..11]), None);
        assert_eq!(common_name(&[]), None);
    }
}
