//! dm-verity volumes, the `dm:` handler (reference 11.1): what upstream's
//! `volmount/verity/dm` does with `veritysetup open`, done by hand. The data and hash devices
//! are loop-attached read-only, the hash device's superblock (veritysetup's format) gives the
//! table, the manifest's root hash anchors it, and the device
//! `pv--dmverity--<part>-<volume without ext>` is what gets mounted.
use super::volumes::{loop_attach, LoopDevice};
use super::Error;
use crate::pvlog;
use crate::state::DmManifest;
use crate::sys::dm;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The fields of veritysetup's 512-byte superblock at the start of the hash device
/// (cryptsetup `struct verity_sb`, little endian) that the `verity` table needs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Superblock {
    pub hash_type: u32,
    pub algorithm: String,
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    pub salt: Vec<u8>,
}

const SB_SIZE: usize = 512;

fn le32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(x)
}

/// Parses the superblock; anything but version 1 with sane block sizes is refused.
pub(crate) fn superblock(b: &[u8]) -> Result<Superblock, String> {
    if b.len() < SB_SIZE || &b[..8] != b"verity\0\0" {
        return Err("no verity superblock (veritysetup format) at the start".into());
    }
    if le32(b, 8) != 1 {
        return Err(format!("verity superblock version {}", le32(b, 8)));
    }
    let hash_type = le32(b, 12);
    let alg = &b[32..64];
    let alg = &alg[..alg.iter().position(|&c| c == 0).unwrap_or(alg.len())];
    let algorithm = std::str::from_utf8(alg)
        .ok()
        .filter(|a| !a.is_empty() && a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
        .ok_or("verity superblock: bad hash algorithm")?
        .to_string();
    let mut blocks = [0u8; 8];
    blocks.copy_from_slice(&b[72..80]);
    let salt_size = usize::from(u16::from_le_bytes([b[80], b[81]]));
    let sb = Superblock {
        hash_type,
        algorithm,
        data_block_size: le32(b, 64),
        hash_block_size: le32(b, 68),
        data_blocks: u64::from_le_bytes(blocks),
        salt: b[88..88 + salt_size.min(256)].to_vec(),
    };
    let ok_size = |s: u32| (512..=1 << 20).contains(&s) && s.is_power_of_two();
    if hash_type > 1
        || salt_size > 256
        || !ok_size(sb.data_block_size)
        || !ok_size(sb.hash_block_size)
        || sb.data_blocks == 0
    {
        return Err(format!("verity superblock: unusable values {sb:?}"));
    }
    Ok(sb)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The `verity` target over `data` and `hash`: (length in sectors, params). The hash tree
/// starts at the first hash block after the superblock, as veritysetup lays it out.
pub(crate) fn table(sb: &Superblock, data: &Path, hash: &Path, root_hash: &str) -> (u64, String) {
    let hash_start = (SB_SIZE as u64).div_ceil(u64::from(sb.hash_block_size));
    let salt = if sb.salt.is_empty() {
        "-".to_string()
    } else {
        hex(&sb.salt)
    };
    let sectors = sb.data_blocks * u64::from(sb.data_block_size / 512);
    let params = format!(
        "{} {} {} {} {} {} {hash_start} {} {root_hash} {salt}",
        sb.hash_type,
        data.display(),
        hash.display(),
        sb.data_block_size,
        sb.hash_block_size,
        sb.data_blocks,
        sb.algorithm,
    );
    (sectors, params)
}

/// Upstream's device name: `pv--dmverity--<part>-<volume file name without its extension>`.
pub(crate) fn dm_name(part: &str, volume: &str) -> String {
    let file = volume.rsplit('/').next().unwrap_or(volume);
    let stem = file.rsplit_once('.').map_or(file, |(s, _)| s);
    format!("pv--dmverity--{part}-{stem}")
}

/// An open verity device and the loop devices under it.
#[derive(Debug)]
pub(crate) struct Verity {
    name: String,
    loops: Vec<LoopDevice>,
}

impl Verity {
    /// Removes the device (after its mount went) and detaches the loops; logs what fails.
    pub(crate) fn close(self, part: &str) {
        if let Err(e) = dm::remove(&self.name) {
            pvlog!(Error, "container", "{part}: dm remove {}: {e}", self.name);
        }
        for l in self.loops {
            l.detach();
        }
    }
}

/// Sets up the verity device of `volume` of `part` whose files are in `dir` (the part's trail
/// directory): returns the block device to mount and what to close after.
pub(crate) fn open(
    part: &str,
    dir: &Path,
    volume: &str,
    m: &DmManifest,
    legacy: bool,
) -> Result<(PathBuf, Verity), Error> {
    let name = dm_name(part, volume);
    if let Some(p) = m.problem() {
        return Err(Error::invalid(part, "dm-verity", dir.join(volume), p));
    }
    let data = dir.join(&m.data_device);
    let hash = dir.join(&m.hash_device);
    let mut head = [0u8; SB_SIZE];
    std::fs::File::open(&hash)
        .and_then(|mut f| f.read_exact(&mut head))
        .map_err(|e| Error::io(part, "dm-verity", &hash, &e))?;
    let sb = superblock(&head).map_err(|e| Error::invalid(part, "dm-verity", &hash, e))?;
    // a device left by an earlier run (a crash) would make the create fail
    let _ = dm::remove(&name);
    let mut v = Verity {
        name: name.clone(),
        loops: Vec::new(),
    };
    let r = (|| {
        for f in [&data, &hash] {
            let l = loop_attach(f, legacy).map_err(|e| Error::io(part, "loop", f, &e))?;
            v.loops.push(l);
        }
        let (len, params) = table(&sb, &v.loops[0].path, &v.loops[1].path, &m.root_hash);
        let t = dm::Target {
            start: 0,
            len,
            kind: "verity",
            params: &params,
        };
        dm::create(&name, None, &[t], true).map_err(|e| {
            Error::invalid(
                part,
                "dm-verity",
                &data,
                format!(
                    "volume {volume}: device {name} (root hash {}): {e}",
                    m.root_hash
                ),
            )
        })
    })();
    match r {
        Ok(dev) => {
            pvlog!(
                Debug,
                "container",
                "{part}: {} is dm-verity {name} (root hash {})",
                data.display(),
                m.root_hash
            );
            Ok((dev, v))
        }
        Err(e) => {
            for l in v.loops {
                l.detach();
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock as `veritysetup format` writes it (defaults: sha256, 4096, 32-byte salt).
    fn sb_bytes(blocks: u64) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        b[..8].copy_from_slice(b"verity\0\0");
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        b[32..38].copy_from_slice(b"sha256");
        b[64..68].copy_from_slice(&4096u32.to_le_bytes());
        b[68..72].copy_from_slice(&4096u32.to_le_bytes());
        b[72..80].copy_from_slice(&blocks.to_le_bytes());
        b[80..82].copy_from_slice(&32u16.to_le_bytes());
        for (i, x) in b[88..120].iter_mut().enumerate() {
            *x = i as u8;
        }
        b
    }

    #[test]
    fn superblock_and_table_as_veritysetup_open_makes_them() {
        let sb = superblock(&sb_bytes(33)).unwrap();
        assert_eq!(sb.algorithm, "sha256");
        assert_eq!(sb.salt.len(), 32);
        let (len, params) = table(
            &sb,
            Path::new("/dev/loop3"),
            Path::new("/dev/loop4"),
            "ab12",
        );
        assert_eq!(len, 33 * 8);
        assert_eq!(
            params,
            "1 /dev/loop3 /dev/loop4 4096 4096 33 1 sha256 ab12 \
             000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        );
        let mut no_salt = sb_bytes(1);
        no_salt[80] = 0;
        let sb = superblock(&no_salt).unwrap();
        assert!(table(&sb, Path::new("d"), Path::new("h"), "ab")
            .1
            .ends_with(" ab -"));
    }

    #[test]
    fn bad_superblocks_are_refused() {
        assert!(superblock(&[0u8; 512]).is_err());
        assert!(superblock(&sb_bytes(1)[..100]).is_err());
        for (at, v) in [(8, 2u8), (12, 2), (65, 0x13), (69, 0), (81, 1)] {
            let mut b = sb_bytes(1);
            b[at] = v;
            assert!(superblock(&b).is_err(), "byte {at} = {v}");
        }
        let mut b = sb_bytes(0);
        assert!(superblock(&b).is_err(), "no data blocks");
        b = sb_bytes(1);
        b[32..38].copy_from_slice(b"sh a/6");
        assert!(superblock(&b).is_err(), "algorithm");
    }

    #[test]
    fn device_names_are_upstreams() {
        assert_eq!(dm_name("app", "root.squashfs"), "pv--dmverity--app-root");
        assert_eq!(
            dm_name("bsp", "modules.squashfs"),
            "pv--dmverity--bsp-modules"
        );
        assert_eq!(dm_name("c", "x/lib.v1.img"), "pv--dmverity--c-lib.v1");
    }
}
