#!/bin/sh
# Guest side of a virtual-device benchmark run (started by vts/vm/run, see
# docs/BENCHMARKS.md): the device configuration exactly as the service's init script sets
# it (every `write PATH VALUE` line of service/dmaloadd.rc, applied here as init would at
# boot), test files from /dev/urandom (the bench reuses files of the right size), then the
# bench.
# Environment: SIZES ("512K 8M 256M 1G"), RUNS, BENCH (static dmaload-bench; a static
# dmaloadd beside it, rsb_hub in $DMALOAD_GUEST_BIN_DIR), OUT (JSON file on the shared
# repo), EXTRA (more bench options), RC (the init script, default service/dmaloadd.rc).
# Not the device's default, for comparisons only: HUGETLB_PAGES (2 MiB pages to reserve
# for a hugetlb pool at boot; default 0 = none), SETUP (more `PATH=VALUE` writes).
set -e
rc=${RC:-service/dmaloadd.rc}
# `write PATH VALUE` lines of the rc file (comments and other commands left out).
sed -n 's/^[[:space:]]*write[[:space:]]\{1,\}\([^[:space:]]\{1,\}\)[[:space:]]\{1,\}\(.*[^[:space:]]\)[[:space:]]*$/\1 \2/p' "$rc" >/tmp/rc-writes
[ -s /tmp/rc-writes ] || { echo "guest-run: no write lines in $rc" >&2; exit 1; }
while read -r path value; do
  echo "$value" > "$path"
  echo "device setup ($rc): $path = $(cat "$path" | tr '\n' ' ')" >&2
done </tmp/rc-writes
for kv in $SETUP; do
  echo "${kv#*=}" > "${kv%%=*}"
  echo "device setup (SETUP, not the default): ${kv%%=*} = $(cat "${kv%%=*}")" >&2
done
if [ "${HUGETLB_PAGES:-0}" -gt 0 ]; then
  echo "$HUGETLB_PAGES" > /proc/sys/vm/nr_hugepages
  echo "hugetlb pool (not the default): $(cat /proc/sys/vm/nr_hugepages) of $HUGETLB_PAGES pages reserved" >&2
fi
mkdir -p /data/b
for s in $SIZES; do
  case $s in *K) n=$(( ${s%K} * 1024 ));; *M) n=$(( ${s%M} * 1048576 ));; *G) n=$(( ${s%G} * 1073741824 ));; esac
  [ -f /data/b/dmaload-bench-$n.bin ] || dd if=/dev/urandom of=/data/b/dmaload-bench-$n.bin bs=1048576 count=$(( (n + 1048575) / 1048576 )) 2>/dev/null
  truncate -s $n /data/b/dmaload-bench-$n.bin
done
sync
exec "$BENCH" --sizes "$(echo $SIZES | tr ' ' ,)" --runs "$RUNS" --dir /data/b --json --keep-files $EXTRA > "$OUT"
