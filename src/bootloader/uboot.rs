//! `<storage>/boot/uboot.txt`: records `key=value\0`, the last followed by one more `\0`.
//! The U-Boot script loads it with `env import <addr> <filesize>` (text mode, where `\0` and
//! `\n` both end a record, `key=` deletes, a backslash escapes, and an empty record ends the
//! import). Upstream pads the file to 64 KiB with zeros; what follows the end marker is ignored.
use super::{malformed, parse_key, parse_value, Env, FormatError};

/// An empty or all-zero file is an empty env. A file that ends before the end marker was
/// cut short (a torn write) and is an error, not half an env.
pub fn parse(bytes: &[u8]) -> Result<Env, FormatError> {
    let mut env = Env::new();
    if bytes.is_empty() {
        return Ok(env);
    }
    let mut offset = 0;
    for record in bytes.split(|&b| b == 0) {
        if offset >= bytes.len() {
            // the (empty) piece after the last NUL: the end marker never came
            return Err(malformed(offset, "no end marker (file cut short)"));
        }
        if record.is_empty() {
            return Ok(env);
        }
        if offset + record.len() >= bytes.len() {
            return Err(malformed(offset, "record without NUL (file cut short)"));
        }
        if record.contains(&b'\n') {
            // U-Boot's text import would split it into two records
            return Err(malformed(offset, "newline in record"));
        }
        let mut parts = record.splitn(2, |&b| b == b'=');
        let key = parts.next().unwrap_or_default();
        let Some(value) = parts.next() else {
            return Err(malformed(offset, "record without '='"));
        };
        let key = parse_key(key, offset)?;
        let value = parse_value(value.to_vec(), offset + key.len() + 1)?;
        env.entries.push((key, value));
        offset += record.len() + 1;
    }
    // `split` yields at least one piece, so the loop always returns; kept total anyway.
    Err(malformed(offset, "no end marker (file cut short)"))
}

/// The records and the end marker, unpadded (U-Boot imports `filesize` bytes); an empty
/// env is `\0\0`, as upstream's zeroed buffer starts.
pub fn render(env: &Env) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in &env.entries {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    if out.is_empty() {
        out.push(0);
    }
    out.push(0);
    out
}
