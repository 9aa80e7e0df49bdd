#!/usr/bin/env python3
"""Reads a study from an MLflow tracking server with MLflow's own client and checks it against
the study's tables.

    check-mlflow.py TRACKING_URI RESULTS_DIR STUDY

Checks, from the definitions of the tables (not from kdgrid's exporter):

- the experiment named STUDY holds exactly one run per stage of `runs.csv` that is not
  skipped (`mlflow.search_runs`), found by its `kdgrid.stage_id` tag, FINISHED when the stage
  is `ok` and FAILED when it failed;
- its params equal the row's grid cell (seed, chain, model, role, temperature, alpha);
- the metric history of `loss/train`, `loss/test`, `accuracy/test`, `loss/kd` equals
  `epochs.parquet`
  (every epoch, by step, once, all 64 bits), and `final/test_accuracy`, `final/agreement`,
  `final/kl_teacher` equal `runs.csv`;
- its tags name the chain, role, backend, processor and kdgrid version of `runs.csv`.

Prints one line per failure and exits 1 if there is any.
"""

import csv
import math
import os
import sys

import mlflow
import pyarrow.parquet as pq
from mlflow.tracking import MlflowClient


def number(text):
    return None if text in ("", None) else float(text)


def same(got, want):
    """Lists equal, a NaN (a diverged stage) equal to a NaN."""
    flat = lambda v: v if isinstance(v, tuple) else (v,)
    return len(got) == len(want) and all(
        all(a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
            for a, b in zip(flat(g), flat(w)))
        for g, w in zip(got, want))


def main():
    uri, results, study = sys.argv[1:4]
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    with open(os.path.join(results, "runs.csv"), newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] != "skipped"]
    epochs = {}
    for e in pq.read_table(os.path.join(results, "epochs.parquet")).to_pylist():
        epochs.setdefault(e["stage_id"], []).append(e)

    failures = []
    fail = failures.append
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        print(f"no experiment `{study}`")
        sys.exit(1)
    runs = client.search_runs([experiment.experiment_id], max_results=50000)
    by_stage = {}
    for run in runs:
        sid = run.data.tags.get("kdgrid.stage_id")
        if sid in by_stage:
            fail(f"stage {sid}: two runs ({by_stage[sid].info.run_id}, {run.info.run_id})")
        by_stage[sid] = run
    if len(runs) != len(rows):
        fail(f"{len(runs)} runs in `{study}`, {len(rows)} stages in runs.csv")

    for r in rows:
        sid = r["stage_id"]
        run = by_stage.get(sid)
        if run is None:
            fail(f"stage {sid}: no run")
            continue
        status = "FINISHED" if r["status"] == "ok" else "FAILED"
        if run.info.status != status:
            fail(f"stage {sid}: status {run.info.status}, runs.csv {r['status']}")
        p = run.data.params
        for key in ["chain", "model", "role"]:
            if p.get(key) != r[key]:
                fail(f"stage {sid}: param {key} {p.get(key)!r}, runs.csv {r[key]!r}")
        for key in ["seed", "temperature", "alpha"]:
            want = number(r[key])
            got = number(p.get(key))
            if want != got:
                fail(f"stage {sid}: param {key} {p.get(key)!r}, runs.csv {r[key]!r}")
        t = run.data.tags
        for tag, column in [("kdgrid.chain", "chain"), ("kdgrid.role", "role"),
                            ("kdgrid.backend", "backend"), ("kdgrid.processor", "processor"),
                            ("kdgrid.version", "kdgrid_version")]:
            if t.get(tag) != r[column]:
                fail(f"stage {sid}: tag {tag} {t.get(tag)!r}, runs.csv {r[column]!r}")
        history = sorted(epochs.get(sid, []), key=lambda e: e["epoch"])
        for key, column in [("loss/train", "train_loss"), ("loss/test", "test_loss"),
                            ("accuracy/test", "test_accuracy"), ("loss/kd", "kd_loss")]:
            got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            want = [(e["epoch"], e[column]) for e in history if e.get(column) is not None]
            if not same(got, want):
                fail(f"stage {sid}: {key} history {got}, epochs.parquet {want}")
        for key, column in [("final/test_accuracy", "test_accuracy"),
                            ("final/agreement", "agreement"), ("final/kl_teacher", "kl_teacher")]:
            want = number(r[column])
            got = [m.value for m in client.get_metric_history(run.info.run_id, key)]
            if not same(got, [] if want is None else [want]):
                fail(f"stage {sid}: {key} {got}, runs.csv {want}")
    for f in failures:
        print(f)
    if failures:
        sys.exit(1)
    print(f"mlflow: {len(rows)} runs in `{study}`, params and metric histories equal to the tables")


if __name__ == "__main__":
    main()
