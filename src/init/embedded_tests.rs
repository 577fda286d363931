use super::*;

#[test]
fn mount_points_are_the_fifth_field_of_mountinfo() {
    let mi = "22 1 0:21 / /proc rw,nosuid,nodev,noexec - proc proc rw\n\
              23 1 0:22 / /sys rw,nosuid,nodev,noexec - sysfs sysfs rw\n\
              24 23 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw\n\
              \n\
              25 1 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,mode=755\n";
    let m = mount_points(mi);
    assert_eq!(m, ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]);
    assert!(!m.contains(&"/run"));
    assert!(mount_points("").is_empty());
}

#[test]
fn only_files_below_the_mount_point_are_released() {
    assert!(is_under(
        Path::new("/storage/logs/0/pantavisor/pantavisor.log"),
        "/storage"
    ));
    assert!(is_under(Path::new("/storage"), "/storage"));
    assert!(!is_under(Path::new("/storage2/x"), "/storage"));
    assert!(!is_under(Path::new("/dev/console"), "/storage"));
    assert!(!is_under(Path::new("socket:[1234]"), "/storage"));
}
