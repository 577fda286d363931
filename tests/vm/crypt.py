"""The crypt case of the VM tier (vm.py): a dm-crypt-versatile disk of device.json, made by
pantavisor on the device (key, image, ext4) and opened with the crypt target by ioctl.

A revision of one mgmt container, `vault`, whose permanent storage volume /vault is on the disk
`secret` (as are device.json's pv--usrmeta and pv--devmeta: the meta stores): it counts its
boots there and in user-meta and device-meta, then powers off. Six boots:

1. fresh storage: the disk is made; the raw storage holds no plaintext; the image, decrypted
   here as cryptsetup's plain mode does (aes-cbc-essiv:sha256, the key file's 32 bytes
   unhashed), is an ext4 that e2fsck -fn passes, holding what vault wrote: made here, opens
   there (upstream's script maps it with `cryptsetup open --type plain`, the same table).
2. the sentinel removed beforehand (a power cut before it): nothing is made again, the data is
   there; qemu is killed right after vault's data and user-meta are synced (a hard reset).
3. the data of boot 2 survived the hard reset.
4. a wrong key: vault cannot start (the device reboots, as for any container that fails
   without recovery), the error names the disk and the wrong key, the image and its backup
   are unchanged byte for byte, nothing is made.
5. the right key again, the image's superblock damaged: its backup (made before its first
   mount, as upstream's goodbak) mounts, so it replaces the image, which is kept as `.bad`;
   vault finds the backup's (empty) data.
6. a disk made the way upstream's script makes it (mkfs.ext4 -b 1024 of the plain device, the
   key 32 random bytes), encrypted here: it opens, vault finds its data and writes on; the
   file system passes e2fsck -fn after.

The host side needs python3's `cryptography` (Debian python3-cryptography).
"""
import hashlib
import json
import os
import shutil
import subprocess

# dm-mod comes as dm-crypt's dependency; aes, cbc and sha256 are built into Debian's kernel,
# essiv is a module (aesni-intel would fail with ENODEV on TCG's CPU: aes-generic serves)
MODULES = ["dm-crypt", "essiv"]

DISK_DIR = "/dmcrypt"
DISK = {"name": "secret", "type": "dm-crypt-versatile",
        "path": f"/storage{DISK_DIR}/secret.img,16,secret"}
IMAGE, KEY, SENTINEL = f"{DISK_DIR}/secret.img", f"{DISK_DIR}/secret.txt", f"{DISK_DIR}/secret.init_done"
GOODBAK = IMAGE + ".goodbak"
# what vault writes, composed at run time so that the script's own text never matches
PAYLOAD, METAVAL, DEVVAL = b"SECRET-PAYLOAD-", b"METAVAL-", b"DEVVAL-"

VAULT = r"""#!/bin/sh
trap 'exit 0' TERM
pause() { sleep "$1" & wait $!; }
say() { echo "MGMT: vault $*"; echo "<2>MGMT: vault $*" > /dev/kmsg 2>/dev/null; }
n=$(cat /vault/counter 2>/dev/null || echo 0)
d=$(cat /vault/data.txt 2>/dev/null)
m=$(pvcontrol usrmeta ls 2>/dev/null | sed -n 's/.*"crypt.boot":"METAVAL-\([0-9]*\)".*/\1/p')
say "found counter=$n data=${d##*-} meta=$m"
n=$((n + 1))
echo "$n" > /vault/counter
printf 'SECRET%s%s\n' -PAYLOAD- "$n" > /vault/data.txt
sync
pvcontrol usrmeta save crypt.boot "$(printf 'METAVAL%s%s' - "$n")" >/dev/null || say "usrmeta save failed"
pvcontrol devmeta save crypt.boot "$(printf 'DEVVAL%s%s' - "$n")" >/dev/null || say "devmeta save failed"
sync
say "written $n"
pvcontrol cmd poweroff "crypt test" >/dev/null
while :; do pause 1; done
"""

def description(kmsg):
    return {
        "groups": [{"name": "platform", "status_goal": "STARTED", "restart_policy": "container",
                    "timeout": 60}],
        "containers": {
            "vault": {"rootfs": "rootfs-vault", "group": "platform", "roles": ["mgmt"],
                      "network": "host", "cmd": ["/bin/sh", "/vault.sh"],
                      "storage": {"vault": {"persistence": "permanent", "path": "/vault"}},
                      "lxc": [kmsg]},
        },
    }


def build_factory(v, a, work):
    """The factory tree of the crypt revision: pvmk's, then device.json's disks and volumes
    and the vault volume's disk, which pvmk does not write, put into the state."""
    src = os.path.join(work, "crypt-src")
    os.makedirs(src)
    for name, script in (("vault", VAULT),):
        r = os.path.join(src, f"rootfs-{name}")
        v.busybox_rootfs(r)
        shutil.copy(a.bin, os.path.join(r, "bin/pvcontrol"))
        with open(os.path.join(r, f"{name}.sh"), "w") as f:
            f.write(script)
    desc = os.path.join(src, "desc.json")
    with open(desc, "w") as f:
        json.dump(description(v.KMSG), f)
    factory = os.path.join(work, "crypt-factory")
    v.run([v.PVMK, desc, "--factory", factory], stdout=subprocess.DEVNULL)
    path = os.path.join(factory, "trails/0/.pvr/json")
    with open(path) as f:
        state = json.load(f)
    state["device.json"]["disks"] = [DISK]
    state["device.json"]["volumes"] = {m: {"persistence": "permanent", "disk": "secret"}
                                       for m in ("pv--usrmeta", "pv--devmeta")}
    state["vault/run.json"]["storage"]["vault"]["disk"] = "secret"
    with open(path, "w") as f:
        json.dump(state, f, sort_keys=True, separators=(",", ":"))
    return factory


def essiv(data, key, encrypt):
    """Plain dm-crypt aes-cbc-essiv:sha256 over 512-byte sectors: IV of sector n =
    AES-256_{sha256(key)}(n as 16 bytes little-endian), AES-256-CBC with the key."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    ivs = Cipher(algorithms.AES(hashlib.sha256(key).digest()), modes.ECB()).encryptor()
    out = bytearray(len(data))
    for s in range(len(data) // 512):
        iv = ivs.update(s.to_bytes(16, "little"))
        c = Cipher(algorithms.AES(key), modes.CBC(iv))
        op = c.encryptor() if encrypt else c.decryptor()
        out[s * 512:(s + 1) * 512] = op.update(data[s * 512:(s + 1) * 512]) + op.finalize()
    return bytes(out)


def dump(v, img, path, out):
    p = v.debugfs(img, f"dump {path} {out}")
    v.check(p.returncode == 0 and os.path.exists(out), f"debugfs dump {path}: {p.stderr}")
    with open(out, "rb") as f:
        return f.read()


def debugfs_w(v, img, *requests):
    for r in requests:
        p = subprocess.run(["debugfs", "-w", "-R", r, img], capture_output=True, text=True)
        v.check(p.returncode == 0 and "rror" not in p.stderr, f"debugfs -w '{r}': {p.stderr}")


def opened_here(v, work, img, tag, want_n):
    """The disk's image from the storage, decrypted here: e2fsck -fn clean, vault's data and
    the user-meta value of boot `want_n` in it."""
    raw = os.path.join(work, "crypt-" + tag.replace(" ", "") + ".img")
    key = v.debugfs_cat(img, KEY)
    v.check(key is not None and len(key) == 32, f"{tag}: key file {KEY}: {key!r}")
    data = dump(v, img, IMAGE, raw)
    v.check(len(data) == 16 << 20, f"{tag}: image of {len(data)} bytes, 16 MiB wanted")
    v.check(PAYLOAD not in data, f"{tag}: the raw image holds the plaintext")
    plain = raw + ".plain"
    with open(plain, "wb") as f:
        f.write(essiv(data, key, False))
    v.fsck(plain)
    got = v.debugfs_cat(plain, "/perm/vault/vault/data.txt")
    v.check(got == PAYLOAD + b"%d\n" % want_n, f"{tag}: data.txt decrypted here: {got!r}")
    meta = v.debugfs_cat(plain, "/perm/bsp/pv--usrmeta/crypt.boot")
    v.check(meta == METAVAL + b"%d" % want_n, f"{tag}: user-meta decrypted here: {meta!r}")
    meta = v.debugfs_cat(plain, "/perm/bsp/pv--devmeta/crypt.boot")
    v.check(meta == DEVVAL + b"%d" % want_n, f"{tag}: device-meta decrypted here: {meta!r}")
    os.unlink(raw)
    os.unlink(plain)


def vault_line(v, b, tag):
    lines = [x for _, _, x in b.kmsg("MGMT") if x.startswith("vault found")]
    v.check(lines, f"{tag}: vault said nothing:\n" + b.text()[-3000:])
    return lines[-1]


def no_plaintext(v, img, tag):
    with open(img, "rb") as f:
        whole = f.read()
    for secret in (PAYLOAD, METAVAL, DEVVAL):
        v.check(secret not in whole, f"{tag}: the storage image holds {secret!r} in plain text")


def upstream_made(v, work):
    """A disk as upstream's script makes it: a sparse image, `mkfs.ext4 -b 1024` of its plain
    device (here: of a plain file, encrypted after), the key 32 random bytes, the sentinel;
    vault's counter at 41 and the user-meta store on it."""
    tree = os.path.join(work, "crypt-upstream-tree")
    for d in ("perm/vault/vault", "perm/bsp/pv--usrmeta"):
        os.makedirs(os.path.join(tree, d))
    with open(os.path.join(tree, "perm/vault/vault/counter"), "w") as f:
        f.write("41\n")
    with open(os.path.join(tree, "perm/vault/vault/data.txt"), "wb") as f:
        f.write(PAYLOAD + b"41\n")
    with open(os.path.join(tree, "perm/bsp/pv--usrmeta/crypt.boot"), "wb") as f:
        f.write(METAVAL + b"41")
    plain = os.path.join(work, "crypt-upstream.plain")
    v.run(["mkfs.ext4", "-q", "-F", "-b", "1024", "-d", tree, plain, "16M"], stdout=subprocess.DEVNULL)
    shutil.rmtree(tree)
    key = os.urandom(32)
    with open(plain, "rb") as f:
        data = f.read()
    os.unlink(plain)

    def mutate(storage):
        d = os.path.join(storage, DISK_DIR.lstrip("/"))
        os.makedirs(d)
        with open(os.path.join(d, "secret.txt"), "wb") as f:
            f.write(key)
        with open(os.path.join(d, "secret.img"), "wb") as f:
            f.write(essiv(data, key, True))
        open(os.path.join(d, "secret.init_done"), "w").close()
    return mutate


def case(tier, v):
    """The crypt case (see the module's doc)."""
    work = tier.work
    factory = build_factory(v, tier.a, work)
    img = v.make_image(work, factory, "crypt")
    bl = v.Bootloader(tier.vm, img, "crypt")

    def boot(tag, kill=None):
        b = bl.boot(kill)
        line = vault_line(v, b, tag) if "vault found" in b.text() else None
        v.log(f"  {tag}: {line or 'no vault line'}")
        return b, line

    # 1: made on the first mount
    b, line = boot("boot 1 (fresh)")
    v.check(b.end == "poweroff", bl.failure(b))
    v.check(line == "vault found counter=0 data= meta=", f"boot 1: {line}")
    text = b.text()
    for want in ("disk 'secret': key /storage/dmcrypt/secret.txt made",
                 "disk 'secret': image /storage/dmcrypt/secret.img of 16 MB made",
                 "mounted on /media/pv/dmcrypt/secret"):
        v.check(want in text, f"boot 1: no '{want}':\n" + bl.failure(b))
    for f in (SENTINEL, GOODBAK):
        v.check(v.debugfs_exists(img, f), f"boot 1: no {f}")
    v.check(not v.debugfs_exists(img, IMAGE + ".new"), "boot 1: the image's .new is left")
    no_plaintext(v, img, "boot 1")
    opened_here(v, work, img, "boot 1", 1)
    v.fsck(img)

    # 2: no sentinel (a power cut before it): only the sentinel is made; a hard reset after
    # vault synced its second write
    debugfs_w(v, img, f"rm {SENTINEL}")
    b, line = boot("boot 2 (no sentinel, killed)",
                   kill=lambda b, now: any(x == "vault written 2" for _, _, x in b.kmsg("MGMT")))
    v.check(b.end == "killed", bl.failure(b))
    v.check(line == "vault found counter=1 data=1 meta=1", f"boot 2: {line}")
    v.check("of 16 MB made" not in b.text() and "key /storage" not in b.text(),
            "boot 2: the disk was made again:\n" + bl.failure(b))

    # 3: what boot 2 synced survived the reset
    b, line = boot("boot 3 (after the hard reset)")
    v.check(b.end == "poweroff", bl.failure(b))
    v.check(line == "vault found counter=2 data=2 meta=2", f"boot 3: {line}")
    v.check(v.debugfs_exists(img, SENTINEL), "boot 3: the sentinel was not made again")
    no_plaintext(v, img, "boot 3")
    opened_here(v, work, img, "boot 3", 3)
    v.fsck(img)

    # 4: a wrong key is refused without touching the image or its backup
    key_file = os.path.join(work, "crypt-key")
    with open(key_file, "wb") as f:
        f.write(v.debugfs_cat(img, KEY))
    before = {f: hashlib.sha256(dump(v, img, f, os.path.join(work, "crypt-cmp"))).hexdigest()
              for f in (IMAGE, GOODBAK)}
    wrong = os.path.join(work, "crypt-wrong-key")
    with open(wrong, "wb") as f:
        f.write(hashlib.sha256(b"not the key").digest())
    debugfs_w(v, img, f"rm {KEY}", f"write {wrong} {KEY}")
    b, line = boot("boot 4 (wrong key)")
    v.check(b.end == "reboot" and line is None, f"boot 4: vault ran: {line}\n" + bl.failure(b))
    v.check("rebooting (container vault failed without recovery)" in b.text(), bl.failure(b))
    err = [l for _, l in b.lines if "container vault: disk" in l and "wrong key" in l]
    v.check(err, "boot 4: no error naming the disk and a wrong key:\n" + bl.failure(b))
    v.log(f"  boot 4: {err[0].split('-- ', 1)[-1]}")
    after = {f: hashlib.sha256(dump(v, img, f, os.path.join(work, "crypt-cmp"))).hexdigest()
             for f in (IMAGE, GOODBAK)}
    v.check(after == before, f"boot 4: the image or its backup changed: {before} -> {after}")
    for f in (IMAGE + ".bad", IMAGE + ".new"):
        v.check(not v.debugfs_exists(img, f), f"boot 4: {f} exists")
    v.check(v.debugfs_cat(img, KEY) == open(wrong, "rb").read(), "boot 4: the key file changed")
    v.fsck(img)

    # 5: the right key, the image's superblock damaged: the backup (the image as before its
    # first mount) mounts, so it replaces the image, which is kept as .bad
    data = bytearray(dump(v, img, IMAGE, os.path.join(work, "crypt-cmp")))
    data[1024:2048] = hashlib.sha256(b"damage").digest() * 32
    damaged = os.path.join(work, "crypt-damaged")
    with open(damaged, "wb") as f:
        f.write(data)
    debugfs_w(v, img, f"rm {KEY}", f"write {key_file} {KEY}", f"rm {IMAGE}", f"write {damaged} {IMAGE}")
    b, line = boot("boot 5 (damaged image)")
    v.check(b.end == "poweroff", bl.failure(b))
    v.check(line == "vault found counter=0 data= meta=", f"boot 5: {line}")
    v.check("the backup mounts: the image is kept as /storage/dmcrypt/secret.img.bad" in b.text(),
            "boot 5: no restore from the backup:\n" + bl.failure(b))
    bad = hashlib.sha256(dump(v, img, IMAGE + ".bad", os.path.join(work, "crypt-cmp"))).hexdigest()
    v.check(bad == hashlib.sha256(data).hexdigest(), "boot 5: the damaged image was not kept as it was")
    for f in ("crypt-cmp", "crypt-damaged", "crypt-key"):
        os.unlink(os.path.join(work, f))
    v.fsck(img)
    os.unlink(img)

    # 5: a disk made upstream's way opens here, and stays what upstream opens
    img = v.make_image(work, factory, "crypt-upstream", mutate=upstream_made(v, work))
    bl = v.Bootloader(tier.vm, img, "crypt-upstream")
    b, line = boot("boot 6 (made upstream's way)")
    v.check(b.end == "poweroff", bl.failure(b))
    v.check(line == "vault found counter=41 data=41 meta=41", f"boot 6: {line}")
    v.check("made" not in " ".join(l for _, l in b.lines if "disk 'secret'" in l),
            "boot 6: the disk was made again:\n" + bl.failure(b))
    no_plaintext(v, img, "boot 6")
    opened_here(v, work, img, "boot 6", 42)
    v.fsck(img)
    os.unlink(img)
    v.log("  made on the device, opened here (e2fsck -fn clean); survived a missing sentinel "
          "and a hard reset; a wrong key refused with the image and backup unchanged; a "
          "damaged image replaced by its backup and kept; a disk made upstream's way opened "
          "and written; no plaintext on the storage")
