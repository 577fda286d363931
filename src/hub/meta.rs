//! The metadata mirror (reference 6.3, 8.5, 8.6; upstream `metadata.c`): the Hub's user-meta
//! comes down to the device, the device's device-meta goes up to the Hub. Pure decisions; the
//! daemon reads and writes the device's side through pv-ctrl (`GET`/`PUT`/`DELETE
//! /user-meta/<key>`, `GET /device-meta`), which also applies config-key overrides.

use crate::control::routes::{meta_json, MAX_META};
use crate::storage::meta::valid_key;

/// A change to the device's user-meta.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put(String, String),
    Delete(String),
    /// A key the Hub sent that the device cannot store (a bad name, a value over pv-ctrl's
    /// limit): for the daemon to log; the key is neither set nor deleted.
    Refused(String, &'static str),
}

/// pv-ctrl's `GET /user-meta` or `GET /device-meta` answer as (key, value) pairs: a string
/// value as it is, an object or array as its JSON text. The Hub's `GET /devices/<id>/user-meta`
/// has the same shape (its numbers and booleans become their JSON text, `null`s are left out).
/// `what` names the input in errors.
pub fn pairs(body: &[u8], what: &str) -> Result<Vec<(String, String)>, String> {
    super::wire::user_meta(body)
        .map_err(|e| format!("{what}: {}", e.trim_start_matches("user-meta: ")))
}

/// What makes the device's user-meta (`local`) the Hub's (`hub`): the Hub wins, and a key it
/// does not have is deleted locally. `prev` is the device's user-meta as the previous round
/// left it (`None` in the daemon's first round): a key set or changed on the device since
/// then is kept this round, and goes in the next if the Hub still does not have it. That is
/// upstream's `updated` flag (`usermeta_clear`): keys loaded at boot or set by a container
/// survive one GET, so the first round after a start deletes nothing.
pub fn usermeta_ops(
    hub: &[(String, String)],
    local: &[(String, String)],
    prev: Option<&[(String, String)]>,
) -> Vec<Op> {
    let mut ops = Vec::new();
    for (k, v) in hub {
        if !valid_key(k) {
            ops.push(Op::Refused(k.clone(), "not a usable key name"));
        } else if v.len() as u64 > MAX_META {
            ops.push(Op::Refused(k.clone(), "value over 4096 bytes"));
        } else if value(local, k) != Some(v) {
            ops.push(Op::Put(k.clone(), v.clone()));
        }
    }
    for (k, v) in local {
        let on_hub = value(hub, k).is_some();
        let untouched = prev.is_some_and(|p| value(p, k) == Some(v));
        if !on_hub && untouched {
            ops.push(Op::Delete(k.clone()));
        }
    }
    ops
}

fn value<'a>(set: &'a [(String, String)], k: &str) -> Option<&'a str> {
    set.iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.as_str())
}

/// The device's user-meta once `ops` are applied to `local`: the next round's `prev`.
pub fn after(local: &[(String, String)], ops: &[Op]) -> Vec<(String, String)> {
    let mut out = local.to_vec();
    for op in ops {
        match op {
            Op::Put(k, v) => match out.iter_mut().find(|(key, _)| key == k) {
                Some((_, old)) => old.clone_from(v),
                None => out.push((k.clone(), v.clone())),
            },
            Op::Delete(k) => out.retain(|(key, _)| key != k),
            Op::Refused(..) => {}
        }
    }
    out
}

/// The body of `PUT /devices/<id>/device-meta`: the whole device-meta as one object, a value
/// that is a JSON object or array embedded as JSON, any other as a string (upstream's
/// `pv_metadata_get_meta_string`: `pantahub.online` goes as `"1"`, `interfaces` as an
/// object) -- the same rendering as pv-ctrl's `GET /device-meta`.
pub fn devmeta_body(local: &[(String, String)]) -> String {
    let entries: Vec<(String, Vec<u8>)> = local
        .iter()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    meta_json(&entries)
}

/// Whether the device-meta body differs from the last one the Hub took (`None`: none yet, or
/// the daemon restarted). Upstream PUTs every `PH_METADATA_DEVMETA_INTERVAL` whatever the
/// content; the Hub's copy only changes with the content, so an equal body is not sent again.
pub fn changed(prev: Option<&str>, next: &str) -> bool {
    prev != Some(next)
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
