#!/usr/bin/env bash
# Trains the processor study (tests/fixtures/processors/study.toml) with a reference kdgrid
# binary natively and with another binary under an emulator, and prints each run's processor
# class and weight digest side by side, then whether every digest is equal.
#
#   scripts/compare-processors.sh REF_BIN -- CMD...      CMD: the emulated kdgrid, e.g.
#   scripts/compare-processors.sh target/release/kdgrid -- qemu-x86_64 -cpu Nehalem target/release/kdgrid
#   scripts/compare-processors.sh target/release/kdgrid -- qemu-aarch64 -L /usr/aarch64-linux-gnu target/aarch64-unknown-linux-gnu/release/kdgrid
#
# Exit 0 when the digests are equal, 1 when they differ (which is what docs/reproducibility.md
# says to expect outside x86-64-v3), 2 on a failed run.
set -euo pipefail
ref="$1"; shift
[ "${1:-}" = "--" ] && shift
study="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/processors/study.toml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$ref" --results "$work/native" run --quiet "$study" >/dev/null || exit 2
start=$(date +%s)
"$@" --results "$work/other" run --quiet "$study" >/dev/null || exit 2
echo "emulated run: $(( $(date +%s) - start )) s"

# runs.csv columns by name: stage_id, chain, processor, weights_sha256.
rows() {
  python3 - "$1/processors/runs.csv" <<'PY'
import csv, sys
for r in sorted(csv.DictReader(open(sys.argv[1])), key=lambda r: (r["chain"], r["model"])):
    print(r["chain"], r["model"], r["stage_id"], r["processor"], r["weights_sha256"][:16], r["test_accuracy"])
PY
}
echo "native:";   rows "$work/native"   | tee "$work/a"
echo "emulated:"; rows "$work/other"    | tee "$work/b"
if diff <(awk '{print $1, $2, $5}' "$work/a") <(awk '{print $1, $2, $5}' "$work/b") >/dev/null; then
  echo "equal weight digests"
else
  echo "other weight digests"
  exit 1
fi
