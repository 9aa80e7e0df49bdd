//! Model families, validation splits, model selection and profiles, end to end on tiny runs.

use crate::support::*;
use polars::prelude::*;

/// The values of an unsigned integer column (nulls as 0).
fn uints(df: &DataFrame, name: &str) -> Vec<u32> {
    df.column(name)
        .unwrap()
        .u32()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect()
}

const FAMILIES: &str = r#"
[models.bn]
conv = [8, 16]
pool = [2]
batch-norm = true
dense = [32]

[models.plain]
family = "plain-cnn"
size = 2

[models.mlp]
family = "mlp"
dense = [64]
dropout = 0.3
"#;

fn families_manifest() -> String {
    TINY.replace("[models.teacher]", &format!("{FAMILIES}\n[models.teacher]"))
        .replace("seed = [0, 1]", "seed = [0]")
        .replace(
            "chains = [[\"student\"], [\"teacher\", \"student\"], [\"teacher\", \"assistant\", \"student\"]]",
            "chains = [[\"bn\"], [\"plain\"], [\"mlp\"], [\"bn\", \"mlp\"]]",
        )
}

#[test]
fn every_model_family_learns_and_reruns_bit_identically() {
    let text = families_manifest();
    let first = Workspace::new(&text);
    first.kdgrid(&["run", "--quiet"]).success();
    let runs = first.parquet("tiny", "runs.parquet");
    assert_eq!(
        strings(&runs, "family"),
        // The `bn` baseline is also the teacher of `bn > mlp`: one stage.
        vec!["cnn", "plain-cnn-2", "mlp", "mlp"],
        "{runs}"
    );
    let acc = floats(&runs, "test_accuracy");
    // 4 classes: chance is 0.25.
    assert!(acc.iter().all(|&a| a > 0.6), "{runs}");

    let second = Workspace::new(&text);
    second.kdgrid(&["run", "--quiet"]).success();
    let again = second.parquet("tiny", "runs.parquet");
    assert_eq!(
        strings(&runs, "weights_sha256"),
        strings(&again, "weights_sha256"),
        "batch norm and dropout must rerun bit-identically"
    );
}

#[test]
fn dropout_changes_training_but_not_the_initial_weights() {
    let text = families_manifest()
        .replace(
            "[models.teacher]",
            "[models.nodrop]\nfamily = \"mlp\"\ndense = [64]\n\n[models.teacher]",
        )
        .replace(
            "chains = [[\"bn\"], [\"plain\"], [\"mlp\"], [\"bn\", \"mlp\"]]",
            "chains = [[\"mlp\"], [\"nodrop\"]]",
        );
    let ws = Workspace::new(&text);
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("tiny", "runs.parquet");
    let init = strings(&runs, "init_sha256");
    let weights = strings(&runs, "weights_sha256");
    assert_eq!(init[0], init[1], "dropout draws nothing at init");
    assert_ne!(weights[0], weights[1], "dropout masks change training");
}

#[test]
fn best_val_selection_keeps_and_records_the_best_epoch() {
    let text = TINY
        .replace("seed = [0, 1]", "seed = [0]")
        .replace(
            "lr = 0.01",
            "lr = 0.01\nvalidation = 256\nselect = \"best-val\"",
        )
        .replace("epochs = 4", "epochs = 5");
    let ws = Workspace::new(&text);
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("tiny", "runs.parquet");
    let epochs = ws.parquet("tiny", "epochs.parquet");
    assert!(strings(&runs, "selection").iter().all(|s| s == "best-val"));
    let ids = strings(&runs, "stage_id");
    let selected = uints(&runs, "selected_epoch");
    let test_acc = floats(&runs, "test_accuracy");
    let val_acc = floats(&runs, "val_accuracy");
    let e_ids = strings(&epochs, "stage_id");
    let e_val = floats(&epochs, "val_accuracy");
    let e_test = floats(&epochs, "test_accuracy");
    for (i, id) in ids.iter().enumerate() {
        let rows: Vec<usize> = (0..e_ids.len()).filter(|&r| &e_ids[r] == id).collect();
        assert_eq!(rows.len(), 5);
        // The earliest epoch with the highest validation accuracy.
        let best = rows.iter().enumerate().fold(
            0,
            |b, (k, &r)| if e_val[r] > e_val[rows[b]] { k } else { b },
        );
        assert_eq!(selected[i] as usize, best + 1, "stage {id}");
        assert_eq!(test_acc[i], e_test[rows[best]]);
        assert_eq!(val_acc[i], e_val[rows[best]]);
        assert!(val_acc[i] > 0.6, "validation accuracy {}", val_acc[i]);
    }
}

#[test]
fn test_selection_is_refused_unless_explicit() {
    let ws = Workspace::new(&TINY.replace("lr = 0.01", "lr = 0.01\nselect = \"best-test\""));
    let out = ws.kdgrid(&["run"]).code(2);
    assert!(
        stderr(&out).contains("makes the reported accuracy optimistic"),
        "{}",
        stderr(&out)
    );
    assert!(!ws.results().exists());
}

#[test]
fn a_profile_runs_a_smaller_study_into_its_own_folder() {
    let text =
        format!("{TINY}\n[profiles.ci.training]\nepochs = 1\n\n[profiles.ci.grid]\nseed = [0]\n");
    let ws = Workspace::new(&text);
    let out = ws.kdgrid(&["validate"]).success();
    let text = stdout(&out);
    assert!(text.contains("is valid: 6 cells, 10 stages"), "{text}");
    assert!(
        text.contains("with profile `ci` is valid: 3 cells, 5 stages"),
        "{text}"
    );

    ws.kdgrid(&["--profile", "ci", "run", "--quiet"]).success();
    let runs = ws.parquet("tiny-ci", "runs.parquet");
    assert_eq!(runs.height(), 5);
    assert!(uints(&runs, "epochs").iter().all(|&e| e == 1));
    assert!(
        !ws.results().join("tiny").exists(),
        "the base study is untouched"
    );

    let out = ws.kdgrid(&["--profile", "nightly", "plan"]).code(2);
    assert!(
        stderr(&out).contains("profile `nightly` is not defined"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn warnings_are_printed_and_do_not_fail() {
    // An assistant larger than its teacher.
    let text = TINY.replace(
        "[models.assistant]\nconv = [6]\ndense = [16]",
        "[models.assistant]\nconv = [32, 64]\ndense = [128]",
    );
    let ws = Workspace::new(&text);
    let out = ws.kdgrid(&["validate"]).success();
    let err = stderr(&out);
    assert!(err.contains("1 warning"), "{err}");
    assert!(
        err.contains("an assistant is not between teacher and"),
        "{err}"
    );
    assert!(err.contains("m.toml:"), "{err}");
}

#[test]
fn validate_reports_every_broken_profile() {
    let text = format!(
        "{TINY}\n[profiles.a.training]\nepochs = 0\n\n[profiles.b.grid]\nseed = []\n\n[profiles.c.training]\nepochs = 1\n"
    );
    let ws = Workspace::new(&text);
    let out = ws.kdgrid(&["validate"]).code(2);
    let err = stderr(&out);
    assert!(
        err.contains("expected a positive integer, found 0"),
        "{err}"
    );
    assert!(err.contains("`grid.seed` is empty"), "{err}");
    assert!(
        stdout(&out).contains("with profile `c` is valid"),
        "{}",
        stdout(&out)
    );
}

/// The TAKD recipe at CIFAR's shape: plain CNNs 6 > 4 > 2 (and an MLP at the end of a chain of
/// four), SGD with momentum and weight decay, element-mean KL, best-validation selection.
#[test]
fn a_takd_style_chain_of_four_trains_end_to_end() {
    let text = r#"
name = "takd"

[dataset]
kind = "synthetic"
seed = 5
classes = 4
channels = 3
image-size = 32
train-size = 600
test-size = 200
noise = 0.5

[models.p6]
family = "plain-cnn"
size = 6

[models.p4]
family = "plain-cnn"
size = 4

[models.p2]
family = "plain-cnn"
size = 2

[models.mlp]
family = "mlp"
dense = [32]

[training]
epochs = 3
batch-size = 32
optimizer = "sgd"
lr = 0.05
momentum = 0.9
weight-decay = 0.0001
kl-reduction = "element-mean"
validation = 100
select = "best-val"

[grid]
# Seed 0 draws a plain-cnn-6 teacher that stalls at ~0.65 within 3 epochs on 600 images.
seed = [1]
temperature = [4.0]
alpha = [0.7]
chains = [["p2"], ["p6", "p4", "p2"], ["p6", "p4", "p2", "mlp"]]
"#;
    let ws = Workspace::new(text);
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("takd", "runs.parquet");
    assert_eq!(
        strings(&runs, "chain"),
        vec!["p2", "p6", "p6 > p4", "p6 > p4 > p2", "p6 > p4 > p2 > mlp"],
        "{runs}"
    );
    assert_eq!(
        strings(&runs, "role"),
        vec!["student", "teacher", "assistant", "student", "student"]
    );
    let acc = floats(&runs, "test_accuracy");
    assert!(acc.iter().all(|&a| a > 0.6), "{runs}");
    assert!(
        uints(&runs, "selected_epoch")
            .iter()
            .all(|&e| (1..=3).contains(&e))
    );
    assert_plan_params_match(&ws, "takd");
}
