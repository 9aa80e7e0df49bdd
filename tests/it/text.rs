//! Text: the shipped review sample, a word vocabulary, LSTM teacher and student.

use crate::support::*;
use std::path::Path;

fn manifest(extra_model: &str) -> String {
    format!(
        r#"
name = "text"

[dataset]
kind = "text"
path = "{}"
vocab-size = 200
max-length = 24

[models.teacher]
family = "lstm"
embedding = 16
hidden = [32, 32]
{extra_model}

[models.student]
family = "lstm"
embedding = 8
hidden = [8]

[training]
epochs = 8
batch-size = 32
optimizer = "adam"
lr = 0.01

[grid]
seed = [0]
temperature = [4.0]
alpha = [0.5]
chains = [["student"], ["teacher", "student"]]
"#,
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("experiments/data/reviews")
            .display()
    )
}

#[test]
fn lstms_learn_the_reviews_distill_and_rerun_bit_identically() {
    let ws = Workspace::new(&manifest(""));
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("text", "runs.parquet");
    let chains = strings(&runs, "chain");
    let accuracy = floats(&runs, "test_accuracy");
    for (c, a) in chains.iter().zip(&accuracy) {
        // Two balanced classes: chance is 0.5; negations need word order.
        assert!(*a > 0.8, "{c}: {a}");
    }
    // PyTorch's count: embedding rows (200 words, padding, unknown) x width, then per layer
    // 4 gates x (input and hidden weights + two biases), then the classifier.
    let lstm = |d: f64, h: f64| 4.0 * (d * h + h * h + 2.0 * h);
    let teacher = 202.0 * 16.0 + lstm(16.0, 32.0) + lstm(32.0, 32.0) + 32.0 * 2.0 + 2.0;
    let params = floats(&runs, "params");
    let t = chains.iter().position(|c| c == "teacher").unwrap();
    assert_eq!(params[t], teacher);
    let again = Workspace::new(&manifest(""));
    again.kdgrid(&["run", "--quiet"]).success();
    let digests = |ws: &Workspace| strings(&ws.parquet("text", "runs.parquet"), "weights_sha256");
    assert_eq!(digests(&ws), digests(&again));
}

#[test]
fn text_and_image_models_do_not_mix_and_bad_lines_are_located() {
    let ws = Workspace::new(&manifest("").replace(
        "[models.student]\nfamily = \"lstm\"\nembedding = 8\nhidden = [8]",
        "[models.student]\nconv = [4]",
    ));
    let err = stderr(&ws.kdgrid(&["validate"]).failure());
    assert!(
        err.contains("`models.student` is a `cnn`, but the dataset is text"),
        "{err}"
    );
    let ws = Workspace::new(&TINY.replace(
        "[models.student]\nconv = [4]",
        "[models.student]\nfamily = \"lstm\"\nhidden = [4]",
    ));
    let err = stderr(&ws.kdgrid(&["validate"]).failure());
    assert!(
        err.contains("`models.student` is an `lstm`: it reads text"),
        "{err}"
    );
    let ws = Workspace::new(
        &manifest("").replace("lr = 0.01\n", "lr = 0.01\naugment = { flip = true }\n"),
    );
    let err = stderr(&ws.kdgrid(&["validate"]).failure());
    assert!(
        err.contains("`training.augment`") && err.contains("text"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.tsv"), "pos\tfine\nno tab here\n").unwrap();
    std::fs::write(dir.path().join("test.tsv"), "pos\tfine\n").unwrap();
    let text = manifest("").replace(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("experiments/data/reviews")
            .display()
            .to_string(),
        dir.path().to_str().unwrap(),
    );
    let ws = Workspace::new(&text);
    let err = stderr(&ws.kdgrid(&["run", "--quiet"]).failure());
    assert!(err.contains("train.tsv") && err.contains("line 2"), "{err}");
}
