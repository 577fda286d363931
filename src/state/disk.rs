//! The `path` of a dm-crypt disk and what this build can open (reference 2.6, 11.3): pure
//! data, shared by the admission check ([`super::State::unsupported`]) and the disk code.
use super::{Disk, DiskType};
use std::path::PathBuf;

/// The `path` of a crypt disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CryptPath {
    pub dir: PathBuf,
    pub image: String,
    pub size_mb: u64,
    pub key: String,
}

fn file_name(n: &str) -> bool {
    !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0'])
}

impl CryptPath {
    /// `[-v2 ]<dir>/<image>,<sizeMB>,<keyname>`: the commas split the last path component, as
    /// the script's `basename` and `awk -F,` do (a fourth field is ignored there, and here).
    /// The `-v2 ` prefix, which CAAM disks must carry, is accepted on any.
    pub fn parse(path: &str) -> Result<CryptPath, String> {
        let p = path.strip_prefix("-v2 ").unwrap_or(path);
        let bad = |why: &str| format!("path '{path}': {why}");
        let Some((dir, base)) = p.rsplit_once('/').filter(|_| p.starts_with('/')) else {
            return Err(bad("not an absolute <image>,<sizeMB>,<keyname>"));
        };
        let mut f = base.split(',');
        let (image, size, key) = (f.next(), f.next(), f.next());
        let (Some(image), Some(size), Some(key)) = (image, size, key) else {
            return Err(bad("not <image>,<sizeMB>,<keyname>"));
        };
        if !file_name(image) || !file_name(key) {
            return Err(bad("image and key names must be file names"));
        }
        let size_mb = size
            .parse::<u64>()
            .ok()
            .filter(|s| (2..=1 << 22).contains(s))
            .ok_or_else(|| bad(&format!("size '{size}' is not a number of MB from 2")))?;
        let cp = CryptPath {
            dir: PathBuf::from(if dir.is_empty() { "/" } else { dir }),
            image: image.to_string(),
            size_mb,
            key: key.to_string(),
        };
        if !crate::sys::dm::valid_name(cp.dm_name()) {
            return Err(bad(
                "the image name before its first '.' is no device-mapper name",
            ));
        }
        Ok(cp)
    }

    fn file(&self, name: &str, suffix: &str) -> PathBuf {
        self.dir.join(format!("{name}{suffix}"))
    }
    pub fn image_path(&self) -> PathBuf {
        self.file(&self.image, "")
    }
    pub fn key_path(&self) -> PathBuf {
        self.file(&self.key, ".txt")
    }
    pub fn sentinel(&self) -> PathBuf {
        self.file(&self.key, ".init_done")
    }
    /// The image while it is made: renamed to the image once its file system is complete.
    pub fn new_image(&self) -> PathBuf {
        self.file(&self.image, ".new")
    }
    /// The image as it was before its first good mount, made once (upstream's `goodbak`).
    pub fn goodbak(&self) -> PathBuf {
        self.file(&self.image, ".goodbak")
    }
    /// Where a damaged image goes when the backup replaces it (kept, never deleted here).
    pub fn bad(&self) -> PathBuf {
        self.file(&self.image, ".bad")
    }
    /// The mapped device's name: the image name up to its first '.', as the script's.
    pub fn dm_name(&self) -> &str {
        self.image.split('.').next().unwrap_or_default()
    }
}

impl Disk {
    /// Why this disk cannot be opened by this build (to follow "disk '<name>' (<type>)"),
    /// None for a `dm-crypt-versatile` disk with a good path.
    pub fn unsupported(&self) -> Option<String> {
        let soc = match self.disk_type {
            DiskType::DmCryptVersatile => {
                return self
                    .path
                    .as_deref()
                    .map_or(Err("no path".to_string()), CryptPath::parse)
                    .err()
                    .map(|e| format!(": {e}"));
            }
            DiskType::DmCryptCaam => "CAAM",
            DiskType::DmCryptDcp => "DCP",
            _ => return Some(" is not supported by this build".into()),
        };
        Some(format!(
            " needs the SoC's {soc} to seal its key: not supported by this build"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DiskList;
    use std::path::Path;

    #[test]
    fn crypt_paths_as_the_script_splits_them() {
        let p = CryptPath::parse("/storage/dm/secret.img,64,k1").unwrap();
        assert_eq!(p.dir, Path::new("/storage/dm"));
        assert_eq!(
            (p.image.as_str(), p.size_mb, p.key.as_str()),
            ("secret.img", 64, "k1")
        );
        assert_eq!(p.image_path(), Path::new("/storage/dm/secret.img"));
        assert_eq!(p.key_path(), Path::new("/storage/dm/k1.txt"));
        assert_eq!(p.sentinel(), Path::new("/storage/dm/k1.init_done"));
        assert_eq!(p.new_image(), Path::new("/storage/dm/secret.img.new"));
        assert_eq!(p.goodbak(), Path::new("/storage/dm/secret.img.goodbak"));
        assert_eq!(p.dm_name(), "secret");
        // -v2 (CAAM's mark) and a fourth field are accepted; a file in / works
        assert_eq!(
            CryptPath::parse("-v2 /storage/dm/secret.img,64,k1,x").unwrap(),
            p
        );
        assert_eq!(CryptPath::parse("/a.b.c,2,k").unwrap().dm_name(), "a");
        assert_eq!(CryptPath::parse("/a.b.c,2,k").unwrap().dir, Path::new("/"));
    }

    #[test]
    fn bad_crypt_paths_name_the_problem() {
        for (p, why) in [
            ("secret.img,64,k", "absolute"),
            ("/storage/secret.img,64", "<image>,<sizeMB>,<keyname>"),
            ("/storage/secret.img,big,k", "size 'big'"),
            ("/storage/secret.img,1,k", "size '1'"),
            ("/storage/,64,k", "file names"),
            ("/storage/x,64,..", "file names"),
            ("/storage/.img,64,k", "device-mapper"),
        ] {
            let e = CryptPath::parse(p).unwrap_err();
            assert!(e.contains(p) && e.contains(why), "{p}: {e}");
        }
    }

    fn disk(t: DiskType, path: Option<&str>) -> Disk {
        Disk {
            name: "d".into(),
            disk_type: t,
            list: DiskList::Disks,
            path: path.map(str::to_string),
            mode: None,
            format: None,
            mount_target: None,
            mount_options: None,
            format_options: None,
            provision: None,
            provision_options: None,
            uuid: None,
            default: false,
            migrate_keyblob: false,
            aliases: vec![],
            disks: vec![],
            init_order: vec![],
        }
    }

    #[test]
    fn hardware_crypt_disks_are_refused_by_name() {
        let p = Some("-v2 /storage/x.img,8,k");
        assert_eq!(disk(DiskType::DmCryptVersatile, p).unsupported(), None);
        let caam = disk(DiskType::DmCryptCaam, p).unsupported().unwrap();
        assert_eq!(
            caam,
            " needs the SoC's CAAM to seal its key: not supported by this build"
        );
        let dcp = disk(DiskType::DmCryptDcp, p).unsupported().unwrap();
        assert!(dcp.contains("SoC's DCP"), "{dcp}");
        let bad = disk(DiskType::DmCryptVersatile, Some("/x,8"))
            .unsupported()
            .unwrap();
        assert!(bad.contains("/x,8"), "{bad}");
        let none = disk(DiskType::DmCryptVersatile, None)
            .unsupported()
            .unwrap();
        assert!(none.contains("no path"), "{none}");
        let vol = disk(DiskType::VolumeDisk, None).unsupported().unwrap();
        assert_eq!(vol, " is not supported by this build");
    }
}
