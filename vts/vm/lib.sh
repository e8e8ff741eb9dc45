# Shared by vts/vm/run, vts/vm/cargo-test and vts/vm/guest-build (sourced, not run).
#
# The virtual device: a Debian 6.12 kernel (binder_linux, dma-heaps, udmabuf) booted by
# qemu under TCG with a busybox initramfs. Everything downloaded or built once per machine
# lives in the cache directory below; re-runs only check that it is there.

vm_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$vm_dir/../.." && pwd)
cache_dir=${DMALOAD_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dmaload-vm}
guest_triple=x86_64-unknown-linux-gnu
guest_target_dir=$repo_root/target/guest
# Every binary a guest command may start (test helpers, dmaloadd, rsb_hub, static C
# programs). Guest commands see it as $DMALOAD_GUEST_BIN_DIR and on $PATH.
guest_bin_dir=$guest_target_dir/bin

# Kernel modules the guest loads, in dependency order by modprobe (see fetch_kernel).
vm_modules=(ext4 virtio_blk 9pnet_virtio 9p binder_linux)
# The Debian meta package that always depends on the current 6.12 kernel.
kernel_meta_pkg=linux-image-6.12-amd64

vm_log() { echo "vm: $*" >&2; }
vm_die() {
    echo "vm: error: $*" >&2
    exit 2
}

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        vm_die "need root for: $* (run as root or install sudo)"
    fi
}

apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then
        vm_log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || vm_die "apt-get update failed"
        apt_updated=1
    fi
}

# Install Debian packages that are missing (checked with dpkg-query, so re-runs cost ~nothing).
ensure_pkgs() {
    local missing=() p
    for p in "$@"; do
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = 'install ok installed' ] || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    vm_log "installing Debian packages: ${missing[*]}"
    apt_update_once
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2 || vm_die "apt-get install ${missing[*]} failed"
}

ensure_host_tools() {
    ensure_pkgs qemu-system-x86 busybox-static cpio kmod xz-utils e2fsprogs
}

# The fs-verity tool in the guest, the tests' reference for `fsverity enable` and `fsverity
# digest`: Debian's `fsverity` (fsverity-utils) with the shared libraries it links and the
# dynamic loader, started by a wrapper on the guest's $PATH ($DMALOAD_GUEST_BIN_DIR/fsverity;
# the initramfs has no libc). Copied again when the host's binary changes.
ensure_guest_fsverity() {
    ensure_pkgs fsverity
    local tool dir key
    tool=$(command -v fsverity) || vm_die "fsverity is installed but not on \$PATH"
    dir=$guest_bin_dir/fsverity-tool
    key=$(sha256sum "$tool" | cut -c1-16)
    [ -f "$dir/built-$key" ] && [ -x "$guest_bin_dir/fsverity" ] && return 0
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$tool" "$dir/fsverity"
    # ldd: "libx.so => /path (addr)" for libraries, "/path/ld-linux... (addr)" for the loader.
    ldd "$tool" | awk '$2 == "=>" && $3 ~ /^\// { print "lib " $3 } $1 ~ /^\// { print "ld " $1 }' |
        while read -r kind path; do
            if [ "$kind" = ld ]; then cp -L "$path" "$dir/ld.so"; else cp -L "$path" "$dir/"; fi
        done
    [ -x "$dir/ld.so" ] || vm_die "no dynamic loader found for $tool"
    cat >"$guest_bin_dir/fsverity" <<'WRAPPER'
#!/bin/sh
# Debian's fsverity with its own libraries and loader (vts/vm/lib.sh: ensure_guest_fsverity).
dir=$(dirname "$0")/fsverity-tool
exec "$dir/ld.so" --library-path "$dir" "$dir/fsverity" "$@"
WRAPPER
    chmod 755 "$guest_bin_dir/fsverity"
    touch "$dir/built-$key"
}

# The versioned kernel package the meta package points at today.
resolve_kernel_pkg() {
    apt-cache depends "$kernel_meta_pkg" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-6\.12[^ ]*-amd64\)$/\1/p' | grep -v -- '-unsigned$' | head -n1
}

# Sets kernel_dir to a cache folder holding vmlinuz, kver and modules/ (decompressed .ko
# files plus modules.load: "file params" lines in load order). Downloads once per kernel.
fetch_kernel() {
    local pkg
    pkg=$(resolve_kernel_pkg)
    if [ -z "$pkg" ]; then
        apt_update_once
        pkg=$(resolve_kernel_pkg)
    fi
    if [ -z "$pkg" ]; then
        # No apt metadata (offline?): fall back to the newest kernel already cached.
        kernel_dir=$(ls -d "$cache_dir"/kernel/linux-image-* 2>/dev/null | sort -V | tail -n1)
        [ -n "$kernel_dir" ] && [ -f "$kernel_dir/ready" ] ||
            vm_die "cannot resolve $kernel_meta_pkg with apt-cache and no kernel is cached"
        vm_log "apt-cache cannot resolve $kernel_meta_pkg; using cached $(basename "$kernel_dir")"
        return 0
    fi
    kernel_dir=$cache_dir/kernel/$pkg
    [ -f "$kernel_dir/ready" ] && return 0

    vm_log "downloading $pkg (once per machine) into $kernel_dir"
    local work
    work=$(mktemp -d "$cache_dir/tmp.XXXXXX")
    (
        set -e
        cd "$work"
        # apt-get download needs current lists for the exact version; retry after an update.
        apt-get download -qq "$pkg" >&2 2>/dev/null || {
            apt_update_once
            apt-get download -qq "$pkg" >&2
        }
        dpkg-deb -x ./*.deb root
        kver=$(ls root/lib/modules | head -n1)
        depmod -b root "$kver"
        mkdir -p out/modules
        cp root/boot/vmlinuz-"$kver" out/vmlinuz
        cp root/boot/config-"$kver" out/config
        echo "$kver" >out/kver
        : >out/modules/modules.load
        for m in "${vm_modules[@]}"; do
            modprobe -d root -S "$kver" --show-depends "$m"
        done | awk '$1 == "insmod" && !seen[$2]++' | while read -r _ path params; do
            name=$(basename "$path")
            name=${name%.xz}
            xz -dc "$path" >"out/modules/$name"
            echo "$name $params" >>out/modules/modules.load
        done
        # binder_linux creates misc devices /dev/binder, /dev/hwbinder, /dev/vndbinder.
        sed -i 's/^\(binder_linux\.ko\) *$/\1 devices=binder,hwbinder,vndbinder/' out/modules/modules.load
        grep -q '^binder_linux\.ko devices=' out/modules/modules.load
        echo "$pkg" >out/package
        touch out/ready
    ) || {
        rm -rf "$work"
        vm_die "could not download or unpack $pkg"
    }
    rm -rf "$kernel_dir"
    mkdir -p "$(dirname "$kernel_dir")"
    mv "$work/out" "$kernel_dir"
    rm -rf "$work"
    vm_log "cached kernel $(cat "$kernel_dir/kver"): modules $(cut -d' ' -f1 "$kernel_dir/modules/modules.load" | tr '\n' ' ')"
}

# Sets initramfs to a cached cpio (gzip) with busybox, the init script and the modules.
build_initramfs() {
    local busybox=/bin/busybox
    [ -x "$busybox" ] || busybox=$(command -v busybox)
    local key
    key=$( (cat "$vm_dir/init" "$kernel_dir/modules/modules.load" "$kernel_dir/kver"; sha256sum "$busybox") | sha256sum | cut -c1-16)
    initramfs=$cache_dir/initramfs/$(cat "$kernel_dir/kver")-$key.cpio.gz
    [ -f "$initramfs" ] && return 0
    local work
    work=$(mktemp -d "$cache_dir/tmp.XXXXXX")
    mkdir -p "$work/bin" "$work/lib/modules" "$work/dev" "$(dirname "$initramfs")"
    chmod 755 "$work" # the guest's / (mktemp made it 700)
    cp "$busybox" "$work/bin/busybox"
    cp "$vm_dir/init" "$work/init"
    chmod 755 "$work/init" "$work/bin/busybox"
    cp "$kernel_dir"/modules/* "$work/lib/modules/"
    (cd "$work" && find . | cpio -o -H newc --quiet | gzip -1) >"$initramfs.tmp"
    mv "$initramfs.tmp" "$initramfs"
    rm -rf "$work"
}
