use super::*;
use crate::manifest::{Manifest, parse};
use std::path::Path;

fn manifest(grid: &str) -> Manifest {
    let text = format!(
        r#"
name = "t"
[dataset]
kind = "synthetic"
[models.big]
conv = [16, 32]
[models.mid]
conv = [8, 16]
[models.small]
conv = [4]
[training]
epochs = 1
batch-size = 16
optimizer = "sgd"
lr = 0.1
momentum = 0.9
[grid]
{grid}
"#
    );
    parse(Path::new("m.toml"), &text).unwrap()
}

const GRID: &str = r#"
seed = [0, 1, 2]
temperature = [2.0, 4.0]
alpha = [0.5]
chains = [["small"], ["big", "small"], ["big", "mid", "small"]]
"#;

#[test]
fn teachers_are_trained_once_per_seed() {
    let plan = expand(&manifest(GRID), "");
    // Per seed: 1 no-KD cell + 2 temperatures x 2 distilled chains.
    assert_eq!(plan.cells.len(), 3 * (1 + 2 * 2));
    let teachers: Vec<_> = plan.stages.iter().filter(|s| s.model == "big").collect();
    assert_eq!(teachers.len(), 3, "one teacher per seed");
    assert!(
        teachers
            .iter()
            .all(|s| s.role == Role::Teacher && s.kd.is_none())
    );
    // Per seed: big, small (no KD), small<-big x2 T, mid<-big x2 T, small<-mid x2 T.
    assert_eq!(plan.stages.len(), 3 * (2 + 2 + 2 + 2));
    let counts = plan.count_by_role();
    assert_eq!(counts[&Role::Teacher], 3);
    assert_eq!(counts[&Role::Assistant], 6);
    assert_eq!(counts[&Role::Student], 15);
}

#[test]
fn parents_come_before_children() {
    let plan = expand(&manifest(GRID), "");
    for (i, s) in plan.stages.iter().enumerate() {
        if let Some(p) = &s.parent {
            let j = plan.stages.iter().position(|x| &x.id == p).unwrap();
            assert!(j < i);
            assert_eq!(plan.stages[j].chain, s.chain[..s.chain.len() - 1]);
        }
    }
}

#[test]
fn adding_axis_values_keeps_existing_ids() {
    let before = expand(&manifest(GRID), "");
    let after = expand(
        &manifest(
            &GRID
                .replace("seed = [0, 1, 2]", "seed = [0, 1, 2, 9]")
                .replace("temperature = [2.0, 4.0]", "temperature = [1.0, 2.0, 4.0]"),
        ),
        "",
    );
    let ids: Vec<_> = after.stages.iter().map(|s| s.id.clone()).collect();
    for s in &before.stages {
        assert!(ids.contains(&s.id), "stage {} vanished", s.chain_label());
    }
    assert!(after.stages.len() > before.stages.len());
}

#[test]
fn ids_change_with_what_decides_the_result() {
    let base = expand(&manifest(GRID), "");
    let other_lr = manifest(GRID);
    let mut m = other_lr.clone();
    m.training.lr = 0.05;
    let changed = expand(&m, "");
    assert!(
        base.stages
            .iter()
            .all(|s| changed.stages.iter().all(|c| c.id != s.id))
    );
}

fn kdgrid_class_is_portable() -> bool {
    crate::numerics::flex_class() == crate::numerics::PORTABLE
}

#[test]
fn stage_ids_are_stable_across_releases() {
    // A snapshot: if this changes, every user's results store would be retrained. It moved on
    // purpose with trainer version 2 (PyTorch's Adam epsilon and AdamW decay, data content
    // digests in ids), 3 (batch norm's running variance unbiased, as PyTorch's), 4 (the
    // patched burn-flex's convolution and batch-norm kernels) and 5 (the same kernels on every
    // x86-64-v3 processor). On another numeric class the id carries the class and differs.
    let plan = expand(&manifest(GRID), "");
    let first = &plan.stages[0];
    assert_eq!((first.model.as_str(), first.seed), ("small", 0));
    if kdgrid_class_is_portable() {
        assert_eq!(first.id.as_str(), "0779749d001747f1");
    }
}

#[test]
fn paired_stages_share_init_and_order_streams() {
    let plan = expand(&manifest(GRID), "");
    let small: Vec<_> = plan
        .stages
        .iter()
        .filter(|s| s.model == "small" && s.seed == 1)
        .collect();
    assert!(small.len() > 1);
    assert!(
        small
            .iter()
            .all(|s| s.init_stream() == small[0].init_stream())
    );
    assert!(
        small
            .iter()
            .all(|s| s.order_stream() == small[0].order_stream())
    );
    let seed2 = plan
        .stages
        .iter()
        .find(|s| s.model == "small" && s.seed == 2)
        .unwrap();
    assert_ne!(seed2.init_stream(), small[0].init_stream());
    let big = plan
        .stages
        .iter()
        .find(|s| s.model == "big" && s.seed == 1)
        .unwrap();
    assert_ne!(big.init_stream(), small[0].init_stream());
}

#[test]
fn role_placeholders_cross_teachers_and_students() {
    let plan = expand(
        &manifest(
            r#"
seed = [0]
temperature = [4.0]
alpha = [0.9]
teacher = ["big", "mid"]
student = ["small", "mid"]
chains = [["@student"], ["@teacher", "@student"]]
"#,
        ),
        "",
    );
    let chains: Vec<String> = plan.cells.iter().map(|c| c.chain.join(">")).collect();
    assert_eq!(
        chains,
        vec![
            "small",
            "mid",
            "big>small",
            "big>mid",
            "mid>small",
            "mid>mid"
        ]
    );
}

#[test]
fn role_seed_axes_vary_one_source_only() {
    let plan = expand(
        &manifest("seed = [0]\norder-seed = [0, 1]\nchains = [[\"small\"]]"),
        "",
    );
    assert_eq!(plan.stages.len(), 2);
    let (a, b) = (&plan.stages[0], &plan.stages[1]);
    assert_eq!(a.init_stream(), b.init_stream());
    assert_eq!(a.augment_stream(), b.augment_stream());
    assert_ne!(a.order_stream(), b.order_stream());
    assert_ne!(a.id, b.id);
    // A role seed equal to the cell seed is the plain stage: same id as without the axis.
    let plain = expand(&manifest("seed = [0]\nchains = [[\"small\"]]"), "");
    assert_eq!(plain.stages[0].id, a.id);

    let plan = expand(
        &manifest("seed = [5]\ninit-seed = [1, 2]\nchains = [[\"small\"]]"),
        "",
    );
    let (a, b) = (&plan.stages[0], &plan.stages[1]);
    assert_ne!(a.init_stream(), b.init_stream());
    assert_eq!(a.order_stream(), b.order_stream());
    assert_eq!((a.seeds.order, a.seeds.augment), (5, 5));
}

#[test]
fn kl_reduction_changes_distilled_stages_only() {
    let base = expand(&manifest(GRID), "");
    let mut m = manifest(GRID);
    m.training.kl_reduction = crate::manifest::KlReduction::ElementMean;
    let other = expand(&m, "");
    for (a, b) in base.stages.iter().zip(&other.stages) {
        assert_eq!(a.kd.is_none(), a.id == b.id, "{}", a.chain_label());
    }
}

#[test]
fn teacher_seed_policies() {
    let big_seeds = |plan: &Plan| -> Vec<u64> {
        plan.stages
            .iter()
            .filter(|s| s.model == "big")
            .map(|s| s.seed)
            .collect()
    };
    let with = |grid: &str, policy: &str| {
        expand(&manifest(&format!("{grid}teacher-seed = {policy}\n")), "")
    };
    let count_big = |policy: &str| {
        let plan = with(GRID, &format!("\"{policy}\""));
        let students: Vec<u64> = plan.cells.iter().map(|c| c.seed).collect();
        (big_seeds(&plan), students)
    };
    let (paired, _) = count_big("paired");
    assert_eq!(paired, vec![0, 1, 2]);
    let (shared, students) = count_big("shared");
    assert_eq!(shared, vec![0], "one teacher for every student seed");
    assert!(students.contains(&2));
    // A fixed teacher seed is not moved by seeds added before it.
    let fixed = with(GRID, "1");
    assert_eq!(big_seeds(&fixed), vec![1]);
    let more = GRID.replace("seed = [0, 1, 2]", "seed = [7, 0, 1, 2]");
    assert_ne!(more, GRID, "the grid fixture changed");
    let grown = with(&more, "1");
    for s in &fixed.stages {
        assert!(grown.stage(&s.id).is_some(), "stage {} changed", s.id);
    }
    let (independent, _) = count_big("independent");
    assert_eq!(independent.len(), 3);
    assert!(independent.iter().all(|s| *s > 2));
    // Paired is the default and leaves ids as they were.
    let default = expand(&manifest(GRID), "");
    let explicit = expand(&manifest(&format!("{GRID}teacher-seed = \"paired\"\n")), "");
    let ids = |p: &Plan| p.stages.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&default), ids(&explicit));
}

#[test]
fn stages_without_reuse_counts_what_each_cell_would_train_alone() {
    for grid in [
        GRID.to_string(),
        format!("{GRID}teacher-seed = \"shared\"\n"),
        "seed = [0, 1]\ntemperature = [2.0]\nalpha = [0.5]\nchains = [[\"big\", \"mid\", \"small\"], [\"mid\", \"small\"]]\n".into(),
    ] {
        let plan = expand(&manifest(&grid), "");
        let alone: usize = plan.cells.iter().map(|c| plan.stages_of(&[c]).len()).sum();
        assert_eq!(plan.stages_without_reuse(), alone, "{grid}");
    }
}

/// Whole-plan scans and stage-id comparisons on this thread while `f` runs.
fn counted<T>(f: impl FnOnce() -> T) -> (T, [usize; 2]) {
    let now = || [SCANS.with(|s| s.get()), ID_COMPARISONS.with(|c| c.get())];
    let before = now();
    let out = f();
    let after = now();
    (out, [after[0] - before[0], after[1] - before[1]])
}

#[test]
fn planning_work_grows_linearly_with_the_cells() {
    let mut comparisons = Vec::new();
    for seeds in [4, 40] {
        let list: Vec<String> = (0..seeds).map(|s| s.to_string()).collect();
        let grid = format!(
            "seed = [{}]\ntemperature = [2.0, 4.0]\nalpha = [0.5, 0.9]\nchains = [[\"big\", \"mid\", \"small\"], [\"big\", \"small\"], [\"small\"]]\n",
            list.join(", ")
        );
        let m = manifest(&grid);
        let (plan, [scans, ids]) = counted(|| expand(&m, ""));
        assert_eq!(plan.cells.len(), 9 * seeds);
        // Expansion merges equal stages through a hash map: no whole-plan helper per cell.
        assert_eq!(
            scans,
            0,
            "expanding {} cells scanned the plan",
            plan.cells.len()
        );
        // What `kdgrid plan`, `status` and an adaptive sweep ask: each helper scans once.
        let (_, [scans, summary_ids]) = counted(|| {
            let groups = plan.groups();
            let first: Vec<&Cell> = groups.iter().map(|(_, c)| c[0]).collect();
            plan.stages_of(&first);
            plan.stages_without_reuse();
            plan.count_by_role();
            plan.stages
                .iter()
                .for_each(|s| assert!(plan.stage(&s.id).is_some()));
        });
        assert_eq!(scans, 4, "{seeds} seeds");
        comparisons.push(ids + summary_ids);
    }
    // Ten times the cells: about ten times the id comparisons, not a hundred.
    assert!(
        comparisons[1] <= 12 * comparisons[0].max(1),
        "stage-id comparisons grew from {} to {} for 10x the cells",
        comparisons[0],
        comparisons[1]
    );
}
