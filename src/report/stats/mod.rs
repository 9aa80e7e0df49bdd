//! The statistics of a report: seed summaries, paired and unpaired comparisons, spread.
//!
//! Distributions come from `statrs`; resampling is seeded (ChaCha8, [`RESAMPLES`] draws), so a
//! report regenerated from the same runs has the same intervals. Formulas, and when each is
//! valid, are in `docs/statistics.md`. Functions return `None` where a statistic is undefined
//! (too few values, zero spread) rather than NaN.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use statrs::distribution::{ChiSquared, ContinuousCDF, Normal, StudentsT};

mod power;
mod ratio;
pub use power::{
    BOOTSTRAP_MIN_N, EFFECT, MAX_SEEDS, POWER, bootstrap_unreliable, min_p_wilcoxon, pairs_needed,
    seeds_needed_unpaired, t_test_power,
};
pub use ratio::Estimates;

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 10_000;
/// Confidence level of every interval.
pub const LEVEL: f64 = 0.95;

/// A two-sided interval.
pub type Interval = (f64, f64);

/// A resampling stream named by `label` (e.g. a group's key), so adding a group to a study
/// leaves the other groups' intervals as they were.
pub fn rng(label: &str) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(Sha256::digest(label.as_bytes()).into())
}

/// A p-value for people: two significant digits (`p = 0.62`, `p = 0.050`, `p = 0.0031`), more
/// only where rounding would lift a p below 5% to 0.050 (`p = 0.0496`), and `p < 0.001` below
/// that, where more digits would claim a precision the model lacks.
pub fn format_p(p: f64) -> String {
    if p < 0.001 {
        return "p < 0.001".to_string();
    }
    let mut decimals = (1 - p.log10().floor() as i32).max(1) as usize;
    let text = |d: usize| format!("{p:.d$}");
    let shown: f64 = text(decimals).parse().expect("a number");
    // Rounding up across a decade (0.0996 -> 0.100) would show 3 digits: drop one.
    if decimals > 1 && shown >= 10f64.powi(1 - decimals as i32) * 10.0 {
        decimals -= 1;
    }
    // Never round a p below 5% to 0.050, which reads as not significant.
    while p < 0.05 && decimals < 12 && text(decimals).parse::<f64>().expect("a number") >= 0.05 {
        decimals += 1;
    }
    format!("p = {}", text(decimals))
}

/// A resampling label derived from the values themselves (their bits, each sample's length
/// first): data read from files is resampled the same way whatever the files are named.
pub fn data_label(samples: &[&[f64]]) -> String {
    let mut h = Sha256::new();
    for xs in samples {
        h.update((xs.len() as u64).to_le_bytes());
        for x in *xs {
            h.update(x.to_bits().to_le_bytes());
        }
    }
    format!("data {:x}", h.finalize())
}

/// Whether every value of `xs` is the same number, bit for bit (true when empty): tied values
/// have no spread, whatever residue their rounded mean would leave.
pub fn ties(xs: &[f64]) -> bool {
    xs.iter().all(|x| x.to_bits() == xs[0].to_bits())
}

/// Arithmetic mean (`None` when empty).
pub fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample standard deviation, `n - 1` in the denominator (`None` below 2 values); exactly 0
/// when the values tie (their rounded mean could leave a residue).
pub fn std(xs: &[f64]) -> Option<f64> {
    let m = mean(xs)?;
    if xs.len() >= 2 && ties(xs) {
        return Some(0.0);
    }
    (xs.len() >= 2)
        .then(|| (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt())
}

/// The `q` quantile with linear interpolation between order statistics (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q * last as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The two-sided Student t critical value for `df` degrees of freedom at [`LEVEL`].
fn t_critical(df: f64) -> f64 {
    StudentsT::new(0.0, 1.0, df)
        .expect("df > 0")
        .inverse_cdf(1.0 - (1.0 - LEVEL) / 2.0)
}

/// Two-sided p-value of a t statistic.
fn t_p(t: f64, df: f64) -> f64 {
    2.0 * (1.0 - StudentsT::new(0.0, 1.0, df).expect("df > 0").cdf(t.abs()))
}

/// Percentile bootstrap interval of `stat` over resamples drawn by `draw`.
fn percentile_interval(mut stats: Vec<f64>) -> Option<Interval> {
    stats.sort_by(f64::total_cmp);
    let a = (1.0 - LEVEL) / 2.0;
    Some((quantile(&stats, a)?, quantile(&stats, 1.0 - a)?))
}

/// Percentile bootstrap interval of the mean of `xs` (`None` below 2 values).
pub fn bootstrap_mean(xs: &[f64], rng: &mut ChaCha8Rng) -> Option<Interval> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len();
    let means = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| xs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    percentile_interval(means)
}

/// Seed statistics of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Describe {
    /// Values.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation.
    pub std: Option<f64>,
    /// Standard error of the mean.
    pub sem: Option<f64>,
    /// Student t interval of the mean.
    pub ci_t: Option<Interval>,
    /// Percentile bootstrap interval of the mean (`None`, like `ci_t`, when the values tie).
    pub ci_boot: Option<Interval>,
    /// Median.
    pub median: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Describe {
    /// Whether there are 2 or more values and they all tie (no interval is estimable).
    pub fn ties(&self) -> bool {
        self.std == Some(0.0)
    }
}

/// Describes `xs` (`None` when empty); `label` seeds the bootstrap.
pub fn describe(xs: &[f64], label: &str) -> Option<Describe> {
    let mean = mean(xs)?;
    let s = sorted(xs);
    let std = std(xs);
    let n = xs.len();
    let sem = std.map(|s| s / (n as f64).sqrt());
    Some(Describe {
        n,
        mean,
        std,
        sem,
        // Tied values have no spread to estimate an interval from: a zero-width one would
        // read as certainty.
        ci_t: sem.filter(|sem| *sem > 0.0).map(|sem| {
            let h = t_critical((n - 1) as f64) * sem;
            (mean - h, mean + h)
        }),
        ci_boot: bootstrap_mean(xs, &mut rng(label)).filter(|_| std != Some(0.0)),
        median: quantile(&s, 0.5)?,
        min: s[0],
        max: s[n - 1],
    })
}

/// Half-width of the Student t interval of the mean of `xs` (`None` below 2 values).
pub fn t_half_width(xs: &[f64]) -> Option<f64> {
    let s = std(xs)?;
    Some(t_critical((xs.len() - 1) as f64) * s / (xs.len() as f64).sqrt())
}

/// Chi-square interval of a standard deviation estimated with `df` degrees of freedom (`n - 1`
/// for one sample; `n - cells` when pooled within cells), normal data assumed. `None` without
/// degrees of freedom or spread: tied values give no interval.
pub fn std_interval(std: f64, df: usize) -> Option<Interval> {
    if df == 0 || std.is_nan() || std <= 0.0 {
        return None;
    }
    let df = df as f64;
    let chi = ChiSquared::new(df).expect("df > 0");
    let a = (1.0 - LEVEL) / 2.0;
    let var = std * std * df;
    Some((
        (var / chi.inverse_cdf(1.0 - a)).sqrt(),
        (var / chi.inverse_cdf(a)).sqrt(),
    ))
}

/// A paired comparison of `a - b` over matched seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    /// Pairs.
    pub n: usize,
    /// Mean difference `a - b`.
    pub mean: f64,
    /// Student t interval of the mean difference.
    pub ci_t: Option<Interval>,
    /// Percentile bootstrap interval of the mean difference.
    pub ci_boot: Option<Interval>,
    /// Two-sided paired t-test p-value.
    pub p_t: Option<f64>,
    /// Two-sided Wilcoxon signed-rank p-value.
    pub p_wilcoxon: Option<f64>,
    /// Pairs where `a > b`.
    pub wins: usize,
    /// Cohen's d of the differences (`d_z`: mean over standard deviation of the differences).
    pub cohen_d: Option<f64>,
    /// Standard deviation of the differences.
    pub sd: Option<f64>,
    /// The smallest Wilcoxon p-value these pairs could give (every sign alike).
    pub min_p_wilcoxon: Option<f64>,
    /// Pairs a paired t-test needs to see a [`EFFECT`] difference at this spread with
    /// [`POWER`].
    pub pairs_needed: Option<usize>,
    /// The same at the upper end of the spread's 95% interval: what a study should plan for
    /// when the spread was estimated from a few pairs.
    pub pairs_needed_high: Option<usize>,
    /// Nonzero differences: the pairs the Wilcoxon test counts.
    pub nonzero: usize,
}

/// Compares matched samples `a` and `b` (same length, pair `i` shares a seed).
pub fn paired(a: &[f64], b: &[f64], label: &str) -> Option<Paired> {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = d.len();
    let m = mean(&d)?;
    let sd = std(&d).filter(|s| *s > 0.0);
    let t = sd.map(|sd| m / (sd / (n as f64).sqrt()));
    let nonzero = d.iter().filter(|x| **x != 0.0).count();
    Some(Paired {
        n,
        mean: m,
        ci_t: sd.map(|sd| {
            let h = t_critical((n - 1) as f64) * sd / (n as f64).sqrt();
            (m - h, m + h)
        }),
        // Identical differences resample to one value: a zero-width interval is no estimate.
        ci_boot: bootstrap_mean(&d, &mut rng(label)).filter(|_| sd.is_some()),
        p_t: t.map(|t| t_p(t, (n - 1) as f64)),
        // The test ranks nonzero differences only: with fewer than 2 it has nothing to rank.
        p_wilcoxon: wilcoxon(&d).filter(|_| nonzero >= 2),
        wins: d.iter().filter(|x| **x > 0.0).count(),
        cohen_d: sd.map(|sd| m / sd),
        sd,
        min_p_wilcoxon: min_p_wilcoxon(&d),
        pairs_needed: sd.and_then(|sd| pairs_needed(sd, EFFECT)),
        pairs_needed_high: sd
            .and_then(|sd| std_interval(sd, n - 1))
            .and_then(|(_, high)| pairs_needed(high, EFFECT)),
        nonzero,
    })
}

/// Two-sided Wilcoxon signed-rank p-value of differences `d`: zero differences dropped, ties
/// given average ranks; exact (all 2^n sign patterns) up to 25 nonzero differences, the normal
/// approximation with tie correction above.
pub fn wilcoxon(d: &[f64]) -> Option<f64> {
    let nz: Vec<f64> = d.iter().copied().filter(|x| *x != 0.0).collect();
    let n = nz.len();
    if n == 0 {
        return None;
    }
    // Average ranks of |d|, doubled so they stay integers.
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&i, &j| nz[i].abs().total_cmp(&nz[j].abs()));
    let mut ranks2 = vec![0usize; n];
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j + 1 < n && nz[idx[j + 1]].abs() == nz[idx[i]].abs() {
            j += 1;
        }
        for k in i..=j {
            ranks2[idx[k]] = i + j + 2; // 2 * average of ranks i+1 ..= j+1
        }
        i = j + 1;
    }
    let w2: usize = (0..n).filter(|&k| nz[k] > 0.0).map(|k| ranks2[k]).sum();
    let total2: usize = ranks2.iter().sum();
    if n <= 25 {
        // counts[s]: sign patterns whose positive ranks (doubled) sum to s.
        let mut counts = vec![0f64; total2 + 1];
        counts[0] = 1.0;
        for &r in &ranks2 {
            for s in (r..=total2).rev() {
                counts[s] += counts[s - r];
            }
        }
        let all = 2f64.powi(n as i32);
        let low: f64 = counts[..=w2].iter().sum::<f64>() / all;
        let high: f64 = counts[w2..].iter().sum::<f64>() / all;
        Some((2.0 * low.min(high)).min(1.0))
    } else {
        let w = w2 as f64 / 2.0;
        let nf = n as f64;
        let mean = nf * (nf + 1.0) / 4.0;
        let tie: f64 = {
            let mut r = ranks2.clone();
            r.sort_unstable();
            r.chunk_by(|a, b| a == b)
                .map(|g| (g.len().pow(3) - g.len()) as f64)
                .sum()
        };
        let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie / 48.0;
        if var <= 0.0 {
            return None;
        }
        let z = (w - mean) / var.sqrt();
        Some(2.0 * (1.0 - Normal::standard().cdf(z.abs())))
    }
}

/// An unpaired comparison of `a` and `b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Unpaired {
    /// Mean of `a` minus mean of `b`.
    pub mean: f64,
    /// Welch t interval of the difference of means.
    pub ci_t: Option<Interval>,
    /// Percentile bootstrap interval of the difference (each sample resampled on its own).
    pub ci_boot: Option<Interval>,
    /// Two-sided Welch t-test p-value.
    pub p_welch: Option<f64>,
    /// Mann-Whitney probability of improvement `P(A > B)` (ties count one half).
    pub p_improve: f64,
    /// Percentile bootstrap interval of `P(A > B)`.
    pub p_improve_ci: Option<Interval>,
    /// Seeds per side a two-sample t-test needs to see a [`EFFECT`] difference with
    /// [`POWER`], at the pooled standard deviation sqrt((s_a² + s_b²) / 2).
    pub seeds_needed: Option<usize>,
    /// The same at the upper end of the pooled deviation's 95% interval (`n_a + n_b - 2`
    /// degrees of freedom).
    pub seeds_needed_high: Option<usize>,
    /// Each side has 2 values or more and they tie: no interval.
    pub ties: bool,
}

/// `P(A > B) + P(A = B) / 2` over all pairs of one value of `a` and one of `b`.
pub fn probability_of_improvement(a: &[f64], b: &[f64]) -> f64 {
    let ia: Vec<usize> = (0..a.len()).collect();
    let ib: Vec<usize> = (0..b.len()).collect();
    Improvement::new(a, b).of(&ia, &ib)
}

/// `P(A > B)` of resamples of `a` and `b` in `O(n_a + n_b)` each: both samples are sorted once,
/// and each value of `a` knows how many values of `b` lie below it and how many equal it, so a
/// resample needs only its counts per original value (Mann-Whitney's U by ranks, not by pairs).
struct Improvement {
    /// For `a[i]`: the positions in sorted `b` of the first value `>= a[i]` and `> a[i]`.
    bounds: Vec<(usize, usize)>,
    /// For `b[j]`: its position in sorted `b`.
    rank_b: Vec<usize>,
}

impl Improvement {
    fn new(a: &[f64], b: &[f64]) -> Self {
        let mut order: Vec<usize> = (0..b.len()).collect();
        order.sort_by(|&i, &j| b[i].total_cmp(&b[j]));
        let sorted: Vec<f64> = order.iter().map(|&j| b[j]).collect();
        let mut rank_b = vec![0; b.len()];
        for (pos, &j) in order.iter().enumerate() {
            rank_b[j] = pos;
        }
        let bounds = a
            .iter()
            .map(|x| {
                (
                    sorted.partition_point(|y| y < x),
                    sorted.partition_point(|y| y <= x),
                )
            })
            .collect();
        Self { bounds, rank_b }
    }

    /// P(A > B) + P(A = B) / 2 for the resample that draws `a[ia[k]]` and `b[ib[k]]`.
    fn of(&self, ia: &[usize], ib: &[usize]) -> f64 {
        // below[p]: drawn values of `b` at sorted positions < p.
        let mut below = vec![0u64; self.rank_b.len() + 1];
        for &j in ib {
            below[self.rank_b[j] + 1] += 1;
        }
        for p in 1..below.len() {
            below[p] += below[p - 1];
        }
        // Twice the count, so ties (one half each) stay integers: the sum is exact.
        let twice: u64 = ia
            .iter()
            .map(|&i| {
                let (lt, le) = self.bounds[i];
                below[lt] + below[le]
            })
            .sum();
        (twice as f64 / 2.0) / (ia.len() * ib.len()) as f64
    }
}

/// Compares independent samples `a` and `b`.
pub fn unpaired(a: &[f64], b: &[f64], label: &str) -> Option<Unpaired> {
    let (ma, mb) = (mean(a)?, mean(b)?);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let welch = match (std(a), std(b)) {
        (Some(sa), Some(sb)) if sa > 0.0 || sb > 0.0 => {
            let (va, vb) = (sa * sa / na, sb * sb / nb);
            let se = (va + vb).sqrt();
            let df = (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
            Some((se, df))
        }
        _ => None,
    }
    .filter(|(se, df)| se.is_finite() && df.is_finite() && *df > 0.0);
    let seeds_needed = match (std(a), std(b)) {
        (Some(sa), Some(sb)) => seeds_needed_unpaired(((sa * sa + sb * sb) / 2.0).sqrt(), EFFECT),
        _ => None,
    };
    let seeds_needed_high = match (std(a), std(b)) {
        (Some(sa), Some(sb)) => {
            std_interval(((sa * sa + sb * sb) / 2.0).sqrt(), a.len() + b.len() - 2)
                .and_then(|(_, high)| seeds_needed_unpaired(high, EFFECT))
        }
        _ => None,
    };
    let mut r = rng(label);
    let (mut diffs, mut probs) = (Vec::new(), Vec::new());
    if a.len() >= 2 && b.len() >= 2 {
        let improvement = Improvement::new(a, b);
        for _ in 0..RESAMPLES {
            let ia: Vec<usize> = (0..a.len()).map(|_| r.random_range(0..a.len())).collect();
            let ib: Vec<usize> = (0..b.len()).map(|_| r.random_range(0..b.len())).collect();
            let sum = |xs: &[f64], idx: &[usize]| idx.iter().map(|&i| xs[i]).sum::<f64>();
            diffs.push(sum(a, &ia) / na - sum(b, &ib) / nb);
            probs.push(improvement.of(&ia, &ib));
        }
    }
    let d = ma - mb;
    // Each side's values tie: every resample is the same, so no interval is estimable.
    let ties = std(a) == Some(0.0) && std(b) == Some(0.0);
    Some(Unpaired {
        mean: d,
        ci_t: welch.map(|(se, df)| {
            let h = t_critical(df) * se;
            (d - h, d + h)
        }),
        ci_boot: percentile_interval(diffs).filter(|_| a.len() >= 2 && !ties),
        p_welch: welch.map(|(se, df)| t_p(d / se, df)),
        p_improve: probability_of_improvement(a, b),
        p_improve_ci: percentile_interval(probs).filter(|_| a.len() >= 2 && !ties),
        ties,
        seeds_needed,
        seeds_needed_high,
    })
}

/// The chance that two runs differ by at least `d`, for normal values of standard deviation
/// `std`: `2 * (1 - Phi(d / (std * sqrt 2)))`.
pub fn chance_of_gap(std: f64, d: f64) -> Option<f64> {
    (std > 0.0).then(|| 2.0 * (1.0 - Normal::standard().cdf(d / (std * 2f64.sqrt()))))
}

#[cfg(test)]
mod tests;
