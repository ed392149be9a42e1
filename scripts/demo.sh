#!/usr/bin/env bash
# The main job on a built-in default: make a sample image, then inspect,
# verify, extract, mount and service it with wimfs, saying at each step
# what is about to happen and what happened.
#
#   scripts/demo.sh [WIM [IMAGE]]
#
# With no argument a sample folder (text, binary, a multi-chunk file, an
# empty file, a hard link, a symlink) is generated and captured in LZX and
# in solid LZMS with `wimfs capture`: the demo needs no other WIM tool.
# With a WIM, that image is inspected, extracted and mounted read-only
# (never changed).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }
say() { printf '    %s\n' "$*"; }
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "demo: not root and no sudo: cannot run: $*" >&2
        return 1
    fi
}

echo "demo: checking for fusermount3 (mounts)"
need=()
command -v fusermount3 >/dev/null || need+=(fuse3)
if ((${#need[@]})); then
    echo "demo: installing ${need[*]} (apt-get, as root or through sudo)"
    as_root apt-get update -q || echo "demo: apt-get update failed" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
        || echo "demo: could not install ${need[*]}" >&2
fi
echo "demo: building wimfs (cargo build --release: a first build takes 2-3 minutes; cargo shows its progress)"
cargo build --release
W=target/release/wimfs
work=$(mktemp -d /tmp/wimfs-demo.XXXXXX)
mnt="$work/mnt"
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then "$W" unmount "$mnt" || fusermount3 -u -z "$mnt" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
can_mount() { [ -e /dev/fuse ] && command -v fusermount3 >/dev/null && "$W" help mount >/dev/null 2>&1; }

if [ $# -ge 1 ]; then
    wims=("$1")
    image=${2:-1}
else
    src="$work/sample"
    step "Making a sample folder to capture ($src)"
    mkdir -p "$src/docs/deep/er" "$src/bin"
    printf 'Hello from wimfs\n' > "$src/docs/hello.txt"
    seq 1 200000 > "$src/docs/numbers.txt"
    head -c 3000000 /dev/urandom > "$src/bin/random.bin"
    cp "$(command -v bash)" "$src/bin/bash"
    : > "$src/docs/empty"
    ln "$src/docs/hello.txt" "$src/docs/deep/er/hardlink.txt"
    ln -s ../docs/hello.txt "$src/bin/link"
    say "two text files, 3 MB of random bytes, a copy of bash, an empty file,"
    say "a hard link (a second name for docs/hello.txt) and a symlink."
    wims=("$work/sample-lzx.wim" "$work/sample-solid.esd")
    step "Capturing it twice with wimfs capture"
    "$W" capture "$src" "${wims[0]}" "Sample" --compress lzx >/dev/null
    say "sample-lzx.wim: LZX, each file compressed on its own (like install.wim)."
    "$W" capture "$src" "${wims[1]}" "Sample" --solid >/dev/null
    say "sample-solid.esd: *solid* LZMS (like install.esd): all files compressed"
    say "together as one stream, smaller, but reading a file means decompressing"
    say "the chunk it sits in (wimfs caches decompressed chunks for that)."
    image=1
fi

explained=""
for wim in "${wims[@]}"; do
    step "$(basename "$wim"): what the WIM holds (wimfs info)"
    "$W" info "$wim" "$image"
    if [ -z "$explained" ]; then
        say "A *blob* is one distinct file content, stored once however many files"
        say "have it, and named by its SHA-1 checksum. 'image metadata' is the"
        say "image's directory tree (names, attributes, security descriptors)."
        explained=1
    fi

    step "Checking every blob's SHA-1 and the image metadata (wimfs verify)"
    "$W" verify "$wim"

    step "Listing the image (wimfs dir, first 10 entries)"
    "$W" dir "$wim" "$image" | head -10 || true
    # Windows metadata (short names, security descriptors, named streams),
    # where the image has some: one entry in detail.
    first_file=$("$W" dir "$wim" "$image" --detailed \
        | awk -F'"' '/^Full Path/ { p = $2 } /^  data / { print p; exit }')
    if [ -n "$first_file" ]; then
        step "One file in detail: $first_file (wimfs dir --detailed)"
        "$W" dir "$wim" "$image" "$first_file" --detailed
        say "Attributes and timestamps as Windows keeps them. The security ID points"
        say "at the file's security descriptor (its Windows permissions; -1: none)."
        say "A short (8.3) name and named streams are listed here when the image"
        say "has them: a Linux capture such as the sample has none, install.wim does."
    fi

    step "Extracting the image into a new folder (wimfs apply)"
    rm -rf "$work/out"
    "$W" apply "$wim" "$image" "$work/out"
    if [ -n "${src:-}" ]; then
        diff -r --no-dereference "$src" "$work/out" && say "the extracted folder equals the source, byte for byte"
    fi

    if ! can_mount; then
        say "(no /dev/fuse or fusermount3 here: the mount steps are left out)"
        continue
    fi
    step "Mounting the image read-only at $mnt (wimfs mount)"
    mkdir -p "$mnt"
    "$W" mount "$wim" "$image" "$mnt"
    say "Any program can now read the image as a folder, without extracting it:"
    "$W" mounts || true
    ls -la "$mnt" | head -10 || true
    if [ -n "${src:-}" ]; then
        diff -r --no-dereference "$src" "$mnt" && say "the mounted folder equals the source"
    fi
    "$W" unmount "$mnt"
    say "unmounted"

    [ -n "${src:-}" ] || continue
    # Servicing, on the generated sample only (never on a WIM you gave).
    step "Servicing: mount read-write, change files, commit the changes into the WIM"
    before_list="$work/before.txt"
    "$W" dir "$wim" "$image" > "$before_list"
    size_before=$(stat -c %s "$wim")
    "$W" mount "$wim" "$image" "$mnt" --rw
    say "Mounted read-write: changes go to a staging folder beside the WIM until"
    say "they are committed; the WIM itself is untouched so far."
    echo "added by the wimfs demo" > "$mnt/docs/added.txt"
    echo "200001 (appended by the demo)" >> "$mnt/docs/numbers.txt"
    rm "$mnt/bin/random.bin"
    say "added   /docs/added.txt"
    say "changed /docs/numbers.txt (one line appended)"
    say "deleted /bin/random.bin (3 MB)"
    step "Unmounting with --commit"
    "$W" unmount "$mnt" --commit
    say "The commit stored only blobs the WIM did not have (the new file and the"
    say "new numbers.txt), appended after the old data; the header is written"
    say "last, so a crash before it leaves the old image intact."
    step "What changed in the image (wimfs dir before/after)"
    "$W" dir "$wim" "$image" | diff "$before_list" - | sed -n 's/^< /    removed: /p; s/^> /    added:   /p' || true
    say "changed: /docs/numbers.txt (same name, new content), which now ends with:"
    "$W" cat "$wim" "$image" /docs/numbers.txt | tail -1
    say "and /docs/added.txt reads:"
    "$W" cat "$wim" "$image" /docs/added.txt
    step "Verifying the serviced WIM"
    "$W" verify "$wim"
    step "Optimizing: rewriting the WIM without the data nothing uses any more"
    say "random.bin's bytes are still in the file (a commit only appends):"
    say "size before the commit $size_before bytes, after it $(stat -c %s "$wim") bytes."
    "$W" optimize "$wim"
    say "after optimize: $(stat -c %s "$wim") bytes"
done
echo
echo "demo: done"
