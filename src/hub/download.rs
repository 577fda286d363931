//! Resuming an object download (issue 12: upstream restarts from zero): after a cut or a
//! power loss the object's `.tmp` keeps what arrived, and the next request asks only for the
//! rest with `Range`. Pure: the daemon does the I/O and checks the sha256 before publishing.

/// What to ask for, given `have` bytes of an object of `size` bytes already on storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ask {
    /// Everything (nothing kept, or what is kept cannot be a prefix: it is longer).
    All,
    /// `Range: bytes=<from>-`.
    From(u64),
    /// Nothing: the file is whole, check its sha256.
    Verify,
}

pub fn ask(have: u64, size: u64) -> Ask {
    match have {
        0 => Ask::All,
        h if h < size => Ask::From(h),
        h if h == size => Ask::Verify,
        _ => Ask::All,
    }
}

/// What to do with the answer to an [`Ask`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Write the body from offset 0 (the `.tmp` truncated first).
    WriteFromZero,
    /// Append the body to what is kept.
    Append,
    /// What is kept is the whole object: check its sha256.
    Verify,
    /// The answer fits neither what is kept nor the object's start: drop both, and ask for
    /// everything next time.
    Discard,
    /// The signed URL was refused (expired, most likely): ask `GET /objects/<sha>` for a
    /// fresh one, keeping what is on storage.
    NewUrl,
    /// Try again later, keeping what is on storage (the Hub or the network is in trouble).
    Later,
}

/// The answer `status` (with its `Content-Range`, if any) to `asked` for an object of `size`
/// bytes. A server that ignores the Range and answers 200 sends the object whole: it is written
/// from zero. A 206 is appended only when it starts exactly where asked and names the object's
/// size; one from the object's start is written from zero; any other is not trusted. A 206 may
/// end short: what arrives is kept and the rest asked for next time.
pub fn then(asked: Ask, size: u64, status: u16, content_range: Option<&str>) -> Then {
    match status {
        200 => Then::WriteFromZero,
        206 => match content_range.and_then(parse_content_range) {
            Some((start, Some(total))) if total == size && asked == Ask::From(start) => {
                Then::Append
            }
            Some((0, Some(total))) if total == size => Then::WriteFromZero,
            _ => Then::Discard,
        },
        // nothing left to send from there: the kept bytes are the object, or not a prefix
        416 if matches!(asked, Ask::From(_)) => Then::Verify,
        401 | 403 => Then::NewUrl,
        _ => Then::Later,
    }
}

/// `bytes <start>-<end>/<total|*>` as (start, total); `None` when malformed.
pub fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => {
            let t: u64 = t.parse().ok()?;
            if end >= t {
                return None;
            }
            Some(t)
        }
    };
    Some((start, total))
}

/// The `Range` header value for `asked`, if any.
pub fn range_header(asked: Ask) -> Option<String> {
    match asked {
        Ask::From(from) => Some(format!("bytes={from}-")),
        Ask::All | Ask::Verify => None,
    }
}

/// What an update may still take of the storage (upstream's "real free"): the free bytes above
/// the `PV_STORAGE_GC_RESERVED` percent of the whole kept for the device, or 0.
pub fn real_free(total: u64, free: u64, reserved_percent: u64) -> u64 {
    let reserved = (u128::from(total) * u128::from(reserved_percent.min(100)) / 100) as u64;
    free.saturating_sub(reserved)
}

/// The objects still to download fit in `real_free` bytes (else GC first, then WONTGO
/// `msg::space_required` if they still do not).
pub fn fits(needed: u64, real_free: u64) -> bool {
    needed <= real_free
}

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;
