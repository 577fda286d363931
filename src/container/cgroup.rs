//! cgroup v2: one cgroup per container at `<root>/lxc/<name>`, where the root is pantavisor's
//! own cgroup (pv-ctrl names its callers by their cgroup). Knobs are written where their
//! controller exists; a missing controller is logged, never fatal (this host's cgroup2 has
//! none but hugetlb). v1 hierarchies are never touched.
use super::lxc::CgroupKnob;
use crate::pvlog;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `\040`-style escapes of /proc/self/mountinfo fields.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\' {
            if let Some(oct) = b.get(i + 1..i + 4) {
                if oct.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    let v = oct
                        .iter()
                        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                    if let Ok(byte) = u8::try_from(v) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup2 mounts of a mountinfo text: (root inside the hierarchy, mount point).
pub(crate) fn cgroup2_mounts(mountinfo: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let f: Vec<&str> = left.split_whitespace().collect();
        if let (Some(root), Some(mnt)) = (f.get(3), f.get(4)) {
            out.push((unescape(root), unescape(mnt)));
        }
    }
    out
}

/// The `0::<path>` line of /proc/self/cgroup.
pub(crate) fn unified_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_end().to_string())
}

/// The directory of cgroup `path` under a cgroup2 mount whose root is `mount_root`.
pub(crate) fn dir_of(mount_point: &str, mount_root: &str, path: &str) -> Option<PathBuf> {
    let rel = if mount_root == "/" {
        path
    } else {
        let rest = path.strip_prefix(mount_root)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        rest
    };
    let rel = rel.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rel.is_empty() {
        PathBuf::from(mount_point)
    } else {
        Path::new(mount_point).join(rel)
    })
}

/// Pantavisor's own cgroup directory: its `0::` path of /proc/self/cgroup under the cgroup2
/// mount found in /proc/self/mountinfo. Err says why there is none.
pub fn discover_root() -> Result<PathBuf, String> {
    let mi = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let cg =
        fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let path = unified_path(&cg).ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
    if path.ends_with("(deleted)") {
        return Err(format!("own cgroup {path} was removed"));
    }
    let mounts = cgroup2_mounts(&mi);
    if mounts.is_empty() {
        return Err("no cgroup2 file system mounted".to_string());
    }
    mounts
        .iter()
        .find_map(|(root, mnt)| dir_of(mnt, root, &path).filter(|d| d.is_dir()))
        .ok_or_else(|| format!("own cgroup {path} is not under a cgroup2 mount"))
}

/// A cgroup v1 knob in its v2 form, or why it has none.
pub(crate) fn map_v1(key: &str, value: &str) -> Result<(String, String), String> {
    let v = value.trim();
    let same = |k: &str| Ok((k.to_string(), v.to_string()));
    match key {
        "memory.limit_in_bytes" => Ok((
            "memory.max".into(),
            if v == "-1" { "max".into() } else { v.into() },
        )),
        "memory.soft_limit_in_bytes" => Ok((
            "memory.low".into(),
            if v == "-1" { "0".into() } else { v.into() },
        )),
        "cpu.shares" => {
            let shares: u64 = v
                .parse()
                .map_err(|_| format!("cpu.shares {v}: not a number"))?;
            // crun's conversion of the [2, 262144] range onto [1, 10000]
            let w = 1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142;
            Ok(("cpu.weight".into(), w.to_string()))
        }
        "blkio.weight" => {
            let bw: u64 = v
                .parse()
                .map_err(|_| format!("blkio.weight {v}: not a number"))?;
            let w = 1 + (bw.clamp(10, 1000) - 10) * 9999 / 990;
            Ok(("io.weight".into(), w.to_string()))
        }
        "cpuset.cpus" | "cpuset.mems" | "pids.max" => same(key),
        _ => Err(format!(
            "lxc.cgroup.{key}: no cgroup v2 equivalent, not applied"
        )),
    }
}

/// The knobs in v2 form, with `cpu.cfs_quota_us` + `cpu.cfs_period_us` joined into
/// `cpu.max`; what cannot be mapped comes back as messages to log.
pub(crate) fn v2_knobs(knobs: &[CgroupKnob]) -> (Vec<(String, String)>, Vec<String>) {
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let mut quota = None;
    let mut period = None;
    for k in knobs {
        match k.v2 {
            true => out.push((k.controller_knob.clone(), k.value.trim().to_string())),
            false => match k.controller_knob.as_str() {
                "cpu.cfs_quota_us" => quota = Some(k.value.trim().to_string()),
                "cpu.cfs_period_us" => period = Some(k.value.trim().to_string()),
                key if key.starts_with("devices.") => {}
                key => match map_v1(key, &k.value) {
                    Ok(kv) => out.push(kv),
                    Err(m) => notes.push(m),
                },
            },
        }
    }
    if quota.is_some() || period.is_some() {
        let q = match quota.as_deref() {
            None | Some("-1") => "max".to_string(),
            Some(q) => q.to_string(),
        };
        let p = period.unwrap_or_else(|| "100000".to_string());
        out.push(("cpu.max".into(), format!("{q} {p}")));
    }
    (out, notes)
}

/// A knob name must be a plain file name of the cgroup directory.
fn valid_knob(key: &str) -> bool {
    !key.is_empty()
        && key.contains('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    // cgroup files take one write; a short write cannot happen for these sizes
    fs::write(path, value.as_bytes())
}

fn read_controllers(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("cgroup.controllers"))
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// A container's cgroup.
#[derive(Debug)]
pub(crate) struct Cgroup {
    pub dir: PathBuf,
    /// The directory opened for clone3's CLONE_INTO_CGROUP.
    fd: OwnedFd,
}

/// A knob that could not be written: (file, error).
pub(crate) struct KnobError {
    pub path: PathBuf,
    pub error: io::Error,
}

impl Cgroup {
    /// `<root>/lxc/<name>`, fresh: a leftover of an earlier run is emptied and removed first.
    pub fn create(root: &Path, name: &str) -> io::Result<Cgroup> {
        let lxc = root.join("lxc");
        match fs::create_dir(&lxc) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let dir = lxc.join(name);
        if dir.is_dir() {
            pvlog!(
                Warn,
                "container",
                "container {name}: removing stale cgroup {}",
                dir.display()
            );
            kill_and_remove(&dir);
        }
        match fs::create_dir(&dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        let fd = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(&dir)?;
        Ok(Cgroup { dir, fd: fd.into() })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Writes the knobs whose controller is available (enabling it along `root/lxc` first);
    /// returns what to log, or the first knob write that failed where it should have worked.
    pub fn apply(&self, root: &Path, knobs: &[(String, String)]) -> Result<Vec<String>, KnobError> {
        let mut notes = Vec::new();
        for (key, value) in knobs {
            if !valid_knob(key) {
                notes.push(format!(
                    "cgroup knob '{key}' is not a knob name, not applied"
                ));
                continue;
            }
            let controller = key.split('.').next().unwrap_or("");
            if controller != "cgroup"
                && !read_controllers(&self.dir).iter().any(|c| c == controller)
            {
                // enable it on the way down: pantavisor's cgroup, then lxc/
                for d in [root.to_path_buf(), root.join("lxc")] {
                    let _ =
                        write_file(&d.join("cgroup.subtree_control"), &format!("+{controller}"));
                }
                if !read_controllers(&self.dir).iter().any(|c| c == controller) {
                    notes.push(format!(
                        "cgroup controller {controller} not available: {key} = {value} not applied"
                    ));
                    continue;
                }
            }
            let path = self.dir.join(key);
            if let Err(error) = write_file(&path, value) {
                return Err(KnobError { path, error });
            }
            notes.push(format!("cgroup {key} = {value}"));
        }
        Ok(notes)
    }

    /// Moves `pid` into the cgroup (when clone3 could not start it there).
    pub fn add_pid(&self, pid: i32) -> io::Result<()> {
        write_file(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    /// `cgroup.kill` (Linux 5.14): SIGKILL to every process of the cgroup and its children.
    pub fn kill(&self) -> io::Result<()> {
        write_file(&self.dir.join("cgroup.kill"), "1")
    }

    pub fn populated(&self) -> bool {
        populated(&self.dir)
    }

    /// Removes the cgroup (and any cgroups the container made below it).
    pub fn remove(self) -> io::Result<()> {
        remove_tree(&self.dir, Instant::now() + Duration::from_secs(2))
    }
}

fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

fn kill_and_remove(dir: &Path) {
    if populated(dir) {
        let _ = write_file(&dir.join("cgroup.kill"), "1");
    }
    if let Err(e) = remove_tree(dir, Instant::now() + Duration::from_secs(2)) {
        pvlog!(Warn, "container", "cgroup {}: {e}", dir.display());
    }
}

/// rmdir depth first; EBUSY (processes still leaving) is retried until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) -> io::Result<()> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path(), deadline)?;
            }
        }
    }
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_unified_mount_and_own_path() {
        let mi = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                  35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                  50 1 0:40 /sub /mnt/with\\040space rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mounts(mi),
            vec![
                ("/".to_string(), "/sys/fs/cgroup/unified".to_string()),
                ("/sub".to_string(), "/mnt/with space".to_string())
            ]
        );
        assert_eq!(
            unified_path("4:memory:/x\n0::/pv-test-1\n").as_deref(),
            Some("/pv-test-1")
        );
        assert_eq!(
            dir_of("/sys/fs/cgroup/unified", "/", "/pv-test-1"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/pv-test-1"))
        );
        assert_eq!(
            dir_of("/sys/fs/cgroup", "/", "/"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(dir_of("/m", "/sub", "/sub/a"), Some(PathBuf::from("/m/a")));
        assert_eq!(dir_of("/m", "/sub", "/subx/a"), None);
        assert_eq!(dir_of("/m", "/", "/a/../b"), None);
    }

    #[test]
    fn v1_knobs_map_to_v2() {
        let k = |v2, key: &str, value: &str| CgroupKnob {
            v2,
            controller_knob: key.to_string(),
            value: value.to_string(),
        };
        let (out, notes) = v2_knobs(&[
            k(false, "memory.limit_in_bytes", "-1"),
            k(false, "cpu.shares", "1024"),
            k(false, "cpu.cfs_quota_us", "50000"),
            k(false, "devices.allow", "a"),
            k(false, "memory.memsw.limit_in_bytes", "1G"),
            k(true, "pids.max", "64"),
        ]);
        assert_eq!(
            out,
            vec![
                ("memory.max".to_string(), "max".to_string()),
                ("cpu.weight".to_string(), "39".to_string()),
                ("pids.max".to_string(), "64".to_string()),
                ("cpu.max".to_string(), "50000 100000".to_string()),
            ]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("memsw"));
        assert!(!valid_knob("../cgroup.procs"));
        assert!(valid_knob("memory.max"));
    }
}
