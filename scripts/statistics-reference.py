#!/usr/bin/env python3
"""Differential test of kdgrid's statistics, computed independently with scipy.

    statistics-reference.py DIR...   recompute each results folder's summary.csv, comparisons.csv
                                     and variance.csv (and runs.csv's gap_closed) from its runs.csv;
                                     exit 1 naming the first mismatching rows and columns
    statistics-reference.py --values print the reference values of src/report/stats/tests.rs

`make test` runs it over every committed `results/*/` folder (tests/it/report.rs) through the
torch venv's Python, which has scipy (Makefile: `.installed-scipy`). What it checks, and the
formulas, are in docs/statistics.md. Bootstrap intervals come from kdgrid's own seeded stream:
they are checked for their bounds (within the sample's range, [min, max] with <= 3 values), not
recomputed.
"""
import csv
import itertools
import math
import sys
from pathlib import Path

import numpy as np
import scipy
import scipy.stats as st

LEVEL = 0.95
EFFECT = 0.01  # one accuracy point
POWER = 0.8
BOOTSTRAP_MIN_N = 5
ATOL, RTOL = 1e-9, 1e-7
LIMIT = 20


# ---------------------------------------------------------------------------------------------
# Statistics, as docs/statistics.md defines them.

def t_power(df, ncp):
    """Two-sided t-test power: P(|T'| > t_c) for the noncentral t."""
    c = st.t.ppf(1 - (1 - LEVEL) / 2, df)
    return st.nct.sf(c, df, ncp) + st.nct.cdf(-c, df, ncp)


def pairs_needed(sd):
    if not sd > 0:
        return None
    n = 2
    while t_power(n - 1, EFFECT * math.sqrt(n) / sd) < POWER:
        n += 1
    return n


def seeds_needed_unpaired(sd):
    if not sd > 0:
        return None
    n = 2
    while t_power(2 * n - 2, EFFECT / (sd * math.sqrt(2 / n))) < POWER:
        n += 1
    return n


def wilcoxon_p(d):
    """Two-sided Wilcoxon signed-rank p: zeros dropped; exact up to 25 nonzero differences
    (by enumerating every sign pattern when |d| has ties), normal approximation above."""
    d = np.asarray([x for x in d if x != 0.0])
    n = len(d)
    if n == 0:
        return None
    if n > 25:
        return float(st.wilcoxon(d, method="approx", correction=False).pvalue)
    if len(set(np.abs(d))) == n:
        return float(st.wilcoxon(d, method="exact").pvalue)
    ranks = st.rankdata(np.abs(d))
    w = ranks[d > 0].sum()
    sums = np.array([sum(r for r, s in zip(ranks, signs) if s)
                     for signs in itertools.product([0, 1], repeat=n)])
    low, high = np.mean(sums <= w + 1e-9), np.mean(sums >= w - 1e-9)
    return float(min(1.0, 2 * min(low, high)))


def min_p_wilcoxon(d):
    nz = [abs(x) for x in d if x != 0.0]
    return wilcoxon_p(nz) if len(nz) >= 2 else None


def sd(xs):
    return float(np.std(xs, ddof=1)) if len(xs) >= 2 else None


# ---------------------------------------------------------------------------------------------
# Tables.

def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(v):
    return None if v is None or v == "" else float(v)


class Check:
    def __init__(self, folder):
        self.folder = folder
        self.mismatches = []

    def fail(self, table, row, key, column, committed, expected):
        self.mismatches.append(
            f"{self.folder / table} row {row} ({key}) column `{column}`: "
            f"committed {committed!r}, scipy {expected!r}")

    def value(self, table, row, key, rec, column, expected):
        if column not in rec:
            self.fail(table, row, key, column, "(no such column)", expected)
            return
        got = num(rec[column])
        if expected is not None and not math.isfinite(expected):
            self.fail(table, row, key, column, got, f"{expected} (scipy found no finite value)")
        elif expected is None or got is None:
            if not (expected is None and got is None):
                self.fail(table, row, key, column, rec[column], expected)
        elif abs(got - expected) > ATOL + RTOL * abs(expected):
            self.fail(table, row, key, column, got, float(expected))

    def text(self, table, row, key, rec, column, expected):
        got = rec.get(column)
        if (got or "") != (expected or ""):
            self.fail(table, row, key, column, got, expected)

    def within(self, table, row, key, rec, lo_col, hi_col, lo, hi, exact):
        """A bootstrap interval: inside [lo, hi], equal to it when `exact`."""
        bl, bh = num(rec.get(lo_col)), num(rec.get(hi_col))
        if lo is None:
            if bl is not None or bh is not None:
                self.fail(table, row, key, lo_col, rec.get(lo_col), None)
            return
        eps = 1e-12
        ok = bl is not None and bh is not None and lo - eps <= bl <= bh <= hi + eps
        if ok and exact:
            ok = abs(bl - lo) <= eps and abs(bh - hi) <= eps
        if not ok:
            self.fail(table, row, key, f"{lo_col}/{hi_col}", (bl, bh),
                      f"{'equal to' if exact else 'within'} [{lo}, {hi}]")


def group_key(r):
    return (r["chain"], r["model"], r["temperature"], r["alpha"])


def samples(runs):
    """(source, runs) per source of randomness that varies, as src/report/study.rs splits."""
    seeds = lambda r: (int(r["init_seed"]), int(r["order_seed"]), int(r["augment_seed"]))
    uniform = lambda r: all(s == int(r["seed"]) for s in seeds(r))
    if all(uniform(r) for r in runs):
        return [("all", runs)]
    out = []
    alls = [r for r in runs if uniform(r)]
    if len({int(r["seed"]) for r in alls}) >= 2:
        out.append(("all", alls))
    for i, source in enumerate(["init", "order", "augment"]):
        picked = [r for r in runs
                  if all(s == int(r["seed"]) for j, s in enumerate(seeds(r)) if j != i)]
        if len({seeds(r)[i] for r in picked}) >= 2:
            out.append((source, picked))
    return out


def ok_values(runs, column="test_accuracy"):
    return [float(r[column]) for r in runs if r["status"] == "ok" and r[column] != ""]


def check_summary(c, groups, summary):
    derived = {}
    for key, runs in groups.items():
        for source, rs in samples(runs):
            derived[key + (source,)] = rs
    seen = set()
    for i, rec in enumerate(summary, 1):
        key = group_key(rec) + (rec["source"],)
        label = " | ".join(key + (rec["metric"],))
        if key not in derived:
            c.fail("summary.csv", i, label, "chain", "a row", "no such group in runs.csv")
            continue
        if rec["metric"] == "test_accuracy":
            seen.add(key)
        rs = derived[key]
        xs = ok_values(rs, rec["metric"])
        n = len(xs)
        v = lambda col, x: c.value("summary.csv", i, label, rec, col, x)
        v("n", n)
        v("failed", sum(r["status"] != "ok" for r in rs))
        s = sd(xs)
        m = float(np.mean(xs)) if xs else None
        v("mean", m)
        v("std", s)
        v("sem", st.sem(xs) if n >= 2 else None)
        half = st.t.ppf(1 - (1 - LEVEL) / 2, n - 1) * st.sem(xs) if n >= 2 else None
        ci = (m - half, m + half) if n >= 2 else (None, None)
        v("ci_low", ci[0])
        v("ci_high", ci[1])
        v("median", float(np.median(xs)) if xs else None)
        v("min", min(xs) if xs else None)
        v("max", max(xs) if xs else None)
        v("range", max(xs) - min(xs) if xs else None)
        c.within("summary.csv", i, label, rec, "boot_low", "boot_high",
                 min(xs) if n >= 2 else None, max(xs) if n >= 2 else None, 2 <= n <= 3)
        note = {0: "no finished run", 1: "one seed: no spread or interval"}.get(n)
        if 2 <= n < BOOTSTRAP_MIN_N:
            note = f"bootstrap CI unreliable below {BOOTSTRAP_MIN_N} seeds"
        c.text("summary.csv", i, label, rec, "note", note)
    for key in derived:
        if key not in seen:
            c.fail("summary.csv", "-", " | ".join(key), "metric", "no row",
                   "a test_accuracy row")


def check_variance(c, groups, variance):
    derived = {}
    for key, runs in groups.items():
        for source, rs in samples(runs):
            if len(ok_values(rs)) >= 2:
                derived[key + (source,)] = ok_values(rs)
    seen = set()
    for i, rec in enumerate(variance, 1):
        key = group_key(rec) + (rec["source"],)
        label = " | ".join(key)
        if key not in derived:
            c.fail("variance.csv", i, label, "chain", "a row", "fewer than 2 finished runs")
            continue
        seen.add(key)
        xs = derived[key]
        n, s = len(xs), sd(xs)
        v = lambda col, x: c.value("variance.csv", i, label, rec, col, x)
        v("n", n)
        v("std", s)
        v("std_low", math.sqrt((n - 1) * s * s / st.chi2.ppf(0.975, n - 1)))
        v("std_high", math.sqrt((n - 1) * s * s / st.chi2.ppf(0.025, n - 1)))
        v("range", max(xs) - min(xs))
        for col, d in [("p_gap_half_point", 0.005), ("p_gap_1_point", 0.01)]:
            v(col, 2 * st.norm.sf(d / (s * math.sqrt(2))) if s > 0 else None)
        pairs = list(itertools.combinations(xs, 2))
        v("pairs_gap_1_point", sum(abs(a - b) >= 0.01 - 1e-12 for a, b in pairs) / len(pairs))
    for key in derived:
        if key not in seen:
            c.fail("variance.csv", "-", " | ".join(key), "n", "no row", "a row")


def expected_comparisons(groups):
    """(kind, chain_a, chain_b, T, alpha) of every comparison the groups allow."""
    def find(chain, t, a):
        return any(k[0] == chain and k[2] == t and k[3] == a for k in groups)
    out = set()
    for (chain, _, t, a) in groups:
        if t == "":
            continue
        models = chain.split(" > ")
        last = models[-1]
        if find(last, "", ""):
            out.add(("kd-vs-nokd", chain, last, t, a))
        if len(models) >= 3:
            direct = f"{models[0]} > {last}"
            if find(direct, t, a):
                out.add(("ta-vs-kd", chain, direct, t, a))
            for skip in range(1, len(models) - 1):
                shorter = [m for j, m in enumerate(models) if j != skip]
                if len(shorter) >= 3 and find(" > ".join(shorter), t, a):
                    out.add(("longer-vs-shorter", chain, " > ".join(shorter), t, a))
    return out


def check_comparisons(c, groups, by_id, comparisons):
    seeds = lambda r: (int(r["init_seed"]), int(r["order_seed"]), int(r["augment_seed"]))

    def root_seed(r):
        while r["parent_id"]:
            r = by_id[r["parent_id"]]
        return int(r["seed"])

    seen = set()
    for i, rec in enumerate(comparisons, 1):
        t, a = rec["temperature"], rec["alpha"]
        key = (rec["kind"], rec["chain_a"], rec["chain_b"], t, a)
        seen.add(key)
        label = " | ".join(key)
        bt, ba = ("", "") if rec["kind"] == "kd-vs-nokd" else (t, a)
        ga = groups.get((rec["chain_a"], rec["model"], t, a), [])
        gb = groups.get((rec["chain_b"], rec["model"], bt, ba), [])
        ra = [r for r in ga if r["status"] == "ok" and r["test_accuracy"] != ""]
        rb = [r for r in gb if r["status"] == "ok" and r["test_accuracy"] != ""]
        va, vb = [float(r["test_accuracy"]) for r in ra], [float(r["test_accuracy"]) for r in rb]
        ka, kb = {seeds(r): float(r["test_accuracy"]) for r in ra}, \
            {seeds(r): float(r["test_accuracy"]) for r in rb}
        distilled = [(root_seed(r), int(r["seed"])) for r in ra + rb if r["parent_id"]]
        teachers_pair = len({x[0] for x in distilled}) <= 1 or all(x == y for x, y in distilled)
        paired = (len(ka) == len(ra) and len(kb) == len(rb) and set(ka) == set(kb)
                  and teachers_pair)
        v = lambda col, x: c.value("comparisons.csv", i, label, rec, col, x)
        v("n_a", len(va))
        v("n_b", len(vb))
        method = "paired" if paired and va and vb else "unpaired"
        c.text("comparisons.csv", i, label, rec, "method", method)
        notes = []
        if not va or not vb:
            notes.append("no finished run on one side")
        elif min(len(va), len(vb)) < 2:
            notes.append("fewer than 2 runs on one side: no interval or test")
        mean_diff = None
        if va and vb and paired:
            keys = sorted(ka)
            x, y = np.array([ka[k] for k in keys]), np.array([kb[k] for k in keys])
            d = x - y
            n = len(d)
            s = sd(d)
            s = s if s and s > 0 else None
            mean_diff = float(np.mean(d))
            if len(va) >= 2 and vb and min(len(va), len(vb)) >= 2 and s is None:
                notes.append("identical differences: no test")
            v("pairs", n)
            v("mean_diff", mean_diff)
            ci = st.t.interval(LEVEL, n - 1, loc=mean_diff, scale=s / math.sqrt(n)) \
                if s else (None, None)
            v("ci_low", ci[0])
            v("ci_high", ci[1])
            c.within("comparisons.csv", i, label, rec, "boot_low", "boot_high",
                     float(d.min()) if n >= 2 else None, float(d.max()) if n >= 2 else None,
                     2 <= n <= 3)
            v("p_t", float(st.ttest_rel(x, y).pvalue) if s else None)
            v("p_wilcoxon", wilcoxon_p(d) if n >= 2 else None)
            v("wins", int((d > 0).sum()))
            v("cohen_d", mean_diff / s if s else None)
            min_p = min_p_wilcoxon(d)
            v("min_p_wilcoxon", min_p)
            v("seeds_for_1_point", pairs_needed(s) if s else None)
            if 2 <= n < BOOTSTRAP_MIN_N:
                notes.append(f"bootstrap CI unreliable below {BOOTSTRAP_MIN_N} pairs")
            if min_p is not None and min_p > 1 - LEVEL:
                notes.append(f"with {n} pairs the smallest possible Wilcoxon p is {min_p:.3f}")
            for col in ["p_welch", "p_improve", "p_improve_low", "p_improve_high"]:
                v(col, None)
        elif va and vb:
            mean_diff = float(np.mean(va) - np.mean(vb))
            v("pairs", None)
            v("mean_diff", mean_diff)
            sa, sb = sd(va), sd(vb)
            welch = sa is not None and sb is not None and (sa > 0 or sb > 0)
            r = st.ttest_ind(va, vb, equal_var=False) if welch else None
            ci = r.confidence_interval(LEVEL) if welch else (None, None)
            v("ci_low", ci[0])
            v("ci_high", ci[1])
            both = len(va) >= 2 and len(vb) >= 2
            c.within("comparisons.csv", i, label, rec, "boot_low", "boot_high",
                     min(va) - max(vb) if both else None, max(va) - min(vb) if both else None,
                     False)
            v("p_welch", float(r.pvalue) if welch else None)
            v("p_improve", float(st.mannwhitneyu(va, vb).statistic) / (len(va) * len(vb)))
            c.within("comparisons.csv", i, label, rec, "p_improve_low", "p_improve_high",
                     0.0 if both else None, 1.0 if both else None, False)
            pooled = math.sqrt((sa * sa + sb * sb) / 2) if both else None
            v("seeds_for_1_point", seeds_needed_unpaired(pooled) if pooled else None)
            if both and min(len(va), len(vb)) < BOOTSTRAP_MIN_N:
                notes.append(f"bootstrap CI unreliable below {BOOTSTRAP_MIN_N} runs per side")
            for col in ["p_t", "p_wilcoxon", "wins", "cohen_d", "min_p_wilcoxon"]:
                v(col, None)
        gain = closed = None
        if rec["kind"] == "kd-vs-nokd" and mean_diff is not None:
            teachers = [float(by_id[r["parent_id"]]["test_accuracy"]) for r in ra]
            gain = float(np.mean(teachers) - np.mean(vb))
            closed = mean_diff / gain if gain > 0 else None
            if closed is None:
                notes.append("teacher not better than no-KD on average: no gap closed")
        v("teacher_gain", gain)
        v("gap_closed", closed)
        c.text("comparisons.csv", i, label, rec, "note", "; ".join(notes) or None)
    for key in sorted(expected_comparisons(groups) - seen):
        c.fail("comparisons.csv", "-", " | ".join(key), "kind", "no row", "a comparison")


def check_runs(c, runs, by_id):
    seeds = lambda r: (r["init_seed"], r["order_seed"], r["augment_seed"])
    acc = lambda r: float(r["test_accuracy"]) if r and r["status"] == "ok" \
        and r["test_accuracy"] != "" else None
    for i, r in enumerate(runs, 1):
        label = f"{r['stage_id']} {r['chain']} seed {r['seed']}"
        parent = by_id.get(r["parent_id"])
        c.value("runs.csv", i, label, r, "teacher_accuracy", acc(parent))
        expected = None
        base = next((b for b in runs if b["chain"] == r["model"] and seeds(b) == seeds(r)), None)
        kd, teacher, nokd = acc(r), acc(parent), acc(base)
        if parent and None not in (kd, teacher, nokd) and teacher > nokd:
            expected = (kd - nokd) / (teacher - nokd)
        c.value("runs.csv", i, label, r, "gap_closed", expected)


def check(folder):
    folder = Path(folder)
    c = Check(folder)
    runs = read(folder / "runs.csv")
    by_id = {r["stage_id"]: r for r in runs}
    groups = {}
    for r in runs:
        groups.setdefault(group_key(r), []).append(r)
    check_runs(c, runs, by_id)
    check_summary(c, groups, read(folder / "summary.csv"))
    check_comparisons(c, groups, by_id, read(folder / "comparisons.csv"))
    check_variance(c, groups, read(folder / "variance.csv"))
    return c.mismatches


# ---------------------------------------------------------------------------------------------
# The unit tests' reference values.

def values():
    print("scipy", scipy.__version__)
    x = np.array([0.8604, 0.8828, 0.8746, 0.8690, 0.8712])
    a = np.array([0.8676, 0.8786, 0.8782, 0.8710, 0.8690])
    print("mean %.17g std %.17g" % (x.mean(), x.std(ddof=1)))
    print("t interval", repr(st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))))
    print("diffs", a - x)
    print("ttest_rel", repr(st.ttest_rel(a, x).pvalue))
    print("wilcoxon exact", repr(st.wilcoxon(a, x, method="exact").pvalue))
    print("welch", repr(st.ttest_ind(a, x, equal_var=False).pvalue))
    s, n = x.std(ddof=1), len(x)
    lo = np.sqrt((n - 1) * s * s / st.chi2.ppf(0.975, n - 1))
    hi = np.sqrt((n - 1) * s * s / st.chi2.ppf(0.025, n - 1))
    print("std ci", repr((lo, hi)))
    rng = np.random.default_rng(3)
    big = rng.normal(0.001, 0.01, 30)
    print("big", list(map(float, big)))
    print("wilcoxon approx", repr(st.wilcoxon(big, method="approx", correction=False).pvalue))
    print("mwu", st.mannwhitneyu(a, x).statistic / 25)
    for df, ncp in [(1, 2.0), (2, 3.0), (4, 1.5), (9, 2.5), (30, 2.8), (200, 2.0)]:
        print("power", df, ncp, repr(float(t_power(df, ncp))))
    for s in [0.001, 0.005, 0.0085, 0.0104, 0.02, 0.05]:
        print("seeds for 1 point at sd", s, pairs_needed(s), seeds_needed_unpaired(s))
    print("smallest wilcoxon p, 3 pairs", min_p_wilcoxon([0.01, 0.02, 0.03]))


def main(args):
    if args == ["--values"]:
        values()
        return 0
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    for folder in args:
        mismatches = check(folder)
        if mismatches:
            failed += 1
            print(f"{folder}: {len(mismatches)} cells differ from scipy's recomputation")
            for m in mismatches[:LIMIT]:
                print(f"  {m}")
        else:
            print(f"{folder}: summary, comparisons, variance and runs' gap_closed agree "
                  f"with scipy {scipy.__version__}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
