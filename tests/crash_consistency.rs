//! Crash consistency, proven by exhaustion (test tier 1).
//!
//! The real code path of an update -- store the objects of revision 1, stage its state, install
//! it (checkout, verify, `pv_try`), reboot into it, boot-time recovery, commit -- runs over the
//! simulated file system, which loses power before its n-th mutating call, for every n. After
//! each cut the power comes back in two ways (only what was fsynced survives; everything
//! survives), a bootloader with U-Boot's semantics boots the device again (the same code path as a
//! real boot), and the test asserts:
//! - the boot env names only revisions whose trails are complete and verify (checked right
//!   after the cut, and after recovery);
//! - no object is reachable under a sha its content does not match;
//! - the device ends on revision 0 or 1, verified, with `trails/current` pointing at it and
//!   bookkeeping that says so (1: committed, DONE, `.pv/done`; 0: `pv_try` cleared, and ERROR
//!   recorded for 1 if it had been tried).
//!
//! Recovery itself is also cut at every one of its steps (a second power cut during the first
//! boot after the first cut), then recovered again.
use pantavisor::bootloader::{self, Bootloader};
use pantavisor::pvs::Policy;
use pantavisor::storage::objects::sha256_hex;
use pantavisor::storage::simfs::{Cut, SimFs};
use pantavisor::storage::trail::Check;
use pantavisor::storage::Storage;
use pantavisor::update::{self, progress::Status, Boot};
use std::path::Path;

const ROOT: &str = "/storage";

struct Revision {
    raw: Vec<u8>,
    objects: Vec<Vec<u8>>,
}

/// A revision with a BSP, one container, a `_config` file and a `.bind` file; `n` changes
/// the container's root volume and run.json.
fn revision(n: u32) -> Revision {
    let kernel = b"kernel image".repeat(50);
    let initrd = b"pantavisor initrd".repeat(40);
    let conf = b"lxc.init.cmd = /bin/app\n".to_vec();
    let root = format!("root volume of revision {n}")
        .into_bytes()
        .repeat(30);
    let etc = format!("setting={n}\n").into_bytes();
    let bind = b"writable file".to_vec();
    let objects = vec![kernel, initrd, conf, root, etc, bind];
    let s: Vec<String> = objects.iter().map(|o| sha256_hex(o)).collect();
    let raw = format!(
        concat!(
            "{{\"#spec\":\"pantavisor-service-system@1\",",
            "\"_config/app/etc/app.conf\":\"{etc}\",",
            "\"app/data.bind\":\"{bind}\",",
            "\"app/lxc.container.conf\":\"{conf}\",",
            "\"app/root.squashfs\":\"{root}\",",
            "\"app/run.json\":{{\"#spec\":\"service-manifest-run@1\",\"config\":\"lxc.container.conf\",\"name\":\"app\",",
            "\"root-volume\":\"root.squashfs\",\"storage\":{{\"lxc-overlay\":{{\"persistence\":\"boot\"}}}},\"type\":\"lxc\",\"volumes\":[\"data.bind\"],\"rev\":{n}}},",
            "\"app/src.json\":{{\"#spec\":\"service-manifest-src@1\"}},",
            "\"bsp/kernel.img\":\"{kernel}\",",
            "\"bsp/pantavisor\":\"{initrd}\",",
            "\"bsp/run.json\":{{\"addons\":[],\"initrd\":\"pantavisor\",\"linux\":\"kernel.img\"}}}}"
        ),
        kernel = s[0],
        initrd = s[1],
        conf = s[2],
        root = s[3],
        etc = s[4],
        bind = s[5],
        n = n
    )
    .into_bytes();
    Revision { raw, objects }
}

/// The harness's U-Boot: `pv_trying` lives in its own memory.
#[derive(Clone, Default)]
struct Loader {
    trying: Option<String>,
    /// It booted revision 1 at least once.
    tried_1: bool,
}

impl Loader {
    fn pick(&mut self, st: &Storage, bl: &dyn Bootloader) -> String {
        let env = bl
            .read(st.fs)
            .expect("the boot env must always be readable");
        let rev = env.rev.clone().expect("pv_rev must always be set");
        match env.try_rev.filter(|t| !t.is_empty()) {
            Some(t) if self.trying.as_deref() == Some(t.as_str()) => {
                self.trying = None;
                rev
            }
            Some(t) => {
                self.trying = Some(t.clone());
                self.tried_1 |= t == "1";
                t
            }
            None => rev,
        }
    }
}

fn factory(fs: &SimFs) -> Loader {
    let st = Storage::new(fs, ROOT);
    let bl = bootloader::for_type("uboot", Path::new(ROOT)).unwrap();
    st.init_layout().unwrap();
    let r0 = revision(0);
    for o in &r0.objects {
        st.put_object(&sha256_hex(o), o).unwrap();
    }
    let state = update::stage(&st, "0", &r0.raw, &Policy::disabled()).unwrap();
    st.checkout("0", &state).unwrap();
    bl.commit(fs, "0").unwrap();
    let mut loader = Loader::default();
    let booted = loader.pick(&st, bl.as_ref());
    assert_eq!(
        update::boot(
            &st,
            bl.as_ref(),
            &booted,
            Check::Rehash,
            &Policy::disabled()
        )
        .unwrap(),
        Boot::Run { trying: false }
    );
    assert_eq!(st.read_progress("0").unwrap().msg, "Factory revision");
    fs.sync_all();
    loader
}

/// The update of revision 1 as the device does it, ending committed. Stops at the first
/// error (the power is off from then on).
fn update_to_1(st: &Storage, bl: &dyn Bootloader, loader: &mut Loader) -> Result<(), String> {
    let r1 = revision(1);
    for o in &r1.objects {
        st.put_object(&sha256_hex(o), o)
            .map_err(|e| e.to_string())?;
    }
    let state = update::stage(st, "1", &r1.raw, &Policy::disabled()).map_err(|e| e.to_string())?;
    update::install(
        st,
        bl,
        &update::hooks::Hooks::none(),
        "1",
        &state,
        update::Entry::Reboot,
    )
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{e:?}"))?;
    let booted = loader.pick(st, bl);
    assert_eq!(booted, "1");
    match update::boot(st, bl, &booted, Check::Rehash, &Policy::disabled())
        .map_err(|e| e.to_string())?
    {
        Boot::Run { trying: true } => {}
        other => return Err(format!("boot into 1 gave {other:?}")),
    }
    // health gates pass (containers are not part of this tier)
    update::commit(st, bl, "1").map_err(|e| e.to_string())
}

/// Boots until the device runs; a revision on probation passes its gates and is committed.
/// Returns the revision it runs, or the error of the step the power cut (when armed).
fn boot_until_running(
    st: &Storage,
    bl: &dyn Bootloader,
    loader: &mut Loader,
) -> Result<String, String> {
    for _ in 0..4 {
        let booted = loader.pick(st, bl);
        match update::boot(st, bl, &booted, Check::Rehash, &Policy::disabled())
            .map_err(|e| format!("boot {booted}: {e}"))?
        {
            Boot::Rollback => continue,
            Boot::Run { trying: true } => {
                update::commit(st, bl, &booted).map_err(|e| e.to_string())?;
                return Ok(booted);
            }
            Boot::Run { trying: false } => return Ok(booted),
        }
    }
    Err("no revision booted after 4 attempts".into())
}

/// Invariants that must hold at any moment, also right after a power cut.
fn assert_env_names_good_revisions(st: &Storage, bl: &dyn Bootloader, ctx: &str) {
    let env = bl
        .read(st.fs)
        .unwrap_or_else(|e| panic!("{ctx}: boot env unreadable: {e}"));
    let mut named = vec![env
        .rev
        .clone()
        .unwrap_or_else(|| panic!("{ctx}: pv_rev unset"))];
    named.extend(env.try_rev.filter(|t| !t.is_empty()));
    for rev in named {
        let state =
            update::load_state(st, &rev).unwrap_or_else(|e| panic!("{ctx}: env names {rev}: {e}"));
        update::verify(st, &rev, &state, Check::Rehash)
            .unwrap_or_else(|e| panic!("{ctx}: env names {rev}: {e}"));
    }
    for sha in st.list_objects().unwrap() {
        let data = st.fs.read(&st.object_path(&sha).unwrap()).unwrap();
        assert_eq!(
            sha256_hex(&data),
            sha,
            "{ctx}: object reachable under a wrong sha"
        );
    }
}

fn assert_final(st: &Storage, bl: &dyn Bootloader, running: &str, loader_tried_1: bool, ctx: &str) {
    assert_env_names_good_revisions(st, bl, ctx);
    let env = bl.read(st.fs).unwrap();
    assert_eq!(
        env.try_rev.filter(|t| !t.is_empty()),
        None,
        "{ctx}: pv_try left set"
    );
    assert_eq!(
        st.current().unwrap().as_deref(),
        Some(running),
        "{ctx}: trails/current"
    );
    match running {
        "1" => {
            assert_eq!(env.rev.as_deref(), Some("1"), "{ctx}");
            assert_eq!(
                st.read_progress("1").map(|p| p.status),
                Some(Status::Done),
                "{ctx}"
            );
            assert!(st.is_done("1"), "{ctx}: .pv/done");
        }
        "0" => {
            assert_eq!(env.rev.as_deref(), Some("0"), "{ctx}");
            if loader_tried_1 {
                assert_eq!(
                    st.read_progress("1").map(|p| p.status),
                    Some(Status::Error),
                    "{ctx}: tried update not recorded"
                );
            }
        }
        other => panic!("{ctx}: device runs {other}"),
    }
}

#[test]
fn every_crash_point_of_install_and_commit_leaves_a_bootable_verified_revision() {
    let base = SimFs::new();
    let loader0 = factory(&base);
    let bl = bootloader::for_type("uboot", Path::new(ROOT)).unwrap();

    // The reference run: how many mutating steps the update takes.
    let steps = {
        let fs = base.snapshot();
        let st = Storage::new(&fs, ROOT);
        let mut loader = loader0.clone();
        update_to_1(&st, bl.as_ref(), &mut loader).unwrap();
        assert_final(&st, bl.as_ref(), "1", true, "no crash");
        fs.ops()
    };
    assert!(
        steps > 50,
        "the update should take many steps, took {steps}"
    );

    let mut explored = 0u64;
    let mut nested = 0u64;
    let mut ended = [0u64; 2]; // on revision 0, on revision 1
    for k in 1..=steps {
        for cut in [Cut::DurableOnly, Cut::KeepAll] {
            let fs = base.snapshot();
            let st = Storage::new(&fs, ROOT);
            let mut loader = loader0.clone();
            fs.arm_crash(k);
            let r = update_to_1(&st, bl.as_ref(), &mut loader);
            assert!(r.is_err() && fs.crashed(), "step {k} did not crash");
            fs.power_cut(cut);
            explored += 1;
            let ctx = format!("cut before step {k}/{steps} ({cut:?})");
            assert_env_names_good_revisions(&st, bl.as_ref(), &ctx);

            // The first boot after the cut, itself cut at each of its steps.
            let after_cut = fs.snapshot();
            let recovery_steps = {
                let before = fs.ops();
                let mut l = loader.clone();
                let running = boot_until_running(&st, bl.as_ref(), &mut l)
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_final(&st, bl.as_ref(), &running, l.tried_1, &ctx);
                ended[(running == "1") as usize] += 1;
                fs.ops() - before
            };
            for j in 1..=recovery_steps {
                for cut2 in [Cut::DurableOnly, Cut::KeepAll] {
                    let fs2 = after_cut.snapshot();
                    let st2 = Storage::new(&fs2, ROOT);
                    let mut l = loader.clone();
                    fs2.arm_crash(j);
                    let r = boot_until_running(&st2, bl.as_ref(), &mut l);
                    assert!(r.is_err(), "{ctx}: recovery step {j} did not crash");
                    fs2.power_cut(cut2);
                    nested += 1;
                    let ctx2 = format!(
                        "{ctx}, then cut before recovery step {j}/{recovery_steps} ({cut2:?})"
                    );
                    assert_env_names_good_revisions(&st2, bl.as_ref(), &ctx2);
                    let running = boot_until_running(&st2, bl.as_ref(), &mut l)
                        .unwrap_or_else(|e| panic!("{ctx2}: {e}"));
                    assert_final(&st2, bl.as_ref(), &running, l.tried_1, &ctx2);
                }
            }
        }
    }
    println!(
        "crash points explored: {} in the update ({} steps x 2 power-cut outcomes), {} more inside the recovery boot; the device ended on revision 0 in {} and on revision 1 in {} of the first-level cuts",
        explored, steps, nested, ended[0], ended[1]
    );
}
