#!/usr/bin/env bash
# Benchmark `wimfs capture` against `wimlib-imagex capture` in one run, and
# print the ratios issue 11 sets targets for.
#
#   scripts/bench-capture.sh
#   BENCH_SRC=/some/dir RUNS=3 scripts/bench-capture.sh
#
# Knobs: BENCH_SRC (/usr/share), BENCH_WORK (/var/tmp/wimfs-bench-capture),
# RUNS (1: captures of a big tree are long), FORMATS ("lzx xpress solid"),
# EXPORTS ("lzx xpress lzms"; "" for none), WIMFS (binary; built with cargo
# build --release unless WIMFS_NO_BUILD is set).
#
# Rows, one per format: seconds and bytes of each tool (medians of $RUNS),
# then time ratio wimfs/wimlib (< 1: wimfs is faster) and size ratio
# wimfs/wimlib (< 1: wimfs is smaller). Targets (issue 11): LZX capture
# time <= 0.67 (1.5x faster) at size <= 1.02; solid time <= 1 at size
# <= 1.02; XPRESS size <= 1.01.
#
# Then one row per export codec (export-lzx, ...): both tools export the
# image of one uncompressed WIM of $BENCH_SRC (made once by wimlib, not
# timed), so every blob is compressed and neither copies resources raw;
# `lzms` is ESD-style solid (`wimlib-imagex export --solid`). Targets:
# LZX and XPRESS size <= 1.01 in time <= 0.6; LZMS size <= 1.02 in time
# <= 1.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_SRC=${BENCH_SRC:-/usr/share}
BENCH_WORK=${BENCH_WORK:-/var/tmp/wimfs-bench-capture}
RUNS=${RUNS:-1}
FORMATS=${FORMATS:-lzx xpress solid}
EXPORTS=${EXPORTS-lzx xpress lzms}
WIMFS=${WIMFS:-$ROOT/target/release/wimfs}

command -v wimlib-imagex >/dev/null || { echo "bench-capture: needs wimlib-imagex (wimtools)" >&2; exit 1; }
if [ -z "${WIMFS_NO_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release -q)
fi
mkdir -p "$BENCH_WORK"

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# time_capture OUT CMD...: seconds of one capture into OUT (removed first)
time_capture() {
    local out=$1; shift
    rm -f "$out"
    local t0 t1
    # The previous output's writeback must not land in this timing.
    sync
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

# Both tools read the tree from the page cache: the first capture must not
# pay for a cold cache that the others do not.
find "$BENCH_SRC" -type f -exec cat {} + >/dev/null 2>&1 || true

printf '%-13s %10s %14s %10s %14s %8s %8s\n' format wimfs_s wimfs_bytes wimlib_s wimlib_bytes time size
for f in $FORMATS; do
    case $f in
        lzx) ours=(--compress lzx); theirs=(--compress=LZX) ;;
        xpress) ours=(--compress xpress); theirs=(--compress=XPRESS) ;;
        solid) ours=(--solid); theirs=(--solid) ;;
        *) echo "unknown format $f" >&2; exit 1 ;;
    esac
    a=$BENCH_WORK/wimfs-$f.wim
    b=$BENCH_WORK/wimlib-$f.wim
    ta=(); tb=()
    for _ in $(seq "$RUNS"); do
        ta+=("$(time_capture "$a" "$WIMFS" capture "$BENCH_SRC" "$a" "${ours[@]}")")
        tb+=("$(time_capture "$b" wimlib-imagex capture "$BENCH_SRC" "$b" "${theirs[@]}")")
    done
    sa=$(stat -c %s "$a"); sb=$(stat -c %s "$b")
    ma=$(median "${ta[@]}"); mb=$(median "${tb[@]}")
    printf '%-13s %10.2f %14d %10.2f %14d %8.3f %8.3f\n' "$f" "$ma" "$sa" "$mb" "$sb" \
        "$(echo "$ma / $mb" | bc -l)" "$(echo "$sa / $sb" | bc -l)"
done

[ -n "$EXPORTS" ] || exit 0
src_wim=$BENCH_WORK/source-none.wim
rm -f "$src_wim"
wimlib-imagex capture "$BENCH_SRC" "$src_wim" --compress=none >/dev/null 2>&1
for f in $EXPORTS; do
    case $f in
        lzx) ours=(--compress lzx); theirs=(--compress=LZX) ;;
        xpress) ours=(--compress xpress); theirs=(--compress=XPRESS) ;;
        lzms) ours=(--compress lzms); theirs=(--solid) ;;
        *) echo "unknown export codec $f" >&2; exit 1 ;;
    esac
    a=$BENCH_WORK/wimfs-export-$f.wim
    b=$BENCH_WORK/wimlib-export-$f.wim
    ta=(); tb=()
    for _ in $(seq "$RUNS"); do
        ta+=("$(time_capture "$a" "$WIMFS" export "$src_wim" 1 "$a" "${ours[@]}")")
        tb+=("$(time_capture "$b" wimlib-imagex export "$src_wim" 1 "$b" "${theirs[@]}")")
    done
    sa=$(stat -c %s "$a"); sb=$(stat -c %s "$b")
    ma=$(median "${ta[@]}"); mb=$(median "${tb[@]}")
    printf '%-13s %10.2f %14d %10.2f %14d %8.3f %8.3f\n' "export-$f" "$ma" "$sa" "$mb" "$sb" \
        "$(echo "$ma / $mb" | bc -l)" "$(echo "$sa / $sb" | bc -l)"
done
rm -f "$src_wim"
