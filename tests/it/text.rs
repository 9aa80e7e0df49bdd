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

/// `scripts/examples/sentiment-data.py` lays out IMDB's folders and GLUE's SST-2 files (tabs,
/// line breaks and `<br />` inside texts, a quote character SST-2 leaves unescaped) as lines
/// kdgrid reads: one text per line, every review kept, labels named.
#[test]
fn public_sentiment_sets_are_laid_out_as_text_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let imdb = dir.path().join("aclImdb");
    for (split, label, n) in [
        ("train", "pos", 3),
        ("train", "neg", 2),
        ("test", "pos", 1),
        ("test", "neg", 1),
    ] {
        let folder = imdb.join(split).join(label);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..n {
            std::fs::write(
                folder.join(format!("{i}_7.txt")),
                format!("A {label} review.<br /><br />With\ta tab and\na break {i}."),
            )
            .unwrap();
        }
    }
    let sst = dir.path().join("SST-2");
    std::fs::create_dir_all(&sst).unwrap();
    std::fs::write(
        sst.join("train.tsv"),
        "sentence\tlabel\nhide new secretions \t0\nthe \"greatest\" film \t1\n",
    )
    .unwrap();
    std::fs::write(
        sst.join("dev.tsv"),
        "sentence\tlabel\nit 's a charming trip \t1\n",
    )
    .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/examples/sentiment-data.py");
    for (kind, src) in [("imdb", &imdb), ("sst2", &sst)] {
        let out = std::process::Command::new("python3")
            .arg(&script)
            .args([kind, src.to_str().unwrap()])
            .arg(dir.path().join(kind))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lines = |path: &str| std::fs::read_to_string(dir.path().join(path)).unwrap();
    let train = lines("imdb/train.tsv");
    assert_eq!(train.lines().count(), 5, "{train}");
    assert_eq!(train.matches("negative\t").count(), 2);
    assert!(
        train
            .lines()
            .all(|l| l.split('\t').count() == 2 && !l.contains("<br")),
        "{train}"
    );
    assert!(
        train.contains("positive\tA pos review. With a tab and a break 0."),
        "{train}"
    );
    assert_eq!(
        lines("sst2/train.tsv"),
        "negative\thide new secretions\npositive\tthe \"greatest\" film\n"
    );
    assert_eq!(lines("sst2/test.tsv"), "positive\tit 's a charming trip\n");
    // kdgrid trains on what the script wrote.
    let ws = Workspace::new(&format!(
        "name = \"imdb\"\n[dataset]\nkind = \"text\"\npath = \"{}\"\nmax-length = 8\n[models.m]\nfamily = \"lstm\"\nhidden = [4]\n[training]\nepochs = 1\nbatch-size = 4\noptimizer = \"adam\"\nlr = 0.01\n[grid]\nseed = [0]\nchains = [[\"m\"]]\n",
        dir.path().join("imdb").display()
    ));
    ws.kdgrid(&["run", "--quiet"]).success();
}
