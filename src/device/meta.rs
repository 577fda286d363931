//! User-meta and device-meta as containers see them: `<rundir>/<kind>/<key>` for mgmt
//! containers, `<rundir>/<kind>.<c>/<rest>` for container `<c>` when the key is `<c>.<rest>`;
//! user-meta keys that name a configuration key override it at the `metadata` level.
use super::Device;
use crate::config::Config;
use crate::control::routes::MetaKind;
use crate::pvlog;
use crate::storage::meta::MetaStore;
use crate::supervisor::Status;

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
        let value = self.meta_store(kind).get(key).ok().flatten();
        if kind == MetaKind::User {
            apply_user_meta(self.cfg, key, value.as_deref());
        }
        self.publish_meta(kind, key, value.as_deref());
    }

    /// Device-meta `pantavisor.status`: the revision status.
    pub(super) fn publish_status(&self, s: Status) {
        pvlog!(
            Info,
            "device",
            "revision {} status {}",
            self.rev,
            s.as_str()
        );
        let store = MetaStore::new(self.st.fs, self.cfg.cache_devmetadir().as_ref());
        if let Err(e) = store.set("pantavisor.status", s.as_str().as_bytes()) {
            pvlog!(Warn, "device", "{e}");
        }
        self.publish_meta(
            MetaKind::Device,
            "pantavisor.status",
            Some(s.as_str().as_bytes()),
        );
    }
}

/// A user-meta key that names a configuration key overrides it at the `metadata` level; its
/// deletion restores the level below. Other keys are not configuration.
pub(super) fn apply_user_meta(cfg: &mut Config, key: &str, value: Option<&[u8]>) {
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
