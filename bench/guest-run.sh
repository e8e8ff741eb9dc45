#!/bin/sh
# Guest side of a virtual-device benchmark run (started by vts/vm/run, see
# docs/BENCHMARKS.md): device config as the service's init script sets it, test files
# from /dev/urandom (the bench reuses files of the right size), then the bench.
# Environment: SIZES ("512K 8M 256M 1G"), RUNS, BENCH (static dmaload-bench), OUT (JSON
# file on the shared repo), EXTRA (more bench options), HUGETLB_PAGES (2 MiB pages to
# reserve for the hugetlb pool, as a device's init would at boot; default 0 = no pool).
set -e
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled
if [ "${HUGETLB_PAGES:-0}" -gt 0 ]; then
  echo "$HUGETLB_PAGES" > /proc/sys/vm/nr_hugepages
  echo "hugetlb pool: $(cat /proc/sys/vm/nr_hugepages) of $HUGETLB_PAGES pages reserved" >&2
fi
mkdir -p /data/b
for s in $SIZES; do
  case $s in *K) n=$(( ${s%K} * 1024 ));; *M) n=$(( ${s%M} * 1048576 ));; *G) n=$(( ${s%G} * 1073741824 ));; esac
  [ -f /data/b/dmaload-bench-$n.bin ] || dd if=/dev/urandom of=/data/b/dmaload-bench-$n.bin bs=1048576 count=$(( (n + 1048575) / 1048576 )) 2>/dev/null
  truncate -s $n /data/b/dmaload-bench-$n.bin
done
sync
exec "$BENCH" --sizes "$(echo $SIZES | tr ' ' ,)" --runs "$RUNS" --dir /data/b --json --keep-files $EXTRA > "$OUT"
