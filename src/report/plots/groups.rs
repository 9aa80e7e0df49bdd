//! The groups of finished runs the accuracy, seed and size figures draw: one per chain and
//! (temperature, alpha) setting, in the summary's order.

use crate::report::Tables;
use crate::report::columns::{floats, strs};
use std::collections::{HashMap, HashSet};

/// One entry per group of finished runs: label, mean and interval, every seed's accuracy.
pub(super) struct Groups {
    pub(super) labels: Vec<String>,
    pub(super) chains: Vec<String>,
    pub(super) mean: Vec<f64>,
    pub(super) ci: Vec<Option<(f64, f64)>>,
    /// Whether the interval was cut at 0 and at 1 (accuracy bounds): drawn open-ended.
    pub(super) cut: Vec<(bool, bool)>,
    pub(super) seeds: Vec<Vec<f64>>,
}

/// A group's label: its chain, with its temperature and alpha when distilled.
pub(super) fn group_label(chain: &str, t: Option<f64>, a: Option<f64>) -> String {
    match (t, a) {
        (Some(t), Some(a)) => format!("{chain} (T={t}, a={a})"),
        _ => chain.to_string(),
    }
}

impl Groups {
    /// The groups of `tables`, each with every finished seed's accuracy.
    pub(super) fn of(tables: &Tables) -> Self {
        let s = &tables.summary;
        let (chain, metric, note) = (strs(s, "chain"), strs(s, "metric"), strs(s, "note"));
        let [t, a, mean, lo, hi] =
            ["temperature", "alpha", "mean", "ci_low", "ci_high"].map(|c| floats(s, c));
        let r = &tables.runs;
        let (rchain, status) = (strs(r, "chain"), strs(r, "status"));
        let [rt, ra, acc] = ["temperature", "alpha", "test_accuracy"].map(|c| floats(r, c));
        // Every finished seed's accuracy by (chain, temperature, alpha), in one pass over runs.
        let key = |c: &str, t: Option<f64>, a: Option<f64>| {
            // `+ 0.0` makes -0.0 equal to 0.0, as `==` finds them.
            let bits = |x: Option<f64>| x.map(|x| (x + 0.0).to_bits());
            (c.to_string(), bits(t), bits(a))
        };
        let mut by_setting: HashMap<_, Vec<f64>> = HashMap::new();
        for j in 0..r.height() {
            if status[j] == "ok"
                && let Some(v) = acc[j]
            {
                by_setting
                    .entry(key(&rchain[j], rt[j], ra[j]))
                    .or_default()
                    .push(v);
            }
        }
        let mut g = Groups {
            labels: Vec::new(),
            chains: Vec::new(),
            mean: Vec::new(),
            ci: Vec::new(),
            cut: Vec::new(),
            seeds: Vec::new(),
        };
        let mut seen = HashSet::new();
        for i in 0..s.height() {
            if metric[i] != "test_accuracy" || mean[i].is_none() {
                continue;
            }
            let label = group_label(&chain[i], t[i], a[i]);
            if !seen.insert(label.clone()) {
                continue;
            }
            g.seeds.push(
                by_setting
                    .get(&key(&chain[i], t[i], a[i]))
                    .cloned()
                    .unwrap_or_default(),
            );
            g.labels.push(label);
            g.chains.push(chain[i].clone());
            g.mean.push(mean[i].unwrap_or(0.0));
            g.ci.push(lo[i].zip(hi[i]));
            g.cut.push((
                note[i].contains("t interval cut at 0"),
                note[i].contains("t interval cut at 1"),
            ));
        }
        g
    }

    /// The accuracy range of every seed and interval, padded by a tenth.
    pub(super) fn range(&self) -> (f64, f64) {
        let all = self
            .seeds
            .iter()
            .flatten()
            .copied()
            .chain(self.ci.iter().flatten().flat_map(|c| [c.0, c.1]));
        let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        let pad = ((hi - lo) * 0.1).max(0.005);
        ((lo - pad).max(0.0), (hi + pad).min(1.0))
    }

    /// Pixels the longest label needs.
    pub(super) fn label_width(&self) -> u32 {
        self.labels
            .iter()
            .map(|l| l.chars().count())
            .max()
            .unwrap_or(10) as u32
            * 8
            + 20
    }
}
