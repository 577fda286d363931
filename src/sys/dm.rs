//! Device-mapper driven by ioctls on `/dev/mapper/control` (linux/dm-ioctl.h, interface 4.x),
//! as dmsetup does, for dm-verity volumes and dm-crypt disks: the device has no dmsetup and no
//! udev, so the block node `/dev/mapper/<name>` is made here from the `dev` the kernel returns.
use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// One line of a device-mapper table.
pub struct Target<'a> {
    /// First sector (512 bytes) of the mapped device this target covers.
    pub start: u64,
    /// Sectors covered.
    pub len: u64,
    /// Target type: `verity`, `crypt`, `linear`, ...
    pub kind: &'a str,
    /// The target's parameter string, as in a dmsetup table.
    pub params: &'a str,
}

const MAPPER_DIR: &str = "/dev/mapper";
const CONTROL: &str = "/dev/mapper/control";
/// misc major 10, MAPPER_CTRL_MINOR.
const CONTROL_DEV: (u32, u32) = (10, 236);

/// `sizeof(struct dm_ioctl)`.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)`.
const SPEC: usize = 40;
const NAME_LEN: usize = 128;
const UUID_LEN: usize = 129;
const TYPE_NAME_LEN: usize = 16;
// field offsets in struct dm_ioctl
const OFF_DATA_SIZE: usize = 12;
const OFF_DATA_START: usize = 16;
const OFF_TARGET_COUNT: usize = 20;
const OFF_FLAGS: usize = 28;
const OFF_DEV: usize = 40;
const OFF_NAME: usize = 48;
const OFF_UUID: usize = OFF_NAME + NAME_LEN;

const READONLY_FLAG: u32 = 1 << 0;

/// `_IOWR(0xfd, cmd, struct dm_ioctl)`.
const fn dm_cmd(nr: u32) -> u32 {
    (3 << 30) | ((HEADER as u32) << 16) | (0xfd << 8) | nr
}
const DEV_CREATE: u32 = dm_cmd(3);
const DEV_REMOVE: u32 = dm_cmd(4);
const DEV_SUSPEND: u32 = dm_cmd(6);
const TABLE_LOAD: u32 = dm_cmd(9);

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// A device name the kernel accepts: 1..=127 bytes, no '/', not `.` or `..`, no NUL.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < NAME_LEN
        && name != "."
        && name != ".."
        && !name.contains(['/', '\0'])
}

fn check_name(name: &str) -> io::Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(invalid(format!("device-mapper name '{name}' is not valid")))
    }
}

/// A `struct dm_ioctl` for `name` followed by `data`, version 4.0.0 (the kernel answers with its
/// own minor; any 4.x accepts a request for 4.0).
fn header(name: &str, uuid: Option<&str>, flags: u32, targets: u32, data: &[u8]) -> Vec<u8> {
    let size = HEADER + data.len();
    let mut b = vec![0u8; size];
    b[0..4].copy_from_slice(&4u32.to_ne_bytes());
    b[OFF_DATA_SIZE..OFF_DATA_SIZE + 4].copy_from_slice(&(size as u32).to_ne_bytes());
    b[OFF_DATA_START..OFF_DATA_START + 4].copy_from_slice(&(HEADER as u32).to_ne_bytes());
    b[OFF_TARGET_COUNT..OFF_TARGET_COUNT + 4].copy_from_slice(&targets.to_ne_bytes());
    b[OFF_FLAGS..OFF_FLAGS + 4].copy_from_slice(&flags.to_ne_bytes());
    let n = name.as_bytes();
    b[OFF_NAME..OFF_NAME + n.len().min(NAME_LEN - 1)]
        .copy_from_slice(&n[..n.len().min(NAME_LEN - 1)]);
    if let Some(u) = uuid {
        let u = u.as_bytes();
        let l = u.len().min(UUID_LEN - 1);
        b[OFF_UUID..OFF_UUID + l].copy_from_slice(&u[..l]);
    }
    b[HEADER..].copy_from_slice(data);
    b
}

/// The DM_TABLE_LOAD payload: one `struct dm_target_spec` per target, each followed by its
/// NUL-terminated params padded to 8 bytes; `next` is the distance from this spec's start to
/// the next one.
fn table_data(table: &[Target]) -> io::Result<Vec<u8>> {
    let mut b = Vec::new();
    for t in table {
        if t.kind.is_empty() || t.kind.len() >= TYPE_NAME_LEN || t.kind.contains('\0') {
            return Err(invalid(format!("device-mapper target '{}'", t.kind)));
        }
        if t.params.contains('\0') {
            return Err(invalid(format!("{} target params contain a NUL", t.kind)));
        }
        let next = (SPEC + t.params.len() + 1).next_multiple_of(8);
        let at = b.len();
        b.resize(at + next, 0);
        let s = &mut b[at..];
        s[0..8].copy_from_slice(&t.start.to_ne_bytes());
        s[8..16].copy_from_slice(&t.len.to_ne_bytes());
        // status (i32) stays 0
        s[20..24].copy_from_slice(&(next as u32).to_ne_bytes());
        s[24..24 + t.kind.len()].copy_from_slice(t.kind.as_bytes());
        s[SPEC..SPEC + t.params.len()].copy_from_slice(t.params.as_bytes());
    }
    Ok(b)
}

/// `dev` of a dm_ioctl answer (huge_encode_dev, the same encoding as userspace's dev_t).
fn answer_dev(b: &[u8]) -> u64 {
    let mut d = [0u8; 8];
    d.copy_from_slice(&b[OFF_DEV..OFF_DEV + 8]);
    u64::from_ne_bytes(d)
}

fn ioctl(ctl: &OwnedFd, cmd: u32, buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: `buf` starts with a struct dm_ioctl whose data_size is `buf.len()`, so the kernel
    // reads and writes only inside it; `ctl` is open.
    let r = unsafe { libc::ioctl(ctl.as_raw_fd(), cmd as _, buf.as_mut_ptr()) };
    super::cvt(r).map(drop)
}

fn c(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| invalid(format!("{}", p.display())))
}

/// Opens the control node, making `/dev/mapper` and `control` when the /dev in use lacks them.
fn control() -> io::Result<OwnedFd> {
    let open = || {
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(CONTROL)
    };
    match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(MAPPER_DIR)?;
            let dev = super::makedev(CONTROL_DEV.0, CONTROL_DEV.1);
            let path = c(Path::new(CONTROL))?;
            match super::mknodat(libc::AT_FDCWD, &path, libc::S_IFCHR | 0o600, dev) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            Ok(open()?.into())
        }
        r => Ok(r?.into()),
    }
}

/// Create device `name` (uuid optional), load `table`, resume. Returns the block device path.
/// `read_only` sets DM_READONLY_FLAG. On any failure, removes what it created.
pub fn create(
    name: &str,
    uuid: Option<&str>,
    table: &[Target],
    read_only: bool,
) -> io::Result<PathBuf> {
    check_name(name)?;
    if uuid.is_some_and(|u| u.len() >= UUID_LEN || u.contains('\0')) {
        return Err(invalid(format!(
            "device-mapper uuid of '{name}' is not valid"
        )));
    }
    let data = table_data(table)?;
    let ctl = control()?;
    let flags = if read_only { READONLY_FLAG } else { 0 };
    ioctl(&ctl, DEV_CREATE, &mut header(name, uuid, flags, 0, &[]))?;
    let r = (|| {
        let mut load = header(name, None, flags, table.len() as u32, &data);
        ioctl(&ctl, TABLE_LOAD, &mut load)?;
        // DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: the loaded table goes live
        let mut resume = header(name, None, 0, 0, &[]);
        ioctl(&ctl, DEV_SUSPEND, &mut resume)?;
        let node = Path::new(MAPPER_DIR).join(name);
        let _ = fs::remove_file(&node);
        super::mknod_block(&c(&node)?, 0o600, answer_dev(&resume))?;
        Ok(node)
    })();
    if r.is_err() {
        let _ = remove_with(&ctl, name);
    }
    r
}

fn remove_with(ctl: &OwnedFd, name: &str) -> io::Result<()> {
    // a mount just released may still hold the device for a moment (deferred close)
    let mut tries = 0;
    let r = loop {
        match ioctl(ctl, DEV_REMOVE, &mut header(name, None, 0, 0, &[])) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break Ok(()),
            r => break r,
        }
    };
    if r.is_ok() {
        let _ = fs::remove_file(Path::new(MAPPER_DIR).join(name));
    }
    r
}

/// Remove device `name` (ENXIO = already gone = Ok). Retries EBUSY briefly (deferred close).
pub fn remove(name: &str) -> io::Result<()> {
    check_name(name)?;
    remove_with(&control()?, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
    }

    #[test]
    fn ioctl_numbers_match_the_kernel() {
        // values of DM_DEV_CREATE etc. as the C headers compute them on x86_64/arm
        assert_eq!(DEV_CREATE, 0xC138_FD03);
        assert_eq!(DEV_REMOVE, 0xC138_FD04);
        assert_eq!(DEV_SUSPEND, 0xC138_FD06);
        assert_eq!(TABLE_LOAD, 0xC138_FD09);
        assert_eq!(OFF_UUID + UUID_LEN + 7, HEADER);
    }

    #[test]
    fn header_carries_version_sizes_flags_name_and_uuid() {
        let b = header("pv--x", Some("CRYPT-1"), READONLY_FLAG, 2, &[9; 16]);
        assert_eq!(b.len(), HEADER + 16);
        assert_eq!(u32_at(&b, 0), 4);
        assert_eq!(u32_at(&b, OFF_DATA_SIZE), (HEADER + 16) as u32);
        assert_eq!(u32_at(&b, OFF_DATA_START), HEADER as u32);
        assert_eq!(u32_at(&b, OFF_TARGET_COUNT), 2);
        assert_eq!(u32_at(&b, OFF_FLAGS), 1);
        assert_eq!(&b[OFF_NAME..OFF_NAME + 6], b"pv--x\0");
        assert_eq!(&b[OFF_UUID..OFF_UUID + 8], b"CRYPT-1\0");
        assert_eq!(&b[HEADER..], &[9; 16]);
    }

    #[test]
    fn table_specs_are_padded_and_chained() {
        let t = [
            Target {
                start: 0,
                len: 8,
                kind: "linear",
                params: "7:0 0",
            },
            Target {
                start: 8,
                len: 16,
                kind: "verity",
                params: "1 7:0 7:1 4096 4096 1 1 sha256 ab cd",
            },
        ];
        let d = table_data(&t).unwrap();
        // 40 + "7:0 0\0" = 46 -> 48
        assert_eq!(u32_at(&d, 20), 48);
        assert_eq!(&d[24..31], b"linear\0");
        assert_eq!(&d[40..46], b"7:0 0\0");
        let s = &d[48..];
        assert_eq!(u64::from_ne_bytes(s[0..8].try_into().unwrap()), 8);
        assert_eq!(u64::from_ne_bytes(s[8..16].try_into().unwrap()), 16);
        assert_eq!(&s[24..31], b"verity\0");
        let next = u32_at(s, 20) as usize;
        assert_eq!(next % 8, 0);
        assert_eq!(s.len(), next);
        assert_eq!(s[SPEC + t[1].params.len()], 0);
    }

    #[test]
    fn bad_targets_are_refused() {
        let long = Target {
            start: 0,
            len: 1,
            kind: "a-target-name-too-long",
            params: "",
        };
        assert!(table_data(&[long]).is_err());
        let nul = Target {
            start: 0,
            len: 1,
            kind: "linear",
            params: "7:0\0",
        };
        assert!(table_data(&[nul]).is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("pv--dmverity--app-rootfs"));
        assert!(valid_name(&"a".repeat(127)));
        assert!(!valid_name(&"a".repeat(128)));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".."));
        assert!(!valid_name("a\0b"));
        assert!(create("a/b", None, &[], true).is_err());
    }

    #[test]
    fn answer_dev_reads_the_dev_field() {
        let mut b = header("x", None, 0, 0, &[]);
        b[OFF_DEV..OFF_DEV + 8].copy_from_slice(&super::super::makedev(253, 3).to_ne_bytes());
        assert_eq!(answer_dev(&b), super::super::makedev(253, 3));
    }
}
