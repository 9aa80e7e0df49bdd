//! Reference values computed independently with scipy 1.17.1 / numpy by
//! `scripts/statistics-reference.py --values`; inputs are seed accuracies like the default
//! study's.

use super::*;

const X: [f64; 5] = [0.8604, 0.8828, 0.8746, 0.8690, 0.8712];
const A: [f64; 5] = [0.8676, 0.8786, 0.8782, 0.8710, 0.8690];

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b}");
}

#[test]
fn describe_matches_scipy() {
    let d = describe(&X, "x").unwrap();
    close(d.mean, 0.8716, 1e-12);
    close(d.std.unwrap(), 0.008167006795638164, 1e-12);
    // scipy.stats.t.interval(0.95, 4, loc=mean, scale=sem)
    let (lo, hi) = d.ci_t.unwrap();
    close(lo, 0.8614593216887705, 1e-9);
    close(hi, 0.8817406783112294, 1e-9);
    assert_eq!((d.median, d.min, d.max), (0.8712, 0.8604, 0.8828));
    // The bootstrap interval lies within the sample's range and is reproducible.
    let (blo, bhi) = d.ci_boot.unwrap();
    assert!(0.8604 <= blo && blo < d.mean && d.mean < bhi && bhi <= 0.8828);
    assert_eq!(describe(&X, "x").unwrap().ci_boot, d.ci_boot);
}

#[test]
fn one_value_has_no_spread_and_no_interval() {
    let d = describe(&[0.9], "one").unwrap();
    assert_eq!((d.std, d.ci_t, d.ci_boot), (None, None, None));
    assert!(describe(&[], "none").is_none());
}

#[test]
fn std_interval_matches_scipy_chi2() {
    let (lo, hi) = std_interval(0.008167006795638164, 4).unwrap();
    close(lo, 0.0048931244188005546, 1e-9);
    close(hi, 0.02346834839116115, 1e-9);
}

#[test]
fn paired_tests_match_scipy() {
    let p = paired(&A, &X, "pair").unwrap();
    // scipy.stats.ttest_rel(a, x).pvalue
    close(p.p_t.unwrap(), 0.5640787104897913, 1e-9);
    // scipy.stats.wilcoxon(a, x, method="exact").pvalue
    close(p.p_wilcoxon.unwrap(), 0.8125, 1e-12);
    assert_eq!(p.wins, 3);
    close(p.mean, 0.00128, 1e-12);
}

#[test]
fn wilcoxon_normal_approximation_matches_scipy() {
    let big = [
        0.021409191213851826,
        -0.024556650313141817,
        0.005180988467257789,
        -0.004677696061279298,
        -0.0035264929211044583,
        -0.0011559716308976592,
        -0.019199861291472508,
        -0.0013193237764418946,
        -0.007652130762749417,
        0.034229995166448826,
        0.003257866132279218,
        -0.002526307943415954,
        -0.0018128741815135038,
        -0.005680463461089501,
        -0.009551505512051212,
        -0.0029080097723465474,
        0.005819453885067859,
        -0.001385536065733667,
        0.01057758702959764,
        -0.0009980212906658,
        0.0012425956507666463,
        0.01645820851212812,
        0.006451055226876445,
        -0.004052287356140181,
        -0.000828389745977349,
        0.0064052513175480216,
        0.020350880340988527,
        -0.0016962032734191348,
        -0.0014355867907910455,
        0.011023136012756913,
    ];
    // scipy.stats.wilcoxon(big, method="approx", correction=False).pvalue
    close(wilcoxon(&big).unwrap(), 0.7812637101499429, 1e-9);
}

#[test]
fn unpaired_tests_match_scipy() {
    let u = unpaired(&A, &X, "u").unwrap();
    // scipy.stats.ttest_ind(a, x, equal_var=False).pvalue
    close(u.p_welch.unwrap(), 0.7761835839397474, 1e-9);
    // scipy.stats.mannwhitneyu(a, x).statistic / 25
    close(u.p_improve, 0.5, 1e-12);
    let (lo, hi) = u.p_improve_ci.unwrap();
    assert!((0.0..=0.5).contains(&lo) && (0.5..=1.0).contains(&hi));
}

#[test]
fn zero_differences_give_no_test() {
    let p = paired(&X, &X, "same").unwrap();
    assert_eq!((p.p_t, p.p_wilcoxon, p.cohen_d), (None, None, None));
    assert_eq!(p.wins, 0);
}

#[test]
fn t_test_power_matches_scipy_noncentral_t() {
    // scipy.stats.nct.sf(c, df, ncp) + scipy.stats.nct.cdf(-c, df, ncp), c = t.ppf(0.975, df)
    for (df, ncp, want) in [
        (1.0, 2.0, 0.1257563177570528),
        (2.0, 3.0, 0.38740012852597105),
        (4.0, 1.5, 0.2133418131145807),
        (9.0, 2.5, 0.6061383742015277),
        (30.0, 2.8, 0.7732048539232571),
        (200.0, 2.0, 0.5121760140660278),
    ] {
        close(t_test_power(df, ncp), want, 1e-7);
    }
}

#[test]
fn seeds_needed_for_a_one_point_effect_match_scipy() {
    // The smallest n whose noncentral-t power reaches 0.8 (scipy.stats.nct, searched from 2).
    for (sd, paired, unpaired) in [
        (0.001, 3, 2),
        (0.005, 5, 6),
        (0.0085, 8, 13),
        (0.0104, 11, 18),
        (0.02, 34, 64),
        (0.05, 199, 394),
    ] {
        assert_eq!(pairs_needed(sd, EFFECT), Some(paired), "paired, sd {sd}");
        assert_eq!(
            seeds_needed_unpaired(sd, EFFECT),
            Some(unpaired),
            "unpaired, sd {sd}"
        );
    }
    assert_eq!(pairs_needed(0.0, EFFECT), None);
}

#[test]
fn few_pairs_cannot_reach_significance_and_one_pair_is_no_test() {
    // scipy.stats.wilcoxon([1, 2, 3]).pvalue == 0.25: the best 3 pairs can do.
    let p = paired(&[0.80, 0.82, 0.83], &[0.79, 0.80, 0.80], "three").unwrap();
    assert_eq!(p.p_wilcoxon, Some(0.25));
    assert_eq!(p.min_p_wilcoxon, Some(0.25));
    let two = paired(&[0.80, 0.82], &[0.81, 0.80], "two").unwrap();
    assert_eq!(two.min_p_wilcoxon, Some(0.5));
    let one = paired(&[0.80], &[0.79], "one").unwrap();
    assert_eq!((one.p_wilcoxon, one.min_p_wilcoxon), (None, None));
}

#[test]
fn bootstrap_intervals_of_few_values_are_flagged_and_span_min_to_max() {
    assert!((2..=4).all(bootstrap_unreliable));
    assert!(!bootstrap_unreliable(1) && !bootstrap_unreliable(5));
    // With 3 values every percentile interval is [min, max]: the all-min resample has
    // probability 1/27 > 2.5%.
    let d = describe(&[0.80, 0.83, 0.81], "three").unwrap();
    let (lo, hi) = d.ci_boot.unwrap();
    close(lo, 0.80, 1e-12);
    close(hi, 0.83, 1e-12);
}

#[test]
fn p_values_keep_two_significant_digits_and_floor_at_a_thousandth() {
    let cases = [
        (0.6234, "p = 0.62"),
        (0.05, "p = 0.050"),
        (0.0031, "p = 0.0031"),
        (0.00099, "p < 0.001"),
        (0.001, "p = 0.0010"),
        (0.0095, "p = 0.0095"),
        (0.00996, "p = 0.010"),
        (0.0999, "p = 0.10"),
        (0.996, "p = 1.0"),
        (0.0496, "p = 0.0496"),
        (0.04996, "p = 0.04996"),
        (0.0504, "p = 0.050"),
        (1.0, "p = 1.0"),
    ];
    for (p, text) in cases {
        assert_eq!(format_p(p), text);
    }
}

#[test]
fn one_nonzero_difference_gives_no_wilcoxon_p() {
    // Two pairs, one tied: the signed-rank test ranks only the nonzero difference.
    let p = paired(&[0.81, 0.80], &[0.80, 0.80], "zero").unwrap();
    assert_eq!((p.n, p.nonzero, p.p_wilcoxon), (2, 1, None));
    let p = paired(&[0.81, 0.82], &[0.80, 0.80], "two").unwrap();
    assert_eq!(p.nonzero, 2);
    assert!(p.p_wilcoxon.is_some());
}

#[test]
fn tied_values_have_no_interval() {
    let d = describe(&[0.1, 0.1, 0.1], "tie").unwrap();
    assert!(d.ties());
    assert_eq!((d.std, d.ci_t, d.ci_boot), (Some(0.0), None, None));
    assert_eq!(std_interval(0.0, 2), None);
}

/// P(A > B) + P(A = B) / 2 by counting every pair, from the definition.
fn every_pair(a: &[f64], b: &[f64]) -> f64 {
    let mut pairs = 0.0;
    for x in a {
        for y in b {
            pairs += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    pairs / (a.len() * b.len()) as f64
}

#[test]
fn resampled_probability_of_improvement_equals_counting_every_pair() {
    // Ties across and within samples, as rounded accuracies have.
    let mut r = rng("values");
    let draw = |r: &mut ChaCha8Rng, n: usize| -> Vec<f64> {
        (0..n)
            .map(|_| (r.random_range(0..40) as f64) / 1000.0 + 0.8)
            .collect()
    };
    for (na, nb) in [(1, 1), (3, 7), (25, 18)] {
        let (a, b) = (draw(&mut r, na), draw(&mut r, nb));
        assert_eq!(probability_of_improvement(&a, &b), every_pair(&a, &b));
    }
}

#[test]
fn data_labels_depend_on_values_only() {
    let (a, b) = ([0.8, 0.81], [0.79]);
    assert_eq!(data_label(&[&a, &b]), data_label(&[&a, &b]));
    assert_ne!(data_label(&[&a, &b]), data_label(&[&b, &a]));
    // The split between samples is part of the data.
    assert_ne!(data_label(&[&[0.8], &[0.81, 0.79]]), data_label(&[&a, &b]));
}

#[test]
fn tied_samples_and_identical_differences_have_no_bootstrap_interval() {
    let u = unpaired(&[0.8, 0.8, 0.8], &[0.7, 0.7], "ties").unwrap();
    assert!(u.ties);
    assert_eq!((u.ci_t, u.ci_boot, u.p_improve_ci), (None, None, None));
    assert_eq!(u.p_improve, 1.0);
    let p = paired(&[0.75, 0.5], &[0.5, 0.25], "same").unwrap();
    assert_eq!((p.ci_t, p.ci_boot, p.p_t), (None, None, None));
}

#[test]
fn resamples_with_repeated_draws_count_like_every_pair() {
    let mut r = rng("draws");
    let a: Vec<f64> = (0..9)
        .map(|_| r.random_range(0..6) as f64 / 100.0)
        .collect();
    let b: Vec<f64> = (0..7)
        .map(|_| r.random_range(0..6) as f64 / 100.0)
        .collect();
    let improvement = Improvement::new(&a, &b);
    for _ in 0..200 {
        let ia: Vec<usize> = (0..a.len()).map(|_| r.random_range(0..a.len())).collect();
        let ib: Vec<usize> = (0..b.len()).map(|_| r.random_range(0..b.len())).collect();
        let (ra, rb): (Vec<f64>, Vec<f64>) = (
            ia.iter().map(|&i| a[i]).collect(),
            ib.iter().map(|&j| b[j]).collect(),
        );
        assert_eq!(improvement.of(&ia, &ib), every_pair(&ra, &rb));
    }
}
