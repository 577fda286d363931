//! What the device reads from the Hub's answers (reference 8.2-8.5), checked before anything
//! becomes a path, a request or a file: ids and revisions are path segments, object ids are
//! sha256 hex, download URLs are absolute. Upstream: `pantahub/pantahub_msg.c`.

use crate::json::{self, Limits, Value};

/// The limits of states from pv-ctrl: a step carries a whole state.
fn doc(body: &[u8], what: &str) -> Result<Value, String> {
    json::parse(body, Limits::default()).map_err(|e| format!("{what}: not JSON: {e}"))
}

fn text<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{what}: no string '{key}'"))
}

/// A name the Hub gives that the device puts in a path (device id, trail id, revision).
fn segment(s: &str, what: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: '{}' is not a usable name",
            s.escape_debug()
        ))
    }
}

/// The device as the Hub knows it (`POST /devices/`, `GET /devices/<id>`).
#[derive(Debug, PartialEq, Eq)]
pub struct Device {
    pub id: String,
    pub prn: Option<String>,
    /// Only in the registration answer.
    pub secret: Option<String>,
    pub challenge: Option<String>,
    /// Empty or absent: not claimed yet.
    pub owner: Option<String>,
}

pub fn device(body: &[u8]) -> Result<Device, String> {
    let what = "device";
    let v = doc(body, what)?;
    let id = text(&v, "id", what)?.to_string();
    segment(&id, "device id")?;
    let opt = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(Device {
        id,
        prn: opt("prn"),
        secret: opt("secret"),
        challenge: opt("challenge"),
        owner: opt("owner"),
    })
}

/// The session token of `POST /auth/login`.
pub fn token(body: &[u8]) -> Result<String, String> {
    let v = doc(body, "login")?;
    let t = text(&v, "token", "login")?;
    // it goes into a header line
    if t.is_empty() || t.bytes().any(|b| b < 0x21 || b == 0x7f) {
        return Err("login: token is empty or has spaces or control bytes".into());
    }
    Ok(t.to_string())
}

/// Whether the device has a trail (`GET /trails/`: an empty list means not yet).
pub fn has_trail(body: &[u8]) -> Result<bool, String> {
    let v = doc(body, "trails")?;
    let a = v.as_array().ok_or("trails: not a list")?;
    Ok(!a.is_empty())
}

/// The first pending step (`GET /trails/<id>/steps?...`): the device takes element 0.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// The revision, the Hub's integer as text.
    pub rev: String,
    /// The state JSON exactly as the Hub sent it (its signatures cover these bytes).
    pub state: String,
    /// The Hub's progress object, as sent (the device's own file wins when it has one).
    pub progress: Option<String>,
    pub commit_msg: Option<String>,
}

pub fn first_step(body: &[u8]) -> Result<Option<Step>, String> {
    let what = "steps";
    let v = doc(body, what)?;
    let a = v.as_array().ok_or("steps: not a list")?;
    let Some(s) = a.first() else { return Ok(None) };
    let src = std::str::from_utf8(body).map_err(|_| "steps: not UTF-8")?;
    let rev = match s.get("rev") {
        Some(r) => r.as_u64().ok_or("steps: 'rev' is not a revision number")?,
        None => return Err("steps: a step without 'rev'".into()),
    };
    let state = s
        .get("state")
        .filter(|st| st.as_object().is_some())
        .ok_or("steps: step without a 'state' object")?;
    Ok(Some(Step {
        rev: rev.to_string(),
        state: state.raw(src).to_string(),
        progress: s
            .get("progress")
            .filter(|p| p.as_object().is_some())
            .map(|p| p.raw(src).to_string()),
        commit_msg: s
            .get("commit-msg")
            .and_then(Value::as_str)
            .map(str::to_string),
    }))
}

/// An object's metadata (`GET /objects/<sha>`).
#[derive(Debug, PartialEq, Eq)]
pub struct Object {
    pub size: u64,
    /// Where to download it from, without the bearer token.
    pub url: String,
}

/// `want` is the object id the state names: the Hub's answer must be about that object.
pub fn object(body: &[u8], want: &str) -> Result<Object, String> {
    let what = "object";
    let v = doc(body, what)?;
    let sha = text(&v, "sha256sum", what)?;
    if sha != want {
        return Err(format!("object: asked for {want}, the Hub answered {sha}"));
    }
    // the Hub sends the size as a string
    let size = match v.get("size") {
        Some(s) => s
            .as_str()
            .and_then(|s| s.parse().ok())
            .or_else(|| s.as_u64())
            .ok_or("object: 'size' is not a byte count")?,
        None => return Err("object: no 'size'".into()),
    };
    let url = text(&v, "signed-geturl", what)?;
    let absolute = url.starts_with("https://") || url.starts_with("http://");
    if !absolute || url.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        return Err(format!(
            "object: '{}' is not a download URL",
            url.escape_debug()
        ));
    }
    Ok(Object {
        size,
        url: url.to_string(),
    })
}

/// User-meta (`GET /devices/<id>/user-meta`): each key with its value as the device stores it
/// (a string as is, anything else as its JSON text); `null` values are left out, as upstream.
pub fn user_meta(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let v = doc(body, "user-meta")?;
    let src = std::str::from_utf8(body).map_err(|_| "user-meta: not UTF-8")?;
    let o = v.as_object().ok_or("user-meta: not an object")?;
    Ok(o.iter()
        .filter(|(_, val)| val.type_name() != "null")
        .map(|(k, val)| {
            let s = match val.as_str() {
                Some(s) => s.to_string(),
                None => val.raw(src).to_string(),
            };
            (k.clone(), s)
        })
        .collect())
}

/// Checks a device id read from the device's own credentials before it goes into a path.
pub fn check_id(id: &str) -> Result<(), String> {
    segment(id, "device id")
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
