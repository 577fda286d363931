//! Finding the storage device (PV_STORAGE_DEVICE = `LABEL=...`, `UUID=...` or a path) without
//! blkid: block devices come from /sys/class/block, and their ext2/3/4 superblocks are read
//! directly (volume name and UUID), which is all the storage partition needs.
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

const SB_OFFSET: u64 = 1024;
const SB_LEN: usize = 0x88;
const MAGIC: u16 = 0xEF53;

/// What an ext superblock tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtSuper {
    pub label: String,
    /// Lowercase, dashed, as blkid prints it.
    pub uuid: String,
}

/// Parses the first 0x88 bytes of an ext2/3/4 superblock (the bytes at offset 1024 of the
/// device). `None` when the magic does not match.
pub fn parse_ext_super(sb: &[u8]) -> Option<ExtSuper> {
    let magic = u16::from_le_bytes([*sb.get(0x38)?, *sb.get(0x39)?]);
    if magic != MAGIC {
        return None;
    }
    let uuid = sb.get(0x68..0x78)?;
    let name = sb.get(0x78..0x88)?;
    let label_bytes: Vec<u8> = name.iter().copied().take_while(|&b| b != 0).collect();
    let label = String::from_utf8_lossy(&label_bytes).into_owned();
    let hex = crate::storage::objects::hex(uuid);
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        hex.get(0..8)?,
        hex.get(8..12)?,
        hex.get(12..16)?,
        hex.get(16..20)?,
        hex.get(20..32)?
    );
    Some(ExtSuper { label, uuid })
}

/// Reads the superblock of a device or image file.
pub fn read_ext_super(dev: &Path) -> io::Result<Option<ExtSuper>> {
    let mut f = File::open(dev)?;
    f.seek(SeekFrom::Start(SB_OFFSET))?;
    let mut buf = [0u8; SB_LEN];
    match f.read_exact(&mut buf) {
        Ok(()) => Ok(parse_ext_super(&buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// How PV_STORAGE_DEVICE names the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Label(String),
    Uuid(String),
    Path(PathBuf),
}

impl DeviceSpec {
    pub fn parse(s: &str) -> DeviceSpec {
        if let Some(l) = s.strip_prefix("LABEL=") {
            DeviceSpec::Label(l.to_string())
        } else if let Some(u) = s.strip_prefix("UUID=") {
            DeviceSpec::Uuid(u.to_ascii_lowercase())
        } else {
            DeviceSpec::Path(PathBuf::from(s))
        }
    }

    fn matches(&self, sb: &ExtSuper) -> bool {
        match self {
            DeviceSpec::Label(l) => &sb.label == l,
            DeviceSpec::Uuid(u) => &sb.uuid == u,
            DeviceSpec::Path(_) => false,
        }
    }
}

/// Looks for the device once: a path is taken as it is when it exists; a label or UUID is
/// searched among the block devices listed in `sys_block` (normally /sys/class/block), whose
/// nodes are `<dev_dir>/<name>`: every entry is probed, in name order, the first match wins.
pub fn find(spec: &DeviceSpec, sys_block: &Path, dev_dir: &Path) -> Option<PathBuf> {
    if let DeviceSpec::Path(p) = spec {
        return p.exists().then(|| p.clone());
    }
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    crate::sort(&mut names);
    names
        .into_iter()
        .map(|n| dev_dir.join(n))
        .find(|dev| matches!(read_ext_super(dev), Ok(Some(sb)) if spec.matches(&sb)))
}

#[cfg(test)]
#[path = "blockdev_tests.rs"]
mod tests;
