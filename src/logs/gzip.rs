//! Rotated log files are gzip-framed but NOT compressed: one gzip member whose DEFLATE stream
//! is made of "stored" blocks (RFC 1951 3.2.4), so `gunzip`, `zcat` and the Hub tooling read
//! them as usual. Why: a DEFLATE encoder costs tens of KB in a ~1 MB static PID 1, and the
//! budget rules (upstream's rotation watermarks) hold either way -- only less history fits. `gzip_stored` is
//! the one function to replace should a real encoder ever be worth its size.
use std::io::{self, Read, Write};

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) table, built at compile time.
const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c; // evaluated at compile time, i < 256
        i += 1;
    }
    t
}

/// Continue a CRC-32: start with `crc32_update(0, ..)`.
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        // a u8 index into a 256-entry table cannot miss
        let idx = usize::from((c as u8) ^ b);
        c = CRC_TABLE.get(idx).copied().unwrap_or(0) ^ (c >> 8);
    }
    !c
}

/// The largest payload of one stored block (LEN is 16 bits).
const STORED_MAX: usize = 65535;

/// Copy `src` into `dst` as a gzip member of stored DEFLATE blocks; returns the input size.
/// Streams in 64 KiB pieces, so a large log file is never held in memory.
pub fn gzip_stored(src: &mut dyn Read, dst: &mut dyn Write) -> io::Result<u64> {
    // ID1 ID2, CM=8 (deflate), FLG=0, MTIME=0, XFL=0, OS=3 (Unix)
    dst.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3])?;
    let mut buf = vec![0u8; STORED_MAX];
    let mut crc = 0u32;
    let mut total = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let data = buf.get(..n).unwrap_or_default();
        // n <= 65535 because buf has that length
        let len = n as u16;
        // BFINAL=0, BTYPE=00: the rest of the header byte is padding to the byte boundary
        let [l0, l1] = len.to_le_bytes();
        let [n0, n1] = (!len).to_le_bytes();
        dst.write_all(&[0, l0, l1, n0, n1])?;
        dst.write_all(data)?;
        crc = crc32_update(crc, data);
        total += n as u64;
    }
    // The end is only known at EOF: an empty final block closes the stream.
    dst.write_all(&[1, 0, 0, 0xff, 0xff])?;
    dst.write_all(&crc.to_le_bytes())?;
    // ISIZE: input size modulo 2^32
    dst.write_all(&(total as u32).to_le_bytes())?;
    Ok(total)
}
