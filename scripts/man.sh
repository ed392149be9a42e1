#!/usr/bin/env bash
# Man pages for wimfs and each of its verbs, generated from the same clap
# definition as the parser (clap_mangen), so they never lag behind a flag.
#
#   scripts/man.sh [DIR]      # default DIR: target/man
#
# Then install them, e.g.:
#   install -Dm644 target/man/*.1 -t ~/.local/share/man/man1     # you
#   sudo install -Dm644 target/man/*.1 -t /usr/local/share/man/man1  # everyone
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-target/man}
echo "scripts/man.sh: building wimfs (cargo build --release; cargo shows its progress)"
cargo build --release
target/release/wimfs man "$dir"
ls "$dir"
