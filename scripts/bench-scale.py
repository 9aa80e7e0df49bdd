#!/usr/bin/env python3
"""`make bench-scale`: how kdgrid's own work grows with the number of stages.

Writes synthetic studies of tiny stages (4x4 images, 8 training images, one optimizer step per
stage, so training costs next to nothing and kdgrid's bookkeeping is what is measured): per seed
one teacher and five students distilled at five temperatures (6 stages). For each size, times
and peak memory of `validate`, `plan`, `plan --json`, then `run` (which trains the store),
`status`, `report` and `diff` over the finished store; the per-stage overhead of `run` (its wall
time over the number of stages: the training steps themselves are a few microseconds); and the
fitted exponent t ~ n^k between the two largest sizes.

usage: scripts/bench-scale.py KDGRID [STAGES ...]   (default 1000 10000; 100000 runs ~10 min of
`run` on 2 cores: give it explicitly). `plan:N` measures only `validate`, `plan` and
`plan --json` of N stages (no store), e.g. `plan:155000` for the planning goal.
BENCH_SCALE_KEEP=1 keeps each size's folder (manifest and finished store) for profiling.
"""
import json, math, os, shutil, subprocess, sys, tempfile

KDGRID = sys.argv[1]
SIZES = sys.argv[2:] or ["1000", "10000"]
MEASURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "measure.py")

MANIFEST = """
name = "scale"
[dataset]
kind = "synthetic"
seed = 1
classes = 2
train-size = 8
test-size = 8
image-size = 4
noise = 0.5
[models.t]
family = "mlp"
dense = [4]
[models.s]
family = "mlp"
dense = [2]
[training]
epochs = 1
batch-size = 8
optimizer = "adam"
lr = 0.01
[grid]
seed = {{ range = [0, {seeds}] }}
temperature = [1.0, 2.0, 3.0, 4.0, 5.0]
alpha = [0.5]
chains = [["t", "s"]]
max-cells = 1000000
"""


def measure(work, args):
    out = os.path.join(work, "m.json")
    with open(os.devnull, "w") as null:
        status = subprocess.run([sys.executable, MEASURE, out, KDGRID, *args], stdout=null).returncode
    if status != 0:
        sys.exit(f"bench-scale: `kdgrid {' '.join(args)}` failed ({status})")
    return json.load(open(out))


def main():
    rows, planned = {}, {}
    for size in SIZES:
        plan_only = size.startswith("plan:")
        n = int(size.removeprefix("plan:"))
        seeds = max(1, n // 6)
        work = tempfile.mkdtemp(prefix=f"kdgrid-scale-{n}-")
        manifest = os.path.join(work, "scale.toml")
        open(manifest, "w").write(MANIFEST.format(seeds=seeds))
        results = os.path.join(work, "results")
        common = ["--results", results]
        r = {}
        r["validate"] = measure(work, [*common, "validate", manifest])
        r["plan"] = measure(work, [*common, "plan", manifest])
        r["plan --json"] = measure(work, [*common, "plan", "--json", manifest])
        if plan_only:
            planned[seeds * 6] = r
            shutil.rmtree(work)
            continue
        r["run"] = measure(work, [*common, "run", "--quiet", manifest])
        r["status"] = measure(work, [*common, "status", manifest])
        r["report"] = measure(work, [*common, "report", manifest])
        r["diff"] = measure(work, ["diff", os.path.join(results, "scale"), os.path.join(results, "scale")])
        stages = seeds * 6
        rows[stages] = r
        print(f"{stages} stages: run {r['run']['seconds']:.1f} s, "
              f"{1000 * r['run']['seconds'] / stages:.1f} ms per stage", file=sys.stderr)
        if os.environ.get("BENCH_SCALE_KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work)
    sizes = sorted(rows)
    commands = list(rows[sizes[0]]) if sizes else []
    if sizes:
        print("| command | " + " | ".join(f"{n} stages: s, MiB" for n in sizes) + " | exponent |")
        print("|---|" + "---|" * len(sizes) + "---|")
    for c in commands:
        cells = [f"{rows[n][c]['seconds']:.2f}, {rows[n][c]['peak_rss_mib']}" for n in sizes]
        exp = "-"
        if len(sizes) >= 2:
            a, b = sizes[-2], sizes[-1]
            ta, tb = rows[a][c]["seconds"], rows[b][c]["seconds"]
            if ta > 0.05 and tb > 0:
                exp = f"{math.log(tb / ta) / math.log(b / a):.2f}"
        print(f"| `{c}` | " + " | ".join(cells) + f" | {exp} |")
    if sizes:
        per_stage = [f"{1000 * rows[n]['run']['seconds'] / n:.1f}" for n in sizes]
        print("| `run` per stage (ms) | " + " | ".join(per_stage) + " | |")
    for n, r in sorted(planned.items()):
        print()
        print(f"planning only, {n} stages: " + ", ".join(
            f"`{c}` {v['seconds']:.2f} s, {v['peak_rss_mib']} MiB" for c, v in r.items()))


if __name__ == "__main__":
    main()
