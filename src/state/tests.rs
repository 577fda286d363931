use super::*;

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn fixture(name: &str) -> Vec<u8> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/states/");
    std::fs::read(format!("{dir}{name}")).unwrap()
}

/// A state document with `#spec` and the given members.
fn doc(members: &str) -> String {
    if members.is_empty() {
        r##"{"#spec":"pantavisor-service-system@1"}"##.to_string()
    } else {
        format!(r##"{{"#spec":"pantavisor-service-system@1",{members}}}"##)
    }
}

/// A `<name>/run.json` member with extra fields.
fn run(name: &str, fields: &str) -> String {
    let sep = if fields.is_empty() { "" } else { "," };
    format!(r#""{name}/run.json":{{"name":"{name}","type":"lxc"{sep}{fields}}}"#)
}

fn ok(d: &str) -> State {
    match State::parse(d.as_bytes()) {
        Ok(s) => s,
        Err(e) => panic!("refused:\n{e}\n---\n{d}"),
    }
}

fn errors(d: &str) -> Vec<String> {
    match State::parse(d.as_bytes()) {
        Ok(_) => panic!("accepted: {d}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

/// The state is refused and one error line contains every part given.
fn refused(d: &str, parts: &[&str]) {
    let errs = errors(d);
    assert!(
        errs.iter().any(|e| parts.iter().all(|p| e.contains(p))),
        "no error containing {parts:?} in {errs:#?}"
    );
}

fn has_warning(s: &State, parts: &[&str]) -> bool {
    s.warnings()
        .iter()
        .any(|w| parts.iter().all(|p| w.contains(p)))
}

// ---------------------------------------------------------------- fixtures

#[test]
fn every_fixture_parses_byte_exact_in_document_order() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/states");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let s = State::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(s.raw(), &bytes[..], "{}", path.display());
        // document order: each key's first occurrence as `"key":` appears after the previous one
        let text = std::str::from_utf8(&bytes).unwrap();
        let mut last = text.find("\"#spec\"").unwrap();
        for e in s.entries() {
            let at = text.find(&format!("\"{}\":", e.key)).unwrap();
            assert!(at > last, "{}: {} out of order", path.display(), e.key);
            last = at;
            assert_eq!(s.raw_key(e), e.key);
            match &e.value {
                EntryValue::Object { sha } => assert_eq!(s.raw_value(e), format!("\"{sha}\"")),
                EntryValue::Json { raw } => assert_eq!(s.raw_value(e), raw),
            }
        }
        assert!(!s.summary().is_empty());
        count += 1;
    }
    assert!(count >= 14);
}

#[test]
fn initial_state_full_model() {
    let bytes = fixture("initial_state.json");
    let s = State::parse(&bytes).unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert_eq!(s.spec(), Spec::ServiceSystem1);
    assert_eq!(s.entries().len(), 42);
    assert_eq!(s.objects().count(), 21);
    assert_eq!(s.jsons().count(), 21);
    assert_eq!(
        s.entry("bsp/pantavisor").unwrap().sha(),
        Some("051995afc8267ff9b6920e224c06623a4e6c1ba4c269faa8dbb5fbfc06531ffd")
    );

    // BSP
    let b = s.bsp().unwrap();
    assert_eq!(b.linux.as_deref(), Some("kernel.img"));
    assert_eq!(b.initrd.as_deref(), Some("pantavisor"));
    assert_eq!(b.fdt, None);
    assert_eq!(b.fit, None);
    assert_eq!(b.rpiab, None);
    assert_eq!(b.boot_image(), BootImage::Std);
    let plain = |p: &str| ImageRef {
        handler: None,
        path: p.into(),
    };
    assert_eq!(b.modules, Some(plain("modules.squashfs")));
    assert_eq!(b.firmware, Some(plain("firmware.squashfs")));
    assert_eq!(
        b.modules_for("5.10.110-v8"),
        Some(&plain("modules.squashfs"))
    );
    assert!(b.addons.is_empty());
    assert_eq!(b.initrd_config.as_deref(), Some("trail.config"));
    assert!(has_warning(&s, &["bsp/run.json", "initrd_config"]));

    // drivers: `all` kept, `dtb:all` not evaluated
    let d = s.drivers().unwrap();
    assert_eq!(d.sections.len(), 1);
    assert_eq!(d.sections[0].name, "all");
    let names: Vec<&str> = d.aliases(None).map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["bluetooth", "wifi", "wireguard"]);
    assert_eq!(
        d.alias("wifi", None).unwrap().modules,
        ["brcmutil", "brcmfmac"]
    );
    assert_eq!(
        d.alias("bluetooth", None).unwrap().modules,
        ["btbcm", "hci_uart"]
    );
    assert!(has_warning(&s, &["bsp/drivers.json", "dtb:all"]));

    // groups in order, from device.json
    assert_eq!(s.groups_source(), GroupsSource::DeviceJson);
    let g: Vec<(&str, StatusGoal, RestartPolicy, Option<u32>)> = s
        .groups()
        .iter()
        .map(|g| (g.name.as_str(), g.status_goal, g.restart_policy, g.timeout))
        .collect();
    use RestartPolicy::{Container as C, System as Sys};
    use StatusGoal::{Mounted, Started};
    assert_eq!(
        g,
        [
            ("data", Mounted, Sys, Some(30)),
            ("root", Started, Sys, Some(30)),
            ("platform", Started, Sys, Some(30)),
            ("app", Started, C, Some(30)),
        ]
    );
    assert_eq!(s.groups()[3].description, "Application level containers");
    assert!(s.groups().iter().all(|g| g.auto_recovery.is_none()));

    // disks and volumes
    assert_eq!(s.disks().len(), 1);
    let disk = &s.disks()[0];
    assert_eq!(disk.name, "dm-internal-secrets");
    assert_eq!(disk.disk_type, DiskType::DmCryptVersatile);
    assert_eq!(disk.list, DiskList::Disks);
    assert_eq!(
        disk.path.as_deref(),
        Some("/storage/dm-crypt-files/dm-internal-secrets/versatile.img,2,versatile_key-internal_secrets")
    );
    assert!(!disk.default);
    let secret = |n: &str| StorageVolume {
        name: n.into(),
        persistence: Persistence::Permanent,
        disk: Some("dm-internal-secrets".into()),
    };
    assert_eq!(s.volumes(), [secret("pv--devmeta"), secret("pv--usrmeta")]);
    assert_eq!(s.network(), None);
    assert_eq!(s.remount(), None);

    // containers, document order
    let names: Vec<&str> = s.containers().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["awconnect", "pv-avahi", "pvr-sdk"]);

    let aw = s.container("awconnect").unwrap();
    assert_eq!(aw.group, "root");
    assert_eq!(aw.group_assignment, GroupAssignment::Declared);
    assert_eq!(aw.status_goal, Started); // from group root
    assert_eq!(aw.restart_policy, Sys); // from group root
    assert_eq!(aw.roles, [Role::Mgmt]); // no roles key
    assert!(aw.is_mgmt());
    assert_eq!(aw.runtime.as_deref(), Some("lxc"));
    assert_eq!(aw.config.as_deref(), Some("lxc.container.conf"));
    assert_eq!(
        aw.root_volume,
        Some(Volume {
            image: plain("root.squashfs"),
            kind: VolumeKind::Loop {
                fstype: Some("squashfs".into())
            }
        })
    );
    assert!(aw.volumes.is_empty());
    assert_eq!(aw.drivers.optional, ["wifi", "usbnet", "bluetooth"]);
    assert!(aw.drivers.required.is_empty() && aw.drivers.manual.is_empty());
    assert_eq!(
        aw.storage,
        [
            StorageVolume {
                name: "docker--etc-NetworkManager-system-connections".into(),
                persistence: Persistence::Permanent,
                disk: None
            },
            StorageVolume {
                name: "lxc-overlay".into(),
                persistence: Persistence::Boot,
                disk: None
            },
        ]
    );
    assert_eq!(
        aw.config_overlay,
        [
            "_config/awconnect/etc/NetworkManager/dnsmasq-shared.d/device-dns.conf",
            "_config/awconnect/etc/iptables/dump",
            "_config/awconnect/etc/iptables/rules.v4",
            "_config/awconnect/etc/iptables/rules.v6",
            "_config/awconnect/etc/wifi-connect/conf.d/WifiHotspot.json",
        ]
    );
    assert!(aw.automodfw && aw.exports.is_empty());
    assert_eq!(aw.logs, None);
    assert_eq!(aw.auto_recovery, None);
    assert_eq!(s.effective_auto_recovery(aw), AutoRecovery::default());

    let avahi = s.container("pv-avahi").unwrap();
    assert_eq!(
        (
            avahi.group.as_str(),
            avahi.status_goal,
            avahi.restart_policy
        ),
        ("platform", Started, Sys)
    );
    assert_eq!(avahi.config_overlay, ["_config/pv-avahi/etc/hostname"]);
    assert_eq!(avahi.storage.len(), 1);

    let sdk = s.container("pvr-sdk").unwrap();
    assert_eq!(
        (sdk.group.as_str(), sdk.status_goal, sdk.restart_policy),
        ("platform", Started, Sys)
    );
    assert_eq!(sdk.roles, [Role::Mgmt]);
    let rv = sdk.root_volume.as_ref().unwrap();
    assert_eq!(rv.image.handler.as_deref(), Some("dm"));
    assert_eq!(rv.image.path, "root.squashfs");
    let storage: Vec<&str> = sdk.storage.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        storage,
        [
            "docker--etc-dropbear",
            "docker--etc-volume",
            "docker--home-pantavisor-.ssh",
            "docker--var-pvr-sdk",
            "lxc-overlay"
        ]
    );
    assert_eq!(
        sdk.config_overlay,
        ["_config/pvr-sdk/etc/pvr-sdk/config.json"]
    );

    // the verity manifest
    assert_eq!(
        sdk.dm_manifests,
        [DmManifest {
            key: "pvr-sdk/_dm/root.squashfs.json".into(),
            volume: "root.squashfs".into(),
            dm_type: "dm-verity".into(),
            data_device: "root.squashfs".into(),
            hash_device: "root.squashfs.hash".into(),
            root_hash: "2b95173c2fba9391e7e5fc441a7ef54265b4dcc0f70392fc9089f340c57e5b3c".into(),
            salt: Some("64440fb2cd2374345715ed8fa574e5b798d97b30b8d90d79d70012f4ac97462b".into()),
            uuid: Some("125e28bb-90af-4d13-b72b-c14549476299".into()),
        }]
    );
    assert_eq!(
        sdk.dm_manifest("root.squashfs").unwrap().dm_type,
        "dm-verity"
    );
    assert!(s
        .entry("pvr-sdk/root.squashfs.hash")
        .unwrap()
        .sha()
        .is_some());

    // signatures
    let sigs: Vec<&str> = s.signatures().iter().map(|g| g.key.as_str()).collect();
    assert_eq!(
        sigs,
        [
            "_sigs/_hostconfig.json",
            "_sigs/awconnect.json",
            "_sigs/bsp.json",
            "_sigs/pv-avahi.json",
            "_sigs/pvr-sdk.json"
        ]
    );
    let bsp_sig = &s.signatures()[2];
    assert_eq!(bsp_sig.spec.as_deref(), Some("pvs@2"));
    assert!(bsp_sig
        .protected
        .as_deref()
        .unwrap()
        .starts_with("eyJhbGciOiJSUzI1NiIsImp3ayI6ey"));
    assert!(bsp_sig
        .signature
        .as_deref()
        .unwrap()
        .starts_with("LTRDXoNGd6NJU0zWDWvu"));

    // raw JSON of entries is the document text
    let hotspot = s
        .entry("_config/awconnect/etc/wifi-connect/conf.d/WifiHotspot.json")
        .unwrap();
    let raw = "{\n    \"psk\": \"p4nt4c0r\",\n    \"ssid\": \"pantacor\"\n  }";
    assert_eq!(hotspot.json(), Some(raw));
    assert!(text.contains(raw));
    assert_eq!(s.entry("network-mapping.json").unwrap().json(), Some("{}"));

    // expansion and ownership
    let expanded = |k: &str| s.entry(k).unwrap().expanded();
    assert!(!expanded("_sigs/bsp.json"));
    assert!(!expanded("awconnect/src.json"));
    assert!(!expanded("bsp/build.json"));
    assert!(expanded("bsp/run.json"));
    assert!(expanded("pvr-sdk/_dm/root.squashfs.json"));
    assert!(expanded("_config/pvr-sdk/etc/pvr-sdk/config.json"));
    let owner = |k: &str| s.entry(k).unwrap().owner();
    assert_eq!(owner("_config/pv-avahi/etc/hostname"), Some("pv-avahi"));
    assert_eq!(owner("pvr-sdk/root.squashfs"), Some("pvr-sdk"));
    assert_eq!(owner("bsp/kernel.img"), Some("bsp"));
    assert_eq!(owner("device.json"), None);
    let c = s.owner_container(s.entry("_config/pv-avahi/etc/hostname").unwrap());
    assert_eq!(c.map(|c| c.name.as_str()), Some("pv-avahi"));
    assert!(s
        .owner_container(s.entry("bsp/run.json").unwrap())
        .is_none());

    let summary = s.summary();
    for line in [
        "bsp: linux=kernel.img initrd=pantavisor modules=modules.squashfs",
        "pvr-sdk group=platform goal=STARTED restart=system roles=[mgmt]",
        "objects: 21 (21 distinct sha256)",
        "config overlays: awconnect (5), pv-avahi (1), pvr-sdk (1)",
        "dm manifests: pvr-sdk/_dm/root.squashfs.json (dm-verity)",
        "  app goal=STARTED restart=container timeout=30s",
    ] {
        assert!(summary.contains(line), "{line:?} not in\n{summary}");
    }
}

#[test]
fn fit_bsp_legacy_groups_and_fitconfig_drivers() {
    let s = State::parse(&fixture("bsp_init_groups.json")).unwrap();
    assert_eq!(s.groups_source(), GroupsSource::GroupsJson);
    assert_eq!(s.groups().len(), 10);
    assert_eq!(s.groups()[0].name, "System");
    assert_eq!(s.groups()[0].status_goal, StatusGoal::Started); // default
    assert_eq!(s.groups()[0].timeout, None); // -> PV_UPDATER_GOALS_TIMEOUT
    assert_eq!(s.groups()[0].timeout_or(120), 120);
    assert_eq!(s.disks()[0].name, "dm-bsh-secrets");
    assert_eq!(s.disks()[0].disk_type, DiskType::DmCryptDcp);
    let b = s.bsp().unwrap();
    assert_eq!(b.fit.as_deref(), Some("pantavisor.fit"));
    assert_eq!(b.boot_image(), BootImage::Fit);
    assert_eq!(b.initrd_config, None, "empty string means unset");
    let d = s.drivers().unwrap();
    assert_eq!(d.sections[1].name, "fitconfig:conf-base-config");
    assert!(d.sections[1].evaluated(Some("conf-base-config")));
    assert!(!d.sections[1].evaluated(Some("other")));
    assert!(!d.sections[1].evaluated(None));
    assert_eq!(
        d.alias("wifi", None).unwrap().modules,
        ["brcmfmac alternative_fw_path=${user-meta:brcmfmac.alternative_fw_path}"]
    );
    assert_eq!(
        d.alias("usbncm", None).unwrap().modules,
        Vec::<String>::new()
    );

    let s = State::parse(&fixture("bsp_init.json")).unwrap();
    let swap = &s.disks()[1];
    assert_eq!(swap.list, DiskList::DisksV2);
    assert_eq!(swap.disk_type, DiskType::SwapDisk);
    assert_eq!(swap.format.as_deref(), Some("swap"));
    assert_eq!(swap.provision.as_deref(), Some("zram"));
    assert_eq!(swap.provision_options.as_deref(), Some("disksize=38M"));
    let remount = s.remount().unwrap();
    assert!(remount.starts_with('{') && remount.ends_with('}') && remount.contains("\"dev\""));
    assert_eq!(s.volumes()[0].persistence, Persistence::Boot);
}

// ---------------------------------------------------------------- groups

#[test]
fn default_groups_first_alphabetical_goes_to_root() {
    let d = doc(&[run("zeta", ""), run("alpha", ""), run("mid", "")].join(","));
    let s = ok(&d);
    assert_eq!(s.groups_source(), GroupsSource::Default);
    let names: Vec<&str> = s.groups().iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["data", "root", "platform", "app"]);
    let group = |n: &str| s.container(n).unwrap().group.clone();
    assert_eq!(group("alpha"), "root");
    assert_eq!(group("mid"), "platform");
    assert_eq!(group("zeta"), "platform");
    let alpha = s.container("alpha").unwrap();
    assert_eq!(alpha.group_assignment, GroupAssignment::Default);
    assert_eq!(alpha.restart_policy, RestartPolicy::System);
    // the default `app` group carries auto-recovery
    let app = s.group("app").unwrap().auto_recovery.unwrap();
    assert_eq!(app.policy, RecoveryPolicy::OnFailure);
    assert_eq!(
        (app.max_retries, app.retry_delay, app.stable_timeout),
        (5, 5, 30)
    );
    assert_eq!(app.backoff_factor, 2.0);
    assert_eq!(app.backoff_policy, BackoffPolicy::Reboot);
}

#[test]
fn default_groups_root_taken_sends_all_groupless_to_platform() {
    let d = doc(&[
        run("zeta", r#""group":"root""#),
        run("alpha", ""),
        run("beta", r#""runlevel":"app""#),
    ]
    .join(","));
    let s = ok(&d);
    assert_eq!(s.container("zeta").unwrap().group, "root");
    assert_eq!(s.container("alpha").unwrap().group, "platform");
    let beta = s.container("beta").unwrap();
    assert_eq!(beta.group, "app");
    assert_eq!(beta.group_assignment, GroupAssignment::Runlevel);
    assert_eq!(beta.restart_policy, RestartPolicy::Container);
    assert!(has_warning(
        &s,
        &["beta/run.json", "deprecated", "runlevel"]
    ));
}

#[test]
fn invalid_runlevel_is_ignored_with_a_warning() {
    let s = ok(&doc(&run("a", r#""runlevel":"fast""#)));
    assert_eq!(s.container("a").unwrap().group, "root");
    assert!(has_warning(&s, &["a/run.json", "invalid runlevel", "fast"]));
}

#[test]
fn declared_groups_send_groupless_containers_to_the_last_group() {
    let dev = r#""device.json":{"groups":[
        {"name":"first","status_goal":"MOUNTED","restart_policy":"system","timeout":"12"},
        {"name":"last","status_goal":"READY"}]}"#;
    let d = doc(&[
        dev.to_string(),
        run("b", ""),
        run("a", r#""group":"first","status_goal":"STARTED""#),
    ]
    .join(","));
    let s = ok(&d);
    let b = s.container("b").unwrap();
    assert_eq!(b.group, "last");
    assert_eq!(b.status_goal, StatusGoal::Ready); // inherited
    assert_eq!(b.restart_policy, RestartPolicy::Container); // group default
    let a = s.container("a").unwrap();
    assert_eq!(a.group, "first");
    assert_eq!(a.status_goal, StatusGoal::Started); // own wins
    assert_eq!(a.restart_policy, RestartPolicy::System); // inherited
    assert_eq!(s.group("first").unwrap().timeout, Some(12)); // string accepted as upstream
    assert_eq!(s.group("last").unwrap().timeout, None);
    assert!(s.summary().contains("b group=last (default) goal=READY"));
}

#[test]
fn device_json_without_groups_reads_nothing_else() {
    let d = doc(r#""device.json":{"volumes":{"v":{"persistence":"permanent"}}}"#);
    let s = ok(&d);
    assert_eq!(s.groups_source(), GroupsSource::None);
    assert!(s.groups().is_empty());
    assert!(s.volumes().is_empty());
    assert!(has_warning(&s, &["device.json", "no \"groups\""]));
    // ... so a container has no group to join
    let d = doc(&format!(r#""device.json":{{}},{}"#, run("a", "")));
    refused(&d, &["a/run.json", "\"group\"", "no group"]);
}

#[test]
fn legacy_files_ignored_when_device_json_exists() {
    let d = doc(
        r#""device.json":{"groups":[{"name":"g"}]},"groups.json":[{"name":"x"}],"disks.json":[]"#,
    );
    let s = ok(&d);
    assert_eq!(s.groups().len(), 1);
    assert!(has_warning(&s, &["groups.json", "ignored"]));
    assert!(has_warning(&s, &["disks.json", "ignored"]));
}

// ---------------------------------------------------------------- auto-recovery

#[test]
fn auto_recovery_parsing_and_inheritance() {
    let dev = r#""device.json":{"groups":[{"name":"app","auto_recovery":
        {"policy":"always","max_retries":3,"retry_delay":2,"backoff_factor":1.5,
         "reset_window":600,"stable_timeout":20,"backoff_policy":"10min"}}]}"#;
    let d = doc(&[
        dev.to_string(),
        run(
            "own",
            r#""auto_recovery":{"policy":"on-failure","max_retries":0,"backoff_policy":"never"}"#,
        ),
        run("none", ""),
        run(
            "optout",
            r#""auto_recovery":{"policy":"no","max_retries":9}"#,
        ),
        run("stopped", r#""auto_recovery":{"policy":"unless-stopped"}"#),
        run("weird", r#""auto_recovery":{"policy":"sometimes"}"#),
    ]
    .join(","));
    let s = ok(&d);
    let group_ar = AutoRecovery {
        policy: RecoveryPolicy::Always,
        max_retries: 3,
        retry_delay: 2,
        backoff_factor: 1.5,
        reset_window: 600,
        stable_timeout: 20,
        backoff_policy: BackoffPolicy::Duration(600),
    };
    assert_eq!(s.group("app").unwrap().auto_recovery, Some(group_ar));
    assert!(s.summary().contains(
        " auto_recovery=always(max_retries=3 retry_delay=2s backoff_factor=1.5 stable_timeout=20s"
    ));
    let eff = |n: &str| s.effective_auto_recovery(s.container(n).unwrap());
    let own = eff("own");
    assert_eq!(own.policy, RecoveryPolicy::OnFailure);
    assert_eq!(own.max_retries, 0);
    assert_eq!(own.backoff_factor, 1.0);
    assert_eq!(own.backoff_policy, BackoffPolicy::Never);
    assert_eq!(eff("none"), group_ar);
    // explicit "no" cannot opt out of the group default (wholesale copy, no merge)
    assert_eq!(eff("optout"), group_ar);
    // unless-stopped is not "no": it blocks inheritance
    assert_eq!(eff("stopped").policy, RecoveryPolicy::UnlessStopped);
    // unknown policy reads as "no", so the group's applies
    assert_eq!(
        s.container("weird").unwrap().auto_recovery.unwrap().policy,
        RecoveryPolicy::No
    );
    assert_eq!(eff("weird"), group_ar);
    assert!(has_warning(&s, &["weird/run.json", "sometimes"]));
}

#[test]
fn auto_recovery_field_types() {
    refused(
        &doc(&run("a", r#""auto_recovery":{"max_retries":-1}"#)),
        &[
            "a/run.json",
            "\"auto_recovery.max_retries\"",
            "non-negative integer",
        ],
    );
    refused(
        &doc(&run("a", r#""auto_recovery":{"backoff_factor":"x"}"#)),
        &["a/run.json", "\"auto_recovery.backoff_factor\""],
    );
    refused(
        &doc(&run("a", r#""auto_recovery":"always""#)),
        &["a/run.json", "\"auto_recovery\" must be an object"],
    );
}

#[test]
fn backoff_policy_durations() {
    use BackoffPolicy::*;
    let cases = [
        ("reboot", Reboot),
        ("never", Never),
        ("30s", Duration(30)),
        ("5min", Duration(300)),
        ("2h", Duration(7200)),
        ("45", Duration(45)),
        ("0s", Duration(0)),
        ("", Reboot),
        ("abc", Reboot),
        ("-5s", Reboot),
        ("+5s", Reboot),
        ("1.5h", Reboot),
        ("5 min", Reboot),
        ("5m", Reboot),
        ("min", Reboot),
        ("99999999999999999999s", Reboot),
        ("18446744073709551615h", Reboot),
    ];
    for (text, want) in cases {
        assert_eq!(BackoffPolicy::parse(text), want, "{text:?}");
    }
    let render = [
        (Duration(30), "30s"),
        (Duration(90), "90s"),
        (Duration(300), "5min"),
        (Duration(3660), "61min"),
        (Duration(7200), "2h"),
        (Duration(0), "0s"),
        (Reboot, "reboot"),
        (Never, "never"),
    ];
    for (p, text) in render {
        assert_eq!(p.render(), text);
        assert_eq!(BackoffPolicy::parse(text), p, "round trip {text}");
    }
    // an unparseable value in a state reads as reboot, with a warning
    let s = ok(&doc(&run(
        "a",
        r#""auto_recovery":{"policy":"always","backoff_policy":"soon"}"#,
    )));
    assert_eq!(
        s.container("a")
            .unwrap()
            .auto_recovery
            .unwrap()
            .backoff_policy,
        Reboot
    );
    assert!(has_warning(&s, &["a/run.json", "soon"]));
}

// ---------------------------------------------------------------- container fields

#[test]
fn persistence_fallback_and_missing_persistence() {
    let s = ok(&doc(&run(
        "a",
        r#""storage":{"x":{"persistence":"built-in"},"y":{"disk":"d"},"z":{"persistence":"revision","disk":"d"}}"#,
    )));
    let st = &s.container("a").unwrap().storage;
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].persistence, Persistence::Boot);
    assert_eq!(st[1].name, "z");
    assert_eq!(st[1].persistence, Persistence::Revision);
    assert_eq!(st[1].disk.as_deref(), Some("d"));
    assert!(has_warning(&s, &["a/run.json", "built-in", "boot"]));
    assert!(has_warning(&s, &["a/run.json", "y: no persistence"]));
    assert!(has_warning(&s, &["unknown disk \"d\""]));
}

#[test]
fn roles_default_and_listed() {
    let s = ok(&doc(&[
        run("absent", ""),
        run("nobody", r#""roles":["nobody"]"#),
        run("mixed", r#""roles":["mgmt","admin","mgmt"]"#),
        run("empty", r#""roles":[]"#),
    ]
    .join(",")));
    let roles = |n: &str| s.container(n).unwrap().roles.clone();
    assert_eq!(roles("absent"), [Role::Mgmt]);
    assert_eq!(roles("nobody"), [Role::Nobody]);
    assert!(!s.container("nobody").unwrap().is_mgmt());
    assert_eq!(roles("mixed"), [Role::Mgmt]);
    assert!(has_warning(
        &s,
        &["mixed/run.json", "unknown role \"admin\""]
    ));
    assert_eq!(roles("empty"), []);
    refused(
        &doc(&run("a", r#""roles":{"mgmt":true}"#)),
        &["a/run.json", "\"roles\" must be an array of strings"],
    );
}

#[test]
fn volumes_handlers_and_kinds() {
    let s = ok(&doc(&run(
        "a",
        r#""root-volume":"dm:root.squashfs","volumes":["conf.bind","state.data","dm:extra.ext4","noext","odd:name.img"]"#,
    )));
    let c = s.container("a").unwrap();
    assert_eq!(
        c.root_volume.as_ref().unwrap().image.handler.as_deref(),
        Some("dm")
    );
    let kinds: Vec<(Option<&str>, &str, VolumeKind)> = c
        .volumes
        .iter()
        .map(|v| {
            (
                v.image.handler.as_deref(),
                v.image.path.as_str(),
                v.kind.clone(),
            )
        })
        .collect();
    let lp = |f: &str| VolumeKind::Loop {
        fstype: Some(f.into()),
    };
    assert_eq!(
        kinds,
        [
            (None, "conf.bind", VolumeKind::Bind),
            (None, "state.data", VolumeKind::Data),
            (Some("dm"), "extra.ext4", lp("ext4")),
            (None, "noext", VolumeKind::Loop { fstype: None }),
            (Some("odd"), "name.img", lp("img")),
        ]
    );
    assert!(has_warning(
        &s,
        &["a/run.json", "dm volume \"root.squashfs\""]
    ));
    assert_eq!(
        ImageRef::parse("We:ird").handler,
        None,
        "not a handler name"
    );
}

/// What this build refuses to run (check-state exits 1, an update is WONTGO): every handler
/// but `dm`, a `dm` volume without its manifest, every storage volume on a disk (named, or the
/// default one) it cannot open, device.json volumes on such a disk; a disk nothing uses and
/// plain volumes are fine.
#[test]
fn unsupported_names_handlers_and_disk_volumes() {
    let plain = ok(&doc(&format!(
        r#"{},"device.json":{{"groups":[{{"name":"g"}}],"disks":[{{"name":"x","type":"dm-crypt-dcp"}}]}}"#,
        run(
            "a",
            r#""root-volume":"root.squashfs","storage":{"d":{"persistence":"permanent"}}"#
        )
    )));
    assert_eq!(plain.unsupported(), Vec::<String>::new());

    let s = ok(&doc(&format!(
        r#"{},{},"device.json":{{"groups":[{{"name":"g"}}],"disks":[{{"name":"x","type":"dm-crypt-dcp","default":"yes"}}],"volumes":{{"pv--usrmeta":{{"persistence":"permanent","disk":"x"}}}}}}"#,
        run(
            "a",
            r#""root-volume":"dm:root.squashfs","volumes":["odd:v.img"]"#
        ),
        run("b", r#""storage":{"d":{"persistence":"permanent"}}"#),
    )));
    assert_eq!(
        s.unsupported(),
        [
            "device.json: storage 'pv--usrmeta': disk 'x' (dm-crypt-dcp) needs the SoC's DCP to seal its key: not supported by this build",
            "a: volume 'root.squashfs': no \"a/_dm/root.squashfs.json\"",
            "a: volume 'v.img': handler 'odd' is not supported by this build",
            "b: storage 'd': disk 'x' (dm-crypt-dcp) needs the SoC's DCP to seal its key: not supported by this build",
        ]
    );
}

/// Volumes on a `dm-crypt-versatile` disk run; on one with a bad path, on a disk not declared,
/// or on a volume disk they are refused, naming the volume, the disk and why.
#[test]
fn volumes_on_versatile_crypt_disks_run() {
    let device = |disks: &str, vols: &str| {
        format!(
            r#""device.json":{{"groups":[{{"name":"g"}}],"disks":[{disks}],"volumes":{{{vols}}}}}"#
        )
    };
    let good = r#"{"name":"c","type":"dm-crypt-versatile","path":"/storage/dm/c.img,16,ck"}"#;
    let s = ok(&doc(&format!(
        "{},{}",
        run(
            "a",
            r#""storage":{"d":{"persistence":"permanent","disk":"c"}}"#
        ),
        device(
            good,
            r#""pv--usrmeta":{"persistence":"permanent","disk":"c"}"#
        )
    )));
    assert_eq!(s.unsupported(), Vec::<String>::new());
    let bad = r#"{"name":"c","type":"dm-crypt-versatile","path":"/storage/dm/c.img,k"},
        {"name":"v","type":"volume-disk","format":"ext4"}"#;
    let s = ok(&doc(&format!(
        "{},{}",
        run(
            "a",
            r#""storage":{"d":{"persistence":"permanent","disk":"c"},"e":{"persistence":"boot","disk":"nope"},"f":{"persistence":"boot","disk":"v"}}"#
        ),
        device(bad, "")
    )));
    assert_eq!(
        s.unsupported(),
        [
            "a: storage 'd': disk 'c' (dm-crypt-versatile): path '/storage/dm/c.img,k': not <image>,<sizeMB>,<keyname>",
            "a: storage 'e': disk 'nope' is not declared in device.json",
            "a: storage 'f': disk 'v' (volume-disk) is not supported by this build",
        ]
    );
}

/// dm-verity volumes run (reference 11.1) when their manifest can make a verity table, on
/// containers and on the BSP's modules; their data devices are the boot re-hash's
/// no-validate list.
#[test]
fn dm_verity_volumes_manifests_and_the_no_validate_list() {
    let good = r#"{"data_device":"root.squashfs","hash_device":"root.squashfs.hash","root_hash":"2b95173c2fba9391e7e5fc441a7ef54265b4dcc0f70392fc9089f340c57e5b3c","salt":"6444","type":"dm-verity","uuid":"125e28bb-90af-4d13-b72b-c14549476299"}"#;
    let state = |manifest: &str| {
        ok(&doc(&[
            r#""bsp/run.json":{"linux":"k","initrd":"i","modules":"dm:modules.squashfs"}"#.into(),
            r#""bsp/_dm/modules.squashfs.json":{"data_device":"modules.squashfs","hash_device":"modules.squashfs.hash","root_hash":"ab","type":"dm-verity"}"#.into(),
            run("a", r#""root-volume":"dm:root.squashfs""#),
            format!(r#""a/_dm/root.squashfs.json":{manifest}"#),
        ]
        .join(",")))
    };
    let s = state(good);
    assert_eq!(s.unsupported(), Vec::<String>::new());
    assert_eq!(s.bsp().unwrap().dm_manifests[0].volume, "modules.squashfs");
    assert_eq!(s.no_validate(), ["bsp/modules.squashfs", "a/root.squashfs"]);
    // a manifest no `dm:` reference uses protects nothing: its data device is re-hashed
    let unused = ok(&doc(&[
        run("a", r#""root-volume":"root.squashfs""#),
        format!(r#""a/_dm/root.squashfs.json":{good}"#),
    ]
    .join(",")));
    assert_eq!(unused.no_validate(), Vec::<String>::new());
    // no "not a container" for bsp/_dm, no "has no manifest"
    assert!(
        !s.warnings()
            .iter()
            .any(|w| w.contains("_dm") || w.contains("dm ")),
        "{:?}",
        s.warnings()
    );

    for (change, why) in [
        (
            ("dm-verity", "dm-crypt"),
            "type 'dm-crypt' is not dm-verity",
        ),
        (("\"2b95", "\"zz95"), "is not a hex digest"),
        (("5b3c\"", "5b3\""), "is not a hex digest"),
        (("6444", "64x4"), "salt '64x4' is not hex"),
    ] {
        let u = state(&good.replace(change.0, change.1)).unsupported();
        assert!(
            u.len() == 1
                && u[0].starts_with("a: volume 'root.squashfs': a/_dm/root.squashfs.json: ")
                && u[0].contains(why),
            "{change:?}: {u:?}"
        );
    }
    // veritysetup's "no salt"
    assert!(state(&good.replace("6444", "-")).unsupported().is_empty());
}

#[test]
fn other_container_fields() {
    let s = ok(&doc(&run(
        "a",
        r#""config":"lxc.container.conf","drivers":{"required":["wifi"],"manual":["x"]},
        "logs":[{"file":"/var/log/app.log","maxsize":1024,"truncate":true}],
        "exports":["/data"],"services":{"required":["svc"]},
        "network":{"pool":"internal","hostname":"h"},"dev-log":true,"automodfw":"no",
        "share":"NETWORK","remount":{"default":[{"/.*":"ro"}]},"conditions":{}"#,
    )));
    let c = s.container("a").unwrap();
    assert_eq!(c.drivers.required, ["wifi"]);
    assert_eq!(c.drivers.manual, ["x"]);
    assert_eq!(
        c.logs.as_deref(),
        Some(r#"[{"file":"/var/log/app.log","maxsize":1024,"truncate":true}]"#)
    );
    assert_eq!(c.exports, ["/data"]);
    assert_eq!(c.services.as_deref(), Some(r#"{"required":["svc"]}"#));
    let n = c.network.as_ref().unwrap();
    assert_eq!(n.mode, NetworkMode::Pool);
    assert_eq!(n.pool.as_deref(), Some("internal"));
    assert_eq!(n.hostname.as_deref(), Some("h"));
    assert_eq!(c.dev_log, Some(true));
    assert!(!c.automodfw);
    assert_eq!(c.share.as_deref(), Some("NETWORK"));
    assert_eq!(c.remount.as_deref(), Some(r#"{"default":[{"/.*":"ro"}]}"#));
    assert!(has_warning(
        &s,
        &[
            "a/run.json",
            "config \"a/lxc.container.conf\" is not in the state"
        ]
    ));
    assert!(has_warning(
        &s,
        &["a/run.json", "required driver alias \"wifi\""]
    ));
    assert!(has_warning(&s, &["a/run.json", "conditions"]));
}

#[test]
fn bsp_variants_and_modules_per_release() {
    let s = ok(&doc(
        r#""bsp/run.json":{"rpiab":"rpiboot.img.gz","modules":"dm:modules.squashfs","modules_6.1.0-pv":"mods-6.1.squashfs","addons":["a.cpio.xz4"]}"#,
    ));
    let b = s.bsp().unwrap();
    assert_eq!(b.boot_image(), BootImage::Rpiab);
    assert_eq!(b.modules_for("6.1.0-pv").unwrap().path, "mods-6.1.squashfs");
    let m = b.modules_for("5.10").unwrap();
    assert_eq!(
        (m.handler.as_deref(), m.path.as_str()),
        (Some("dm"), "modules.squashfs")
    );
    assert_eq!(b.addons, ["a.cpio.xz4"]);
    assert!(has_warning(
        &s,
        &["bsp/run.json", "\"bsp/rpiboot.img.gz\" is not in the state"]
    ));
    // no bsp/run.json at all is a valid (appengine / rev 0) state
    assert!(ok(&doc("")).bsp().is_none());
}

#[test]
fn legacy_spec_is_accepted_with_a_warning() {
    let s = ok(r##"{"#spec":"pantavisor-multi-platform@1"}"##);
    assert_eq!(s.spec(), Spec::MultiPlatform1);
    assert!(has_warning(&s, &["#spec", "legacy"]));
}

#[test]
fn raw_key_keeps_escapes() {
    let d = format!(r##"{{"#spec":"pantavisor-service-system@1", "a\/b" : "{SHA}"}}"##);
    let s = ok(&d);
    let e = &s.entries()[0];
    assert_eq!(e.key, "a/b");
    assert_eq!(s.raw_key(e), r"a\/b");
    assert_eq!(s.raw_value(e), format!("\"{SHA}\""));
    assert_eq!(s.objects().collect::<Vec<_>>(), [("a/b", SHA)]);
}

#[test]
fn disks_lenient_v3_and_alias_rules() {
    let dev = |disks: &str| {
        doc(&format!(
            r#""device.json":{{"groups":[{{"name":"g"}}],{disks}}}"#
        ))
    };
    let s = ok(&dev(
        r#""disks_v3":[{"name":"r","type":"raid"},{"name":"d","type":"dual","disks":["x","y"],"init_order":["primary"]}],
           "disks":[{"name":"x","type":"dm-crypt-caam","mode":"nxp","default":"yes","aliases":["old-x"]},{"name":"y","type":"volume-disk","format":"ext4","migrate_keyblob":"yes"}]"#,
    ));
    let names: Vec<&str> = s.disks().iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["x", "y", "d"]);
    assert!(s.disks()[0].default);
    assert!(s.disks()[1].migrate_keyblob);
    assert_eq!(s.disk("old-x").unwrap().name, "x");
    assert_eq!(s.disks()[2].disks, ["x", "y"]);
    assert!(has_warning(
        &s,
        &["device.json", "unknown disk type \"raid\" skipped"]
    ));

    refused(
        &dev(r#""disks":[{"name":"r","type":"raid"}]"#),
        &[
            "device.json",
            "\"disks[0].type\"",
            "unknown disk type \"raid\"",
        ],
    );
    refused(
        &dev(r#""disks_v2":[{"name":"s","type":"swap-disk"}]"#),
        &["device.json", "\"disks_v2[0].format\""],
    );
    refused(
        &dev(
            r#""disks":[{"name":"a","type":"dm-crypt-dcp","aliases":["b"]},{"name":"b","type":"dm-crypt-dcp"}]"#,
        ),
        &["device.json", "alias \"b\"", "name of a disk"],
    );
    refused(
        &dev(
            r#""disks":[{"name":"a","type":"dm-crypt-dcp","aliases":["z"]},{"name":"b","type":"dm-crypt-dcp","aliases":["z"]}]"#,
        ),
        &["device.json", "alias \"z\"", "used twice"],
    );
    refused(
        &dev(r#""disks":[{"name":"a","type":"dm-crypt-dcp"},{"name":"a","type":"dm-crypt-dcp"}]"#),
        &["device.json", "duplicate disk \"a\""],
    );
    refused(
        &dev(r#""disks_v3":[{"name":"d","type":"dual","disks":["x"]}]"#),
        &["exactly two disks"],
    );
}

// ---------------------------------------------------------------- validation errors

#[test]
fn error_spec_missing_or_wrong() {
    refused("{}", &["#spec", "missing"]);
    refused(
        r##"{"#spec":"pantavisor-service-system@2"}"##,
        &["#spec", "unsupported"],
    );
    refused(r##"{"#spec":1}"##, &["#spec", "must be the string"]);
}

#[test]
fn error_top_level_not_an_object() {
    for d in ["[]", "\"x\"", "1", "null"] {
        refused(d, &["state JSON", "must be a JSON object"]);
    }
}

#[test]
fn error_bad_keys() {
    let bad = [
        (r"a/../b", "'..'"),
        (r"../x", "'..'"),
        (r"a/./b", "'.'"),
        (r"/etc/passwd", "absolute"),
        (r"a//b", "empty path segment"),
        (r"a/", "empty path segment"),
        (r"", "empty path"),
        (r"a\u0000b", "control"),
        (r"a\nb", "control"),
        (r".pvr/json", "reserved"),
        (r".pv/progress", "reserved"),
    ];
    for (key, why) in bad {
        let d = doc(&format!(r#""{key}":"{SHA}""#));
        let errs = errors(&d);
        assert!(
            errs.iter()
                .any(|e| e.contains("invalid key") && e.contains(why)),
            "{key}: {errs:?}"
        );
    }
    let long = "k".repeat(300);
    refused(&doc(&format!(r#""{long}":"{SHA}""#)), &["longer than 255"]);
    // the message names the key; control characters are shown escaped
    let errs = errors(&doc(&format!(r#""bad\u0001key":"{SHA}""#)));
    assert!(errs[0].starts_with("bad\\u{1}key: invalid key"), "{errs:?}");
}

#[test]
fn error_object_value_not_a_sha() {
    for v in [
        "\"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789\"",
        "\"abc\"",
        &format!("\"{SHA}0\""),
        "{}",
        "[]",
        "1",
        "null",
    ] {
        refused(
            &doc(&format!(r#""app/root.squashfs":{v}"#)),
            &["app/root.squashfs:", "sha256"],
        );
    }
}

#[test]
fn error_json_value_neither_inline_nor_sha() {
    for v in ["\"not json\"", "12", "true", "null"] {
        refused(
            &doc(&format!(r#""app/conf.json":{v}"#)),
            &["app/conf.json:", "inline JSON"],
        );
    }
    // a sha is fine: pvr hashes .json files that do not parse
    let s = ok(&doc(&format!(r#""app/conf.json":"{SHA}""#)));
    assert_eq!(s.entries()[0].sha(), Some(SHA));
}

#[test]
fn error_wrong_field_types_name_key_and_field() {
    let cases = [
        (
            r#""volumes":"root.squashfs""#,
            r#"a/run.json: "volumes" must be an array of strings"#,
        ),
        (
            r#""volumes":[1]"#,
            r#"a/run.json: "volumes" must be an array of strings"#,
        ),
        (r#""config":7"#, r#"a/run.json: "config" must be a string"#),
        (
            r#""storage":[]"#,
            r#"a/run.json: "storage" must be an object"#,
        ),
        (
            r#""storage":{"v":"boot"}"#,
            r#"a/run.json: "storage.v" must be an object"#,
        ),
        (
            r#""storage":{"v":{"persistence":1}}"#,
            r#"a/run.json: "storage.v.persistence" must be a string"#,
        ),
        (
            r#""drivers":{"required":"wifi"}"#,
            r#"a/run.json: "drivers.required" must be an array of strings"#,
        ),
        (
            r#""dev-log":"yes""#,
            r#"a/run.json: "dev-log" must be true or false"#,
        ),
        (
            r#""logs":[1]"#,
            r#"a/run.json: "logs" must be an array of non-empty objects"#,
        ),
        (
            r#""exports":true"#,
            r#"a/run.json: "exports" must be an array of strings"#,
        ),
        (
            r#""exports":["/usr/bin",1]"#,
            r#"a/run.json: "exports" must be an array of strings"#,
        ),
        (
            r#""services":[]"#,
            r#"a/run.json: "services" must be an object"#,
        ),
        (
            r#""status_goal":"RUNNING""#,
            r#"a/run.json: "status_goal" unknown status goal "RUNNING""#,
        ),
        (
            r#""restart_policy":"always""#,
            r#"a/run.json: "restart_policy" unknown restart policy"#,
        ),
        (
            r#""root-volume":"../x.squashfs""#,
            r#"a/run.json: "root-volume" "../x.squashfs": '.' or '..'"#,
        ),
        (
            r#""config":"/etc/lxc.conf""#,
            r#"a/run.json: "config" "/etc/lxc.conf": absolute path"#,
        ),
    ];
    for (fields, want) in cases {
        let errs = errors(&doc(&run("a", fields)));
        assert!(
            errs.iter().any(|e| e.starts_with(want)),
            "{fields}: {errs:?}"
        );
    }
    refused(
        &doc(r#""device.json":{"groups":[{"name":"g","timeout":-1}]}"#),
        &[
            "device.json",
            "\"groups[0].timeout\"",
            "non-negative integer",
        ],
    );
    refused(
        &doc(r#""device.json":{"groups":[{"name":"g","status_goal":"UP"}]}"#),
        &["device.json", "\"groups[0].status_goal\""],
    );
    refused(
        &doc(r#""device.json":{"groups":{}}"#),
        &["device.json", "\"groups\" must be an array"],
    );
    refused(
        &doc(r#""device.json":{"groups":[]}"#),
        &["device.json", "\"groups\"", "at least one"],
    );
    refused(
        &doc(r#""device.json":{"groups":[{"description":"x"}]}"#),
        &["device.json", "\"groups[0].name\" missing"],
    );
    refused(
        &doc(r#""device.json":{"groups":[{"name":"g"},{"name":"g"}]}"#),
        &["device.json", "duplicate group \"g\""],
    );
    refused(
        &doc(r#""device.json":[]"#),
        &["device.json", "inline JSON object"],
    );
    refused(
        &doc(&format!(r#""device.json":"{SHA}""#)),
        &["device.json", "inline JSON object"],
    );
    refused(
        &doc(r#""bsp/drivers.json":{"all":{"wifi":"brcmfmac"}}"#),
        &["bsp/drivers.json: \"all.wifi\" must be an array of strings"],
    );
    refused(
        &doc(&format!(r#""a/run.json":"{SHA}""#)),
        &["a/run.json", "inline JSON object"],
    );
}

#[test]
fn error_unknown_group() {
    refused(
        &doc(&run("a", r#""group":"nope""#)),
        &["a/run.json", "\"group\"", "group \"nope\" does not exist"],
    );
    let dev = r#""device.json":{"groups":[{"name":"only"}]}"#;
    refused(
        &doc(&format!("{dev},{}", run("a", r#""runlevel":"app""#))),
        &["a/run.json", "\"runlevel\"", "group \"app\" does not exist"],
    );
}

#[test]
fn error_container_names() {
    // two run.json files claiming one name: the second directory does not match
    refused(
        &doc(r#""a/run.json":{"name":"b"},"b/run.json":{"name":"b"}"#),
        &["a/run.json", "\"name\"", "differs from its directory \"a\""],
    );
    refused(
        &doc(r#""a/run.json":{"type":"lxc"}"#),
        &["a/run.json", "\"name\" missing"],
    );
    let long = "c".repeat(65);
    refused(&doc(&run(&long, "")), &["\"name\" longer than 64 bytes"]);
    refused(
        &doc(r#""a/run.json":{"name":"a\u0007"}"#),
        &["a/run.json", "control character"],
    );
    refused(
        &doc(r#""a/run.json":{"name":"../a"}"#),
        &["a/run.json", "plain file name"],
    );
}

#[test]
fn error_bsp_without_boot_images() {
    refused(
        &doc(r#""bsp/run.json":{"linux":"kernel.img"}"#),
        &["bsp/run.json", "needs \"linux\" and \"initrd\""],
    );
    refused(
        &doc(r#""bsp/run.json":{"linux":"","initrd":"pv"}"#),
        &["bsp/run.json", "needs"],
    );
    refused(
        &doc(r#""bsp/run.json":{"fit":"../../boot.fit"}"#),
        &["bsp/run.json", "\"fit\""],
    );
    refused(
        &doc(r#""bsp/run.json":[]"#),
        &["bsp/run.json", "inline JSON object"],
    );
}

#[test]
fn error_dm_manifest_fields() {
    let d = doc(&[
        run("a", r#""root-volume":"dm:root.squashfs""#),
        r#""a/_dm/root.squashfs.json":{"type":"dm-verity","data_device":"root.squashfs"}"#
            .to_string(),
    ]
    .join(","));
    refused(&d, &["a/_dm/root.squashfs.json", "\"hash_device\" missing"]);
    refused(&d, &["a/_dm/root.squashfs.json", "\"root_hash\" missing"]);
}

#[test]
fn errors_are_collected_not_just_the_first() {
    let d = doc(&[
        r#""x//y":"abc""#.to_string(),
        run("a", r#""volumes":"v""#),
        run("b", r#""group":"missing""#),
    ]
    .join(","));
    let errs = errors(&d);
    assert!(errs.len() >= 3, "{errs:#?}");
    assert!(errs.iter().any(|e| e.starts_with("x//y:")));
    assert!(errs.iter().any(|e| e.starts_with("a/run.json:")));
    assert!(errs.iter().any(|e| e.starts_with("b/run.json:")));
    let shown = State::parse(d.as_bytes()).unwrap_err().to_string();
    assert_eq!(shown.lines().count(), errs.len());
}

#[test]
fn error_pathological_json() {
    let bomb = format!(
        r##"{{"#spec":"pantavisor-service-system@1","a.json":{}}}"##,
        "[".repeat(1_000_000)
    );
    refused(&bomb, &["state JSON:", "nesting deeper than 64"]);
    let mut big = doc(&format!(
        r#""pad.json":["{}"]"#,
        "x".repeat(17 * 1024 * 1024)
    ))
    .into_bytes();
    let e = State::parse(&big).unwrap_err().to_string();
    assert!(
        e.starts_with("state JSON:") && e.contains("exceeds the limit"),
        "{e}"
    );
    big.truncate(100);
    let mut bad = doc("").into_bytes();
    bad.insert(3, 0xc3);
    let e = State::parse(&bad).unwrap_err().to_string();
    assert!(e.contains("invalid UTF-8") && e.contains("byte 3"), "{e}");
    refused(
        r##"{"#spec":"pantavisor-service-system@1","#spec":"x"}"##,
        &["state JSON:", "duplicate key \"#spec\""],
    );
    refused(
        r##"{"#spec":"pantavisor-service-system@1",}"##,
        &["state JSON:"],
    );
}

#[test]
fn deeper_run_json_is_not_a_container() {
    let s = ok(&doc(
        r#""a/b/run.json":{"name":"b"},"_config/c/run.json":{"x":1}"#,
    ));
    assert!(s.containers().is_empty());
    assert!(has_warning(
        &s,
        &["a/b/run.json", "not read as a container"]
    ));
}

/// Mutations of every fixture must give Ok or Err, never a panic.
#[test]
fn mutated_fixtures_never_panic() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/states");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let tokens: [&[u8]; 12] = [
        b"\"",
        b"{}",
        b"[]",
        b"..",
        b"/",
        b"\"group\":\"x\"",
        b"null",
        b"1",
        b"\\u0000",
        b"run.json",
        b"_dm/",
        b"\"roles\":[1],",
    ];
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for _ in 0..200 {
            let mut m = bytes.clone();
            for _ in 0..(1 + next() % 3) {
                if m.is_empty() {
                    break;
                }
                let i = (next() as usize) % m.len();
                match next() % 3 {
                    0 => m[i] = next() as u8,
                    1 => {
                        let t = tokens[(next() % tokens.len() as u64) as usize];
                        m.splice(i..i, t.iter().copied());
                    }
                    _ => {
                        let end = (i + (next() % 16) as usize).min(m.len());
                        m.drain(i..end);
                    }
                }
            }
            if let Ok(s) = State::parse(&m) {
                assert_eq!(s.raw(), &m[..]);
                let _ = s.summary();
            }
        }
    }
}

/// A hostile state near the size limit parses in linear-ish time (no quadratic lookups).
#[test]
fn large_state_is_parsed_quickly() {
    let n = 3_000; // ~60 Ki values, under the JSON value limit (64 Ki)
    let mut m = Vec::new();
    let mut aliases = Vec::new();
    let mut required = Vec::new();
    for i in 0..n {
        m.push(run(&format!("c{i}"), r#""group":"g""#));
        m.push(format!(r#""_config/c{i}/f":"{SHA}""#));
        m.push(format!(r#""_config/x{i}/f":"{SHA}""#));
        aliases.push(format!(r#""a{i}":["m"]"#));
        required.push(format!(r#""a{i}""#));
    }
    m.push(format!(
        r#""bsp/drivers.json":{{"all":{{{}}}}}"#,
        aliases.join(",")
    ));
    m.push(run(
        "big",
        &format!(r#""drivers":{{"required":[{}]}}"#, required.join(",")),
    ));
    let groups: Vec<String> = (0..n).map(|i| format!(r#"{{"name":"h{i}"}}"#)).collect();
    m.push(format!(
        r#""device.json":{{"groups":[{},{{"name":"g"}}]}}"#,
        groups.join(",")
    ));
    let d = doc(&m.join(","));
    assert!(d.len() < 16 * 1024 * 1024);
    let t = std::time::Instant::now();
    let s = ok(&d);
    assert_eq!(s.containers().len(), n + 1);
    assert_eq!(s.container("big").unwrap().group, "g");
    assert!(t.elapsed().as_secs() < 20, "took {:?}", t.elapsed());
}

#[test]
fn reports_stay_on_one_line() {
    let d = doc(r#""device.json":{"groups":[{"name":"g"}],"disks":[
        {"name":"a","type":"dm-crypt-dcp","aliases":["x\ny"]},{"name":"b","type":"dm-crypt-dcp","aliases":["x\ny"]}],
        "volumes":{"v":{"persistence":"odd\nvalue"}}}"#);
    let e = State::parse(d.as_bytes()).unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.to_string().lines().count(), 1, "{e}");
    assert!(e.to_string().contains(r"x\ny"), "{e}");
    let ok_doc = doc(
        r#""device.json":{"groups":[{"name":"g"}],"volumes":{"v":{"persistence":"odd\nvalue"}}}"#,
    );
    let s = ok(&ok_doc);
    assert!(s.warnings().iter().all(|w| !w.contains('\n')));
    assert!(has_warning(&s, &[r"odd\\nvalue"]) || has_warning(&s, &[r"odd\nvalue"]));
}
