//! The Hub credentials files (reference 7.1, 8.2): `<storage>/config/unclaimed.config` while the
//! device is registered but unclaimed, then `<storage>/config/pantahub.config` (what a device
//! that ran upstream already has, so a migrated device stays the same device on the Hub). As
//! upstream, the file is every key pantahub.config may set, `KEY=value` a line, replaced whole
//! and crash-safely.

use crate::config::{Config, Key, Level};
use crate::storage::fs::{write_atomic, Fs};
use std::io;
use std::path::{Path, PathBuf};

pub const PANTAHUB: &str = "pantahub.config";
pub const UNCLAIMED: &str = "unclaimed.config";

/// `<storage>/config/<name>`.
pub fn path(storage: &Path, name: &str) -> PathBuf {
    storage.join("config").join(name)
}

/// The file's text: each key the `pantahub.config` level may set that has a value, in the
/// key table's order (as upstream writes its table).
pub fn render(cfg: &Config) -> String {
    let mut out = String::new();
    for &k in Key::ALL {
        let def = k.def();
        if def.allowed & (1 << (Level::PhConfFile as u16)) == 0 {
            continue;
        }
        if let Some(v) = cfg.get(k) {
            // a value with a line break would smuggle a second key in
            if !v.contains(['\n', '\r']) {
                out.push_str(def.name);
                out.push('=');
                out.push_str(v);
                out.push('\n');
            }
        }
    }
    out
}

/// Saves the credentials: `unclaimed.config` until the device is claimed, `pantahub.config`
/// from then on (the claim is what makes them the device's for good).
pub fn save(fs: &dyn Fs, storage: &Path, cfg: &Config, claimed: bool) -> io::Result<PathBuf> {
    let p = path(storage, if claimed { PANTAHUB } else { UNCLAIMED });
    crate::storage::fs::create_dir_all(fs, p.parent().unwrap_or(storage))?;
    write_atomic(fs, &p, render(cfg).as_bytes())?;
    Ok(p)
}

#[cfg(test)]
#[path = "creds_tests.rs"]
mod tests;
