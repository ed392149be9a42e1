#!/usr/bin/env bash
# The project's test command.
#
# Installs what the tests need on a fresh Debian machine (only what is
# missing: wimlib-imagex, 7zz, ntfs-3g/mkntfs, FUSE 3's fusermount3,
# setfattr, unzip), then runs the whole test suite. Nothing links libfuse:
# fuser is built without its libfuse features (its default), so it mounts
# through /dev/fuse and fusermount3 and needs neither libfuse3-dev nor
# pkg-config. Extra arguments go to `cargo test`
# (e.g. `scripts/test.sh --test apply_oracle`). Exit status = the tests'.
#
# Environment: WIMFS_SLOW_TESTS=1 also runs the slow (#[ignore]d) tests;
# WIMFS_FIXTURES=DIR points at the fixture folder (default ../shared/fixtures).
set -uo pipefail
cd "$(dirname "$0")/.."

echo "scripts/test.sh: checking the tools the tests need"
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
have wimlib-imagex || need+=(wimtools)
have 7zz || need+=(7zip)
{ have ntfs-3g && have mkntfs; } || need+=(ntfs-3g)
have fusermount3 || need+=(fuse3)
{ have setfattr && have getfattr; } || need+=(attr)
have unzip || need+=(unzip)

as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "scripts/test.sh: not root and no sudo: cannot run: $*" >&2
        return 1
    fi
}
if ((${#need[@]})); then
    echo "scripts/test.sh: installing missing packages: ${need[*]}"
    as_root apt-get update -q || echo "scripts/test.sh: apt-get update failed" >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" \
        || echo "scripts/test.sh: could not install ${need[*]}: tests needing them will skip (or fail in CI)" >&2
fi

if [ ! -e ../shared/fixtures/README.md ] && [ -z "${WIMFS_FIXTURES:-}" ]; then
    echo "!!! scripts/test.sh: ../shared/fixtures is absent: the fixture parts of the tests will be SKIPPED !!!"
fi
if [ ! -e /dev/fuse ]; then
    echo "!!! scripts/test.sh: /dev/fuse is absent: NTFS-sourced and mount tests cannot run !!!"
fi

extra=()
if [ "${WIMFS_SLOW_TESTS:-}" = 1 ]; then
    extra=(-- --include-ignored)
fi
# The Windows half must keep type-checking (nothing Windows runs here).
win_status=0
win_skip=""
if rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-msvc \
    || rustup target add x86_64-pc-windows-msvc >/dev/null 2>&1; then
    # The WinFsp adapter is part of the library on Windows: a check that
    # did not see it would prove nothing about it.
    if ! grep -q '^#\[path = "../platform/windows/mod.rs"\]' src/platform.rs; then
        echo "scripts/test.sh: src/platform.rs no longer includes platform/windows" >&2
        win_status=1
    fi
    echo "scripts/test.sh: Windows type-check (cargo clippy --target x86_64-pc-windows-msvc, with the WinFsp adapter; a first run compiles for a few minutes)"
    RUSTC_BOOTSTRAP=1 cargo clippy --target x86_64-pc-windows-msvc --features winfsp-prebuilt-bindings \
        --lib --bins -- -D warnings || win_status=$?
else
    win_skip="windows-type-check: the x86_64-pc-windows-msvc target could not be installed (rustup target add failed)"
    echo "!!! SKIPPED: $win_skip !!!"
fi

# Build first, outside the pipe below, so cargo shows its own progress on
# a terminal: a first build of the test binaries takes about 10 minutes on
# 2 cores.
echo "scripts/test.sh: building wimfs and the test binaries (cargo test --no-run)"
cargo test --no-run "$@" || echo "scripts/test.sh: the build failed; cargo test below reports it" >&2
echo "scripts/test.sh: cargo test $* ${extra[*]}"
log=$(mktemp)
WIMFS_SKIP_LOG=$(mktemp)
export WIMFS_SKIP_LOG
cargo test --no-fail-fast "$@" "${extra[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ -n "$win_skip" ]; then echo "$win_skip" >>"$WIMFS_SKIP_LOG"; fi
if [ "$win_status" != 0 ]; then
    echo "scripts/test.sh: the Windows type-check FAILED" >&2
    [ "$status" = 0 ] && status=$win_status
fi
# One closing line for the whole run (cargo's own last line is the doc-test
# target's, which has no tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
     END { printf "%d %d %d\n", p, f, g }' "$log" | {
    read -r passed failed ignored
    # A test that skipped (all or part of itself) is counted once, as
    # skipped, not as passed.
    skipped=$(cut -d: -f1-3 "$WIMFS_SKIP_LOG" | sort -u | wc -l)
    if [ "$skipped" -gt 0 ]; then
        echo "skipped:"
        sort -u "$WIMFS_SKIP_LOG" | sed 's/^/  SKIPPED /'
    fi
    echo "tests: $((passed - skipped)) passed, $failed failed, $skipped skipped, $ignored ignored (opt-in slow tests)"
}
if [ "$win_status" != 0 ]; then echo "tests: the Windows type-check FAILED"; fi
rm -f "$log" "$WIMFS_SKIP_LOG"
exit "$status"
