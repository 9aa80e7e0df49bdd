//! Gap closed: how much of the teacher's lead over no-KD a distilled student recovers,
//! `mean(KD - no-KD) / mean(teacher - no-KD)`, with Fieller's interval, and given only when the
//! teacher's lead is distinguishable from zero (a lead within noise makes the ratio any number).

use super::stats;
use super::study::Run;
use crate::plan::StageId;
use std::collections::BTreeMap;

/// The gap a distilled student closes: `mean_diff / teacher_gain` over the finished runs —
/// mean(KD) - mean(no-KD) over mean(teacher) - mean(no-KD), the ratio of the mean (paired)
/// differences, so one seed whose teacher is barely better cannot dominate it. Given only with
/// Fieller's interval, and only when the teacher's lead is distinguishable from zero: a lead
/// within noise makes the ratio any number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gap {
    /// Mean accuracy of the KD runs' teachers minus the mean of the no-KD runs.
    pub teacher_gain: f64,
    /// Its 95% t interval, when estimable.
    pub teacher_gain_ci: Option<stats::Interval>,
    /// The fraction closed with its 95% Fieller interval.
    pub closed: Option<(f64, stats::Interval)>,
}

impl Gap {
    /// Why there is no fraction closed (`None` when there is one).
    pub fn why_none(&self) -> Option<String> {
        if self.closed.is_some() {
            return None;
        }
        let pts = |v: f64| format!("{:+.2}", v * 100.0);
        Some(match self.teacher_gain_ci {
            _ if self.teacher_gain <= 0.0 => {
                "teacher not better than no-KD on average: no gap closed".to_string()
            }
            None => "the teacher's lead has no interval: no gap closed".to_string(),
            Some((lo, hi)) => format!(
                "the teacher's lead ({} points [{}, {}]) is not distinguishable from zero: no \
                 gap closed",
                pts(self.teacher_gain),
                pts(lo),
                pts(hi)
            ),
        })
    }
}

/// Test accuracy of every finished stage, for the teachers of a comparison's runs.
pub(super) type Accuracies<'a> = BTreeMap<&'a StageId, f64>;

/// The no-KD runs of a comparison: their accuracies, and the same keyed by the students' seeds.
pub(super) struct Baseline<'a> {
    /// Accuracies.
    pub(super) values: &'a [f64],
    /// Accuracy by (init, order, augment) seeds.
    pub(super) by_seeds: &'a BTreeMap<(u64, u64, u64), f64>,
}

/// The gap `a` closes between the no-KD runs and the teachers of `a`'s runs; `pairs` when the
/// runs pair by seeds (then the variances come from per-seed differences).
pub(super) fn gap(
    mean_diff: f64,
    pairs: bool,
    ra: &[(Run, f64)],
    baseline: Baseline,
    teachers: &Accuracies,
) -> Option<Gap> {
    // The distilled runs whose teacher has an accuracy (an imported teacher may have none).
    let all = ra.len();
    let ra: Vec<(Run, f64, f64)> = ra
        .iter()
        .filter_map(|(r, acc)| {
            let t = r.stage.parent.as_ref().and_then(|p| teachers.get(p))?;
            Some((*r, *acc, *t))
        })
        .collect();
    let t: Vec<f64> = ra.iter().map(|x| x.2).collect();
    let va: Vec<f64> = ra.iter().map(|x| x.1).collect();
    let vb = baseline.values;
    let teacher_gain = stats::mean(&t)? - stats::mean(vb)?;
    let (num, den): (Vec<f64>, Vec<f64>) = ra
        .iter()
        .map(|(r, acc, teacher)| {
            let b = baseline
                .by_seeds
                .get(&r.seeds())
                .copied()
                .unwrap_or(f64::NAN);
            (acc - b, teacher - b)
        })
        .unzip();
    // Numerator and denominator over the same runs: the comparison's difference when every
    // distilled run has its teacher's accuracy, else the difference over those that do.
    let mean_diff = if ra.len() == all {
        mean_diff
    } else if pairs {
        stats::mean(&num)?
    } else {
        stats::mean(&va)? - stats::mean(vb)?
    };
    let estimates = if pairs {
        stats::Estimates::paired(mean_diff, teacher_gain, &num, &den)
    } else {
        stats::Estimates::unpaired(mean_diff, teacher_gain, &va, &t, vb)
    };
    let teacher_gain_ci = estimates.denominator_interval();
    let closed = estimates
        .fieller()
        .filter(|_| teacher_gain > 0.0)
        .map(|ci| (mean_diff / teacher_gain, ci));
    Some(Gap {
        teacher_gain,
        teacher_gain_ci,
        closed,
    })
}
