"""VM case `isolation`: container isolation on the Debian kernel, whose only cgroup hierarchy
(as embedded mode mounts it) is cgroup v2: the device rules are a BPF_PROG_TYPE_CGROUP_DEVICE
program on the container's cgroup, checked by this kernel's verifier (the namespace tier's
host runs a hybrid hierarchy).

A factory revision of its own with one container, `iso`: `lxc.cgroup.devices.deny = c 1:3
rwm`, a denylist seccomp profile beside its config (a file of the revision) denying mkdir with
EACCES, and `lxc.no_new_privs = 1`. It reports on /dev/kmsg (tag ISO); the boot is cut once
it has.
"""
import os

PROFILE = "2\ndenylist\n# no directories\nmkdir errno 13\nmkdirat errno 13\n"

# each probe's exit status; the container's own view of no_new_privs and seccomp
SCRIPT = r"""#!/bin/sh
r() { echo "<2>ISO: $*" > /dev/kmsg; }
cat /dev/null; n=$?
mknod /tmp/n c 1 3; mn=$?
z=$(head -c 3 /dev/zero | wc -c)
mkdir /tmp/d; m=$?
echo x > /tmp/f; t=$?
r "null=$n mknod-null=$mn zero=$z mkdir=$m file=$t"
r "$(grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr '\t\n' '  ')"
r done
while :; do sleep 1 & wait $!; done
"""


def case(tier, vm):
    src = os.path.join(tier.work, "iso-src")
    os.makedirs(src)
    root = os.path.join(src, "rootfs")
    vm.busybox_rootfs(root, applets=("head", "mknod", "mkdir", "tr"))
    with open(os.path.join(root, "iso.sh"), "w") as f:
        f.write(SCRIPT)
    desc = {
        "groups": [{"name": "app", "status_goal": "STARTED", "restart_policy": "container",
                    "timeout": 60}],
        "containers": {
            "iso": {"rootfs": "rootfs", "group": "app", "network": "empty",
                    "cmd": ["/bin/sh", "/iso.sh"],
                    "lxc": [vm.KMSG, "lxc.cgroup.devices.deny = c 1:3 rwm",
                            "lxc.seccomp.profile = seccomp.profile", "lxc.no_new_privs = 1"]},
        },
        "extra": {"iso/seccomp.profile": PROFILE},
    }
    path = os.path.join(src, "desc.json")
    with open(path, "w") as f:
        vm.json.dump(desc, f)
    factory = os.path.join(tier.work, "iso-factory")
    vm.run([vm.PVMK, path, "--factory", factory], stdout=vm.subprocess.DEVNULL)
    img = vm.make_image(tier.work, factory, "isolation")
    bl = vm.Bootloader(tier.vm, img, "isolation")
    b = bl.boot(kill=lambda b, now: any(x == "done" for _, _, x in b.kmsg("ISO")))
    iso = [x for _, _, x in b.kmsg("ISO")]
    vm.check(b.end == "killed" and iso, "no ISO report:\n" + bl.failure(b))
    text = b.text()
    vm.check("container iso: STARTED" in text, "iso did not start:\n" + bl.failure(b))
    vm.check(iso[0] == "null=1 mknod-null=1 zero=3 mkdir=1 file=0", f"probes: {iso[0]}")
    vm.check(iso[1].split() == ["NoNewPrivs:", "1", "Seccomp:", "2"], f"status: {iso[1]}")
    vm.log("  iso on cgroup v2: /dev/null denied (open and mknod) by the device program, "
           "/dev/zero read; mkdir denied by the seccomp profile (EACCES), files made; "
           "NoNewPrivs 1, Seccomp 2")
