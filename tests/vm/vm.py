#!/usr/bin/env python3
"""The VM tier: pantavisor as the real PID 1 of the Debian kernel under qemu (TCG).

    vm.py --bin PANTAVISOR --kernel DIR --work DIR [CASE ...]

PANTAVISOR is the static x86_64 musl binary; it is the initramfs' /init (embedded mode, no
shell) and, under the name `pvcontrol`, the pv-ctrl client of the mgmt test container. DIR is
what tests/vm/fetch-kernel made (vmlinux, kroot/lib/modules/<kver>, kver). The storage is an
ext4 image (label pvstorage) on a virtio disk, made from a factory revision of busybox
containers by scripts/pvmk. This script is the bootloader: before every boot it reads
pv_rev/pv_try from <storage>/boot/uboot.txt inside the image (debugfs, nothing mounted) and
plays U-Boot exactly as interfaces.md writes it, pv_trying being its own memory; qemu runs
with -no-reboot, so every reboot of the guest is a qemu exit and a new boot here.

Cases (all by default): boot, memory, update, rollback, resets, fatal, verity (verity.py), crypt
(crypt.py), isolation (isolation.py). update, rollback and resets make the update from inside
the guest through pv-ctrl (LOCAL_RUN).

A boot that reboots after a `FATAL <step>: <reason>` line is logged with the line; after
FATAL_BOOTS such boots in a row with the same line the bootloader stops with a failure that
names it, instead of booting the same fatal error until the case's boot limit.
"""
import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import verity  # the dm-verity case, tests/vm/verity.py
import crypt as vmcrypt  # tests/vm/crypt.py (this folder comes first on sys.path)
import isolation  # tests/vm/isolation.py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PVMK = os.path.join(ROOT, "scripts", "pvmk")
LABEL = "pvstorage"
IMG_SIZE = "256M"
BOOT_TIMEOUT = float(os.environ.get("PV_VM_BOOT_TIMEOUT", "90"))
COMMIT_DELAY = 3
# Two guest CPUs, but one TCG thread for both (round robin). With thread=multi about one boot
# in 13 hung for good (3 of 40, 0 of 80 without it): a soft lockup of a vCPU sitting on a
# jump-label site of __kmem_cache_alloc_node while the other CPU enabled the memory
# controller (static keys are patched then) -- cross-CPU code patching under multi-threaded
# TCG. PV_VM_ACCEL / PV_VM_SMP override.
ACCEL = os.environ.get("PV_VM_ACCEL", "tcg,thread=single")
SMP = os.environ.get("PV_VM_SMP", "2")
# quiet: the console shows warnings and worse (and what containers write to /dev/kmsg at <2>);
# panic=-1 and softlockup_panic=1: a panic or a lockup ends the run at once (pvpanic -> qemu
# exit status 1) instead of eating the boot's timeout, and panic_print=0x20 replays the whole
# kernel log on the console then (the stack traces quiet hid). PV_VM_APPEND adds words.
APPEND = ("console=ttyS0 quiet panic=-1 softlockup_panic=1 softlockup_all_cpu_backtrace=1 "
          "panic_print=0x20 mitigations=off")

# kernel modules the Debian kernel needs before the storage (virtio disk, ext4) and for the
# containers (loop, squashfs, overlay); pvpanic makes a guest panic a qemu exit status.
# crc32c-intel is left out: it fails with ENODEV on TCG's default CPU (crc32c_generic serves).
EARLY_MODULES = ["virtio_pci", "virtio_blk", "ext4", "loop", "squashfs", "overlay", "pvpanic-mmio",
                 "dm-mod", "dm-verity"] + vmcrypt.MODULES
SKIP_MODULES = {"crc32c-intel.ko"}

CASES = ["boot", "memory", "update", "rollback", "resets", "fatal", "verity", "crypt", "isolation"]

STOPPED = "[device]: all containers stopped"
COMMITTED = "[update]: revision locals/good committed"

# kernel console lines that fail a run, whatever the boot's end (a killed boot included)
KERNEL_BAD = re.compile(r"Kernel panic|BUG:|Oops|soft lockup|hung_task|blocked for more than|"
                        r"EXT4-fs error|I/O error|WARNING:|Call Trace|segfault|general protection")
# kernel console lines that are expected (quiet shows only warnings and worse)
KERNEL_OK = re.compile(r"Memory cgroup out of memory: Killed process \d+ \(dd\)|reboot: (Restarting system|Power down)")
NEEDS_LOCAL_RUN = {"update", "rollback", "resets", "verity"}

# A fatal error of pantavisor: one line "FATAL <step>: <reason>" (the message of a FATAL record,
# "[pantavisor] <tsec> FATAL\t -- [init]: FATAL <step>: <reason>"), then a reboot. It would
# reboot forever, so the bootloader gives up after FATAL_BOOTS boots in a row that rebooted
# after the same line.
FATAL_LINE = re.compile(r"FATAL [a-z-]+: .*$")
FATAL_BOOTS = 3


def fatal_line(lines):
    """The `FATAL <step>: <reason>` of a boot's console (the last one), None without one."""
    for _, l in reversed(lines):
        m = FATAL_LINE.search(l)
        if m:
            return m.group(0)
    return None


def log(msg):
    print(f"[vm] {msg}", flush=True)


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# ---------------------------------------------------------------------------------------------
# the storage image, read from outside without mounting it


def debugfs(img, request):
    """debugfs in catastrophic mode (-c: no bitmaps) without checksum verification (-n): it
    reads files the way a boot loader's ext4 driver does -- the blocks as they are on disk,
    the journal not replayed, and no refusal over a bitmap whose checksum was not written
    back yet (after a hard reset the plain mode can refuse the whole file system)."""
    return subprocess.run(["debugfs", "-c", "-n", "-R", request, img], capture_output=True)


def debugfs_cat(img, path):
    """The bytes of `path` inside the ext4 image, None when it does not exist."""
    p = debugfs(img, f"cat {path}")
    if p.returncode != 0 or b"File not found" in p.stderr:
        return None
    return p.stdout


def debugfs_exists(img, path):
    p = debugfs(img, f"stat {path}")
    return p.returncode == 0 and b"File not found" not in p.stderr and b"Inode:" in p.stdout


def read_env(img):
    """pv_rev, pv_try of <storage>/boot/uboot.txt: `key=value\\0` records ended by `\\0\\0`;
    an empty value reads as unset."""
    data = debugfs_cat(img, "/boot/uboot.txt") or b""
    env = {}
    for rec in data.split(b"\0"):
        if not rec:
            break
        k, _, v = rec.decode(errors="replace").partition("=")
        if k in ("pv_rev", "pv_try"):
            env[k] = v or None
    return env.get("pv_rev"), env.get("pv_try")


def needs_recovery(img):
    """Whether the ext4 journal holds transactions not yet written to their home blocks (the
    file system was not unmounted: a hard reset)."""
    p = subprocess.run(["dumpe2fs", "-h", img], capture_output=True, text=True)
    return "needs_recovery" in p.stdout


def read_env_replayed(img):
    """The env as the kernel will see it once it mounted the storage: read from a copy of the
    image whose journal was replayed (the image itself is left as the reset left it)."""
    if not needs_recovery(img):
        return read_env(img)
    copy = img + ".replayed"
    run(["cp", "--sparse=always", img, copy])
    try:
        p = subprocess.run(["e2fsck", "-E", "journal_only", "-p", copy], capture_output=True, text=True)
        check(p.returncode in (0, 1), f"journal replay on a copy of {img}: rc {p.returncode} {p.stdout}{p.stderr}")
        return read_env(copy)
    finally:
        os.unlink(copy)


def progress(img, rev):
    raw = debugfs_cat(img, f"/trails/{rev}/.pv/progress")
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"status": "?", "raw": raw.decode(errors="replace")}


def fsck(img):
    p = subprocess.run(["e2fsck", "-fn", img], capture_output=True, text=True)
    check(p.returncode == 0, f"e2fsck -fn {img}: rc {p.returncode}\n{p.stdout}{p.stderr}")


# ---------------------------------------------------------------------------------------------
# one qemu run


class Boot:
    """One boot: the revision the bootloader chose, its command line, the serial console
    lines with their arrival time (s since qemu was started), and how it ended."""

    def __init__(self, n, rev, cmdline):
        self.n, self.rev, self.cmdline = n, rev, cmdline
        self.lines = []
        self.end = None  # reboot | poweroff | killed | panic | timeout | error
        self.rc = None
        self.elapsed = None
        self.killed_at = None

    def text(self):
        return "\n".join(l for _, l in self.lines)

    def first(self, needle):
        for t, l in self.lines:
            if needle in l:
                return t
        return None

    def kmsg(self, tag):
        """(arrival, kernel timestamp, text) of the lines a container wrote to /dev/kmsg."""
        out = []
        for t, l in self.lines:
            m = re.search(r"\[\s*(\d+\.\d+)\] " + tag + r": (.*)", l)
            if m:
                out.append((t, float(m.group(1)), m.group(2)))
        return out

    def kernel_start(self):
        """When the kernel started, in qemu time: the smallest (arrival - kernel timestamp)
        of the kmsg lines (their serial latency is small)."""
        d = [t - k for tag in ("MGMT", "APP", "HOG") for t, k, _ in self.kmsg(tag)]
        return min(d) if d else None


class Vm:
    def __init__(self, a, work):
        self.vmlinux = os.path.join(a.kernel, "vmlinux")
        self.initrd = os.path.join(work, "initramfs.cpio")
        self.work = work
        self.boots = 0

    def boot(self, n, img, rev, cmdline, logname, kill=None, timeout=BOOT_TIMEOUT):
        """Runs qemu until the guest reboots or powers off (each is a qemu exit, -no-reboot),
        `kill(boot, now)` says so (SIGKILL: nothing is synced, the guest's page cache is
        lost), or `timeout` passes."""
        self.boots += 1
        b = Boot(n, rev, cmdline)
        cmd = [
            "qemu-system-x86_64", "-accel", ACCEL, "-smp", SMP, "-m", "512",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", "stdio", "-kernel", self.vmlinux, "-initrd", self.initrd,
            "-append", f"{APPEND} {os.environ.get('PV_VM_APPEND', '')} {cmdline}".replace("  ", " "),
            "-drive", f"file={img},if=virtio,format=raw",
            "-device", "pvpanic", "-action", "panic=exit-failure",
        ]
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        logf = open(os.path.join(self.work, logname), "w")
        logf.write(f"# boot {b.n}: qemu {' '.join(cmd)}\n")

        def reader():
            for raw in iter(p.stdout.readline, b""):
                t = time.monotonic() - t0
                line = raw.decode(errors="replace").rstrip("\r\n").replace("\r", "")
                b.lines.append((t, line))
                logf.write(f"{t:8.3f} {line}\n")
                logf.flush()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        while p.poll() is None:
            now = time.monotonic() - t0
            if kill is not None and kill(b, now):
                p.send_signal(signal.SIGKILL)
                p.wait()
                b.end, b.killed_at = "killed", now
                break
            if now > timeout:
                p.send_signal(signal.SIGKILL)
                p.wait()
                b.end = "timeout"
                break
            time.sleep(0.02)
        th.join(5)
        b.rc = p.returncode
        b.elapsed = time.monotonic() - t0
        text = b.text()
        if b.end is None:
            if "Kernel panic" in text or b.rc == 1:
                b.end = "panic"
            elif b.rc == 0 and "reboot: Restarting system" in text:
                b.end = "reboot"
            elif b.rc == 0 and "reboot: Power down" in text:
                b.end = "poweroff"
            else:
                b.end = "error"
        logf.write(f"# end: {b.end} rc={b.rc} after {b.elapsed:.2f} s\n")
        logf.close()
        return b


class Bootloader:
    """U-Boot as interfaces.md writes it; pv_trying is this object's memory (U-Boot keeps it
    in pv.env). It never writes uboot.txt. It reads uboot.txt the way U-Boot's ext4 loader
    does, from the blocks on disk without replaying the journal (PV_VM_ENV_READ=replayed reads
    it as a journal-replaying reader would, for comparison). After a hard reset the two can
    differ; every such stale read is recorded and printed."""

    def __init__(self, vm, img, tag):
        self.vm, self.img, self.tag = vm, img, tag
        self.trying = None
        self.boots = []
        self.stale = []
        self.fatal = []  # the FATAL line of each boot of the current run of identical ones
        self.kernel_expected = None  # a case's kernel lines that KERNEL_BAD would match
        self.replayed = os.environ.get("PV_VM_ENV_READ", "raw") == "replayed"

    def env(self):
        raw = read_env(self.img)
        if not needs_recovery(self.img):
            return raw
        rep = read_env_replayed(self.img)
        if rep != raw:
            self.stale.append((len(self.boots) + 1, raw, rep))
            log(f"  {self.tag}: the journal holds a newer env than the blocks on disk: "
                f"on disk pv_rev={raw[0]} pv_try={raw[1]}, journal replayed pv_rev={rep[0]} "
                f"pv_try={rep[1]}; the bootloader reads {'the replayed one' if self.replayed else 'the one on disk'}")
        return rep if self.replayed else raw

    def pick(self):
        rev, try_ = self.env()
        rev = rev or "0"
        if try_ is not None:
            if self.trying == try_:
                booted, self.trying = rev, None  # second attempt: fall back
            else:
                booted = self.trying = try_  # first attempt
        else:
            booted = rev
        cmdline = f"pv_rev={booted}" + (f" pv_try={try_}" if try_ is not None else "")
        return booted, cmdline

    def boot(self, kill=None):
        rev, cmdline = self.pick()
        n = len(self.boots) + 1
        b = self.vm.boot(n, self.img, rev, cmdline, f"{self.tag}-boot{n}.log", kill)
        self.boots.append(b)
        extra = f" killed at {b.killed_at:.2f} s" if b.end == "killed" else ""
        log(f"  {self.tag} boot {len(self.boots)}: '{cmdline}' -> {b.end}{extra} "
            f"(qemu rc {b.rc}, {b.elapsed:.1f} s)")
        for _, l in b.lines:
            if re.search(r"\] (MGMT|APP|HOG): ", l):
                log("      " + l.split("] ", 1)[1])
        check(b.end not in ("panic", "timeout", "error"), self.failure(b))
        kernel = [l for _, l in b.lines if re.match(r"\[\s*\d+\.\d+\] ", l)
                  and not re.search(r"\] (MGMT|APP|HOG): ", l)]
        bad = [l for l in kernel if KERNEL_BAD.search(l)
               and not (self.kernel_expected and self.kernel_expected.search(l))]
        check(not bad, f"{self.tag} boot {b.n}: the kernel complained:\n      " + "\n      ".join(bad[:20]))
        for l in kernel:
            if not KERNEL_OK.search(l):
                log(f"  {self.tag} boot {b.n}: kernel says: {l}")
        if b.end in ("reboot", "poweroff"):
            # an orderly end: pantavisor synced and unmounted the storage before reboot(2)
            check(not needs_recovery(self.img),
                  f"{self.tag} boot {b.n}: the storage was not cleanly unmounted by the orderly {b.end}")
        line = fatal_line(b.lines) if b.end == "reboot" else None
        if line is None:
            self.fatal = []
        else:
            log(f"  {self.tag} boot {b.n}: {line}")
            self.fatal = (self.fatal if self.fatal and self.fatal[-1] == line else []) + [line]
        check(len(self.fatal) < FATAL_BOOTS,
              f"{self.tag}: {FATAL_BOOTS} boots in a row rebooted after the same fatal error, "
              f"stopping: {line}\n" + self.failure(b))
        return b

    def run(self, max_boots, kill=None):
        """Boots until a power off (or a kill); every other end is a failure, and so are
        FATAL_BOOTS reboots in a row after the same FATAL line."""
        for _ in range(max_boots):
            b = self.boot(kill)
            if b.end in ("poweroff", "killed"):
                return b
        raise Fail(f"{self.tag}: no power off after {max_boots} boots\n" + self.failure(self.boots[-1]))

    def failure(self, b):
        tail = "\n".join(f"      {l}" for _, l in b.lines[-40:])
        return (f"{self.tag} boot {b.n} ('{b.cmdline}') ended: {b.end} (qemu rc {b.rc}) "
                f"after {b.elapsed:.1f} s; last serial lines:\n{tail}")


# ---------------------------------------------------------------------------------------------
# what the guest is made of


def busybox_rootfs(d, applets=()):
    for x in ("bin", "etc", "proc", "sys", "dev", "tmp", "run", "data"):
        os.makedirs(os.path.join(d, x), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(d, "bin/busybox"))
    for a in ["sh", "sleep", "cat", "echo", "sed", "grep", "wc", "dd", "sync", "ls", "tee"] + list(applets):
        os.symlink("busybox", os.path.join(d, "bin", a))


def modules_for(kernel):
    kver = open(os.path.join(kernel, "kver")).read().strip()
    kroot = os.path.join(kernel, "kroot")
    out = []
    for m in EARLY_MODULES:
        p = subprocess.run(["modprobe", "-d", kroot, "-S", kver, "--show-depends", m],
                           capture_output=True, text=True)
        check(p.returncode == 0, f"modprobe --show-depends {m} ({kver}): {p.stderr.strip()}")
        for line in p.stdout.splitlines():
            w = line.split()
            if len(w) >= 2 and w[0] == "insmod" and os.path.basename(w[1]) not in SKIP_MODULES:
                if w[1] not in out:
                    out.append(w[1])
    return kver, out


def build_initramfs(a, work):
    """/init is the pantavisor binary itself; its config says embedded mode and where the
    storage is; the early modules and their load order are in /lib/modules/pv-early."""
    d = os.path.join(work, "initramfs")
    for x in ("etc", "proc", "sys", "dev", "run", "storage", "lib/modules/pv-early"):
        os.makedirs(os.path.join(d, x), exist_ok=True)
    shutil.copy(a.bin, os.path.join(d, "init"))
    os.chmod(os.path.join(d, "init"), 0o755)
    with open(os.path.join(d, "etc/pantavisor.config"), "w") as f:
        f.write("PV_SYSTEM_INIT_MODE=embedded\n"
                f"PV_STORAGE_DEVICE=LABEL={LABEL}\n"
                "PV_STORAGE_FSTYPE=ext4\n"
                "PV_STORAGE_WAIT=30\n"
                "PV_BOOTLOADER_TYPE=uboot\n"
                "PV_LOG_LEVEL=3\n"
                # a device updated locally (no Hub here): no Hub client, no Hub gate
                "PV_CONTROL_REMOTE=0\n"
                f"PV_UPDATER_COMMIT_DELAY={COMMIT_DELAY}\n")
    kver, mods = modules_for(a.kernel)
    names = []
    for m in mods:
        shutil.copy(m, os.path.join(d, "lib/modules/pv-early"))
        names.append(os.path.basename(m))
    with open(os.path.join(d, "lib/modules/pv-early/modules.load"), "w") as f:
        f.write("\n".join(names) + "\n")
    files = subprocess.run("find . | LC_ALL=C sort", shell=True, cwd=d, capture_output=True,
                           check=True).stdout
    with open(os.path.join(work, "initramfs.cpio"), "wb") as out:
        subprocess.run(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=d, input=files,
                       stdout=out, check=True)
    size = os.path.getsize(os.path.join(work, "initramfs.cpio"))
    log(f"initramfs: /init = {os.path.relpath(a.bin, ROOT) if a.bin.startswith(ROOT) else a.bin}, "
        f"{len(names)} modules of {kver} ({', '.join(n[:-3] for n in names)}), {size >> 10} KiB")


def sh(body):
    return ["/bin/sh", "-c", body]


KMSG = "lxc.mount.entry = /dev/kmsg dev/kmsg none bind,create=file 0 0"


def description(version="v0", app_cmd=None):
    """The factory revision (version v0) and the updates: a mgmt container (pvcontrol, a
    permanent /data volume holding the job), an app whose restart_policy is system (so an
    update of it is a reboot update), a memory hog limited to 16M (goal READY, signalled through
    pv-ctrl once its checks are done), and an idle container."""
    return {
        "groups": [
            {"name": "platform", "status_goal": "STARTED", "restart_policy": "system", "timeout": 60},
            {"name": "app", "status_goal": "STARTED", "restart_policy": "container", "timeout": 60},
        ],
        "containers": {
            "mgmt": {"rootfs": "rootfs-mgmt", "group": "platform", "roles": ["mgmt"],
                     "network": "host", "cmd": ["/bin/sh", "/mgmt.sh"],
                     "storage": {"data": {"persistence": "permanent", "path": "/data"}},
                     "lxc": [KMSG]},
            "app": {"rootfs": f"rootfs-app-{version}", "group": "app", "network": "empty",
                    "restart_policy": "system",
                    "cmd": app_cmd or ["/bin/sh", "/app.sh"], "lxc": [KMSG]},
            "hog": {"rootfs": "rootfs-hog", "group": "app", "network": "empty",
                    "status_goal": "READY", "cmd": ["/bin/sh", "/hog.sh"],
                    "lxc": [KMSG, "lxc.cgroup2.memory.max = 16M"]},
            "idle": {"rootfs": "rootfs", "group": "app", "network": "empty",
                     "cmd": sh("trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done")},
        },
    }


UPDATES = {
    # a good update: app v1
    "good": dict(version="v1"),
    # a bad one: app v1 whose init fails at once, so the try boot cannot reach its goals
    "bad": dict(version="v1", app_cmd=sh("echo 'APP: broken on purpose'; exit 3")),
}


def build_storage(a, work):
    """The factory storage tree (revision 0) and the update bundles for the mgmt job."""
    src = os.path.join(work, "src")
    os.makedirs(src)
    busybox_rootfs(os.path.join(src, "rootfs"))
    h = os.path.join(src, "rootfs-hog")
    busybox_rootfs(h)
    shutil.copy(a.bin, os.path.join(h, "bin/pvcontrol"))
    shutil.copy(os.path.join(HERE, "guest/hog.sh"), os.path.join(h, "hog.sh"))
    for v in ("v0", "v1"):
        r = os.path.join(src, f"rootfs-app-{v}")
        busybox_rootfs(r)
        shutil.copy(os.path.join(HERE, "guest/app.sh"), os.path.join(r, "app.sh"))
        with open(os.path.join(r, "etc/version"), "w") as f:
            f.write(v + "\n")
        if v == "v1":
            # 2 MiB that do not compress: the update's new object takes a while to upload
            # through pv-ctrl, a window the resets can hit
            with open(os.path.join(r, "etc/payload"), "wb") as f:
                f.write(random.Random(1).randbytes(2 << 20))
    m = os.path.join(src, "rootfs-mgmt")
    busybox_rootfs(m)
    shutil.copy(a.bin, os.path.join(m, "bin/pvcontrol"))
    shutil.copy(os.path.join(HERE, "guest/mgmt.sh"), os.path.join(m, "mgmt.sh"))

    def pvmk(desc, *args):
        path = os.path.join(src, f"desc-{len(os.listdir(src))}.json")
        with open(path, "w") as f:
            json.dump(desc, f)
        run([PVMK, path, *args], stdout=subprocess.DEVNULL)

    factory = os.path.join(work, "factory")
    pvmk(description(), "--factory", factory)
    have = set(os.listdir(os.path.join(factory, "objects")))
    bundles = {}
    for name, kw in UPDATES.items():
        objs = os.path.join(work, f"upd-{name}-all")
        state = os.path.join(work, f"upd-{name}.json")
        pvmk(description(**kw), "--objects", objs, "--state", state)
        b = os.path.join(work, f"bundle-{name}")
        os.makedirs(os.path.join(b, "upd/objects"))
        new = sorted(set(os.listdir(objs)) - have)
        for o in new:
            shutil.copy(os.path.join(objs, o), os.path.join(b, "upd/objects", o))
        shutil.copy(state, os.path.join(b, "upd/json"))
        with open(os.path.join(b, "job"), "w") as f:
            f.write(f"NAME={name}\n")
        bundles[name] = b
        log(f"update locals/{name}: {len(new)} new objects, state {os.path.getsize(state)} B")
    n = len(have)
    log(f"factory revision 0: containers {', '.join(sorted(description()['containers']))}, {n} objects")
    return factory, bundles


def make_image(work, factory, name, job=None, mutate=None):
    """A fresh storage image for one case: the factory tree, plus the mgmt job's bundle in
    the mgmt container's permanent volume (disks/perm/mgmt/data); `mutate(tree)` may break
    the tree before the image is made."""
    tree = os.path.join(work, f"tree-{name}")
    shutil.rmtree(tree, ignore_errors=True)
    shutil.copytree(factory, tree, symlinks=True)
    if job:
        data = os.path.join(tree, "disks/perm/mgmt/data")
        os.makedirs(os.path.dirname(data), exist_ok=True)
        shutil.copytree(job, data, symlinks=True)
    if mutate:
        mutate(tree)
    img = os.path.join(work, f"{name}.img")
    if os.path.exists(img):
        os.unlink(img)
    run(["mkfs.ext4", "-q", "-F", "-L", LABEL, "-d", tree, img, IMG_SIZE], stdout=subprocess.DEVNULL)
    shutil.rmtree(tree)
    return img


# ---------------------------------------------------------------------------------------------
# cases

FACTORY_CONTAINERS = sorted(description()["containers"])


def started_all(b, names=FACTORY_CONTAINERS):
    """Arrival time of the last `container X: STARTED` line, None if one is missing."""
    ts = [b.first(f"container {n}: STARTED (pid") for n in names]
    return None if any(t is None for t in ts) else max(ts)


def app_version(b):
    v = [x for _, _, x in b.kmsg("APP") if x.startswith("version ")]
    return v[-1].split()[1] if v else None


class Tier:
    def __init__(self, a, work, factory, bundles):
        self.a, self.work, self.factory, self.bundles = a, work, factory, bundles
        self.vm = Vm(a, work)
        self.calibration = None
        self.numbers = {}
        self.stale = 0

    def image(self, name, job=None, mutate=None):
        return make_image(self.work, self.factory, name, self.bundles[job] if job else None, mutate)

    def case_boot(self):
        """Cold boot of the factory revision to every container STARTED, timed from qemu's
        start and from the kernel's; then mgmt powers the device off through pv-ctrl."""
        img = self.image("boot")
        bl = Bootloader(self.vm, img, "boot")
        b = bl.run(1)
        check(b.end == "poweroff", bl.failure(b))
        t = started_all(b)
        check(t is not None, "not every container STARTED:\n" + bl.failure(b))
        k = b.kernel_start()
        check(k is not None, "no kernel-timestamped line from the containers")
        check(f"storage /dev/vda (LABEL={LABEL}) mounted on /storage" in b.text(),
              "embedded mode did not mount the storage by label:\n" + bl.failure(b))
        check(app_version(b) == "v0", f"app version {app_version(b)} on revision 0")
        first = b.first("[pantavisor]")
        mods = b.first("early kernel modules loaded")
        mounted = b.first("mounted on /storage")
        log(f"  qemu start -> kernel start {k:.2f} s -> pantavisor's first line {first:.2f} s -> "
            f"modules loaded {mods:.2f} s -> storage mounted {mounted:.2f} s -> "
            f"all {len(FACTORY_CONTAINERS)} containers STARTED {t:.2f} s -> powered off {b.elapsed:.2f} s")
        log(f"  boot to all STARTED: {t:.2f} s from qemu start, {t - k:.2f} s from kernel start")
        self.numbers["boot"] = (t, t - k)
        rev, try_ = read_env(img)
        check((rev, try_) == ("0", None), f"env after the factory boot: pv_rev={rev} pv_try={try_}")
        check((progress(img, "0") or {}).get("status") == "DONE", f"progress of 0: {progress(img, '0')}")
        check(debugfs_exists(img, "/logs/0/pantavisor/pantavisor.log"), "no pantavisor.log on the storage")
        fsck(img)

    def case_memory(self):
        """lxc.cgroup2.memory.max = 16M on the hog container: 16 MiB of dd in 4 MiB blocks
        pass, one 64 MiB block is OOM-killed in the container's cgroup, nothing else dies."""
        img = self.image("memory")
        bl = Bootloader(self.vm, img, "memory")
        b = bl.run(1)
        check(b.end == "poweroff", bl.failure(b))
        hog = {x.split(" ", 1)[0].split("=", 1)[0]: x for _, _, x in b.kmsg("HOG")}
        check(hog.get("memory.max", "").startswith("memory.max=16777216 "),
              f"hog's memory.max: {hog.get('memory.max')}")
        check("cgroup=0::/lxc/hog" in hog.get("memory.max", ""), f"hog's cgroup: {hog.get('memory.max')}")
        check(hog.get("small") == "small rc=0", f"4 MiB blocks under a 16M limit: {hog.get('small')}")
        check(hog.get("big") == "big rc=137", f"64 MiB block under a 16M limit: {hog.get('big')}")
        check(re.fullmatch(r"oom_kill=[1-9]\d*", hog.get("oom_kill", "")), f"memory.events: {hog.get('oom_kill')}")
        oom = [l for _, l in b.lines if "Memory cgroup out of memory: Killed process" in l]
        check(len(oom) == 1 and "(dd)" in oom[0], f"kernel OOM lines: {oom}")
        check(started_all(b) is not None, "not every container STARTED:\n" + bl.failure(b))
        console = debugfs_cat(img, "/logs/0/hog/lxc/console.log") or b""
        check(b"HOG: big rc=137" in console, f"hog console log on the storage: {console[-300:]!r}")
        log("  hog: memory.max 16777216 in 0::/lxc/hog, 4 MiB blocks rc 0, 64 MiB block rc 137 "
            f"(SIGKILL), {hog['oom_kill']}; device and other containers unaffected")

    def case_isolation(self):
        isolation.case(self, sys.modules[__name__])

    def case_update(self, tag="update"):
        """mgmt uploads locals/good through pv-ctrl and LOCAL_RUNs it: the device installs it
        and reboots; the bootloader try-boots it; it reaches its goals, is committed
        (pv_rev=locals/good, pv_try cleared, DONE, .pv/done), and powers off."""
        img = self.image(tag, "good")
        bl = Bootloader(self.vm, img, tag)
        last = bl.run(4)
        seq = [(b.rev, b.end) for b in bl.boots]
        check(seq == [("0", "reboot"), ("locals/good", "poweroff")],
              f"boots {seq}\n" + bl.failure(last))
        check(bl.boots[1].cmdline == "pv_rev=locals/good pv_try=locals/good", bl.boots[1].cmdline)
        check(app_version(bl.boots[0]) == "v0" and app_version(bl.boots[1]) == "v1",
              f"app versions {app_version(bl.boots[0])} -> {app_version(bl.boots[1])}")
        rev, try_ = read_env(img)
        check((rev, try_) == ("locals/good", None), f"env after the update: pv_rev={rev} pv_try={try_}")
        p = progress(img, "locals/good") or {}
        check(p.get("status") == "DONE", f"progress of locals/good: {p}")
        check(debugfs_exists(img, "/trails/locals/good/.pv/done"), "no .pv/done")
        fsck(img)
        b1, b2 = bl.boots
        start = [t for t, _, x in b1.kmsg("MGMT") if x.startswith("job good: upload")]
        end1 = b1.first(STOPPED)
        committed = b2.first(COMMITTED)
        end2 = b2.first(STOPPED)
        check(start and end1 and committed and end2, "update timeline markers missing")
        self.calibration = (end1 - start[0], committed, end2 - committed)
        log(f"  committed: pv_rev=locals/good, progress DONE; the update's phases: A {self.calibration[0]:.1f} s "
            f"from the upload to the last container stopped for the reboot, B {self.calibration[1]:.1f} s "
            f"from qemu start of the try boot to the commit, C {self.calibration[2]:.1f} s from the commit "
            "to the last container stopped for the power off")

    def case_rollback(self):
        """mgmt LOCAL_RUNs locals/bad, whose app fails at once: the try boot records ERROR and
        reboots; the bootloader falls back to pv_rev=0 (pv_trying == pv_try), which clears
        pv_try: three real boots, 0 -> locals/bad -> 0."""
        img = self.image("rollback", "bad")
        bl = Bootloader(self.vm, img, "rollback")
        last = bl.run(5)
        seq = [(b.rev, b.end) for b in bl.boots]
        check(seq == [("0", "reboot"), ("locals/bad", "reboot"), ("0", "poweroff")],
              f"boots {seq}\n" + bl.failure(last))
        check([b.cmdline for b in bl.boots] == ["pv_rev=0", "pv_rev=locals/bad pv_try=locals/bad",
                                                "pv_rev=0 pv_try=locals/bad"],
              f"command lines {[b.cmdline for b in bl.boots]}")
        check("rolling back" in bl.boots[1].text(), "the try boot did not roll back:\n" + bl.failure(bl.boots[1]))
        check(app_version(bl.boots[2]) == "v0", f"app version after the rollback: {app_version(bl.boots[2])}")
        rev, try_ = read_env(img)
        check((rev, try_) == ("0", None), f"env after the rollback: pv_rev={rev} pv_try={try_}")
        p = progress(img, "locals/bad") or {}
        check(p.get("status") == "ERROR", f"progress of locals/bad: {p}")
        check(not debugfs_exists(img, "/trails/locals/bad/.pv/done"), "locals/bad has .pv/done")
        fsck(img)
        log(f"  rolled back: pv_rev=0, pv_try cleared, locals/bad ERROR '{p.get('status-msg')}'")

    def case_resets(self):
        """At least 5 (6 by default) hard resets (qemu SIGKILLed: no sync, the guest's page
        cache lost) at random moments of the locals/good update, taking its three phases in
        turn: A the upload through pv-ctrl, the install and the stop for the reboot; B the try
        boot before the commit; C the commit and the stop for the power off after it. After
        each, the bootloader boots on until mgmt powers off on the committed revision; every
        boot after the reset must run the old or the new revision, the one it was given (the
        app's version says which), and at the end env, progress and .pv/done agree and the
        file system checks clean."""
        n = int(os.environ.get("PV_VM_RESETS", "6"))
        seed = int(os.environ.get("PV_VM_SEED", str(int(time.time()))))
        rnd = random.Random(seed)
        if self.calibration is None:
            log("  calibrating the update window (no update case ran)")
            self.case_update("calibration")
        wa, wb, wc = self.calibration
        log(f"  {n} resets, seed {seed} (PV_VM_SEED), phases A {wa:.1f} s, B {wb:.1f} s, C {wc:.1f} s")
        outcomes = []
        for i in range(1, n + 1):
            img = self.image(f"reset{i}", "good")
            bl = Bootloader(self.vm, img, f"reset{i}")
            # resets take the phases in turn, at a random moment inside the phase; the kill
            # comes at that moment or at the latest when the phase ends (so it never misses it
            # when this run is faster than the calibration one)
            phase = "ABC"[(i - 1) % 3]
            if phase == "A":
                u = rnd.uniform(0, wa)
                where = f"phase A (upload, install, stop for the reboot): boot 1, {u:.2f} s after the upload started"

                def kill(b, now, u=u):
                    s = [t for t, _, x in b.kmsg("MGMT") if x.startswith("job good: upload")]
                    return not bl.boots and bool(s) and (now >= s[0] + u or b.first(STOPPED) is not None)
            elif phase == "B":
                u = rnd.uniform(0, wb)
                where = f"phase B (the try boot before the commit): boot 2, {u:.2f} s after qemu started"

                def kill(b, now, u=u):
                    return len(bl.boots) == 1 and (now >= u or b.first(COMMITTED) is not None)
            else:
                u = rnd.uniform(0, wc)
                where = f"phase C (after the commit, stopping to power off): boot 2, {u:.2f} s after the commit"

                def kill(b, now, u=u):
                    c = b.first(COMMITTED)
                    return len(bl.boots) == 1 and c is not None and (now >= c + u or b.first(STOPPED) is not None)
            log(f" reset {i}: kill in {where}")
            killed = None
            for _ in range(8):
                b = bl.boot(kill)
                if b.end == "killed":
                    killed = b
                elif b.end == "poweroff" and killed is not None:
                    # settled; done once the revision it ran is the committed one (a boot from
                    # a stale env runs an older revision: boot on, as the device would)
                    if (b.rev, None) == read_env(img):
                        break
                    log(f"  reset{i}: ran {b.rev} but pv_rev={read_env(img)[0]}: booting on")
            else:
                raise Fail(f"reset {i}: not settled\n" + bl.failure(bl.boots[-1]))
            check(killed is not None, f"reset {i}: the kill moment never came (boots {[(x.rev, x.end) for x in bl.boots]})")
            final = bl.boots[-1]
            after = bl.boots[bl.boots.index(killed) + 1:]
            rev, try_ = read_env(img)
            p = progress(img, "locals/good") or {}
            done = debugfs_exists(img, "/trails/locals/good/.pv/done")
            # every boot after the reset runs the old or the new revision, the one it was given
            for x in after:
                check(x.rev in ("0", "locals/good"), f"reset {i}: booted {x.rev}")
                if x.end == "poweroff":
                    check(started_all(x) is not None, f"reset {i}: a settled boot did not start everything\n" + bl.failure(x))
                    want = "v0" if x.rev == "0" else "v1"
                    check(app_version(x) == want, f"reset {i}: {x.rev} runs app {app_version(x)}")
            if rev == "0":
                check(p.get("status") != "DONE" and not done, f"reset {i}: old revision but locals/good is {p}, done={done}")
                outcome = "old"
            elif rev == "locals/good":
                check(p.get("status") == "DONE" and done, f"reset {i}: new revision but progress {p}, done={done}")
                outcome = "new"
            else:
                raise Fail(f"reset {i}: pv_rev={rev}")
            # what the try boot had done durably when it was killed decides the outcome: the
            # commit's env write logged -> new; the goals not reached COMMIT_DELAY before the
            # kill -> no commit can have happened -> old. In between, either.
            expect = None
            if killed.rev == "locals/good":
                before = [l for t, l in killed.lines if t <= killed.killed_at]
                ready = killed.first("[device]: revision locals/good status READY")
                if any("uboot.txt written: pv_rev=locals/good" in l for l in before):
                    expect = "new"
                elif ready is None or killed.killed_at < ready + COMMIT_DELAY - 0.5:
                    expect = "old"
            check(expect in (None, outcome), f"reset {i}: killed {where}: expected the {expect} revision, got the {outcome}")
            if phase == "C":
                check(outcome == "new", f"reset {i}: killed after the commit, yet the device ended on {rev}")
            fsck(img)
            outcomes.append(outcome)
            stale = f"; {len(bl.stale)} stale env read(s) by the bootloader" if bl.stale else ""
            self.stale += len(bl.stale)
            log(f" reset {i}: after the kill {' -> '.join(f'{x.rev} ({x.end})' for x in after)}: "
                f"runs the {outcome} revision{' as it must' if expect or phase == 'C' else ''} ({rev}, app {app_version(final)}, locals/good "
                f"{p.get('status', 'absent')}{' ' + repr(p.get('status-msg')) if p.get('status-msg') else ''})"
                f", fsck clean{stale}")
            os.unlink(img)
        self.numbers["resets"] = outcomes
        log(f"  {len(outcomes)} hard resets: {outcomes.count('old')} ended on the old revision, "
            f"{outcomes.count('new')} on the new one; {self.stale} boot(s) picked from a stale env "
            "(the journal not replayed, as U-Boot reads ext4)")

    def case_crypt(self):
        vmcrypt.case(self, sys.modules[__name__])

    def case_fatal(self):
        """The committed revision lost an object (mgmt's LXC config), so pantavisor, the real
        PID 1, cannot boot it: one line `FATAL update: ...`, 5 s on the console, the storage
        unmounted, reboot(2) -- never an exit of PID 1 (a kernel panic: pvpanic, qemu rc 1).
        The bootloader boots it again and stops after FATAL_BOOTS boots with the same line."""
        lost = {}

        def lose_object(tree):
            with open(os.path.join(tree, "trails/0/.pvr/json")) as f:
                sha = json.load(f)["mgmt/lxc.container.conf"]
            os.unlink(os.path.join(tree, "objects", sha))
            link = os.path.join(tree, "trails/0/mgmt/lxc.container.conf")
            if os.path.exists(link):  # a factory tree may hold only objects/ and .pvr/json
                os.unlink(link)
            lost["sha"] = sha

        img = self.image("fatal", mutate=lose_object)
        bl = Bootloader(self.vm, img, "fatal")
        try:
            bl.run(FATAL_BOOTS + 2)
            stopped = None
        except Fail as e:
            stopped = str(e)
        check(stopped is not None and "in a row rebooted after the same fatal error" in stopped,
              f"the bootloader did not stop on a FATAL line: {stopped}\n" + bl.failure(bl.boots[-1]))
        check([b.end for b in bl.boots] == ["reboot"] * FATAL_BOOTS,
              f"boots {[(b.rev, b.end) for b in bl.boots]}\n" + bl.failure(bl.boots[-1]))
        lines = [fatal_line(b.lines) for b in bl.boots]
        line = lines[0]
        check(line and line.startswith("FATAL update: ") and lost["sha"] in line and len(set(lines)) == 1,
              f"FATAL lines {lines}")
        for b in bl.boots:
            n = sum(1 for _, l in b.lines if FATAL_LINE.search(l))
            check(n == 1, f"boot {b.n}: {n} FATAL lines\n" + bl.failure(b))
            t, r = b.first(line), b.first("reboot: Restarting system")
            check(t is not None and r is not None and r - t >= 4.5,
                  f"boot {b.n}: the FATAL line at {t} s, the reboot at {r} s: no 5 s pause\n" + bl.failure(b))
        log_ = (debugfs_cat(img, "/logs/0/pantavisor/pantavisor.log") or b"").decode(errors="replace")
        check(log_.count(line) == FATAL_BOOTS, f"pantavisor.log holds the line {log_.count(line)} times")
        fsck(img)
        pauses = [b.first("reboot: Restarting system") - b.first(line) for b in bl.boots]
        log(f"  {FATAL_BOOTS} boots: '{line}', reboot {min(pauses):.1f}-{max(pauses):.1f} s after "
            "the line, storage clean, the line in pantavisor.log; the bootloader stopped")


    def case_verity(self):
        """tests/vm/verity.py"""
        verity.case(self, sys.modules[__name__])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("cases", nargs="*")
    a = ap.parse_args()
    cases = a.cases or CASES
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c} (cases: {' '.join(CASES)})")
    t0 = time.monotonic()
    work = a.work
    build_initramfs(a, work)
    factory, bundles = build_storage(a, work)
    tier = Tier(a, work, factory, bundles)
    failed = []
    for c in cases:
        log(f"== {c}{' (update through pv-ctrl LOCAL_RUN)' if c in NEEDS_LOCAL_RUN else ''}")
        tc = time.monotonic()
        try:
            getattr(tier, f"case_{c}")()
            log(f"== {c}: ok ({time.monotonic() - tc:.0f} s)")
        except Fail as e:
            failed.append(c)
            log(f"== {c}: FAILED ({time.monotonic() - tc:.0f} s): {e}")
    log(f"{len(cases) - len(failed)} of {len(cases)} cases passed, {tier.vm.boots} boots, "
        f"{time.monotonic() - t0:.0f} s" + (f"; failed: {' '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
