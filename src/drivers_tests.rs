use super::*;

#[test]
fn entries_and_placeholders() {
    assert_eq!(
        parse_entry("brcmfmac  roamoff=1 feature_disable=0x82000"),
        Some(ModuleLoad {
            name: "brcmfmac".into(),
            params: "roamoff=1 feature_disable=0x82000".into()
        })
    );
    assert_eq!(
        parse_entry("snd-soc-core"),
        Some(ModuleLoad {
            name: "snd_soc_core".into(),
            params: "".into()
        })
    );
    assert_eq!(parse_entry("  "), None);
    assert_eq!(parse_entry("../evil"), None);
    let meta = |store: &str, key: &str| {
        (store == "user-meta" && key == "drivers.brcmfmac.opts").then(|| "roamoff=1".to_string())
    };
    assert_eq!(
        substitute("brcmfmac ${user-meta:drivers.brcmfmac.opts}", &meta),
        "brcmfmac roamoff=1"
    );
    assert_eq!(substitute("x ${device-meta:none} y", &meta), "x  y");
    assert_eq!(substitute("x ${unterminated", &meta), "x ${unterminated");
}

#[test]
fn dependencies_load_first_once() {
    let dep = "kernel/net/wireless/cfg80211.ko: kernel/net/rfkill/rfkill.ko\n\
               kernel/drivers/net/wireless/brcmfmac.ko: kernel/drivers/net/wireless/brcmutil.ko kernel/net/wireless/cfg80211.ko kernel/net/rfkill/rfkill.ko\n\
               kernel/net/rfkill/rfkill.ko:\n\
               garbage line without colon\n";
    let idx = ModuleIndex::parse(Path::new("/m"), dep);
    let plan = idx.plan("brcmfmac").unwrap();
    let names: Vec<String> = plan
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["rfkill.ko", "cfg80211.ko", "brcmutil.ko", "brcmfmac.ko"]
    );
    assert!(idx.plan("nope").is_none());
    assert!(idx
        .load_module(&ModuleLoad {
            name: "nope".into(),
            params: "".into()
        })
        .unwrap_err()
        .contains("not in"));
}

#[test]
fn required_and_optional_drivers_from_the_fixture() {
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/states/initial_state.json"
    ))
    .unwrap();
    let state = State::parse(&raw).unwrap();
    let none = |_: &str, _: &str| None;
    let idx = ModuleIndex::parse(Path::new("/nonexistent"), "");
    for c in state.containers() {
        let plan = for_container(&state, c, None, &none);
        // nothing can be loaded from an empty index: required fails, optional only warns
        let r = load_for(&idx, &c.name, &plan);
        if plan.iter().any(|(_, m, req)| *req && !m.is_empty()) {
            assert!(r.unwrap_err().contains("required driver"));
        } else {
            assert_eq!(r, Ok(0));
        }
    }
}

/// GET /drivers: an alias is LOADED when all its modules are in /proc/modules, UNKNOWN when
/// drivers.json does not define it.
#[test]
fn alias_status_from_proc_modules() {
    let loaded = loaded_modules(
        "mac80211 1024 1 cfg80211, Live 0x0\ncfg80211 2048 2 - Live 0x0\nbtusb 10 0 - Live 0x0\n",
    );
    let m = |n: &str| ModuleLoad {
        name: n.into(),
        params: String::new(),
    };
    assert_eq!(alias_status(None, &loaded), "UNKNOWN");
    assert_eq!(
        alias_status(Some(&[m("cfg80211"), m("mac80211")]), &loaded),
        "LOADED"
    );
    assert_eq!(
        alias_status(Some(&[m("cfg80211"), m("iwlwifi")]), &loaded),
        "UNLOADED"
    );
    assert_eq!(alias_status(Some(&[]), &loaded), "LOADED");
}
