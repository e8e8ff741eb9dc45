#!/bin/sh
# Runs in the virtual device (vts/vm/run): the dmaload VTS against a real dmaloadd on kernel
# binder, registered with rsbinder's service manager (rsb_hub), under a restart loop that
# stands in for init's `restart` of dmaloadd.rc. Test files go to /data (ext4, virtio).
#
#   sh vts/guest/run-vts.sh [vts args...]
set -u
bin=${DMALOAD_GUEST_BIN_DIR:?run me through vts/vm/run}
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
# Load-test workers run as other uids (separate callers): they need the binder device.
chmod 666 /dev/binder 2>/dev/null
echo "vts-guest: dma-heaps: $(ls /dev/dma_heap 2>/dev/null | tr '\n' ' ')udmabuf: $([ -e /dev/udmabuf ] && echo yes || echo no)"
echo "vts-guest: memory: $(grep -E 'MemTotal|MemAvailable' /proc/meminfo | tr -s ' ' | tr '\n' ' ')"

if [ -x "$bin/rsb_hub" ] && [ -x "$bin/dmaloadd" ]; then
    # rsb_hub opens /dev/binderfs/<name>; the virtual device has the misc device only.
    if [ ! -e /dev/binderfs/binder ]; then
        mkdir -p /dev/binderfs && ln -s /dev/binder /dev/binderfs/binder
    fi
    "$bin/rsb_hub" --insecure-allow-all >/tmp/rsb_hub.log 2>&1 &
    pids="$pids $!"
    sleep 0.5
    # The supervisor: restarts dmaloadd whenever it dies (as init does on a device).
    (
        while [ ! -e /tmp/vts-stop ]; do
            "$bin/dmaloadd" --binder /dev/binder >>/tmp/dmaloadd.log 2>&1 &
            echo $! >/tmp/dmaloadd.pid
            wait $!
            echo "vts-guest: dmaloadd exited with status $?; restarting" >>/tmp/dmaloadd.log
            sleep 0.2
        done
    ) &
    pids="$pids $!"
else
    echo "vts-guest: no dmaloadd/rsb_hub in $bin: the service groups will fail"
fi

"$bin/dmaload-vts" --require-device "$@"
status=$?
if [ -f /tmp/dmaloadd.log ]; then
    # Kept on the repository share for reading after the run (the guest's /tmp is gone).
    mkdir -p "${DMALOAD_REPO:-$PWD}/target/vts" && cp /tmp/dmaloadd.log "${DMALOAD_REPO:-$PWD}/target/vts/dmaloadd-guest.log"
    echo "vts-guest: dmaloadd restarts: $(grep -c 'dmaloadd exited with status' /tmp/dmaloadd.log) ($(grep -o 'exited with status [0-9]*' /tmp/dmaloadd.log | sort | uniq -c | tr -s ' ' | tr '\n' ';'))"
    if [ "$status" -ne 0 ]; then
        echo "---- dmaloadd log (last 40 lines without thread-pool chatter; all in target/vts/dmaloadd-guest.log)"
        grep -v 'rsbinder::process_state' /tmp/dmaloadd.log | tail -n 40
    fi
fi
oom=$(dmesg 2>/dev/null | grep -c -i -E 'out of memory|oom-kill')
echo "vts-guest: OOM kills in the kernel log: $oom"
[ "$oom" -eq 0 ] || status=1
exit "$status"
