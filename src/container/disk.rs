//! dm-crypt disks of device.json (reference 11.3), as upstream's crypt script
//! (pv:`scripts/volmount/crypt/crypt`) makes and opens them, driven here by hand: no
//! cryptsetup, no dmsetup, no mkfs on the device.
//!
//! A `dm-crypt-versatile` disk is `[-v2 ]<dir>/<image>,<sizeMB>,<keyname>`: the key is
//! `<dir>/<keyname>.txt`, 32 random bytes in plain text beside the image (that is what
//! "versatile" means: no hardware protects it), the image a plain dm-crypt device of cipher
//! `aes-cbc-essiv:sha256` (table `<cipher> <key hex> 0 <loop> 0`, what `cryptsetup open --type
//! plain -s 256 --key-file` loads) holding an ext4 file system, mounted at
//! `<media>/pv/dmcrypt/<disk>` on the first volume that needs it, until the device stops.
//!
//! The first mount makes the key, the image and its file system, then the sentinel
//! `<keyname>.init_done`; the sentinel alone decides whether anything is made, never a failed
//! mount: a wrong key or a damaged file system is refused with the image untouched.
use super::{ext4, ms, volumes};
use crate::pvlog;
use crate::state::{CryptPath, Disk, Persistence};
use crate::storage::fs::{self as sfs, RealFs};
use crate::sys::{self, dm};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const CIPHER: &str = "aes-cbc-essiv:sha256";
/// `cryptsetup -s 256`: the first 32 bytes of the key file, unhashed (plain mode with a key
/// file).
const KEY_BYTES: usize = 32;

/// A failure, naming the disk and the file.
#[derive(Debug)]
pub struct DiskError {
    pub path: PathBuf,
    pub msg: String,
}

fn err(disk: &str, path: &Path, what: impl std::fmt::Display) -> DiskError {
    DiskError {
        path: path.to_path_buf(),
        msg: format!("disk '{disk}': {what}"),
    }
}

/// What a mount does, from what exists on the storage.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Open,
    /// No sentinel: make what is missing, then the sentinel, then open.
    Create {
        key: bool,
        image: bool,
    },
    Refuse(&'static str),
}

/// The sentinel decides creation. Once it exists nothing is made again (a lost key or image
/// is an error: a new one would hide the loss). Without it, a power cut interrupted the first
/// mount: the key is made only when no image exists (a new key could not open an old image),
/// an image only when none exists (an existing image was renamed from `.new` after its file
/// system was complete, so it is never formatted again).
pub fn step(sentinel: bool, key: bool, image: bool) -> Step {
    match (sentinel, key, image) {
        (true, true, true) => Step::Open,
        (true, false, _) => Step::Refuse("the key is missing (the disk was initialized)"),
        (true, true, false) => Step::Refuse("the image is missing (the disk was initialized)"),
        (false, false, true) => Step::Refuse(
            "an image without its key and not initialized: a new key could not open it",
        ),
        (false, key, image) => Step::Create {
            key: !key,
            image: !image,
        },
    }
}

/// `<media>/pv/dmcrypt/<disk>`, upstream's mount point of a crypt disk.
pub fn mount_point(media: &Path, disk: &str) -> PathBuf {
    media.join("pv/dmcrypt").join(disk)
}

/// The backing directory of a storage volume on a mounted disk (reference 2.7).
pub fn volume_dir(mnt: &Path, p: Persistence, rev: &str, part: &str, vol: &str) -> PathBuf {
    match p {
        Persistence::Permanent => mnt.join("perm").join(part).join(vol),
        Persistence::Revision => mnt.join("rev").join(rev).join(part).join(vol),
        Persistence::Boot => mnt.join("boot").join(part).join(vol),
    }
}

fn key_hex(key: &[u8]) -> String {
    key.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The dm-crypt table parameters of the script's `cryptsetup open --type plain`: cipher, key,
/// IV offset 0, the device, data offset 0.
pub fn crypt_params(key: &[u8], dev: (u32, u32)) -> String {
    format!("{CIPHER} {} 0 {}:{} 0", key_hex(key), dev.0, dev.1)
}

/// Mount points (unescaped) and sources of `/proc/self/mountinfo` text.
pub fn mounts(mountinfo: &str) -> Vec<(PathBuf, String)> {
    let unescape = |s: &str| {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let oct = b.get(i + 1..i + 4).and_then(|d| {
                let t = std::str::from_utf8(d).ok()?;
                u8::from_str_radix(t, 8).ok()
            });
            match (b[i], oct) {
                (b'\\', Some(c)) => {
                    out.push(c);
                    i += 4;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mp = f.get(4)?;
            let dash = f.iter().position(|x| *x == "-")?;
            let src = f.get(dash + 2)?;
            Some((PathBuf::from(unescape(mp)), unescape(src)))
        })
        .collect()
}

fn is_mounted(mnt: &Path) -> bool {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts(&info).iter().any(|(m, _)| m == mnt)
}

fn io_err(disk: &str, path: &Path, op: &str, e: io::Error) -> DiskError {
    err(disk, path, format!("{op}: {e}"))
}

/// Mounts the crypt disk `d` at [`mount_point`] unless it is already; returns the mount point.
pub fn ensure_mounted(media: &Path, d: &Disk) -> Result<PathBuf, DiskError> {
    let mnt = mount_point(media, &d.name);
    if let Some(why) = d.unsupported() {
        return Err(err(&d.name, &mnt, format!("{}{why}", d.disk_type.as_str())));
    }
    if is_mounted(&mnt) {
        return Ok(mnt);
    }
    let cp = CryptPath::parse(d.path.as_deref().unwrap_or_default())
        .map_err(|m| err(&d.name, &mnt, m))?;
    let exists = |p: &Path| p.exists();
    match step(
        exists(&cp.sentinel()),
        exists(&cp.key_path()),
        exists(&cp.image_path()),
    ) {
        Step::Open => {}
        Step::Refuse(why) => return Err(err(&d.name, &cp.sentinel(), why)),
        Step::Create { key, image } => create(&d.name, &cp, key, image)?,
    }
    let goodbak = cp.goodbak();
    let pre = sfs::tmp_path(&goodbak);
    let backup = !goodbak.exists();
    if backup {
        copy_sparse(&cp.image_path(), &pre).map_err(|e| io_err(&d.name, &pre, "backup", e))?;
    }
    match open(&d.name, &cp, &cp.image_path(), &mnt, false) {
        Ok(()) => {
            if backup {
                if let Err(e) = publish(&pre, &goodbak) {
                    pvlog!(
                        Warn,
                        "disk",
                        "disk '{}': {}: {e}",
                        d.name,
                        goodbak.display()
                    );
                }
            }
            pvlog!(
                Info,
                "disk",
                "disk '{}': {} mounted on {}",
                d.name,
                cp.image_path().display(),
                mnt.display()
            );
            Ok(mnt)
        }
        Err(e) => {
            let _ = fs::remove_file(&pre);
            if !e.at_mount || backup {
                return Err(e.err);
            }
            restore(&d.name, &cp, &mnt, e.err)
        }
    }
}

/// The image did not mount but a backup exists. Only a backup that mounts (read-only) with the
/// same key proves the key right and the image damaged: then the image is kept as `.bad` and
/// the backup copied in its place, as upstream falls back to `goodbak`. Otherwise nothing is
/// touched (a wrong key opens neither).
fn restore(name: &str, cp: &CryptPath, mnt: &Path, first: DiskError) -> Result<PathBuf, DiskError> {
    let goodbak = cp.goodbak();
    if open(name, cp, &goodbak, mnt, true).is_err() {
        return Err(DiskError {
            msg: format!(
                "{}; its backup {} does not mount either: a wrong key, or both damaged; nothing changed",
                first.msg,
                goodbak.display()
            ),
            ..first
        });
    }
    close(name, mnt, cp.dm_name());
    pvlog!(
        Warn,
        "disk",
        "{}; the backup mounts: the image is kept as {} and replaced by the backup",
        first.msg,
        cp.bad().display()
    );
    // the image stays under its name until the copy replaces it: a power cut leaves one
    let (image, bad) = (cp.image_path(), cp.bad());
    let tmp = sfs::tmp_path(&image);
    let _ = fs::remove_file(&bad);
    copy_sparse(&goodbak, &tmp)
        .and_then(|()| fs::hard_link(&image, &bad))
        .and_then(|()| publish(&tmp, &image))
        .map_err(|e| io_err(name, &image, "restore from backup", e))?;
    open(name, cp, &image, mnt, false).map_err(|e| e.err)?;
    Ok(mnt.to_path_buf())
}

/// fsync `tmp`, rename it to `path`, fsync the directory.
fn publish(tmp: &Path, path: &Path) -> io::Result<()> {
    fs::File::open(tmp)?.sync_all()?;
    fs::rename(tmp, path)?;
    fs::File::open(path.parent().unwrap_or(Path::new("/")))?.sync_all()
}

/// Copies `from` to `to` leaving holes where `from` reads zeros (an image is sparse until
/// written), then fsyncs it.
fn copy_sparse(from: &Path, to: &Path) -> io::Result<()> {
    let mut src = fs::File::open(from)?;
    let mut dst = fs::File::create(to)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if chunk.iter().all(|&b| b == 0) {
            dst.seek(SeekFrom::Current(n as i64))?;
        } else {
            dst.write_all(chunk)?;
        }
        len += n as u64;
    }
    dst.set_len(len)?;
    dst.sync_all()
}

/// The first mount, cut short or not: the key (32 random bytes), the image (`.new`, sparse,
/// its file system written through dm-crypt, renamed when complete), then the sentinel; each
/// durable before the next.
fn create(name: &str, cp: &CryptPath, key: bool, image: bool) -> Result<(), DiskError> {
    fs::create_dir_all(&cp.dir).map_err(|e| io_err(name, &cp.dir, "mkdir", e))?;
    if key {
        let path = cp.key_path();
        let mut k = [0u8; KEY_BYTES];
        sys::getrandom(&mut k)
            .and_then(|()| sfs::write_atomic(&RealFs, &path, &k))
            .map_err(|e| io_err(name, &path, "make key", e))?;
        pvlog!(Info, "disk", "disk '{name}': key {} made", path.display());
    }
    if image {
        let new = cp.new_image();
        let bytes = cp.size_mb << 20;
        let made = fs::File::create(&new)
            .and_then(|f| f.set_len(bytes).and_then(|()| f.sync_all()))
            .map_err(|e| io_err(name, &new, "make image", e));
        made.and_then(|()| format(name, cp, &new, bytes))
            .inspect_err(|_| {
                let _ = fs::remove_file(&new);
            })?;
        publish(&new, &cp.image_path()).map_err(|e| io_err(name, &cp.image_path(), "rename", e))?;
        pvlog!(
            Info,
            "disk",
            "disk '{name}': image {} of {} MB made",
            cp.image_path().display(),
            cp.size_mb
        );
    }
    let s = cp.sentinel();
    sfs::write_atomic(&RealFs, &s, b"").map_err(|e| io_err(name, &s, "write", e))
}

/// Writes the file system of a new image through its dm-crypt mapping.
fn format(name: &str, cp: &CryptPath, image: &Path, bytes: u64) -> Result<(), DiskError> {
    let node = map(name, cp, image, false).map_err(|e| e.err)?;
    let mut ids = ext4::Ids {
        uuid: [0; 16],
        hash_seed: [0; 16],
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as u32),
    };
    let r = sys::getrandom(&mut ids.uuid)
        .and_then(|()| sys::getrandom(&mut ids.hash_seed))
        .and_then(|()| {
            ids.uuid[6] = (ids.uuid[6] & 0x0F) | 0x40; // a version 4 UUID
            ids.uuid[8] = (ids.uuid[8] & 0x3F) | 0x80;
            let dev = fs::OpenOptions::new().write(true).open(&node)?;
            ext4::mkfs(&dev, bytes, &ids)?;
            dev.sync_all()
        });
    let removed = dm::remove(cp.dm_name());
    r.map_err(|e| io_err(name, &node, "mkfs", e))?;
    removed.map_err(|e| io_err(name, &node, "dm remove", e))
}

/// A failed open, and whether it failed at the mount (the file system did not mount: a wrong
/// key or damage) rather than at the loop or dm steps.
struct OpenError {
    err: DiskError,
    at_mount: bool,
}

/// Loop device on `image` and the crypt mapping over it; the mapping holds the loop device
/// (autoclear: it goes with the mapping).
fn map(name: &str, cp: &CryptPath, image: &Path, read_only: bool) -> Result<PathBuf, OpenError> {
    let fail = |path: &Path, op: &str, e: io::Error| OpenError {
        err: io_err(name, path, op, e),
        at_mount: false,
    };
    let kp = cp.key_path();
    let mut key = Vec::new();
    fs::File::open(&kp)
        .and_then(|f| f.take(KEY_BYTES as u64).read_to_end(&mut key))
        .map_err(|e| fail(&kp, "read key", e))?;
    if key.len() < KEY_BYTES {
        let e = io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes, 32 needed", key.len()),
        );
        return Err(fail(&kp, "read key", e));
    }
    let sectors = fs::metadata(image)
        .map_err(|e| fail(image, "stat", e))?
        .len()
        / 512;
    let dev =
        volumes::loop_attach_mode(image, false, !read_only).map_err(|e| fail(image, "loop", e))?;
    let rdev = match fs::metadata(&dev.path) {
        Ok(m) => m.rdev(),
        Err(e) => {
            dev.detach();
            return Err(fail(image, "loop", e));
        }
    };
    let params = crypt_params(&key, (libc::major(rdev), libc::minor(rdev)));
    let table = [dm::Target {
        start: 0,
        len: sectors,
        kind: "crypt",
        params: &params,
    }];
    // a mapping left by an earlier run (the script's clean_disk)
    let _ = dm::remove(cp.dm_name());
    let uuid = format!("CRYPT-PLAIN-{}", cp.dm_name());
    match dm::create(cp.dm_name(), Some(&uuid), &table, read_only) {
        Ok(node) => Ok(node),
        Err(e) => {
            dev.detach();
            Err(fail(image, "dm-crypt", e))
        }
    }
}

fn open(
    name: &str,
    cp: &CryptPath,
    image: &Path,
    mnt: &Path,
    read_only: bool,
) -> Result<(), OpenError> {
    let node = map(name, cp, image, read_only)?;
    let mut flags = ms::NOATIME;
    if read_only {
        flags |= ms::RDONLY;
    }
    let r = fs::create_dir_all(mnt)
        .and_then(|()| volumes::mount_path(Some(&node), mnt, Some("ext4"), flags));
    r.map_err(|e| {
        let _ = dm::remove(cp.dm_name());
        OpenError {
            err: io_err(
                name,
                image,
                "mount",
                io::Error::new(
                    e.kind(),
                    format!("{e} (a wrong key or a damaged file system; no fsck on the device)"),
                ),
            ),
            at_mount: true,
        }
    })
}

fn close(name: &str, mnt: &Path, dm_name: &str) {
    let Ok(c) = volumes::c_path(mnt) else { return };
    if let Err(e) = sys::umount2(&c, 0) {
        pvlog!(
            Warn,
            "disk",
            "disk '{name}': umount {}: {e}; detaching lazily",
            mnt.display()
        );
        let _ = sys::umount2(&c, libc::MNT_DETACH);
    }
    if let Err(e) = dm::remove(dm_name) {
        pvlog!(Error, "disk", "disk '{name}': dm remove {dm_name}: {e}");
    }
    let _ = fs::remove_dir(mnt);
}

/// Unmounts every crypt disk mounted under `<media>/pv/dmcrypt` and removes its mapping (its
/// loop device goes with it), before the storage is unmounted.
pub fn close_all(media: &Path) {
    let base = media.join("pv/dmcrypt");
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for (mnt, src) in mounts(&info).into_iter().rev() {
        if mnt.parent() != Some(base.as_path()) {
            continue;
        }
        let disk = mnt
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dm_name = src.strip_prefix("/dev/mapper/").unwrap_or_default();
        close(&disk, &mnt, dm_name);
        pvlog!(Info, "disk", "disk '{disk}': unmounted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn the_sentinel_decides_creation() {
        use Step::*;
        let cases = [
            // (sentinel, key, image)
            ((true, true, true), Open),
            (
                (false, false, false),
                Create {
                    key: true,
                    image: true,
                },
            ),
            // a power cut after the key: the same key, a new image
            (
                (false, true, false),
                Create {
                    key: false,
                    image: true,
                },
            ),
            // a power cut after the image was complete: only the sentinel
            (
                (false, true, true),
                Create {
                    key: false,
                    image: false,
                },
            ),
        ];
        for (have, want) in cases {
            assert_eq!(step(have.0, have.1, have.2), want, "{have:?}");
        }
        // never a new key for an existing image, never anything after the sentinel
        for have in [
            (false, false, true),
            (true, false, true),
            (true, false, false),
            (true, true, false),
        ] {
            assert!(
                matches!(step(have.0, have.1, have.2), Refuse(_)),
                "{have:?}"
            );
        }
    }

    #[test]
    fn the_table_is_cryptsetups_plain_mapping() {
        let key: Vec<u8> = (0..32).collect();
        assert_eq!(
            crypt_params(&key, (7, 3)),
            "aes-cbc-essiv:sha256 000102030405060708090a0b0c0d0e0f\
             101112131415161718191a1b1c1d1e1f 0 7:3 0"
        );
    }

    #[test]
    fn volumes_on_a_disk_as_reference_2_7() {
        let m = Path::new("/media/pv/dmcrypt/d");
        assert_eq!(mount_point(Path::new("/media"), "d"), m);
        let v = |p| volume_dir(m, p, "locals/a", "bsp", "pv--usrmeta");
        assert_eq!(v(Persistence::Permanent), m.join("perm/bsp/pv--usrmeta"));
        assert_eq!(
            v(Persistence::Revision),
            m.join("rev/locals/a/bsp/pv--usrmeta")
        );
        assert_eq!(v(Persistence::Boot), m.join("boot/bsp/pv--usrmeta"));
    }

    #[test]
    fn mountinfo_lines_unescaped() {
        let info =
            "36 35 98:0 / /media/pv/dmcrypt/d rw,noatime shared:1 - ext4 /dev/mapper/secret rw\n\
                    37 35 0:5 / /a\\040b rw - tmpfs none rw\n\
                    garbage\n";
        assert_eq!(
            mounts(info),
            [
                (
                    PathBuf::from("/media/pv/dmcrypt/d"),
                    "/dev/mapper/secret".to_string()
                ),
                (PathBuf::from("/a b"), "none".to_string()),
            ]
        );
    }

    /// The sparse copy keeps the bytes and leaves the zeros as holes.
    #[test]
    fn backups_are_sparse_copies() {
        let dir = std::env::temp_dir().join(format!("pv-disk-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        let f = fs::File::create(&a).unwrap();
        f.set_len(8 << 20).unwrap();
        f.write_all_at(b"data", 3 << 20).unwrap();
        drop(f);
        copy_sparse(&a, &b).unwrap();
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
        assert!(fs::metadata(&b).unwrap().blocks() * 512 < 1 << 20);
        fs::remove_dir_all(&dir).unwrap();
    }
}
