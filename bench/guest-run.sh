#!/bin/sh
# Guest side of a virtual-device benchmark run (started by vts/vm/run, see
# docs/BENCHMARKS.md): device config as the service's init script sets it, test files
# from /dev/urandom (the bench reuses files of the right size), then the bench.
# Environment: SIZES ("512K 8M 256M 1G"), RUNS, BENCH (static dmaload-bench), OUT (JSON
# file on the shared repo), EXTRA (more bench options).
set -e
echo advise > /sys/kernel/mm/transparent_hugepage/shmem_enabled
mkdir -p /data/b
for s in $SIZES; do
  case $s in *K) n=$(( ${s%K} * 1024 ));; *M) n=$(( ${s%M} * 1048576 ));; *G) n=$(( ${s%G} * 1073741824 ));; esac
  [ -f /data/b/dmaload-bench-$n.bin ] || dd if=/dev/urandom of=/data/b/dmaload-bench-$n.bin bs=1048576 count=$(( (n + 1048575) / 1048576 )) 2>/dev/null
  truncate -s $n /data/b/dmaload-bench-$n.bin
done
sync
exec "$BENCH" --sizes "$(echo $SIZES | tr ' ' ,)" --runs "$RUNS" --dir /data/b --json --keep-files $EXTRA > "$OUT"
