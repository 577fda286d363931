//! "pantavisor-service-system@1" states: the raw document kept byte-exact,
//! its entries in document order, and a typed, validated model of BSP, groups, disks, volumes
//! and containers with upstream's defaults and group inheritance applied.
//!
//! `State::parse` refuses a state with every problem it can find, each error naming the key
//! (and field) at fault; findings that upstream tolerates are kept as `warnings()`.

mod disk;
mod model;
mod parse;

pub use disk::CryptPath;
pub use model::*;

use crate::json;
use std::fmt;

/// The state's `#spec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec {
    /// `pantavisor-service-system@1`
    ServiceSystem1,
    /// Legacy `pantavisor-multi-platform@1`, read as service-system@1.
    MultiPlatform1,
}

/// One state key (every key except `#spec`), in document order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: EntryValue,
    key_span: (usize, usize),
    value_span: (usize, usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryValue {
    /// A file stored as `objects/<sha>` (hard-linked into the trail).
    Object { sha: String },
    /// Inline JSON, written into the trail as this exact text.
    Json { raw: String },
}

impl Entry {
    /// Whether the entry is written into `trails/<rev>/` (a revision's directory): not `_sigs/*`,
    /// `*/src.json` or `*/build.json`, which live only in `.pvr/json`.
    pub fn expanded(&self) -> bool {
        !(self.key.starts_with("_sigs/")
            || self.key.ends_with("/src.json")
            || self.key.ends_with("/build.json"))
    }

    pub fn sha(&self) -> Option<&str> {
        match &self.value {
            EntryValue::Object { sha } => Some(sha),
            EntryValue::Json { .. } => None,
        }
    }

    pub fn json(&self) -> Option<&str> {
        match &self.value {
            EntryValue::Json { raw } => Some(raw),
            EntryValue::Object { .. } => None,
        }
    }

    /// The directory that owns this key for update decisions: the first path
    /// component, or the second for `_config/<c>/...`; None for top-level files such as
    /// `device.json`. Whether it is a container is for [`State::container`] to say.
    pub fn owner(&self) -> Option<&str> {
        let mut segs = self.key.split('/');
        let first = segs.next()?;
        segs.clone().next()?;
        if first == "_config" {
            segs.next()
        } else {
            Some(first)
        }
    }
}

/// One problem that makes a state unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError {
    /// The state key at fault ("" for the document as a whole).
    pub key: String,
    /// The field inside the key's JSON value, e.g. `volumes` or `groups[1].timeout`.
    pub field: Option<String>,
    pub message: String,
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() {
            "state JSON"
        } else {
            &self.key
        };
        // keys and messages carry text from the state: keep every error on one line
        let key = one_line(key);
        let message = one_line(&self.message);
        match &self.field {
            Some(field) => write!(f, "{key}: \"{}\" {message}", one_line(field)),
            None => write!(f, "{key}: {message}"),
        }
    }
}

/// `s` with control characters (newlines included) escaped, so a report stays one line.
pub(crate) fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// All the problems found in a refused state, one per line when displayed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Errors(pub Vec<StateError>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

impl Errors {
    pub fn iter(&self) -> std::slice::Iter<'_, StateError> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Errors {
    type Item = &'a StateError;
    type IntoIter = std::slice::Iter<'a, StateError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// A parsed and validated state. It owns the exact bytes it was parsed from.
#[derive(Clone, Debug)]
pub struct State {
    raw: String,
    spec: Spec,
    entries: Vec<Entry>,
    bsp: Option<Bsp>,
    drivers: Option<Drivers>,
    groups: Vec<Group>,
    groups_source: GroupsSource,
    disks: Vec<Disk>,
    volumes: Vec<StorageVolume>,
    network: Option<String>,
    remount: Option<String>,
    containers: Vec<Container>,
    signatures: Vec<Signature>,
    warnings: Vec<String>,
}

impl State {
    /// Parse and validate a state JSON (at most 16 MiB, nesting depth 64).
    pub fn parse(bytes: &[u8]) -> Result<State, Errors> {
        let whole = |e: json::Error| {
            Errors(vec![StateError {
                key: String::new(),
                field: None,
                message: e.to_string(),
            }])
        };
        let root = json::parse(bytes, json::Limits::default()).map_err(whole)?;
        // json::parse accepted it, so it is UTF-8; the error arm only keeps this panic-free
        let raw = String::from_utf8(bytes.to_vec()).map_err(|e| {
            whole(json::Error {
                offset: e.utf8_error().valid_up_to(),
                kind: json::ErrorKind::InvalidUtf8,
            })
        })?;
        let mut ctx = parse::Ctx::default();
        let parts = parse::build(&raw, &root, &mut ctx);
        drop(root);
        match (parts.spec, parts.groups_source) {
            (Some(spec), Some(groups_source)) if ctx.errors.is_empty() => Ok(State {
                raw,
                spec,
                entries: parts.entries,
                bsp: parts.bsp,
                drivers: parts.drivers,
                groups: parts.groups,
                groups_source,
                disks: parts.disks,
                volumes: parts.volumes,
                network: parts.network,
                remount: parts.remount,
                containers: parts.containers,
                signatures: parts.signatures,
                warnings: ctx.warnings,
            }),
            _ => {
                if ctx.errors.is_empty() {
                    // cannot happen (a missing spec or groups source is always reported)
                    ctx.errors.push(StateError {
                        key: String::new(),
                        field: None,
                        message: "incomplete state".into(),
                    });
                }
                Err(Errors(ctx.errors))
            }
        }
    }

    /// The exact bytes given to `parse` (what `.pvr/json` must contain).
    pub fn raw(&self) -> &[u8] {
        self.raw.as_bytes()
    }

    pub fn raw_str(&self) -> &str {
        &self.raw
    }

    pub fn spec(&self) -> Spec {
        self.spec
    }

    /// Every key except `#spec`, in document order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// The key of an entry exactly as written in the document (between its quotes, escapes
    /// not decoded), as pvs signature payloads need it.
    pub fn raw_key(&self, entry: &Entry) -> &str {
        self.raw
            .get(entry.key_span.0..entry.key_span.1)
            .unwrap_or("")
    }

    /// The value of an entry exactly as written: `"<sha>"` with quotes, or the inline JSON.
    pub fn raw_value(&self, entry: &Entry) -> &str {
        self.raw
            .get(entry.value_span.0..entry.value_span.1)
            .unwrap_or("")
    }

    /// Object entries: (key, sha256), document order.
    pub fn objects(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries
            .iter()
            .filter_map(|e| e.sha().map(|sha| (e.key.as_str(), sha)))
    }

    /// Inline JSON entries: (key, raw text), document order.
    pub fn jsons(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries
            .iter()
            .filter_map(|e| e.json().map(|raw| (e.key.as_str(), raw)))
    }

    /// None when the state has no bsp/run.json (valid: appengine, factory rev 0).
    pub fn bsp(&self) -> Option<&Bsp> {
        self.bsp.as_ref()
    }

    pub fn drivers(&self) -> Option<&Drivers> {
        self.drivers.as_ref()
    }

    /// Groups in start order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn groups_source(&self) -> GroupsSource {
        self.groups_source
    }

    pub fn disks(&self) -> &[Disk] {
        &self.disks
    }

    /// A disk by name or alias.
    pub fn disk(&self, name: &str) -> Option<&Disk> {
        self.disks
            .iter()
            .find(|d| d.name == name || d.aliases.iter().any(|a| a == name))
    }

    /// BSP-level volumes of device.json `volumes`.
    pub fn volumes(&self) -> &[StorageVolume] {
        &self.volumes
    }

    /// Raw JSON of device.json `network` (IPAM pools).
    pub fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }

    /// Raw JSON of device.json `remount`.
    pub fn remount(&self) -> Option<&str> {
        self.remount.as_deref()
    }

    /// Containers in document order, groups resolved.
    pub fn containers(&self) -> &[Container] {
        &self.containers
    }

    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// The container owning an entry, if its owner is one (upstream's reboot or no-reboot
    /// decision).
    pub fn owner_container(&self, entry: &Entry) -> Option<&Container> {
        entry.owner().and_then(|o| self.container(o))
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.signatures
    }

    /// Non-fatal findings, one line each, naming the key.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// What this build cannot run, one line each naming the key: volume handlers other than
    /// `dm:` (dm-verity), a `dm:` volume without a usable `_dm/<volume>.json` manifest, on bsp
    /// and container images, and storage volumes on a disk (explicit or the default one) that
    /// is not declared or not a `dm-crypt-versatile` one with a good path (CAAM and DCP disks
    /// need their SoC; volume, swap and dual disks are not built). The device refuses such a
    /// revision at admission (WONTGO) rather than try it, and `check-state` reports it, since
    /// starting it would fail.
    pub fn unsupported(&self) -> Vec<String> {
        let mut out = Vec::new();
        let handler = |owner: &str,
                       image: &model::ImageRef,
                       manifests: &[model::DmManifest],
                       out: &mut Vec<String>| {
            let problem = match image.handler.as_deref() {
                None => return,
                Some("dm") => match manifests.iter().find(|m| m.volume == image.path) {
                    Some(m) => m.problem(),
                    None => Some(format!("no \"{owner}/_dm/{}.json\"", image.path)),
                },
                Some(h) => Some(format!("handler '{h}' is not supported by this build")),
            };
            if let Some(p) = problem {
                out.push(format!("{owner}: volume '{}': {p}", image.path));
            }
        };
        if let Some(b) = &self.bsp {
            let images = b.modules.iter().chain(b.firmware.iter());
            for i in images.chain(b.modules_by_release.iter().map(|(_, i)| i)) {
                handler("bsp", i, &b.dm_manifests, &mut out);
            }
        }
        let default_disk = self.disks.iter().find(|d| d.default).map(|d| &d.name);
        let on_disk = |owner: &str, s: &StorageVolume, out: &mut Vec<String>| {
            let Some(d) = s.disk.as_ref().or(default_disk) else {
                return;
            };
            let why = match self.disk(d) {
                None => Some(" is not declared in device.json".to_string()),
                Some(disk) => disk
                    .unsupported()
                    .map(|why| format!(" ({}){why}", disk.disk_type.as_str())),
            };
            if let Some(why) = why {
                out.push(format!("{owner}: storage '{}': disk '{d}'{why}", s.name));
            }
        };
        // device.json volumes hold pantavisor's own data (e.g. its metadata on a crypt disk)
        for s in &self.volumes {
            on_disk("device.json", s, &mut out);
        }
        for c in &self.containers {
            for v in c.root_volume.iter().chain(c.volumes.iter()) {
                handler(&c.name, &v.image, &c.dm_manifests, &mut out);
            }
            for s in &c.storage {
                on_disk(&c.name, s, &mut out);
            }
        }
        out
    }

    /// The data devices of the `dm:` volumes (`<owner>/<data_device>` of each one's manifest):
    /// mounted through dm-verity, the kernel checks them block by block as they are read, so
    /// the boot re-hash leaves them out (upstream's no-validate list). A manifest no `dm:`
    /// reference uses protects nothing and is not on the list (upstream's is).
    pub fn no_validate(&self) -> Vec<String> {
        fn used<'a>(
            mut images: impl Iterator<Item = &'a model::ImageRef>,
            m: &model::DmManifest,
        ) -> bool {
            images.any(|i| i.handler.as_deref() == Some("dm") && i.path == m.volume)
        }
        let bsp = self.bsp.iter().flat_map(|b| {
            b.dm_manifests
                .iter()
                .filter(|m| {
                    let images = b
                        .modules
                        .iter()
                        .chain(b.firmware.iter())
                        .chain(b.modules_by_release.iter().map(|(_, i)| i));
                    used(images, m)
                })
                .map(|m| ("bsp", m))
        });
        let containers = self.containers.iter().flat_map(|c| {
            c.dm_manifests
                .iter()
                .filter(|m| {
                    let images = c
                        .root_volume
                        .iter()
                        .chain(c.volumes.iter())
                        .map(|v| &v.image);
                    used(images, m)
                })
                .map(|m| (c.name.as_str(), m))
        });
        bsp.chain(containers)
            .map(|(owner, m)| format!("{owner}/{}", m.data_device))
            .collect()
    }

    /// Log every warning (source "state").
    pub fn log_warnings(&self) {
        for w in &self.warnings {
            crate::pvlog!(Warn, "state", "{}", w);
        }
    }

    /// Upstream's auto-recovery inheritance: the container's own auto_recovery when its policy is
    /// not `no`, else its group's object wholesale (no field merge), else the default (policy
    /// `no`).
    pub fn effective_auto_recovery(&self, container: &Container) -> AutoRecovery {
        match container.auto_recovery {
            Some(own) if own.policy != RecoveryPolicy::No => own,
            _ => self
                .group(&container.group)
                .and_then(|g| g.auto_recovery)
                .unwrap_or_default(),
        }
    }

    /// Multi-line human summary for `pantavisor check-state`.
    pub fn summary(&self) -> String {
        use fmt::Write;
        let mut s = String::new();
        let spec = match self.spec {
            Spec::ServiceSystem1 => parse::SPEC,
            Spec::MultiPlatform1 => parse::SPEC_LEGACY,
        };
        let _ = writeln!(s, "spec: {spec}");
        match &self.bsp {
            None => s.push_str("bsp: none\n"),
            Some(b) => {
                let _ = write!(s, "bsp:");
                let opt = |n: &str, v: &Option<String>, s: &mut String| {
                    if let Some(v) = v {
                        let _ = write!(s, " {n}={v}");
                    }
                };
                opt("linux", &b.linux, &mut s);
                opt("initrd", &b.initrd, &mut s);
                opt("fdt", &b.fdt, &mut s);
                opt("fit", &b.fit, &mut s);
                opt("rpiab", &b.rpiab, &mut s);
                for (n, img) in [("modules", &b.modules), ("firmware", &b.firmware)] {
                    if let Some(i) = img {
                        let _ = write!(s, " {n}={}", render_image(i));
                    }
                }
                for (r, i) in &b.modules_by_release {
                    let _ = write!(s, " modules_{r}={}", render_image(i));
                }
                let _ = writeln!(s, " addons={}", b.addons.len());
            }
        }
        let source = match self.groups_source {
            GroupsSource::DeviceJson => "device.json",
            GroupsSource::GroupsJson => "groups.json",
            GroupsSource::Default => "default groups",
            GroupsSource::None => "none",
        };
        let _ = writeln!(s, "groups ({source}):");
        for g in &self.groups {
            let _ = write!(
                s,
                "  {} goal={} restart={} timeout=",
                g.name,
                g.status_goal.as_str(),
                g.restart_policy.as_str()
            );
            match g.timeout {
                Some(t) => {
                    let _ = write!(s, "{t}s");
                }
                None => s.push_str("default"),
            }
            if let Some(ar) = &g.auto_recovery {
                let _ = write!(s, " auto_recovery={}", render_recovery(ar));
            }
            s.push('\n');
        }
        let _ = writeln!(s, "containers: {}", self.containers.len());
        for c in &self.containers {
            let roles: Vec<&str> = c.roles.iter().map(|r| r.as_str()).collect();
            let how = match c.group_assignment {
                GroupAssignment::Declared => "",
                GroupAssignment::Runlevel => " (runlevel)",
                GroupAssignment::Default => " (default)",
            };
            let _ = write!(
                s,
                "  {} group={}{how} goal={} restart={} roles=[{}]",
                c.name,
                c.group,
                c.status_goal.as_str(),
                c.restart_policy.as_str(),
                roles.join(",")
            );
            let ar = self.effective_auto_recovery(c);
            if ar.policy != RecoveryPolicy::No {
                let _ = write!(s, " auto_recovery={}", render_recovery(&ar));
            }
            s.push('\n');
        }
        for d in &self.disks {
            let _ = writeln!(
                s,
                "disk: {} type={}{}",
                d.name,
                d.disk_type.as_str(),
                if d.default { " default" } else { "" }
            );
        }
        for v in &self.volumes {
            let _ = writeln!(
                s,
                "volume: {} persistence={} disk={}",
                v.name,
                v.persistence.as_str(),
                v.disk.as_deref().unwrap_or("-")
            );
        }
        let mut shas: Vec<&str> = self.objects().map(|(_, sha)| sha).collect();
        let objects = shas.len();
        crate::sort(&mut shas);
        shas.dedup();
        let _ = writeln!(s, "objects: {objects} ({} distinct sha256)", shas.len());
        let jsons: Vec<&str> = self.jsons().map(|(k, _)| k).collect();
        let _ = writeln!(s, "json files: {} [{}]", jsons.len(), jsons.join(", "));
        let overlays: Vec<String> = self
            .containers
            .iter()
            .filter(|c| !c.config_overlay.is_empty())
            .map(|c| format!("{} ({})", c.name, c.config_overlay.len()))
            .collect();
        let _ = writeln!(s, "config overlays: {}", list_or_none(&overlays));
        let sigs: Vec<String> = self.signatures.iter().map(|g| g.key.clone()).collect();
        let _ = writeln!(s, "signatures: {}", list_or_none(&sigs));
        let dms: Vec<String> = self
            .containers
            .iter()
            .flat_map(|c| c.dm_manifests.iter())
            .map(|m| format!("{} ({})", m.key, m.dm_type))
            .collect();
        let _ = writeln!(s, "dm manifests: {}", list_or_none(&dms));
        let _ = writeln!(s, "warnings: {}", self.warnings.len());
        s
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

fn render_image(i: &ImageRef) -> String {
    match &i.handler {
        Some(h) => format!("{h}:{}", i.path),
        None => i.path.clone(),
    }
}

fn render_recovery(ar: &AutoRecovery) -> String {
    use fmt::Write as _;
    let mut s = format!(
        "{}(max_retries={} retry_delay={}s backoff_factor=",
        ar.policy.as_str(),
        ar.max_retries,
        ar.retry_delay,
    );
    crate::json::write_f64(&mut s, ar.backoff_factor);
    let _ = write!(
        s,
        " stable_timeout={}s backoff={})",
        ar.stable_timeout,
        ar.backoff_policy.render()
    );
    s
}

#[cfg(test)]
mod tests;
