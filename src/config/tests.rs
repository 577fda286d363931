use super::*;

fn warned(c: &mut Config, needles: &[&str]) -> bool {
    let w = c.take_warnings();
    let hit = w.iter().any(|l| needles.iter().all(|n| l.contains(n)));
    if !hit {
        eprintln!("warnings were: {w:#?}");
    }
    hit
}

// Reference 7.2, code defaults (bracketed shipped values are not defaults).
const DEFAULTS_7_2: &[(Key, Option<&str>)] = &[
    (Key::PV_SYSTEM_INIT_MODE, Some("embedded")),
    (Key::PV_STORAGE_DEVICE, None),
    (Key::PV_STORAGE_FSTYPE, None),
    (Key::PV_STORAGE_MNTPOINT, None),
    (Key::PV_STORAGE_MNTTYPE, None),
    (Key::PV_STORAGE_WAIT, Some("5")),
    (Key::PV_STORAGE_LOGTEMPSIZE, None),
    (Key::PV_STORAGE_GC_RESERVED, Some("5")),
    (Key::PV_STORAGE_GC_THRESHOLD, Some("0")),
    (Key::PV_STORAGE_GC_THRESHOLD_DEFERTIME, Some("600")),
    (Key::PV_STORAGE_GC_KEEP_FACTORY, Some("0")),
    (Key::PV_STORAGE_PHCONFIG_VOL, Some("0")),
    (Key::PV_STORAGE_FIRMWARE_VOL, Some("0")),
    (Key::PV_BOOTLOADER_TYPE, Some("uboot")),
    (Key::PV_BOOTLOADER_MTD_ONLY, Some("0")),
    (Key::PV_BOOTLOADER_MTD_ENV, None),
    (Key::PV_BOOTLOADER_FITCONFIG, None),
    (Key::PV_BOOTLOADER_UBOOTAB_A_NAME, Some("fitA")),
    (Key::PV_BOOTLOADER_UBOOTAB_B_NAME, Some("fitB")),
    (Key::PV_BOOTLOADER_UBOOTAB_ENV_OFFSET, Some("0")),
    (Key::PV_BOOTLOADER_UBOOTAB_ENV_SIZE, Some("0")),
    (Key::PV_SYSTEM_RUNDIR, Some("/pv")),
    (Key::PV_SYSTEM_MEDIADIR, Some("/media")),
    (Key::PV_SYSTEM_CONFDIR, Some("/configs")),
    (Key::PV_SYSTEM_DISKSDIR, Some("/run/pantavisor/disks")),
    (Key::PV_SYSTEM_LIBDIR, Some("/lib")),
    (Key::PV_SYSTEM_ETCDIR, Some("/etc")),
    (Key::PV_SYSTEM_USRDIR, Some("/usr")),
    (Key::PV_DISK_VOLDIR, Some("/volumes")),
    (Key::PV_DISK_EXPORTSDIR, Some("/exports")),
    (Key::PV_DISK_WRITABLEDIR, Some("/writable")),
    (Key::PV_CACHE_USRMETADIR, Some("/storage/cache/meta")),
    (Key::PV_CACHE_DEVMETADIR, Some("/storage/cache/devmeta")),
    (Key::PV_LOG_LEVEL, Some("0")),
    (Key::PV_LOG_DIR, Some("/storage/logs/")),
    (Key::PV_LOG_SERVER_OUTPUTS, Some("filetree")),
    (Key::PV_LOG_DIR_MAXSIZE, Some("0")),
    (Key::PV_LOG_ROTATE_FACTOR, Some("5")),
    (Key::PV_LOG_HYSTERESIS_FACTOR, Some("4")),
    (Key::PV_LOG_CAPTURE, Some("1")),
    (Key::PV_LOG_CAPTURE_DMESG, Some("1")),
    (Key::PV_LOG_LOGGERS, Some("1")),
    (Key::PV_LOG_PUSH, Some("1")),
    (Key::PV_LOG_AUTO_DEVLOG, Some("1")),
    (Key::PV_LOG_TIMESTAMP, Some("relative")),
    (Key::PV_LOG_BUF_NITEMS, Some("128")),
    (Key::PV_LXC_LOG_LEVEL, Some("2")),
    (Key::PV_UPDATER_COMMIT_DELAY, Some("25")),
    (Key::PV_UPDATER_GOALS_TIMEOUT, Some("120")),
    (Key::PV_UPDATER_USE_TMP_OBJECTS, Some("0")),
    (Key::PV_REVISION_RETRIES, Some("10")),
    (Key::PV_CONTROL_REMOTE, Some("1")),
    (Key::PV_CONTROL_REMOTE_ALWAYS, Some("0")),
    (Key::PV_SECUREBOOT_MODE, Some("lenient")),
    (Key::PV_SECUREBOOT_CHECKSUM, Some("1")),
    (Key::PV_SECUREBOOT_HANDLERS, Some("1")),
    (Key::PV_SECUREBOOT_TRUSTSTORE, Some("ca-certificates")),
    (
        Key::PV_SECUREBOOT_OEM_TRUSTSTORE,
        Some("ca-oem-certificates"),
    ),
    (Key::PV_OEM_NAME, None),
    (Key::PV_POLICY, None),
    (Key::PV_NET_BRDEV, Some("lxcbr0")),
    (Key::PV_NET_BRADDRESS4, Some("10.0.3.1")),
    (Key::PV_NET_BRMASK4, Some("255.255.255.0")),
    (Key::PV_WDT_MODE, Some("shutdown")),
    (Key::PV_WDT_TIMEOUT, Some("15")),
    (Key::PV_DEBUG_SHELL, Some("1")),
    (Key::PV_DEBUG_SHELL_AUTOLOGIN, Some("0")),
    (Key::PV_DEBUG_SHELL_TIMEOUT, Some("60")),
    (Key::PV_DEBUG_SSH, Some("1")),
    (Key::PV_DEBUG_SSH_AUTHORIZED_KEYS, None),
    (Key::PV_LIBTHTTP_CERTSDIR, Some("/certs")),
    (Key::PV_POWER_MODE, Some("locks")),
    (Key::PV_XCONNECT_DBUS_SYSTEMBUS_ENABLED, Some("1")),
    (Key::PH_CREDS_HOST, Some("api.pantahub.com")),
    (Key::PH_CREDS_PORT, Some("443")),
    (Key::PH_CREDS_ID, None),
    (Key::PH_CREDS_PRN, None),
    (Key::PH_CREDS_SECRET, None),
    (Key::PH_CREDS_TYPE, Some("builtin")),
    (Key::PH_CREDS_PROXY_HOST, None),
    (Key::PH_CREDS_PROXY_PORT, Some("3218")),
    (Key::PH_CREDS_PROXY_NOPROXYCONNECT, Some("0")),
    // this build's own key (README "Configuration")
    (Key::PH_CREDS_PLAIN_HTTP, Some("0")),
    (Key::PH_FACTORY_AUTOTOK, None),
    (Key::PH_UPDATER_INTERVAL, Some("5")),
    (Key::PH_UPDATER_NETWORK_TIMEOUT, Some("120")),
    (Key::PH_UPDATER_TRANSFER_MAX_COUNT, Some("5")),
    (Key::PH_METADATA_DEVMETA_INTERVAL, Some("10")),
    (Key::PH_METADATA_USRMETA_INTERVAL, Some("5")),
    (Key::PH_ONLINE_REQUEST_THRESHOLD, Some("0")),
    (Key::PH_LIBEVENT_HTTP_TIMEOUT, Some("60")),
    (Key::PH_LIBEVENT_HTTP_RETRIES, Some("1")),
];

#[test]
fn raw_defaults_equal_reference_table() {
    let c = Config::new();
    for (k, want) in DEFAULTS_7_2 {
        assert_eq!(c.get(*k), *want, "{k:?}");
        assert_eq!(c.level_of(*k), Level::Default, "{k:?}");
    }
    let core = c
        .sysctls()
        .find(|s| s.key == "PV_SYSCTL_KERNEL_CORE_PATTERN");
    assert_eq!(core.map(|s| s.value), Some("|/lib/pv/pvcrash --skip"));
}

#[test]
fn typed_getter_defaults_equal_reference_table() {
    let c = Config::new();
    assert_eq!(c.init_mode(), InitMode::Embedded);
    assert_eq!(c.bootloader_type(), BootloaderType::Uboot);
    assert!(!c.bootloader_mtd_only());
    assert_eq!(c.bootloader_mtd_env(), "pv-env");
    assert_eq!(c.bootloader_fitconfig(), None);
    assert_eq!(c.storage_device(), None);
    assert_eq!(c.storage_fstype(), None);
    assert_eq!(c.storage_mntpoint(), "/storage");
    assert_eq!(c.storage_mnttype(), None);
    assert_eq!(c.storage_wait(), 5);
    assert_eq!(c.storage_logtempsize(), None);
    assert_eq!(c.storage_gc_reserved(), 5);
    assert_eq!(c.storage_gc_threshold(), 0);
    assert_eq!(c.storage_gc_threshold_defertime(), 600);
    assert!(!c.storage_gc_keep_factory());
    assert_eq!(c.system_rundir(), "/pv");
    assert_eq!(c.system_confdir(), "/configs");
    assert_eq!(c.system_mediadir(), "/media");
    assert_eq!(c.system_disksdir(), "/run/pantavisor/disks");
    assert_eq!(c.system_libdir(), "/lib");
    assert_eq!(c.system_etcdir(), "/etc");
    assert_eq!(c.system_usrdir(), "/usr");
    assert_eq!(c.etc_pantavisor_dir(), "/etc/pantavisor");
    assert_eq!(c.disk_voldir(), "/volumes");
    assert_eq!(c.disk_exportsdir(), "/exports");
    assert_eq!(c.disk_writabledir(), "/writable");
    assert_eq!(c.cache_usrmetadir(), "/storage/cache/meta");
    assert_eq!(c.cache_devmetadir(), "/storage/cache/devmeta");
    assert_eq!(c.dropbear_cache_dir(), "/storage/cache/dropbear");
    assert_eq!(c.log_dir(), "/storage/logs/");
    assert_eq!(c.log_level(), 0);
    assert_eq!(c.log_server_outputs(), 4 | 128);
    assert_eq!(c.log_dir_maxsize(), SizeLimit::Bytes(0));
    assert_eq!(c.log_timestamp(), LogTimestamp::Relative);
    assert!(c.log_capture() && c.log_push());
    assert_eq!(c.get_int(Key::PV_LOG_ROTATE_FACTOR), 5);
    assert_eq!(c.get_int(Key::PV_LOG_HYSTERESIS_FACTOR), 4);
    assert_eq!(c.get_int(Key::PV_LOG_BUF_NITEMS), 128);
    assert_eq!(c.get_int(Key::PV_LXC_LOG_LEVEL), 2);
    assert_eq!(c.updater_commit_delay(), 25);
    assert_eq!(c.updater_goals_timeout(), 120);
    assert!(!c.updater_use_tmp_objects());
    assert_eq!(c.revision_retries(), 10);
    assert!(c.control_remote());
    assert!(!c.control_remote_always());
    assert_eq!(c.secureboot_mode(), crate::pvs::Mode::Lenient);
    assert!(c.secureboot_checksum());
    assert!(c.secureboot_handlers());
    assert_eq!(
        c.get(Key::PV_SECUREBOOT_TRUSTSTORE),
        Some("ca-certificates")
    );
    assert_eq!(c.oem_name(), None);
    assert_eq!(c.policy(), None);
    assert_eq!(c.net_brdev(), "lxcbr0");
    assert_eq!(c.net_braddress4(), "10.0.3.1");
    assert_eq!(c.net_brmask4(), "255.255.255.0");
    assert_eq!(c.wdt_mode(), WdtMode::Shutdown);
    assert_eq!(c.wdt_timeout(), 15);
    assert!(c.debug_shell());
    assert!(!c.get_bool(Key::PV_DEBUG_SHELL_AUTOLOGIN));
    assert_eq!(c.get_int(Key::PV_DEBUG_SHELL_TIMEOUT), 60);
    assert!(c.debug_ssh());
    assert!(c.get_bool(Key::PV_XCONNECT_DBUS_SYSTEMBUS_ENABLED));
    assert_eq!(c.creds_host(), "api.pantahub.com");
    assert_eq!(c.creds_port(), 443);
    assert_eq!(c.creds_type(), "builtin");
    assert_eq!(
        (c.creds_id(), c.creds_prn(), c.creds_secret()),
        (None, None, None)
    );
    assert_eq!(c.factory_autotok(), None);
    assert_eq!(c.get_int(Key::PH_CREDS_PROXY_PORT), 3218);
    assert_eq!(c.hub_updater_interval(), 5);
    assert_eq!(c.hub_network_timeout(), 120);
    assert_eq!(c.get_int(Key::PH_UPDATER_TRANSFER_MAX_COUNT), 5);
    assert_eq!(c.get_int(Key::PH_METADATA_DEVMETA_INTERVAL), 10);
    assert_eq!(c.get_int(Key::PH_METADATA_USRMETA_INTERVAL), 5);
    assert_eq!(c.get_int(Key::PH_LIBEVENT_HTTP_TIMEOUT), 60);
    assert_eq!(c.get_int(Key::PH_LIBEVENT_HTTP_RETRIES), 1);
    assert_eq!(c.policy_path(), None);
    assert_eq!(c.oem_config_file(), None);
}

#[test]
fn table_is_consistent() {
    for (i, k) in Key::ALL.iter().enumerate() {
        let d = k.def();
        assert_eq!(*k as usize, i);
        assert_eq!(d.name, d.name.to_ascii_uppercase());
        assert!(
            d.name.starts_with("PV_") || d.name.starts_with("PH_"),
            "{}",
            d.name
        );
        // Defaults are stored normalised: what a set of the same text would store.
        if let Some(def) = d.default {
            assert_eq!(normalize(d.ty, true, def).as_deref(), Ok(def), "{}", d.name);
        }
        assert_eq!(
            d.allowed & 1,
            0,
            "{}: the default level is not settable",
            d.name
        );
        assert_ne!(d.allowed, 0, "{}", d.name);
        let dup = Key::ALL
            .iter()
            .filter(|o| o.def().name.eq_ignore_ascii_case(d.name))
            .count();
        assert_eq!(dup, 1, "{}", d.name);
    }
    for (a, k) in keys::ALIASES {
        assert_eq!(
            keys::ALIASES
                .iter()
                .filter(|(b, _)| b.eq_ignore_ascii_case(a))
                .count(),
            1,
            "{a}"
        );
        assert!(
            !Key::ALL
                .iter()
                .any(|o| o.def().name.eq_ignore_ascii_case(a)),
            "{a}"
        );
        assert!(
            matches!(resolve(a), Some((Target::Key(t), true)) if t == *k),
            "{a}"
        );
    }
}

/// For every number-typed key: set from each allowed level, lowest first (each set wins), then
/// highest first into a fresh config (the top one stays), then unset from the top (each lower
/// value shows through again).
#[test]
fn precedence_across_levels_for_every_numeric_key() {
    let mut checked = std::collections::BTreeSet::new();
    for &k in Key::ALL {
        if !matches!(k.def().ty, Type::Int | Type::Duration | Type::Percent) {
            continue;
        }
        let levels: Vec<Level> = Level::ALL
            .iter()
            .copied()
            .filter(|l| allowed(k.def().allowed, *l) && *l != Level::Default)
            .collect();
        let val = |l: Level| (l as u64 + 40).to_string();
        let mut up = Config::new();
        for &l in &levels {
            up.set_key(l, k, &val(l)).unwrap();
            assert_eq!(up.get(k), Some(val(l).as_str()), "{k:?} at {l:?}");
            assert_eq!(up.level_of(k), l);
            checked.insert(l);
        }
        let mut down = Config::new();
        for &l in levels.iter().rev() {
            down.set_key(l, k, &val(l)).unwrap();
        }
        let top = *levels.last().unwrap();
        assert_eq!(down.get(k), Some(val(top).as_str()), "{k:?}");
        for w in levels.windows(2).rev() {
            assert!(down.unset(w[1], k.def().name));
            assert_eq!(
                down.get(k),
                Some(val(w[0]).as_str()),
                "{k:?} after unset {:?}",
                w[1]
            );
        }
        assert!(down.take_warnings().is_empty());
    }
    // Every level except command (bool keys only, next test) is exercised above.
    for l in Level::ALL {
        assert!(
            checked.contains(&l) || matches!(l, Level::Default | Level::Command),
            "{l:?}"
        );
    }
}

#[test]
fn all_ten_levels_in_order_with_bool_and_ph_keys() {
    let mut c = Config::new();
    let k = Key::PV_DEBUG_SSH;
    let steps = [
        (Level::Args, "0"),
        (Level::PvConfFile, "1"),
        (Level::Policy, "0"),
        (Level::Oem, "1"),
        (Level::Cmdline, "0"),
        (Level::Env, "1"),
        (Level::UserMeta, "0"),
        (Level::Command, "1"),
    ];
    for (l, v) in steps {
        c.set_key(l, k, v).unwrap();
        assert_eq!((c.level_of(k), c.get(k)), (l, Some(v)));
    }
    // Lower levels set later change nothing visible.
    c.set_key(Level::Env, k, "0").unwrap();
    c.set_key(Level::PvConfFile, k, "0").unwrap();
    assert!(c.debug_ssh());
    assert_eq!(c.level_of(k), Level::Command);
    // DISABLE/ENABLE_SSH then reboot-less restore by dropping the command value.
    assert!(c.unset(Level::Command, "PV_DEBUG_SSH"));
    assert_eq!((c.level_of(k), c.debug_ssh()), (Level::UserMeta, false));
    // The ph conf file level (PH keys only).
    let p = Key::PH_CREDS_HOST;
    c.set_key(Level::PhConfFile, p, "ph.example").unwrap();
    assert_eq!(
        (c.level_of(p), c.creds_host()),
        (Level::PhConfFile, "ph.example")
    );
    c.set_key(Level::Oem, p, "oem.example").unwrap();
    c.set_key(Level::PhConfFile, p, "later.example").unwrap();
    assert_eq!(c.creds_host(), "oem.example");
}

#[test]
fn lower_level_applied_later_does_not_override() {
    let mut c = Config::new();
    c.apply_env([("PV_LOG_LEVEL".to_string(), "5".to_string())]);
    c.apply_text(Level::PvConfFile, "pantavisor.config", "PV_LOG_LEVEL=1\n");
    c.apply_text(Level::Oem, "oem/default.config", "PV_LOG_LEVEL=2\n");
    assert_eq!(
        (c.log_level(), c.level_of(Key::PV_LOG_LEVEL)),
        (5, Level::Env)
    );
    assert!(c.take_warnings().is_empty());
}

#[test]
fn user_meta_delete_restores_previous_value() {
    let mut c = Config::new();
    c.apply_text(
        Level::PvConfFile,
        "pantavisor.config",
        "PV_UPDATER_COMMIT_DELAY=60",
    );
    c.set(Level::UserMeta, "PV_UPDATER_COMMIT_DELAY", "3")
        .unwrap();
    assert_eq!(c.updater_commit_delay(), 3);
    assert!(c.unset(Level::UserMeta, "pv_updater_commit_delay"));
    assert_eq!(c.updater_commit_delay(), 60);
    assert_eq!(c.level_of(Key::PV_UPDATER_COMMIT_DELAY), Level::PvConfFile);
    assert!(!c.unset(Level::UserMeta, "PV_UPDATER_COMMIT_DELAY"));
    // A user-meta key that is not configuration: nothing, and no warning.
    assert!(!c.unset(Level::UserMeta, "pvr-sdk.authorized_keys"));
    assert!(!c.unset(Level::Default, "PV_LOG_LEVEL"));
    assert!(c.take_warnings().is_empty());
}

#[test]
fn disallowed_level_is_ignored_with_warning() {
    let mut c = Config::new();
    let e = c
        .set(Level::UserMeta, "PV_STORAGE_DEVICE", "/dev/evil")
        .unwrap_err();
    assert!(matches!(
        e,
        ConfigWarning::NotAllowed {
            level: "metadata",
            ..
        }
    ));
    assert_eq!(c.storage_device(), None);
    assert!(warned(&mut c, &["PV_STORAGE_DEVICE", "metadata"]));

    c.apply_text(
        Level::PvConfFile,
        "pantavisor.config",
        "PH_CREDS_HOST=x.example",
    );
    assert_eq!(c.creds_host(), "api.pantahub.com");
    assert!(warned(
        &mut c,
        &["PH_CREDS_HOST", "pv conf file", "pantavisor.config line 1"]
    ));

    assert!(c.set(Level::Command, "PV_LOG_LEVEL", "5").is_err());
    assert!(warned(&mut c, &["PV_LOG_LEVEL", "'command'"]));
    assert!(c.set(Level::Policy, "PV_POLICY", "other").is_err());
    assert!(c.set(Level::Default, "PV_LOG_LEVEL", "5").is_err());
    assert!(c.set(Level::Oem, "PV_SYSTEM_RUNDIR", "/x").is_err());
    assert_eq!(c.log_level(), 0);
    // Args may set anything (upstream sets these directly from the invocation).
    c.set(Level::Args, "PV_SYSTEM_INIT_MODE", "standalone")
        .unwrap();
    assert_eq!(c.init_mode(), InitMode::Standalone);
}

#[test]
fn legacy_aliases_are_translated_with_warning() {
    let mut c = Config::new();
    let text = "log.level=4\nupdater.commit.delay=7\ncreds.host=h.example\n\
                storage.device=LABEL=root\nsystem.init.mode=standalone\nbootloader.type=grub\n\
                control.remote=0\nfactory.autotok=tok\nmeta.cache.dir=/m\n";
    c.apply_text(Level::PvConfFile, "pantavisor.config", text);
    assert_eq!(c.log_level(), 4);
    assert_eq!(c.updater_commit_delay(), 7);
    assert_eq!(c.storage_device(), Some("LABEL=root"));
    assert_eq!(c.init_mode(), InitMode::Standalone);
    assert_eq!(c.bootloader_type(), BootloaderType::Grub);
    assert!(!c.control_remote());
    assert_eq!(c.get(Key::PV_CACHE_USRMETADIR), Some("/m"));
    // PH keys are not allowed in pantavisor.config, alias or not.
    assert_eq!(c.creds_host(), "api.pantahub.com");
    assert_eq!(c.factory_autotok(), None);
    let w = c.take_warnings();
    assert!(w
        .iter()
        .any(|l| l.contains("translating legacy config key 'log.level' as 'PV_LOG_LEVEL'")));
    assert!(w
        .iter()
        .any(|l| l.contains("'updater.commit.delay' as 'PV_UPDATER_COMMIT_DELAY'")));
    assert!(w
        .iter()
        .any(|l| l.contains("PH_CREDS_HOST") && l.contains("not allowed")));

    c.apply_text(
        Level::PhConfFile,
        "pantahub.config",
        "creds.host=h.example\nfactory.autotok=tok",
    );
    assert_eq!(c.creds_host(), "h.example");
    assert_eq!(c.factory_autotok(), Some("tok"));
    assert!(warned(
        &mut c,
        &["'creds.host' as 'PH_CREDS_HOST'", "pantahub.config line 1"]
    ));
}

#[test]
fn keys_and_aliases_are_case_insensitive() {
    let mut c = Config::new();
    c.apply_text(
        Level::PvConfFile,
        "f",
        "pv_log_level=3\nSecureBoot.Mode=STRICT\nPv_Wdt_Mode=Always",
    );
    assert_eq!(c.log_level(), 3);
    assert_eq!(c.secureboot_mode(), crate::pvs::Mode::Strict);
    assert_eq!(c.wdt_mode(), WdtMode::Always);
    assert_eq!(c.get(Key::PV_WDT_MODE), Some("always"));
    c.set(Level::UserMeta, "pv_debug_ssh", "off").unwrap();
    assert!(!c.debug_ssh());
    assert!(Config::knows("ph_creds_host") && Config::knows("LOG.LEVEL"));
    assert!(Config::knows("pv_sysctl_vm_swappiness") && !Config::knows("pvr-sdk.key"));
}

#[test]
fn cmdline_words_values_and_levels() {
    let mut c = Config::new();
    let line = "console=ttyS0,115200 root=/dev/ram0 pv_storage.device=LABEL=pvroot pv_log_level=4 \
                ph_creds_host=h.example ph_metadata.devmeta.interval=15 rootwait quiet \
                pv_rev=5 pv_try=6 PV_LOG_PUSH=0 pv_system_init_mode=standalone pv_nope=1 \
                pv_storage_fstype=ext4 pv_verityoff=1\n";
    c.apply_cmdline(line);
    assert_eq!(c.storage_device(), Some("LABEL=pvroot"));
    assert_eq!(c.storage_fstype(), Some("ext4"));
    assert_eq!(c.log_level(), 4);
    assert!(!c.log_push());
    assert_eq!(c.init_mode(), InitMode::Standalone);
    assert_eq!(c.creds_host(), "h.example");
    assert_eq!(c.get_int(Key::PH_METADATA_DEVMETA_INTERVAL), 15);
    let level = |name: &str| c.entries().find(|e| e.0 == name).map(|e| e.2);
    assert_eq!(level("PV_LOG_LEVEL"), Some("pv cmdline"));
    assert_eq!(level("PH_CREDS_HOST"), Some("ph cmdline"));
    assert_eq!(level("PV_STORAGE_DEVICE"), Some("pv cmdline"));
    let w = c.take_warnings();
    assert!(w
        .iter()
        .any(|l| l.contains("unknown config key 'pv_nope'") && l.contains("pv cmdline")));
    assert!(w
        .iter()
        .any(|l| l.contains("'pv_storage.device' as 'PV_STORAGE_DEVICE'")));
    assert!(
        !w.iter()
            .any(|l| l.contains("pv_rev") || l.contains("pv_try") || l.contains("verityoff")),
        "{w:?}"
    );
    assert!(
        !w.iter()
            .any(|l| l.contains("console") || l.contains("rootwait")),
        "{w:?}"
    );
    assert_eq!(w.len(), 3, "{w:?}");
}

#[test]
fn cmdline_quotes() {
    let mut c = Config::new();
    c.apply_cmdline(
        r#"quiet pv_debug_ssh_authorized_keys="ssh-ed25519 AAAA me@host" pv_log_level="2""#,
    );
    assert_eq!(
        c.get(Key::PV_DEBUG_SSH_AUTHORIZED_KEYS),
        Some("ssh-ed25519 AAAA me@host")
    );
    assert_eq!(c.log_level(), 2);
    // A word without '=' is a key with an empty value; an unterminated quote runs to the end.
    c.apply_cmdline("pv_debug_shell pv_storage_device=\"LABEL=a b");
    assert!(c.debug_shell());
    assert_eq!(c.storage_device(), Some("LABEL=a b"));
    assert!(warned(&mut c, &["bad value ''", "PV_DEBUG_SHELL"]));
    c.apply_cmdline("");
    c.apply_cmdline("\"\" = == pv_ ph_= \"pv_log_level=5\"");
    assert_eq!(c.log_level(), 5);
}

#[test]
fn environment_level() {
    let mut c = Config::new();
    let env = [
        ("HOME", "/root"),
        ("PATH", "/bin"),
        ("PV_LOG_LEVEL", "3"),
        ("ph_creds_port", "8443"),
        ("PH_UPDATER_INTERVAL", "1min"),
        ("PV_DEBUG_SSH_PUBKEY", "x"),
        ("pv_rev", "3"),
        ("PV_SYSCTL_VM_SWAPPINESS", "10"),
        ("PVTEST_HOST", "1.2.3.4"),
    ];
    c.apply_env(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    assert_eq!(c.log_level(), 3);
    assert_eq!(c.creds_port(), 8443);
    assert_eq!(c.hub_updater_interval(), 60);
    assert_eq!(c.level_of(Key::PH_CREDS_PORT), Level::Env);
    let sysctl = c
        .sysctls()
        .find(|s| s.key == "PV_SYSCTL_VM_SWAPPINESS")
        .unwrap();
    assert_eq!(
        (sysctl.value, sysctl.level, sysctl.path),
        ("10", "env", None)
    );
    let w = c.take_warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("PV_DEBUG_SSH_PUBKEY") && w[0].contains("env"));
}

#[test]
fn config_file_syntax() {
    let mut c = Config::new();
    let text = "# pantavisor.config\n\
                \n\
                   PV_LOG_LEVEL = 4   \r\n\
                PV_DEBUG_SSH_AUTHORIZED_KEYS=\"ssh-rsa AAA= me\"\n\
                # PV_LOG_LEVEL=5\n\
                this line is wrong\n\
                PV_STORAGE_DEVICE=UUID=1234=5\n\
                =novalue\n\
                PV_SYSTEM_CONFDIR=\"\n\
                \t\n\
                PV_POLICY=\n";
    c.apply_text(Level::PvConfFile, "/etc/pantavisor.config", text);
    assert_eq!(c.log_level(), 4);
    assert_eq!(
        c.get(Key::PV_DEBUG_SSH_AUTHORIZED_KEYS),
        Some("ssh-rsa AAA= me")
    );
    assert_eq!(c.storage_device(), Some("UUID=1234=5"));
    // A lone quote is kept as the value: only a pair is stripped.
    assert_eq!(c.system_confdir(), "\"");
    assert_eq!((c.policy(), c.get(Key::PV_POLICY)), (None, Some("")));
    let w = c.take_warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].contains("/etc/pantavisor.config line 6") && w[0].contains("not a KEY=value line")
    );
    assert!(w[1].contains("/etc/pantavisor.config line 8"));
}

#[test]
fn unknown_keys_are_named_in_warnings() {
    let mut c = Config::new();
    c.apply_text(
        Level::PvConfFile,
        "pantavisor.config",
        "PV_NO_SUCH_KEY=1\nwdt.enabled=1",
    );
    let w = c.take_warnings();
    assert!(w[0].contains("unknown config key 'PV_NO_SUCH_KEY'") && w[0].contains("line 1"));
    assert!(w[1].contains("unknown config key 'wdt.enabled'") && w[1].contains("line 2"));
    let e = c.set(Level::UserMeta, "my.app.setting", "1").unwrap_err();
    assert_eq!(
        e,
        ConfigWarning::UnknownKey {
            key: "my.app.setting".into(),
            source: "metadata".into()
        }
    );
    // Hostile names are clipped and escaped in the message.
    let long = format!("PV_{}\n\u{1b}", "A".repeat(500));
    let _ = c.set(Level::Env, &long, "1");
    let w = c.take_warnings();
    assert!(
        w[1].len() < 200 && w[1].contains("...") && !w[1].contains('\u{1b}'),
        "{w:?}"
    );
}

#[test]
fn bad_typed_values_keep_the_previous_value() {
    let mut c = Config::new();
    let good =
        "PV_LOG_LEVEL=2\nPV_DEBUG_SHELL=0\nPV_BOOTLOADER_TYPE=grub\nPV_STORAGE_GC_RESERVED=7\n\
                PV_SYSTEM_RUNDIR=/run/pantavisor/pv\nPV_LOG_SERVER_OUTPUTS=stdout\nPV_POLICY=prod";
    c.apply_text(Level::PvConfFile, "pantavisor.config", good);
    assert!(c.take_warnings().is_empty());
    let bad = [
        ("PV_LOG_LEVEL", "abc", "expected a number"),
        ("PV_LOG_LEVEL", "-1", "expected a number"),
        ("PV_LOG_LEVEL", "99999999999", "expected a number"),
        ("PV_DEBUG_SHELL", "maybe", "0/1/true/false/yes/no/on/off"),
        (
            "PV_BOOTLOADER_TYPE",
            "lilo",
            "one of uboot, uboot-pvk, grub;",
        ),
        ("PV_STORAGE_GC_RESERVED", "101", "percentage"),
        ("PV_SYSTEM_RUNDIR", "", "non-empty"),
        ("PV_LOG_SERVER_OUTPUTS", "filetree,syslog", "comma list"),
        ("PV_LOG_SERVER_OUTPUTS", " , ", "comma list"),
        ("PV_POLICY", "../../tmp/x", "without '/'"),
        ("PV_POLICY", "..", "without '/'"),
    ];
    for (k, v, why) in bad {
        c.apply_env([(k.to_string(), v.to_string())]);
        assert!(
            warned(&mut c, &[k, &format!("bad value '{v}'"), "from env", why]),
            "{k}={v}"
        );
    }
    let e = c.set(Level::Env, "PH_CREDS_PORT", "0").unwrap_err();
    assert!(matches!(e, ConfigWarning::BadValue { ref key, .. } if key == "PH_CREDS_PORT"));
    assert_eq!(c.log_level(), 2);
    assert!(!c.debug_shell());
    assert_eq!(c.bootloader_type(), BootloaderType::Grub);
    assert_eq!(c.storage_gc_reserved(), 7);
    assert_eq!(c.system_rundir(), "/run/pantavisor/pv");
    assert_eq!(c.log_server_outputs(), 8 | 128);
    assert_eq!(c.policy(), Some("prod"));
    assert_eq!(c.level_of(Key::PV_LOG_LEVEL), Level::PvConfFile);
}

#[test]
fn booleans_accept_all_spellings() {
    for (v, want) in [
        ("1", true),
        ("true", true),
        ("YES", true),
        ("On", true),
        ("0", false),
        ("false", false),
        ("no", false),
        (" off ", false),
    ] {
        let mut c = Config::new();
        c.set(Level::Env, "PV_CONTROL_REMOTE", "1").unwrap();
        c.set(Level::UserMeta, "PV_DEBUG_SSH", v).unwrap();
        c.set(Level::PvConfFile, "PV_CONTROL_REMOTE_ALWAYS", v)
            .unwrap();
        assert_eq!(
            (c.debug_ssh(), c.control_remote_always()),
            (want, want),
            "{v}"
        );
        assert_eq!(c.get(Key::PV_DEBUG_SSH), Some(if want { "1" } else { "0" }));
    }
    assert_eq!(parse_bool("2"), None);
    assert_eq!(parse_bool(""), None);
}

#[test]
fn size_parsing() {
    assert_eq!(parse_size("0"), Some(0));
    assert_eq!(parse_size("16777216"), Some(16 << 20));
    assert_eq!(parse_size("512B"), Some(512));
    assert_eq!(parse_size("1k"), Some(1024));
    assert_eq!(parse_size("2KB"), Some(2048));
    assert_eq!(parse_size("16M"), Some(16 << 20));
    assert_eq!(parse_size("5 GB"), Some(5 << 30));
    assert_eq!(parse_size("1tb"), Some(1 << 40));
    assert_eq!(parse_size("16777215T"), Some(16_777_215 << 40));
    assert_eq!(parse_size("16777216T"), None); // 2^64: overflow
    assert_eq!(parse_size("99999999999999999999999T"), None);
    assert_eq!(parse_size("99999999999999999999999"), None);
    for bad in ["", "M", "-1", "1.5M", "1MiB", "10%", "1 2", "0x10"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
    let mut c = Config::new();
    c.set(Level::UserMeta, "PV_LOG_DIR_MAXSIZE", "10%").unwrap();
    assert_eq!(c.log_dir_maxsize(), SizeLimit::Percent(10));
    c.set(Level::UserMeta, "PV_LOG_DIR_MAXSIZE", "32MB")
        .unwrap();
    assert_eq!(c.log_dir_maxsize(), SizeLimit::Bytes(32 << 20));
    assert_eq!(c.get(Key::PV_LOG_DIR_MAXSIZE), Some("33554432"));
    for bad in ["101%", "%", "x%", "99999999999999999999999T", "-5"] {
        assert!(
            c.set(Level::UserMeta, "PV_LOG_DIR_MAXSIZE", bad).is_err(),
            "{bad}"
        );
    }
    assert_eq!(c.log_dir_maxsize(), SizeLimit::Bytes(32 << 20));
    c.set(Level::PvConfFile, "PV_BOOTLOADER_UBOOTAB_ENV_SIZE", "4M")
        .unwrap();
    assert_eq!(c.get_int(Key::PV_BOOTLOADER_UBOOTAB_ENV_SIZE), 4 << 20);
}

#[test]
fn duration_parsing() {
    assert_eq!(parse_duration("45"), Some(45));
    assert_eq!(parse_duration("30s"), Some(30));
    assert_eq!(parse_duration("30sec"), Some(30));
    assert_eq!(parse_duration("10min"), Some(600));
    assert_eq!(parse_duration("2m"), Some(120));
    assert_eq!(parse_duration("1h"), Some(3600));
    assert_eq!(parse_duration("1d"), Some(86400));
    assert_eq!(parse_duration(" 3 MIN "), Some(180));
    assert_eq!(parse_duration("213503982334602d"), None); // overflows u64 seconds
    assert_eq!(parse_duration("99999999999999999999999d"), None);
    for bad in ["", "s", "1y", "-1", "1.5h", "1h30m"] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
    let mut c = Config::new();
    c.set(Level::UserMeta, "PV_UPDATER_GOALS_TIMEOUT", "2min")
        .unwrap();
    assert_eq!(
        (
            c.updater_goals_timeout(),
            c.get(Key::PV_UPDATER_GOALS_TIMEOUT)
        ),
        (120, Some("120"))
    );
    // Larger than u32::MAX seconds: refused, so timers never overflow.
    assert!(c
        .set(Level::UserMeta, "PV_UPDATER_COMMIT_DELAY", "4294967296")
        .is_err());
    assert!(c
        .set(Level::UserMeta, "PV_UPDATER_COMMIT_DELAY", "4294967295")
        .is_ok());
}

#[test]
fn sysctl_keys_are_dynamic_and_applied_not_listed() {
    let mut c = Config::new();
    let text = "PV_SYSCTL_NET_IPV4_IP_FORWARD=1\nsysctl.vm.swappiness=10\n\
                PV_SYSCTL_KERNEL_CORE_PATTERN=core\npv_sysctl_fs_file-max=100000";
    c.apply_text(Level::PvConfFile, "pantavisor.config", text);
    c.apply_cmdline("pv_sysctl_kernel_panic=5 pv_sysctl.kernel.printk=3");
    let list: Vec<Sysctl> = c.sysctls().collect();
    let find = |k: &str| list.iter().find(|s| s.key == k).copied();
    assert_eq!(
        find("PV_SYSCTL_NET_IPV4_IP_FORWARD").map(|s| (s.value, s.path)),
        Some(("1", None))
    );
    let swap = find("PV_SYSCTL_VM_SWAPPINESS").unwrap();
    assert_eq!(
        (swap.value, swap.path, swap.level),
        ("10", Some("vm/swappiness"), "pv conf file")
    );
    assert_eq!(
        find("PV_SYSCTL_KERNEL_CORE_PATTERN").map(|s| s.value),
        Some("core")
    );
    assert_eq!(
        find("PV_SYSCTL_FS_FILE-MAX").map(|s| s.value),
        Some("100000")
    );
    assert_eq!(
        find("PV_SYSCTL_KERNEL_PANIC").map(|s| s.level),
        Some("pv cmdline")
    );
    assert_eq!(
        find("PV_SYSCTL_KERNEL_PRINTK").and_then(|s| s.path),
        Some("kernel/printk")
    );
    assert_eq!(
        find("PV_SYSCTL_VM_SWAPPINESS").map(|s| (s.value, s.level)),
        Some(("10", "pv conf file"))
    );
    // applied, not listed in /config2 (as upstream)
    assert!(!c.entries().any(|e| e.0.starts_with("PV_SYSCTL_")));
    assert!(warned(
        &mut c,
        &["'sysctl.vm.swappiness' as 'PV_SYSCTL_VM_SWAPPINESS'"]
    ));
    // Not at runtime; and nothing that could leave /proc/sys.
    assert!(c
        .set(Level::UserMeta, "PV_SYSCTL_VM_SWAPPINESS", "0")
        .is_err());
    for evil in [
        "PV_SYSCTL_../../etc/passwd",
        "sysctl.../x",
        "sysctl.",
        "PV_SYSCTL_",
        "sysctl.a/b",
    ] {
        assert!(
            matches!(
                c.set(Level::Env, evil, "1"),
                Err(ConfigWarning::UnknownKey { .. })
            ),
            "{evil}"
        );
    }
    // Unset: the default core pattern shows again; a sysctl nobody sets any more disappears.
    assert!(c.unset(Level::PvConfFile, "PV_SYSCTL_KERNEL_CORE_PATTERN"));
    let core = c
        .sysctls()
        .find(|s| s.key == "PV_SYSCTL_KERNEL_CORE_PATTERN")
        .unwrap();
    assert_eq!(
        (core.value, core.level),
        ("|/lib/pv/pvcrash --skip", "default")
    );
    assert!(c.unset(Level::PvConfFile, "sysctl.vm.swappiness"));
    assert!(!c.sysctls().any(|s| s.key == "PV_SYSCTL_VM_SWAPPINESS"));
}

#[test]
fn sysctl_count_is_bounded() {
    let mut c = Config::new();
    let text: String = (0..200).map(|i| format!("PV_SYSCTL_K{i}=1\n")).collect();
    c.apply_text(Level::PvConfFile, "f", &text);
    assert_eq!(c.sysctls().count(), MAX_SYSCTLS);
    assert!(warned(&mut c, &["too many sysctl keys"]));
    // Existing ones can still change.
    c.set(Level::Env, "PV_SYSCTL_K3", "2").unwrap();
}

#[test]
fn entries_for_config2() {
    let mut c = Config::new();
    c.apply_text(Level::PvConfFile, "pantavisor.config", "PV_LOG_LEVEL=4");
    c.apply_text(Level::PhConfFile, "pantahub.config", "PH_CREDS_ID=abc");
    c.apply_text(Level::Policy, "prod.config", "PV_DEBUG_SHELL=0");
    c.apply_text(Level::Oem, "oem", "PV_NET_BRDEV=br9");
    c.apply_env([("PV_WDT_TIMEOUT".into(), "30".into())]);
    c.set(Level::UserMeta, "PV_REVISION_RETRIES", "3").unwrap();
    c.set(Level::Command, "PV_DEBUG_SSH", "0").unwrap();
    c.set(Level::Args, "PV_SYSTEM_INIT_MODE", "appengine")
        .unwrap();
    c.apply_cmdline("ph_creds_type=ext-tpm pv_secureboot_mode=audit");
    let all: Vec<_> = c.entries().collect();
    assert_eq!(all.len(), Key::ALL.len());
    let get = |k: &str| all.iter().find(|e| e.0 == k).map(|e| (e.1, e.2));
    assert_eq!(get("PV_LOG_LEVEL"), Some((Some("4"), "pv conf file")));
    assert_eq!(get("PH_CREDS_ID"), Some((Some("abc"), "ph conf file")));
    assert_eq!(get("PV_DEBUG_SHELL"), Some((Some("0"), "policy")));
    assert_eq!(get("PV_NET_BRDEV"), Some((Some("br9"), "oem config")));
    assert_eq!(get("PV_WDT_TIMEOUT"), Some((Some("30"), "env")));
    assert_eq!(get("PV_REVISION_RETRIES"), Some((Some("3"), "metadata")));
    assert_eq!(get("PV_DEBUG_SSH"), Some((Some("0"), "command")));
    assert_eq!(
        get("PV_SYSTEM_INIT_MODE"),
        Some((Some("appengine"), "args"))
    );
    assert_eq!(get("PH_CREDS_TYPE"), Some((Some("ext-tpm"), "ph cmdline")));
    assert_eq!(
        get("PV_SECUREBOOT_MODE"),
        Some((Some("audit"), "pv cmdline"))
    );
    assert_eq!(get("PV_STORAGE_DEVICE"), Some((None, "default")));
    assert_eq!(get("PV_CONTROL_REMOTE"), Some((Some("1"), "default")));
    assert!(c.take_warnings().is_empty());
}

#[test]
fn alias_view_for_config() {
    let mut c = Config::new();
    c.set(Level::Env, "PV_LOG_LEVEL", "3").unwrap();
    c.set(Level::Env, "PV_BOOTLOADER_TYPE", "grub").unwrap();
    let view: Vec<_> = c.alias_entries().collect();
    let get = |a: &str| view.iter().find(|e| e.0 == a).map(|e| e.1);
    assert_eq!(get("log.level"), Some(AliasValue::Number(3)));
    assert_eq!(get("bootloader.type"), Some(AliasValue::Number(2)));
    assert_eq!(get("system.init.mode"), Some(AliasValue::Number(0)));
    assert_eq!(get("secureboot.mode"), Some(AliasValue::Number(2)));
    assert_eq!(get("control.remote"), Some(AliasValue::Bool(true)));
    assert_eq!(
        get("creds.host"),
        Some(AliasValue::Str(Some("api.pantahub.com")))
    );
    assert_eq!(get("creds.id"), Some(AliasValue::Str(None)));
    assert_eq!(get("log.server.outputs"), Some(AliasValue::Number(4 | 128)));
    assert_eq!(get("updater.commit.delay"), Some(AliasValue::Number(25)));
    // First alias only; keys without one are absent.
    assert_eq!(get("meta.cache.dir"), None);
    assert_eq!(
        get("cache.usrmetadir"),
        Some(AliasValue::Str(Some("/storage/cache/meta")))
    );
    assert!(!view.iter().any(|e| e.0.starts_with("PV_")));
    let with_alias = Key::ALL
        .iter()
        .filter(|k| {
            keys::ALIASES
                .iter()
                .any(|(a, t)| t == *k && !a.starts_with("PV_"))
        })
        .count();
    assert_eq!(view.len(), with_alias);
}

#[test]
fn storage_paths_follow_the_mount_point_unless_set() {
    let mut c = Config::new();
    c.set(Level::Env, "PV_STORAGE_MNTPOINT", "/tmp/dev1/storage/")
        .unwrap();
    assert_eq!(c.storage_mntpoint(), "/tmp/dev1/storage/");
    assert_eq!(c.cache_usrmetadir(), "/tmp/dev1/storage/cache/meta");
    assert_eq!(c.cache_devmetadir(), "/tmp/dev1/storage/cache/devmeta");
    assert_eq!(c.log_dir(), "/tmp/dev1/storage/logs/");
    assert_eq!(c.dropbear_cache_dir(), "/tmp/dev1/storage/cache/dropbear");
    // Set explicitly: taken as meant, even under /storage.
    c.set(
        Level::PvConfFile,
        "PV_CACHE_USRMETADIR",
        "/storage/cache/usrmeta",
    )
    .unwrap();
    assert_eq!(c.cache_usrmetadir(), "/storage/cache/usrmeta");
    // Other keys are not touched.
    assert_eq!(c.storage_path(Key::PV_SYSTEM_RUNDIR), "/pv");
    // Standalone relocation of every path key.
    let text =
        "PV_SYSTEM_INIT_MODE=standalone\nPV_SYSTEM_RUNDIR=/t/run\nPV_DISK_VOLDIR=/t/volumes\n\
                PV_DISK_EXPORTSDIR=/t/exports\nPV_DISK_WRITABLEDIR=/t/writable\n\
                PV_SYSTEM_CONFDIR=/t/configs\nPV_SYSTEM_MEDIADIR=/t/media\nPV_LOG_DIR=/t/logs\n\
                PV_CACHE_DEVMETADIR=/t/devmeta\nPV_SYSTEM_ETCDIR=/t/etc";
    c.apply_text(Level::PvConfFile, "standalone.config", text);
    assert!(c.take_warnings().is_empty());
    assert_eq!(
        [
            c.system_rundir(),
            c.disk_voldir(),
            c.disk_exportsdir(),
            c.disk_writabledir()
        ],
        ["/t/run", "/t/volumes", "/t/exports", "/t/writable"]
    );
    assert_eq!(
        [c.system_confdir(), c.system_mediadir()],
        ["/t/configs", "/t/media"]
    );
    assert_eq!(
        (c.log_dir(), c.cache_devmetadir()),
        ("/t/logs".into(), "/t/devmeta".into())
    );
    assert_eq!(c.etc_pantavisor_dir(), "/t/etc/pantavisor");
}

#[test]
fn boot_load_then_policy_then_oem() {
    let conf = "PV_STORAGE_DEVICE=LABEL=root\nPV_STORAGE_FSTYPE=ext4\nPV_STORAGE_MNTPOINT=/storage\n\
                PV_SYSTEM_RUNDIR=/run/pantavisor/pv\nPV_LOG_LEVEL=4\nPV_POLICY=test\nPV_OEM_NAME=oem";
    let env = vec![
        ("PV_POLICY".to_string(), "prod".to_string()),
        ("TERM".into(), "linux".into()),
    ];
    let mut c = Config::load(Some(conf), "console=ttyS0 pv_rev=0 pv_log_level=5", env);
    assert!(c.take_warnings().is_empty());
    assert_eq!(c.log_level(), 5);
    assert_eq!(c.system_rundir(), "/run/pantavisor/pv");
    // The environment's policy wins over pantavisor.config's.
    assert_eq!(
        c.policy_path(),
        Some(PathBuf::from("/etc/pantavisor/policies/prod.config"))
    );
    c.apply_text(
        Level::Policy,
        "prod.config",
        "PV_DEBUG_SHELL=0\nPV_DEBUG_SSH=0\nPV_SECUREBOOT_MODE=strict",
    );
    assert!(!c.debug_shell() && !c.debug_ssh());
    assert_eq!(c.secureboot_mode(), crate::pvs::Mode::Strict);
    assert_eq!(c.oem_config_file().as_deref(), Some("oem/prod.config"));
    c.apply_text(
        Level::Oem,
        "oem/prod.config",
        "PV_DEBUG_SSH=1\nPV_SECUREBOOT_MODE=disabled",
    );
    assert!(c.debug_ssh());
    assert_eq!(c.secureboot_mode(), crate::pvs::Mode::Strict);
    assert!(warned(
        &mut c,
        &["PV_SECUREBOOT_MODE", "oem config", "oem/prod.config line 2"]
    ));
    c.set(Level::PvConfFile, "PV_SYSTEM_ETCPANTAVISORDIR", "/opt/pv")
        .unwrap();
    assert_eq!(
        c.policy_path(),
        Some(PathBuf::from("/opt/pv/policies/prod.config"))
    );
    let c = Config::load(None, "", Vec::new());
    assert_eq!(c.oem_config_file(), None);
}

#[test]
fn enums_and_outputs() {
    let mut c = Config::new();
    for (v, want) in [
        ("uboot", BootloaderType::Uboot),
        ("UBOOT-PVK", BootloaderType::UbootPvk),
        ("grub", BootloaderType::Grub),
    ] {
        c.set(Level::Env, "PV_BOOTLOADER_TYPE", v).unwrap();
        assert_eq!(c.bootloader_type(), want);
    }
    c.set(Level::Env, "PV_SYSTEM_INIT_MODE", "appengine")
        .unwrap();
    assert_eq!(c.init_mode(), InitMode::Appengine);
    c.set(Level::Env, "PV_WDT_MODE", "disabled").unwrap();
    assert_eq!(c.wdt_mode(), WdtMode::Disabled);
    c.set(Level::Env, "PV_LOG_TIMESTAMP", "absolute").unwrap();
    assert_eq!(c.log_timestamp(), LogTimestamp::Absolute);
    c.set(
        Level::Env,
        "PV_LOG_SERVER_OUTPUTS",
        " FileTree , stdout_direct,stdout.containers",
    )
    .unwrap();
    assert_eq!(
        c.get(Key::PV_LOG_SERVER_OUTPUTS),
        Some("filetree,stdout_direct,stdout.containers")
    );
    assert_eq!(c.log_server_outputs(), 4 | 64 | 16 | 128);
    // upstream's appengine environment gives the mask itself; shown as given, as upstream does
    c.set(Level::Env, "PV_LOG_SERVER_OUTPUTS", "196").unwrap();
    assert_eq!(c.get(Key::PV_LOG_SERVER_OUTPUTS), Some("196"));
    assert_eq!(c.log_server_outputs(), 128 | 64 | 4);
    assert!(c.set(Level::Env, "PV_LOG_SERVER_OUTPUTS", "256").is_err());
    c.set(Level::Env, "PV_LOG_SERVER_OUTPUTS", "nullsink")
        .unwrap();
    assert_eq!(c.log_server_outputs(), 1 | 128);
}

#[test]
fn warnings_are_drained_and_bounded() {
    let mut c = Config::new();
    let text: String = (0..1000).map(|i| format!("PV_BAD_{i}=1\n")).collect();
    c.apply_text(Level::PvConfFile, "f", &text);
    assert_eq!(c.take_warnings().len(), MAX_WARNINGS);
    assert!(c.take_warnings().is_empty());
}

#[test]
fn no_panic_on_arbitrary_input() {
    let samples: &[&[u8]] = &[
        b"",
        b"=",
        b"\"",
        b"pv_=\"",
        b"\xff\xfe=\xff",
        b"PV_LOG_LEVEL=99999999999999999999999T",
        b"PV_LOG_DIR_MAXSIZE=99999999999999999999999T\nPV_LOG_DIR_MAXSIZE=%",
        b"sysctl.=1\nsysctl..=1\nPV_SYSCTL_=1\npv_sysctl.=1",
        b"pv_\xc3\xa9=1 ph_\xe2\x82\xac \"\"\"",
        "é=é\nPV_é=1\n\u{0}=\u{0}".as_bytes(),
    ];
    for s in samples {
        fuzz_input(s);
    }
    // A cheap deterministic byte soup, biased towards the characters the parsers care about.
    let alphabet = b"pvhPVH_=\"#\n\r \t.%0123456789kmgtbsKMGTB-/LOGlevelstorage\xc3\xa9";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3000 {
        let mut buf = Vec::new();
        for _ in 0..(x % 97) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        fuzz_input(&buf);
        x = x.wrapping_add(1);
    }
}

#[test]
fn system_hook_timeout_is_a_duration_in_seconds() {
    let mut c = Config::new();
    assert_eq!(c.system_hook_timeout(), 60);
    c.apply_text(
        Level::PvConfFile,
        "pantavisor.config",
        "PV_SYSTEM_HOOK_TIMEOUT=2m",
    );
    assert_eq!(c.system_hook_timeout(), 120);
    assert!(c.set(Level::Env, "PV_SYSTEM_HOOK_TIMEOUT", "soon").is_err());
    assert!(c
        .set(Level::UserMeta, "PV_SYSTEM_HOOK_TIMEOUT", "5")
        .is_err());
    assert_eq!(c.system_hook_timeout(), 120);
}

/// upstream's `rpiab` and `uboot-ab` have no backend here: refused at every level where the
/// config is read, naming key and value, and the level below keeps its value -- so
/// `bootloader::for_type` never sees them and a config line cannot end every boot in FATAL.
#[test]
fn unsupported_bootloaders_are_refused_where_the_config_is_read() {
    // alone in pantavisor.config: the default stays
    for v in ["rpiab", "uboot-ab", "RPIAB"] {
        let text = format!("PV_SYSTEM_INIT_MODE=standalone\nPV_BOOTLOADER_TYPE={v}\n");
        let mut c = Config::load(Some(&text), "", Vec::new());
        assert!(
            warned(
                &mut c,
                &[
                    "PV_BOOTLOADER_TYPE",
                    &format!("'{}'", v.to_ascii_lowercase()),
                    "pantavisor.config line 2",
                    "supports uboot, uboot-pvk, grub",
                    "keeping the previous value",
                ]
            ),
            "{v}"
        );
        assert_eq!(c.get_str(Key::PV_BOOTLOADER_TYPE), Some("uboot"));
        assert_eq!(c.level_of(Key::PV_BOOTLOADER_TYPE), Level::Default);
        assert_eq!(c.bootloader_type(), BootloaderType::Uboot);
        assert_eq!(
            c.init_mode(),
            InitMode::Standalone,
            "the other lines still apply"
        );
    }
    // over a supported value of a lower level: that value stays
    let mut c = Config::load(
        Some("PV_BOOTLOADER_TYPE=grub\n"),
        "pv_bootloader.type=uboot-ab",
        vec![("PV_BOOTLOADER_TYPE".to_string(), "rpiab".to_string())],
    );
    assert!(warned(
        &mut c,
        &["PV_BOOTLOADER_TYPE", "'rpiab'", "from env"]
    ));
    assert_eq!(c.get_str(Key::PV_BOOTLOADER_TYPE), Some("grub"));
    assert_eq!(c.level_of(Key::PV_BOOTLOADER_TYPE), Level::PvConfFile);
    // the legacy alias and the command line are read the same way
    let mut c = Config::load(None, "pv_bootloader.type=uboot-ab", Vec::new());
    assert!(warned(
        &mut c,
        &["PV_BOOTLOADER_TYPE", "'uboot-ab'", "cmdline"]
    ));
    assert_eq!(c.bootloader_type(), BootloaderType::Uboot);
    // set(): a typed refusal
    let mut c = Config::new();
    let e = c
        .set(Level::Policy, "PV_BOOTLOADER_TYPE", "rpiab")
        .unwrap_err();
    assert!(
        matches!(e, ConfigWarning::Unsupported { ref key, ref value, .. }
            if key == "PV_BOOTLOADER_TYPE" && value == "rpiab"),
        "{e:?}"
    );
    c.set(Level::Policy, "PV_BOOTLOADER_TYPE", "uboot-pvk")
        .unwrap();
    assert_eq!(c.bootloader_type(), BootloaderType::UbootPvk);
    // every value that gets through has a backend
    for v in keys::BOOTLOADERS {
        let mut c = Config::new();
        if c.set(Level::Env, "PV_BOOTLOADER_TYPE", v).is_ok() {
            let root = std::path::Path::new("/nonexistent");
            assert!(crate::bootloader::for_type(c.text(Key::PV_BOOTLOADER_TYPE), root).is_ok());
        }
    }
}
