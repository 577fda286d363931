use super::*;
use crate::storage::simfs::SimFs;

fn registered() -> Config {
    let mut c = Config::new();
    c.apply_text(
        Level::PhConfFile,
        "pantahub.config",
        "PH_CREDS_HOST=hub.example\nPH_CREDS_PORT=8443\n",
    );
    c.set(Level::PhConfFile, "PH_CREDS_ID", "5f0c").unwrap();
    c.set(Level::PhConfFile, "PH_CREDS_PRN", "prn:::devices:/5f0c")
        .unwrap();
    c.set(Level::PhConfFile, "PH_CREDS_SECRET", "s3cret")
        .unwrap();
    c
}

#[test]
fn every_hub_key_with_a_value_and_nothing_else() {
    let text = render(&registered());
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "PH_CREDS_HOST=hub.example",
        "PH_CREDS_PORT=8443",
        "PH_CREDS_ID=5f0c",
        "PH_CREDS_PRN=prn:::devices:/5f0c",
        "PH_CREDS_SECRET=s3cret",
        "PH_CREDS_TYPE=builtin",
    ] {
        assert!(lines.contains(&want), "{want} in\n{text}");
    }
    assert!(lines.iter().all(|l| l.starts_with("PH_")), "{text}");
    // keys without a value are left out
    assert!(!text.contains("PH_FACTORY_AUTOTOK"), "{text}");
    // read back at the same level, the file gives the same credentials
    let mut again = Config::new();
    again.apply_text(Level::PhConfFile, "pantahub.config", &text);
    assert!(again.take_warnings().is_empty());
    for k in [
        Key::PH_CREDS_ID,
        Key::PH_CREDS_PRN,
        Key::PH_CREDS_SECRET,
        Key::PH_CREDS_HOST,
    ] {
        assert_eq!(again.get(k), registered().get(k), "{k:?}");
    }
    assert_eq!(render(&again), text);
}

#[test]
fn saved_crash_safely_where_upstream_keeps_them() {
    let fs = SimFs::new();
    let storage = Path::new("/storage");
    let c = registered();
    let p = save(&fs, storage, &c, false).unwrap();
    assert_eq!(p, Path::new("/storage/config/unclaimed.config"));
    assert_eq!(fs.read(&p).unwrap(), render(&c).into_bytes());
    let p = save(&fs, storage, &c, true).unwrap();
    assert_eq!(p, Path::new("/storage/config/pantahub.config"));
    assert_eq!(fs.read(&p).unwrap(), render(&c).into_bytes());
    // nothing in flight is left behind
    assert!(fs
        .read(Path::new("/storage/config/pantahub.config.tmp"))
        .is_err());
}
