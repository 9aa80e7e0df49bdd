//! What a study of this size can see: the power of a t-test, the number of seeds an effect
//! needs at the observed spread, the smallest p-value the Wilcoxon test can reach with `n`
//! pairs, and when a bootstrap interval is too narrow to trust. Formulas in
//! `docs/statistics.md`, reference values from scipy in `tests.rs`.

use super::{LEVEL, StudentsT, wilcoxon};
use statrs::distribution::{ChiSquared, Continuous, ContinuousCDF, Normal};

/// The effect a power line is about: one accuracy point.
pub const EFFECT: f64 = 0.01;
/// The power a recommended number of seeds reaches.
pub const POWER: f64 = 0.8;
/// Below this many values a percentile bootstrap interval is flagged: its expected width is
/// under 60% of the t interval's (z·sqrt((n-1)/n) / t(0.975, n-1) = 0.53 at n = 4, 0.63 at
/// n = 5), and with n <= 3 it is exactly [min, max] of the values.
pub const BOOTSTRAP_MIN_N: usize = 5;
/// The largest number of seeds a power line searches.
pub const MAX_SEEDS: usize = 100_000;

/// Intervals of the integration over the t statistic's denominator.
const STEPS: usize = 2_000;

/// Power of a two-sided t-test at level `1 - LEVEL` with `df` degrees of freedom when the
/// statistic's noncentrality is `ncp`: P(|T'| > t_c) for T' = (Z + ncp) / S, S = sqrt(V / df),
/// V chi-square with `df` degrees of freedom, i.e. E_S[Phi(ncp - t_c S) + Phi(-ncp - t_c S)],
/// integrated over S by Simpson's rule on [max(0, 1 - 10/sqrt(df)), 1 + 10/sqrt(df)].
pub fn t_test_power(df: f64, ncp: f64) -> f64 {
    let t = StudentsT::new(0.0, 1.0, df).expect("df > 0");
    let c = t.inverse_cdf(1.0 - (1.0 - LEVEL) / 2.0);
    let chi = ChiSquared::new(df).expect("df > 0");
    let z = Normal::standard();
    // S is near 1 with spread about 1/sqrt(2 df); beyond 10/sqrt(df) of it lies < 1e-15.
    let reach = 10.0 / df.sqrt();
    let (lo, hi) = ((1.0 - reach).max(0.0), 1.0 + reach);
    let f = |s: f64| {
        // Density of S: f_V(df s^2) * 2 df s.
        let density = if s > 0.0 {
            chi.pdf(df * s * s) * 2.0 * df * s
        } else if df == 1.0 {
            (2.0 / std::f64::consts::PI).sqrt()
        } else {
            0.0
        };
        density * (z.cdf(ncp - c * s) + z.cdf(-ncp - c * s))
    };
    let h = (hi - lo) / STEPS as f64;
    let inner: f64 = (1..STEPS)
        .map(|i| f(lo + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 })
        .sum();
    ((f(lo) + inner + f(hi)) * h / 3.0).clamp(0.0, 1.0)
}

/// The smallest `n >= 2` whose power, `power(n)`, reaches [`POWER`]; `start` is a guess from
/// the normal approximation, searched from downwards and upwards.
fn smallest_n(start: f64, power: impl Fn(usize) -> f64) -> Option<usize> {
    if !start.is_finite() || start > MAX_SEEDS as f64 {
        return None;
    }
    let mut n = (start.floor() as usize).saturating_sub(2).max(2);
    while n > 2 && power(n - 1) >= POWER {
        n -= 1;
    }
    while power(n) < POWER {
        n += 1;
        if n > MAX_SEEDS {
            return None;
        }
    }
    Some(n)
}

fn z_sum() -> f64 {
    let z = Normal::standard();
    z.inverse_cdf(1.0 - (1.0 - LEVEL) / 2.0) + z.inverse_cdf(POWER)
}

/// Pairs a paired t-test needs to detect a mean difference of `effect` with power [`POWER`]
/// when the differences have standard deviation `sd_diff`: the smallest n with
/// power(df = n - 1, ncp = effect sqrt(n) / sd_diff) >= POWER (`None` without spread, or
/// beyond [`MAX_SEEDS`]).
pub fn pairs_needed(sd_diff: f64, effect: f64) -> Option<usize> {
    if sd_diff.is_nan() || sd_diff <= 0.0 {
        return None;
    }
    let start = (z_sum() * sd_diff / effect).powi(2);
    smallest_n(start, |n| {
        t_test_power((n - 1) as f64, effect * (n as f64).sqrt() / sd_diff)
    })
}

/// Seeds per side a two-sample t-test (equal sizes, pooled standard deviation `sd`) needs to
/// detect a difference of `effect` with power [`POWER`]: the smallest n with
/// power(df = 2n - 2, ncp = effect / (sd sqrt(2 / n))) >= POWER.
pub fn seeds_needed_unpaired(sd: f64, effect: f64) -> Option<usize> {
    if sd.is_nan() || sd <= 0.0 {
        return None;
    }
    let start = 2.0 * (z_sum() * sd / effect).powi(2);
    smallest_n(start, |n| {
        t_test_power((2 * n - 2) as f64, effect / (sd * (2.0 / n as f64).sqrt()))
    })
}

/// The smallest two-sided Wilcoxon p-value the differences' magnitudes allow: every sign
/// positive (2 / 2^n for the exact test). `None` below 2 nonzero differences.
pub fn min_p_wilcoxon(d: &[f64]) -> Option<f64> {
    let abs: Vec<f64> = d.iter().map(|x| x.abs()).collect();
    (abs.iter().filter(|x| **x != 0.0).count() >= 2)
        .then(|| wilcoxon(&abs))
        .flatten()
}

/// Whether a percentile bootstrap interval of `n` values is too narrow to trust.
pub fn bootstrap_unreliable(n: usize) -> bool {
    (2..BOOTSTRAP_MIN_N).contains(&n)
}
