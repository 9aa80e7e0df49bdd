//! A study's runs as the statistics see them: one [`Run`] per stage with a record, grouped by
//! what a row of the summary is about (chain, model, temperature, alpha) and split by the
//! source of randomness that varies within the group.

use crate::plan::{Kd, KdKey, Plan, Stage, StageId};
use crate::store::{StageRecord, Status};
use polars::prelude::*;
use std::collections::{BTreeMap, HashMap};

/// One stage and its record.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The stage.
    pub stage: &'a Stage,
    /// Its record.
    pub record: &'a StageRecord,
}

impl Run<'_> {
    /// Whether it trained to the end.
    pub fn ok(&self) -> bool {
        self.record.status == Status::Ok
    }

    /// Test accuracy of the selected epoch.
    pub fn accuracy(&self) -> Option<f64> {
        self.record.test_accuracy.filter(|_| self.ok())
    }

    /// Test accuracy of the last epoch.
    pub fn last_accuracy(&self) -> Option<f64> {
        self.record
            .epochs
            .last()
            .map(|e| e.test_accuracy)
            .filter(|_| self.ok())
    }

    /// Validation accuracy of the selected epoch.
    pub fn val_accuracy(&self) -> Option<f64> {
        self.record.val_accuracy.filter(|_| self.ok())
    }

    /// The student's seeds of each source: what pairs two runs.
    pub fn seeds(&self) -> (u64, u64, u64) {
        let s = self.stage.seeds;
        (s.init, s.order, s.augment)
    }
}

/// Runs that share chain, model and distillation settings: they differ by seeds only.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    /// Chain label (`teacher > student`).
    pub chain: String,
    /// Model of the chain's last stage.
    pub model: String,
    /// Distillation settings.
    pub kd: Option<Kd>,
    /// The runs, in plan order.
    pub runs: Vec<Run<'a>>,
}

/// What names one row of the summary and variance tables: the group and a source of randomness.
#[derive(Debug, Clone)]
pub struct RowKey {
    /// Chain label.
    pub chain: String,
    /// Model.
    pub model: String,
    /// Temperature.
    pub temperature: Option<f64>,
    /// Alpha.
    pub alpha: Option<f64>,
    /// Source of randomness.
    pub source: &'static str,
}

/// The key columns (`chain`, `model`, `temperature`, `alpha`, `source`) of `keys`, followed by
/// the columns of `rest`.
pub fn with_key_columns(keys: &[&RowKey], rest: DataFrame) -> PolarsResult<DataFrame> {
    df![
        "chain" => keys.iter().map(|k| k.chain.as_str()).collect::<Vec<_>>(),
        "model" => keys.iter().map(|k| k.model.as_str()).collect::<Vec<_>>(),
        "temperature" => keys.iter().map(|k| k.temperature).collect::<Vec<_>>(),
        "alpha" => keys.iter().map(|k| k.alpha).collect::<Vec<_>>(),
        "source" => keys.iter().map(|k| k.source).collect::<Vec<_>>(),
    ]?
    .hstack(rest.columns())
}

impl Group<'_> {
    /// The key of this group's row for `source`.
    pub fn row_key(&self, source: &'static str) -> RowKey {
        RowKey {
            chain: self.chain.clone(),
            model: self.model.clone(),
            temperature: self.kd.map(|k| k.temperature),
            alpha: self.kd.map(|k| k.alpha),
            source,
        }
    }

    /// A stable text key, for seeding resamples and for messages.
    pub fn key(&self) -> String {
        match self.kd {
            Some(kd) => format!("{} T={} alpha={}", self.chain, kd.temperature, kd.alpha),
            None => self.chain.clone(),
        }
    }

    /// Chain elements.
    pub fn chain_models(&self) -> Vec<&str> {
        self.chain.split(" > ").collect()
    }
}

/// Every stage of `plan` that has a record, as groups in plan order.
pub fn groups<'a>(plan: &'a Plan, records: &'a BTreeMap<StageId, StageRecord>) -> Vec<Group<'a>> {
    let mut out: Vec<Group> = Vec::new();
    let mut index: HashMap<(String, &str, Option<KdKey>), usize> = HashMap::new();
    for stage in &plan.stages {
        let Some(record) = records.get(&stage.id) else {
            continue;
        };
        let chain = stage.chain_label();
        let run = Run { stage, record };
        let key = (
            chain.clone(),
            stage.model.as_str(),
            stage.kd.map(|k| k.key()),
        );
        match index.get(&key) {
            Some(&g) => out[g].runs.push(run),
            None => {
                index.insert(key, out.len());
                out.push(Group {
                    chain,
                    model: stage.model.clone(),
                    kd: stage.kd,
                    runs: vec![run],
                });
            }
        }
    }
    out
}

/// Which source of randomness varies across a sample of runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// Every source moves with the seed.
    All,
    /// Weight initialization (and dropout masks) alone.
    Init,
    /// Data order alone.
    Order,
    /// Augmentation draws alone.
    Augment,
}

impl Source {
    /// Lowercase name, as in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::All => "all",
            Source::Init => "init",
            Source::Order => "order",
            Source::Augment => "augment",
        }
    }
}

/// A sample of runs that differ in one source of randomness (or, for [`Source::All`], in all
/// of them), as cells: runs of one cell differ only in that source; different cells hold
/// different cell seeds, so their runs also differ in the other sources and are compared
/// only within their cell.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    /// The source that varies within each cell.
    pub source: Source,
    /// Runs by cell seed, in plan order.
    pub cells: Vec<Vec<Run<'a>>>,
}

impl<'a> Sample<'a> {
    /// Every run of the sample, cell after cell.
    pub fn runs(&self) -> impl Iterator<Item = &Run<'a>> {
        self.cells.iter().flatten()
    }
}

/// The samples of a group, one per source that varies. A group whose runs vary only the cell
/// seed gives one `all` sample. A seed-role study (`init-seed`, `order-seed`, `augment-seed`)
/// gives an `all` sample of the runs whose every source sits at the cell seed (when there are
/// 2 cell seeds or more), and for each source a sample of cells: within cell seed `s`, the
/// runs whose two other sources sit at `s`, when they hold 2 values of this source or more. A
/// source the grid never varies alone has no sample.
pub fn samples<'a>(group: &Group<'a>) -> Vec<Sample<'a>> {
    let uniform = |r: &Run| {
        let (i, o, a) = r.seeds();
        let s = r.stage.seed;
        i == s && o == s && a == s
    };
    if group.runs.iter().all(uniform) {
        return vec![Sample {
            source: Source::All,
            cells: vec![group.runs.clone()],
        }];
    }
    let mut out = Vec::new();
    let all: Vec<Run> = group.runs.iter().copied().filter(uniform).collect();
    if distinct(all.iter().map(|r| r.stage.seed)) >= 2 {
        out.push(Sample {
            source: Source::All,
            cells: vec![all],
        });
    }
    // Cell seeds in order of first appearance, each with its runs.
    let mut cells: Vec<(u64, Vec<Run>)> = Vec::new();
    let mut index: HashMap<u64, usize> = HashMap::new();
    for r in &group.runs {
        let c = *index.entry(r.stage.seed).or_insert_with(|| {
            cells.push((r.stage.seed, Vec::new()));
            cells.len() - 1
        });
        cells[c].1.push(*r);
    }
    for source in [Source::Init, Source::Order, Source::Augment] {
        // Whether a run's other sources sit at its cell seed, and its seed of this source.
        let pick = |r: &Run| {
            let (i, o, a) = r.seeds();
            let s = r.stage.seed;
            match source {
                Source::Init => (o == s && a == s, i),
                Source::Order => (i == s && a == s, o),
                Source::Augment => (i == s && o == s, a),
                Source::All => unreachable!(),
            }
        };
        let counting: Vec<Vec<Run>> = cells
            .iter()
            .map(|(_, runs)| {
                runs.iter()
                    .copied()
                    .filter(|r| pick(r).0)
                    .collect::<Vec<_>>()
            })
            .filter(|runs| distinct(runs.iter().map(|r| pick(r).1)) >= 2)
            .collect();
        if !counting.is_empty() {
            out.push(Sample {
                source,
                cells: counting,
            });
        }
    }
    out
}

fn distinct(values: impl Iterator<Item = u64>) -> usize {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    v.dedup();
    v.len()
}
