#!/usr/bin/env bash
# Benchmark the read-write servicing workflow of wimfs against wimlib in one
# run: mount read-write, copy ~160 MB of new files in, change one byte of a
# large file, delete and rename some files, then commit.
#
#   scripts/bench-commit.sh
#   BENCH_SRC=/some/dir RUNS=5 scripts/bench-commit.sh
#
# Knobs: BENCH_SRC (/usr/share: the captured tree), BENCH_NEW_SRC (/usr/lib:
# where the new files come from; must not be inside BENCH_SRC), NEW_MB
# (160), BIG_MB (1024: the file whose first write is timed), BENCH_COMPRESS
# (LZX), BENCH_WORK (/var/tmp/wimfs-bench-commit; the captured base WIM is
# cached there, delete it to recapture), RUNS (3), WIMFS (binary; built with
# cargo build --release unless WIMFS_NO_BUILD is set).
#
# Rows (medians of $RUNS runs; every run starts from a fresh copy of the
# base WIM):
#   commit time        s of `wimfs unmount --commit` vs
#                      `wimlib-imagex unmount --commit`
#   bytes added        growth of the WIM file by the commit
#   first write 1 GiB  ms to open the 1 GiB file for writing, write one byte
#                      in its middle and close it
#   ops time           s for all the changes (copy, edit, delete, rename)
#   optimize           s of `wimfs optimize` vs `wimlib-imagex optimize`,
#                      each on a copy of the same committed WIM
# The ratio column is wimlib/wimfs for times and sizes: > 1 means wimfs is
# better.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_SRC=${BENCH_SRC:-/usr/share}
BENCH_NEW_SRC=${BENCH_NEW_SRC:-/usr/lib}
NEW_MB=${NEW_MB:-160}
BIG_MB=${BIG_MB:-1024}
BENCH_COMPRESS=${BENCH_COMPRESS:-LZX}
BENCH_WORK=${BENCH_WORK:-/var/tmp/wimfs-bench-commit}
RUNS=${RUNS:-3}
WIMFS=${WIMFS:-$ROOT/target/release/wimfs}

for t in wimlib-imagex python3 fusermount3; do
    command -v "$t" >/dev/null || { echo "bench-commit: $t is required" >&2; exit 1; }
done
[ -e /dev/fuse ] || { echo "bench-commit: /dev/fuse is missing" >&2; exit 1; }
if [ -z "${WIMFS_NO_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi

mkdir -p "$BENCH_WORK"
MNT=$BENCH_WORK/mnt
mkdir -p "$MNT"
BASE=$BENCH_WORK/base.wim
W=$BENCH_WORK/run.wim

cleanup() {
    if mountpoint -q "$MNT" 2>/dev/null || grep -q " $MNT " /proc/self/mounts; then
        "$WIMFS" unmount --discard "$MNT" >/dev/null 2>&1 \
            || wimlib-imagex unmount "$MNT" >/dev/null 2>&1 \
            || fusermount3 -u -z "$MNT" >/dev/null 2>&1 || true
    fi
    rm -rf "$BENCH_WORK/.run.wim.wimfs-staging-1"
}
trap cleanup EXIT INT TERM

now() { python3 -c 'import time; print(time.monotonic())'; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }
size() { stat -c %s "$1"; }

# ---- inputs (cached) -------------------------------------------------------
NEWDIR=$BENCH_WORK/newfiles
if [ ! -d "$NEWDIR" ]; then
    echo "bench-commit: collecting ~$NEW_MB MB of new files from $BENCH_NEW_SRC" >&2
    mkdir -p "$NEWDIR.tmp"
    python3 - "$BENCH_NEW_SRC" "$NEWDIR.tmp" "$NEW_MB" <<'EOF'
import os, shutil, sys
src, dst, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
budget = mb << 20
n = 0
for d, dirs, files in os.walk(src):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(d, f)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        s = os.path.getsize(p)
        if s == 0 or s > 32 << 20 or n + s > budget:
            continue
        rel = os.path.relpath(p, src)
        os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
        try:
            shutil.copyfile(p, os.path.join(dst, rel))
        except OSError:
            continue
        n += s
    if n >= budget * 0.98:
        break
print(f"{n >> 20} MB", file=sys.stderr)
EOF
    mv "$NEWDIR.tmp" "$NEWDIR"
fi
if [ ! -f "$BASE" ]; then
    echo "bench-commit: capturing $BENCH_SRC ($BENCH_COMPRESS) plus a $BIG_MB MiB file" >&2
    wimlib-imagex capture "$BENCH_SRC" "$BASE.tmp" --compress="$BENCH_COMPRESS" >/dev/null
    mkdir -p "$BENCH_WORK/bigsrc"
    # (yes dies of SIGPIPE when head has enough: not a failure)
    { yes "wimfs bench-commit: a line of compressible text for the big file $RANDOM" || true; } \
        | head -c "$((BIG_MB << 20))" >"$BENCH_WORK/bigsrc/big1g.bin"
    wimlib-imagex update "$BASE.tmp" 1 \
        --command "add $BENCH_WORK/bigsrc/big1g.bin /big1g.bin" >/dev/null
    rm -rf "$BENCH_WORK/bigsrc"
    mv "$BASE.tmp" "$BASE"
fi

# The files the operations touch (relative to the image root), chosen once.
LISTS=$BENCH_WORK/lists
if [ ! -d "$LISTS" ]; then
    mkdir -p "$LISTS.tmp"
    (cd "$BENCH_SRC" && find . -type f -size +2M -printf '%s %P\n' 2>/dev/null \
        | sort -rn | sed -n 1p | cut -d' ' -f2-) >"$LISTS.tmp/large"
    (cd "$BENCH_SRC" && find . -type f -printf '%P\n' 2>/dev/null | grep -v '[[:space:]]' \
        | sort | awk 'NR % 97 == 1' | sed -n 1,100p) >"$LISTS.tmp/some"
    head -50 "$LISTS.tmp/some" >"$LISTS.tmp/delete"
    tail -n +51 "$LISTS.tmp/some" >"$LISTS.tmp/rename"
    mv "$LISTS.tmp" "$LISTS"
fi
LARGE=$(cat "$LISTS/large")

# The same changes, whatever is mounted at $MNT; prints "ops_s first_write_ms".
do_ops() {
    local t0 t1 fw
    t0=$(now)
    cp -r "$NEWDIR" "$MNT/bench-new"
    python3 - "$MNT/$LARGE" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
size = os.fstat(fd).st_size
os.pwrite(fd, b"\x5a", size // 2)
os.close(fd)
EOF
    while read -r f; do rm -f "$MNT/$f"; done <"$LISTS/delete"
    while read -r f; do [ -e "$MNT/$f" ] && mv "$MNT/$f" "$MNT/$f.renamed"; done <"$LISTS/rename"
    fw=$(python3 - "$MNT/big1g.bin" <<'EOF'
import os, sys, time
t = time.monotonic()
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"!", 512 << 20)
os.close(fd)
print(f"{(time.monotonic() - t) * 1000:.2f}")
EOF
)
    sync -f "$MNT" 2>/dev/null || true
    t1=$(now)
    echo "$(secs "$t0" "$t1") $fw"
}

median() { python3 -c "import statistics,sys; print(f'{statistics.median(float(x) for x in sys.argv[1:]):.3f}')" "$@"; }

declare -a F_COMMIT F_ADDED F_FW F_OPS F_OPT L_COMMIT L_ADDED L_FW L_OPS L_OPT
for run in $(seq 1 "$RUNS"); do
    echo "bench-commit: run $run/$RUNS" >&2
    # -- wimfs --
    cp "$BASE" "$W"; sync
    before=$(size "$W")
    "$WIMFS" mount --rw --discard-staging "$W" "$MNT" >/dev/null
    read -r ops fw < <(do_ops)
    t0=$(now)
    "$WIMFS" unmount --commit "$MNT" >/dev/null
    t1=$(now)
    F_COMMIT+=("$(secs "$t0" "$t1")"); F_ADDED+=("$(( $(size "$W") - before ))")
    F_FW+=("$fw"); F_OPS+=("$ops")
    cp "$W" "$BENCH_WORK/opt-wimfs.wim"; cp "$W" "$BENCH_WORK/opt-wimlib.wim"; sync
    t0=$(now); "$WIMFS" optimize "$BENCH_WORK/opt-wimfs.wim" >/dev/null; t1=$(now)
    F_OPT+=("$(secs "$t0" "$t1")")
    t0=$(now); wimlib-imagex optimize "$BENCH_WORK/opt-wimlib.wim" >/dev/null; t1=$(now)
    L_OPT+=("$(secs "$t0" "$t1")")
    rm -f "$BENCH_WORK/opt-wimfs.wim" "$BENCH_WORK/opt-wimlib.wim"
    # -- wimlib --
    cp "$BASE" "$W"; sync
    before=$(size "$W")
    wimlib-imagex mountrw "$W" 1 "$MNT" >/dev/null
    read -r ops fw < <(do_ops)
    t0=$(now)
    wimlib-imagex unmount "$MNT" --commit >/dev/null
    t1=$(now)
    L_COMMIT+=("$(secs "$t0" "$t1")"); L_ADDED+=("$(( $(size "$W") - before ))")
    L_FW+=("$fw"); L_OPS+=("$ops")
done
rm -f "$W"

row() { # label wimfs wimlib unit
    python3 -c "
import sys
l, a, b, u = sys.argv[1:5]
a, b = float(a), float(b)
r = b / a if a > 0 else float('inf')
print(f'{l:<22} {a:>14.3f} {b:>14.3f} {u:<6} {r:>7.2f}')" "$@"
}
echo
echo "bench-commit: $BENCH_SRC ($BENCH_COMPRESS, $(size "$BASE") bytes), +$(du -sm "$NEWDIR" | cut -f1) MB new files, median of $RUNS"
printf '%-22s %14s %14s %-6s %7s\n' "" "wimfs" "wimlib" "unit" "ratio"
row "commit time" "$(median "${F_COMMIT[@]}")" "$(median "${L_COMMIT[@]}")" s
row "bytes added" "$(median "${F_ADDED[@]}")" "$(median "${L_ADDED[@]}")" B
row "first write 1 GiB" "$(median "${F_FW[@]}")" "$(median "${L_FW[@]}")" ms
row "ops time" "$(median "${F_OPS[@]}")" "$(median "${L_OPS[@]}")" s
row "optimize" "$(median "${F_OPT[@]}")" "$(median "${L_OPT[@]}")" s
