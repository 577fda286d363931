//! Replays the fuzz corpus (tests/fuzz/corpus/<target>/*) through the same entry points the
//! fuzzers call, so every input that once found new coverage -- and every crash once fixed --
//! is run on each test run, without nightly or cargo-fuzz.
use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        // a fuzzer running beside the tests replaces corpus files as it reduces them
        let data = match std::fs::read(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            r => r.unwrap(),
        };
        run(&data);
        n += 1;
    }
    assert!(n > 0, "empty corpus {}", dir.display());
    println!("fuzz corpus {target}: {n} inputs replayed");
}

#[test]
fn state_corpus() {
    replay("state", pantavisor::fuzz::state);
}
#[test]
fn config_corpus() {
    replay("config", pantavisor::fuzz::config);
}
#[test]
fn uboot_corpus() {
    replay("uboot", pantavisor::fuzz::uboot);
}
#[test]
fn grubenv_corpus() {
    replay("grubenv", pantavisor::fuzz::grubenv);
}
#[test]
fn pvs_corpus() {
    replay("pvs", pantavisor::fuzz::pvs);
}
#[test]
fn lxc_corpus() {
    replay("lxc", pantavisor::fuzz::lxc);
}
#[test]
fn netlink_corpus() {
    replay("netlink", pantavisor::fuzz::netlink);
}
#[test]
fn http_corpus() {
    replay("http", pantavisor::fuzz::http);
}
