#!/bin/sh
# The mgmt test container of the VM tier (tests/vm/vm.py). Talks to pantavisor only through
# pv-ctrl (`pvcontrol`, the static pantavisor binary under that name). Every line it says goes
# to its console and, through the bound /dev/kmsg, to the serial console with the kernel's
# timestamp, where the host reads it live.
#
# Each boot: wait until every container of the running revision is STARTED (or READY, for a
# container whose goal is READY); then
# - a job in /data/job (NAME=<step>) not started yet: mark it started (durably), upload the
#   update in /data/upd (objects/<sha>, json) as locals/<NAME>, LOCAL_RUN it; the device
#   installs it and reboots into it;
# - otherwise settle: on an updated revision wait for its progress DONE (the commit), then
#   power the device off through pv-ctrl. The host reads the storage after that.
trap 'exit 0' TERM
# waits in the background, so that SIGTERM (the device stopping) ends us at once
pause() { sleep "$1" & wait $!; }
idle() { while :; do pause 1; done; }
say() { echo "MGMT: $*"; echo "<2>MGMT: $*" > /dev/kmsg 2>/dev/null; }
rev=$(sed -n 's/.*pv_rev=\([^ ]*\).*/\1/p' /proc/cmdline)
say "up rev=$rev"
i=0
while :; do
  ls=$(pvcontrol ls 2>/dev/null)
  n=$(echo "$ls" | grep -o '"name":' | wc -l)
  s=$(echo "$ls" | sed 's/},{/}\n{/g' | grep -c '"status":"\([A-Z]*\)","status_goal":"\1"')
  [ "$n" -gt 0 ] && [ "$n" = "$s" ] && break
  i=$((i + 1)); [ $((i % 50)) = 0 ] && say "waiting: $s of $n STARTED: $ls"
  sleep 0.1
done
say "all STARTED ($n at their goal) rev=$rev"
if [ -f /data/job ] && [ ! -f /data/job.started ]; then
  . /data/job
  echo "$rev" > /data/job.started; sync
  say "job $NAME: upload"
  for o in /data/upd/objects/*; do
    [ -f "$o" ] || continue
    pvcontrol objects put "$o" "${o##*/}" >/dev/null || say "job $NAME: objects put ${o##*/} failed rc=$?"
  done
  pvcontrol steps put /data/upd/json "locals/$NAME" >/dev/null || say "job $NAME: steps put failed rc=$?"
  say "job $NAME: LOCAL_RUN"
  out=$(pvcontrol cmd run "locals/$NAME" 2>&1); rc=$?
  say "job $NAME: LOCAL_RUN rc=$rc $out"
  # accepted: the device installs the update and reboots into it. Refused, or no reboot
  # within 90 s: power off, the host reports it.
  if [ "$rc" = 0 ]; then pause 90; say "job $NAME: no reboot 90 s after LOCAL_RUN"; fi
  pvcontrol cmd poweroff "vm test: LOCAL_RUN did not reboot" >/dev/null
  idle
fi
if [ "$rev" != 0 ]; then
  i=0
  while :; do
    p=$(pvcontrol steps show-progress "$rev" 2>/dev/null)
    case $p in *'"status":"DONE"'*) break ;; esac
    i=$((i + 1)); [ $((i % 50)) = 0 ] && say "waiting for the commit of $rev: $p"
    sleep 0.2
  done
fi
say "settled rev=$rev"
pvcontrol cmd poweroff "vm test settled" >/dev/null || say "poweroff refused rc=$?"
idle
