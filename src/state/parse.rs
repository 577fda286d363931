//! Building the model from the parsed document. Every problem found is collected (not just the
//! first), each naming the state key and, where there is one, the field.
use super::model::*;
use super::{Entry, EntryValue, Spec, StateError};
use crate::json::{Kind, Value};
use std::collections::{HashMap, HashSet};

pub(super) const SPEC: &str = "pantavisor-service-system@1";
pub(super) const SPEC_LEGACY: &str = "pantavisor-multi-platform@1";
const MAX_KEY_LEN: usize = 4096;
const MAX_SEGMENT_LEN: usize = 255;
const MAX_CONTAINER_NAME: usize = 64;
const RUNLEVELS: [&str; 4] = ["data", "root", "platform", "app"];

#[derive(Default)]
pub(super) struct Ctx {
    pub(super) errors: Vec<StateError>,
    pub(super) warnings: Vec<String>,
}

impl Ctx {
    fn err(&mut self, key: &str, field: &str, message: impl Into<String>) {
        self.errors.push(StateError {
            key: key.to_string(),
            field: (!field.is_empty()).then(|| field.to_string()),
            message: message.into(),
        });
    }

    fn warn(&mut self, key: &str, message: impl std::fmt::Display) {
        let line = format!("{key}: {message}");
        self.warnings.push(super::one_line(&line).into_owned());
    }
}

/// Everything the state is made of, before it is wrapped in `State`.
#[derive(Default)]
pub(super) struct Parts {
    pub(super) spec: Option<Spec>,
    pub(super) entries: Vec<Entry>,
    pub(super) bsp: Option<Bsp>,
    pub(super) drivers: Option<Drivers>,
    pub(super) groups: Vec<Group>,
    pub(super) groups_source: Option<GroupsSource>,
    pub(super) disks: Vec<Disk>,
    pub(super) volumes: Vec<StorageVolume>,
    pub(super) network: Option<String>,
    pub(super) remount: Option<String>,
    pub(super) containers: Vec<Container>,
    pub(super) signatures: Vec<Signature>,
}

type Members = [(String, Value)];

fn member<'a>(members: &'a Members, key: &str) -> Option<&'a Value> {
    members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// A JSON object being read, with the state key and field path used in messages.
struct Obj<'a> {
    doc: &'a str,
    key: &'a str,
    path: String,
    members: &'a Members,
}

impl<'a> Obj<'a> {
    fn get(&self, f: &str) -> Option<&'a Value> {
        member(self.members, f)
    }

    fn field(&self, f: &str) -> String {
        if self.path.is_empty() {
            f.to_string()
        } else {
            format!("{}.{}", self.path, f)
        }
    }

    fn bad(&self, ctx: &mut Ctx, f: &str, what: &str) {
        ctx.err(self.key, &self.field(f), format!("must be {what}"));
    }

    fn string(&self, ctx: &mut Ctx, f: &str) -> Option<String> {
        let v = self.get(f)?;
        let s = v.as_str().map(str::to_string);
        if s.is_none() {
            self.bad(ctx, f, "a string");
        }
        s
    }

    fn strings(&self, ctx: &mut Ctx, f: &str) -> Option<Vec<String>> {
        self.strings_of(ctx, f, self.get(f)?)
    }

    /// `v` (the value of field `f`) as an array of strings.
    fn strings_of(&self, ctx: &mut Ctx, f: &str, v: &Value) -> Option<Vec<String>> {
        let list = v.as_array().and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        });
        if list.is_none() {
            self.bad(ctx, f, "an array of strings");
        }
        list
    }

    /// Non-negative integer fitting u32; a decimal string is accepted too, because upstream
    /// reads these fields as text (`strtol`).
    fn uint(&self, ctx: &mut Ctx, f: &str) -> Option<u32> {
        let v = self.get(f)?;
        let n = match &v.kind {
            Kind::Number(_) => v.as_u64(),
            Kind::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse().ok()
            }
            _ => None,
        };
        let n = n.and_then(|n| u32::try_from(n).ok());
        if n.is_none() {
            self.bad(ctx, f, "a non-negative integer below 2^32");
        }
        n
    }

    fn float(&self, ctx: &mut Ctx, f: &str) -> Option<f64> {
        let v = self.get(f)?;
        let n = match &v.kind {
            Kind::Number(_) => v.as_f64(),
            Kind::String(s) => crate::json::parse_f64(s),
            _ => None,
        }
        .filter(|x| *x >= 0.0);
        if n.is_none() {
            self.bad(ctx, f, "a non-negative number");
        }
        n
    }

    fn boolean(&self, ctx: &mut Ctx, f: &str) -> Option<bool> {
        let v = self.get(f)?;
        let b = v.as_bool();
        if b.is_none() {
            self.bad(ctx, f, "true or false");
        }
        b
    }

    fn object(&self, ctx: &mut Ctx, f: &str) -> Option<Obj<'a>> {
        let v = self.get(f)?;
        match v.as_object() {
            Some(members) => Some(Obj {
                doc: self.doc,
                key: self.key,
                path: self.field(f),
                members,
            }),
            None => {
                self.bad(ctx, f, "an object");
                None
            }
        }
    }

    fn array(&self, ctx: &mut Ctx, f: &str) -> Option<&'a [Value]> {
        let v = self.get(f)?;
        let a = v.as_array();
        if a.is_none() {
            self.bad(ctx, f, "an array");
        }
        a
    }

    /// Raw text of an object-valued field.
    fn raw_object(&self, ctx: &mut Ctx, f: &str) -> Option<String> {
        let v = self.get(f)?;
        if v.as_object().is_none() {
            self.bad(ctx, f, "an object");
            return None;
        }
        Some(v.raw(self.doc).to_string())
    }

    /// `name` must be a safe path relative to the owner's directory.
    fn rel_path(&self, ctx: &mut Ctx, f: &str, path: &str) -> bool {
        match check_path(path) {
            Ok(()) => true,
            Err(why) => {
                ctx.err(
                    self.key,
                    &self.field(f),
                    format!("\"{}\": {why}", path.escape_debug()),
                );
                false
            }
        }
    }
}

fn obj_at<'a>(doc: &'a str, key: &'a str, path: String, v: &'a Value) -> Option<Obj<'a>> {
    v.as_object().map(|members| Obj {
        doc,
        key,
        path,
        members,
    })
}

pub(super) fn is_sha(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A relative path that cannot leave the directory it is resolved in.
fn check_path(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty path");
    }
    if p.len() > MAX_KEY_LEN {
        return Err("longer than 4096 bytes");
    }
    if p.starts_with('/') {
        return Err("absolute path");
    }
    if p.chars().any(char::is_control) {
        return Err("control character (or NUL) in path");
    }
    for seg in p.split('/') {
        match seg {
            "" => return Err("empty path segment"),
            "." | ".." => return Err("'.' or '..' path segment"),
            s if s.len() > MAX_SEGMENT_LEN => return Err("path segment longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

/// A state key becomes a file under `trails/<rev>/`.
fn check_key(key: &str) -> Result<(), &'static str> {
    check_path(key)?;
    // .pvr/json and .pv/* are the revision's own metadata; a key must not overwrite them
    match key.split('/').next() {
        Some(".pv" | ".pvr") => Err("'.pv' and '.pvr' are reserved for revision metadata"),
        _ => Ok(()),
    }
}

/// A name used as one directory or file name (container, group, disk, volume).
fn check_name(name: &str, max: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > max {
        return Err(format!("longer than {max} bytes"));
    }
    if name == "." || name == ".." || name.contains('/') {
        return Err("must be a plain file name (no '/', '.' or '..')".into());
    }
    if name.chars().any(char::is_control) {
        return Err("contains a control character (or NUL)".into());
    }
    Ok(())
}

/// `<name>/run.json` names a container; `bsp/run.json` and special top directories do not.
fn container_dir(key: &str) -> Option<&str> {
    let dir = key.strip_suffix("/run.json")?;
    match dir {
        "bsp" | "_config" | "_sigs" | "_hostconfig" => None,
        d if d.contains('/') => None,
        d => Some(d),
    }
}

/// Raw text of the key of each top-level member, found by scanning forward from the previous
/// value: the parser keeps value spans only, and pvs payloads need the key exactly as written.
fn raw_key_spans(doc: &str, root: &Value, members: &Members) -> Vec<(usize, usize)> {
    let b = doc.as_bytes();
    let mut from = root.start + 1;
    let mut spans = Vec::with_capacity(members.len());
    for (_, v) in members {
        let mut i = from;
        while let Some(c) = b.get(i) {
            if *c == b'"' {
                break;
            }
            i += 1;
        }
        let start = i + 1;
        let mut j = start;
        while let Some(c) = b.get(j) {
            match c {
                b'\\' => j += 2,
                b'"' => break,
                _ => j += 1,
            }
        }
        spans.push((start.min(v.start), j.min(v.start)));
        from = v.end;
    }
    spans
}

pub(super) fn build(doc: &str, root: &Value, ctx: &mut Ctx) -> Parts {
    let mut parts = Parts::default();
    let members = match root.as_object() {
        Some(m) => m,
        None => {
            ctx.err("", "", "the state must be a JSON object");
            return parts;
        }
    };

    parts.spec = spec(members, ctx);
    parts.entries = entries(doc, root, members, ctx);

    let mut disk_keys = Vec::new();
    device(doc, members, ctx, &mut parts, &mut disk_keys);
    check_disks(&parts.disks, &disk_keys, ctx);

    if let Some(v) = member(members, "bsp/run.json") {
        match obj_at(doc, "bsp/run.json", String::new(), v) {
            Some(o) => parts.bsp = Some(bsp(&o, ctx)),
            None => ctx.err("bsp/run.json", "", "must be an inline JSON object"),
        }
    }
    if let Some(v) = member(members, "bsp/drivers.json") {
        match obj_at(doc, "bsp/drivers.json", String::new(), v) {
            Some(o) => parts.drivers = Some(drivers(&o, ctx)),
            None => ctx.err("bsp/drivers.json", "", "must be an inline JSON object"),
        }
    }

    containers(doc, members, ctx, &mut parts);
    attach(doc, members, ctx, &mut parts);
    cross_check(ctx, &parts);
    parts
}

fn spec(members: &Members, ctx: &mut Ctx) -> Option<Spec> {
    match member(members, "#spec").map(|v| v.as_str()) {
        None => {
            ctx.err("#spec", "", format!("missing; must be \"{SPEC}\""));
            None
        }
        Some(Some(SPEC)) => Some(Spec::ServiceSystem1),
        Some(Some(SPEC_LEGACY)) => {
            ctx.warn(
                "#spec",
                format!("legacy \"{SPEC_LEGACY}\" read as \"{SPEC}\""),
            );
            Some(Spec::MultiPlatform1)
        }
        Some(Some(other)) => {
            ctx.err(
                "#spec",
                "",
                format!(
                    "unsupported \"{}\"; must be \"{SPEC}\"",
                    other.escape_debug()
                ),
            );
            None
        }
        Some(None) => {
            ctx.err("#spec", "", format!("must be the string \"{SPEC}\""));
            None
        }
    }
}

fn entries(doc: &str, root: &Value, members: &Members, ctx: &mut Ctx) -> Vec<Entry> {
    let spans = raw_key_spans(doc, root, members);
    let mut out = Vec::with_capacity(members.len());
    for (i, (key, v)) in members.iter().enumerate() {
        if key == "#spec" {
            continue;
        }
        if let Err(why) = check_key(key) {
            ctx.err(key, "", format!("invalid key: {why}"));
            continue;
        }
        let is_json = key.ends_with(".json");
        let value = match &v.kind {
            Kind::String(s) if is_sha(s) => EntryValue::Object { sha: s.clone() },
            Kind::Object(_) | Kind::Array(_) if is_json => EntryValue::Json {
                raw: v.raw(doc).to_string(),
            },
            _ if is_json => {
                ctx.err(
                    key,
                    "",
                    format!(
                        "must be inline JSON (object or array) or a sha256 object id, not {}",
                        v.type_name()
                    ),
                );
                continue;
            }
            _ => {
                ctx.err(
                    key,
                    "",
                    "must be a sha256 object id (64 lowercase hex characters)",
                );
                continue;
            }
        };
        out.push(Entry {
            key: key.clone(),
            value,
            key_span: spans.get(i).copied().unwrap_or((0, 0)),
            value_span: (v.start, v.end),
        });
    }
    out
}

/// device.json, or the legacy groups.json / disks.json / disks_v3.json, or the default groups.
fn device(
    doc: &str,
    members: &Members,
    ctx: &mut Ctx,
    parts: &mut Parts,
    disk_keys: &mut Vec<&'static str>,
) {
    if let Some(v) = member(members, "device.json") {
        for legacy in ["groups.json", "disks.json", "disks_v3.json"] {
            if member(members, legacy).is_some() {
                ctx.warn(legacy, "ignored because device.json is present");
            }
        }
        let dev = match obj_at(doc, "device.json", String::new(), v) {
            Some(o) => o,
            None => {
                ctx.err("device.json", "", "must be an inline JSON object");
                parts.groups_source = Some(GroupsSource::None);
                return;
            }
        };
        let Some(list) = dev.array(ctx, "groups") else {
            if dev.get("groups").is_none() {
                ctx.warn(
                    "device.json",
                    "no \"groups\": as upstream, the rest of device.json (disks, volumes, network, remount) is not read and no default groups apply",
                );
            }
            parts.groups_source = Some(GroupsSource::None);
            return;
        };
        parts.groups = groups(doc, "device.json", "groups", list, ctx);
        parts.groups_source = Some(GroupsSource::DeviceJson);
        for (field, kind) in [
            ("disks", DiskList::Disks),
            ("disks_v2", DiskList::DisksV2),
            ("disks_v3", DiskList::DisksV3),
        ] {
            if let Some(list) = dev.array(ctx, field) {
                disks(doc, "device.json", field, list, kind, ctx, parts, disk_keys);
            }
        }
        if let Some(vols) = dev.object(ctx, "volumes") {
            parts.volumes = storage(&vols, ctx);
        }
        parts.network = dev.raw_object(ctx, "network");
        parts.remount = dev.raw_object(ctx, "remount");
        return;
    }

    match member(members, "groups.json") {
        Some(v) => match v.as_array() {
            Some(list) => {
                parts.groups = groups(doc, "groups.json", "", list, ctx);
                parts.groups_source = Some(GroupsSource::GroupsJson);
            }
            None => {
                ctx.err("groups.json", "", "must be an inline JSON array");
                parts.groups_source = Some(GroupsSource::None);
            }
        },
        None => {
            parts.groups = default_groups();
            parts.groups_source = Some(GroupsSource::Default);
        }
    }
    for (key, kind) in [
        ("disks.json", DiskList::Disks),
        ("disks_v3.json", DiskList::DisksV3),
    ] {
        if let Some(v) = member(members, key) {
            match v.as_array() {
                Some(list) => disks(doc, key, "", list, kind, ctx, parts, disk_keys),
                None => ctx.err(key, "", "must be an inline JSON array"),
            }
        }
    }
}

fn indexed(field: &str, i: usize) -> String {
    format!("{field}[{i}]")
}

fn groups(doc: &str, key: &'static str, field: &str, list: &[Value], ctx: &mut Ctx) -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    let mut seen = HashSet::new();
    if list.is_empty() {
        // upstream refuses an empty groups array
        ctx.err(key, field, "must list at least one group");
    }
    for (i, v) in list.iter().enumerate() {
        let path = indexed(field, i);
        let Some(o) = obj_at(doc, key, path.clone(), v) else {
            ctx.err(key, &path, "must be an object");
            continue;
        };
        let name = match o.string(ctx, "name") {
            Some(n) => n,
            None => {
                if o.get("name").is_none() {
                    ctx.err(key, &o.field("name"), "missing: a group needs a name");
                }
                continue;
            }
        };
        if let Err(why) = check_name(&name, MAX_SEGMENT_LEN) {
            ctx.err(key, &o.field("name"), why);
            continue;
        }
        if !seen.insert(name.clone()) {
            ctx.err(key, &o.field("name"), format!("duplicate group \"{name}\""));
            continue;
        }
        let status_goal = o
            .string(ctx, "status_goal")
            .and_then(|s| goal(ctx, key, &o.field("status_goal"), &s))
            .unwrap_or(StatusGoal::Started);
        let restart_policy = o
            .string(ctx, "restart_policy")
            .and_then(|s| restart(ctx, key, &o.field("restart_policy"), &s))
            .unwrap_or(RestartPolicy::Container);
        let auto_recovery = o
            .object(ctx, "auto_recovery")
            .map(|a| auto_recovery(&a, ctx));
        out.push(Group {
            description: o.string(ctx, "description").unwrap_or_default(),
            timeout: o.uint(ctx, "timeout"),
            name,
            status_goal,
            restart_policy,
            auto_recovery,
        });
    }
    out
}

fn goal(ctx: &mut Ctx, key: &str, field: &str, s: &str) -> Option<StatusGoal> {
    let g = StatusGoal::parse(s);
    if g.is_none() {
        ctx.err(
            key,
            field,
            format!(
                "unknown status goal \"{}\" (MOUNTED, STARTED or READY)",
                s.escape_debug()
            ),
        );
    }
    g
}

fn restart(ctx: &mut Ctx, key: &str, field: &str, s: &str) -> Option<RestartPolicy> {
    let r = RestartPolicy::parse(s);
    if r.is_none() {
        ctx.err(
            key,
            field,
            format!(
                "unknown restart policy \"{}\" (system or container)",
                s.escape_debug()
            ),
        );
    }
    r
}

fn auto_recovery(o: &Obj, ctx: &mut Ctx) -> AutoRecovery {
    let mut ar = AutoRecovery::default();
    if let Some(p) = o.string(ctx, "policy") {
        ar.policy = RecoveryPolicy::parse(&p);
        if ar.policy == RecoveryPolicy::No && p != "no" {
            ctx.warn(
                o.key,
                format!(
                    "{}: unknown policy \"{}\" read as \"no\"",
                    o.path,
                    p.escape_debug()
                ),
            );
        }
    }
    if let Some(bp) = o.string(ctx, "backoff_policy") {
        ar.backoff_policy = BackoffPolicy::parse(&bp);
        if ar.backoff_policy == BackoffPolicy::Reboot && bp != "reboot" {
            ctx.warn(
                o.key,
                format!(
                    "{}: unparseable backoff_policy \"{}\" read as \"reboot\"",
                    o.path,
                    bp.escape_debug()
                ),
            );
        }
    }
    let mut set = |field: &str, slot: &mut u32| {
        if let Some(n) = o.uint(ctx, field) {
            *slot = n;
        }
    };
    set("max_retries", &mut ar.max_retries);
    set("retry_delay", &mut ar.retry_delay);
    set("reset_window", &mut ar.reset_window);
    set("stable_timeout", &mut ar.stable_timeout);
    if let Some(f) = o.float(ctx, "backoff_factor") {
        ar.backoff_factor = f;
    }
    ar
}

#[allow(clippy::too_many_arguments)]
fn disks(
    doc: &str,
    key: &'static str,
    field: &str,
    list: &[Value],
    kind: DiskList,
    ctx: &mut Ctx,
    parts: &mut Parts,
    disk_keys: &mut Vec<&'static str>,
) {
    let lenient = kind == DiskList::DisksV3;
    for (i, v) in list.iter().enumerate() {
        let path = indexed(field, i);
        let Some(o) = obj_at(doc, key, path.clone(), v) else {
            ctx.err(key, &path, "must be an object");
            continue;
        };
        let type_str = o.string(ctx, "type");
        let disk_type = match type_str.as_deref().map(|t| (t, DiskType::parse(t))) {
            Some((_, Some(t))) => t,
            Some((t, None)) if lenient => {
                ctx.warn(
                    key,
                    format!("{path}: unknown disk type \"{}\" skipped", t.escape_debug()),
                );
                continue;
            }
            Some((t, None)) => {
                ctx.err(
                    key,
                    &o.field("type"),
                    format!("unknown disk type \"{}\"", t.escape_debug()),
                );
                continue;
            }
            None => {
                if o.get("type").is_none() {
                    ctx.err(key, &o.field("type"), "missing");
                }
                continue;
            }
        };
        let Some(name) = o.string(ctx, "name") else {
            if o.get("name").is_none() {
                ctx.err(key, &o.field("name"), "missing: a disk needs a name");
            }
            continue;
        };
        if let Err(why) = check_name(&name, MAX_SEGMENT_LEN) {
            ctx.err(key, &o.field("name"), why);
            continue;
        }
        let format = o.string(ctx, "format");
        if matches!(disk_type, DiskType::SwapDisk | DiskType::VolumeDisk)
            && !matches!(format.as_deref(), Some("ext4" | "ext3" | "swap"))
        {
            let msg = format!(
                "{} disk \"{name}\" needs format ext4, ext3 or swap",
                disk_type.as_str()
            );
            if lenient {
                ctx.warn(key, format!("{path}: {msg}; skipped"));
            } else {
                ctx.err(key, &o.field("format"), msg);
            }
            continue;
        }
        let yes = |ctx: &mut Ctx, f: &str| o.string(ctx, f).is_some_and(|s| s == "yes");
        let default = yes(ctx, "default");
        let migrate_keyblob = yes(ctx, "migrate_keyblob");
        let disks = o.strings(ctx, "disks").unwrap_or_default();
        let init_order = o.strings(ctx, "init_order").unwrap_or_default();
        if disk_type == DiskType::Dual && disks.len() != 2 {
            ctx.err(
                key,
                &o.field("disks"),
                "a dual disk composes exactly two disks",
            );
        }
        for step in &init_order {
            if !matches!(
                step.as_str(),
                "primary"
                    | "secondary"
                    | "create-primary"
                    | "create-secondary"
                    | "copy-once-to-primary"
            ) {
                ctx.warn(
                    key,
                    format!(
                        "{path}: unknown init_order step \"{}\"",
                        step.escape_debug()
                    ),
                );
            }
        }
        let mode = o.string(ctx, "mode");
        if let Some(m) = mode
            .as_deref()
            .filter(|m| !matches!(*m, "mainline" | "nxp"))
        {
            ctx.warn(
                key,
                format!("{path}: unknown mode \"{}\"", m.escape_debug()),
            );
        }
        parts.disks.push(Disk {
            disk_type,
            list: kind,
            path: o.string(ctx, "path"),
            mode,
            format,
            mount_target: o.string(ctx, "mount_target"),
            mount_options: o.string(ctx, "mount_options"),
            format_options: o.string(ctx, "format_options"),
            provision: o.string(ctx, "provision"),
            provision_options: o.string(ctx, "provision_options"),
            uuid: o.string(ctx, "uuid"),
            default,
            migrate_keyblob,
            aliases: o.strings(ctx, "aliases").unwrap_or_default(),
            disks,
            init_order,
            name,
        });
        disk_keys.push(key);
    }
}

/// Unique names; an alias may neither be another disk's name nor be shared (device.json `disks`).
fn check_disks(disks: &[Disk], keys: &[&str], ctx: &mut Ctx) {
    let names: HashSet<&str> = disks.iter().map(|d| d.name.as_str()).collect();
    let mut seen = HashSet::new();
    let mut aliases = HashSet::new();
    for (i, d) in disks.iter().enumerate() {
        let key = keys.get(i).copied().unwrap_or("device.json");
        if !seen.insert(d.name.as_str()) {
            ctx.err(key, "disks", format!("duplicate disk \"{}\"", d.name));
        }
        for alias in &d.aliases {
            if names.contains(alias.as_str()) {
                ctx.err(
                    key,
                    "aliases",
                    format!(
                        "alias \"{alias}\" of disk \"{}\" is the name of a disk",
                        d.name
                    ),
                );
            }
            if !aliases.insert(alias.as_str()) {
                ctx.err(
                    key,
                    "aliases",
                    format!("alias \"{alias}\" of disk \"{}\" is used twice", d.name),
                );
            }
        }
    }
}

/// `storage` of run.json and `volumes` of device.json: name -> {persistence, disk}.
fn storage(o: &Obj, ctx: &mut Ctx) -> Vec<StorageVolume> {
    let mut out = Vec::new();
    for (name, v) in o.members {
        let field = o.field(name);
        if let Err(why) = check_name(name, MAX_SEGMENT_LEN) {
            ctx.err(o.key, &field, format!("volume name {why}"));
            continue;
        }
        let Some(vo) = obj_at(o.doc, o.key, field.clone(), v) else {
            ctx.err(o.key, &field, "must be an object");
            continue;
        };
        let disk = vo.string(ctx, "disk");
        if let Some(d) = &disk {
            if let Err(why) = check_name(d, MAX_SEGMENT_LEN) {
                ctx.err(o.key, &vo.field("disk"), format!("disk name {why}"));
            }
        }
        let persistence = match vo.string(ctx, "persistence").as_deref() {
            Some("permanent") => Persistence::Permanent,
            Some("revision") => Persistence::Revision,
            Some("boot") => Persistence::Boot,
            Some(other) => {
                ctx.warn(
                    o.key,
                    format!(
                        "{field}: unknown persistence \"{}\" treated as \"boot\"",
                        other.escape_debug()
                    ),
                );
                Persistence::Boot
            }
            None => {
                if vo.get("persistence").is_none() {
                    // upstream only creates a volume when persistence is given
                    ctx.warn(o.key, format!("{field}: no persistence, volume ignored"));
                }
                continue;
            }
        };
        out.push(StorageVolume {
            name: name.clone(),
            persistence,
            disk,
        });
    }
    out
}

fn bsp(o: &Obj, ctx: &mut Ctx) -> Bsp {
    // empty strings (pvr writes `"initrd_config": ""`) mean "not set"
    let mut path = |f: &str| {
        let p = o.string(ctx, f).filter(|p| !p.is_empty())?;
        o.rel_path(ctx, f, &p).then_some(p)
    };
    let mut b = Bsp {
        linux: path("linux"),
        initrd: path("initrd"),
        fdt: path("fdt"),
        fit: path("fit"),
        rpiab: path("rpiab"),
        ..Bsp::default()
    };
    b.initrd_config = o.string(ctx, "initrd_config").filter(|p| !p.is_empty());
    let image = |ctx: &mut Ctx, f: &str, v: &Value| {
        let Some(s) = v.as_str() else {
            o.bad(ctx, f, "a string");
            return None;
        };
        if s.is_empty() {
            return None;
        }
        let img = ImageRef::parse(s);
        o.rel_path(ctx, f, &img.path).then_some(img)
    };
    for (k, v) in o.members {
        match k.as_str() {
            "modules" => b.modules = image(ctx, k, v),
            "firmware" => b.firmware = image(ctx, k, v),
            _ => {
                if let Some(release) = k.strip_prefix("modules_") {
                    if let Some(img) = image(ctx, k, v) {
                        b.modules_by_release.push((release.to_string(), img));
                    }
                }
            }
        }
    }
    for a in o.strings(ctx, "addons").unwrap_or_default() {
        if o.rel_path(ctx, "addons", &a) {
            b.addons.push(a);
        }
    }
    if b.initrd_config.is_some() {
        ctx.warn(o.key, "\"initrd_config\" is ignored (as upstream)");
    }
    if !((b.linux.is_some() && b.initrd.is_some()) || b.fit.is_some() || b.rpiab.is_some()) {
        ctx.err(
            o.key,
            "",
            "needs \"linux\" and \"initrd\", or \"fit\", or \"rpiab\"",
        );
    }
    b
}

fn drivers(o: &Obj, ctx: &mut Ctx) -> Drivers {
    let mut d = Drivers::default();
    for (section, v) in o.members {
        if section == "#spec" {
            continue;
        }
        if section != "all" && !section.starts_with("fitconfig:") {
            ctx.warn(
                o.key,
                format!(
                    "section \"{}\" is not evaluated (only \"all\" and \"fitconfig:<name>\")",
                    section.escape_debug()
                ),
            );
            continue;
        }
        let Some(so) = obj_at(o.doc, o.key, section.clone(), v) else {
            ctx.err(o.key, section, "must be an object of aliases");
            continue;
        };
        let mut aliases = Vec::new();
        for (alias, list) in so.members {
            if let Some(modules) = so.strings_of(ctx, alias, list) {
                aliases.push(DriverAlias {
                    name: alias.clone(),
                    modules,
                });
            }
        }
        d.sections.push(DriverSection {
            name: section.clone(),
            aliases,
        });
    }
    d
}

/// A run.json read, before group resolution.
struct Draft {
    key: String,
    c: Container,
    group: Option<(String, GroupAssignment)>,
    goal: Option<StatusGoal>,
    restart: Option<RestartPolicy>,
}

fn containers(doc: &str, members: &Members, ctx: &mut Ctx, parts: &mut Parts) {
    let mut drafts: Vec<Draft> = Vec::new();
    let mut seen = HashSet::new();
    for (key, v) in members {
        let Some(dir) = container_dir(key) else {
            if key.ends_with("/run.json") && key != "bsp/run.json" && !key.starts_with("_config/") {
                ctx.warn(key, "not read as a container: only \"<name>/run.json\" is");
            }
            continue;
        };
        if check_key(key).is_err() {
            continue; // already reported
        }
        let Some(o) = obj_at(doc, key, String::new(), v) else {
            ctx.err(key, "", "must be an inline JSON object");
            continue;
        };
        if let Some(d) = container(&o, dir, ctx) {
            if !seen.insert(d.c.name.clone()) {
                ctx.err(key, "name", format!("duplicate container \"{}\"", d.c.name));
                continue;
            }
            drafts.push(d);
        }
    }
    assign_groups(&mut drafts, parts, ctx);
    parts.containers = drafts.into_iter().map(|d| d.c).collect();
}

fn container(o: &Obj, dir: &str, ctx: &mut Ctx) -> Option<Draft> {
    let key = o.key;
    let name = match o.string(ctx, "name") {
        Some(n) => n,
        None => {
            if o.get("name").is_none() {
                ctx.err(key, "name", "missing: a container needs a name");
            }
            return None;
        }
    };
    if let Err(why) = check_name(&name, MAX_CONTAINER_NAME) {
        ctx.err(key, "name", why);
        return None;
    }
    if name != dir {
        // files are looked up under <name>/, so a different directory would never be found
        ctx.err(
            key,
            "name",
            format!(
                "\"{}\" differs from its directory \"{dir}\"",
                name.escape_debug()
            ),
        );
        return None;
    }

    let volume = |ctx: &mut Ctx, f: &str, s: &str| {
        let vol = Volume::parse(s);
        o.rel_path(ctx, f, &vol.image.path).then_some(vol)
    };
    let root_volume = o
        .string(ctx, "root-volume")
        .and_then(|s| volume(ctx, "root-volume", &s));
    let volumes = o
        .strings(ctx, "volumes")
        .unwrap_or_default()
        .iter()
        .filter_map(|s| volume(ctx, "volumes", s))
        .collect();
    let config = o
        .string(ctx, "config")
        .filter(|p| o.rel_path(ctx, "config", p));

    let mut group = o
        .string(ctx, "group")
        .map(|g| (g, GroupAssignment::Declared));
    if let Some(rl) = o.string(ctx, "runlevel") {
        if group.is_some() {
            ctx.warn(key, "deprecated \"runlevel\" ignored: \"group\" is set");
        } else if RUNLEVELS.contains(&rl.as_str()) {
            ctx.warn(
                key,
                format!("deprecated \"runlevel\" used as group \"{rl}\""),
            );
            group = Some((rl, GroupAssignment::Runlevel));
        } else {
            ctx.warn(
                key,
                format!(
                    "invalid runlevel \"{}\" ignored (data, root, platform or app)",
                    rl.escape_debug()
                ),
            );
        }
    }
    let goal = o
        .string(ctx, "status_goal")
        .and_then(|s| goal(ctx, key, "status_goal", &s));
    let restart = o
        .string(ctx, "restart_policy")
        .and_then(|s| restart(ctx, key, "restart_policy", &s));

    // absent key: mgmt (upstream's platform default); present: exactly the known roles listed
    let roles = match o.strings(ctx, "roles") {
        None => vec![Role::Mgmt],
        Some(list) => {
            let mut roles = Vec::new();
            for r in list {
                let role = match r.as_str() {
                    "mgmt" => Role::Mgmt,
                    "nobody" => Role::Nobody,
                    other => {
                        ctx.warn(
                            key,
                            format!("unknown role \"{}\" ignored", other.escape_debug()),
                        );
                        continue;
                    }
                };
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            roles
        }
    };

    let drivers = match o.object(ctx, "drivers") {
        Some(d) => DriverRefs {
            required: d.strings(ctx, "required").unwrap_or_default(),
            optional: d.strings(ctx, "optional").unwrap_or_default(),
            manual: d.strings(ctx, "manual").unwrap_or_default(),
        },
        None => DriverRefs::default(),
    };

    let logs = o.array(ctx, "logs").and_then(|list| {
        if list
            .iter()
            .all(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        {
            o.get("logs").map(|v| v.raw(o.doc).to_string())
        } else {
            ctx.err(key, "logs", "must be an array of non-empty objects");
            None
        }
    });

    let network = o.object(ctx, "network").map(|n| {
        let pool = n.string(ctx, "pool");
        let mode = match n.string(ctx, "mode").as_deref() {
            Some("pool") => NetworkMode::Pool,
            Some("host") => NetworkMode::Host,
            None if pool.is_some() => NetworkMode::Pool,
            None => NetworkMode::Host,
            Some(other) => {
                ctx.warn(
                    key,
                    format!("network: unknown mode \"{}\"", other.escape_debug()),
                );
                if pool.is_some() {
                    NetworkMode::Pool
                } else {
                    NetworkMode::Host
                }
            }
        };
        ContainerNetwork {
            mode,
            hostname: n.string(ctx, "hostname"),
            ip: n.string(ctx, "ip"),
            mac: n.string(ctx, "mac"),
            pool,
        }
    });

    let runtime = o.string(ctx, "type");
    if let Some(t) = runtime.as_deref().filter(|t| *t != "lxc") {
        ctx.warn(
            key,
            format!(
                "unknown type \"{}\" (only \"lxc\" exists)",
                t.escape_debug()
            ),
        );
    }
    for legacy in ["conditions", "depends-on"] {
        if o.get(legacy).is_some() {
            ctx.warn(key, format!("\"{legacy}\" is not supported and ignored"));
        }
    }

    let c = Container {
        runtime,
        config,
        root_volume,
        volumes,
        storage: o
            .object(ctx, "storage")
            .map(|s| storage(&s, ctx))
            .unwrap_or_default(),
        group: String::new(),
        group_assignment: GroupAssignment::Default,
        status_goal: StatusGoal::Started,
        restart_policy: RestartPolicy::Container,
        roles,
        drivers,
        logs,
        exports: o.strings(ctx, "exports").unwrap_or_default(),
        services: o.raw_object(ctx, "services"),
        auto_recovery: o
            .object(ctx, "auto_recovery")
            .map(|a| auto_recovery(&a, ctx)),
        network,
        dev_log: o.boolean(ctx, "dev-log"),
        automodfw: o.string(ctx, "automodfw").is_none_or(|s| s != "no"),
        share: o.string(ctx, "share"),
        remount: o.raw_object(ctx, "remount"),
        config_overlay: Vec::new(),
        dm_manifests: Vec::new(),
        name,
    };
    Some(Draft {
        key: key.to_string(),
        c,
        group,
        goal,
        restart,
    })
}

/// Upstream's group assignment: resolve declared groups, then place the group-less containers.
fn assign_groups(drafts: &mut [Draft], parts: &Parts, ctx: &mut Ctx) {
    let groups = &parts.groups;
    let by_name: HashMap<&str, &Group> = groups.iter().map(|g| (g.name.as_str(), g)).collect();
    for d in drafts.iter_mut() {
        if let Some((g, how)) = &d.group {
            if by_name.contains_key(g.as_str()) {
                d.c.group = g.clone();
                d.c.group_assignment = *how;
            } else {
                let field = match how {
                    GroupAssignment::Runlevel => "runlevel",
                    _ => "group",
                };
                ctx.err(
                    &d.key,
                    field,
                    format!("group \"{}\" does not exist", g.escape_debug()),
                );
            }
        }
    }
    let unassigned = |d: &Draft| d.group.is_none();
    match parts.groups_source {
        Some(GroupsSource::Default) => {
            // runlevel mode: first group-less container (alphabetically) is root, if none is
            let mut names: Vec<String> = drafts
                .iter()
                .filter(|d| unassigned(d))
                .map(|d| d.c.name.clone())
                .collect();
            crate::sort(&mut names);
            let root_taken = drafts.iter().any(|d| d.c.group == "root");
            let first = if root_taken {
                None
            } else {
                names.first().cloned()
            };
            for d in drafts.iter_mut().filter(|d| unassigned(d)) {
                d.c.group = if Some(&d.c.name) == first.as_ref() {
                    "root".to_string()
                } else {
                    "platform".to_string()
                };
            }
        }
        _ => match groups.last() {
            Some(last) => {
                for d in drafts.iter_mut().filter(|d| unassigned(d)) {
                    d.c.group = last.name.clone();
                }
            }
            None => {
                for d in drafts.iter().filter(|d| unassigned(d)) {
                    ctx.err(
                        &d.key,
                        "group",
                        "no group to join: the state declares no groups",
                    );
                }
            }
        },
    }
    for d in drafts.iter_mut() {
        let g = by_name.get(d.c.group.as_str());
        d.c.status_goal = d
            .goal
            .or(g.map(|g| g.status_goal))
            .unwrap_or(StatusGoal::Started);
        d.c.restart_policy = d
            .restart
            .or(g.map(|g| g.restart_policy))
            .unwrap_or(RestartPolicy::Container);
    }
}

/// `_config/<c>/...` overlays, `<c>/_dm/<vol>.json` manifests and `_sigs/*` signatures.
fn attach(doc: &str, members: &Members, ctx: &mut Ctx, parts: &mut Parts) {
    // overlays of containers that are not in the state (normal in partial pvtx states):
    // one warning per container rather than per file
    let mut orphans: Vec<(String, usize)> = Vec::new();
    let mut orphan_index: HashMap<String, usize> = HashMap::new();
    let index: HashMap<String, usize> = parts
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    for (key, v) in members {
        if check_key(key).is_err() {
            continue;
        }
        let segs: Vec<&str> = key.split('/').collect();
        match segs.as_slice() {
            ["_config", c, _, ..] => {
                match index.get(*c).and_then(|i| parts.containers.get_mut(*i)) {
                    Some(x) => x.config_overlay.push(key.clone()),
                    None => match orphan_index.get(*c).and_then(|i| orphans.get_mut(*i)) {
                        Some((_, count)) => *count += 1,
                        None => {
                            orphan_index.insert(c.to_string(), orphans.len());
                            orphans.push((c.to_string(), 1));
                        }
                    },
                }
            }
            ["_sigs", _, ..] => {
                let o = obj_at(doc, key, String::new(), v);
                let field = |ctx: &mut Ctx, f: &str| o.as_ref().and_then(|o| o.string(ctx, f));
                let sig = Signature {
                    key: key.clone(),
                    spec: field(ctx, "#spec"),
                    protected: field(ctx, "protected"),
                    signature: field(ctx, "signature"),
                };
                if o.is_some() && sig.spec.as_deref() != Some("pvs@2") {
                    ctx.warn(key, "signature \"#spec\" is not \"pvs@2\"");
                }
                parts.signatures.push(sig);
            }
            [c, "_dm", file] if *c != "_config" && *c != "_sigs" => {
                let Some(volume) = file.strip_suffix(".json") else {
                    continue;
                };
                let Some(o) = obj_at(doc, key, String::new(), v) else {
                    ctx.warn(key, "dm manifest is not inline JSON; ignored");
                    continue;
                };
                let Some(m) = dm_manifest(&o, volume, ctx) else {
                    continue;
                };
                // dm: modules and firmware of the BSP (pvr's dm-convert of bsp/run.json)
                if let Some(b) = parts.bsp.as_mut().filter(|_| *c == "bsp") {
                    b.dm_manifests.push(m);
                    continue;
                }
                match index.get(*c).and_then(|i| parts.containers.get_mut(*i)) {
                    Some(x) => x.dm_manifests.push(m),
                    None => ctx.warn(
                        key,
                        format!("dm manifest for \"{c}\", which is not a container of this state"),
                    ),
                }
            }
            _ => {}
        }
    }
    for (c, n) in orphans {
        ctx.warn(
            &format!("_config/{c}"),
            format!("{n} overlay file(s) for \"{c}\", which is not a container of this state"),
        );
    }
}

fn dm_manifest(o: &Obj, volume: &str, ctx: &mut Ctx) -> Option<DmManifest> {
    let mut required = |f: &str| {
        let s = o.string(ctx, f);
        if s.is_none() && o.get(f).is_none() {
            ctx.err(o.key, f, "missing");
        }
        s
    };
    let dm_type = required("type");
    let data_device = required("data_device");
    let hash_device = required("hash_device");
    let root_hash = required("root_hash");
    let m = DmManifest {
        key: o.key.to_string(),
        volume: volume.to_string(),
        dm_type: dm_type?,
        data_device: data_device?,
        hash_device: hash_device?,
        root_hash: root_hash?,
        salt: o.string(ctx, "salt"),
        uuid: o.string(ctx, "uuid"),
    };
    if m.dm_type != "dm-verity" {
        ctx.warn(
            o.key,
            format!("unknown dm type \"{}\"", m.dm_type.escape_debug()),
        );
    }
    for (f, p) in [
        ("data_device", &m.data_device),
        ("hash_device", &m.hash_device),
    ] {
        o.rel_path(ctx, f, p);
    }
    Some(m)
}

/// Non-fatal findings that need the whole state: references to things that are not there.
fn cross_check(ctx: &mut Ctx, parts: &Parts) {
    let keys: HashSet<&str> = parts.entries.iter().map(|e| e.key.as_str()).collect();
    let has_key = |k: &str| keys.contains(k);
    let disks: HashSet<&str> = parts
        .disks
        .iter()
        .flat_map(|d| std::iter::once(&d.name).chain(d.aliases.iter()))
        .map(String::as_str)
        .collect();
    let disk_known = |d: &str| disks.contains(d);
    let aliases: HashSet<&str> = parts
        .drivers
        .iter()
        .flat_map(|d| d.sections.iter())
        .flat_map(|s| s.aliases.iter())
        .map(|a| a.name.as_str())
        .collect();
    for v in &parts.volumes {
        if let Some(d) = v.disk.as_deref().filter(|d| !disk_known(d)) {
            ctx.warn(
                "device.json",
                format!("volume \"{}\" uses unknown disk \"{d}\"", v.name),
            );
        }
    }
    if let Some(b) = &parts.bsp {
        let files = [&b.linux, &b.initrd, &b.fdt, &b.fit, &b.rpiab];
        let images = [&b.modules, &b.firmware];
        let mut paths: Vec<&str> = files.iter().filter_map(|p| p.as_deref()).collect();
        paths.extend(
            images
                .iter()
                .filter_map(|i| i.as_ref())
                .map(|i| i.path.as_str()),
        );
        paths.extend(b.modules_by_release.iter().map(|(_, i)| i.path.as_str()));
        paths.extend(b.addons.iter().map(String::as_str));
        for p in paths {
            if !has_key(&format!("bsp/{p}")) {
                ctx.warn("bsp/run.json", format!("\"bsp/{p}\" is not in the state"));
            }
        }
    }
    for c in &parts.containers {
        let key = format!("{}/run.json", c.name);
        if let Some(cfg) = c
            .config
            .as_deref()
            .filter(|p| !has_key(&format!("{}/{p}", c.name)))
        {
            ctx.warn(
                &key,
                format!("config \"{}/{cfg}\" is not in the state", c.name),
            );
        }
        let manifests: HashSet<&str> = c.dm_manifests.iter().map(|m| m.volume.as_str()).collect();
        for vol in c.root_volume.iter().chain(c.volumes.iter()) {
            if vol.image.handler.as_deref() == Some("dm")
                && !manifests.contains(vol.image.path.as_str())
            {
                ctx.warn(
                    &key,
                    format!(
                        "dm volume \"{}\" has no \"{}/_dm/{}.json\"",
                        vol.image.path, c.name, vol.image.path
                    ),
                );
            }
        }
        for s in &c.storage {
            if let Some(d) = s.disk.as_deref().filter(|d| !disk_known(d)) {
                ctx.warn(
                    &key,
                    format!("storage \"{}\" uses unknown disk \"{d}\"", s.name),
                );
            }
        }
        // a missing optional driver is by design; a missing required one fails the start
        for alias in &c.drivers.required {
            if !aliases.contains(alias.as_str()) {
                ctx.warn(
                    &key,
                    format!("required driver alias \"{alias}\" is not in bsp/drivers.json"),
                );
            }
        }
    }
}
