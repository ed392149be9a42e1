#!/usr/bin/env bash
# Benchmark `wimfs mount` against `wimlib-imagex mount` in one run.
#
#   scripts/bench-mount.sh            # defaults below
#   BENCH_SRC=/some/dir RUNS=5 scripts/bench-mount.sh
#
# Knobs: BENCH_SRC (/usr), BENCH_SOLID_SRC, BENCH_COMPRESS (LZX; LZX:20 is
# wimlib's faster LZX compressor: same format, much quicker capture),
# BENCH_WORK (/var/tmp/wimfs-bench-mount), RUNS (3), SEQ_SECS, RAND_SECS,
# CACHE_MB (wimfs --cache-size, 256), WIMFS (binary; built with cargo build
# --release unless WIMFS_NO_BUILD is set), BENCH_CAPTURE_ONLY (stop after
# capturing the images).
#
# Images (captured once, cached in $BENCH_WORK; delete it to recapture):
#   lzx.wim    wimlib-imagex capture $BENCH_SRC (default compression: LZX)
#   solid.wim  wimlib-imagex capture --solid (LZMS) of the few largest files
#              of $BENCH_SOLID_SRC (default $BENCH_SRC; copied to
#              $BENCH_WORK/solid-src)
# Rows (each the median of $RUNS runs, a fresh mount every run so the chunk
# cache and the kernel's page cache start cold; the WIM file itself is
# pre-read so both tools read it from RAM):
#   cat all (LZX)          MB/s reading every file: find | xargs cat
#   metadata walk (LZX)    s for find -printf '%s %m %T@\n'
#   mount time (LZX)       s until the mount command returns
#   solid seq read         MB/s reading the largest file (stops at $SEQ_SECS)
#   solid random 4K        reads/s of random 4 KiB reads for $RAND_SECS
#   peak RSS               MiB, VmHWM of the daemon after cat all / random
# The ratio column is wimfs/wimlib for rates, wimlib/wimfs for times: > 1
# means wimfs is better.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_SRC=${BENCH_SRC:-/usr}
BENCH_SOLID_SRC=${BENCH_SOLID_SRC:-$BENCH_SRC}
# e.g. LZX:20 for wimlib's faster LZX compressor (same format, quicker capture)
BENCH_COMPRESS=${BENCH_COMPRESS:-LZX}
BENCH_WORK=${BENCH_WORK:-/var/tmp/wimfs-bench-mount}
RUNS=${RUNS:-3}
SEQ_SECS=${SEQ_SECS:-20}
RAND_SECS=${RAND_SECS:-10}
SOLID_FILES=${SOLID_FILES:-4}
SOLID_MAX_MB=${SOLID_MAX_MB:-160}
CACHE_MB=${CACHE_MB:-256}
WIMFS=${WIMFS:-$ROOT/target/release/wimfs}

for t in wimlib-imagex python3 fusermount3; do
    command -v "$t" >/dev/null || { echo "bench-mount: $t is required" >&2; exit 1; }
done
[ -e /dev/fuse ] || { echo "bench-mount: /dev/fuse is missing" >&2; exit 1; }
if [ -z "${WIMFS_NO_BUILD:-}" ] && [ -z "${BENCH_CAPTURE_ONLY:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet)
fi

mkdir -p "$BENCH_WORK"
MNT=$BENCH_WORK/mnt
mkdir -p "$MNT"

MOUNTED=""
cleanup() {
    if [ -n "$MOUNTED" ] && mountpoint -q "$MNT"; then
        case "$MOUNTED" in
            wimfs) "$WIMFS" unmount "$MNT" >/dev/null 2>&1 || fusermount3 -u -z "$MNT" || true ;;
            wimlib) wimlib-imagex unmount "$MNT" >/dev/null 2>&1 || fusermount3 -u -z "$MNT" || true ;;
        esac
    fi
    MOUNTED=""
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.6f}')" "$1" "$2"; }

# --- images -----------------------------------------------------------------
LZX=$BENCH_WORK/lzx.wim
SOLID=$BENCH_WORK/solid.wim
# Each image is captured into a temporary name first (an interrupted capture
# is never taken for a finished one) and remembers what it was made from.
LZX_STAMP="$BENCH_SRC $BENCH_COMPRESS"
if [ ! -s "$LZX" ] || [ "$(cat "$LZX.src" 2>/dev/null)" != "$LZX_STAMP" ]; then
    echo "capturing $BENCH_SRC -> $LZX ($BENCH_COMPRESS) ..." >&2
    wimlib-imagex capture "$BENCH_SRC" "$LZX.tmp" bench --compress="$BENCH_COMPRESS" >"$BENCH_WORK/capture.log" 2>&1
    mv "$LZX.tmp" "$LZX"
    echo "$LZX_STAMP" >"$LZX.src"
fi
SOLID_STAMP="$BENCH_SOLID_SRC files=$SOLID_FILES max=$SOLID_MAX_MB"
if [ ! -s "$SOLID" ] || [ "$(cat "$SOLID.src" 2>/dev/null)" != "$SOLID_STAMP" ]; then
    rm -rf "$BENCH_WORK/solid-src"
    mkdir -p "$BENCH_WORK/solid-src"
    find "$BENCH_SOLID_SRC" -xdev -type f -size -"${SOLID_MAX_MB}"M -printf '%s\t%p\n' 2>/dev/null |
        sort -n | tail -n "$SOLID_FILES" | cut -f2 | while read -r f; do
            cp "$f" "$BENCH_WORK/solid-src/$(basename "$f")"
        done
    echo "capturing the $SOLID_FILES largest files of $BENCH_SOLID_SRC -> $SOLID (solid LZMS) ..." >&2
    wimlib-imagex capture "$BENCH_WORK/solid-src" "$SOLID.tmp" solid --solid >/dev/null
    mv "$SOLID.tmp" "$SOLID"
    echo "$SOLID_STAMP" >"$SOLID.src"
fi
BIG=$(cd "$BENCH_WORK/solid-src" && ls -S | head -n1)
BIG_SIZE=$(stat -c %s "$BENCH_WORK/solid-src/$BIG")
[ -z "${BENCH_CAPTURE_ONLY:-}" ] || exit 0

# --- helpers ----------------------------------------------------------------
# mount_with TOOL WIM: mounts at $MNT; the seconds it took go to $MT.
MT=""
mount_with() {
    cat "$2" >/dev/null # the WIM itself from RAM for both tools
    local t0 t1
    t0=$(now)
    case "$1" in
        wimfs) "$WIMFS" mount "$2" 1 "$MNT" --cache-size "$CACHE_MB" ;;
        wimlib) wimlib-imagex mount "$2" 1 "$MNT" >/dev/null ;;
    esac
    t1=$(now)
    MOUNTED=$1
    MT=$(elapsed "$t0" "$t1")
}

daemon_pid() {
    case "$MOUNTED" in
        wimfs) "$WIMFS" mounts --json | python3 -c "
import json, os, sys
d = os.path.realpath(sys.argv[1])
print(next((m['pid'] for m in json.load(sys.stdin) if m['mountpoint'] == d), ''))" "$MNT" ;;
        wimlib) pgrep -n -f "wimlib-imagex mount .* $MNT\$" || true ;;
    esac
}

peak_rss_mb() {
    local pid
    pid=$(daemon_pid)
    [ -n "$pid" ] || { echo nan; return; }
    awk '/VmHWM/ { printf "%.1f\n", $2 / 1024 }' "/proc/$pid/status"
}

rss_now_mb() {
    local pid
    pid=$(daemon_pid)
    [ -n "$pid" ] || { echo nan; return; }
    awk '/VmRSS/ { printf "%.1f\n", $2 / 1024 }' "/proc/$pid/status"
}

unmount_it() {
    case "$MOUNTED" in
        wimfs) "$WIMFS" unmount "$MNT" ;;
        wimlib) wimlib-imagex unmount "$MNT" >/dev/null ;;
    esac
    MOUNTED=""
}

TOTAL_BYTES=""
cat_all() { # prints MB/s
    local t0 t1 s
    t0=$(now)
    (cd "$MNT" && find . -type f -print0 | xargs -0 -r cat >/dev/null 2>&1) || true
    t1=$(now)
    s=$(elapsed "$t0" "$t1")
    python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6 / float(sys.argv[2]):.1f}')" "$TOTAL_BYTES" "$s"
}

walk() { # prints seconds
    local t0 t1
    t0=$(now)
    find "$MNT" -printf '%s %m %T@\n' >/dev/null
    t1=$(now)
    elapsed "$t0" "$t1"
}

seq_read() { # prints MB/s
    python3 - "$MNT/$BIG" "$SEQ_SECS" <<'EOF'
import sys, time
path, limit = sys.argv[1], float(sys.argv[2])
n = 0
t0 = time.monotonic()
with open(path, 'rb', buffering=0) as f:
    while True:
        b = f.read(1 << 20)
        if not b:
            break
        n += len(b)
        if time.monotonic() - t0 > limit:
            break
print(f"{n / 1e6 / (time.monotonic() - t0):.1f}")
EOF
}

rand_read() { # prints reads/s
    python3 - "$MNT/$BIG" "$RAND_SECS" "$BIG_SIZE" <<'EOF'
import os, random, sys, time
path, limit, size = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1234)
fd = os.open(path, os.O_RDONLY)
n = 0
t0 = time.monotonic()
while time.monotonic() - t0 < limit:
    off = rng.randrange(0, max(1, size - 4096)) & ~4095
    os.pread(fd, 4096, off)
    n += 1
os.close(fd)
print(f"{n / (time.monotonic() - t0):.2f}")
EOF
}

median() { python3 -c "import statistics, sys; v = [float(x) for x in sys.argv[1:]]; print(statistics.median(v) if v else 'nan')" "$@"; }

declare -A R
add() { R["$1|$2"]="${R["$1|$2"]:-} $3"; }

# --- runs -------------------------------------------------------------------
for run in $(seq 1 "$RUNS"); do
    for tool in wimfs wimlib; do
        echo "run $run/$RUNS: $tool ..." >&2
        # LZX: mount time, metadata walk (cold), then cat all on a fresh mount.
        mount_with "$tool" "$LZX"
        add "mount time LZX (s)" "$tool" "$MT"
        add "metadata walk LZX (s)" "$tool" "$(walk)"
        unmount_it
        mount_with "$tool" "$LZX"
        if [ -z "$TOTAL_BYTES" ]; then
            TOTAL_BYTES=$(find "$MNT" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }')
        fi
        unmount_it
        mount_with "$tool" "$LZX"
        add "resident after mount LZX (MiB)" "$tool" "$(rss_now_mb)"
        add "cat all LZX (MB/s)" "$tool" "$(cat_all)"
        add "peak RSS LZX (MiB)" "$tool" "$(peak_rss_mb)"
        unmount_it
        # Solid LZMS: sequential, then random on a fresh mount.
        mount_with "$tool" "$SOLID"
        add "mount time solid (s)" "$tool" "$MT"
        add "solid seq read (MB/s)" "$tool" "$(seq_read)"
        unmount_it
        mount_with "$tool" "$SOLID"
        add "solid random 4K (reads/s)" "$tool" "$(rand_read)"
        add "peak RSS solid (MiB)" "$tool" "$(peak_rss_mb)"
        unmount_it
    done
done

# --- table ------------------------------------------------------------------
lzx_mb=$(($(stat -c %s "$LZX") / 1000000))
solid_mb=$(($(stat -c %s "$SOLID") / 1000000))
echo
echo "LZX image: $LZX (${lzx_mb} MB, source $BENCH_SRC, $((TOTAL_BYTES / 1000000)) MB of file data)"
echo "solid image: $SOLID (${solid_mb} MB); large file: $BIG ($((BIG_SIZE / 1000000)) MB)"
echo "wimfs cache: $CACHE_MB MiB; median of $RUNS run(s); $(nproc) CPU(s)"
echo
printf '%-32s %12s %12s %9s\n' "metric" "wimfs" "wimlib" "ratio"
printf '%-32s %12s %12s %9s\n' "--------------------------------" "------------" "------------" "---------"
for row in "cat all LZX (MB/s)" "metadata walk LZX (s)" "mount time LZX (s)" \
    "resident after mount LZX (MiB)" "peak RSS LZX (MiB)" \
    "solid seq read (MB/s)" "solid random 4K (reads/s)" "mount time solid (s)" "peak RSS solid (MiB)"; do
    # shellcheck disable=SC2086
    a=$(median ${R["$row|wimfs"]})
    # shellcheck disable=SC2086
    b=$(median ${R["$row|wimlib"]})
    ratio=$(python3 -c "
import sys
row, a, b = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
hib = '/s)' in row
r = (a / b if b else float('inf')) if hib else (b / a if a else float('inf'))
print(f'{r:.2f}x')" "$row" "$a" "$b")
    printf '%-32s %12s %12s %9s\n' "$row" "$a" "$b" "$ratio"
done
# The memory target: the daemon's peak no more than what the loaded image
# takes (resident right after the mount) plus the cache size.
# shellcheck disable=SC2086
python3 - "$(median ${R["resident after mount LZX (MiB)|wimfs"]})" "$CACHE_MB" "$(median ${R["peak RSS LZX (MiB)|wimfs"]})" <<'EOF'
import sys
meta, cache, peak = (float(x) for x in sys.argv[1:])
limit = meta + cache
print(f"\nwimfs peak RSS (LZX cat all) {peak:.1f} MiB vs metadata {meta:.1f} + cache {cache:.0f} = {limit:.1f} MiB: "
      + ("within" if peak <= limit else f"OVER by {peak - limit:.1f} MiB"))
EOF
