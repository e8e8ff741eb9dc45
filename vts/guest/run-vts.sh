#!/bin/sh
# Runs in the virtual device (vts/vm/run): the dmaload VTS against a real dmaloadd on kernel
# binder, registered with rsbinder's service manager (rsb_hub), under a restart loop that
# stands in for init's `restart` of dmaloadd.rc. Test files go to /data (ext4, virtio).
#
#   sh vts/guest/run-vts.sh [--repeat N] [vts args...]
#
# --repeat N runs the suite (or the groups named) N times against the same service in one
# boot, stopping at the first failure or dmaloadd crash (a soak, e.g. of the load group). A
# dmaloadd that dies of a signal other than the faults group's SIGKILL is a failure; its core
# dump and the binary are kept in target/vts/ for gdb.
set -u
bin=${DMALOAD_GUEST_BIN_DIR:?run me through vts/vm/run}
repeat=1
if [ "${1:-}" = "--repeat" ]; then
    repeat=${2:?--repeat needs a count}
    shift 2
fi
out="${DMALOAD_REPO:-$PWD}/target/vts"
mkdir -p "$out"
pids=""
cleanup() {
    touch /tmp/vts-stop
    for p in $pids; do kill "$p" 2>/dev/null; done
    [ -f /tmp/dmaloadd.pid ] && kill "$(cat /tmp/dmaloadd.pid)" 2>/dev/null
}
trap cleanup EXIT

# dma-buf accounting of the whole system (leak checks) lives in debugfs.
grep -q " /sys/kernel/debug " /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug
mkdir -p /data/vts
# Core dumps of whatever crashes (dmaloadd above all) go to the data disk.
ulimit -c unlimited
# Callers of other uids may take their caller's priority (nice 0) in binder transactions, as
# on Android; without it the driver logs "RLIMIT_NICE not set" for every call they serve,
# and its rate limit then hides the refcount errors the load group looks for.
ulimit -e 20 2>/dev/null || echo "vts-guest: cannot set RLIMIT_NICE"
echo "/data/core.%e.%p" >/proc/sys/kernel/core_pattern
# Load-test workers run as other uids (separate callers): they need the binder device.
chmod 666 /dev/binder 2>/dev/null
echo "vts-guest: dma-heaps: $(ls /dev/dma_heap 2>/dev/null | tr '\n' ' ')udmabuf: $([ -e /dev/udmabuf ] && echo yes || echo no)"
echo "vts-guest: memory: $(grep -E 'MemTotal|MemAvailable' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"

# DMALOAD_VTS_SERVICE_BIN: another dmaloadd build to test (default: the guest build's).
service_bin=${DMALOAD_VTS_SERVICE_BIN:-$bin/dmaloadd}
if [ -x "$bin/rsb_hub" ] && [ -x "$service_bin" ]; then
    # rsb_hub opens /dev/binderfs/<name>; the virtual device has the misc device only.
    if [ ! -e /dev/binderfs/binder ]; then
        mkdir -p /dev/binderfs && ln -s /dev/binder /dev/binderfs/binder
    fi
    "$bin/rsb_hub" --insecure-allow-all >/tmp/rsb_hub.log 2>&1 &
    pids="$pids $!"
    sleep 0.5
    # The binary under test is copied first: the shared build directory may be rebuilt while
    # the suite runs, and a core dump needs the very binary that crashed.
    cp "$service_bin" /tmp/dmaloadd
    # Warm reuse as a device maker would opt in (the default keeps nothing): 256 MiB of
    # released shareable buffers per uid for 3 s, freed while MemAvailable is below half of
    # what this boot started with (the reuse group crosses it on purpose).
    cache_min=$(awk '/^MemAvailable:/ {print int($2 * 1024 / 2)}' /proc/meminfo)
    # The supervisor: restarts dmaloadd whenever it dies (as init does on a device).
    (
        while [ ! -e /tmp/vts-stop ]; do
            /tmp/dmaloadd --binder /dev/binder --cache-per-caller 256M --cache-max-age 3 \
                --cache-min-available "$cache_min" >>/tmp/dmaloadd.log 2>&1 &
            echo $! >/tmp/dmaloadd.pid
            wait $!
            echo "vts-guest: dmaloadd exited with status $?; restarting" >>/tmp/dmaloadd.log
            sleep 0.2
        done
    ) &
    pids="$pids $!"
else
    echo "vts-guest: no rsb_hub in $bin or no $service_bin: the service groups will fail"
fi

# dmaloadd exits that are no test's doing: anything but the faults group's SIGKILL (137).
crashes() {
    grep -o 'exited with status [0-9]*' /tmp/dmaloadd.log 2>/dev/null | grep -c -v 'status 137$'
}
status=0
i=1
while [ "$i" -le "$repeat" ]; do
    [ "$repeat" -gt 1 ] && echo "vts-guest: iteration $i of $repeat (uptime $(cut -d' ' -f1 /proc/uptime) s)"
    "$bin/dmaload-vts" --require-device "$@" || status=$?
    if [ "$(crashes)" -gt 0 ]; then
        echo "vts-guest: dmaloadd crashed in iteration $i"
        status=1
    fi
    [ "$status" -eq 0 ] || break
    i=$((i + 1))
done
[ "$repeat" -gt 1 ] && echo "vts-guest: $((i > repeat ? repeat : i)) of $repeat iterations run, status $status"
if [ -f /tmp/dmaloadd.log ]; then
    # Kept on the repository share for reading after the run (the guest's /tmp is gone).
    cp /tmp/dmaloadd.log "$out/dmaloadd-guest.log"
    echo "vts-guest: dmaloadd restarts: $(grep -c 'dmaloadd exited with status' /tmp/dmaloadd.log) ($(grep -o 'exited with status [0-9]*' /tmp/dmaloadd.log | sort | uniq -c | tr -s ' ' | tr '\n' ';'))"
    if [ "$status" -ne 0 ]; then
        echo "---- dmaloadd log (last 40 lines without thread-pool chatter; all in target/vts/dmaloadd-guest.log)"
        grep -v 'rsbinder::process_state' /tmp/dmaloadd.log | tail -n 40
    fi
fi
for core in /data/core.*; do
    [ -f "$core" ] || continue
    cp "$core" "$out/" && cp /tmp/dmaloadd "$out/dmaloadd.crashed"
    echo "vts-guest: core dump kept: target/vts/$(basename "$core") (binary: target/vts/dmaloadd.crashed)"
done
# The binder driver's complaints (bad handles, invalid refs, failed transactions) say what
# went wrong. "RLIMIT_NICE not set" only says a caller of another uid may not take the
# sender's priority: counted apart.
nice_notes=$(dmesg 2>/dev/null | grep 'binder' | grep -c 'RLIMIT_NICE not set')
binder_warnings=$(dmesg 2>/dev/null | grep 'binder' | grep -v -c 'RLIMIT_NICE not set')
echo "vts-guest: binder driver messages in the kernel log: $binder_warnings (and $nice_notes 'RLIMIT_NICE not set')"
[ "$binder_warnings" -eq 0 ] || dmesg | grep 'binder' | grep -v 'RLIMIT_NICE not set' | tail -n 20
oom=$(dmesg 2>/dev/null | grep -c -i -E 'out of memory|oom-kill')
echo "vts-guest: OOM kills in the kernel log: $oom"
[ "$oom" -eq 0 ] || status=1
exit "$status"
