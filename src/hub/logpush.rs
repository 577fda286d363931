//! Log push (reference 8.7, upstream `ph_logger.c`): the lines of the running revision's log
//! files become the Hub's log entries, POSTed to `/logs/` in bounded batches. Pure: reading
//! the files and keeping their offsets crash-safely is the daemon's.

use crate::json::ObjectWriter;

/// At most this many entries per POST (upstream's `PH_LOGGER_PUSH_MAX_FRAGS`).
pub const MAX_ENTRIES: usize = 200;
/// At most this many bytes of entries per POST (upstream's `PH_LOGGER_PUSH_MAX_BYTES`): the Hub
/// drops a bigger POST without a word.
pub const MAX_BYTES: usize = 256 * 1024;

/// The entry of one log line of `<logdir>/<rev>/<rel>`: `plat` is the first component of
/// `rel`, `src` the rest with its leading `/` (a file right under the revision has platform
/// `pantavisor-UNKNOWN` and itself as source, as upstream). File-pushed lines carry no time
/// and level INFO, as upstream's; NUL bytes become spaces and invalid UTF-8 is replaced.
pub fn entry(rev: &str, rel: &str, line: &[u8]) -> String {
    let (plat, src) = match rel.find('/') {
        // upstream keeps at most 63 bytes of the platform name
        Some(i) => (truncate(&rel[..i], 63), &rel[i..]),
        None => ("pantavisor-UNKNOWN", rel),
    };
    let msg: Vec<u8> = line
        .iter()
        .map(|&b| if b == 0 { b' ' } else { b })
        .collect();
    let mut o = ObjectWriter::new();
    o.uint("tsec", 0)
        .uint("tnano", 0)
        .str("lvl", "INFO")
        .str("src", src)
        .str("plat", plat)
        .str("rev", rev)
        .str("msg", &String::from_utf8_lossy(&msg));
    o.finish()
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The lines in `block`, read from a file at some offset: each with the offset just past it
/// (relative to the block), so a saved position only ever moves past lines that were sent. A
/// last line without its newline waits for the writer, unless the block is `full` (the read
/// buffer filled with no newline at all): then it goes as one line, as upstream's.
pub fn lines(block: &[u8], full: bool) -> Vec<(&[u8], usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while let Some(i) = block[start..].iter().position(|&b| b == b'\n') {
        out.push((&block[start..start + i], start + i + 1));
        start += i + 1;
    }
    if full && out.is_empty() && !block.is_empty() {
        out.push((block, block.len()));
    }
    out
}

/// How many of the leading entries (by their lengths) the next POST takes: at most
/// [`MAX_ENTRIES`], and a [`body`] of at most [`MAX_BYTES`], but always one, so an oversized line
/// still moves on; exactly one while `isolate` (a batch the Hub refused is retried entry by
/// entry to find the line it will never take, which is then dropped with a log line).
pub fn batch(lens: &[usize], isolate: bool) -> usize {
    let mut n = 0;
    // the body so far: `[` `]` and n-1 commas around the entries
    let mut bytes = 2usize;
    for &len in lens {
        let more = len.saturating_add(usize::from(n > 0));
        if n > 0 && (isolate || n >= MAX_ENTRIES || bytes.saturating_add(more) > MAX_BYTES) {
            break;
        }
        n += 1;
        bytes = bytes.saturating_add(more);
    }
    n
}

/// The POST body for `entries`: a JSON array.
pub fn body(entries: &[String]) -> String {
    let mut s = String::with_capacity(entries.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
    s.push('[');
    for (i, e) in entries.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(e);
    }
    s.push(']');
    s
}

#[cfg(test)]
#[path = "logpush_tests.rs"]
mod tests;
