//! The planner: expands a [`Manifest`]'s grid into a DAG of training stages (second phase of
//! manifest → plan → train → store → report).
//!
//! A stage's [`StageId`] is a SHA-256 digest of everything that decides its result (dataset,
//! architecture, training settings, seed, distillation settings and the parent stage's id), so
//! equal stages merge: a teacher for one seed is trained once for the whole grid, and a stage
//! already in the results store is found again by id on a rerun.

pub use crate::manifest::{Cost, RoleSeeds, cost};

use crate::manifest::{
    Adaptive, CellSpec, ComputeSpec, DatasetSpec, Holdout, KlReduction, Manifest, ModelSpec,
    TeacherSeed, TrainingSpec,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Version of the stage-key layout; bump it only when results would legitimately change.
const KEY_FORMAT: u32 = 1;

/// Content-addressed id of a stage: the first 16 hex digits of a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageId(String);

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
    /// A hashable key equal for equal settings (the floats by their bits), for grouping.
    pub fn key(&self) -> KdKey {
        (
            self.temperature.to_bits(),
            self.alpha.to_bits(),
            self.reduction,
        )
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
    /// Model names from the chain's root to this stage.
    pub chain: Vec<String>,
    /// Role in the grid.
    pub role: Role,
}

impl Stage {
    /// The stages this one needs settled before it can run: its teacher, or an ensemble's
    /// members.
    pub fn needs(&self) -> impl Iterator<Item = &StageId> {
        self.parent.iter().chain(&self.members)
    }

    /// Whether this stage averages trained stages instead of training.
    pub fn is_ensemble(&self) -> bool {
        self.spec.ensemble.is_some()
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
        // Dropout draws nothing at init: with and without it, a model starts from the same
        // weights, so the two compare pairwise.
        let weights = ModelSpec {
            dropout: None,
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
        let shape = self.dataset.shape()?;
        Some(cost(&stage.spec, shape.input, shape.classes))
    }

    /// Estimated FLOPs to train and evaluate `stage`: every epoch trains on the training split
    /// (plus a teacher forward pass per image when distilling) and evaluates on the test split.
    pub fn stage_flops(&self, stage: &Stage) -> Option<u64> {
        let shape = self.dataset.shape()?;
        let own = self.model_cost(stage)?;
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
    /// ensemble's members): the work before merging equal stages. Linear in the plan: each
    /// stage's count is memoized (stages come parents first), which is exact because what one
    /// stage needs never shares ancestors (a chain's parent, or an ensemble's label-trained
    /// members).
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

#[derive(Serialize)]
struct StageKey<'a> {
    format: u32,
    trainer: u32,
    dataset: &'a DatasetSpec,
    /// Only for datasets whose reader changed what the model sees ([`DatasetSpec::reader_version`]),
    /// so ids of other datasets stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    reader: Option<u32>,
    data: &'a str,
    model: &'a ModelSpec,
    training: &'a TrainingSpec,
    compute: String,
    seed: u64,
    /// Only when a role seed differs from `seed`, so ids of plain grids stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    seeds: Option<RoleSeeds>,
    kd: Option<Kd>,
    parent: Option<&'a StageId>,
    /// Only for ensembles, so other ids stay as they were.
    #[serde(skip_serializing_if = "<[StageId]>::is_empty")]
    members: &'a [StageId],
}

#[cfg(test)]
thread_local! {
    /// Whole-plan scans made on this thread: a test checks that expanding a plan makes none
    /// (a scan per cell is what made planning quadratic in the stage count).
    static SCANS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Counts one pass over every stage or cell of a plan (in tests).
fn scanned() {
    #[cfg(test)]
    SCANS.with(|s| s.set(s.get() + 1));
}

fn digest(value: &impl Serialize) -> [u8; 32] {
    // serde_json writes struct fields in declaration order and floats in shortest round-trip
    // form, so this serialization is canonical for our key types.
    let bytes = serde_json::to_vec(value).expect("stage keys serialize");
    Sha256::digest(&bytes).into()
}

/// The teacher seed paired with cell seed `seed` under the `independent` policy: a fixed
/// function of it that no small seed collides with.
fn independent_seed(seed: u64) -> u64 {
    let d = digest(&(KEY_FORMAT, seed, "teacher-seed"));
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

fn stream_seed(seed: u64, stream: &str, extra: &impl Serialize) -> [u8; 32] {
    digest(&(KEY_FORMAT, seed, stream, extra))
}

/// Expands the manifest's grid into unique stages and cells; `data` is the dataset's content
/// digest ([`crate::data::fingerprint()`]), part of every stage id.
pub fn expand(manifest: &Manifest, data: &str) -> Plan {
    let grid = &manifest.grid;
    let mut stages: Vec<Stage> = Vec::new();
    let mut index: HashMap<StageId, usize> = HashMap::new();
    let mut cells = Vec::new();

    let first_seed = grid.seeds[0];
    // Completes a stage with its id and adds it unless an equal one is there.
    let add = |stages: &mut Vec<Stage>, index: &mut HashMap<StageId, usize>, mut stage: Stage| {
        stage.id = StageId(hex::encode(
            &digest(&StageKey {
                format: KEY_FORMAT,
                trainer: crate::identity::TRAINER_VERSION,
                dataset: &manifest.dataset,
                reader: manifest.dataset.reader_version(),
                data,
                model: &stage.spec,
                training: &stage.training,
                compute: manifest.compute.result_key(),
                seed: stage.seed,
                seeds: (stage.seeds != RoleSeeds::uniform(stage.seed)).then_some(stage.seeds),
                kd: stage.kd,
                parent: stage.parent.as_ref(),
                members: &stage.members,
            })[..8],
        ));
        let id = stage.id.clone();
        if !index.contains_key(&id) {
            index.insert(id.clone(), stages.len());
            stages.push(stage);
        }
        id
    };
    let blank = Stage {
        id: StageId(String::new()),
        model: String::new(),
        spec: crate::manifest::ModelSpec::plain_cnn(2).expect("size 2 exists"),
        training: manifest.training.clone(),
        seed: 0,
        seeds: RoleSeeds::uniform(0),
        kd: None,
        parent: None,
        members: Vec::new(),
        chain: Vec::new(),
        role: Role::Teacher,
    };
    for cell in grid.cells() {
        let CellSpec {
            chain,
            seed,
            seeds,
            kd,
        } = cell;
        let kd = kd.map(|(temperature, alpha)| Kd {
            temperature,
            alpha,
            reduction: manifest.training.kl_reduction,
        });
        let mut parent: Option<StageId> = None;
        for (depth, model) in chain.iter().enumerate() {
            // Teachers and assistants follow the teacher-seed policy; the chain's last model
            // always takes the cell's seeds.
            let (seed, seeds) = if depth + 1 == chain.len() {
                (seed, seeds)
            } else {
                match grid.teacher_seed {
                    TeacherSeed::Paired => (seed, seeds),
                    TeacherSeed::Shared => (first_seed, RoleSeeds::uniform(first_seed)),
                    TeacherSeed::Fixed(s) => (s, RoleSeeds::uniform(s)),
                    TeacherSeed::Independent => {
                        let s = independent_seed(seed);
                        (s, RoleSeeds::uniform(s))
                    }
                }
            };
            let spec = &manifest.models[model];
            let members: Vec<StageId> = match &spec.ensemble {
                Some(e) => e
                    .seeds
                    .iter()
                    .map(|&s| {
                        let member = Stage {
                            model: e.model.clone(),
                            spec: manifest.models[&e.model].clone(),
                            training: manifest.training_for(&e.model),
                            seed: s,
                            seeds: RoleSeeds::uniform(s),
                            chain: vec![e.model.clone()],
                            ..blank.clone()
                        };
                        add(&mut stages, &mut index, member)
                    })
                    .collect(),
                None => Vec::new(),
            };
            // A model used as imported, or an ensemble of trained stages, draws nothing random:
            // one stage serves every seed.
            let (seed, seeds) = match &spec.weights {
                Some(w) if !w.fine_tune => (0, RoleSeeds::uniform(0)),
                _ if !members.is_empty() => (0, RoleSeeds::uniform(0)),
                _ => (seed, seeds),
            };
            let stage = Stage {
                model: model.clone(),
                spec: spec.clone(),
                training: manifest.training_for(model),
                seed,
                seeds,
                kd: if depth == 0 { None } else { kd },
                parent: parent.clone(),
                members,
                chain: chain[..=depth].to_vec(),
                role: if depth == 0 {
                    Role::Teacher
                } else {
                    Role::Assistant
                },
                ..blank.clone()
            };
            let id = add(&mut stages, &mut index, stage);
            parent = Some(id);
        }
        let stage = parent.expect("chains are non-empty");
        stages[index[&stage]].role = Role::Student;
        cells.push(Cell {
            chain,
            seed,
            seeds,
            kd,
            stage,
        });
    }
    Plan {
        name: manifest.name.clone(),
        dataset: manifest.dataset.clone(),
        stages,
        cells,
        compute: manifest.compute,
        validation: manifest.training.validation,
        data: data.to_string(),
        adaptive: manifest.grid.adaptive,
        index,
    }
}

#[cfg(test)]
mod tests;
