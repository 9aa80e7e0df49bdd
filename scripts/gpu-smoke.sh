#!/usr/bin/env bash
# GPU readiness: on a machine with an NVIDIA GPU, builds kdgrid with LibTorch (`make build-tch`,
# whose torch 2.9.0 wheel carries its CUDA libraries), trains the default study's `ci` profile on
# `--device cuda`, and prints the bench workloads' images/s on the GPU next to the CPU figure.
#
# usage: [KDGRID=path] scripts/gpu-smoke.sh [DEVICE]
#   DEVICE: default cuda; `cpu` checks the script itself anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cuda}
THREADS=$(nproc)
SECONDS_PER=${SECONDS_PER:-3}
make --no-print-directory data >&2
if [[ -z ${KDGRID:-} ]]; then   # KDGRID=path uses an existing build with LibTorch
  make --no-print-directory build-tch >&2
  KDGRID="${CARGO_TARGET_DIR:-target}/release/kdgrid"
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [[ $DEVICE == cuda* ]] && ! "$KDGRID" bench --backend tch --device "$DEVICE" --seconds 0.1 --only cnn2/fmnist/eval >/dev/null 2>"$WORK/err"; then
  echo "gpu-smoke: LibTorch sees no CUDA device here:" >&2
  cat "$WORK/err" >&2
  exit 1
fi

echo "gpu-smoke: the default study's ci profile on $DEVICE" >&2
scripts/measure.py "$WORK/train.json" "$KDGRID" --results "$WORK/results" --profile ci run --quiet \
  --backend tch --device "$DEVICE" experiments/default.toml | tail -n 4
python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["seconds"]; print(f"gpu-smoke: trained in {s:.1f} s", file=sys.stderr)' "$WORK/train.json"

"$KDGRID" bench --backend tch --threads "$THREADS" --seconds "$SECONDS_PER" > "$WORK/cpu.jsonl"
"$KDGRID" bench --backend tch --device "$DEVICE" --seconds "$SECONDS_PER" > "$WORK/dev.jsonl"
python3 - "$WORK/cpu.jsonl" "$WORK/dev.jsonl" "$DEVICE" "$THREADS" <<'PY'
import json, sys
cpu = {r["workload"]: r["images_per_second"] for r in map(json.loads, open(sys.argv[1]))}
dev = {r["workload"]: r["images_per_second"] for r in map(json.loads, open(sys.argv[2]))}
print(f"| workload | tch cpu ({sys.argv[4]} threads) images/s | tch {sys.argv[3]} images/s | ratio |")
print("|---|---|---|---|")
for w, c in cpu.items():
    d = dev.get(w)
    print(f"| {w} | {c:.0f} | {d:.0f} | {d / c:.1f}x |" if d else f"| {w} | {c:.0f} | - | - |")
PY
