use super::*;

fn mkfs(path: &Path, label: &str, uuid: &str) {
    let f = File::create(path).unwrap();
    f.set_len(8 << 20).unwrap();
    let ok = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-U", uuid, path.to_str().unwrap()])
        .status()
        .expect("mkfs.ext4 (e2fsprogs, installed by scripts/setup)");
    assert!(ok.success());
}

#[test]
fn reads_label_and_uuid_of_real_ext4_images_and_finds_them() {
    let dir = std::env::temp_dir().join(format!("pv-blockdev-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sys = dir.join("sys");
    let dev = dir.join("dev");
    std::fs::create_dir_all(&sys).unwrap();
    std::fs::create_dir_all(&dev).unwrap();
    mkfs(
        &dev.join("vda1"),
        "boot",
        "11111111-2222-3333-4444-555555555555",
    );
    mkfs(
        &dev.join("vda2"),
        "root",
        "0A1B2C3D-0000-4000-8000-00000000ABCD",
    );
    std::fs::write(dev.join("vdb"), vec![0u8; 4096]).unwrap();
    for n in ["vda1", "vda2", "vdb", "gone"] {
        std::fs::create_dir_all(sys.join(n)).unwrap();
    }
    let sb = read_ext_super(&dev.join("vda2")).unwrap().unwrap();
    assert_eq!(
        sb,
        ExtSuper {
            label: "root".into(),
            uuid: "0a1b2c3d-0000-4000-8000-00000000abcd".into()
        }
    );
    assert_eq!(read_ext_super(&dev.join("vdb")).unwrap(), None);
    assert_eq!(
        find(&DeviceSpec::parse("LABEL=root"), &sys, &dev),
        Some(dev.join("vda2"))
    );
    assert_eq!(
        find(
            &DeviceSpec::parse("UUID=11111111-2222-3333-4444-555555555555"),
            &sys,
            &dev
        ),
        Some(dev.join("vda1"))
    );
    assert_eq!(
        find(
            &DeviceSpec::parse("UUID=0A1B2C3D-0000-4000-8000-00000000ABCD"),
            &sys,
            &dev
        ),
        Some(dev.join("vda2"))
    );
    assert_eq!(find(&DeviceSpec::parse("LABEL=nope"), &sys, &dev), None);
    assert_eq!(
        find(
            &DeviceSpec::parse(dev.join("vdb").to_str().unwrap()),
            &sys,
            &dev
        ),
        Some(dev.join("vdb"))
    );
    assert_eq!(
        find(&DeviceSpec::parse("/nonexistent/dev"), &sys, &dev),
        None
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn garbage_superblocks_do_not_panic() {
    assert_eq!(parse_ext_super(&[]), None);
    assert_eq!(parse_ext_super(&[0xffu8; 0x40]), None);
    let mut sb = vec![0u8; SB_LEN];
    sb[0x38] = 0x53;
    sb[0x39] = 0xEF;
    sb[0x78..0x88].copy_from_slice(&[0xff; 16]);
    let s = parse_ext_super(&sb).unwrap();
    assert_eq!(s.uuid, "00000000-0000-0000-0000-000000000000");
    assert_eq!(s.label.chars().count(), 16);
    assert_eq!(parse_ext_super(&sb[..0x70]), None);
}
