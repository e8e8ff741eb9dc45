#!/bin/sh
# Runs in the virtual device (vts/vm/run): the C test of libdmaload against dmaloadd with a
# real dma-heap, over both transports:
#   1. RPC binder on a Unix socket;
#   2. kernel binder (/dev/binder) through rsbinder's service manager (rsb_hub).
# Test files go to /data (ext4 on a virtio disk: real O_DIRECT).
set -u
bin=${DMALOAD_GUEST_BIN_DIR:?run me through vts/vm/run}
dir=/data/client-test
mkdir -p "$dir"
failed=0
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

wait_for() { # wait_for TEST... : up to 10 s
    i=0
    while [ $i -lt 200 ]; do
        if "$@"; then return 0; fi
        i=$((i + 1))
        sleep 0.05
    done
    return 1
}

echo "== dma-heaps: $(ls /dev/dma_heap 2>/dev/null | tr '\n' ' ')"

echo "== RPC binder on a Unix socket"
sock=/tmp/dmaloadd.sock
"$bin/dmaloadd" --rpc-socket "$sock" >/tmp/dmaloadd-rpc.log 2>&1 &
pids="$pids $!"
if wait_for test -S "$sock"; then
    "$bin/dmaload_test" "$dir" "unix:$sock" || failed=$((failed + 1))
    "$bin/dmaload" --endpoint "unix:$sock" backends || failed=$((failed + 1))
else
    echo "dmaloadd did not start on $sock"; cat /tmp/dmaloadd-rpc.log; failed=$((failed + 1))
fi

echo "== kernel binder through the service manager"
# rsb_hub opens /dev/binderfs/<device>; this kernel has the misc device /dev/binder instead.
if [ ! -e /dev/binderfs/binder ]; then
    mkdir -p /dev/binderfs && ln -s /dev/binder /dev/binderfs/binder
fi
"$bin/rsb_hub" --insecure-allow-all >/tmp/rsb_hub.log 2>&1 &
pids="$pids $!"
# rsb_hub must hold handle 0 before dmaloadd registers (slow to start under TCG); a dmaloadd
# that came too early exits (DEAD_OBJECT from handle 0) and is started again below.
sleep 3
start_binder_service() {
    "$bin/dmaloadd" --binder /dev/binder >>/tmp/dmaloadd-binder.log 2>&1 &
    service_pid=$!
    pids="$pids $service_pid"
}
start_binder_service
# Every kernel-binder step is bounded: a hang must show up as a failure with the logs.
registered() { timeout 5 "$bin/dmaload" --endpoint binder heaps >/tmp/heaps.log 2>&1; }
tries=0
restarts=0
until registered; do
    tries=$((tries + 1))
    if [ $tries -ge 20 ]; then
        echo "dmaload --endpoint binder heaps failed or hung $tries times:"; cat /tmp/heaps.log
        break
    fi
    if ! kill -0 "$service_pid" 2>/dev/null; then
        restarts=$((restarts + 1))
        start_binder_service
    fi
    sleep 1
done
[ $restarts -eq 0 ] || echo "dmaloadd started $restarts more times before rsb_hub held handle 0"
if timeout 120 "$bin/dmaload_test" "$dir" binder; then :; else
    echo "dmaload_test over kernel binder failed (status $?)"
    failed=$((failed + 1)); cat /tmp/rsb_hub.log /tmp/dmaloadd-binder.log
fi

echo "guest-client: $failed failed runs"
[ "$failed" -eq 0 ]
