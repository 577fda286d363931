#!/bin/sh
# The memory hog: lxc.cgroup2.memory.max = 16M. A 4 MiB buffer must work, a 64 MiB one must be
# OOM-killed inside this container's cgroup (dd dies by SIGKILL: rc 137); the shell lives on.
trap 'exit 0' TERM
say() { echo "HOG: $*"; echo "<2>HOG: $*" > /dev/kmsg 2>/dev/null; }
say "memory.max=$(cat /sys/fs/cgroup/memory.max 2>&1) cgroup=$(cat /proc/self/cgroup)"
dd if=/dev/zero of=/dev/null bs=4M count=4 2>/dev/null; say "small rc=$?"
dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; say "big rc=$?"
say "oom_kill=$(sed -n 's/^oom_kill //p' /sys/fs/cgroup/memory.events 2>&1)"
# status_goal READY: the device (and so mgmt, before it settles) waits for this
pvcontrol signal ready >/dev/null || say "signal ready failed rc=$?"
while :; do sleep 1 & wait $!; done
