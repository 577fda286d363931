"""The VM tier's dm-verity case (reference 11.1), run by vm.py as the case `verity`.

Its own factory: vm.py's factory revision plus `sealed`, whose root.squashfs is a dm-verity
volume made by scripts/pvmk ("verity": true, veritysetup on this host) and whose init reads a
256 KiB payload at start and says what it read (restart_policy system: its failure fails a try
boot). Two runs of the bootloader, three boots each, mgmt making the update through pv-ctrl,
and one boot with pv_verityoff:

- corrupt: the update's sealed/root.squashfs has one byte of the payload changed (the object
  and the state say so, the manifest still has the factory's root hash). Revision 0 boots with
  sealed STARTED and the right payload sum (a verity container boots); the try boot starts
  sealed, whose read of the payload fails with an I/O error (the kernel's verity says the block
  is corrupted), so the update on probation rolls back to 0. Then revision 0 boots once more
  with pv_verityoff=1 on the command line: sealed's volume is mounted plain.
- wronghash: the update changes only the manifest's root hash. The mount of sealed's volume is
  refused, the error naming container, volume and root hash, and the update rolls back.
"""
import hashlib
import json
import os
import random
import re
import shutil

PAYLOAD = random.Random(16).randbytes(256 << 10)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
# where the corrupt update changes a byte: in the payload's second 128 KiB block (random data
# does not compress, so squashfs stores it as it is and it can be found in the image)
CUT = 200_000
# what the kernel says about a verity mismatch, and squashfs about the read it failed
KERNEL_EXPECTED = re.compile(r"device-mapper: verity: .*(is corrupted|Corruption)|SQUASHFS error|"
                             r"Buffer I/O error on dev dm-")

SEALED_SH = r"""#!/bin/sh
# The dm-verity test container: reads its payload through verity at start and says the sum.
trap 'exit 0' TERM
say() { echo "APP: $*"; echo "<2>APP: $*" > /dev/kmsg 2>/dev/null; }
out=$(md5sum /etc/payload 2>&1); rc=$?
if [ "$rc" != 0 ]; then say "sealed read failed rc=$rc: $out"; exit 3; fi
say "sealed ok ${out%% *}"
while :; do sleep 1 & wait $!; done
"""


def sha(b):
    return hashlib.sha256(b).hexdigest()


def build(tier, h):
    """The verity factory and the two update bundles (upd/objects, upd/json, job)."""
    work = tier.work
    src = os.path.join(work, "src")
    r = os.path.join(src, "rootfs-sealed")
    h.busybox_rootfs(r, ("md5sum",))
    with open(os.path.join(r, "sealed.sh"), "w") as f:
        f.write(SEALED_SH)
    with open(os.path.join(r, "etc/payload"), "wb") as f:
        f.write(PAYLOAD)
    desc = h.description()
    desc["containers"]["sealed"] = {
        "rootfs": "rootfs-sealed", "group": "app", "network": "empty", "restart_policy": "system",
        "verity": True, "cmd": ["/bin/sh", "/sealed.sh"], "lxc": [h.KMSG]}
    path = os.path.join(src, "desc-verity.json")
    with open(path, "w") as f:
        json.dump(desc, f)
    factory = os.path.join(work, "factory-verity")
    h.run([h.PVMK, path, "--factory", factory], stdout=h.subprocess.DEVNULL)
    with open(os.path.join(factory, "trails/0/.pvr/json"), "rb") as f:
        state = json.loads(f.read())
    manifest = state["sealed/_dm/root.squashfs.json"]
    h.check(state["sealed/run.json"]["root-volume"] == "dm:root.squashfs", "pvmk: no dm: root volume")
    with open(os.path.join(factory, "objects", state["sealed/root.squashfs"]), "rb") as f:
        image = bytearray(f.read())

    bundles = {}

    def bundle(name, new_state, objects):
        b = os.path.join(work, f"bundle-verity-{name}")
        os.makedirs(os.path.join(b, "upd/objects"))
        for data in objects:
            with open(os.path.join(b, "upd/objects", sha(data)), "wb") as f:
                f.write(data)
        with open(os.path.join(b, "upd/json"), "wb") as f:
            f.write(json.dumps(new_state, sort_keys=True, separators=(",", ":")).encode())
        with open(os.path.join(b, "job"), "w") as f:
            f.write(f"NAME={name}\n")
        bundles[name] = b

    at = image.find(PAYLOAD[CUT:CUT + 64])
    h.check(at > 0 and image.count(PAYLOAD[CUT:CUT + 64]) == 1,
            f"the payload is not stored as it is in sealed's squashfs ({at})")
    image[at] ^= 0x01
    corrupt = dict(state, **{"sealed/root.squashfs": sha(bytes(image))})
    bundle("corrupt", corrupt, [bytes(image)])
    rh = manifest["root_hash"]
    wrong = rh[:-1] + ("0" if rh[-1] != "0" else "1")
    bundle("wronghash", dict(state, **{"sealed/_dm/root.squashfs.json": dict(manifest, root_hash=wrong)}), [])
    h.log(f"verity factory: sealed's root.squashfs {len(image) >> 10} KiB, hash tree "
          f"{os.path.getsize(os.path.join(factory, 'objects', state['sealed/root.squashfs.hash']))} B, "
          f"root hash {rh[:16]}...; update corrupt flips byte {at}, wronghash has root hash {wrong[:16]}...")
    return factory, bundles, rh, wrong


def sealed(b):
    return [x for _, _, x in b.kmsg("APP") if x.startswith("sealed ")]


def rollback(tier, h, factory, bundle, tag):
    img = h.make_image(tier.work, factory, tag, bundle)
    bl = h.Bootloader(tier.vm, img, tag)
    bl.kernel_expected = KERNEL_EXPECTED
    last = bl.run(5)
    seq = [(b.rev, b.end) for b in bl.boots]
    rev = f"locals/{tag.split('-')[1]}"
    h.check(seq == [("0", "reboot"), (rev, "reboot"), ("0", "poweroff")], f"boots {seq}\n" + bl.failure(last))
    for b in (bl.boots[0], bl.boots[2]):
        h.check(sealed(b) == [f"sealed ok {PAYLOAD_MD5}"],
                f"boot {b.n} (revision 0): sealed said {sealed(b)}\n" + bl.failure(b))
        h.check(h.started_all(b, h.FACTORY_CONTAINERS + ["sealed"]) is not None,
                f"boot {b.n}: not every container STARTED\n" + bl.failure(b))
    for b in bl.boots:
        left = [l for _, l in b.lines if "dm remove" in l or ": detach:" in l]
        h.check(not left, f"boot {b.n}: teardown of the verity device failed: {left}")
    h.check(h.read_env(img) == ("0", None), f"env after the rollback: {h.read_env(img)}")
    p = h.progress(img, rev) or {}
    h.check(p.get("status") == "ERROR", f"progress of {rev}: {p}")
    h.fsck(img)
    return img, bl, p


def case(tier, h):
    t0 = h.time.monotonic()
    factory, bundles, rh, wrong = build(tier, h)

    img, bl, p = rollback(tier, h, factory, bundles["corrupt"], "verity-corrupt")
    b = bl.boots[1]
    said = sealed(b)
    h.check(len(said) >= 1 and all("Input/output error" in s for s in said),
            f"the try boot's sealed said {said}\n" + bl.failure(b))
    corrupted = [l for _, l in b.lines if "device-mapper: verity" in l and "corrupted" in l]
    h.check(corrupted, "the kernel did not report the corrupted block\n" + bl.failure(b))
    h.log(f"  corrupt: revision 0 sealed ok {PAYLOAD_MD5[:8]}...; the try boot: '{said[0]}', "
          f"kernel '{corrupted[0].split('] ', 1)[-1]}'; rolled back, locals/corrupt '{p.get('status-msg')}'")

    # pv_verityoff on the command line (the kernel hands it to /init's environment): upstream
    # mounts dm: volumes as plain images then
    b = tier.vm.boot(4, img, "0", "pv_rev=0 pv_verityoff=1", "verity-corrupt-boot4.log")
    h.check(b.end == "poweroff" and sealed(b) == [f"sealed ok {PAYLOAD_MD5}"],
            f"pv_verityoff: sealed said {sealed(b)}\n" + bl.failure(b))
    plain = "container sealed: volume root.squashfs: verity off"
    h.check(plain in b.text() and "pv--dmverity" not in b.text() and plain not in bl.boots[0].text(),
            "pv_verityoff did not mount sealed plain (or verity was off without it)\n" + bl.failure(b))
    h.fsck(img)
    h.log(f"  pv_verityoff=1: revision 0 boots with sealed's volume mounted plain, sealed ok ({b.elapsed:.1f} s)")

    img, bl, p = rollback(tier, h, factory, bundles["wronghash"], "verity-wronghash")
    b = bl.boots[1]
    h.check(sealed(b) == [], f"sealed ran on a wrong root hash: {sealed(b)}\n" + bl.failure(b))
    log_ = (h.debugfs_cat(img, "/logs/locals/wronghash/pantavisor/pantavisor.log") or b"").decode(errors="replace")
    refused = [l for l in log_.splitlines() if "container sealed: dm-verity" in l and wrong in l
               and "root.squashfs" in l]
    h.check(refused, "no error naming sealed, root.squashfs and the root hash in pantavisor.log:\n"
            + "\n".join(log_.splitlines()[-30:]))
    h.log(f"  wronghash: refused at mount: '{refused[0][-200:]}'; rolled back, "
          f"locals/wronghash '{p.get('status-msg')}'")
    h.log(f"  verity: 7 boots, {h.time.monotonic() - t0:.0f} s")
