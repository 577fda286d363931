#!/usr/bin/env bash
# Buildroot post-image script (BR2_ROOTFS_POST_IMAGE_SCRIPT) for qemu aarch64 virt:
# makes the storage disk that pantavisor (the initramfs /init) mounts by label.
#   - a factory revision (trails/0) made by the project's host-side state tool,
#     scripts/pvmk, with one container whose root file system is the target
#     root file system Buildroot just made (busybox);
#   - storage.ext4, an ext4 image of it labelled "pvstorage";
#   - start-qemu.sh, the command line that boots it.
# Buildroot runs it with BINARIES_DIR as $1 and TARGET_DIR, HOST_DIR,
# BR2_EXTERNAL_PANTAVISOR_PATH in the environment; mksquashfs and mkfs.ext4 come
# from host-squashfs and host-e2fsprogs (in PATH), pvmk needs the host's python3.
set -euo pipefail

BINARIES_DIR="${1:?usage: post-image.sh BINARIES_DIR}"
PVMK="${BR2_EXTERNAL_PANTAVISOR_PATH:?}/../scripts/pvmk"
STORAGE_SIZE="${PV_STORAGE_SIZE:-256M}"
WORK="${BINARIES_DIR}/pv-factory"

rm -rf "${WORK}"
mkdir -p "${WORK}"
cat > "${WORK}/factory.json" <<JSON
{
  "groups": [{"name": "root", "status_goal": "STARTED",
              "restart_policy": "system", "timeout": 60}],
  "containers": {
    "os": {"rootfs": "${TARGET_DIR:?}", "group": "root", "roles": ["mgmt"],
           "network": "host",
           "cmd": ["/bin/sh", "-c",
                   "trap 'exit 0' TERM; echo os container up; while :; do sleep 60; done"]}
  }
}
JSON
python3 "${PVMK}" "${WORK}/factory.json" --factory "${WORK}/storage"

rm -f "${BINARIES_DIR}/storage.ext4"
truncate -s "${STORAGE_SIZE}" "${BINARIES_DIR}/storage.ext4"
mkfs.ext4 -q -F -L pvstorage -d "${WORK}/storage" "${BINARIES_DIR}/storage.ext4"

cat > "${BINARIES_DIR}/start-qemu.sh" <<'QEMU'
#!/bin/sh
# Boots the kernel with pantavisor as the initramfs /init and the factory storage disk.
cd "$(dirname "$0")" || exit 1
exec qemu-system-aarch64 -M virt -cpu cortex-a53 -smp 2 -m 512 \
	-nographic -no-reboot \
	-kernel Image -initrd rootfs.cpio \
	-append "console=ttyAMA0 panic=-1 pv_rev=0" \
	-drive file=storage.ext4,if=none,format=raw,id=d0 \
	-device virtio-blk-pci,drive=d0 "$@"
QEMU
chmod +x "${BINARIES_DIR}/start-qemu.sh"
