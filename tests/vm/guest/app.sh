#!/bin/sh
# The app container: says its version (from its own rootfs) and lives on.
trap 'exit 0' TERM
msg="APP: version $(cat /etc/version) rev=$(sed -n 's/.*pv_rev=\([^ ]*\).*/\1/p' /proc/cmdline)"
echo "$msg"; echo "<2>$msg" > /dev/kmsg 2>/dev/null
while :; do sleep 1 & wait $!; done
