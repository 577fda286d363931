//! Typed model of a "pantavisor-service-system@1" state: BSP, containers, device.json, volumes,
//! groups, auto-recovery, dm-verity manifests and signatures, as upstream's parser reads them.

/// Container status goal (run.json `status_goal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatusGoal {
    Mounted,
    Started,
    Ready,
}

impl StatusGoal {
    pub fn parse(s: &str) -> Option<StatusGoal> {
        match s {
            "MOUNTED" => Some(StatusGoal::Mounted),
            "STARTED" => Some(StatusGoal::Started),
            "READY" => Some(StatusGoal::Ready),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            StatusGoal::Mounted => "MOUNTED",
            StatusGoal::Started => "STARTED",
            StatusGoal::Ready => "READY",
        }
    }
}

/// How an update touching a container is applied (upstream's restart policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Any change reboots the device; pv-ctrl may not stop/start it.
    System,
    /// Changes are applied live by restarting the container.
    Container,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        match s {
            "system" => Some(RestartPolicy::System),
            "container" => Some(RestartPolicy::Container),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::System => "system",
            RestartPolicy::Container => "container",
        }
    }
}

/// A group entry of device.json / groups.json / the default groups.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub name: String,
    pub description: String,
    /// Default goal for members (absent: STARTED).
    pub status_goal: StatusGoal,
    /// Default restart policy for members (absent: container).
    pub restart_policy: RestartPolicy,
    /// Seconds for members to reach their goal; None = `PV_UPDATER_GOALS_TIMEOUT`.
    pub timeout: Option<u32>,
    /// Default auto-recovery for members that have none of their own.
    pub auto_recovery: Option<AutoRecovery>,
}

impl Group {
    /// The goal timeout, given the configured `PV_UPDATER_GOALS_TIMEOUT`.
    pub fn timeout_or(&self, goals_timeout: u32) -> u32 {
        self.timeout.unwrap_or(goals_timeout)
    }
}

/// Where the groups of a state came from; decides upstream's rule for placing containers in groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupsSource {
    DeviceJson,
    /// Legacy `groups.json` (only read when device.json is absent).
    GroupsJson,
    /// Neither: the built-in defaults data/root/platform/app ("runlevel mode").
    Default,
    /// device.json without `groups`: upstream then has no groups at all.
    None,
}

/// How a container got its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupAssignment {
    /// `group` key of run.json.
    Declared,
    /// Deprecated `runlevel` key of run.json.
    Runlevel,
    /// No group in run.json: upstream's default-group rule.
    Default,
}

/// Policy of the auto_recovery object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryPolicy {
    No,
    Always,
    OnFailure,
    UnlessStopped,
}

impl RecoveryPolicy {
    /// Unknown strings mean `no`, as upstream.
    pub fn parse(s: &str) -> RecoveryPolicy {
        match s {
            "always" => RecoveryPolicy::Always,
            "on-failure" => RecoveryPolicy::OnFailure,
            "unless-stopped" => RecoveryPolicy::UnlessStopped,
            _ => RecoveryPolicy::No,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryPolicy::No => "no",
            RecoveryPolicy::Always => "always",
            RecoveryPolicy::OnFailure => "on-failure",
            RecoveryPolicy::UnlessStopped => "unless-stopped",
        }
    }
}

/// What happens when `max_retries` is exhausted in steady state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffPolicy {
    Reboot,
    Never,
    /// Wait this many seconds, reset the retry counter, try again.
    Duration(u64),
}

impl BackoffPolicy {
    /// `reboot`, `never`, `<N>s`, `<N>min`, `<N>h` or a bare number of seconds;
    /// anything else is `reboot`, as upstream.
    pub fn parse(s: &str) -> BackoffPolicy {
        match s {
            "never" => return BackoffPolicy::Never,
            "reboot" => return BackoffPolicy::Reboot,
            _ => {}
        }
        let (num, unit) = if let Some(n) = s.strip_suffix("min") {
            (n, 60)
        } else if let Some(n) = s.strip_suffix('h') {
            (n, 3600)
        } else if let Some(n) = s.strip_suffix('s') {
            (n, 1)
        } else {
            (s, 1)
        };
        // only plain digits: no sign, no spaces, no fractions
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            return BackoffPolicy::Reboot;
        }
        match num.parse::<u64>().ok().and_then(|n| n.checked_mul(unit)) {
            Some(secs) => BackoffPolicy::Duration(secs),
            None => BackoffPolicy::Reboot,
        }
    }

    /// As shown by pv-ctrl: `reboot`, `never`, or the largest whole unit of `Nh` / `Nmin` / `Ns`.
    pub fn render(&self) -> String {
        match *self {
            BackoffPolicy::Reboot => "reboot".to_string(),
            BackoffPolicy::Never => "never".to_string(),
            BackoffPolicy::Duration(s) if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
            BackoffPolicy::Duration(s) if s > 0 && s % 60 == 0 => format!("{}min", s / 60),
            BackoffPolicy::Duration(s) => format!("{s}s"),
        }
    }
}

/// The auto_recovery object of run.json or of a group; absent keys take the
/// defaults of the table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AutoRecovery {
    pub policy: RecoveryPolicy,
    /// 0 = unlimited.
    pub max_retries: u32,
    /// Seconds before the first restart.
    pub retry_delay: u32,
    /// Delay multiplier per retry; only applied when > 1.0.
    pub backoff_factor: f64,
    /// Seconds of uptime after which the retry counter resets.
    pub reset_window: u32,
    /// Seconds the container must stay up after reaching its goal to count as stable.
    pub stable_timeout: u32,
    pub backoff_policy: BackoffPolicy,
}

impl Default for AutoRecovery {
    fn default() -> Self {
        AutoRecovery {
            policy: RecoveryPolicy::No,
            max_retries: 0,
            retry_delay: 0,
            backoff_factor: 1.0,
            reset_window: 0,
            stable_timeout: 0,
            backoff_policy: BackoffPolicy::Reboot,
        }
    }
}

/// Volume persistence (run.json `storage`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    Permanent,
    Revision,
    Boot,
}

impl Persistence {
    pub fn as_str(self) -> &'static str {
        match self {
            Persistence::Permanent => "permanent",
            Persistence::Revision => "revision",
            Persistence::Boot => "boot",
        }
    }
}

/// One entry of a container's `storage` or of device.json `volumes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageVolume {
    pub name: String,
    pub persistence: Persistence,
    /// Disk name (or alias); None = the default disk if any, else plain storage.
    pub disk: Option<String>,
}

/// A file reference that may carry a volume handler: `dm:root.squashfs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// Handler before the `:` (e.g. `dm` = dm-verity), if any.
    pub handler: Option<String>,
    /// Path relative to the owner's directory (`bsp/` or `<container>/`).
    pub path: String,
}

impl ImageRef {
    /// Split `handler:path`. Only a non-empty prefix of `[a-z0-9_-]` counts as a handler, so a
    /// plain file name containing ':' stays a path.
    pub fn parse(s: &str) -> ImageRef {
        if let Some((h, p)) = s.split_once(':') {
            if !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            {
                return ImageRef {
                    handler: Some(h.to_string()),
                    path: p.to_string(),
                };
            }
        }
        ImageRef {
            handler: None,
            path: s.to_string(),
        }
    }
}

/// How a container volume is mounted, from its name (run.json `volumes`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeKind {
    /// `*.bind`: a file bind-mounted writable (copied into the trail, never hard-linked).
    Bind,
    /// `*.data`: a directory bind-mount.
    Data,
    /// Anything else: loop-mounted image, fstype = file extension (None without one).
    Loop { fstype: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub image: ImageRef,
    pub kind: VolumeKind,
}

impl Volume {
    pub fn parse(s: &str) -> Volume {
        let image = ImageRef::parse(s);
        let file = image.path.rsplit('/').next().unwrap_or("");
        let ext = file.rsplit_once('.').map(|(_, e)| e);
        let kind = match ext {
            Some("bind") => VolumeKind::Bind,
            Some("data") => VolumeKind::Data,
            Some(e) if !e.is_empty() => VolumeKind::Loop {
                fstype: Some(e.to_string()),
            },
            _ => VolumeKind::Loop { fstype: None },
        };
        Volume { image, kind }
    }
}

/// bsp/run.json. Paths are relative to `bsp/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bsp {
    pub linux: Option<String>,
    pub initrd: Option<String>,
    pub fdt: Option<String>,
    pub fit: Option<String>,
    pub rpiab: Option<String>,
    /// `modules`; see [`Bsp::modules_for`].
    pub modules: Option<ImageRef>,
    /// `modules_<uname -r>` keys, in document order.
    pub modules_by_release: Vec<(String, ImageRef)>,
    pub firmware: Option<ImageRef>,
    /// cpio.xz4 images appended to the initrd.
    pub addons: Vec<String>,
    /// Historic per-BSP config; upstream warns and ignores it.
    pub initrd_config: Option<String>,
    /// `bsp/_dm/<volume>.json`: verity manifests of `dm:` modules and firmware.
    pub dm_manifests: Vec<DmManifest>,
}

/// Which boot image set a BSP provides; upstream reads them in this precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootImage {
    Fit,
    Rpiab,
    /// linux + initrd (+ fdt).
    Std,
}

impl Bsp {
    /// The modules image for a kernel release: `modules_<release>` wins over `modules`.
    pub fn modules_for(&self, release: &str) -> Option<&ImageRef> {
        self.modules_by_release
            .iter()
            .find(|(r, _)| r == release)
            .map(|(_, m)| m)
            .or(self.modules.as_ref())
    }

    pub fn boot_image(&self) -> BootImage {
        if self.fit.is_some() {
            BootImage::Fit
        } else if self.rpiab.is_some() {
            BootImage::Rpiab
        } else {
            BootImage::Std
        }
    }
}

/// bsp/drivers.json: only `all` and `fitconfig:<name>` sections are kept,
/// because they are the only ones upstream evaluates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Drivers {
    pub sections: Vec<DriverSection>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverSection {
    /// `all` or `fitconfig:<name>`.
    pub name: String,
    pub aliases: Vec<DriverAlias>,
}

impl DriverSection {
    /// Upstream evaluates `all` and the section of the configured FIT configuration only.
    pub fn evaluated(&self, fitconfig: Option<&str>) -> bool {
        self.name == "all"
            || (fitconfig.is_some() && self.name.strip_prefix("fitconfig:") == fitconfig)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverAlias {
    pub name: String,
    /// modprobe-style `module [params]` entries, in order; `${user-meta:KEY}` not substituted.
    pub modules: Vec<String>,
}

impl Drivers {
    /// The aliases evaluated on a device with this `PV_BOOTLOADER_FITCONFIG`, in document order.
    pub fn aliases<'a>(
        &'a self,
        fitconfig: Option<&'a str>,
    ) -> impl Iterator<Item = &'a DriverAlias> {
        self.sections
            .iter()
            .filter(move |s| s.evaluated(fitconfig))
            .flat_map(|s| s.aliases.iter())
    }

    /// First alias of that name evaluated with this fitconfig.
    pub fn alias(&self, name: &str, fitconfig: Option<&str>) -> Option<&DriverAlias> {
        self.sections
            .iter()
            .filter(|s| s.evaluated(fitconfig))
            .flat_map(|s| s.aliases.iter())
            .find(|a| a.name == name)
    }

    /// Whether any section (evaluated or not for this device) defines the alias.
    pub fn has_alias(&self, name: &str) -> bool {
        self.sections
            .iter()
            .any(|s| s.aliases.iter().any(|a| a.name == name))
    }
}

/// Disk types of device.json (dm-crypt ones included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskType {
    DmCryptVersatile,
    DmCryptCaam,
    DmCryptDcp,
    SwapDisk,
    VolumeDisk,
    Dual,
}

impl DiskType {
    pub fn parse(s: &str) -> Option<DiskType> {
        match s {
            "dm-crypt-versatile" => Some(DiskType::DmCryptVersatile),
            "dm-crypt-caam" => Some(DiskType::DmCryptCaam),
            "dm-crypt-dcp" => Some(DiskType::DmCryptDcp),
            "swap-disk" => Some(DiskType::SwapDisk),
            "volume-disk" => Some(DiskType::VolumeDisk),
            "dual" => Some(DiskType::Dual),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            DiskType::DmCryptVersatile => "dm-crypt-versatile",
            DiskType::DmCryptCaam => "dm-crypt-caam",
            DiskType::DmCryptDcp => "dm-crypt-dcp",
            DiskType::SwapDisk => "swap-disk",
            DiskType::VolumeDisk => "volume-disk",
            DiskType::Dual => "dual",
        }
    }
}

/// The list a disk was declared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskList {
    /// device.json `disks` or legacy disks.json (strict).
    Disks,
    /// device.json `disks_v2` (strict).
    DisksV2,
    /// device.json `disks_v3` or legacy disks_v3.json (lenient: unknown types skipped).
    DisksV3,
}

/// A disk entry; exactly the keys the upstream parser reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub disk_type: DiskType,
    pub list: DiskList,
    pub path: Option<String>,
    /// `mainline` | `nxp` (crypt disks).
    pub mode: Option<String>,
    /// `ext4` | `ext3` | `swap`.
    pub format: Option<String>,
    pub mount_target: Option<String>,
    pub mount_options: Option<String>,
    pub format_options: Option<String>,
    pub provision: Option<String>,
    pub provision_options: Option<String>,
    pub uuid: Option<String>,
    /// `"default": "yes"`.
    pub default: bool,
    /// `"migrate_keyblob": "yes"`.
    pub migrate_keyblob: bool,
    pub aliases: Vec<String>,
    /// `dual`: the two composed disks.
    pub disks: Vec<String>,
    /// `dual`: `primary` | `secondary` | `create-primary` | `create-secondary` | `copy-once-to-primary`.
    pub init_order: Vec<String>,
}

/// Container roles (run.json `roles`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Privileged pv-ctrl and the full /pantavisor view.
    Mgmt,
    /// Explicitly no privileges.
    Nobody,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Mgmt => "mgmt",
            Role::Nobody => "nobody",
        }
    }
}

/// `drivers` of run.json: driver aliases from bsp/drivers.json.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DriverRefs {
    pub required: Vec<String>,
    pub optional: Vec<String>,
    pub manual: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkMode {
    Host,
    Pool,
}

/// `network` of run.json (IPAM).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerNetwork {
    /// `pool` alone implies Pool; neither mode nor pool means Host.
    pub mode: NetworkMode,
    pub pool: Option<String>,
    pub hostname: Option<String>,
    pub ip: Option<String>,
    pub mac: Option<String>,
}

/// `<container>/_dm/<volume>.json`: a dm-verity manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmManifest {
    pub key: String,
    /// The volume it protects (file name of the key without `.json`).
    pub volume: String,
    /// `type`, e.g. `dm-verity`.
    pub dm_type: String,
    pub data_device: String,
    pub hash_device: String,
    pub root_hash: String,
    pub salt: Option<String>,
    pub uuid: Option<String>,
}

impl DmManifest {
    /// Why this manifest cannot set up a verity device, if it cannot: a type other than
    /// `dm-verity`, or a root hash or salt that is not the hex a `verity` table takes.
    pub fn problem(&self) -> Option<String> {
        let hex = |s: &str, max: usize| {
            !s.is_empty()
                && s.len().is_multiple_of(2)
                && s.len() <= max
                && s.bytes().all(|b| b.is_ascii_hexdigit())
        };
        if self.dm_type != "dm-verity" {
            return Some(format!(
                "{}: type '{}' is not dm-verity",
                self.key,
                super::one_line(&self.dm_type)
            ));
        }
        // 128 hex digits: a sha512 digest, the longest a verity root hash takes
        if !hex(&self.root_hash, 128) {
            return Some(format!(
                "{}: root_hash '{}' is not a hex digest",
                self.key,
                super::one_line(&self.root_hash)
            ));
        }
        match self.salt.as_deref() {
            // 256 bytes: the superblock's salt field; "-" is veritysetup's "no salt"
            Some(s) if s != "-" && !hex(s, 512) => Some(format!(
                "{}: salt '{}' is not hex",
                self.key,
                super::one_line(s)
            )),
            _ => None,
        }
    }
}

/// `_sigs/<name>.json` (pvs@2 state signatures); verification is the signature module's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub key: String,
    /// `#spec`, normally `pvs@2`.
    pub spec: Option<String>,
    /// base64url JWS protected header.
    pub protected: Option<String>,
    /// base64url signature.
    pub signature: Option<String>,
}

/// `<name>/run.json` with defaults and group inheritance applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Container {
    pub name: String,
    /// Runtime plugin (`type`); only `lxc` exists.
    pub runtime: Option<String>,
    /// LXC config path relative to the container directory.
    pub config: Option<String>,
    pub root_volume: Option<Volume>,
    pub volumes: Vec<Volume>,
    /// `storage`, document order.
    pub storage: Vec<StorageVolume>,
    /// Resolved group name (always one of the state's groups).
    pub group: String,
    pub group_assignment: GroupAssignment,
    /// Own `status_goal`, else the group's.
    pub status_goal: StatusGoal,
    /// Own `restart_policy`, else the group's.
    pub restart_policy: RestartPolicy,
    /// Absent key = [Mgmt]; present = the known roles listed.
    pub roles: Vec<Role>,
    pub drivers: DriverRefs,
    /// Raw JSON of `logs` (None = default loggers).
    pub logs: Option<String>,
    /// `exports`: rootfs directories bound under `<exportsdir>/<name>/` while it runs (upstream's
    /// export.sh mount hook), as written.
    pub exports: Vec<String>,
    /// Raw JSON of `services` (xconnect requirements).
    pub services: Option<String>,
    /// Own auto_recovery; see [`super::State::effective_auto_recovery`] for inheritance.
    pub auto_recovery: Option<AutoRecovery>,
    pub network: Option<ContainerNetwork>,
    /// `dev-log`: None = follow `PV_LOG_AUTO_DEVLOG`.
    pub dev_log: Option<bool>,
    /// False only for `"automodfw": "no"`.
    pub automodfw: bool,
    /// Parsed and ignored by upstream.
    pub share: Option<String>,
    /// Raw JSON of `remount` (read by the remount mount hook).
    pub remount: Option<String>,
    /// Keys `_config/<name>/...` of the overlay, document order.
    pub config_overlay: Vec<String>,
    pub dm_manifests: Vec<DmManifest>,
}

impl Container {
    pub fn is_mgmt(&self) -> bool {
        self.roles.contains(&Role::Mgmt)
    }

    pub fn dm_manifest(&self, volume: &str) -> Option<&DmManifest> {
        self.dm_manifests.iter().find(|m| m.volume == volume)
    }
}

/// Pantavisor's built-in default groups (pv:`defaults/groups.json`), used when a state has
/// neither device.json nor groups.json.
pub fn default_groups() -> Vec<Group> {
    let g = |name: &str, description: &str, goal, policy, ar| Group {
        name: name.to_string(),
        description: description.to_string(),
        status_goal: goal,
        restart_policy: policy,
        timeout: Some(30),
        auto_recovery: ar,
    };
    vec![
        g(
            "data",
            "Containers which volumes we want to mount but not to be started",
            StatusGoal::Mounted,
            RestartPolicy::System,
            None,
        ),
        g(
            "root",
            "Container or containers that are in charge of setting network connectivity up for the board",
            StatusGoal::Started,
            RestartPolicy::System,
            None,
        ),
        g(
            "platform",
            "Middleware and utility containers",
            StatusGoal::Started,
            RestartPolicy::System,
            None,
        ),
        g(
            "app",
            "Application level containers",
            StatusGoal::Started,
            RestartPolicy::Container,
            Some(AutoRecovery {
                policy: RecoveryPolicy::OnFailure,
                max_retries: 5,
                retry_delay: 5,
                backoff_factor: 2.0,
                reset_window: 0,
                stable_timeout: 30,
                backoff_policy: BackoffPolicy::Reboot,
            }),
        ),
    ]
}
