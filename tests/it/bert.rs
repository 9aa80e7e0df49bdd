//! BERT teachers and DistilBERT students: Hugging Face checkpoints (`save_pretrained` folders)
//! give Python's token ids and PyTorch's logits in kdgrid; the shipped teacher distills into a
//! DistilBERT-style student and an LSTM reading other ids; manifests that cannot work are
//! refused at their line.

use crate::support::*;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The bert-distill study on the shipped reviews, with `models` and `chains`.
fn manifest(models: &str, chains: &str, max_length: usize, data: &Path) -> String {
    format!(
        r#"
name = "bert"

[dataset]
kind = "text"
path = "{data}"
vocab-size = 200
max-length = {max_length}

{models}

[training]
epochs = 3
batch-size = 32
optimizer = "adam"
lr = 0.01

[grid]
seed = [0, 1]
temperature = [4.0]
alpha = [0.5]
chains = {chains}
"#,
        data = data.display()
    )
}

fn shipped_teacher() -> String {
    format!(
        "[models.bert]\nfamily = \"bert\"\nweights = \"{}\"\n",
        repo("experiments/data/reviews-bert").display()
    )
}

/// The shipped teacher (fine-tuned in PyTorch to 0.97 on the test split, as
/// `bert-teacher.py build` printed) is evaluated once and teaches a DistilBERT-style student
/// (half its depth, starting from its first layer, with the cosine loss on hidden states)
/// reading its WordPiece ids, and an LSTM reading the dataset's words; reruns reuse every stage
/// and a fresh folder gives the same weights.
#[test]
fn a_bert_teacher_distills_into_students_that_tokenize_differently() {
    let models = format!(
        "{}\n[models.distil]\nfamily = \"distilbert\"\nlayers = 1\nhidden = 64\nheads = 4\nintermediate = 128\ntokenizer = \"{}\"\ninit-from = {{ model = \"bert\" }}\nhidden-loss = {{ kind = \"cosine\", weight = 1.0 }}\nlr = 0.001\n\n[models.lstm]\nfamily = \"lstm\"\nembedding = 16\nhidden = [32]\n",
        shipped_teacher(),
        repo("experiments/data/reviews-bert/tokenizer.json").display()
    );
    let text = manifest(
        &models,
        r#"[["lstm"], ["bert", "lstm"], ["distil"], ["bert", "distil"]]"#,
        24,
        &repo("experiments/data/reviews"),
    );
    let ws = Workspace::new(&text);
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("bert", "runs.parquet");
    let chains = strings(&runs, "chain");
    let accuracy = floats(&runs, "test_accuracy");
    let params = floats(&runs, "params");
    let status = strings(&runs, "status");
    assert!(status.iter().all(|s| s == "ok"), "{status:?}");
    let teacher = chains.iter().position(|c| c == "bert").unwrap();
    assert_eq!(accuracy[teacher], 0.97, "PyTorch's test accuracy");
    assert_eq!(params[teacher], 117_314.0, "transformers' parameter count");
    for (i, c) in chains.iter().enumerate() {
        if c.ends_with("lstm") {
            assert!(accuracy[i] >= 0.9, "{c}: {}", accuracy[i]);
        }
        if c.ends_with("distil") {
            // Half the teacher's depth, from its first layer, 3 epochs.
            assert!(accuracy[i] >= 0.65, "{c}: {}", accuracy[i]);
        }
    }
    let teacher_accuracy = floats(&runs, "teacher_accuracy");
    let distilled = chains.iter().position(|c| c == "bert > distil").unwrap();
    assert_eq!(teacher_accuracy[distilled], 0.97);
    let again = stdout(&ws.kdgrid(&["run"]).success());
    // The teacher once, for both students and the layers the DistilBERT starts from.
    assert_eq!(chains.iter().filter(|c| *c == "bert").count(), 1);
    assert!(again.contains("0 trained, 9 reused"), "{again}");
    // Same weights from a fresh folder.
    let other = Workspace::new(&text);
    other.kdgrid(&["run", "--quiet"]).success();
    let sha = |w: &Workspace| {
        let runs = w.parquet("bert", "runs.parquet");
        let mut rows: Vec<(String, String)> = strings(&runs, "stage_id")
            .into_iter()
            .zip(strings(&runs, "weights_sha256"))
            .collect();
        rows.sort();
        rows
    };
    assert_eq!(sha(&ws), sha(&other));
}

#[test]
fn encoders_that_cannot_work_are_refused_at_their_line() {
    let reviews = repo("experiments/data/reviews");
    let checkpoint = repo("experiments/data/reviews-bert");
    let cases: Vec<(String, &str, Vec<&str>)> = vec![
        (
            "[models.bert]\nfamily = \"bert\"\nlayers = 2\nhidden = 64\nheads = 4\n".into(),
            r#"[["bert"]]"#,
            vec!["`models.bert` (`bert`) reads subword ids: it needs a tokenizer"],
        ),
        (
            format!(
                "[models.bert]\nfamily = \"bert\"\nweights = \"{}\"\nlayers = 3\n",
                checkpoint.display()
            ),
            r#"[["bert"]]"#,
            vec!["`models.bert.layers = 3`, but the checkpoint's `config.json` says 2"],
        ),
        (
            format!(
                "[models.bert]\nfamily = \"bert\"\nhidden = [64]\nlayers = 1\nheads = 4\ntokenizer = \"{}\"\n",
                checkpoint.display()
            ),
            r#"[["bert"]]"#,
            vec!["`models.bert.hidden` is one width for `bert`"],
        ),
        (
            format!(
                "[models.bert]\nfamily = \"distilbert\"\nhidden = 30\nlayers = 1\nheads = 4\ntokenizer = \"{}\"\n",
                checkpoint.display()
            ),
            r#"[["bert"]]"#,
            vec!["`hidden = 30` is not a multiple of `heads = 4`"],
        ),
        (
            format!(
                "[models.bert]\nfamily = \"distilbert\"\nweights = \"{}\"\n",
                checkpoint.display()
            ),
            r#"[["bert"]]"#,
            vec!["describes a `bert` model, not `distilbert`"],
        ),
        (
            "[models.bert]\nfamily = \"bert\"\nlayers = 1\nhidden = 8\nheads = 2\ntokenizer = \"missing/tokenizer.json\"\n".into(),
            r#"[["bert"]]"#,
            vec!["`models.bert.tokenizer`", "missing/tokenizer.json", "no such file"],
        ),
        (
            format!(
                "[models.lstm]\nfamily = \"lstm\"\nhidden = [8]\ntokenizer = \"{}\"\n",
                checkpoint.display()
            ),
            r#"[["lstm"]]"#,
            vec!["an `lstm` reads the dataset's words"],
        ),
        (
            format!(
                "[models.cnn]\nconv = [8]\nweights = \"{}\"\n",
                checkpoint.display()
            ),
            r#"[["cnn"]]"#,
            vec!["only `bert` and `distilbert` read Hugging Face checkpoint folders"],
        ),
        (
            format!(
                "{}\n[models.small]\nfamily = \"distilbert\"\nlayers = 1\nhidden = 32\nheads = 4\ntokenizer = \"{}\"\ninit-from = {{ model = \"bert\" }}\n",
                shipped_teacher(),
                checkpoint.display()
            ),
            r#"[["bert", "small"]]"#,
            vec!["`models.small.init-from`: `bert`'s layers do not fit: hidden 32 vs 64, intermediate 128 vs 128".split(", intermediate").next().unwrap()],
        ),
        (
            format!(
                "{}\n[models.small]\nfamily = \"distilbert\"\nlayers = 1\nhidden = 64\nheads = 4\nintermediate = 128\ntokenizer = \"{}\"\ninit-from = {{ model = \"bert\", layers = [2] }}\n",
                shipped_teacher(),
                checkpoint.display()
            ),
            r#"[["small"]]"#,
            vec!["`models.small.init-from.layers` = [2]: one layer of `bert` (0 to 1) for each of the 1 layers"],
        ),
        (
            format!(
                "{}\n[models.lstm]\nfamily = \"lstm\"\nhidden = [8]\ninit-from = {{ model = \"bert\" }}\n",
                shipped_teacher()
            ),
            r#"[["lstm"]]"#,
            vec!["`models.lstm.init-from` applies to `bert` and `distilbert` models"],
        ),
        (
            format!(
                "[models.lstm]\nfamily = \"lstm\"\nhidden = [8]\n\n[models.small]\nfamily = \"distilbert\"\nlayers = 1\nhidden = 64\nheads = 4\ntokenizer = \"{}\"\nhidden-loss = {{ kind = \"cosine\", weight = 1.0 }}\n",
                checkpoint.display()
            ),
            r#"[["lstm", "small"]]"#,
            vec!["`models.small.hidden-loss` compares its hidden states with `lstm`'s"],
        ),
        (
            format!(
                "[models.small]\nfamily = \"distilbert\"\nlayers = 1\nhidden = 64\nheads = 4\ntokenizer = \"{}\"\ninit-from = {{ model = \"small\" }}\n",
                checkpoint.display()
            ),
            r#"[["small"]]"#,
            vec!["`models.small.init-from`: `small` is not a `bert` or `distilbert` model of its own weights"],
        ),
    ];
    for (models, chains, expected) in cases {
        let ws = Workspace::new(&manifest(&models, chains, 24, &reviews));
        let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
        for e in expected {
            assert!(err.contains(e), "{models}\n--- wanted `{e}` in:\n{err}");
        }
        assert!(err.contains("m.toml:"), "names the file and line: {err}");
    }
    // More tokens than positions.
    let ws = Workspace::new(&manifest(
        &shipped_teacher(),
        r#"[["bert"]]"#,
        600,
        &reviews,
    ));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("`dataset.max-length = 600` is longer than `models.bert`'s 512 positions"),
        "{err}"
    );
    // Fewer tokens than an encoder's special tokens leave room for.
    let ws = Workspace::new(&manifest(&shipped_teacher(), r#"[["bert"]]"#, 2, &reviews));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("`dataset.max-length = 2` leaves `models.bert` no room for a token"),
        "{err}"
    );
    // A tokenizer Python pads on the left.
    let left = tempfile::tempdir().unwrap();
    std::fs::copy(
        checkpoint.join("tokenizer.json"),
        left.path().join("tokenizer.json"),
    )
    .unwrap();
    let config = std::fs::read_to_string(checkpoint.join("tokenizer_config.json")).unwrap();
    let config = config.replacen('{', "{\n  \"padding_side\": \"left\",", 1);
    std::fs::write(left.path().join("tokenizer_config.json"), config).unwrap();
    let ws = Workspace::new(&manifest(
        &format!(
            "[models.b]\nfamily = \"bert\"\nlayers = 1\nhidden = 8\nheads = 2\ntokenizer = \"{}\"\n",
            left.path().display()
        ),
        r#"[["b"]]"#,
        24,
        &reviews,
    ));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("`padding_side = \"left\"`: kdgrid pads and cuts texts on the right"),
        "{err}"
    );
    // An encoder on images.
    let ws = Workspace::new(&format!(
        "name = \"x\"\n[dataset]\nkind = \"synthetic\"\n{}\n[training]\nepochs = 1\n[grid]\nseed = [0]\nchains = [[\"bert\"]]\n",
        shipped_teacher()
    ));
    let err = flat(&stderr(&ws.kdgrid(&["plan"]).failure()));
    assert!(
        err.contains("`models.bert` is a `bert`: it reads text"),
        "{err}"
    );
}

/// A student whose `init-from` stage fails is skipped with that reason, and its sweep goes on.
#[test]
fn a_student_whose_source_failed_is_skipped_saying_why() {
    let models = format!(
        "{}\n[models.distil]\nfamily = \"distilbert\"\nlayers = 1\nhidden = 64\nheads = 4\nintermediate = 128\ntokenizer = \"{}\"\ninit-from = {{ model = \"bert\" }}\n\n[models.lstm]\nfamily = \"lstm\"\nhidden = [8]\n",
        shipped_teacher(),
        repo("experiments/data/reviews-bert").display()
    );
    let text = manifest(
        &models,
        r#"[["distil"], ["lstm"]]"#,
        24,
        &repo("experiments/data/reviews"),
    );
    let ws = Workspace::new(&text.replace("epochs = 3", "epochs = 1"));
    ws.kdgrid_env(&["run", "--quiet"], &[("KDGRID_FAULT", "panic:bert")])
        .success();
    let runs = ws.parquet("bert", "runs.parquet");
    let (chains, status) = (strings(&runs, "chain"), strings(&runs, "status"));
    let errors = strings(&runs, "error");
    for (i, c) in chains.iter().enumerate() {
        match c.as_str() {
            "bert" => assert_eq!(status[i], "failed"),
            "distil" => {
                assert_eq!(status[i], "skipped");
                assert_eq!(
                    errors[i],
                    "the stage it starts from (`init-from`) did not train"
                );
            }
            _ => assert_eq!(status[i], "ok", "{c}"),
        }
    }
}

/// A checkpoint of 2 classes on 3 labels: refused as it is (the classifier's shape named),
/// fine-tuned with a fresh head when asked, also when the file has no classifier (here dropped
/// by a `key-map` rule that renames it to nothing).
#[test]
fn a_checkpoint_of_other_classes_is_fine_tuned_with_a_new_head() {
    let dir = tempfile::tempdir().unwrap();
    let reviews = repo("experiments/data/reviews");
    for split in ["train", "test"] {
        let text = std::fs::read_to_string(reviews.join(format!("{split}.tsv"))).unwrap();
        // A third label, "mixed", for every fifth review.
        let relabelled: String = text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                let (label, body) = l.split_once('\t').unwrap();
                format!("{}\t{body}\n", if i % 5 == 0 { "mixed" } else { label })
            })
            .collect();
        std::fs::write(dir.path().join(format!("{split}.tsv")), relabelled).unwrap();
    }
    let teacher = |extra: &str| {
        format!(
            "[models.bert]\nfamily = \"bert\"\nweights = \"{}\"\n{extra}",
            repo("experiments/data/reviews-bert").display()
        )
    };
    let ws = Workspace::new(&manifest(&teacher(""), r#"[["bert"]]"#, 24, dir.path()));
    let err = flat(&stderr(&ws.kdgrid(&["run"]).failure()));
    assert!(
        err.contains("`classifier.weight` is [2, 64] in the file, [3, 64] in the model")
            && err.contains("fine-tune"),
        "{err}"
    );
    let ws = Workspace::new(&manifest(
        &teacher(
            // The file's classifier dropped by the key-map: a fresh head all the same.
            "fine-tune = { epochs = 2, lr = 0.001 }\nkey-map = [[\"^classifier\\\\..*\", \"\"]]\n",
        ),
        r#"[["bert"]]"#,
        24,
        dir.path(),
    ));
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("bert", "runs.parquet");
    let accuracy = floats(&runs, "test_accuracy");
    // Two epochs on a new head over the teacher's features: well above a third.
    assert!(accuracy.iter().all(|&a| a > 0.6), "{accuracy:?}");
    assert_eq!(floats(&runs, "params")[0], 117_314.0 + 64.0 + 1.0);
}

/// Writes a text dataset of real-shaped sentences (accents, CJK, emoji, digits, HTML line
/// breaks as in IMDB's files, contractions, long texts that must be cut) to `dir`.
#[cfg(feature = "tch")]
fn tricky_reviews(dir: &Path) {
    let pieces = [
        "Café société was <br /><br />a triumph — 10/10!",
        "I didn't like it; the plot's twists were predictable...",
        "電影很好看 and the soundtrack 🎵 was great",
        "Naïve, overlong (148 minutes) and DULL dull dull.",
        "An über-stylish, self-aware pastiche of 1970s noir",
        "worst. movie. ever. $5 wasted :(",
        "Beyoncé's cameo: superb; Zoë Saldaña: wonderful",
        "it was OK, not great, not terrible, just ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok",
    ];
    let mut train = String::new();
    let mut test = String::new();
    for i in 0..48 {
        let label = ["neg", "pos"][i % 2];
        let text = format!(
            "{} {}",
            pieces[i % pieces.len()],
            pieces[(i * 3 + 1) % pieces.len()]
        );
        let line = format!("{label}\t{text}\n");
        if i % 4 == 3 {
            test.push_str(&line);
        } else {
            train.push_str(&line);
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("train.tsv"), train).unwrap();
    std::fs::write(dir.join("test.tsv"), test).unwrap();
}

/// A BERT and a DistilBERT built by `transformers` (seeded random weights with a wide
/// initializer, so logits are large; WordPiece vocabularies trained by `tokenizers` on the
/// training split) and saved with `save_pretrained`, the DistilBERT's with `vocab.txt` only:
/// kdgrid's ids equal the Python tokenizer's on every test text (12 tokens: most are cut), its
/// logits PyTorch's within 1e-4 (`kdgrid predict`), and its parameter counts `transformers`'.
#[cfg(feature = "tch")]
#[test]
fn hugging_face_checkpoints_give_python_ids_and_pytorch_logits() {
    let python = std::env::var("KDGRID_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = repo("scripts/examples/bert-teacher.py");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("reviews");
    tricky_reviews(&data);
    let builds = [
        ("bert", ["2", "32", "4", "64"]),
        ("distilbert", ["3", "48", "3", "100"]),
    ];
    for (family, [layers, hidden, heads, intermediate]) in builds {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args([
                "build", "--family", family, "--layers", layers, "--hidden", hidden,
            ])
            .args([
                "--heads",
                heads,
                "--intermediate",
                intermediate,
                "--vocab",
                "300",
            ])
            .args(["--epochs", "0", "--init-std", "0.3", "--max-length", "12"])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(dir.path().join(family))
            .output()
            .expect("python with transformers (run through `make test`)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The DistilBERT's folder keeps only `vocab.txt` (and its tokenizer_config.json), as older
    // checkpoints do: its tokenizer is built as `transformers` converts a slow BertTokenizer.
    std::fs::remove_file(dir.path().join("distilbert/tokenizer.json")).unwrap();
    let models = format!(
        "[models.bert]\nfamily = \"bert\"\nweights = \"{}\"\n\n[models.distil]\nfamily = \"distilbert\"\nweights = \"{}\"\n",
        dir.path().join("bert").display(),
        dir.path().join("distilbert").display()
    );
    let ws = Workspace::new(&manifest(&models, r#"[["bert"], ["distil"]]"#, 12, &data));
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("bert", "runs.parquet");
    for (model, folder, row) in [("bert", "bert", 1), ("distil", "distilbert", 2)] {
        let id = stage_id(&ws, &[], model, 0);
        let predictions = dir.path().join(format!("{model}.json"));
        ws.kdgrid(&[
            "predict",
            "--stage",
            &id,
            "--limit",
            "1000",
            "--inputs",
            "--out",
            predictions.to_str().unwrap(),
        ])
        .success();
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg("check")
            .arg("--model")
            .arg(dir.path().join(folder))
            .arg("--data")
            .arg(&data)
            .arg("--predictions")
            .arg(&predictions)
            .args(["--max-length", "12", "--row", &row.to_string()])
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{model}: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
        assert_eq!(report["texts"], 12, "every test text");
        assert_eq!(report["ids_equal"], true, "{report}");
        assert!(report["logit_range"].as_f64().unwrap() > 0.5, "{report}");
        let i = strings(&runs, "model")
            .iter()
            .position(|m| m == model)
            .unwrap();
        assert_eq!(
            floats(&runs, "params")[i],
            report["params"].as_f64().unwrap(),
            "{model}: transformers' parameter count"
        );
    }
}
