//! The planner: expands a [`crate::manifest::Manifest`]'s grid into a DAG of training stages (second phase of
//! manifest → plan → train → store → report).
//!
//! A stage's [`StageId`] is a SHA-256 digest of everything that decides its result (dataset,
//! architecture, training settings, seed, distillation settings and the parent stage's id), so
//! equal stages merge: a teacher for one seed is trained once for the whole grid, and a stage
//! already in the results store is found again by id on a rerun.

mod expand;

pub use crate::manifest::{Cost, RoleSeeds, cost};
pub use expand::expand;

use crate::manifest::{
    Adaptive, ComputeSpec, DatasetSpec, Holdout, KlReduction, ModelSpec, TrainingSpec,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Version of the stage-key layout; bump it only when results would legitimately change.
pub(crate) const KEY_FORMAT: u32 = 1;

/// Content-addressed id of a stage: the first 16 hex digits of a SHA-256 digest.
#[derive(Debug, Clone, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageId(String);

// Equality by hand only to count comparisons in tests: a linear search for an id inside a loop
// over stages shows as comparisons growing with the square of the plan.
impl PartialEq for StageId {
    fn eq(&self, other: &Self) -> bool {
        #[cfg(test)]
        ID_COMPARISONS.with(|c| c.set(c.get() + 1));
        self.0 == other.0
    }
}

impl Eq for StageId {}

impl std::hash::Hash for StageId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl StageId {
    /// The id as text (16 lowercase hex digits).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shard (of `n`) this stage belongs to in `run --shard M/N`: its id read as a number,
    /// modulo `n`, so shards are balanced and every process agrees on them.
    pub fn shard(&self, n: usize) -> usize {
        let head = self.0.get(..16).unwrap_or(&self.0);
        (u64::from_str_radix(head, 16).unwrap_or(0) % n.max(1) as u64) as usize
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Distillation settings of a stage that learns from a teacher.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Kd {
    /// Softmax temperature.
    pub temperature: f64,
    /// Weight of the soft-target term.
    pub alpha: f64,
    /// Reduction of the KL term (left out of ids when per-sample).
    #[serde(skip_serializing_if = "KlReduction::is_default")]
    pub reduction: KlReduction,
}

/// [`Kd::key`]: temperature and alpha bits, and the reduction.
pub type KdKey = (u64, u64, KlReduction);

impl Kd {
    /// A hashable key equal exactly when the settings are `==` (the floats by their bits,
    /// `-0.0` made `0.0` first), for grouping.
    pub fn key(&self) -> KdKey {
        let bits = |x: f64| (x + 0.0).to_bits();
        (bits(self.temperature), bits(self.alpha), self.reduction)
    }
}

/// What a stage is to the cells that use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// First model of a chain, trained on labels only, and not itself the end of a chain.
    Teacher,
    /// A distilled model that teaches the next one.
    Assistant,
    /// The last model of a chain: what a cell measures.
    Student,
}

impl Role {
    /// Lowercase name, as in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Teacher => "teacher",
            Role::Assistant => "assistant",
            Role::Student => "student",
        }
    }
}

/// One training run: a model trained with one seed, from labels or from a parent stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Content-addressed id.
    pub id: StageId,
    /// Model name from the manifest.
    pub model: String,
    /// Its architecture.
    pub spec: ModelSpec,
    /// Training settings.
    pub training: TrainingSpec,
    /// Seed of the cell.
    pub seed: u64,
    /// Seeds of each source of randomness (all equal to `seed` unless role axes are set).
    pub seeds: RoleSeeds,
    /// Distillation settings; `None` for stages trained on labels only.
    pub kd: Option<Kd>,
    /// The teacher stage, if any.
    pub parent: Option<StageId>,
    /// The stages an ensemble averages (empty for every other stage).
    pub members: Vec<StageId>,
    /// The stage whose weights this one starts from (`init-from`), if any.
    pub init: Option<StageId>,
    /// Model names from the chain's root to this stage.
    pub chain: Vec<String>,
    /// Role in the grid.
    pub role: Role,
}

impl Stage {
    /// The stages this one needs settled before it can run: its teacher, an ensemble's
    /// members, the stage it starts from (once, when that is also its teacher).
    pub fn needs(&self) -> impl Iterator<Item = &StageId> {
        let init = self
            .init
            .as_ref()
            .filter(|i| Some(*i) != self.parent.as_ref());
        self.parent.iter().chain(&self.members).chain(init)
    }

    /// Whether this stage averages trained stages instead of training.
    pub fn is_ensemble(&self) -> bool {
        self.spec.ensemble.is_some()
    }

    /// Whether this stage runs a frozen ONNX model instead of training.
    pub fn is_onnx(&self) -> bool {
        self.spec.onnx.is_some()
    }

    /// Whether this stage is only evaluated, never trained (an ensemble, an ONNX model): what
    /// it runs is its own teacher.
    pub fn is_frozen(&self) -> bool {
        self.is_ensemble() || self.is_onnx()
    }

    /// Chain as shown in tables: `teacher > assistant > student`.
    pub fn chain_label(&self) -> String {
        self.chain.join(" > ")
    }

    /// The teacher's model name, if distilled.
    pub fn teacher_model(&self) -> Option<&str> {
        self.parent
            .as_ref()
            .map(|_| self.chain[self.chain.len() - 2].as_str())
    }

    /// Seed of the weight-initialization stream: the cell seed and the architecture only, so
    /// that a distilled student and its no-KD baseline start from the same weights.
    pub fn init_stream(&self) -> [u8; 32] {
        // Dropout and a hidden-state loss draw nothing at init: with and without them, a model
        // starts from the same weights, so the two compare pairwise.
        let weights = ModelSpec {
            dropout: None,
            hidden_loss: None,
            ..self.spec.clone()
        };
        stream_seed(self.seeds.init, "init", &weights)
    }

    /// Seed of the dropout-mask stream: part of the model's randomness, so the init seed.
    pub fn dropout_stream(&self) -> [u8; 32] {
        stream_seed(self.seeds.init, "dropout", &())
    }

    /// Seed of the augmentation stream: the cell seed only, like the data order.
    pub fn augment_stream(&self) -> [u8; 32] {
        stream_seed(self.seeds.augment, "augment", &())
    }

    /// Seed of the data-order stream: the cell seed only, so that paired runs see the same
    /// batches.
    pub fn order_stream(&self) -> [u8; 32] {
        stream_seed(self.seeds.order, "order", &())
    }
}

/// One cell of the grid: a concrete chain at one seed and distillation setting.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Concrete model names, teacher first.
    pub chain: Vec<String>,
    /// Seed.
    pub seed: u64,
    /// Per-role seeds.
    pub seeds: RoleSeeds,
    /// Distillation settings (`None` for single-model chains).
    pub kd: Option<Kd>,
    /// The stage whose accuracy the cell reports (the chain's last).
    pub stage: StageId,
}

/// The expanded DAG of a manifest.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Experiment name.
    pub name: String,
    /// Dataset every stage uses.
    pub dataset: DatasetSpec,
    /// Unique stages, parents before children.
    pub stages: Vec<Stage>,
    /// Grid cells.
    pub cells: Vec<Cell>,
    /// Backend and device.
    pub compute: ComputeSpec,
    /// The validation split every stage holds out of the training images.
    pub validation: Option<Holdout>,
    /// The dataset's content digest.
    pub data: String,
    /// How many of the seeds each group runs, when decided while running.
    pub adaptive: Option<Adaptive>,
    /// Where runs are tracked besides the tables (no part of any stage id).
    pub tracking: crate::manifest::Tracking,
    /// Position of each stage in `stages`, for lookups by id.
    index: HashMap<StageId, usize>,
}

impl Plan {
    /// Looks a stage up by id.
    pub fn stage(&self, id: &StageId) -> Option<&Stage> {
        self.index.get(id).map(|&i| &self.stages[i])
    }

    /// Cost of a stage's model, when the dataset's shape is known without reading it.
    pub fn model_cost(&self, stage: &Stage) -> Option<Cost> {
        // An ONNX graph whose input dims are fixed says its size and cost itself, even where
        // the images' shape is known only once they load (image folders).
        if let Some(s) = stage.spec.onnx.as_ref().and_then(|o| o.signature.as_ref())
            && s.forward_flops > 0
        {
            return Some(Cost {
                params: s.params,
                forward_flops: s.forward_flops,
            });
        }
        let shape = self.dataset.shape()?;
        Some(cost(&stage.spec, shape.input, shape.classes))
    }

    /// Estimated FLOPs to train and evaluate `stage`: every epoch trains on the training split
    /// (plus a teacher forward pass per image when distilling) and evaluates on the test split.
    pub fn stage_flops(&self, stage: &Stage) -> Option<u64> {
        let shape = self.dataset.shape()?;
        let own = self.model_cost(stage)?;
        if stage.is_frozen() {
            // Evaluated once: a forward pass over both splits.
            return Some((shape.train + shape.test) as u64 * own.forward_flops);
        }
        let teacher = match &stage.parent {
            Some(p) => self.model_cost(self.stage(p)?)?.forward_flops,
            None => 0,
        };
        let per_epoch = shape.train as u64 * (own.train_flops() + teacher)
            + shape.test as u64 * own.forward_flops;
        Some(stage.training.epochs as u64 * per_epoch)
    }

    /// The cells of each group (chain and distillation settings) in seed order: what an
    /// adaptive rule grows seed by seed.
    pub fn groups(&self) -> Vec<(String, Vec<&Cell>)> {
        scanned();
        let mut out: Vec<(String, Vec<&Cell>)> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for c in &self.cells {
            let key = format!(
                "{}{}",
                c.chain.join(" > "),
                c.kd.map_or_else(String::new, |k| format!(
                    " T={} alpha={}",
                    k.temperature, k.alpha
                ))
            );
            match at.get(&key) {
                Some(&i) => out[i].1.push(c),
                None => {
                    at.insert(key.clone(), out.len());
                    out.push((key, vec![c]));
                }
            }
        }
        out
    }

    /// The stages the cells `cells` need, parents first, in plan order.
    pub fn stages_of<'a>(&'a self, cells: &[&Cell]) -> Vec<&'a Stage> {
        scanned();
        let mut wanted: std::collections::HashSet<&StageId> = std::collections::HashSet::new();
        let mut todo: Vec<&StageId> = cells.iter().map(|c| &c.stage).collect();
        while let Some(i) = todo.pop() {
            if wanted.insert(i)
                && let Some(s) = self.stage(i)
            {
                todo.extend(s.needs());
            }
        }
        self.stages
            .iter()
            .filter(|s| wanted.contains(&s.id))
            .collect()
    }

    /// Stages all cells would train if each trained alone what it needs (its chain, an
    /// ensemble's members, the stage it starts from): the work before merging equal stages.
    /// Linear in the plan: each stage's count is memoized (stages come parents first), which is
    /// exact when what one stage needs shares no ancestors (a chain's parent, an ensemble's
    /// label-trained members); a student that starts from a stage above its own teacher counts
    /// that stage twice.
    pub fn stages_without_reuse(&self) -> usize {
        scanned();
        let mut needed: Vec<usize> = Vec::with_capacity(self.stages.len());
        for s in &self.stages {
            let n = 1 + s
                .needs()
                .filter_map(|p| self.index.get(p).map(|&i| needed[i]))
                .sum::<usize>();
            needed.push(n);
        }
        self.cells
            .iter()
            .filter_map(|c| self.index.get(&c.stage).map(|&i| needed[i]))
            .sum()
    }

    /// Number of stages with each role.
    pub fn count_by_role(&self) -> BTreeMap<Role, usize> {
        scanned();
        let mut counts = BTreeMap::new();
        for s in &self.stages {
            *counts.entry(s.role).or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
thread_local! {
    /// Whole-plan scans made on this thread: a test checks that expanding a plan makes none
    /// (a scan per cell is what made planning quadratic in the stage count).
    static SCANS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// [`StageId`] comparisons made on this thread.
    static ID_COMPARISONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one pass over every stage or cell of a plan (in tests).
fn scanned() {
    #[cfg(test)]
    SCANS.with(|s| s.set(s.get() + 1));
}

pub(crate) fn digest(value: &impl Serialize) -> [u8; 32] {
    // serde_json writes struct fields in declaration order and floats in shortest round-trip
    // form, so this serialization is canonical for our key types.
    let bytes = serde_json::to_vec(value).expect("stage keys serialize");
    Sha256::digest(&bytes).into()
}

fn stream_seed(seed: u64, stream: &str, extra: &impl Serialize) -> [u8; 32] {
    digest(&(KEY_FORMAT, seed, stream, extra))
}

#[cfg(test)]
mod tests;
