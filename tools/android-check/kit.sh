# Sourced by the Android checks: finds the AOSP conformance kit (the real AOSP inputs the
# checks run against: system/sepolicy, the aidl compiler, libbinder_rs, crate versions) and
# prepares what cannot be used from it in place.
#
#   kit_locate          sets AOSP_KIT; returns 1 with a message when the kit is absent
#   kit_sepolicy DIR    copies the kit's sepolicy/ into DIR (once per kit content) and echoes
#                       the copy's check-vendor-policy

# The kit is $DMALOAD_AOSP_KIT, else ../shared/aosp beside the repository. A missing kit is a
# failure of the checks that need it, never a skip.
kit_locate() {
    local root candidate
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    candidate=${DMALOAD_AOSP_KIT:-$root/../shared/aosp}
    if [ ! -f "$candidate/sepolicy/check-vendor-policy" ] || [ ! -x "$candidate/aidl/aidl-check" ] ||
        [ ! -x "$candidate/libbinder_rs/check-soong-rust" ] || [ ! -f "$candidate/crates.tsv" ]; then
        echo "AOSP conformance kit not found at $candidate (set DMALOAD_AOSP_KIT to its directory:" \
            "the one holding sepolicy/, aidl/, libbinder_rs/ and crates.tsv)" >&2
        return 1
    fi
    AOSP_KIT=$(cd "$candidate" && pwd)
    export AOSP_KIT
}

# The kit's sepolicy/reqd_mask holds four files that are symlinks in AOSP (access_vectors,
# mls_decl, mls_macros, security_classes -> ../private/...); the kit stores them as text files
# holding the link target, which breaks its vendor-only compile. The kit is read-only, so the
# checks run a copy in which every such file (whole content a relative path to an existing
# file of the copy) is the symlink again. check-vendor-policy resolves everything relative to
# its own directory, so the copy is complete.
kit_sepolicy() {
    local cache=$1 key dir tmp f target
    key=$(cd "$AOSP_KIT/sepolicy" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum | cut -c1-12)
    dir=$cache/sepolicy-$key
    if [ ! -x "$dir/check-vendor-policy" ]; then
        mkdir -p "$cache" || return 1
        tmp=$(mktemp -d "$cache/.sepolicy.XXXXXX") || return 1
        cp -r "$AOSP_KIT/sepolicy/." "$tmp/" && chmod -R u+w "$tmp" || { rm -rf "$tmp"; return 1; }
        for f in "$tmp"/reqd_mask/*; do
            [ -f "$f" ] && [ ! -L "$f" ] || continue
            target=$(head -c 200 "$f")
            if [[ $target =~ ^\.\./[A-Za-z0-9_./-]+$ ]] && [ "$(wc -l <"$f")" -le 1 ] &&
                [ -f "$(dirname "$f")/$target" ]; then
                ln -sfn "$target" "$f"
            fi
        done
        rm -rf "$dir" && mv "$tmp" "$dir" || { rm -rf "$tmp"; return 1; }
    fi
    echo "$dir/check-vendor-policy"
}
