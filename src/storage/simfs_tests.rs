use super::*;
use crate::storage::fs::{create_dir_all, write_atomic};
use std::io::Write;

fn p(s: &str) -> &Path {
    Path::new(s)
}

#[test]
fn unsynced_file_content_is_lost_but_entry_survives_dir_sync() {
    let fs = SimFs::new();
    create_dir_all(&fs, p("/s")).unwrap();
    fs.create(p("/s/a")).unwrap().write_all(b"hello").unwrap();
    fs.sync_dir(p("/s")).unwrap();
    fs.power_cut(Cut::DurableOnly);
    assert_eq!(fs.read(p("/s/a")).unwrap(), b"");
}

#[test]
fn new_entry_without_dir_sync_is_lost() {
    let fs = SimFs::new();
    create_dir_all(&fs, p("/s")).unwrap();
    fs.create(p("/s/a")).unwrap().write_all(b"hello").unwrap();
    fs.sync_file(p("/s/a")).unwrap();
    fs.power_cut(Cut::DurableOnly);
    assert!(fs.read(p("/s/a")).is_err());
}

#[test]
fn write_atomic_survives_and_old_content_stays_until_dir_sync() {
    let fs = SimFs::new();
    create_dir_all(&fs, p("/s")).unwrap();
    write_atomic(&fs, p("/s/f"), b"one").unwrap();
    fs.power_cut(Cut::DurableOnly);
    assert_eq!(fs.read(p("/s/f")).unwrap(), b"one");
    // crash just before the directory fsync of the second write (create, write, fsync, rename = 4 calls): old content
    fs.arm_crash(5);
    assert!(write_atomic(&fs, p("/s/f"), b"two").is_err());
    assert!(fs.crashed());
    fs.power_cut(Cut::DurableOnly);
    assert_eq!(fs.read(p("/s/f")).unwrap(), b"one");
    fs.arm_crash(5);
    assert!(write_atomic(&fs, p("/s/f"), b"two").is_err());
    fs.power_cut(Cut::KeepAll);
    assert_eq!(fs.read(p("/s/f")).unwrap(), b"two");
}

#[test]
fn symlinks_hard_links_and_nlink() {
    let fs = SimFs::new();
    create_dir_all(&fs, p("/s/trails/1")).unwrap();
    write_atomic(&fs, p("/s/obj"), b"x").unwrap();
    fs.hard_link(p("/s/obj"), p("/s/trails/1/f")).unwrap();
    assert_eq!(fs.metadata(p("/s/obj")).unwrap().nlink, 2);
    fs.symlink(p("1"), p("/s/trails/current")).unwrap();
    assert_eq!(fs.read(p("/s/trails/current/f")).unwrap(), b"x");
    assert_eq!(
        fs.read_dir(p("/s/trails/current")).unwrap(),
        vec!["f".to_string()]
    );
    assert_eq!(
        fs.metadata(p("/s/trails/current")).unwrap().kind,
        Kind::Symlink
    );
    fs.remove_file(p("/s/trails/1/f")).unwrap();
    assert_eq!(fs.metadata(p("/s/obj")).unwrap().nlink, 1);
}

#[test]
fn every_call_after_the_cut_fails() {
    let fs = SimFs::new();
    fs.arm_crash(1);
    assert!(fs.create_dir(p("/a")).is_err());
    assert!(fs.create_dir(p("/b")).is_err());
    fs.power_cut(Cut::KeepAll);
    assert!(fs.create_dir(p("/b")).is_ok());
}
