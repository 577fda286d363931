//! The Buildroot external tree (buildroot/): Buildroot itself cannot be fetched here, so
//! `tests/buildroot_check.py` re-states the rules of its `utils/check-package -b` and of its
//! manual for cargo packages of an external tree. These tests run it on the tree, prove that
//! it catches each rule on a broken copy, run the post-image script the way Buildroot does
//! and check the storage image it makes, and check that `buildroot/make-dist` makes the
//! reproducible, pre-vendored source tarball that pantavisor.hash is about.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("buildroot-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn check(tree: &Path) -> Output {
    run(Command::new("python3")
        .arg(repo().join("tests/buildroot_check.py"))
        .arg(tree)
        .arg(repo()))
}

fn copy_tree(from: &Path, to: &Path) {
    let st = run(Command::new("cp").arg("-a").arg(from).arg(to));
    assert!(st.status.success(), "{}", text(&st));
    // a tarball left by make-dist is no part of the tree
    let _ = std::fs::remove_dir_all(to.join("dist"));
}

#[test]
fn tree_follows_check_package_rules() {
    let out = check(&repo().join("buildroot"));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("\n0 warnings generated"), "{t}");
    // it did look at every kind of file
    for f in [
        "package/pantavisor/Config.in",
        "package/pantavisor/pantavisor.mk",
        "package/pantavisor/pantavisor.hash",
        "configs/pantavisor_qemu_aarch64_virt_defconfig",
        "board/qemu-aarch64-virt/post-image.sh",
        "external.desc",
        "Config.in",
    ] {
        assert!(repo().join("buildroot").join(f).is_file(), "missing {f}");
    }
    let lines: usize = t
        .lines()
        .find_map(|l| l.strip_suffix(" lines processed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(lines > 150, "{t}");
}

/// Each broken copy must be refused with the rule's message.
#[test]
fn checker_catches_each_rule() {
    let cases: &[(&str, &str, &str, &str)] = &[
        // (file, replace this, with this, expected message)
        (
            "package/pantavisor/Config.in",
            "\tbool \"install as /init\"",
            "    bool \"install as /init\"",
            "should be indented with one tab",
        ),
        (
            "package/pantavisor/Config.in",
            "\t  PV_STORAGE_FSTYPE of /etc/pantavisor.config.",
            "\t  PV_STORAGE_FSTYPE of /etc/pantavisor.config, which is a line far too long.",
            "help text: <tab><2 spaces><62 chars>",
        ),
        (
            "package/pantavisor/Config.in",
            "\tstring \"storage file system type\"\n\tdefault \"ext4\"",
            "\tdefault \"ext4\"\n\tstring \"storage file system type\"",
            "attributes order",
        ),
        (
            "package/pantavisor/Config.in",
            "\tselect BR2_PACKAGE_HOST_RUSTC\n",
            "",
            "must select BR2_PACKAGE_HOST_RUSTC",
        ),
        (
            "package/pantavisor/Config.in",
            "\tbool \"install as /init\"\n",
            "\tbool \"install as /init\"\n\tdefault n\n",
            "'default n' is redundant",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "#\n# pantavisor\n#",
            "#\n#  pantavisor\n##",
            "should be 1 hash",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "PANTAVISOR_LICENSE_FILES = LICENSE\n",
            "",
            "PANTAVISOR_LICENSE_FILES is not set",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "PANTAVISOR_LICENSE = MIT\n",
            "PANTAVISOR_LICENSE = MIT\nPANTAVISOR_SOURCE = pantavisor-$(PANTAVISOR_VERSION).tar.gz\n",
            "remove default value of _SOURCE variable",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "PANTAVISOR_LICENSE = MIT\n",
            "PANTAVISOR_LICENSE = MIT\nPANTAVISR_TYPO = 1\n",
            "possible typo: PANTAVISR_TYPO -> *PANTAVISOR*",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "PANTAVISOR_LICENSE = MIT\n",
            "PANTAVISOR_LICENSE = MIT\nPANTAVISOR_INSTALL_TARGET = YES\n",
            "useless default value",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "PANTAVISOR_LICENSE = MIT\n",
            "PANTAVISOR_LICENSE = MIT\nPANTAVISOR_LICENSE = GPL-2.0\n",
            "unconditional override of variable PANTAVISOR_LICENSE",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "\tln -sf pantavisor $(TARGET_DIR)/usr/bin/pvcontrol",
            "    ln -sf pantavisor ${TARGET_DIR}/usr/bin/pvcontrol",
            "expected indent with tabs",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "\tln -sf pantavisor $(TARGET_DIR)/usr/bin/pvcontrol",
            "\tln -sf pantavisor ${TARGET_DIR}/usr/bin/pvcontrol",
            "use $() to delimit variables, not ${}",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "\tCARGO_PROFILE_RELEASE_OPT_LEVEL=z \\",
            "\tCARGO_PROFILE_RELEASE_OPT_LEVEL=z  \\",
            "use only one space before backslash",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "PANTAVISOR_VERSION = 0.1.0",
            "PANTAVISOR_VERSION = 9.9.9",
            "differs from Cargo.toml's version",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "$(eval $(cargo-package))",
            "$(eval $(generic-package))",
            "last line must be $(eval $(cargo-package))",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "ifeq ($(BR2_PACKAGE_PANTAVISOR_SIZE_PROFILE),y)",
            "ifeq ($(BR2_PACKAGE_PANTAVISOR_SIZE_PROFILES),y)",
            "BR2_PACKAGE_PANTAVISOR_SIZE_PROFILE is not used by pantavisor.mk",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "PANTAVISOR_LICENSE_FILES = LICENSE\n",
            "PANTAVISOR_LICENSE_FILES = LICENSE\n\n",
            "consecutive empty lines",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "PANTAVISOR_CARGO_BUILD_OPTS += --features hub\n",
            "PANTAVISOR_CARGO_BUILD_OPTS += --features hubs\n",
            "cargo feature 'hub' has no Config.in option passing --features hub",
        ),
        (
            "package/pantavisor/pantavisor.mk",
            "PANTAVISOR_LICENSE = MIT\n",
            "PANTAVISOR_LICENSE = MIT \n",
            "trailing whitespace",
        ),
        (
            "package/pantavisor/pantavisor.hash",
            "sha256  6c423e3c",
            "sha256 6c423e3c",
            "separation does not match expectation",
        ),
        (
            "package/pantavisor/pantavisor.hash",
            "sha256  6c423e3c",
            "sha256  6c423e3",
            "hash size does not match type",
        ),
        (
            "package/pantavisor/pantavisor.hash",
            "sha256  6c423e3c",
            "sha257  6c423e3c",
            "unexpected type of hash",
        ),
        (
            "package/pantavisor/pantavisor.hash",
            "sha256  6c423e3c",
            "sha256  7c423e3c",
            "hash of LICENSE is wrong",
        ),
        (
            "package/pantavisor/pantavisor.hash",
            "  LICENSE\n",
            "  COPYING\n",
            "no hash for license file LICENSE",
        ),
        (
            "package/pantavisor/pantavisor.hash",
            "  pantavisor-0.1.0.tar.gz",
            "  pantavisor-0.1.0.tar.xz",
            "no hash for the source tarball pantavisor-0.1.0.tar.gz",
        ),
        (
            "configs/pantavisor_qemu_aarch64_virt_defconfig",
            "BR2_DOWNLOAD_FORCE_CHECK_HASHES=y\n",
            "",
            "missing BR2_DOWNLOAD_FORCE_CHECK_HASHES",
        ),
        (
            "configs/pantavisor_qemu_aarch64_virt_defconfig",
            "qemu-aarch64-virt/linux.fragment",
            "qemu-aarch64-virt/linux.fragmen",
            "which does not exist",
        ),
        (
            "board/qemu-aarch64-virt/post-image.sh",
            "rm -rf \"${WORK}\"",
            "rm -rf ${WORK}/",
            "run 'shellcheck' and fix the warnings",
        ),
        (
            "external.desc",
            "name: PANTAVISOR",
            "name: PANTA-VISOR",
            "external.desc needs 'name: <NAME>'",
        ),
        (
            "Config.in",
            "source \"$BR2_EXTERNAL_PANTAVISOR_PATH/package/pantavisor/Config.in\"",
            "    source \"$BR2_EXTERNAL_PANTAVISOR_PATH/package/pantavisor/Config.in\"",
            "should not be indented",
        ),
    ];
    let base = scratch("mutations");
    for (i, (file, from, to, want)) in cases.iter().enumerate() {
        let tree = base.join(format!("case{i}"));
        copy_tree(&repo().join("buildroot"), &tree);
        let p = tree.join(file);
        let orig = std::fs::read_to_string(&p).unwrap();
        assert!(orig.contains(from), "case {i}: {file} has no {from:?}");
        std::fs::write(&p, orig.replacen(from, to, 1)).unwrap();
        let out = check(&tree);
        let t = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "case {i} ({want}) not refused:\n{t}"
        );
        assert!(t.contains(want), "case {i}: expected {want:?} in:\n{t}");
    }
    // executable Config.in / .mk files are refused too
    let tree = base.join("exec");
    copy_tree(&repo().join("buildroot"), &tree);
    let mk = tree.join("package/pantavisor/pantavisor.mk");
    let st = run(Command::new("chmod").arg("+x").arg(&mk));
    assert!(st.status.success());
    let t = text(&check(&tree));
    assert!(
        t.contains("This file does not need to be executable"),
        "{t}"
    );
}

/// The post-image script, run as Buildroot runs it (BINARIES_DIR as $1; TARGET_DIR and
/// BR2_EXTERNAL_PANTAVISOR_PATH in the environment), makes an ext4 storage image labelled
/// pvstorage holding a factory revision that pantavisor accepts, and the qemu command line.
#[test]
fn post_image_makes_the_factory_storage() {
    let w = scratch("post-image");
    let target = w.join("target");
    let images = w.join("images");
    std::fs::create_dir_all(target.join("bin")).unwrap();
    std::fs::create_dir_all(&images).unwrap();
    std::fs::copy("/bin/busybox", target.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", target.join("bin/sh")).unwrap();
    std::os::unix::fs::symlink("busybox", target.join("bin/sleep")).unwrap();
    let out = run(
        Command::new(repo().join("buildroot/board/qemu-aarch64-virt/post-image.sh"))
            .arg(&images)
            .env("TARGET_DIR", &target)
            .env("BR2_EXTERNAL_PANTAVISOR_PATH", repo().join("buildroot"))
            .env("PV_STORAGE_SIZE", "64M"),
    );
    assert!(out.status.success(), "{}", text(&out));

    let img = images.join("storage.ext4");
    let label = run(Command::new("e2label").arg(&img));
    assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), "pvstorage");
    let fsck = run(Command::new("e2fsck").arg("-fn").arg(&img));
    assert!(fsck.status.success(), "{}", text(&fsck));
    let cat = |path: &str| -> Vec<u8> {
        let o = run(Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(&img));
        o.stdout
    };
    let env = String::from_utf8_lossy(&cat("/boot/uboot.txt")).to_string();
    assert!(env.contains("pv_rev=0"), "boot env: {env:?}");
    let state = cat("/trails/0/.pvr/json");
    let state_file = w.join("state.json");
    std::fs::write(&state_file, &state).unwrap();
    let cs = run(Command::new(env!("CARGO_BIN_EXE_pantavisor"))
        .arg("check-state")
        .arg(&state_file));
    assert!(cs.status.success(), "check-state: {}", text(&cs));
    let s = String::from_utf8_lossy(&state).to_string();
    assert!(s.contains("\"os/root.squashfs\""), "{s}");
    // every object the state names is in the image (objects/<sha256>)
    let objs = String::from_utf8_lossy(
        &run(Command::new("debugfs")
            .arg("-R")
            .arg("ls -p /objects")
            .arg(&img))
        .stdout,
    )
    .to_string();
    let shas: Vec<&str> = s
        .split('"')
        .filter(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    assert_eq!(shas.len(), 2, "{s}");
    for sha in shas {
        assert!(objs.contains(sha), "object {sha} missing from the image");
    }
    let q = std::fs::read_to_string(images.join("start-qemu.sh")).unwrap();
    assert!(
        q.contains("-initrd rootfs.cpio") && q.contains("storage.ext4"),
        "{q}"
    );
}

/// `buildroot/make-dist` makes the tarball pantavisor.mk builds: reproducible (same bytes
/// twice), the crates vendored where Buildroot's cargo post-process looks for them (so it
/// keeps the file as is, and the hash is this file's), no buildroot/ inside.
#[test]
fn make_dist_is_reproducible_and_vendored() {
    let w = scratch("dist");
    let mut sums = vec![];
    for d in ["a", "b"] {
        let out = run(Command::new(repo().join("buildroot/make-dist"))
            .arg("--out")
            .arg(w.join(d)));
        let t = text(&out);
        assert!(out.status.success(), "{t}");
        let line = t
            .lines()
            .find(|l| l.starts_with("sha256  "))
            .unwrap_or_else(|| panic!("{t}"))
            .to_string();
        assert!(line.ends_with("  pantavisor-0.1.0.tar.gz"), "{line}");
        sums.push(line);
    }
    assert_eq!(sums[0], sums[1], "make-dist is not reproducible");
    let tarball = w.join("a/pantavisor-0.1.0.tar.gz");
    let list = String::from_utf8_lossy(&run(Command::new("tar").arg("tzf").arg(&tarball)).stdout)
        .to_string();
    for want in [
        "pantavisor-0.1.0/Cargo.toml",
        "pantavisor-0.1.0/Cargo.lock",
        "pantavisor-0.1.0/LICENSE",
        "pantavisor-0.1.0/src/main.rs",
        "pantavisor-0.1.0/VENDOR/sha2/Cargo.toml",
        "pantavisor-0.1.0/VENDOR/libc/Cargo.toml",
        "pantavisor-0.1.0/.cargo/config.toml",
    ] {
        assert!(list.lines().any(|l| l == want), "{want} not in the tarball");
    }
    assert!(
        !list
            .lines()
            .any(|l| l.starts_with("pantavisor-0.1.0/buildroot/")),
        "buildroot/ is in the tarball"
    );
    let cfg = run(Command::new("tar")
        .arg("xzf")
        .arg(&tarball)
        .arg("-O")
        .arg("pantavisor-0.1.0/.cargo/config.toml"));
    let cfg = String::from_utf8_lossy(&cfg.stdout).to_string();
    assert!(
        cfg.contains("replace-with = \"vendored-sources\"")
            && cfg.contains("directory = \"VENDOR\""),
        "{cfg}"
    );
}
