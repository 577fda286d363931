//! User-meta and device-meta as containers see them: `<rundir>/<kind>/<key>` for mgmt
//! containers, `<rundir>/<kind>.<c>/<rest>` for container `<c>` when the key is `<c>.<rest>`;
//! user-meta keys that name a configuration key override it at the `metadata` level; the
//! device's own device-meta (upstream's `pantavisor.*`, `pantahub.*`, `time`, `sysinfo`,
//! `storage`, `interfaces`) is kept in memory and in the views, never on storage.
use super::Device;
use crate::config::Config;
use crate::control::routes::MetaKind;
use crate::json::{ArrayWriter, ObjectWriter};
use crate::pvlog;
use crate::storage::meta::MetaStore;
use crate::supervisor::Status;

/// The device's own device-meta keys in the order they were first set: upstream prepends a
/// new key to its list, so `/device-meta` shows the newest first.
#[derive(Debug, Default)]
pub struct OwnMeta(Vec<(String, String)>);

impl OwnMeta {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key`; false when it already had this value.
    pub fn set(&mut self, key: &str, value: String) -> bool {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) if *v == value => false,
            Some((_, v)) => {
                *v = value;
                true
            }
            None => {
                self.0.push((key.to_string(), value));
                true
            }
        }
    }

    pub fn remove(&mut self, key: &str) {
        self.0.retain(|(k, _)| k != key);
    }

    /// Newest key first, as upstream lists them.
    pub fn newest_first(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().rev().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl Device<'_> {
    pub(super) fn meta_store(&self, kind: MetaKind) -> MetaStore<'_> {
        let dir = match kind {
            MetaKind::User => self.cfg.cache_usrmetadir(),
            MetaKind::Device => self.cfg.cache_devmetadir(),
        };
        MetaStore::new(self.st.fs, dir.into_owned())
    }

    /// The run-time views of one meta key; `None` removes them.
    pub(super) fn publish_meta(&self, kind: MetaKind, key: &str, value: Option<&[u8]>) {
        let base = match kind {
            MetaKind::User => "user-meta",
            MetaKind::Device => "device-meta",
        };
        let run = std::path::Path::new(self.cfg.system_rundir());
        let mut views = vec![run.join(base).join(key)];
        if let Some((c, rest)) = crate::storage::meta::container_view(key) {
            views.push(run.join(format!("{base}.{c}")).join(rest));
        }
        for v in views {
            let res = match value {
                Some(val) => v
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| std::fs::write(&v, val)),
                None => match std::fs::remove_file(&v) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            if let Err(e) = res {
                pvlog!(Warn, "device", "meta view {}: {e}", v.display());
            }
        }
    }

    /// At start: the views hold exactly what the stores hold.
    pub(super) fn publish_all_meta(&self) {
        let run = std::path::Path::new(self.cfg.system_rundir());
        if let Ok(rd) = std::fs::read_dir(run) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with("user-meta") || n.starts_with("device-meta") {
                    let _ = crate::storage::fs::remove_all(&crate::storage::fs::RealFs, &e.path());
                }
            }
        }
        for kind in [MetaKind::User, MetaKind::Device] {
            for (k, v) in self.meta_store(kind).list().unwrap_or_default() {
                self.publish_meta(kind, &k, Some(&v));
            }
        }
    }

    /// pv-ctrl set or deleted a key: publish it, and for user-meta apply it as configuration.
    pub(super) fn meta_changed(&mut self, kind: MetaKind, key: &str) {
        let mut value = self.meta_store(kind).get(key).ok().flatten();
        if kind == MetaKind::User {
            apply_user_meta(self.cfg, key, value.as_deref());
        } else if let Some(own) = self.devmeta.get(key) {
            match &value {
                // deleted: gone until the device sets it again, as upstream, whose
                // device-meta is one list
                None => self.devmeta.remove(key),
                // the Hub client's keys (`pantahub.online`, ...): its value, in memory as the
                // device's own keys are, not on storage
                Some(v) if key.starts_with("pantahub.") => {
                    self.devmeta
                        .set(key, String::from_utf8_lossy(v).into_owned());
                    let _ = self.meta_store(kind).delete(key);
                }
                // the device's own key shadows a stored one, in the views as in GET
                Some(_) => value = Some(own.as_bytes().to_vec()),
            }
        }
        if kind == MetaKind::Device && key == "pantahub.online" {
            let own = self.devmeta.get(key).map(str::as_bytes);
            let online = own.or(value.as_deref()) == Some(b"1".as_slice());
            self.feed(super::model::Input::HubOnline(online));
        }
        self.publish_meta(kind, key, value.as_deref());
    }

    /// Device-meta `pantavisor.status`: the revision status.
    pub(super) fn publish_status(&mut self, s: Status) {
        pvlog!(
            Info,
            "device",
            "revision {} status {}",
            self.rev,
            s.as_str()
        );
        self.set_own_meta("pantavisor.status", s.as_str().to_string());
    }

    /// One of the device's own device-meta keys: kept in memory and in the run-time views
    /// (a tmpfs on a device), never written to storage -- `time` changes at every refresh.
    pub(super) fn set_own_meta(&mut self, key: &str, value: String) {
        let view = value.clone();
        if self.devmeta.set(key, value) {
            self.publish_meta(MetaKind::Device, key, Some(view.as_bytes()));
        }
    }

    /// At start: what does not change while the device runs, and the revision.
    pub(super) fn init_own_meta(&mut self) {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let dt = std::fs::read("/proc/device-tree/model").unwrap_or_default();
        // upstream's order (metadata.c's readers), which its listing shows reversed
        let mut keys = vec![
            (
                "pantavisor.arch",
                arch(
                    std::env::consts::ARCH,
                    usize::BITS,
                    cfg!(target_endian = "little"),
                ),
            ),
            ("pantavisor.version", env!("CARGO_PKG_VERSION").to_string()),
        ];
        if let Some(m) = dt_model(&dt) {
            keys.push(("pantavisor.dtmodel", m));
        }
        if let Some(m) = cpu_model(&cpuinfo) {
            keys.push(("pantavisor.cpumodel", m));
        }
        keys.extend([
            ("pantavisor.revision", self.rev.clone()),
            ("pantavisor.mode", "local".to_string()),
            // built without a Hub client: never online, never claimed
            ("pantahub.online", "0".to_string()),
            ("pantahub.claimed", "0".to_string()),
        ]);
        match crate::sys::host::uname() {
            Ok(u) => keys.push(("pantavisor.uname", uname_json(&u))),
            Err(e) => pvlog!(Warn, "device", "uname: {e}"),
        }
        for (k, v) in keys {
            self.set_own_meta(k, v);
        }
        self.refresh_own_meta();
    }

    /// `time`, `sysinfo`, `storage` and `interfaces`, at most every
    /// PH_METADATA_DEVMETA_INTERVAL (upstream's push interval); each a syscall or two.
    pub(super) fn refresh_own_meta_due(&mut self, now_ms: u64) {
        let every = self
            .cfg
            .get_int(crate::config::Key::PH_METADATA_DEVMETA_INTERVAL)
            .saturating_mul(1000);
        if now_ms.saturating_sub(self.devmeta_refreshed) >= every {
            self.refresh_own_meta();
        }
    }

    fn refresh_own_meta(&mut self) {
        self.devmeta_refreshed = crate::event_loop::EventLoop::now_ms();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.set_own_meta("time", time_json(now.as_secs(), now.subsec_micros()));
        match crate::sys::host::sysinfo() {
            Ok(i) => self.set_own_meta("sysinfo", sysinfo_json(&i)),
            Err(e) => pvlog!(Warn, "device", "sysinfo: {e}"),
        }
        match crate::sys::host::ifaddrs() {
            Ok(a) => self.set_own_meta("interfaces", interfaces_json(a)),
            Err(e) => pvlog!(Warn, "device", "getifaddrs: {e}"),
        }
        match crate::sys::logsys::fs_size(std::path::Path::new(self.cfg.storage_mntpoint())) {
            Ok(s) => self.set_own_meta(
                "storage",
                storage_json(s.total, s.free, self.cfg.storage_gc_reserved()),
            ),
            Err(e) => pvlog!(Warn, "device", "statfs of the storage: {e}"),
        }
    }
}

/// `pantavisor.arch`: `<arch>/<bits>/<EL|EB>` (e.g. `x86_64/64/EL`).
pub fn arch(arch: &str, bits: u32, little_endian: bool) -> String {
    format!("{arch}/{bits}/{}", if little_endian { "EL" } else { "EB" })
}

/// `pantavisor.cpumodel`: the first `model name` of /proc/cpuinfo.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim_end() == "model name").then(|| v.trim().to_string())
    })
}

/// `pantavisor.dtmodel`: /proc/device-tree/model without its NUL; none when empty (no
/// device tree, as on x86).
pub fn dt_model(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let m = text.trim_end_matches('\0').trim();
    (!m.is_empty()).then(|| m.to_string())
}

pub fn uname_json(u: &crate::sys::host::Uname) -> String {
    let mut o = ObjectWriter::new();
    o.str("kernel.name", &u.sysname)
        .str("kernel.release", &u.release)
        .str("kernel.version", &u.version)
        .str("node.name", &u.nodename)
        .str("machine", &u.machine);
    o.finish()
}

/// `time` as upstream's gettimeofday view (the kernel's timezone is always zero here).
pub fn time_json(sec: u64, usec: u32) -> String {
    let mut tv = ObjectWriter::new();
    tv.uint("tv_sec", sec).uint("tv_usec", u64::from(usec));
    let mut tz = ObjectWriter::new();
    tz.uint("tz_minuteswest", 0).uint("tz_dsttime", 0);
    let mut o = ObjectWriter::new();
    o.raw("timeval", &tv.finish()).raw("timezone", &tz.finish());
    o.finish()
}

pub fn sysinfo_json(i: &crate::sys::host::SysInfo) -> String {
    let mut o = ObjectWriter::new();
    o.num("uptime", i.uptime)
        .uint("loads.0", i.loads[0])
        .uint("loads.1", i.loads[1])
        .uint("loads.2", i.loads[2])
        .uint("totalram", i.totalram)
        .uint("freeram", i.freeram)
        .uint("sharedram", i.sharedram)
        .uint("bufferram", i.bufferram)
        .uint("totalswap", i.totalswap)
        .uint("freeswap", i.freeswap)
        .uint("procs", i.procs)
        .uint("totalhigh", i.totalhigh)
        .uint("freehigh", i.freehigh)
        .uint("mem_unit", i.mem_unit);
    o.finish()
}

/// `storage`: bytes total and free, the GC reserve (PV_STORAGE_GC_RESERVED percent of the
/// total) and what is free beyond it.
pub fn storage_json(total: u64, free: u64, reserved_pct: u8) -> String {
    let reserved =
        total / 100 * u64::from(reserved_pct) + total % 100 * u64::from(reserved_pct) / 100;
    let mut o = ObjectWriter::new();
    o.uint("total", total)
        .uint("free", free)
        .uint("reserved", reserved)
        .uint("real_free", free.saturating_sub(reserved));
    o.finish()
}

/// `interfaces`: `{"<if>.<family>":[addresses]}`, keys and addresses in the kernel's order.
pub fn interfaces_json(addrs: Vec<crate::sys::host::IfAddr>) -> String {
    let mut lists: Vec<(String, ArrayWriter)> = Vec::new();
    for (name, family, addr) in addrs {
        let key = format!("{name}.{family}");
        let i = match lists.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                lists.push((key, ArrayWriter::new()));
                lists.len() - 1
            }
        };
        if let Some((_, a)) = lists.get_mut(i) {
            a.str(&addr);
        }
    }
    let mut o = ObjectWriter::new();
    for (k, a) in lists {
        o.raw(&k, &a.finish());
    }
    o.finish()
}

/// The value of a `${user-meta:KEY}` / `${device-meta:KEY}` placeholder of drivers.json:
/// the device's own device-meta first, then the stores.
pub fn placeholder(
    fs: &dyn crate::storage::fs::Fs,
    cfg: &Config,
    own: &OwnMeta,
    store: &str,
    key: &str,
) -> Option<String> {
    let dir = if store == "device-meta" {
        if let Some(v) = own.get(key) {
            return Some(v.to_string());
        }
        cfg.cache_devmetadir()
    } else {
        cfg.cache_usrmetadir()
    };
    let v = MetaStore::new(fs, dir.as_ref()).get(key).ok().flatten()?;
    Some(String::from_utf8_lossy(&v).trim().to_string())
}

/// A user-meta key that names a configuration key overrides it at the `metadata` level; its
/// deletion restores the level below. Other keys are not configuration.
pub(crate) fn apply_user_meta(cfg: &mut Config, key: &str, value: Option<&[u8]>) {
    if !Config::knows(key) {
        return;
    }
    match value {
        Some(v) => {
            let v = String::from_utf8_lossy(v);
            if cfg
                .set(crate::config::Level::UserMeta, key, v.trim())
                .is_ok()
            {
                pvlog!(Info, "config", "{key} set by user-meta");
            }
        }
        None => {
            cfg.unset(crate::config::Level::UserMeta, key);
        }
    }
}
