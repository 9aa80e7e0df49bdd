#!/usr/bin/env python3
"""Reads a study's TensorBoard folder through a real `tensorboard` server (the HTTP API its
dashboards call) and checks every scalar against the study's tables.

    check-tensorboard.py LOGDIR RESULTS_DIR [--expect-stages N]

LOGDIR is the folder given to `kdgrid run --tensorboard` / `kdgrid export --tensorboard`
(runs under LOGDIR/<study>/); RESULTS_DIR is the study's results folder (`runs.csv`,
`epochs.parquet`). Checks, from the definitions of the tables (not from kdgrid's writer):

- one run per stage of `runs.csv` that is not skipped, found by its event file's name;
- each epoch's `loss/train`, `loss/test`, `accuracy/test` (and the validation ones, `loss/kd`
  and `loss/hidden` when the table has them)
  equal `epochs.parquet`'s values rounded to float32 (TensorBoard keeps scalars as float32),
  at step = epoch, once each;
- `final/test_accuracy`, `final/test_loss`, `final/agreement`, `final/kl_teacher` equal
  `runs.csv`'s, rounded likewise;
- the HParams dashboard lists the grid's axes and one session per stage, whose hparams
  (seed, chain, temperature, alpha) and final accuracy equal `runs.csv`'s row.

Prints one line per failure and exits 1 if there is any; prints a summary otherwise.
"""

import csv
import glob
import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pyarrow.parquet as pq


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, body=None):
    url = f"http://127.0.0.1:{port}{path}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data)
    if data is not None:
        req.add_header("Content-Type", "application/json")
        req.add_header("X-XSRF-Protected", "1")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def number(text):
    return None if text in ("", None) else float(text)


def f32(x):
    """What TensorBoard shows of a value: its nearest float32 (TensorBoard keeps scalars so)."""
    return None if x is None else float(np.float32(x))


def same(got, want):
    """Lists of (step, value) equal, a NaN (a diverged stage) equal to a NaN."""
    return len(got) == len(want) and all(
        g[0] == w[0] and (g[1] == w[1] or (math.isnan(g[1]) and math.isnan(w[1])))
        for g, w in zip(got, want))


def main():
    logdir, results = sys.argv[1], sys.argv[2]
    expect = None
    if "--expect-stages" in sys.argv:
        expect = int(sys.argv[sys.argv.index("--expect-stages") + 1])

    with open(os.path.join(results, "runs.csv"), newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] != "skipped"]
    epochs = pq.read_table(os.path.join(results, "epochs.parquet")).to_pylist()
    by_stage = {}
    for e in epochs:
        by_stage.setdefault(e["stage_id"], []).append(e)

    # Each stage's run: the folder of its event file, relative to the logdir.
    run_of = {}
    for path in glob.glob(os.path.join(logdir, "**", "events.out.tfevents.kdgrid.*"), recursive=True):
        stage = path.rsplit(".", 1)[1]
        run_of[stage] = os.path.relpath(os.path.dirname(path), logdir)
    failures = []
    fail = failures.append
    # Each (tag, step) once per file, read raw with TensorBoard's own loader: the server keeps
    # one value per step and would hide a step written twice.
    from tensorboard.backend.event_processing import event_file_loader
    for stage, run in run_of.items():
        path = glob.glob(os.path.join(logdir, run, "events.out.tfevents.kdgrid." + stage))[0]
        seen = {}
        for event in event_file_loader.EventFileLoader(path).Load():
            for v in event.summary.value:
                key = (v.tag, event.step)
                seen[key] = seen.get(key, 0) + 1
        repeated = sorted(k for k, n in seen.items() if n > 1)
        if repeated:
            fail(f"{run}: (tag, step) written more than once: {repeated}")
    if expect is not None and len(rows) != expect:
        fail(f"runs.csv has {len(rows)} stages, expected {expect}")

    port = free_port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "tensorboard"), "--logdir", logdir,
         "--port", str(port), "--host", "127.0.0.1", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        wanted = {run_of.get(r["stage_id"]) for r in rows if number(r["test_loss"]) is not None}
        runs = []
        # The server loads files in the background: wait until every run's last scalar is in.
        while time.time() < deadline:
            try:
                runs = get(port, "/data/runs")
                tags = get(port, "/data/plugin/scalars/tags")
                if all("final/test_loss" in tags.get(run, {}) for run in wanted):
                    break
            except OSError:
                pass
            time.sleep(1)
        check(port, rows, by_stage, run_of, set(runs), fail)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    for f in failures:
        print(f)
    if failures:
        sys.exit(1)
    print(f"tensorboard: {len(rows)} runs, every scalar and session equal to the tables")


def check(port, rows, by_stage, run_of, runs, fail):
    scalar_tags = [
        ("loss/train", "train_loss"),
        ("loss/test", "test_loss"),
        ("accuracy/test", "test_accuracy"),
        ("loss/validation", "val_loss"),
        ("accuracy/validation", "val_accuracy"),
        ("loss/kd", "kd_loss"),
        ("loss/hidden", "hidden_loss"),
    ]
    final_tags = [
        ("final/test_accuracy", "test_accuracy"),
        ("final/test_loss", "test_loss"),
        ("final/agreement", "agreement"),
        ("final/kl_teacher", "kl_teacher"),
    ]
    tags = get(port, "/data/plugin/scalars/tags")
    for r in rows:
        sid = r["stage_id"]
        run = run_of.get(sid)
        if run is None or run not in runs:
            fail(f"stage {sid}: no TensorBoard run (found {run!r})")
            continue
        have = tags.get(run, {})
        history = sorted(by_stage.get(sid, []), key=lambda e: e["epoch"])
        for tag, column in scalar_tags:
            want = [(e["epoch"], f32(e[column])) for e in history if e.get(column) is not None]
            if not want and tag not in have:
                continue
            got = get(port, "/data/plugin/scalars/scalars?" + urllib.parse.urlencode({"run": run, "tag": tag}))
            got = [(step, value) for _, step, value in got]
            if not same(got, want):
                fail(f"{run} {tag}: TensorBoard {got}, epochs.parquet {want}")
        last = len(history)
        for tag, column in final_tags:
            want = f32(number(r.get(column)))
            if want is None:
                if tag in have:
                    fail(f"{run} {tag}: in TensorBoard, empty in runs.csv")
                continue
            got = get(port, "/data/plugin/scalars/scalars?" + urllib.parse.urlencode({"run": run, "tag": tag}))
            if not same([(s, v) for _, s, v in got], [(last, want)]):
                fail(f"{run} {tag}: TensorBoard {got}, runs.csv {want} at step {last}")

    experiment = get(port, "/data/plugin/hparams/experiment", {"experimentName": ""})
    names = {h["name"] for h in experiment.get("hparamInfos", [])}
    for axis in ["chain", "seed", "model", "role"]:
        if axis not in names:
            fail(f"HParams: no `{axis}` hyperparameter (has {sorted(names)})")
    if any(r["temperature"] for r in rows) and not {"temperature", "alpha"} <= names:
        fail(f"HParams: no temperature/alpha (has {sorted(names)})")
    metrics = {m["name"]["tag"] for m in experiment.get("metricInfos", [])}
    if "final/test_accuracy" not in metrics:
        fail(f"HParams: no final/test_accuracy metric (has {sorted(metrics)})")
    groups = get(port, "/data/plugin/hparams/session_groups", {
        "experimentName": "",
        "allowedStatuses": ["STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING", "STATUS_UNKNOWN"],
        "colParams": [{"hparam": "seed"}, {"metric": {"tag": "final/test_accuracy", "group": ""}}],
        "startIndex": 0,
        "sliceSize": 100000,
    })
    sessions = {}
    for g in groups.get("sessionGroups", []):
        for s in g["sessions"]:
            sessions[s["name"]] = (g, s)
    if len(sessions) != len(rows):
        fail(f"HParams: {len(sessions)} sessions, {len(rows)} stages")
    for r in rows:
        run = run_of.get(r["stage_id"])
        if run not in sessions:
            fail(f"HParams: no session {run}")
            continue
        g, s = sessions[run]
        h = g["hparams"]
        if h.get("seed") != float(r["seed"]) or h.get("chain") != r["chain"]:
            fail(f"HParams {run}: seed {h.get('seed')} chain {h.get('chain')!r}, runs.csv {r['seed']} {r['chain']!r}")
        for key in ["temperature", "alpha"]:
            if number(r[key]) != h.get(key):
                fail(f"HParams {run}: {key} {h.get(key)}, runs.csv {r[key]!r}")
        want_status = "STATUS_SUCCESS" if r["status"] == "ok" else "STATUS_FAILURE"
        if s.get("status") != want_status:
            fail(f"HParams {run}: status {s.get('status')}, runs.csv {r['status']}")
        accuracy = [m["value"] for m in s.get("metricValues", []) if m["name"]["tag"] == "final/test_accuracy"]
        want = f32(number(r["test_accuracy"]))
        if want is not None and accuracy != [want]:
            fail(f"HParams {run}: final/test_accuracy {accuracy}, runs.csv {want}")


if __name__ == "__main__":
    main()
