//! Namespace tier (root): PID 1 never exits. The real binary as PID 1 of a PID namespace,
//! under the harness that plays U-Boot, hits a fatal error of INIT or of the boot of its
//! revision: it must print one `FATAL <step>: <reason>` line, pause, and reboot (SIGHUP of
//! the namespace, unshare's 129) -- never exit (an exit of PID 1 is a kernel panic). The
//! harness stops after 3 boots that rebooted after the same line and returns `End::Fatal`.
mod harness;
mod support;

use harness::{Bootloader, End, FATAL_BOOTS};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One device at a time: each of these boots pauses 5 s on the console.
static SERIAL: Mutex<()> = Mutex::new(());

const DESC: &str = r#"{"containers":{"a":{"rootfs":"rootfs","cmd":["/bin/sh","-c","trap 'exit 0' TERM; while :; do sleep 0.2; done"]}}}"#;

struct Rig {
    dir: PathBuf,
    storage: PathBuf,
    cgroup: Option<PathBuf>,
    bl: Bootloader,
}

impl Rig {
    fn new(name: &str) -> Rig {
        let dir = std::env::temp_dir().join(format!("pv-fatal-{name}-{}", std::process::id()));
        let harness::DeviceFiles {
            storage,
            config,
            cgroup,
        } = harness::make_device(&dir, &format!("pv-fatal-{name}"), DESC, "", &|_| {});
        let mut bl = Bootloader::new(&storage, &config);
        bl.cgroup = cgroup.clone();
        Rig {
            dir,
            storage,
            cgroup,
            bl,
        }
    }

    /// Boots until the harness gives up on the FATAL line; checks each boot and its pause.
    fn boot_to_fatal(&mut self, want: &str) -> String {
        let t = Instant::now();
        let end = self.bl.run(FATAL_BOOTS + 3, Duration::from_secs(20));
        let elapsed = t.elapsed();
        let End::Fatal(line) = end else {
            panic!(
                "expected End::Fatal, got {end:?} after boots {:?}; last console:\n{}",
                self.bl.boots,
                self.bl.last_console()
            );
        };
        assert!(line.starts_with(want), "{line}");
        // every boot rebooted (SIGHUP of the namespace), none exited
        assert_eq!(
            self.bl.boots,
            vec![("0".to_string(), End::Reboot); FATAL_BOOTS],
            "{line}"
        );
        // one FATAL line per boot, the same each time
        for (i, c) in self.bl.consoles.iter().enumerate() {
            let console = std::fs::read_to_string(c).unwrap();
            let fatal: Vec<&str> = console.lines().filter(|l| l.contains("FATAL ")).collect();
            assert_eq!(fatal.len(), 1, "boot {}: {console}", i + 1);
            assert!(fatal[0].ends_with(&line), "boot {}: {console}", i + 1);
        }
        // PID 1 leaves the line on the console for 5 s before each reboot
        assert!(
            elapsed >= Duration::from_secs(5 * FATAL_BOOTS as u64),
            "{FATAL_BOOTS} boots in {elapsed:?}: no pause before the reboot"
        );
        line
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        harness::tear_down(
            &self.dir,
            self.cgroup.as_deref(),
            &support::assert_nothing_left,
        );
    }
}

/// A storage whose layout cannot be made (a file where `disks/` must be): this used to be
/// exit 2 of PID 1 (`End::Panic`, "device ended with exit status: 2").
#[test]
fn a_bad_storage_layout_reboots_until_the_harness_stops_on_the_fatal_line() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut r = Rig::new("layout");
    let disks = r.storage.join("disks");
    let _ = std::fs::remove_dir_all(&disks);
    std::fs::write(&disks, "not a directory").unwrap();
    let line = r.boot_to_fatal("FATAL storage: layout: create ");
    assert!(line.contains("disks"), "{line}");
}

/// The committed revision lost an object (its trail cannot be checked out): the boot cannot
/// run it and nothing else can make it boot, so it is a FATAL of the `update` step; the line
/// also lands in that revision's pantavisor.log, since the storage is up.
#[test]
fn a_broken_committed_revision_reboots_with_the_fatal_line_in_its_log() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut r = Rig::new("commit");
    let state = std::fs::read_to_string(r.storage.join("trails/0/.pvr/json")).unwrap();
    let key = "a/lxc.container.conf\":\"";
    let i = state.find(key).expect("a's LXC config in the state") + key.len();
    let sha = &state[i..i + 64];
    std::fs::remove_file(r.storage.join("objects").join(sha)).unwrap();
    let _ = std::fs::remove_file(r.storage.join("trails/0/a/lxc.container.conf"));
    let line = r.boot_to_fatal("FATAL update: ");
    assert!(line.contains(sha), "{line}");
    let log = std::fs::read_to_string(r.storage.join("logs/0/pantavisor/pantavisor.log"))
        .unwrap_or_default();
    assert_eq!(
        log.lines().filter(|l| l.ends_with(&line)).count(),
        FATAL_BOOTS,
        "one FATAL line per boot in pantavisor.log:\n{log}"
    );
}

/// How the harness reads a console (no device needed).
#[test]
fn the_harness_finds_the_fatal_line() {
    let c = "[pantavisor] 0 WARN\t -- [config]: x\n\
             [pantavisor] 3 FATAL\t -- [init]: FATAL boot-env: no pv_rev on the command line nor in the boot env\n";
    assert_eq!(
        harness::fatal_line(c).as_deref(),
        Some("FATAL boot-env: no pv_rev on the command line nor in the boot env")
    );
    // a FATAL record that is not the FATAL line of the end, and no record at all
    assert_eq!(
        harness::fatal_line("[pantavisor] 3 FATAL\t -- [device]: reboot\n"),
        None
    );
    assert_eq!(harness::fatal_line(""), None);
}
