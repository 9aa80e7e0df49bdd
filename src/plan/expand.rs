//! Expanding a manifest's grid into stages: each cell's chain becomes stages keyed by a digest of
//! everything that decides their result, equal stages merging into one.

use super::{Cell, KEY_FORMAT, Kd, Plan, Role, RoleSeeds, Stage, StageId, digest};
use crate::manifest::{CellSpec, DatasetSpec, Manifest, ModelSpec, TeacherSeed, TrainingSpec};
use serde::Serialize;
use std::collections::HashMap;

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
    compute: &'a str,
    seed: u64,
    /// Only when a role seed differs from `seed`, so ids of plain grids stay as they were.
    #[serde(skip_serializing_if = "Option::is_none")]
    seeds: Option<RoleSeeds>,
    kd: Option<Kd>,
    parent: Option<&'a StageId>,
    /// Only for ensembles, so other ids stay as they were.
    #[serde(skip_serializing_if = "<[StageId]>::is_empty")]
    members: &'a [StageId],
    /// Only for models that start from another stage's weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    init: Option<&'a StageId>,
}

/// The teacher seed paired with cell seed `seed` under the `independent` policy: a fixed
/// function of it that no small seed collides with.
fn independent_seed(seed: u64) -> u64 {
    let d = digest(&(KEY_FORMAT, seed, "teacher-seed"));
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Expands the manifest's grid into unique stages and cells; `data` is the dataset's content
/// digest ([`crate::data::fingerprint()`]), part of every stage id.
pub fn expand(manifest: &Manifest, data: &str) -> Plan {
    let grid = &manifest.grid;
    let mut stages: Vec<Stage> = Vec::new();
    let mut index: HashMap<StageId, usize> = HashMap::new();
    let mut cells = Vec::new();

    let first_seed = grid.seeds[0];
    // The same for every stage: computed once, not once per stage of a 100,000-stage grid.
    let compute = manifest.compute.result_key();
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
                compute: &compute,
                seed: stage.seed,
                seeds: (stage.seeds != RoleSeeds::uniform(stage.seed)).then_some(stage.seeds),
                kd: stage.kd,
                parent: stage.parent.as_ref(),
                members: &stage.members,
                init: stage.init.as_ref(),
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
        init: None,
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
        // Teachers, assistants and the stages others start from follow the teacher-seed
        // policy; the chain's last model always takes the cell's seeds.
        let teacher_seeds = match grid.teacher_seed {
            TeacherSeed::Paired => (seed, seeds),
            TeacherSeed::Shared => (first_seed, RoleSeeds::uniform(first_seed)),
            TeacherSeed::Fixed(s) => (s, RoleSeeds::uniform(s)),
            TeacherSeed::Independent => {
                let s = independent_seed(seed);
                (s, RoleSeeds::uniform(s))
            }
        };
        // A model used as imported draws nothing random: one stage serves every seed.
        let own_seeds = |spec: &crate::manifest::ModelSpec, s: (u64, RoleSeeds)| match &spec.weights
        {
            Some(w) if !w.fine_tune => (0, RoleSeeds::uniform(0)),
            _ => s,
        };
        for (depth, model) in chain.iter().enumerate() {
            let (seed, seeds) = if depth + 1 == chain.len() {
                (seed, seeds)
            } else {
                teacher_seeds
            };
            let spec = &manifest.models[model];
            let init = spec.init_from.as_ref().map(|f| {
                let source = &manifest.models[&f.model];
                let (seed, seeds) = own_seeds(source, teacher_seeds);
                let stage = Stage {
                    model: f.model.clone(),
                    spec: source.clone(),
                    training: manifest.training_for(&f.model),
                    seed,
                    seeds,
                    chain: vec![f.model.clone()],
                    ..blank.clone()
                };
                add(&mut stages, &mut index, stage)
            });
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
            // Neither does an ensemble of trained stages or an ONNX model.
            let (seed, seeds) = match own_seeds(spec, (seed, seeds)) {
                _ if !members.is_empty() || spec.onnx.is_some() => (0, RoleSeeds::uniform(0)),
                s => s,
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
                init,
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
        tracking: manifest.tracking.clone(),
        index,
    }
}
