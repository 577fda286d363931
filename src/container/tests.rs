use super::*;

fn paths() -> Paths {
    Paths {
        storage: "/t/storage".into(),
        voldir: "/t/volumes".into(),
        exportsdir: "/t/exports".into(),
        confdir: "/t/configs".into(),
        rundir: "/t/run".into(),
        logdir: "/t/storage/logs".into(),
        rootfs_mount: "/t/run/lxc/rootfs".into(),
        media: "/t/media".into(),
    }
}

#[test]
fn pvr_host_paths_map_to_the_configured_folders() {
    let p = paths();
    assert_eq!(
        p.map_host_path("/volumes/web/root.squashfs"),
        PathBuf::from("/t/volumes/web/root.squashfs")
    );
    assert_eq!(p.map_host_path("/storage"), PathBuf::from("/t/storage"));
    assert_eq!(
        p.map_host_path("/pv/pv-ctrl"),
        PathBuf::from("/t/run/pv-ctrl")
    );
    assert_eq!(p.map_host_path("/exports/a"), PathBuf::from("/t/exports/a"));
    assert_eq!(p.map_host_path("/volumesx/a"), PathBuf::from("/volumesx/a"));
    assert_eq!(
        p.map_host_path("/etc/resolv.conf"),
        PathBuf::from("/etc/resolv.conf")
    );
    assert_eq!(
        p.console_log("locals/dev", "app"),
        PathBuf::from("/t/storage/logs/locals/dev/app/lxc/console.log")
    );
}

#[test]
fn paths_from_configuration() {
    let mut c = Config::new();
    c.apply_env([
        ("PV_STORAGE_MNTPOINT".to_string(), "/s".to_string()),
        ("PV_SYSTEM_RUNDIR".to_string(), "/r".to_string()),
    ]);
    let p = Paths::from_config(&c);
    assert_eq!(p.storage, PathBuf::from("/s"));
    assert_eq!(p.voldir, PathBuf::from("/volumes"));
    assert_eq!(p.logdir, PathBuf::from("/s/logs/"));
    // beside the rundir, which a mgmt container sees whole
    assert_eq!(p.rootfs_mount, PathBuf::from("/r.lxc/rootfs"));
}

#[test]
fn errors_are_one_line_with_step_and_path() {
    let e = Error {
        container: "app".into(),
        step: "mount",
        path: "/x on /y".into(),
        kind: ErrorKind::Os(libc::ENOENT),
    };
    let s = e.to_string();
    assert!(s.starts_with("container app: mount /x on /y: "), "{s}");
    assert!(s.contains("No such file or directory"), "{s}");
    let e = Error::invalid("a\nb", "config", "/c", "line 1\nline 2");
    assert!(!e.to_string().contains('\n'), "{e}");
    assert_eq!(e.errno(), None);
}

#[test]
fn exits_read_plainly() {
    assert_eq!(Exit::Code(7).to_string(), "exit code 7");
    assert_eq!(
        Exit::Signal(libc::SIGKILL).to_string(),
        "killed by signal 9 (SIGKILL)"
    );
    assert_eq!(Status::Stopping.as_str(), "STOPPING");
}

#[test]
fn config_overlay_is_copied_following_links() {
    let t = std::env::temp_dir().join(format!("pv-copy-tree-{}", std::process::id()));
    let _ = fs::remove_dir_all(&t);
    let src = t.join("src");
    fs::create_dir_all(src.join("etc/sub")).unwrap();
    fs::write(src.join("etc/a"), "a").unwrap();
    fs::set_permissions(src.join("etc/a"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("a", src.join("etc/link")).unwrap();
    copy_tree(&src, &t.join("dst"), 0).unwrap();
    let dst = t.join("dst/etc");
    assert_eq!(fs::read_to_string(dst.join("link")).unwrap(), "a");
    assert!(
        fs::symlink_metadata(dst.join("link")).unwrap().is_file(),
        "cp -L"
    );
    assert_eq!(
        fs::metadata(dst.join("a")).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(dst.join("sub").is_dir());
    // a loop is refused, not followed for ever
    std::os::unix::fs::symlink("..", src.join("etc/sub/up")).unwrap();
    assert!(copy_tree(&src, &t.join("dst2"), 0).is_err());
    let _ = fs::remove_dir_all(&t);
}
