use super::fs::{self, Fs};
use super::objects::sha256_hex;
use super::simfs::{Cut, SimFs};
use super::trail::Check;
use super::*;
use crate::state::State;
use std::collections::BTreeSet;
use std::io::Write;

/// A state with two objects, inline JSON, a `.bind` file and boot files; its objects.
fn state_with(tag: &str) -> (Vec<u8>, Vec<Vec<u8>>) {
    let kernel = format!("kernel {tag}").into_bytes();
    let initrd = b"initrd shared by every revision".to_vec();
    let bind = b"bind".to_vec();
    let raw = format!(
        "{{\"#spec\":\"pantavisor-service-system@1\",\"a/data.bind\":\"{}\",\"a/lxc.container.conf\":\"{}\",\"a/run.json\":{{\"name\":\"a\",\"config\":\"lxc.container.conf\",\"volumes\":[\"data.bind\"]}},\"bsp/k\":\"{}\",\"bsp/i\":\"{}\",\"bsp/run.json\":{{\"linux\":\"k\",\"initrd\":\"i\"}}}}",
        sha256_hex(&bind),
        sha256_hex(&initrd),
        sha256_hex(&kernel),
        sha256_hex(&initrd)
    )
    .into_bytes();
    (raw, vec![kernel, initrd, bind])
}

fn install(st: &Storage, rev: &str, tag: &str) -> State {
    let (raw, objects) = state_with(tag);
    for o in &objects {
        st.put_object(&sha256_hex(o), o).unwrap();
    }
    let state = State::parse(&raw).unwrap();
    st.install_state(rev, &raw).unwrap();
    st.checkout(rev, &state).unwrap();
    state
}

#[test]
fn revision_names() {
    for ok in ["0", "12", "locals/x", "locals/my-update_1.2"] {
        assert!(valid_revision(ok), "{ok}");
    }
    for bad in [
        "",
        "current",
        "locals/",
        "locals/.hidden",
        "locals/a/b",
        "x/y",
        "../0",
        "1a",
        &"9".repeat(64),
    ] {
        assert!(!valid_revision(bad), "{bad}");
    }
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    assert!(st
        .trail_dir("../../etc")
        .unwrap_err()
        .to_string()
        .contains("bad name"));
}

#[test]
fn object_with_bad_checksum_is_refused_and_nothing_is_stored() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let sha = sha256_hex(b"good");
    let e = st.put_object(&sha, b"evil").unwrap_err();
    assert!(e.to_string().contains("checksum"), "{e}");
    assert!(!st.has_object(&sha).unwrap());
    assert_eq!(
        fs.read_dir(&st.objects_dir()).unwrap(),
        Vec::<String>::new(),
        "no .tmp left"
    );
    assert!(st.put_object("NOTHEX", b"x").is_err());
}

/// A big upload is made durable slice by slice as it arrives: at any moment at most one
/// slice is left for the final fsync, which runs on pv-ctrl's loop.
#[test]
fn an_upload_is_made_durable_in_slices() {
    use crate::storage::objects::SYNC_SLICE;
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let len = 2 * SYNC_SLICE as usize + 1000;
    let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
    let sha = sha256_hex(&data);
    let mut w = st.object_writer(&sha).unwrap();
    for c in data.chunks(64 * 1024) {
        w.write(c).unwrap();
    }
    // the power goes before finish: what the slices made durable is there (the entry made
    // durable here only to look at it)
    fs.sync_dir(&st.objects_dir()).unwrap();
    let cut = fs.snapshot();
    cut.power_cut(Cut::DurableOnly);
    let tmp: Vec<_> = cut
        .read_dir(&st.objects_dir())
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert_eq!(tmp.len(), 1, "{tmp:?}");
    let durable = cut.read(&st.objects_dir().join(&tmp[0])).unwrap();
    assert_eq!(durable.len(), 2 * SYNC_SLICE as usize);
    assert_eq!(durable[..], data[..durable.len()]);
    w.finish().unwrap();
    fs.power_cut(Cut::DurableOnly);
    assert_eq!(fs.read(&st.object_path(&sha).unwrap()).unwrap(), data);
}

#[test]
fn objects_stream_in_chunks() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let sha = sha256_hex(&data);
    let mut w = st.object_writer(&sha).unwrap();
    for c in data.chunks(4096) {
        w.write(c).unwrap();
    }
    assert_eq!(w.written(), data.len() as u64);
    w.finish().unwrap();
    fs.power_cut(Cut::DurableOnly);
    assert_eq!(fs.read(&st.object_path(&sha).unwrap()).unwrap(), data);
    assert_eq!(st.list_objects().unwrap(), vec![sha]);
}

#[test]
fn checkout_links_objects_copies_bind_and_writes_boot_links() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let state = install(&st, "1", "one");
    let t = st.trail_dir("1").unwrap();
    // hard links share the object's inode: link count 1 (object) + 1 (trail) + 1 (.pv link)
    let kernel = st.object_path(&sha256_hex(b"kernel one")).unwrap();
    assert_eq!(fs.metadata(&kernel).unwrap().nlink, 3);
    // .bind is a copy
    let bind = st.object_path(&sha256_hex(b"bind")).unwrap();
    assert_eq!(fs.metadata(&bind).unwrap().nlink, 1);
    assert_eq!(fs.read(&t.join("a/data.bind")).unwrap(), b"bind");
    assert_eq!(
        fs.read(&t.join("a/run.json")).unwrap(),
        br#"{"name":"a","config":"lxc.container.conf","volumes":["data.bind"]}"#
    );
    assert_eq!(
        fs.read(&t.join(".pv/pv-kernel.img")).unwrap(),
        b"kernel one"
    );
    assert_eq!(
        fs.read(&t.join(".pv/pv-initrd.img")).unwrap(),
        b"initrd shared by every revision"
    );
    assert_eq!(
        fs.read(&t.join(".pvr/config")).unwrap(),
        br#"{"ObjectsDir": "/s/objects"}"#
    );
    assert!(st.verify_trail("1", &state, Check::Rehash).is_ok());
    // everything is durable once checkout returns
    fs.power_cut(Cut::DurableOnly);
    assert!(st.verify_trail("1", &state, Check::Rehash).is_ok());
}

#[test]
fn verify_finds_every_kind_of_damage_and_checkout_repairs_it() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let state = install(&st, "1", "one");
    let t = st.trail_dir("1").unwrap();
    fs.remove_file(&t.join("bsp/k")).unwrap();
    fs.create(&t.join("a/run.json"))
        .unwrap()
        .write_all(b"{}")
        .unwrap();
    fs.remove_file(&t.join(".pv/pv-initrd.img")).unwrap();
    let problems = st.verify_trail("1", &state, Check::Rehash).unwrap_err();
    let text: Vec<String> = problems.iter().map(|e| e.to_string()).collect();
    assert_eq!(problems.len(), 3, "{text:?}");
    assert!(text.iter().any(|p| p.contains("bsp/k")));
    assert!(text
        .iter()
        .any(|p| p.contains("a/run.json") && p.contains("differs")));
    assert!(text
        .iter()
        .any(|p| p.contains("pv-initrd.img") && p.contains("boot link")));
    st.checkout("1", &state).unwrap();
    assert!(st.verify_trail("1", &state, Check::Rehash).is_ok());
}

#[test]
fn rehash_catches_a_corrupted_object_that_presence_does_not() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let state = install(&st, "1", "one");
    let t = st.trail_dir("1").unwrap();
    // same length, other content (bit rot)
    fs.create(&t.join("bsp/k"))
        .unwrap()
        .write_all(b"kernel 0ne")
        .unwrap();
    assert!(st.verify_trail("1", &state, Check::Presence).is_ok());
    let e = st.verify_trail("1", &state, Check::Rehash).unwrap_err();
    assert!(e[0].to_string().contains("checksum"), "{}", e[0]);
    // a boot re-hashes it too: only what the bootloader loaded is left to it
    assert!(st
        .verify_trail("1", &state, Check::Boot { verity: true })
        .is_err());
}

#[test]
fn a_boot_leaves_to_the_bootloader_only_what_it_loaded() {
    use crate::storage::trail::loaded_by_bootloader as loaded;
    for k in [
        "bsp/pantavisor",
        "bsp/pantavisor.cpio.xz4",
        "bsp/kernel.img",
        "bsp/fit-image.its",
    ] {
        assert!(loaded(k), "{k}");
    }
    for k in [
        "bsp/modules.squashfs",
        "bsp/firmware.squashfs",
        "a/pantavisor",
        "bsp/k",
        "pantavisor",
    ] {
        assert!(!loaded(k), "{k}");
    }
}

/// Upstream's no-validate list: the data device of a dm-verity volume is left to the kernel,
/// its hash tree is re-hashed as every other object.
#[test]
fn rehash_skips_the_data_device_of_a_verity_volume() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    let (k, data, hash) = (
        b"kernel".to_vec(),
        b"squashfs".to_vec(),
        b"hash tree".to_vec(),
    );
    let raw = format!(
        r##"{{"#spec":"pantavisor-service-system@1","a/_dm/root.squashfs.json":{{"data_device":"root.squashfs","hash_device":"root.squashfs.hash","root_hash":"ab","type":"dm-verity"}},"a/root.squashfs":"{}","a/root.squashfs.hash":"{}","a/run.json":{{"name":"a","root-volume":"dm:root.squashfs"}},"bsp/k":"{}","bsp/run.json":{{"linux":"k","initrd":"k"}}}}"##,
        sha256_hex(&data),
        sha256_hex(&hash),
        sha256_hex(&k)
    );
    for o in [&k, &data, &hash] {
        st.put_object(&sha256_hex(o), o).unwrap();
    }
    let state = State::parse(raw.as_bytes()).unwrap();
    st.install_state("1", raw.as_bytes()).unwrap();
    st.checkout("1", &state).unwrap();
    let t = st.trail_dir("1").unwrap();
    let put = |f: &str, b: &[u8]| fs.create(&t.join(f)).unwrap().write_all(b).unwrap();
    put("a/root.squashfs", b"squashFS");
    // a boot with verity on leaves the data device to the kernel
    assert!(st
        .verify_trail("1", &state, Check::Boot { verity: true })
        .is_ok());
    // verity off mounts it plain: nothing else would check it
    let e = st
        .verify_trail("1", &state, Check::Boot { verity: false })
        .unwrap_err();
    assert!(e[0].to_string().contains("a/root.squashfs"), "{}", e[0]);
    // an install re-hashes everything
    assert!(st.verify_trail("1", &state, Check::Rehash).is_err());
    put("a/root.squashfs", &data);
    put("a/root.squashfs.hash", b"hash Tree");
    let e = st
        .verify_trail("1", &state, Check::Boot { verity: true })
        .unwrap_err();
    assert!(e[0].to_string().contains("root.squashfs.hash"), "{}", e[0]);
}

#[test]
fn current_switch_is_atomic() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    install(&st, "1", "one");
    install(&st, "2", "two");
    st.set_current("1").unwrap();
    assert_eq!(st.current().unwrap().as_deref(), Some("1"));
    assert_eq!(
        fs.read(&st.trails_dir().join("current/bsp/k")).unwrap(),
        b"kernel one"
    );
    for n in 1..=4 {
        let f = fs.snapshot();
        let s = Storage::new(&f, "/s");
        f.arm_crash(n);
        let _ = s.set_current("2");
        f.power_cut(Cut::DurableOnly);
        let c = s.current().unwrap();
        assert!(
            c.as_deref() == Some("1") || c.as_deref() == Some("2"),
            "{c:?}"
        );
    }
    st.set_current("2").unwrap();
    assert_eq!(st.current().unwrap().as_deref(), Some("2"));
    assert_eq!(
        fs.read_link(&st.logs_dir().join("current")).unwrap(),
        std::path::PathBuf::from("2")
    );
}

#[test]
fn gc_removes_unkept_revisions_and_unreferenced_objects_and_counts_bytes() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    st.init_layout().unwrap();
    install(&st, "0", "zero");
    install(&st, "1", "one");
    let s2 = install(&st, "locals/two", "two");
    st.set_current("1").unwrap();
    fs::create_dir_all(&fs, &st.rev_volume_dir("0", "a", "data")).unwrap();
    fs::create_dir_all(&fs, &st.logs_dir().join("0/pantavisor")).unwrap();
    // an object nothing links yet but an in-flight update needs
    st.put_object(&sha256_hex(b"in flight"), b"in flight")
        .unwrap();
    let keep_objects: BTreeSet<String> = [sha256_hex(b"in flight")].into();
    // keep: committed 1 (also current) and the in-flight locals/two
    // what only revision 0 holds: its kernel object, its copy of the .bind file, its inline
    // JSON files and .pvr files (logs and disks dirs are empty)
    let t0 = st.trail_dir("0").unwrap();
    let only_0: u64 = ["a/run.json", "bsp/run.json", ".pvr/json", ".pvr/config"]
        .iter()
        .map(|f| fs.metadata(&t0.join(f)).unwrap().len)
        .sum::<u64>()
        + "kernel zero".len() as u64
        + "bind".len() as u64;
    let reclaimed = st.gc(&["1", "locals/two"], &keep_objects).unwrap();
    assert_eq!(reclaimed, only_0);
    assert_eq!(
        st.list_revisions().unwrap(),
        vec!["1".to_string(), "locals/two".to_string()]
    );
    assert!(!fs::exists(&fs, &st.root.join("disks/rev/0")).unwrap());
    assert!(!fs::exists(&fs, &st.logs_dir().join("0")).unwrap());
    assert!(st.has_object(&sha256_hex(b"in flight")).unwrap());
    assert!(!st.has_object(&sha256_hex(b"kernel zero")).unwrap());
    assert!(st.verify_trail("locals/two", &s2, Check::Rehash).is_ok());
    // the shared initrd is still linked by the kept revisions; the .bind object has no link
    // but the kept states name it
    assert!(st
        .has_object(&sha256_hex(b"initrd shared by every revision"))
        .unwrap());
    assert!(st.has_object(&sha256_hex(b"bind")).unwrap());
    // a second run finds nothing
    assert_eq!(st.gc(&["1", "locals/two"], &keep_objects).unwrap(), 0);
    // current is never collected even when not listed
    assert!(st.gc(&["locals/two"], &BTreeSet::new()).unwrap() > 0);
    assert_eq!(
        st.list_revisions().unwrap(),
        vec!["1".to_string(), "locals/two".to_string()]
    );
    assert!(!st.has_object(&sha256_hex(b"in flight")).unwrap());
}

#[test]
fn stale_temporary_files_are_removed_at_boot() {
    let fs = SimFs::new();
    let st = Storage::new(&fs, "/s");
    st.init_layout().unwrap();
    install(&st, "1", "one");
    let sha = sha256_hex(b"x");
    fs.create(&fs::tmp_path(&st.object_path(&sha).unwrap()))
        .unwrap()
        .write_all(b"partial")
        .unwrap();
    fs.create(&st.boot_dir().join("uboot.txt.tmp")).unwrap();
    fs.create(&st.trail_dir("1").unwrap().join(".pv/progress.tmp"))
        .unwrap();
    assert_eq!(st.remove_stale_tmp().unwrap(), 3);
    assert_eq!(st.remove_stale_tmp().unwrap(), 0);
    assert!(st.list_objects().unwrap().iter().all(|o| o != &sha));
}
