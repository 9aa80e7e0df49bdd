#!/usr/bin/env bash
# `make bench`: kdgrid (flex, and tch when built with it) against the PyTorch peer on the same
# workloads, same threads, in one sitting; prints a table of images/s and ratios and writes
# bench/results.csv. Usage: scripts/bench.sh KDGRID PYTHON [THREADS] [SECONDS]
set -euo pipefail
kdgrid=$1
python=$2
threads=${3:-2}
seconds=${4:-5}
out=bench/work
mkdir -p "$out"
# The record of the one stage a one-stage study trained into results folder $1.
stage_record() { ls "$1"/*/stages/*/record.json | head -n 1; }
: > "$out/raw.jsonl"
echo "PyTorch peer ($threads threads)..." >&2
OMP_NUM_THREADS=$threads "$python" bench/peer.py "$threads" "$seconds" >> "$out/raw.jsonl"
echo "kdgrid flex..." >&2
$kdgrid bench --backend flex --threads "$threads" --seconds "$seconds" >> "$out/raw.jsonl"
backends=(flex)
if $kdgrid bench --backend tch --threads "$threads" --seconds 0.1 --only cnn2/fmnist/eval >/dev/null 2>&1; then
  echo "kdgrid tch..." >&2
  $kdgrid bench --backend tch --threads "$threads" --seconds "$seconds" >> "$out/raw.jsonl"
  backends+=(tch)
fi

# The grid workload: a whole study (bench/grid.toml), wall time of `kdgrid run` from an empty
# results folder against the PyTorch script that retrains the teacher for every cell.
echo "grid: PyTorch script..." >&2
OMP_NUM_THREADS=$threads "$python" bench/peer.py grid bench/grid.toml "$threads" >> "$out/raw.jsonl"
for backend in "${backends[@]}"; do
  echo "grid: kdgrid $backend..." >&2
  rm -rf "$out/grid-$backend"
  scripts/measure.py "$out/grid-$backend.json" $kdgrid --results "$out/grid-$backend" run --quiet \
    --backend "$backend" --threads "$threads" --jobs auto bench/grid.toml > /dev/null
  python3 -c 'import json, sys; print(json.dumps({"system": sys.argv[2], "workload": "grid/fmnist", "seconds": json.load(open(sys.argv[1]))["seconds"]}))' \
    "$out/grid-$backend.json" "kdgrid-$backend" >> "$out/raw.jsonl"
done
# The thread split on LibTorch: 2 stages of 1 thread against 1 stage of 2 threads on the same
# grid (kdgrid never runs jobs x threads above the cores unless told: docs/performance.md).
if [[ " ${backends[*]} " == *" tch "* ]]; then
  for split in "2 1" "1 2"; do
    read -r jobs each <<< "$split"
    echo "grid: kdgrid tch, $jobs jobs x $each threads..." >&2
    rm -rf "$out/grid-tch-$jobs-$each"
    scripts/measure.py "$out/grid-tch-$jobs-$each.json" $kdgrid --results "$out/grid-tch-$jobs-$each" \
      run --quiet --backend tch --threads "$each" --jobs "$jobs" bench/grid.toml > /dev/null
    python3 -c 'import json, sys; print(json.dumps({"system": sys.argv[2], "workload": "grid/fmnist", "seconds": json.load(open(sys.argv[1]))["seconds"]}))' \
      "$out/grid-tch-$jobs-$each.json" "kdgrid-tch-${jobs}jobs-x${each}threads" >> "$out/raw.jsonl"
  done
fi
# Real data, when the user has it: one epoch of the seed CNN on an image folder (CIFAR-10 as
# PNG/JPEG files: train/<class>/*, test/<class>/*) at $KDGRID_BENCH_IMAGES, training and test
# pass timed on both sides (decoding before it), so the synthetic rows can be checked against
# what users run.
if [[ -n "${KDGRID_BENCH_IMAGES:-}" ]]; then
  echo "image folder $KDGRID_BENCH_IMAGES: PyTorch..." >&2
  OMP_NUM_THREADS=$threads "$python" bench/peer.py folder "$KDGRID_BENCH_IMAGES" "$threads" >> "$out/raw.jsonl"
  images=$(cd "$KDGRID_BENCH_IMAGES" && pwd)
  cat > "$out/image-folder.toml" <<TOML
name = "bench-image-folder"
[dataset]
kind = "image-folder"
path = "$images"
[models.cnn2]
conv = [32, 64]
dense = [64]
[training]
epochs = 1
batch-size = 64
optimizer = "adam"
lr = 0.001
[grid]
seed = [0]
chains = [["cnn2"]]
TOML
  for backend in "${backends[@]}"; do
    echo "image folder: kdgrid $backend..." >&2
    rm -rf "$out/image-folder-$backend"
    $kdgrid --results "$out/image-folder-$backend" run --quiet --backend "$backend" \
      --threads "$threads" "$out/image-folder.toml" > /dev/null
    # The stage's own training and evaluation seconds, from its record.
    python3 -c 'import json, sys; r = json.load(open(sys.argv[1]))["record"]; print(json.dumps({"system": sys.argv[2], "workload": "cnn2/image-folder/epoch", "seconds": r["train_seconds"]}))' \
      "$(stage_record "$out/image-folder-$backend")" "kdgrid-$backend" >> "$out/raw.jsonl"
  done
else
  echo "image folder: skipped (set KDGRID_BENCH_IMAGES to an ImageFolder CIFAR-10, train/ and test/, to time a real epoch)" >&2
fi

# An ONNX teacher: a MobileNetV2 exported by torch 2.9's default exporter (batch open, weights
# in a side file), its per-image time at batch 1 and 256 in kdgrid (tract, the stage record's
# `latency_ms`) against PyTorch eager on the same network (bench/peer.py onnx).
echo "onnx teacher: PyTorch..." >&2
OMP_NUM_THREADS=$threads "$python" bench/peer.py onnx "$threads" >> "$out/raw.jsonl"
echo "onnx teacher: kdgrid..." >&2
rm -rf "$out/onnx"
mkdir -p "$out/onnx"
"$python" scripts/examples/pytorch-teacher.py export --arch mobilenet-v2 --classes 10 --size 32 \
  --dynamo --onnx "$out/onnx/mobilenetv2.onnx" > "$out/onnx/export.log" 2>&1 \
  || { cat "$out/onnx/export.log" >&2; exit 1; }
cat > "$out/onnx/m.toml" <<TOML
name = "bench-onnx"
[dataset]
kind = "synthetic"
classes = 10
channels = 3
image-size = 32
train-size = 64
test-size = 256
[models.mobilenetv2]
onnx = "mobilenetv2.onnx"
input = { normalize = "dataset" }
[training]
epochs = 1
batch-size = 64
optimizer = "adam"
lr = 0.001
[grid]
seed = [0]
chains = [["mobilenetv2"]]
TOML
$kdgrid --results "$out/onnx/results" run --quiet --threads "$threads" "$out/onnx/m.toml" > /dev/null
python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["record"]
for batch, ms in zip([1, 256], r["latency_ms"]):
    print(json.dumps({"system": "kdgrid-tract", "workload": f"onnx/mobilenetv2/batch{batch}", "images_per_second": 1e3 / ms}))' \
  "$(stage_record "$out/onnx/results")" >> "$out/raw.jsonl"

# Memory: peak resident set of a CIFAR-10-sized sweep, two stages at once (goal: under 1 GB).
backend=${backends[-1]}
echo "memory: kdgrid $backend, CIFAR-10-sized sweep with --jobs 2..." >&2
rm -rf "$out/rss"
scripts/measure.py "$out/rss.json" $kdgrid --results "$out/rss" run --quiet \
  --backend "$backend" --threads 1 --jobs 2 bench/cifar-sweep.toml > /dev/null
rss_mib=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["peak_rss_mib"])' "$out/rss.json")

python3 - "$out/raw.jsonl" "$threads" <<'PY'
import csv, json, platform, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# Grid rows carry wall seconds: their rate is the images the PyTorch script trains (every
# cell's chain from scratch) per wall second, so the ratio is the speed-up on the whole study.
grid_images = {r["workload"]: r["images"] for r in rows if "images" in r}
for r in rows:
    if "seconds" in r:
        r["images_per_second"] = grid_images[r["workload"]] / r["seconds"]
systems = sorted({r["system"] for r in rows}, key=lambda s: (s != "pytorch", s))
workloads = list(dict.fromkeys(r["workload"] for r in rows))
ips = {(r["system"], r["workload"]): r["images_per_second"] for r in rows}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
with open("bench/results.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["workload", "system", "threads", "images_per_second", "ratio_to_pytorch", "cpu"])
    for wl in workloads:
        base = ips.get(("pytorch", wl))
        for s in systems:
            v = ips.get((s, wl))
            if v is None:
                continue
            w.writerow([wl, s, sys.argv[2], f"{v:.1f}", f"{v / base:.2f}" if base else "", cpu])
head = "| workload | " + " | ".join(f"{s} images/s" for s in systems) + " | " + " | ".join(f"{s} / pytorch" for s in systems if s != "pytorch") + " |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for wl in workloads:
    base = ips.get(("pytorch", wl))
    cells = [f"{ips[(s, wl)]:.0f}" if (s, wl) in ips and ips[(s, wl)] else "" for s in systems]
    ratios = [f"{ips[(s, wl)] / base:.2f}x" if base and ips.get((s, wl)) else "" for s in systems if s != "pytorch"]
    print(f"| {wl} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
for s in systems:
    plain, kd = ips.get((s, "cnn2/fmnist/plain")), ips.get((s, "cnn2/fmnist/kd"))
    if s != "pytorch" and plain and kd:
        print(f"\n{s}: a KD step costs {plain / kd:.2f}x a plain step (Fashion-MNIST shape, cached teacher logits)", end="")
print(f"\n\n{cpu}, {sys.argv[2]} threads; written to bench/results.csv")
PY
echo "peak RSS of kdgrid-$backend on the CIFAR-10-sized sweep with --jobs 2: $rss_mib MiB"
echo "peak_rss_mib,kdgrid-$backend,cifar-sweep-jobs2,$rss_mib" > bench/memory.csv
