#!/usr/bin/env python3
"""Differential test of kdgrid's statistics, computed independently with scipy.

    statistics-reference.py DIR...          recompute each results folder's summary.csv,
                                            comparisons.csv and variance.csv (and runs.csv's
                                            gap_closed) from its runs.csv; exit 1 naming the
                                            first mismatching rows and columns
    statistics-reference.py --values        print the reference values of
                                            src/report/stats/tests.rs
    statistics-reference.py --simulate-power  check the power rule by simulation (below)

`make test` runs it over every committed `results/*/` folder (tests/it/report.rs) through the
torch venv's Python, which has scipy (Makefile: `.installed-scipy`). The formulas are in
docs/statistics.md; they are recomputed here from their definitions, not from kdgrid's code.

What a folder check recomputes (every value to 1e-9 absolute + 1e-7 relative; an empty cell
must be empty exactly where the definition gives no value):

- Samples. A group is one (chain, model, temperature, alpha). Its sources of randomness: `all`
  (every run when all seeds equal the cell seed; else the all-equal runs, given >= 2 cell
  seeds), and `init`/`order`/`augment`, each a list of *cells*: per cell seed s, the runs with
  seed s whose two other seeds equal s, counted when they hold >= 2 values of the source's
  seed. The source has rows only when some cell counts.
- summary.csv, per group, source (the union of its cells) and metric: n, `failed` (status
  failed), `skipped` (status skipped), mean, std, sem, the Student t interval clipped to
  [0, 1], median, min, max, range; tied values (std 0) have sem 0 and no interval; the note
  ("no finished run", "one seed: ...", "the n values tie: ...", "bootstrap CI unreliable ...",
  "t interval cut at 0/1").
- variance.csv, per group and source with a within-cell degree of freedom: n, `cells`, the
  std pooled within cells (df = n - cells), its chi-square interval with that df (empty at
  std 0), the largest within-cell range, p_gap_* (normal, empty at std 0) and the fraction of
  within-cell pairs 1 point apart.
- comparisons.csv: method (paired when both sides have the same seed triples and the teachers
  pair), n_a, n_b, pairs, mean_diff, the paired t / Welch interval, p_t, p_wilcoxon (>= 2
  nonzero differences; exact, tie-aware enumeration up to 25), wins, cohen_d, p_welch,
  p_improve, min_p_wilcoxon, seeds_for_1_point and seeds_for_1_point_high (the same rule at
  the upper end of the spread's 95% chi-square interval; empty above 100000), and for
  kd-vs-nokd teacher_gain with its t interval, gap_closed (only when the interval's lower end
  is above 0) and its Fieller interval gap_low/gap_high (solved with numpy.roots and checked
  against scipy's brentq on the defining inequality); the note texts; the column order at the
  end of the header; every comparison the groups allow has a row.
- runs.csv: teacher_accuracy and the per-seed gap_closed.

Bootstrap intervals come from kdgrid's own seeded stream: they are checked for their bounds
(within the sample's range, [min, max] with 2 or 3 values, empty where the definition has no
interval), not recomputed.

`--simulate-power` checks the rule behind seeds_for_1_point_high: for true spreads sigma of
0.5, 1 and 2 points and pilots of 2, 3, 5 and 10 paired differences (numpy, fixed seed), it
draws many pilots, takes the pairs a paired t-test needs for 1 point at 80% power from the
pilot's std and from the upper end of its chi-square interval, and computes each
recommendation's exact noncentral-t power at the true sigma. It prints how often each reaches
80% and exits 1 unless the upper-end rule does in >= 95% of pilots for every sigma and pilot
size (it should be about 97.5% by construction; the point estimate reaches it far less often).
"""
import csv
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.optimize as so
import scipy.stats as st

LEVEL = 0.95
EFFECT = 0.01  # one accuracy point
POWER = 0.8
BOOTSTRAP_MIN_N = 5
MAX_SEEDS = 100000  # seeds_for_1_point_high: empty above this
ATOL, RTOL = 1e-9, 1e-7
LIMIT = 20
SOURCES = ["init", "order", "augment"]


# ---------------------------------------------------------------------------------------------
# Statistics, as docs/statistics.md defines them.

def tcrit(df):
    return float(st.t.ppf(1 - (1 - LEVEL) / 2, df))


def t_power(df, ncp):
    """Two-sided t-test power: P(|T'| > t_c) for the noncentral t. scipy 1.17's nct.cdf gives
    nan for the lower tail P(T' < -t_c) once ncp is above about 7.5; that tail is below
    P(Z + ncp < 0) = Phi(-ncp) < 1e-13 there, so it counts as 0."""
    c = st.t.ppf(1 - (1 - LEVEL) / 2, df)
    ncp = np.asarray(ncp, dtype=float)
    lower = st.nct.cdf(-c, df, ncp)
    lower = np.where(np.isnan(lower) & (ncp > 7), 0.0, lower)
    power = st.nct.sf(c, df, ncp) + lower
    assert np.all(np.isfinite(power)), (df, ncp, power)
    return power


def needed(sd, unpaired=False, cap=MAX_SEEDS):
    """The smallest n >= 2 whose t-test (paired: df n - 1, ncp EFFECT sqrt(n) / sd; unpaired, n
    per side: df 2n - 2, ncp EFFECT / (sd sqrt(2 / n))) has power >= POWER, for an array of
    spreads; 0 where that n is above `cap`. Power grows with n, so this bisects on n, starting
    from the normal approximation's bracket (checked, widened to [2, cap] where it is wrong)."""
    sd = np.atleast_1d(np.asarray(sd, dtype=float))

    def ok(n, s):
        n = n.astype(float)
        if unpaired:
            return t_power(2 * n - 2, EFFECT / (s * np.sqrt(2 / n))) >= POWER
        return t_power(n - 1, EFFECT * np.sqrt(n) / s) >= POWER

    z = st.norm.ppf(1 - (1 - LEVEL) / 2) + st.norm.ppf(POWER)
    approx = (z * sd / EFFECT) ** 2 * (2 if unpaired else 1)
    approx = np.minimum(approx, 2.0 * cap)
    # Invariant: power(lo) < POWER (n = 1 by convention), power(hi) >= POWER (cap + 1 by
    # convention: "more than cap").
    lo = np.clip(np.floor(approx) - 1, 1, cap).astype(np.int64)
    hi = np.clip(np.ceil(approx) + 8, 2, cap + 1).astype(np.int64)
    m = lo >= 2
    if m.any():
        bad = ok(lo[m], sd[m])
        lo[np.flatnonzero(m)[bad]] = 1
    m = hi <= cap
    if m.any():
        bad = ~ok(hi[m], sd[m])
        hi[np.flatnonzero(m)[bad]] = cap + 1
    while True:
        m = hi - lo > 1
        if not m.any():
            break
        idx = np.flatnonzero(m)
        mid = (lo[idx] + hi[idx]) // 2
        r = ok(mid, sd[idx])
        hi[idx[r]] = mid[r]
        lo[idx[~r]] = mid[~r]
    return np.where(hi > cap, 0, hi)


def pairs_needed(sd, cap=10 ** 7):
    if sd is None or not sd > 0:
        return None
    n = int(needed([sd], cap=cap)[0])
    return n or None


def seeds_needed_unpaired(sd, cap=10 ** 7):
    if sd is None or not sd > 0:
        return None
    n = int(needed([sd], unpaired=True, cap=cap)[0])
    return n or None


def sd_high(s, df):
    """Upper end of the 95% chi-square interval of a std s with df degrees of freedom."""
    return math.sqrt(df * s * s / st.chi2.ppf((1 - LEVEL) / 2, df))


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


def tie(xs):
    """At least 2 values, all equal (a std of exactly 0, whatever rounding the mean has)."""
    return len(xs) >= 2 and len(set(xs)) == 1


def sd(xs):
    """Sample std (ddof 1): None below 2 values, exactly 0 when they tie."""
    xs = [float(x) for x in xs]
    if len(xs) < 2:
        return None
    return 0.0 if tie(xs) else float(np.std(xs, ddof=1))


def var0(xs):
    """Sample variance (ddof 1), 0 for one value or tied values."""
    s = sd(xs)
    return 0.0 if s is None else s * s


def cov0(xs, ys):
    if len(xs) < 2 or tie(list(xs)) or tie(list(ys)):
        return 0.0
    return float(np.cov(xs, ys, ddof=1)[0, 1])


def fieller(a, b, v11, v22, v12, df):
    """Fieller's interval for a / b: the theta with
    (a - theta b)^2 <= t(df)^2 (v11 - 2 theta v12 + theta^2 v22), bounded when b^2 > t^2 v22.
    The roots of the quadratic come from numpy.roots; each is checked against scipy's brentq on
    the inequality itself. Returns (low, high, disagreement or None)."""
    t2 = tcrit(df) ** 2

    def f(theta):
        return (a - theta * b) ** 2 - t2 * (v11 - 2 * theta * v12 + theta * theta * v22)

    assert b * b > t2 * v22, (a, b, v22, df)
    roots = np.roots([b * b - t2 * v22, -2 * (a * b - t2 * v12), a * a - t2 * v11])
    roots = sorted(float(np.real(r)) for r in roots)
    theta0 = a / b
    if f(theta0) >= 0:  # a singular quadratic form: the one point a / b
        return theta0, theta0, None
    found = []
    for sign in (-1, 1):
        step = max(1.0, abs(theta0))
        while f(theta0 + sign * step) <= 0:
            step *= 2
        x0, x1 = sorted((theta0, theta0 + sign * step))
        found.append(so.brentq(f, x0, x1, xtol=1e-15, rtol=4 * np.finfo(float).eps,
                               maxiter=500))
    issue = None
    if len(roots) != 2 or any(abs(r - g) > 1e-10 + 1e-8 * abs(g) for r, g in zip(roots, found)):
        issue = f"numpy.roots {roots} and brentq {found} disagree"
    return found[0], found[1], issue


# ---------------------------------------------------------------------------------------------
# Tables.

def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def header(path):
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


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
        """A bootstrap interval: inside [lo, hi], equal to it when `exact`; empty when lo is
        None."""
        bl, bh = num(rec.get(lo_col)), num(rec.get(hi_col))
        if lo is None:
            if bl is not None or bh is not None:
                self.fail(table, row, key, f"{lo_col}/{hi_col}", (bl, bh), None)
            return
        eps = 1e-12
        ok = bl is not None and bh is not None and lo - eps <= bl <= bh <= hi + eps
        if ok and exact:
            ok = abs(bl - lo) <= eps and abs(bh - hi) <= eps
        if not ok:
            self.fail(table, row, key, f"{lo_col}/{hi_col}", (bl, bh),
                      f"{'equal to' if exact else 'within'} [{lo}, {hi}]")

    def follows(self, table, columns, first, then):
        """`then` (a list) comes right after column `first` in the header."""
        at = columns.index(first) + 1 if first in columns else None
        if at is None or columns[at:at + len(then)] != then:
            self.fail(table, 0, "header", f"{first}, {', '.join(then)}",
                      columns[at - 1:at + len(then)] if at else None,
                      f"{first} followed by {', '.join(then)}")


def group_key(r):
    return (r["chain"], r["model"], r["temperature"], r["alpha"])


def samples(runs):
    """[(source, cells)] for one group's runs, each cell a list of runs (any status) that differ
    only in the source's seed, within one cell seed.

    - Every run has init = order = augment = cell seed: one source `all`, one cell of them all.
    - Otherwise `all` (one cell: the runs with all seeds equal to the cell seed) when they hold
      >= 2 cell seeds; then for each of init, order, augment the cells: per cell seed s, the
      runs with seed s whose two other seeds are s; a cell counts when it holds >= 2 values of
      the source's seed; the source is listed when at least one cell counts."""
    cell_seed = lambda r: int(r["seed"])
    seeds = lambda r: (int(r["init_seed"]), int(r["order_seed"]), int(r["augment_seed"]))
    uniform = lambda r: all(s == cell_seed(r) for s in seeds(r))
    if all(uniform(r) for r in runs):
        return [("all", [list(runs)])]
    out = []
    alls = [r for r in runs if uniform(r)]
    if len({cell_seed(r) for r in alls}) >= 2:
        out.append(("all", [alls]))
    for i, source in enumerate(SOURCES):
        cells = []
        for s in sorted({cell_seed(r) for r in runs}):
            cell = [r for r in runs if cell_seed(r) == s
                    and all(x == s for j, x in enumerate(seeds(r)) if j != i)]
            if len({seeds(r)[i] for r in cell}) >= 2:
                cells.append(cell)
        if cells:
            out.append((source, cells))
    return out


def ok_values(runs, column="test_accuracy"):
    return [float(r[column]) for r in runs if r["status"] == "ok" and r[column] != ""]


def check_summary(c, groups, summary, columns):
    c.follows("summary.csv", columns, "failed", ["skipped"])
    derived = {}
    for key, runs in groups.items():
        for source, cells in samples(runs):
            derived[key + (source,)] = [r for cell in cells for r in cell]
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
        v("failed", sum(r["status"] == "failed" for r in rs))
        v("skipped", sum(r["status"] == "skipped" for r in rs))
        s = sd(xs)
        m = float(np.mean(xs)) if xs else None
        v("mean", m)
        v("std", s)
        v("sem", s / math.sqrt(n) if s is not None else None)
        interval = s is not None and s > 0
        half = tcrit(n - 1) * s / math.sqrt(n) if interval else None
        v("ci_low", max(0.0, m - half) if interval else None)
        v("ci_high", min(1.0, m + half) if interval else None)
        v("median", float(np.median(xs)) if xs else None)
        v("min", min(xs) if xs else None)
        v("max", max(xs) if xs else None)
        v("range", max(xs) - min(xs) if xs else None)
        c.within("summary.csv", i, label, rec, "boot_low", "boot_high",
                 min(xs) if interval else None, max(xs) if interval else None, 2 <= n <= 3)
        notes = []
        if n == 0:
            notes.append("no finished run")
        elif n == 1:
            notes.append("one seed: no spread or interval")
        elif not interval:
            notes.append(f"the {n} values tie: no interval estimable")
        elif n < BOOTSTRAP_MIN_N:
            notes.append(f"bootstrap CI unreliable below {BOOTSTRAP_MIN_N} seeds")
        if interval and m - half < 0:
            notes.append("t interval cut at 0")
        if interval and m + half > 1:
            notes.append("t interval cut at 1")
        c.text("summary.csv", i, label, rec, "note", "; ".join(notes) or None)
    for key in derived:
        if key not in seen:
            c.fail("summary.csv", "-", " | ".join(key), "metric", "no row",
                   "a test_accuracy row")


def check_variance(c, groups, variance, columns):
    c.follows("variance.csv", columns, "n", ["cells"])
    derived = {}
    for key, runs in groups.items():
        for source, cells in samples(runs):
            contributing = [xs for xs in (ok_values(cell) for cell in cells) if len(xs) >= 2]
            if contributing:  # pooled df = n - cells >= 1
                derived[key + (source,)] = contributing
    seen = set()
    for i, rec in enumerate(variance, 1):
        key = group_key(rec) + (rec["source"],)
        label = " | ".join(key)
        if key not in derived:
            c.fail("variance.csv", i, label, "chain", "a row",
                   "no cell with 2 finished runs")
            continue
        seen.add(key)
        cells = derived[key]
        n, k = sum(len(xs) for xs in cells), len(cells)
        df = n - k
        ss = sum(0.0 if tie(xs) else float(np.sum((np.array(xs) - np.mean(xs)) ** 2))
                 for xs in cells)
        s = math.sqrt(ss / df)
        v = lambda col, x: c.value("variance.csv", i, label, rec, col, x)
        v("n", n)
        v("cells", k)
        v("std", s)
        v("std_low", math.sqrt(df * s * s / st.chi2.ppf(0.975, df)) if s > 0 else None)
        v("std_high", math.sqrt(df * s * s / st.chi2.ppf(0.025, df)) if s > 0 else None)
        v("range", max(max(xs) - min(xs) for xs in cells))
        for col, d in [("p_gap_half_point", 0.005), ("p_gap_1_point", 0.01)]:
            v(col, 2 * st.norm.sf(d / (s * math.sqrt(2))) if s > 0 else None)
        pairs = [p for xs in cells for p in itertools.combinations(xs, 2)]
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


COMPARISON_TAIL = ["seeds_for_1_point", "seeds_for_1_point_high", "teacher_gain",
                   "teacher_gain_low", "teacher_gain_high", "gap_closed", "gap_low", "gap_high",
                   "note", "summary"]


def check_comparisons(c, groups, by_id, comparisons, columns):
    if columns[-len(COMPARISON_TAIL):] != COMPARISON_TAIL:
        c.fail("comparisons.csv", 0, "header", "(last columns)",
               columns[-len(COMPARISON_TAIL):], COMPARISON_TAIL)
    seeds = lambda r: (int(r["init_seed"]), int(r["order_seed"]), int(r["augment_seed"]))
    teacher_acc = lambda r: float(by_id[r["parent_id"]]["test_accuracy"])

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
        ka, kb = {seeds(r): r for r in ra}, {seeds(r): r for r in rb}
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
        gap = None  # (a, b, v11, v22, v12, df) of the gap closed
        high = None
        if va and vb and paired:
            keys = sorted(ka)
            x = np.array([float(ka[k]["test_accuracy"]) for k in keys])
            y = np.array([float(kb[k]["test_accuracy"]) for k in keys])
            d = x - y
            n = len(d)
            nz = int((d != 0).sum())
            s = sd(list(d))
            mean_diff = float(np.mean(d))
            if n >= 2 and s == 0:
                notes.append("identical differences: no test or interval")
            if n >= 2 and nz < 2:
                notes.append("fewer than 2 nonzero differences: no Wilcoxon test")
            s = s if s else None  # no spread: no interval, test or power
            v("pairs", n)
            v("mean_diff", mean_diff)
            ci = st.t.interval(LEVEL, n - 1, loc=mean_diff, scale=s / math.sqrt(n)) \
                if s else (None, None)
            v("ci_low", ci[0])
            v("ci_high", ci[1])
            # Identical differences (no spread): every resample is the same, so no interval.
            boot = n >= 2 and s is not None
            c.within("comparisons.csv", i, label, rec, "boot_low", "boot_high",
                     float(d.min()) if boot else None, float(d.max()) if boot else None,
                     2 <= n <= 3)
            v("p_t", float(st.ttest_rel(x, y).pvalue) if s else None)
            v("p_wilcoxon", wilcoxon_p(d) if nz >= 2 else None)
            v("wins", int((d > 0).sum()))
            v("cohen_d", mean_diff / s if s else None)
            min_p = min_p_wilcoxon(d)
            v("min_p_wilcoxon", min_p)
            v("seeds_for_1_point", pairs_needed(s))
            high = pairs_needed(sd_high(s, n - 1), cap=MAX_SEEDS) if s else None
            v("seeds_for_1_point_high", high)
            if boot and n < BOOTSTRAP_MIN_N:
                notes.append(f"bootstrap CI unreliable below {BOOTSTRAP_MIN_N} pairs")
            if min_p is not None and min_p > 1 - LEVEL:
                notes.append(f"with {n} pairs the smallest possible Wilcoxon p is {min_p:.3f}"
                             if nz == n else
                             f"with {nz} nonzero differences of {n} pairs the smallest "
                             f"possible Wilcoxon p is {min_p:.3f}")
            for col in ["p_welch", "p_improve", "p_improve_low", "p_improve_high"]:
                v(col, None)
            if rec["kind"] == "kd-vs-nokd":
                den = np.array([teacher_acc(ka[k]) for k in keys]) - y
                gap = (mean_diff, float(np.mean(den)), var0(list(d)) / n, var0(list(den)) / n,
                       cov0(list(d), list(den)) / n, n - 1)
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
            # Each side's values tie: every resample is the same, so no interval.
            tie = both and sa == 0 and sb == 0
            if tie:
                notes.append("the values tie on each side: no interval estimable")
            boot = both and not tie
            c.within("comparisons.csv", i, label, rec, "boot_low", "boot_high",
                     min(va) - max(vb) if boot else None, max(va) - min(vb) if boot else None,
                     False)
            v("p_welch", float(r.pvalue) if welch else None)
            v("p_improve", float(st.mannwhitneyu(va, vb).statistic) / (len(va) * len(vb)))
            c.within("comparisons.csv", i, label, rec, "p_improve_low", "p_improve_high",
                     0.0 if boot else None, 1.0 if boot else None, False)
            pooled = math.sqrt((sa * sa + sb * sb) / 2) if both else None
            v("seeds_for_1_point", seeds_needed_unpaired(pooled))
            high = seeds_needed_unpaired(sd_high(pooled, len(va) + len(vb) - 2),
                                         cap=MAX_SEEDS) if pooled else None
            v("seeds_for_1_point_high", high)
            if boot and min(len(va), len(vb)) < BOOTSTRAP_MIN_N:
                notes.append(f"bootstrap CI unreliable below {BOOTSTRAP_MIN_N} runs per side")
            for col in ["p_t", "p_wilcoxon", "wins", "cohen_d", "min_p_wilcoxon"]:
                v(col, None)
            if rec["kind"] == "kd-vs-nokd":
                teachers = [teacher_acc(r) for r in ra]
                nk, nb = len(va), len(vb)
                gap = (mean_diff, float(np.mean(teachers) - np.mean(vb)),
                       var0(va) / nk + var0(vb) / nb, var0(teachers) / nk + var0(vb) / nb,
                       var0(vb) / nb, min(nk, nb) - 1)
        gain = gain_low = gain_high = closed = gap_low = gap_high = None
        if gap is not None:
            ga_, gain, v11, v22, v12, df = gap
            if df >= 1 and v22 > 0:
                h = tcrit(df) * math.sqrt(v22)
                gain_low, gain_high = gain - h, gain + h
            if gain <= 0:
                notes.append("teacher not better than no-KD on average: no gap closed")
            elif gain_low is None:
                notes.append("the teacher's lead has no interval: no gap closed")
            elif gain_low <= 0:
                notes.append(f"the teacher's lead ({100 * gain:+.2f} points "
                             f"[{100 * gain_low:+.2f}, {100 * gain_high:+.2f}]) is not "
                             f"distinguishable from zero: no gap closed")
            else:
                closed = ga_ / gain
                gap_low, gap_high, issue = fieller(ga_, gain, v11, v22, v12, df)
                if issue:
                    c.fail("comparisons.csv", i, label, "gap_low/gap_high", rec.get("gap_low"),
                           f"(reference) {issue}")
        v("teacher_gain", gain)
        v("teacher_gain_low", gain_low)
        v("teacher_gain_high", gain_high)
        v("gap_closed", closed)
        v("gap_low", gap_low)
        v("gap_high", gap_high)
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
    table = lambda name: (read(folder / name), header(folder / name))
    check_runs(c, runs, by_id)
    check_summary(c, groups, *table("summary.csv"))
    check_comparisons(c, groups, by_id, *table("comparisons.csv"))
    check_variance(c, groups, *table("variance.csv"))
    return c.mismatches


# ---------------------------------------------------------------------------------------------
# The power rule, by simulation.

def simulate_power(pilots=10000, seed=34):
    """How often the pairs recommended from a pilot's std (point estimate) and from the upper
    end of its 95% chi-square interval reach 80% true power, per true sigma and pilot size."""
    start = time.time()
    rng = np.random.default_rng(seed)
    print(f"paired t-test for {100 * EFFECT:g} point at {POWER:.0%} power, two-sided "
          f"{1 - LEVEL:.0%}; {pilots} pilots per row (numpy seed {seed}); 'reaches' = the "
          f"recommended pairs have >= {POWER:.0%} exact power at the true sigma (more than "
          f"{MAX_SEEDS} pairs counts as reaching)")
    print(f"{'sigma':>6} {'needed':>6} {'pilot':>5} | {'point: reaches':>14} {'median':>6} | "
          f"{'upper: reaches':>14} {'median':>6} {'capped':>6}")
    worst = 1.0
    for sigma in [0.005, 0.01, 0.02]:
        true_n = pairs_needed(sigma)
        for n0 in [2, 3, 5, 10]:
            d = rng.normal(EFFECT, sigma, size=(pilots, n0))
            s = d.std(axis=1, ddof=1)
            high = np.sqrt((n0 - 1) * s * s / st.chi2.ppf((1 - LEVEL) / 2, n0 - 1))
            row = []
            for spread in (s, high):
                rec = needed(spread, cap=MAX_SEEDS)  # 0: above the cap
                power = np.ones(pilots)
                for m in np.unique(rec[rec > 0]):
                    power[rec == m] = t_power(m - 1, EFFECT * math.sqrt(m) / sigma)
                reaches = power >= POWER
                # Power grows with n: reaching 80% is getting at least the true number.
                assert np.array_equal(reaches, (rec == 0) | (rec >= true_n)), (sigma, n0)
                row.append((reaches.mean(), np.median(np.where(rec == 0, np.inf, rec)),
                            (rec == 0).mean()))
            (pr, pm, _), (ur, um, uc) = row
            worst = min(worst, ur)
            print(f"{100 * sigma:5.1f}p {true_n:>6} {n0:>5} | {pr:>14.1%} {pm:>6g} | "
                  f"{ur:>14.1%} {um:>6g} {uc:>6.1%}")
    print(f"({time.time() - start:.1f} s)")
    if worst < 0.95:
        print(f"FAIL: the upper-end rule reaches {POWER:.0%} power in only {worst:.1%} of "
              f"pilots for some sigma and pilot size (needs >= 95%)")
        return 1
    print(f"ok: the upper-end rule reaches {POWER:.0%} power in >= {worst:.1%} of pilots "
          f"for every sigma and pilot size")
    return 0


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
    # Issue 34.
    d = a - x
    s_d = float(np.std(d, ddof=1))
    for df in [1, 2, 4]:
        print("sd high of diffs, df", df, repr(sd_high(s_d, df)),
              "pairs", pairs_needed(sd_high(s_d, df), cap=MAX_SEEDS),
              "unpaired", seeds_needed_unpaired(sd_high(s_d, df), cap=MAX_SEEDS))
    print("seeds for 1 point high, these 5 pairs", pairs_needed(sd_high(s_d, 4), cap=MAX_SEEDS))
    for s in [0.02, 0.05, 0.2]:
        print("pairs needed (cap 100000) at sd", s, pairs_needed(s, cap=MAX_SEEDS),
              seeds_needed_unpaired(s, cap=MAX_SEEDS))
    pooled = [np.array([0.8604, 0.8828, 0.8746]), np.array([0.8676, 0.8786, 0.8782, 0.8710])]
    ss = sum(float(np.sum((c - c.mean()) ** 2)) for c in pooled)
    df = sum(map(len, pooled)) - len(pooled)
    sp = math.sqrt(ss / df)
    print("pooled std of", [list(c) for c in pooled], "df", df, repr(sp), "interval",
          repr((math.sqrt(df * sp * sp / st.chi2.ppf(0.975, df)),
                math.sqrt(df * sp * sp / st.chi2.ppf(0.025, df)))))
    teacher = np.array([0.9012, 0.8994, 0.9030, 0.9001, 0.8987])
    num_, den = a - x, teacher - x
    n = len(num_)
    ga, gb = float(num_.mean()), float(den.mean())
    v11, v22 = var0(list(num_)) / n, var0(list(den)) / n
    v12 = cov0(list(num_), list(den)) / n
    print("teacher", list(teacher), "gain", repr(gb), "interval",
          repr((gb - tcrit(n - 1) * math.sqrt(v22), gb + tcrit(n - 1) * math.sqrt(v22))))
    print("gap closed", repr(ga / gb), "fieller paired", repr(fieller(ga, gb, v11, v22, v12,
                                                                     n - 1)[:2]))
    print("fieller a=0.004 b=0.02 v11=1e-6 v22=4e-6 v12=1e-6 df=4",
          repr(fieller(0.004, 0.02, 1e-6, 4e-6, 1e-6, 4)[:2]))


def main(args):
    if args == ["--values"]:
        values()
        return 0
    if args == ["--simulate-power"]:
        return simulate_power()
    if not args or any(a.startswith("--") for a in args):
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
