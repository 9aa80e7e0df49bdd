//! The `comparisons` table: each distilled chain against what it should beat — its student
//! trained on labels only (KD vs no-KD), the direct KD chain it extends (TA vs KD), and each
//! shorter chain it contains (longer vs shorter). Runs pair up when they share the student's
//! seeds (the plan gives them the same init and data-order streams) and their teachers do not
//! vary independently of those seeds; otherwise the comparison is unpaired.

use super::gap::{Accuracies, Baseline, Gap, gap};
use super::stats;
use super::study::{Group, Run};
use crate::plan::{Kd, KdKey, Plan, Stage};
use polars::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// What a comparison asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A distilled student against the same student trained on labels only.
    KdVsNoKd,
    /// A chain with assistants against the direct teacher > student chain.
    TaVsKd,
    /// A chain against the chain without one of its assistants.
    LongerVsShorter,
}

impl Kind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::KdVsNoKd => "kd-vs-nokd",
            Kind::TaVsKd => "ta-vs-kd",
            Kind::LongerVsShorter => "longer-vs-shorter",
        }
    }

    fn winner(self) -> &'static str {
        match self {
            Kind::KdVsNoKd => "KD",
            Kind::TaVsKd => "TA chain",
            Kind::LongerVsShorter => "longer chain",
        }
    }
}

/// One comparison: `a - b` in test accuracy.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// What is compared.
    pub kind: Kind,
    /// The chain expected to win.
    pub a: String,
    /// The chain it is compared with.
    pub b: String,
    /// Student model.
    pub model: String,
    /// Temperature of `a`.
    pub temperature: Option<f64>,
    /// Alpha of `a`.
    pub alpha: Option<f64>,
    /// Finished runs of `a` and `b`.
    pub n: (usize, usize),
    /// The paired result, when runs pair.
    pub paired: Option<stats::Paired>,
    /// The unpaired result, when they do not.
    pub unpaired: Option<stats::Unpaired>,
    /// How much of the teacher's lead over no-KD the distilled student recovers (KD vs no-KD).
    pub gap: Option<Gap>,
    /// What could not be computed or should not be trusted, and why.
    pub note: Option<String>,
}

impl Comparison {
    /// Seeds (pairs, or runs per side) a 1-point effect needs at the observed spread.
    pub fn seeds_needed(&self) -> Option<usize> {
        self.paired
            .as_ref()
            .and_then(|p| p.pairs_needed)
            .or(self.unpaired.as_ref().and_then(|u| u.seeds_needed))
    }

    /// The same at the upper end of the spread's 95% interval.
    pub fn seeds_needed_high(&self) -> Option<usize> {
        match (&self.paired, &self.unpaired) {
            (Some(p), _) => p.pairs_needed_high,
            (_, Some(u)) => u.seeds_needed_high,
            _ => None,
        }
    }

    /// What is compared, with the distillation setting: `wide > cnn2 vs cnn2 (T=4, alpha=0.5)`.
    pub fn head(&self) -> String {
        let setting = match (self.temperature, self.alpha) {
            (Some(t), Some(a)) => format!(" (T={t}, alpha={a})"),
            _ => String::new(),
        };
        format!("{} vs {}{setting}", self.a, self.b)
    }

    /// `paired` or `unpaired`.
    pub fn method(&self) -> &'static str {
        if self.paired.is_some() {
            "paired"
        } else {
            "unpaired"
        }
    }

    /// The comparison in words, e.g. `teacher > student vs student (T=4, alpha=0.5): +0.22
    /// points [-1.10, +1.54], p = 0.62, KD better on 2/3 seeds`.
    pub fn sentence(&self) -> String {
        let head = self.head();
        let pts = |v: f64| format!("{:+.2}", v * 100.0);
        let ci = |c: Option<stats::Interval>| {
            c.map_or_else(String::new, |(l, h)| format!(" [{}, {}]", pts(l), pts(h)))
        };
        let p = |p: Option<f64>| p.map_or_else(|| "p n/a".to_string(), stats::format_p);
        if let Some(x) = &self.paired {
            format!(
                "{head}: {} points{}, {}, {} better on {}/{} seeds",
                pts(x.mean),
                ci(x.ci_t),
                p(x.p_t),
                self.kind.winner(),
                x.wins,
                x.n
            )
        } else if let Some(x) = &self.unpaired {
            format!(
                "{head}: {} points{} (unpaired, Welch), {}, P({} better) = {:.2}{}",
                pts(x.mean),
                ci(x.ci_t),
                p(x.p_welch),
                self.kind.winner(),
                x.p_improve,
                x.p_improve_ci
                    .map_or_else(String::new, |(l, h)| format!(" [{l:.2}, {h:.2}]"))
            )
        } else {
            format!("{head}: {}", self.note.as_deref().unwrap_or("not computed"))
        }
    }

    /// What the study could have seen: the smallest possible Wilcoxon p-value when it cannot
    /// reach 0.05, and the seeds a 1-point effect needs at the observed spread — with what it
    /// needs at the top of the spread's 95% interval, since a spread from a few pairs is itself
    /// uncertain (`docs/statistics.md`, "How many seeds").
    pub fn power_line(&self) -> Option<String> {
        let pts = |v: f64| format!("{:.2}", v * 100.0);
        let seeds = |n: Option<usize>| {
            n.map_or_else(
                || format!("more than {}", stats::MAX_SEEDS),
                |n| format!("≥ {n}"),
            )
        };
        let effect = stats::EFFECT * 100.0;
        let power = stats::POWER * 100.0;
        let few = |n: usize, what: &str| {
            if n < stats::BOOTSTRAP_MIN_N {
                format!("; the spread rests on {n} {what}: a rough guide")
            } else {
                String::new()
            }
        };
        let mut parts = Vec::new();
        if let Some(x) = &self.paired {
            if let Some(floor) = wilcoxon_floor(x) {
                parts.push(floor);
            }
            if let Some(sd) = x.sd {
                parts.push(format!(
                    "to see a {effect}-point effect at this spread (std of differences {} \
                     points), use {} seeds, or {} if the spread is at the top of its 95% \
                     interval (paired t-test, {power}% power, two-sided 5%){}",
                    pts(sd),
                    seeds(x.pairs_needed),
                    seeds(x.pairs_needed_high),
                    few(x.n, "pairs")
                ));
            }
        } else if let (Some(x), (na, nb)) = (&self.unpaired, self.n)
            && na >= 2
            && nb >= 2
            && x.ci_t.is_some()
        {
            parts.push(format!(
                "to see a {effect}-point effect at this spread, use {} seeds per chain, or {} if \
                 the spread is at the top of its 95% interval (two-sample t-test, {power}% power, \
                 two-sided 5%){}",
                seeds(x.seeds_needed),
                seeds(x.seeds_needed_high),
                few(na.min(nb), "runs per side")
            ));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The seed of the first stage of `stage`'s chain.
fn root_seed(plan: &Plan, stage: &Stage) -> u64 {
    let mut s = stage;
    while let Some(p) = s.parent.as_ref().and_then(|p| plan.stage(p)) {
        s = p;
    }
    s.seed
}

/// Whether the teachers of `runs` move with the students' seeds in a way pairing allows: the
/// same teacher for all, or each student's own seed.
fn teachers_pair(plan: &Plan, runs: &[Run]) -> bool {
    let distilled: Vec<(u64, u64)> = runs
        .iter()
        .filter(|r| r.stage.parent.is_some())
        .map(|r| (root_seed(plan, r.stage), r.stage.seed))
        .collect();
    distilled.windows(2).all(|w| w[0].0 == w[1].0)
        || distilled.iter().all(|(root, seed)| root == seed)
}

/// The smallest Wilcoxon p-value the pairs that count (the nonzero differences) can give, in
/// words, when it cannot reach the 5% level.
fn wilcoxon_floor(p: &stats::Paired) -> Option<String> {
    let floor = p.min_p_wilcoxon.filter(|m| *m > 1.0 - stats::LEVEL)?;
    Some(if p.nonzero == p.n {
        format!(
            "with {} pairs the smallest possible Wilcoxon p is {floor:.3}",
            p.n
        )
    } else {
        format!(
            "with {} nonzero differences of {} pairs the smallest possible Wilcoxon p is \
             {floor:.3}",
            p.nonzero, p.n
        )
    })
}

/// Why a comparison's numbers are missing or not to be trusted, joined by `; `.
fn notes(
    n: (usize, usize),
    paired: Option<&stats::Paired>,
    unpaired: Option<&stats::Unpaired>,
    gap: Option<Gap>,
) -> Option<String> {
    let mut out = Vec::new();
    if n.0 == 0 || n.1 == 0 {
        out.push("no finished run on one side".to_string());
    } else if n.0.min(n.1) < 2 {
        out.push("fewer than 2 runs on one side: no interval or test".to_string());
    } else if paired.is_some_and(|p| p.p_t.is_none()) {
        out.push("identical differences: no test or interval".to_string());
    } else if unpaired.is_some_and(|u| u.ties) {
        out.push("the values tie on each side: no interval estimable".to_string());
    }
    if let Some(p) = paired
        && p.n >= 2
        && p.nonzero < 2
    {
        out.push("fewer than 2 nonzero differences: no Wilcoxon test".to_string());
    }
    let min = stats::BOOTSTRAP_MIN_N;
    match (paired, unpaired) {
        (Some(p), _) if p.ci_boot.is_some() && stats::bootstrap_unreliable(p.n) => {
            out.push(format!("bootstrap CI unreliable below {min} pairs"));
        }
        (_, Some(u)) if u.ci_boot.is_some() && stats::bootstrap_unreliable(n.0.min(n.1)) => {
            out.push(format!("bootstrap CI unreliable below {min} runs per side"));
        }
        _ => {}
    }
    if let Some(floor) = paired.and_then(wilcoxon_floor) {
        out.push(floor);
    }
    if let Some(why) = gap.and_then(|g| g.why_none()) {
        out.push(why);
    }
    (!out.is_empty()).then(|| out.join("; "))
}

fn compare(plan: &Plan, teachers: &Accuracies, kind: Kind, a: &Group, b: &Group) -> Comparison {
    fn ok<'a>(g: &Group<'a>) -> Vec<(Run<'a>, f64)> {
        g.runs
            .iter()
            .filter_map(|r| r.accuracy().map(|acc| (*r, acc)))
            .collect()
    }
    let (ra, rb) = (ok(a), ok(b));
    let key = |v: &[(Run, f64)]| -> BTreeMap<(u64, u64, u64), f64> {
        v.iter().map(|(r, acc)| (r.seeds(), *acc)).collect()
    };
    let (ka, kb) = (key(&ra), key(&rb));
    let runs: Vec<Run> = ra.iter().chain(&rb).map(|(r, _)| *r).collect();
    let pairs = ka.len() == ra.len()
        && kb.len() == rb.len()
        && ka.keys().eq(kb.keys())
        && teachers_pair(plan, &runs);
    let label = format!("{} vs {}", a.key(), b.key());
    let va: Vec<f64> = ra.iter().map(|x| x.1).collect();
    let vb: Vec<f64> = rb.iter().map(|x| x.1).collect();
    let (paired, unpaired) = if va.is_empty() || vb.is_empty() {
        (None, None)
    } else if pairs {
        let (pa, pb): (Vec<f64>, Vec<f64>) = ka.values().zip(kb.values()).unzip();
        (stats::paired(&pa, &pb, &label), None)
    } else {
        (None, stats::unpaired(&va, &vb, &label))
    };
    let mean_diff = paired
        .as_ref()
        .map(|p| p.mean)
        .or(unpaired.as_ref().map(|u| u.mean));
    let gap = mean_diff.filter(|_| kind == Kind::KdVsNoKd).and_then(|m| {
        let baseline = Baseline {
            values: &vb,
            by_seeds: &kb,
        };
        gap(m, paired.is_some(), &ra, baseline, teachers)
    });
    let n = (va.len(), vb.len());
    let note = notes(n, paired.as_ref(), unpaired.as_ref(), gap);
    Comparison {
        kind,
        a: a.chain.clone(),
        b: b.chain.clone(),
        model: a.model.clone(),
        temperature: a.kd.map(|k| k.temperature),
        alpha: a.kd.map(|k| k.alpha),
        n,
        paired,
        unpaired,
        gap,
        note,
    }
}

/// Every comparison the groups allow, in plan order of the distilled chain.
pub fn comparisons(plan: &Plan, groups: &[Group]) -> Vec<Comparison> {
    // Groups by chain and setting; the first of equal keys, as a search in order would find.
    let mut index: HashMap<(&str, Option<KdKey>), &Group> = HashMap::new();
    for g in groups {
        index
            .entry((g.chain.as_str(), g.kd.map(|k| k.key())))
            .or_insert(g);
    }
    let find = |chain: &[&str], kd: Option<Kd>| {
        let label = chain.join(" > ");
        index.get(&(label.as_str(), kd.map(|k| k.key()))).copied()
    };
    let teachers: Accuracies = groups
        .iter()
        .flat_map(|g| &g.runs)
        .filter_map(|r| r.accuracy().map(|acc| (&r.stage.id, acc)))
        .collect();
    let cmp = |kind: Kind, a: &Group, b: &Group| compare(plan, &teachers, kind, a, b);
    let mut out = Vec::new();
    for a in groups.iter().filter(|g| g.kd.is_some()) {
        let chain = a.chain_models();
        let last = chain[chain.len() - 1];
        if let Some(b) = find(&[last], None) {
            out.push(cmp(Kind::KdVsNoKd, a, b));
        }
        if chain.len() >= 3 {
            if let Some(b) = find(&[chain[0], last], a.kd) {
                out.push(cmp(Kind::TaVsKd, a, b));
            }
            for skip in 1..chain.len() - 1 {
                let shorter: Vec<&str> = chain
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, m)| *m)
                    .collect();
                if shorter.len() >= 3
                    && let Some(b) = find(&shorter, a.kd)
                {
                    out.push(cmp(Kind::LongerVsShorter, a, b));
                }
            }
        }
    }
    out
}

/// The comparisons as a frame.
pub fn frame(rows: &[Comparison]) -> PolarsResult<DataFrame> {
    let p = |f: fn(&stats::Paired) -> Option<f64>| -> Vec<Option<f64>> {
        rows.iter().map(|r| r.paired.as_ref().and_then(f)).collect()
    };
    let u = |f: fn(&stats::Unpaired) -> Option<f64>| -> Vec<Option<f64>> {
        rows.iter()
            .map(|r| r.unpaired.as_ref().and_then(f))
            .collect()
    };
    let either = |fp: fn(&stats::Paired) -> Option<f64>,
                  fu: fn(&stats::Unpaired) -> Option<f64>| {
        rows.iter()
            .map(|r| {
                r.paired
                    .as_ref()
                    .and_then(fp)
                    .or(r.unpaired.as_ref().and_then(fu))
            })
            .collect::<Vec<_>>()
    };
    df![
        "kind" => rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        "chain_a" => rows.iter().map(|r| r.a.as_str()).collect::<Vec<_>>(),
        "chain_b" => rows.iter().map(|r| r.b.as_str()).collect::<Vec<_>>(),
        "model" => rows.iter().map(|r| r.model.as_str()).collect::<Vec<_>>(),
        "temperature" => rows.iter().map(|r| r.temperature).collect::<Vec<_>>(),
        "alpha" => rows.iter().map(|r| r.alpha).collect::<Vec<_>>(),
        "method" => rows.iter().map(|r| r.method()).collect::<Vec<_>>(),
        "n_a" => rows.iter().map(|r| r.n.0 as u32).collect::<Vec<_>>(),
        "n_b" => rows.iter().map(|r| r.n.1 as u32).collect::<Vec<_>>(),
        "pairs" => rows.iter().map(|r| r.paired.as_ref().map(|p| p.n as u32)).collect::<Vec<_>>(),
        "mean_diff" => either(|p| Some(p.mean), |u| Some(u.mean)),
        "ci_low" => either(|p| p.ci_t.map(|c| c.0), |u| u.ci_t.map(|c| c.0)),
        "ci_high" => either(|p| p.ci_t.map(|c| c.1), |u| u.ci_t.map(|c| c.1)),
        "boot_low" => either(|p| p.ci_boot.map(|c| c.0), |u| u.ci_boot.map(|c| c.0)),
        "boot_high" => either(|p| p.ci_boot.map(|c| c.1), |u| u.ci_boot.map(|c| c.1)),
        "p_t" => p(|p| p.p_t),
        "p_wilcoxon" => p(|p| p.p_wilcoxon),
        "wins" => rows.iter().map(|r| r.paired.as_ref().map(|p| p.wins as u32)).collect::<Vec<_>>(),
        "cohen_d" => p(|p| p.cohen_d),
        "p_welch" => u(|u| u.p_welch),
        "p_improve" => u(|u| Some(u.p_improve)),
        "p_improve_low" => u(|u| u.p_improve_ci.map(|c| c.0)),
        "p_improve_high" => u(|u| u.p_improve_ci.map(|c| c.1)),
        "min_p_wilcoxon" => p(|p| p.min_p_wilcoxon),
        "seeds_for_1_point" => rows.iter().map(|r| r.seeds_needed().map(|n| n as u32)).collect::<Vec<_>>(),
        "seeds_for_1_point_high" => rows.iter().map(|r| r.seeds_needed_high().map(|n| n as u32)).collect::<Vec<_>>(),
        "teacher_gain" => rows.iter().map(|r| r.gap.map(|g| g.teacher_gain)).collect::<Vec<_>>(),
        "teacher_gain_low" => rows.iter().map(|r| r.gap.and_then(|g| g.teacher_gain_ci).map(|c| c.0)).collect::<Vec<_>>(),
        "teacher_gain_high" => rows.iter().map(|r| r.gap.and_then(|g| g.teacher_gain_ci).map(|c| c.1)).collect::<Vec<_>>(),
        "gap_closed" => rows.iter().map(|r| r.gap.and_then(|g| g.closed).map(|c| c.0)).collect::<Vec<_>>(),
        "gap_low" => rows.iter().map(|r| r.gap.and_then(|g| g.closed).map(|c| c.1.0)).collect::<Vec<_>>(),
        "gap_high" => rows.iter().map(|r| r.gap.and_then(|g| g.closed).map(|c| c.1.1)).collect::<Vec<_>>(),
        "note" => rows.iter().map(|r| r.note.as_deref()).collect::<Vec<_>>(),
        "summary" => rows.iter().map(|r| r.sentence()).collect::<Vec<_>>(),
    ]
}
