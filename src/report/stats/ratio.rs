//! A ratio of two estimated differences with its interval: the gap a distilled student closes,
//! `(KD - no-KD) / (teacher - no-KD)`. Both parts are noisy and share the no-KD runs, so the
//! ratio gets Fieller's interval, which accounts for the denominator's uncertainty and their
//! covariance; it is bounded only when the denominator is distinguishable from zero, which is
//! exactly when a ratio is worth printing. Formulas in `docs/statistics.md`.

use super::{Interval, mean, t_critical, ties};

/// A numerator `a` and a denominator `b` with the variances and covariance of their estimates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimates {
    /// Numerator.
    pub a: f64,
    /// Denominator.
    pub b: f64,
    /// Variance of `a`'s estimate.
    pub var_a: f64,
    /// Variance of `b`'s estimate.
    pub var_b: f64,
    /// Covariance of the two estimates.
    pub cov: f64,
    /// Degrees of freedom of the t critical value.
    pub df: usize,
}

/// Sample covariance of `x` and `y` (`n - 1` in the denominator; 0 for one value, and 0 when
/// either side's values tie, where a rounded mean could leave a residue).
fn cov(x: &[f64], y: &[f64]) -> f64 {
    let (Some(mx), Some(my)) = (mean(x), mean(y)) else {
        return 0.0;
    };
    if x.len() < 2 || ties(x) || ties(y) {
        return 0.0;
    }
    x.iter()
        .zip(y)
        .map(|(p, q)| (p - mx) * (q - my))
        .sum::<f64>()
        / (x.len() - 1) as f64
}

impl Estimates {
    /// Per-seed numerators and denominators (`num[i]`, `den[i]` share seed `i`): their means'
    /// variances and covariance over `n` pairs, `n - 1` degrees of freedom. `a` and `b` are
    /// the point values to use.
    pub fn paired(a: f64, b: f64, num: &[f64], den: &[f64]) -> Self {
        let n = num.len().max(1) as f64;
        Self {
            a,
            b,
            var_a: cov(num, num) / n,
            var_b: cov(den, den) / n,
            cov: cov(num, den) / n,
            df: num.len().saturating_sub(1),
        }
    }

    /// `a = mean(x) - mean(base)`, `b = mean(y) - mean(base)` from independent samples `x` and
    /// `base`, where `y[i]` belongs with `x[i]` (the teacher of distilled run `i`): variances of
    /// the means, the shared `base` as their covariance, and `min(n_x, n_base) - 1` degrees of
    /// freedom (conservative, as with Welch's smaller side).
    pub fn unpaired(a: f64, b: f64, x: &[f64], y: &[f64], base: &[f64]) -> Self {
        let (nx, nb) = (x.len().max(1) as f64, base.len().max(1) as f64);
        let vb = cov(base, base) / nb;
        Self {
            a,
            b,
            var_a: cov(x, x) / nx + vb,
            var_b: cov(y, y) / nx + vb,
            cov: vb,
            df: x.len().min(base.len()).saturating_sub(1),
        }
    }

    /// The t interval of the denominator (`None` without degrees of freedom or spread).
    pub fn denominator_interval(&self) -> Option<Interval> {
        if self.df == 0 || self.var_b.is_nan() || self.var_b <= 0.0 {
            return None;
        }
        let h = t_critical(self.df as f64) * self.var_b.sqrt();
        Some((self.b - h, self.b + h))
    }

    /// Fieller's interval of `a / b`: every θ with `(a - θ b)² <= t² (var_a - 2 θ cov + θ²
    /// var_b)`. `None` unless the denominator's interval excludes zero (the set is then
    /// unbounded or the whole line).
    pub fn fieller(&self) -> Option<Interval> {
        let (lo, hi) = self.denominator_interval()?;
        if lo <= 0.0 && hi >= 0.0 {
            return None;
        }
        let t2 = t_critical(self.df as f64).powi(2);
        // θ² A - 2 θ B + C <= 0 with A > 0 because b² > t² var_b.
        let qa = self.b * self.b - t2 * self.var_b;
        let qb = self.a * self.b - t2 * self.cov;
        let qc = self.a * self.a - t2 * self.var_a;
        // θ = a / b satisfies the inequality, so the roots are real; rounding may not know.
        let root = (qb * qb - qa * qc).max(0.0).sqrt();
        Some(((qb - root) / qa, (qb + root) / qa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fieller_bounds_solve_the_defining_equation() {
        let e = Estimates {
            a: 0.004,
            b: 0.02,
            var_a: 1e-6,
            var_b: 4e-6,
            cov: 5e-7,
            df: 4,
        };
        let (lo, hi) = e.fieller().unwrap();
        let t2 = t_critical(4.0).powi(2);
        let g = |th: f64| {
            (e.a - th * e.b).powi(2) - t2 * (e.var_a - 2.0 * th * e.cov + th * th * e.var_b)
        };
        assert!(g(lo).abs() < 1e-15 && g(hi).abs() < 1e-15, "{lo} {hi}");
        assert!(lo < 0.2 && 0.2 < hi);
        assert!(g(0.2) < 0.0 && g(lo - 0.01) > 0.0 && g(hi + 0.01) > 0.0);
    }

    #[test]
    fn a_denominator_within_noise_gives_no_interval() {
        let e = Estimates {
            a: 0.004,
            b: 0.005,
            var_a: 1e-6,
            var_b: 0.0043f64.powi(2),
            cov: 0.0,
            df: 2,
        };
        assert!(e.denominator_interval().unwrap().0 < 0.0);
        assert_eq!(e.fieller(), None);
        let one = Estimates::unpaired(0.004, 0.005, &[0.8], &[0.81], &[0.796]);
        assert_eq!((one.df, one.denominator_interval()), (0, None));
    }
}
