#!/usr/bin/env bash
# Benchmark the everyday servicing paths of issue 12 in one run: wimfs,
# `wimlib-imagex mount`/`mountrw` and the same tree in a plain directory
# (the native floor, page cache warm), with every ratio checked against the
# issue's targets.
#
#   scripts/bench-servicing.sh
#   RUNS=1 BIG_MB=256 scripts/bench-servicing.sh     # a quick run
#
# Knobs: BENCH_SRC (/usr/share: the captured tree), COPY_SRC ($BENCH_SRC/doc:
# the many-file tree copied in), BIG_MB (1024: the large file, MiB),
# BENCH_COMPRESS (LZX), BENCH_WORK (/var/tmp/wimfs-bench-servicing; images
# and the native tree are cached there, each stamped with what it was made
# from; delete it to remake them), RUNS (3), CACHE_MB (wimfs --cache-size,
# 256), TOOLS ("wimfs wimlib native"), PARTS ("copy big first walk cat":
# which groups of rows to measure), WIMFS (binary; built with cargo build
# --release unless WIMFS_NO_BUILD is set). TOOLS may also name "floor":
# examples/fuse_floor.rs, a trivial FUSE filesystem answering from memory
# (the native tree for walk and cat, an empty tree taking writes for copy
# tree and copy big), printed after the table as the FUSE floor; FLOOR
# (binary; built with cargo build --release --example fuse_floor unless
# WIMFS_NO_BUILD is set).
#
# Inputs (made once, cached in $BENCH_WORK):
#   lzx.wim    wimlib-imagex capture $BENCH_SRC ($BENCH_COMPRESS)
#   native/    wimlib-imagex apply of lzx.wim: the same tree, a plain directory
#   big/big.bin  $BIG_MB MiB of compressible text
#   big.wim    wimlib-imagex capture big/ ($BENCH_COMPRESS)
# Rows (medians of $RUNS runs; every mount is fresh; the WIM files are
# pre-read so all tools read them from RAM):
#   copy tree     s for `cp -r $COPY_SRC` into a rw mount of lzx.wim, then
#                 `sync` (native: into a directory beside native/)
#   copy big      s for `cp` of big/big.bin into a rw mount, then `sync`
#   walk          s for find -printf '%s %m %T@\n' over a read-only mount
#   cat all       s reading every file (find | xargs cat), read-only mount
#   mount         s until the mount command returns (read-only, lzx.wim)
#   RSS           MiB resident in the daemon right after that mount
#   first write   ms of one 4 KiB pwrite at offset 0 into the $BIG_MB MiB
#                 file of a fresh rw mount of big.wim (the open before it
#                 is timed apart: "open for write")
#   scale mount / scale RSS   (part "scale") mount time and resident
#                 memory right after a read-only mount of lzx.wim and of
#                 scale.wim, a generated tree of $SCALE_FILES small and empty
#                 files (SCALE_FILES, 200000; half empty, half a few unique
#                 bytes; directories of 100), captured by wimlib: wimfs's
#                 mount must not grow with the image (issue 12); then the
#                 same read-write ("mount-rw", "RSS-rw"), as servicing mounts
# Notes: a wimfs mount refuses names Windows cannot hold, so cp reports the
# case twins of /usr/share/doc (index.html beside Index.html) as "File
# exists" (wimlib takes them). On ext4 without a journal, creating files
# skips inodes freed in the last minute(s) one by one, so a copy-in soon
# after thousands of files were deleted pays for it in each create (small
# files copied into a wimfs mount share one pack file in the staging, so
# the daemon creates files only for those over 1 MiB): compare medians of
# several runs.
# To see where a row's time goes: RUST_LOG=fuser=debug on `wimfs mount` logs
# every FUSE request to the daemon's log (PID.log in the registry, see
# `wimfs mounts`), so `grep -o 'FUSE([0-9 ]*) ino [^ ]* [A-Z_]*' LOG | awk
# '{print $NF}' | sort | uniq -c` counts them by kind; the daemon's CPU is
# fields 14+15 of /proc/PID/stat.
# Columns: "vs wimlib" is how many times faster wimfs is (wimlib/wimfs),
# "vs native" how many times native's time wimfs takes (wimfs/native);
# then the issue's target for the row and PASS or MISS.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_SRC=${BENCH_SRC:-/usr/share}
COPY_SRC=${COPY_SRC:-$BENCH_SRC/doc}
BIG_MB=${BIG_MB:-1024}
BENCH_COMPRESS=${BENCH_COMPRESS:-LZX}
BENCH_WORK=${BENCH_WORK:-/var/tmp/wimfs-bench-servicing}
RUNS=${RUNS:-3}
CACHE_MB=${CACHE_MB:-256}
TOOLS=${TOOLS:-wimfs wimlib native}
PARTS=${PARTS:-copy big first walk cat scale}
WIMFS=${WIMFS:-$ROOT/target/release/wimfs}
FLOOR=${FLOOR:-$ROOT/target/release/examples/fuse_floor}

for t in wimlib-imagex python3 fusermount3; do
    command -v "$t" >/dev/null || { echo "bench-servicing: $t is required" >&2; exit 1; }
done
[ -e /dev/fuse ] || { echo "bench-servicing: /dev/fuse is missing" >&2; exit 1; }
[ -d "$COPY_SRC" ] || { echo "bench-servicing: COPY_SRC $COPY_SRC is not a directory" >&2; exit 1; }
if [ -z "${WIMFS_NO_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet)
    case " $TOOLS " in *" floor "*) (cd "$ROOT" && cargo build --release --quiet --example fuse_floor) ;; esac
fi

mkdir -p "$BENCH_WORK"
BENCH_WORK=$(cd "$BENCH_WORK" && pwd)
MNT=$BENCH_WORK/mnt
mkdir -p "$MNT"
RESULTS=$BENCH_WORK/results.tsv
: >"$RESULTS"

MOUNTED=""
cleanup() {
    if [ -n "$MOUNTED" ] && mountpoint -q "$MNT"; then
        case "$MOUNTED" in
            wimfs) "$WIMFS" unmount --discard "$MNT" >/dev/null 2>&1 || "$WIMFS" unmount "$MNT" >/dev/null 2>&1 \
                || fusermount3 -u -z "$MNT" || true ;;
            wimlib) wimlib-imagex unmount "$MNT" >/dev/null 2>&1 || fusermount3 -u -z "$MNT" || true ;;
            floor) fusermount3 -u -z "$MNT" || true ;;
        esac
    fi
    MOUNTED=""
    rm -rf "$BENCH_WORK/native-copy"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.6f}')" "$1" "$2"; }
add() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$RESULTS"; }

# --- inputs (cached) --------------------------------------------------------
# Each is made under a temporary name first (an interrupted step is never
# taken for a finished one) and remembers what it was made from.
LZX=$BENCH_WORK/lzx.wim
NATIVE=$BENCH_WORK/native
BIGDIR=$BENCH_WORK/big
BIG=$BIGDIR/big.bin
BIGWIM=$BENCH_WORK/big.wim
LZX_STAMP="$BENCH_SRC $BENCH_COMPRESS"
if [ ! -s "$LZX" ] || [ "$(cat "$LZX.src" 2>/dev/null)" != "$LZX_STAMP" ]; then
    echo "capturing $BENCH_SRC -> $LZX ($BENCH_COMPRESS) ..." >&2
    rm -f "$LZX.src"
    wimlib-imagex capture "$BENCH_SRC" "$LZX.tmp" bench --compress="$BENCH_COMPRESS" >"$BENCH_WORK/capture.log" 2>&1
    mv "$LZX.tmp" "$LZX"
    echo "$LZX_STAMP" >"$LZX.src"
fi
if [ ! -d "$NATIVE" ] || [ "$(cat "$NATIVE.src" 2>/dev/null)" != "$LZX_STAMP" ]; then
    echo "applying $LZX -> $NATIVE (the native directory) ..." >&2
    rm -rf "$NATIVE" "$NATIVE.tmp" "$NATIVE.src"
    mkdir "$NATIVE.tmp"
    wimlib-imagex apply "$LZX" 1 "$NATIVE.tmp" >"$BENCH_WORK/apply.log" 2>&1
    mv "$NATIVE.tmp" "$NATIVE"
    echo "$LZX_STAMP" >"$NATIVE.src"
fi
BIG_STAMP="$BIG_MB $BENCH_COMPRESS"
if [ ! -s "$BIGWIM" ] || [ "$(cat "$BIGWIM.src" 2>/dev/null)" != "$BIG_STAMP" ]; then
    echo "making a $BIG_MB MiB file and capturing it -> $BIGWIM ..." >&2
    rm -rf "$BIGDIR" "$BIGWIM.src"
    mkdir -p "$BIGDIR"
    # (yes dies of SIGPIPE when head has enough: not a failure)
    { yes "wimfs bench-servicing: a line of compressible text for the big file" || true; } \
        | head -c "$((BIG_MB << 20))" >"$BIG"
    wimlib-imagex capture "$BIGDIR" "$BIGWIM.tmp" big --compress="$BENCH_COMPRESS" >/dev/null
    mv "$BIGWIM.tmp" "$BIGWIM"
    echo "$BIG_STAMP" >"$BIGWIM.src"
fi

# --- helpers ----------------------------------------------------------------
# mount_with TOOL WIM [rw]: mounts at $MNT; the seconds it took go to $MT.
MT=""
mount_with() {
    cat "$2" >/dev/null # the WIM itself from RAM for both tools
    local t0 t1
    t0=$(now)
    case "$1:${3:-ro}" in
        wimfs:ro) "$WIMFS" mount "$2" 1 "$MNT" --cache-size "$CACHE_MB" >/dev/null ;;
        wimfs:rw) "$WIMFS" mount "$2" 1 "$MNT" --rw --discard-staging --cache-size "$CACHE_MB" >/dev/null ;;
        wimlib:ro) wimlib-imagex mount "$2" 1 "$MNT" >/dev/null ;;
        wimlib:rw) wimlib-imagex mountrw "$2" 1 "$MNT" >/dev/null ;;
    esac
    t1=$(now)
    MOUNTED=$1
    MT=$(elapsed "$t0" "$t1")
}

unmount_it() { # read-write mounts are discarded
    case "$MOUNTED" in
        wimfs) "$WIMFS" unmount "$MNT" --discard >/dev/null 2>&1 || "$WIMFS" unmount "$MNT" >/dev/null ;;
        wimlib) wimlib-imagex unmount "$MNT" >/dev/null ;;
    esac
    MOUNTED=""
}

daemon_pid() {
    case "$MOUNTED" in
        wimfs) "$WIMFS" mounts --json | python3 -c "
import json, os, sys
d = os.path.realpath(sys.argv[1])
print(next((m['pid'] for m in json.load(sys.stdin) if m['mountpoint'] == d), ''))" "$MNT" ;;
        wimlib) pgrep -n -f "wimlib-imagex mount.* $MNT\$" || true ;;
    esac
}

rss_now_mb() {
    local pid
    pid=$(daemon_pid)
    [ -n "$pid" ] || { echo nan; return; }
    awk '/VmRSS/ { printf "%.1f\n", $2 / 1024 }' "/proc/$pid/status"
}

timed() { # timed CMD...: runs it, prints seconds
    local t0 t1
    t0=$(now)
    "$@" >/dev/null
    t1=$(now)
    elapsed "$t0" "$t1"
}

copy_tree() { cp -r "$COPY_SRC" "$1/bench-copy"; sync; }
copy_big() { cp "$BIG" "$1/bench-big.bin"; sync; }
walk() { find "$1" -printf '%s %m %T@\n'; }
cat_all() { (cd "$1" && find . -type f -print0 | xargs -0 -r cat >/dev/null 2>&1) || true; }

# first_write FILE: prints "open_ms write_ms" for opening FILE for writing and
# one 4 KiB pwrite at offset 0 (the bytes the file already has there, so the
# native file stays as captured).
first_write() {
    python3 - "$1" "$BIG" <<'EOF'
import os, sys, time
with open(sys.argv[2], 'rb') as f:
    data = f.read(4096)
t0 = time.perf_counter()
fd = os.open(sys.argv[1], os.O_WRONLY)
t1 = time.perf_counter()
os.pwrite(fd, data, 0)
t2 = time.perf_counter()
os.close(fd)
print(f"{(t1 - t0) * 1000:.3f} {(t2 - t1) * 1000:.3f}")
EOF
}

# Warm what must come from RAM: the sources of the copies, the native tree.
warm() {
    find "$COPY_SRC" "$NATIVE" -type f -print0 | xargs -0 -r cat >/dev/null 2>&1 || true
    cat "$BIG" >/dev/null
}

want() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# --- scale: mount time and memory at two image sizes -----------------------
# Its own rows and table (part "scale"): both tools mount lzx.wim and the
# much larger scale.wim read-only, then read-write, fresh each time; mount
# time and the daemon's resident memory right after it.
SCALE_FILES=${SCALE_FILES:-200000}
SCALE_WIM=$BENCH_WORK/scale.wim
make_scale() {
    local stamp="$SCALE_FILES $BENCH_COMPRESS" src=$BENCH_WORK/scale-src
    if [ -s "$SCALE_WIM" ] && [ "$(cat "$SCALE_WIM.src" 2>/dev/null)" = "$stamp" ]; then
        return
    fi
    echo "generating $SCALE_FILES files and capturing them -> $SCALE_WIM ..." >&2
    rm -rf "$src" "$SCALE_WIM.src"
    python3 - "$src" "$SCALE_FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"g{i // 10000:03d}", f"d{i // 100:05d}")
    if i % 100 == 0:
        os.makedirs(d)
    with open(os.path.join(d, f"file-{i:07d}.txt"), "w") as f:
        if i % 2:
            f.write(f"{i}\n")
PY
    wimlib-imagex capture "$src" "$SCALE_WIM.tmp" scale --compress="$BENCH_COMPRESS" >/dev/null
    mv "$SCALE_WIM.tmp" "$SCALE_WIM"
    rm -rf "$src"
    echo "$stamp" >"$SCALE_WIM.src"
}
scale_rows() {
    local run tool label wim
    for run in $(seq 1 "$RUNS"); do
        for tool in wimfs wimlib; do
            echo "scale run $run/$RUNS: $tool ..." >&2
            for label in lzx scale; do
                wim=$LZX
                [ "$label" = scale ] && wim=$SCALE_WIM
                mount_with "$tool" "$wim"
                add "scale mount $label" "$tool" "$MT"
                add "scale RSS $label" "$tool" "$(rss_now_mb)"
                unmount_it
                # Servicing mounts read-write: the same, --rw.
                mount_with "$tool" "$wim" rw
                add "scale mount-rw $label" "$tool" "$MT"
                add "scale RSS-rw $label" "$tool" "$(rss_now_mb)"
                unmount_it
            done
        done
    done
}
scale_table() {
    local lzx_n scale_n
    lzx_n=$(wimlib-imagex info "$LZX" 1 | awk -F: '/^(Directory|File) Count/ { s += $2 } END { print s }')
    scale_n=$(wimlib-imagex info "$SCALE_WIM" 1 | awk -F: '/^(Directory|File) Count/ { s += $2 } END { print s }')
    echo
    echo "mount at two image sizes: lzx.wim ($lzx_n entries, $(($(stat -c %s "$LZX") / 1000000)) MB)," \
        "scale.wim ($scale_n entries, $(($(stat -c %s "$SCALE_WIM") / 1000000)) MB); median of $RUNS run(s)"
    python3 - "$RESULTS" <<'PY'
import collections, statistics, sys
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    row, tool, v = line.rstrip('\n').split('\t')
    if row.startswith("scale "):
        try:
            vals[(row, tool)].append(float(v))
        except ValueError:
            pass
def med(row, tool):
    v = vals.get((row, tool))
    return statistics.median(v) if v else None
hdr = f"{'work':<18} {'unit':<4} {'wimfs':>9} {'wimlib':>9} {'vs wimlib':>10}  {'target':<16} result"
print(hdr)
print("-" * len(hdr))
for label in ("lzx", "scale"):
    for what, unit, need in (("mount", "s", 2.0), ("RSS", "MiB", 1.0),
                             ("mount-rw", "s", 2.0), ("RSS-rw", "MiB", 1.0)):
        row = f"scale {what} {label}"
        a, b = med(row, "wimfs"), med(row, "wimlib")
        v = b / a if a and b is not None else None
        target = "<= 1/2 wimlib's" if what.startswith("mount") else "<= wimlib's"
        res = "-" if v is None else "PASS" if v >= need else "MISS"
        fa = "-" if a is None else f"{a:.3f}"
        fb = "-" if b is None else f"{b:.3f}"
        fv = "-" if v is None else f"{v:.2f}x"
        print(f"{what + ' ' + label:<18} {unit:<4} {fa:>9} {fb:>9} {fv:>10}  {target:<16} {res}")
for what in ("mount", "RSS", "mount-rw", "RSS-rw"):
    s, l = med(f"scale {what} scale", "wimfs"), med(f"scale {what} lzx", "wimfs")
    w_s, w_l = med(f"scale {what} scale", "wimlib"), med(f"scale {what} lzx", "wimlib")
    if s and l:
        ws = f"; wimlib {w_s / w_l:.2f}x" if w_s and w_l else ""
        print(f"{what} scale.wim / lzx.wim: wimfs {s / l:.2f}x{ws}")
PY
}

# floor_mount [--rw] DIR: the FUSE floor over DIR at $MNT (see TOOLS).
floor_mount() {
    "$FLOOR" "$@" "$MNT" 2>/dev/null &
    local i
    for i in $(seq 1 600); do mountpoint -q "$MNT" && break; sleep 0.1; done
    MOUNTED=floor
}
floor_unmount() { fusermount3 -u "$MNT"; wait || true; MOUNTED=""; }

# --- runs -------------------------------------------------------------------
if want scale; then make_scale; fi
for run in $(seq 1 "$RUNS"); do
    for tool in $TOOLS; do
        echo "run $run/$RUNS: $tool ..." >&2
        warm
        sync
        case "$tool" in
            native)
                rm -rf "$BENCH_WORK/native-copy"
                mkdir -p "$BENCH_WORK/native-copy"
                if want copy; then
                    add "copy tree" native "$(timed copy_tree "$BENCH_WORK/native-copy")"
                fi
                if want big; then
                    add "copy big" native "$(timed copy_big "$BENCH_WORK/native-copy")"
                fi
                rm -rf "$BENCH_WORK/native-copy"
                sync
                if want first; then
                    read -r o w < <(first_write "$BIG")
                    add "open for write" native "$o"
                    add "first write" native "$w"
                fi
                if want walk; then add "walk" native "$(timed walk "$NATIVE")"; fi
                if want cat; then add "cat all" native "$(timed cat_all "$NATIVE")"; fi
                ;;
            floor)
                mkdir -p "$BENCH_WORK/floor-empty"
                if want copy; then
                    floor_mount --rw "$BENCH_WORK/floor-empty"
                    add "copy tree" floor "$(timed copy_tree "$MNT")"
                    floor_unmount
                fi
                if want big; then
                    floor_mount --rw "$BENCH_WORK/floor-empty"
                    add "copy big" floor "$(timed copy_big "$MNT")"
                    floor_unmount
                fi
                if want walk; then
                    floor_mount "$NATIVE"
                    add "walk" floor "$(timed walk "$MNT")"
                    floor_unmount
                fi
                if want cat; then
                    floor_mount "$NATIVE"
                    add "cat all" floor "$(timed cat_all "$MNT")"
                    floor_unmount
                fi
                ;;
            wimfs | wimlib)
                if want copy; then
                    mount_with "$tool" "$LZX" rw
                    add "copy tree" "$tool" "$(timed copy_tree "$MNT")"
                    unmount_it
                    sync
                fi
                if want big; then
                    mount_with "$tool" "$LZX" rw
                    add "copy big" "$tool" "$(timed copy_big "$MNT")"
                    unmount_it
                    sync
                fi
                if want first; then
                    mount_with "$tool" "$BIGWIM" rw
                    read -r o w < <(first_write "$MNT/big.bin")
                    add "open for write" "$tool" "$o"
                    add "first write" "$tool" "$w"
                    unmount_it
                    sync
                fi
                if want walk; then
                    mount_with "$tool" "$LZX"
                    add "mount" "$tool" "$MT"
                    add "RSS" "$tool" "$(rss_now_mb)"
                    add "walk" "$tool" "$(timed walk "$MNT")"
                    unmount_it
                fi
                if want cat; then
                    mount_with "$tool" "$LZX"
                    add "mount" "$tool" "$MT"
                    add "cat all" "$tool" "$(timed cat_all "$MNT")"
                    unmount_it
                fi
                ;;
            *) echo "bench-servicing: unknown tool $tool" >&2; exit 2 ;;
        esac
    done
done
if want scale; then scale_rows; fi

# --- table ------------------------------------------------------------------
echo
echo "image: $LZX ($(($(stat -c %s "$LZX") / 1000000)) MB, $BENCH_COMPRESS, source $BENCH_SRC, $(find "$NATIVE" | wc -l) entries)"
echo "copy tree: $COPY_SRC ($(find "$COPY_SRC" | wc -l) entries, $(du -sm "$COPY_SRC" | cut -f1) MB); big file: $BIG_MB MiB"
echo "wimfs: $WIMFS, cache $CACHE_MB MiB; median of $RUNS run(s); $(nproc) CPU(s), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
python3 - "$RESULTS" <<'EOF'
import collections, statistics, sys
vals = collections.defaultdict(list)
for line in open(sys.argv[1]):
    row, tool, v = line.rstrip('\n').split('\t')
    try:
        vals[(row, tool)].append(float(v))
    except ValueError:
        pass
def med(row, tool):
    v = vals.get((row, tool))
    return statistics.median(v) if v else None
# row, unit, target vs wimlib (wimlib/wimfs at least), target vs native
# (wimfs/native at most), absolute target for wimfs (below)
rows = [
    ("copy tree", "s", 2.0, 1.3, None),
    ("copy big", "s", None, 1.3, None),
    ("walk", "s", 8.0, 2.0, None),
    ("cat all", "s", 4.0, 2.0, None),
    ("mount", "s", 2.0, None, None),  # at most half of wimlib's time
    ("RSS", "MiB", 1.0, None, None),  # at most wimlib's
    ("first write", "ms", None, None, 2.0),
    ("open for write", "ms", None, None, None),
]
wlabel = {"mount": "<= 1/2 wimlib's", "RSS": "<= wimlib's"}
def fmt(x):
    return "-" if x is None else f"{x:.3f}" if x < 100 else f"{x:.1f}"
hdr = f"{'work':<16} {'unit':<4} {'wimfs':>9} {'wimlib':>9} {'native':>9} {'vs wimlib':>10} {'vs native':>10}  {'target':<28} result"
print(hdr)
print("-" * len(hdr))
for row, unit, tw, tn, ta in rows:
    a, b, n = med(row, "wimfs"), med(row, "wimlib"), med(row, "native")
    vw = b / a if a and b is not None else None
    vn = a / n if a is not None and n else None
    targets, ok = [], []
    if tw is not None:
        targets.append(wlabel.get(row, f">= {tw:g}x wimlib"))
        ok.append(vw is not None and vw >= tw)
    if tn is not None:
        targets.append(f"<= {tn:g}x native")
        ok.append(vn is not None and vn <= tn)
    if ta is not None:
        targets.append(f"< {ta:g} {unit}")
        ok.append(a is not None and a < ta)
    res = "" if not ok else ("PASS" if all(ok) else "MISS") if a is not None else "-"
    vws = "-" if vw is None else f"{vw:.2f}x"
    vns = "-" if vn is None else f"{vn:.2f}x"
    print(f"{row:<16} {unit:<4} {fmt(a):>9} {fmt(b):>9} {fmt(n):>9} {vws:>10} {vns:>10}  {', '.join(targets):<28} {res}")
floor = [(r, med(r, "floor"), med(r, "native"), med(r, "wimfs")) for r in ("copy tree", "copy big", "walk", "cat all")]
if any(f is not None for _, f, _, _ in floor):
    print()
    print("FUSE floor (examples/fuse_floor.rs: the same requests answered from memory):")
    for r, f, n, a in floor:
        if f is not None:
            vn = f"{f / n:.2f}x native" if n else "-"
            va = f", wimfs {a / f:.2f}x the floor" if a else ""
            print(f"  {r:<14} {f:.3f} s ({vn}{va})")
EOF
if want scale; then scale_table; fi
