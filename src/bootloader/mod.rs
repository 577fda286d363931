//! Boot-env backends: where `pv_rev` (the committed revision, the rollback point) and `pv_try`
//! (the revision to try once) live for the bootloader (upstream's try-boot contract and bootloader backends).
//!
//! Two layers: pure formats ([`uboot`], [`grubenv`]) over an [`Env`], and [`Bootloader`]
//! backends that read the file, change only `pv_rev`/`pv_try`, and rewrite it whole with
//! [`write_atomic`]. A file that does not parse is an error, never half-read and never reset:
//! rewriting it would throw away the rollback point.
use crate::storage::fs::{create_dir_all, write_atomic, Fs};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub mod grubenv;
pub mod uboot;

#[cfg(test)]
mod tests;

pub const PV_REV: &str = "pv_rev";
pub const PV_TRY: &str = "pv_try";

/// A boot env: `(key, value)` records in file order. Keys pantavisor does not know (the
/// bootloader's own) are kept, in their order, across rewrites.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    entries: Vec<(String, String)>,
}

impl Env {
    pub fn new() -> Env {
        Env::default()
    }

    /// Exact key match (upstream compares prefixes, so its `pv_try` also hits `pv_trying`).
    /// The last record wins, as when U-Boot or GRUB loads the file; empty reads as unset.
    pub fn get(&self, key: &str) -> Option<&str> {
        let (_, v) = self.entries.iter().rev().find(|(k, _)| k == key)?;
        Some(v.as_str()).filter(|v| !v.is_empty())
    }

    /// Changes the first record of `key` in place and drops later duplicates, or appends a
    /// new record (what `grub-editenv set` does). Values must not hold NUL or newline for
    /// uboot.txt; the backends only store checked revision names.
    pub fn set(&mut self, key: &str, value: &str) {
        let Some(first) = self.entries.iter().position(|(k, _)| k == key) else {
            self.entries.push((key.to_string(), value.to_string()));
            return;
        };
        let mut seen = 0;
        self.entries.retain(|(k, _)| {
            let dup = k == key && seen > 0;
            seen += usize::from(k == key);
            !dup
        });
        if let Some(e) = self.entries.get_mut(first) {
            e.1 = value.to_string();
        }
    }

    /// Removes every record of `key`.
    pub fn remove(&mut self, key: &str) {
        self.entries.retain(|(k, _)| k != key);
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }
}

/// Why bytes are not a valid env file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// Bad header or record starting at this byte offset (also: the file ends too early).
    Malformed { offset: usize, what: &'static str },
    /// A grubenv block is exactly [`grubenv::SIZE`] bytes.
    WrongSize { len: usize },
    /// Rendering needs `len` bytes, more than a grubenv block holds.
    TooLarge { len: usize },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            FormatError::Malformed { offset, what } => write!(f, "byte {offset}: {what}"),
            FormatError::WrongSize { len } => {
                write!(f, "{len} bytes, a GRUB env block is {}", grubenv::SIZE)
            }
            FormatError::TooLarge { len } => {
                write!(
                    f,
                    "env needs {len} bytes, a GRUB env block holds {}",
                    grubenv::SIZE
                )
            }
        }
    }
}

fn malformed(offset: usize, what: &'static str) -> FormatError {
    FormatError::Malformed { offset, what }
}

/// A key as both formats accept it: UTF-8, not empty, no control characters (a newline in a
/// key would read differently in U-Boot's text import).
fn parse_key(bytes: &[u8], offset: usize) -> Result<String, FormatError> {
    let key = std::str::from_utf8(bytes).map_err(|_| malformed(offset, "key is not UTF-8"))?;
    if key.is_empty() {
        return Err(malformed(offset, "empty key"));
    }
    if key.chars().any(char::is_control) {
        return Err(malformed(offset, "control character in key"));
    }
    Ok(key.to_string())
}

fn parse_value(bytes: Vec<u8>, offset: usize) -> Result<String, FormatError> {
    String::from_utf8(bytes).map_err(|_| malformed(offset, "value is not UTF-8"))
}

/// Fuzz entry point: whatever parses must render and parse back to the same env.
/// (Panicking is how a fuzzer reports a bug; nothing else calls this.)
pub fn fuzz_uboot(data: &[u8]) {
    if let Ok(env) = uboot::parse(data) {
        assert_eq!(
            uboot::parse(&uboot::render(&env)),
            Ok(env),
            "uboot.txt round trip"
        );
    }
}

/// Fuzz entry point: as [`fuzz_uboot`]; a parsed block must also fit again when rendered.
pub fn fuzz_grubenv(data: &[u8]) {
    if let Ok(env) = grubenv::parse(data) {
        let bytes = grubenv::render(&env);
        assert!(bytes.is_ok(), "grubenv render of a parsed block: {bytes:?}");
        if let Ok(bytes) = bytes {
            assert_eq!(grubenv::parse(&bytes), Ok(env), "grubenv round trip");
        }
    }
}

/// `pv_rev` and `pv_try` as the boot env holds them (`None`: unset or empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootEnv {
    pub rev: Option<String>,
    pub try_rev: Option<String>,
}

#[derive(Debug)]
pub enum Error {
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    Format {
        op: &'static str,
        path: PathBuf,
        err: FormatError,
    },
    /// A revision name the env or the kernel command line cannot carry.
    BadRevision {
        op: &'static str,
        path: PathBuf,
        rev: String,
    },
    /// `PV_BOOTLOADER_TYPE` names a backend this build does not have.
    Unsupported { kind: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::Io { op, path, err } => write!(f, "boot env: {op} {}: {err}", path.display()),
            Error::Format { op, path, err } => {
                write!(f, "boot env: {op} {}: {err}", path.display())
            }
            Error::BadRevision { op, path, rev } => {
                write!(f, "boot env: {op} {}: bad revision name {rev:?}", path.display())
            }
            Error::Unsupported { kind } => write!(
                f,
                "boot env: PV_BOOTLOADER_TYPE {kind:?} is not supported yet (supported: uboot, uboot-pvk, grub)"
            ),
        }
    }
}

impl std::error::Error for Error {}

pub trait Bootloader {
    fn read(&self, fs: &dyn Fs) -> Result<BootEnv, Error>;
    /// Sets `pv_try=<rev>` (install step of 5.6).
    fn set_try(&self, fs: &dyn Fs, rev: &str) -> Result<(), Error>;
    /// Commit (5.5 finalize): `pv_rev=<rev>` and `pv_try` unset, in one crash-safe write.
    fn commit(&self, fs: &dyn Fs, rev: &str) -> Result<(), Error>;
    /// Clears `pv_try` after a fallback boot recorded its outcome.
    fn clear_try(&self, fs: &dyn Fs) -> Result<(), Error>;
    fn name(&self) -> &'static str;
}

/// The backend for `PV_BOOTLOADER_TYPE`, its env file under `<storage_root>/boot/`. The
/// config refuses the types without a backend when it is read, so `Unsupported` only means a
/// caller that bypassed it; the device still treats it as a FATAL boot error and reboots,
/// never as an exit of PID 1.
pub fn for_type(kind: &str, storage_root: &Path) -> Result<Box<dyn Bootloader>, Error> {
    let (name, file, format) = match kind {
        "uboot" => ("uboot", "uboot.txt", Format::Uboot),
        "uboot-pvk" => ("uboot-pvk", "uboot.txt", Format::Uboot),
        "grub" => ("grub", "grubenv", Format::Grub),
        _ => {
            return Err(Error::Unsupported {
                kind: kind.to_string(),
            })
        }
    };
    Ok(Box::new(EnvFile {
        name,
        path: storage_root.join("boot").join(file),
        format,
    }))
}

#[derive(Clone, Copy)]
enum Format {
    Uboot,
    Grub,
}

/// A backend whose whole state is one env file.
struct EnvFile {
    name: &'static str,
    path: PathBuf,
    format: Format,
}

impl EnvFile {
    /// The env and the bytes it came from; no file yet reads as empty (first boot writes it).
    fn load(&self, fs: &dyn Fs, op: &'static str) -> Result<(Env, Option<Vec<u8>>), Error> {
        let bytes = match fs.read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Env::new(), None)),
            Err(err) => return Err(self.io_error(op)(err)),
        };
        let env = match self.format {
            Format::Uboot => uboot::parse(&bytes),
            Format::Grub => grubenv::parse(&bytes),
        };
        Ok((env.map_err(self.format_error(op))?, Some(bytes)))
    }

    /// Read, change, rewrite whole and atomically; every record the change does not touch
    /// is kept. A corrupt file fails in `load`, before anything is written.
    fn update(
        &self,
        fs: &dyn Fs,
        op: &'static str,
        change: impl FnOnce(&mut Env),
    ) -> Result<(), Error> {
        let (mut env, old) = self.load(fs, op)?;
        change(&mut env);
        let bytes = match self.format {
            Format::Uboot => uboot::render(&env),
            Format::Grub => grubenv::render(&env).map_err(self.format_error(op))?,
        };
        // Same bytes already on disk: spare the flash a write.
        if old.as_deref() == Some(bytes.as_slice()) {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            create_dir_all(fs, dir).map_err(|err| Error::Io {
                op,
                path: dir.to_path_buf(),
                err,
            })?;
        }
        write_atomic(fs, &self.path, &bytes).map_err(self.io_error(op))?;
        // Durable for Linux now, but on ext4 the new file may live only in the journal until
        // a checkpoint, and U-Boot's ext4 reader does not replay journals: after a power cut
        // it would boot by the old env (seen in the VM tier). Push it home.
        if let Some(dir) = self.path.parent() {
            if let Err(e) = fs.checkpoint(dir) {
                crate::pvlog!(
                    Warn,
                    "bootloader",
                    "journal checkpoint of {}: {e}",
                    dir.display()
                );
            }
        }
        crate::pvlog!(
            Info,
            "bootloader",
            "{} written: pv_rev={} pv_try={}",
            self.path.display(),
            env.get(PV_REV).unwrap_or(""),
            env.get(PV_TRY).unwrap_or("")
        );
        Ok(())
    }

    fn io_error(&self, op: &'static str) -> impl FnOnce(io::Error) -> Error + '_ {
        move |err| Error::Io {
            op,
            path: self.path.clone(),
            err,
        }
    }

    fn format_error(&self, op: &'static str) -> impl FnOnce(FormatError) -> Error + '_ {
        move |err| Error::Format {
            op,
            path: self.path.clone(),
            err,
        }
    }

    /// U-Boot's import deletes a variable on `key=`, so upstream writes that; GRUB's own
    /// `grub-editenv unset` removes the line.
    fn unset(&self, env: &mut Env, key: &str) {
        match self.format {
            Format::Uboot => env.set(key, ""),
            Format::Grub => env.remove(key),
        }
    }

    /// The bootloader copies the value onto the kernel command line: no blanks, no control
    /// characters (which also keeps NUL and newline out of the env file), and no backslash,
    /// which U-Boot's import would take as an escape.
    fn check_rev(&self, op: &'static str, rev: &str) -> Result<(), Error> {
        let bad = |c: char| c.is_whitespace() || c.is_control() || c == '\\';
        if rev.is_empty() || rev.chars().any(bad) {
            return Err(Error::BadRevision {
                op,
                path: self.path.clone(),
                rev: rev.to_string(),
            });
        }
        Ok(())
    }
}

impl Bootloader for EnvFile {
    fn read(&self, fs: &dyn Fs) -> Result<BootEnv, Error> {
        let (env, _) = self.load(fs, "read")?;
        Ok(BootEnv {
            rev: env.get(PV_REV).map(str::to_string),
            try_rev: env.get(PV_TRY).map(str::to_string),
        })
    }

    fn set_try(&self, fs: &dyn Fs, rev: &str) -> Result<(), Error> {
        let op = "set pv_try in";
        self.check_rev(op, rev)?;
        self.update(fs, op, |env| env.set(PV_TRY, rev))
    }

    fn commit(&self, fs: &dyn Fs, rev: &str) -> Result<(), Error> {
        let op = "commit to";
        self.check_rev(op, rev)?;
        self.update(fs, op, |env| {
            env.set(PV_REV, rev);
            self.unset(env, PV_TRY);
        })
    }

    fn clear_try(&self, fs: &dyn Fs) -> Result<(), Error> {
        self.update(fs, "clear pv_try in", |env| self.unset(env, PV_TRY))
    }

    fn name(&self) -> &'static str {
        self.name
    }
}
