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
    names.sort();
    names
        .into_iter()
        .map(|n| dev_dir.join(n))
        .find(|dev| matches!(read_ext_super(dev), Ok(Some(sb)) if spec.matches(&sb)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfs(path: &Path, label: &str, uuid: &str) {
        let f = File::create(path).unwrap();
        f.set_len(8 << 20).unwrap();
        let ok = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", label, "-U", uuid, path.to_str().unwrap()])
            .status()
            .expect("mkfs.ext4 (e2fsprogs, installed by scripts/setup)");
        assert!(ok.success());
    }

    #[test]
    fn reads_label_and_uuid_of_real_ext4_images_and_finds_them() {
        let dir = std::env::temp_dir().join(format!("pv-blockdev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sys = dir.join("sys");
        let dev = dir.join("dev");
        std::fs::create_dir_all(&sys).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        mkfs(
            &dev.join("vda1"),
            "boot",
            "11111111-2222-3333-4444-555555555555",
        );
        mkfs(
            &dev.join("vda2"),
            "root",
            "0A1B2C3D-0000-4000-8000-00000000ABCD",
        );
        std::fs::write(dev.join("vdb"), vec![0u8; 4096]).unwrap();
        for n in ["vda1", "vda2", "vdb", "gone"] {
            std::fs::create_dir_all(sys.join(n)).unwrap();
        }
        let sb = read_ext_super(&dev.join("vda2")).unwrap().unwrap();
        assert_eq!(
            sb,
            ExtSuper {
                label: "root".into(),
                uuid: "0a1b2c3d-0000-4000-8000-00000000abcd".into()
            }
        );
        assert_eq!(read_ext_super(&dev.join("vdb")).unwrap(), None);
        assert_eq!(
            find(&DeviceSpec::parse("LABEL=root"), &sys, &dev),
            Some(dev.join("vda2"))
        );
        assert_eq!(
            find(
                &DeviceSpec::parse("UUID=11111111-2222-3333-4444-555555555555"),
                &sys,
                &dev
            ),
            Some(dev.join("vda1"))
        );
        assert_eq!(
            find(
                &DeviceSpec::parse("UUID=0A1B2C3D-0000-4000-8000-00000000ABCD"),
                &sys,
                &dev
            ),
            Some(dev.join("vda2"))
        );
        assert_eq!(find(&DeviceSpec::parse("LABEL=nope"), &sys, &dev), None);
        assert_eq!(
            find(
                &DeviceSpec::parse(dev.join("vdb").to_str().unwrap()),
                &sys,
                &dev
            ),
            Some(dev.join("vdb"))
        );
        assert_eq!(
            find(&DeviceSpec::parse("/nonexistent/dev"), &sys, &dev),
            None
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_superblocks_do_not_panic() {
        assert_eq!(parse_ext_super(&[]), None);
        assert_eq!(parse_ext_super(&[0xffu8; 0x40]), None);
        let mut sb = vec![0u8; SB_LEN];
        sb[0x38] = 0x53;
        sb[0x39] = 0xEF;
        sb[0x78..0x88].copy_from_slice(&[0xff; 16]);
        let s = parse_ext_super(&sb).unwrap();
        assert_eq!(s.uuid, "00000000-0000-0000-0000-000000000000");
        assert_eq!(s.label.chars().count(), 16);
        assert_eq!(parse_ext_super(&sb[..0x70]), None);
    }
}
