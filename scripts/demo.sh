#!/usr/bin/env bash
# The main job on a built-in default: make a sample image, then inspect,
# verify, extract and mount it with wimfs.
#
#   scripts/demo.sh [WIM [IMAGE]]
#
# With no argument a sample tree (text, binary, a multi-chunk file, an empty
# file, a hard link, a symlink) is generated and captured in LZX and in solid
# LZMS (with wimlib-imagex, until wimfs writes WIMs of its own). With a WIM,
# that image is used instead.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wimlib-imagex >/dev/null; then
    echo "demo: installing wimtools and fuse3 (needed to make the sample and to mount)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wimtools fuse3 >/dev/null
fi
cargo build --release -q
W=target/release/wimfs
work=$(mktemp -d /tmp/wimfs-demo.XXXXXX)
mnt="$work/mnt"
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then "$W" unmount "$mnt" || fusermount3 -u -z "$mnt" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if [ $# -ge 1 ]; then
    wims=("$1")
    image=${2:-1}
else
    src="$work/sample"
    mkdir -p "$src/docs/deep/er" "$src/bin"
    printf 'Hello from wimfs\n' > "$src/docs/hello.txt"
    seq 1 200000 > "$src/docs/numbers.txt"
    head -c 3000000 /dev/urandom > "$src/bin/random.bin"
    cp "$(command -v bash)" "$src/bin/bash"
    : > "$src/docs/empty"
    ln "$src/docs/hello.txt" "$src/docs/deep/er/hardlink.txt"
    ln -s ../docs/hello.txt "$src/bin/link"
    wims=("$work/sample-lzx.wim" "$work/sample-solid.esd")
    "$W" capture "$src" "${wims[0]}" "Sample" --compress lzx >/dev/null
    "$W" capture "$src" "${wims[1]}" "Sample" --solid >/dev/null
    image=1
fi

for wim in "${wims[@]}"; do
    echo "=== $wim"
    "$W" info "$wim" "$image"
    echo "--- verify"
    "$W" verify "$wim"
    echo "--- dir (first 10 entries)"
    "$W" dir "$wim" "$image" | head -10
    echo "--- apply"
    rm -rf "$work/out"
    "$W" apply "$wim" "$image" "$work/out"
    if [ -n "${src:-}" ]; then
        diff -r --no-dereference "$src" "$work/out" && echo "applied tree equals the source"
    fi
    if [ -e /dev/fuse ] && "$W" help mount >/dev/null 2>&1; then
        echo "--- mount (read-only)"
        mkdir -p "$mnt"
        "$W" mount "$wim" "$image" "$mnt"
        "$W" mounts || true
        ls -la "$mnt" | head -10
        if [ -n "${src:-}" ]; then
            diff -r --no-dereference "$src" "$mnt" && echo "mounted tree equals the source"
        fi
        "$W" unmount "$mnt"
        if [ -n "${src:-}" ]; then
            # Servicing, on the generated sample only (never on a WIM you gave).
            echo "--- servicing: mount --rw, change files, commit, optimize"
            "$W" mount "$wim" "$image" "$mnt" --rw
            echo "added by the wimfs demo" > "$mnt/docs/added.txt"
            rm "$mnt/bin/random.bin"
            "$W" unmount "$mnt" --commit
            "$W" cat "$wim" "$image" /docs/added.txt
            "$W" dir "$wim" "$image" /bin
            "$W" verify "$wim"
            "$W" optimize "$wim"
        fi
    fi
done
echo "demo: done"
