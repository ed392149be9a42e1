#!/usr/bin/env bash
# Read-side benchmark: wimfs vs wimlib-imagex on large WIMs.
#
# Captures a big tree (default /usr) with wimlib-imagex into an LZX WIM and
# a solid LZMS WIM (cached in the work dir: reruns skip the capture), then
# times, for each WIM, `verify` and `apply` with both tools: median wall
# time of N runs and peak RSS (/usr/bin/time -v), and the wimfs/wimlib
# ratio (below 1 = wimfs is faster / smaller).
#
# Settings (environment):
#   BENCH_SRC=/usr            tree to capture (e.g. /usr/share for a quicker run)
#   BENCH_WORK=/var/tmp/wimfs-bench   where the WIMs are cached
#   BENCH_APPLY_DIR=$BENCH_WORK/apply target of apply runs (a tmpfs path
#                             such as /dev/shm/wimfs-apply keeps disk out of it)
#   BENCH_RUNS=3              runs per measurement (the median is shown)
#   BENCH_FORMATS="lzx solid" which WIMs to use
#   WIMFS=path                wimfs binary (default: cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=${BENCH_SRC:-/usr}
WORK=${BENCH_WORK:-/var/tmp/wimfs-bench}
RUNS=${BENCH_RUNS:-3}
FORMATS=${BENCH_FORMATS:-lzx solid}
APPLY=${BENCH_APPLY_DIR:-$WORK/apply}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi
}
need=()
command -v wimlib-imagex >/dev/null || need+=(wimtools)
[ -x /usr/bin/time ] || need+=(time)
if ((${#need[@]})); then
    echo "installing ${need[*]}"
    as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

if [ -z "${WIMFS:-}" ]; then
    cargo build --release --quiet
    WIMFS=$PWD/target/release/wimfs
fi
[ -x "$WIMFS" ] || { echo "no wimfs binary at $WIMFS" >&2; exit 1; }

mkdir -p "$WORK"
src_key=$(realpath "$SRC")

# capture LABEL ARGS...: cached by source path and capture arguments.
capture() {
    local label=$1; shift
    local wim=$WORK/$label.wim stamp=$WORK/$label.stamp
    local want="$src_key $*"
    if [ -f "$wim" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "using cached $wim ($(du -h "$wim" | cut -f1))" >&2
        return
    fi
    rm -f "$wim" "$stamp"
    echo "capturing $SRC -> $wim ($*) ..." >&2
    local t0=$SECONDS
    # Unreadable or special files are reported by wimlib and skipped.
    wimlib-imagex capture "$SRC" "$wim" "bench" "$@" --no-acls >"$WORK/$label.capture.log" 2>&1 || {
        echo "capture failed, see $WORK/$label.capture.log" >&2
        exit 1
    }
    echo "$want" >"$stamp"
    echo "captured in $((SECONDS - t0)) s: $(du -h "$wim" | cut -f1)" >&2
}

# measure CMD...: runs it RUNS times under /usr/bin/time -v; before each run
# a fresh apply dir. Prints "median_seconds median_peak_MiB" or "FAIL".
measure() {
    local times=() rss=() i tf
    tf=$(mktemp)
    for ((i = 0; i < RUNS; i++)); do
        rm -rf "$APPLY"
        mkdir -p "$APPLY"
        if ! /usr/bin/time -v -o "$tf" "$@" >/dev/null 2>"$tf.err"; then
            echo "FAIL: $* (see below)" >&2
            tail -3 "$tf.err" >&2
            rm -f "$tf" "$tf.err"
            rm -rf "$APPLY"
            echo "FAIL FAIL"
            return
        fi
        times+=("$(awk -F': ' '/Elapsed \(wall clock\)/ {
            n = split($2, p, ":"); s = 0; for (k = 1; k <= n; k++) s = s * 60 + p[k]; print s }' "$tf")")
        rss+=("$(awk -F': ' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$tf")")
    done
    rm -f "$tf" "$tf.err"
    rm -rf "$APPLY"
    local mt mr
    mt=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
    mr=$(printf '%s\n' "${rss[@]}" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
    echo "$mt $mr"
}

ratio() {
    if [ "$1" = FAIL ] || [ "$2" = FAIL ]; then echo "-"; else awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; fi
}

rows=()
for f in $FORMATS; do
    case $f in
        lzx) capture lzx --compress=LZX ;;
        solid) capture solid --solid ;;
        *) echo "unknown format $f (lzx, solid)" >&2; exit 1 ;;
    esac
    wim=$WORK/$f.wim
    echo "== $f: verify" >&2
    read -r wt wr < <(measure "$WIMFS" verify "$wim")
    read -r lt lr < <(measure wimlib-imagex verify "$wim")
    rows+=("$f verify $wt $lt $(ratio "$wt" "$lt") $wr $lr $(ratio "$wr" "$lr")")
    echo "== $f: apply" >&2
    read -r wt wr < <(measure "$WIMFS" apply "$wim" 1 "$APPLY")
    read -r lt lr < <(measure wimlib-imagex apply "$wim" 1 "$APPLY")
    rows+=("$f apply $wt $lt $(ratio "$wt" "$lt") $wr $lr $(ratio "$wr" "$lr")")
done

echo
echo "source: $SRC ($(du -sh "$SRC" 2>/dev/null | cut -f1)), runs: $RUNS (median), apply to: $APPLY, cores: $(nproc)"
for f in $FORMATS; do echo "  $f.wim: $(du -h "$WORK/$f.wim" | cut -f1)"; done
{
    echo "WIM op wimfs_s wimlib_s time_ratio wimfs_MiB wimlib_MiB rss_ratio"
    printf '%s\n' "${rows[@]}"
} | column -t
