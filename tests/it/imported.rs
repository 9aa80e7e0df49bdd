//! Teachers trained elsewhere: a ResNet trained by a PyTorch script
//! (`scripts/examples/pytorch-teacher.py`) is imported from its `state_dict` file, gives
//! PyTorch's logits, and distills into a student; files that do not fit are refused before
//! anything trains.

use crate::support::*;
use std::path::{Path, PathBuf};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The shipped fruit images, a ResNet-8 teacher from `WEIGHTS` and a small student.
fn manifest(weights: &str, teacher: &str) -> String {
    format!(
        r#"
name = "imported"

[dataset]
kind = "image-folder"
path = "{data}"

[models.teacher]
family = "resnet"
size = 8
weights = "{weights}"
{teacher}

[models.student]
conv = [8]
dense = [16]

[training]
epochs = 3
batch-size = 32
optimizer = "adam"
lr = 0.005

[grid]
seed = [0, 1]
temperature = [4.0]
alpha = [0.5]
chains = [["student"], ["teacher", "student"]]
"#,
        data = repo("experiments/data/fruit").display()
    )
}

#[test]
fn the_shipped_teacher_imports_once_for_every_seed_and_distills() {
    let weights = repo("experiments/data/fruit-resnet8.safetensors");
    let ws = Workspace::new(&manifest(weights.to_str().unwrap(), ""));
    let stages = plan_stages(&ws, &[]);
    // Used as imported, the teacher draws nothing random: one stage for both seeds.
    assert_eq!(
        stages.iter().filter(|s| s.0 == "teacher").count(),
        1,
        "{stages:?}"
    );
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("imported", "runs.parquet");
    let chains = strings(&runs, "chain");
    let accuracy = floats(&runs, "test_accuracy");
    let teacher = chains.iter().position(|c| c == "teacher").unwrap();
    // scripts/examples/pytorch-teacher.py measured 0.95 on these 100 test images in PyTorch.
    assert!(
        (accuracy[teacher] - 0.95).abs() < 1e-9,
        "{}",
        accuracy[teacher]
    );
    for (c, a) in chains.iter().zip(&accuracy) {
        assert!(*a > 0.5, "{c}: {a} (chance is 0.2)");
    }
    // Imported as it is (epoch 0), the teacher has no "last epoch" apart from its evaluation.
    let summary = std::fs::read_to_string(ws.results().join("imported/summary.csv")).unwrap();
    assert!(!summary.contains("last_test_accuracy"), "{summary}");
    // Its file's digest is in the ids: another file is another teacher.
    let copy = ws.dir.path().join("other.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    bytes.push(b' ');
    std::fs::write(&copy, bytes).unwrap();
    let other = Workspace::new(&manifest(copy.to_str().unwrap(), ""));
    let teacher_id = |ws: &Workspace| stage_id(ws, &[], "teacher", 0);
    assert_ne!(teacher_id(&ws), teacher_id(&other));
}

#[test]
fn files_that_do_not_fit_are_refused_before_training() {
    let weights = repo("experiments/data/fruit-resnet8.safetensors");
    // A ResNet-14 file layout is not a ResNet-8's.
    let ws =
        Workspace::new(&manifest(weights.to_str().unwrap(), "").replace("size = 8", "size = 14"));
    let err = stderr(&ws.kdgrid(&["run", "--quiet"]).failure());
    assert!(err.contains("fruit-resnet8.safetensors"), "{err}");
    assert!(
        err.contains("`layer1.1.conv1.weight`") && err.contains("missing from the file"),
        "{err}"
    );
    // Nothing trained, not even the students that do not need the teacher.
    let stages = ws.results().join("imported/stages");
    let trained = std::fs::read_dir(&stages).map_or(0, |d| {
        d.filter(|e| e.as_ref().unwrap().path().is_dir()).count()
    });
    assert_eq!(trained, 0);
    // A missing file is a manifest error at its line.
    let ws = Workspace::new(&manifest("nowhere.safetensors", ""));
    let err = stderr(&ws.kdgrid(&["plan"]).failure());
    assert!(
        err.contains("models.teacher.weights") && err.contains("nowhere.safetensors"),
        "{err}"
    );
    assert!(err.contains("m.toml:"), "{err}");
    // Training settings of an imported model go in `fine-tune`.
    let ws = Workspace::new(&manifest(weights.to_str().unwrap(), "epochs = 3"));
    let err = stderr(&ws.kdgrid(&["plan"]).failure());
    assert!(err.contains("fine-tune"), "{err}");
}

#[test]
fn a_fine_tuned_teacher_trains_from_the_file_with_a_new_head() {
    let weights = repo("experiments/data/fruit-resnet8.safetensors");
    // Four of the five classes: the file's 5-way head cannot load, so it is replaced.
    let dir = tempfile::tempdir().unwrap();
    for split in ["train", "test"] {
        for class in ["apple", "banana", "lime", "plum"] {
            let from = repo(&format!("experiments/data/fruit/{split}/{class}"));
            let to = dir.path().join(split).join(class);
            std::fs::create_dir_all(&to).unwrap();
            for f in std::fs::read_dir(from).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
            }
        }
    }
    let text = manifest(weights.to_str().unwrap(), "").replace(
        &format!("path = \"{}\"", repo("experiments/data/fruit").display()),
        &format!("path = \"{}\"", dir.path().display()),
    );
    let ws = Workspace::new(&text);
    let err = stderr(&ws.kdgrid(&["run", "--quiet"]).failure());
    assert!(
        err.contains("`fc.weight` is [5, 64] in the file, [4, 64] in the model"),
        "{err}"
    );
    let ws = Workspace::new(&text.replace(
        "weights = ",
        "fine-tune = { epochs = 2, lr = 0.002 }\nweights = ",
    ));
    // Fine-tuned, the teacher trains per seed again.
    assert_eq!(
        plan_stages(&ws, &[])
            .iter()
            .filter(|s| s.0 == "teacher")
            .count(),
        2
    );
    ws.kdgrid(&["run", "--quiet"]).success();
    let runs = ws.parquet("imported", "runs.parquet");
    let chains = strings(&runs, "chain");
    let accuracy = floats(&runs, "test_accuracy");
    for (c, a) in chains
        .iter()
        .zip(&accuracy)
        .filter(|(c, _)| *c == "teacher")
    {
        // Four-way chance is 0.25; the imported features carry over.
        assert!(*a > 0.6, "{c}: {a}");
    }
}

#[test]
fn resnets_train_and_count_parameters_as_planned() {
    let ws = Workspace::new(
        r#"
name = "resnets"

[dataset]
kind = "synthetic"
seed = 5
classes = 3
train-size = 96
test-size = 48
image-size = 8
channels = 3
noise = 0.3

[models.r8]
family = "resnet"
size = 8

[models.r14]
family = "resnet"
size = 14

[training]
epochs = 2
batch-size = 16
optimizer = "adam"
lr = 0.01

[grid]
seed = [0]
temperature = [2.0]
alpha = [0.5]
chains = [["r14", "r8"]]
"#,
    );
    ws.kdgrid(&["run", "--quiet"]).success();
    assert_plan_params_match(&ws, "resnets");
    let runs = ws.parquet("resnets", "runs.parquet");
    for (m, a) in strings(&runs, "model")
        .iter()
        .zip(floats(&runs, "test_accuracy"))
    {
        assert!(a > 0.6, "{m}: {a} (chance is 0.33)");
    }
}

/// PyTorch trains a ResNet-8 (saved as safetensors, as a `state_dict` and as a training
/// checkpoint nesting it under `state_dict` next to the epoch and optimizer state) and a
/// MobileNetV2; kdgrid's logits on the same normalized images agree with PyTorch's within
/// 1e-4, from every file.
#[cfg(feature = "tch")]
#[test]
fn a_pytorch_trained_teacher_gives_pytorch_logits() {
    let python = std::env::var("KDGRID_TORCH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = repo("scripts/examples/pytorch-teacher.py");
    let dir = tempfile::tempdir().unwrap();
    let (st, pt) = (dir.path().join("t.safetensors"), dir.path().join("t.pt"));
    let checkpoint = dir.path().join("checkpoint.pth");
    let mobile = dir.path().join("mobilenet.pt");
    let resnet = ["--arch", "resnet", "--depth", "8"];
    let mobilenet = ["--arch", "mobilenet-v2", "--depth", "8"];
    for (arch, epochs, files) in [
        (
            resnet,
            "2",
            vec![
                "--out",
                st.to_str().unwrap(),
                "--pt",
                pt.to_str().unwrap(),
                "--checkpoint",
                checkpoint.to_str().unwrap(),
            ],
        ),
        (mobilenet, "1", vec!["--pt", mobile.to_str().unwrap()]),
    ] {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .arg("train")
            .args(arch)
            .args(["--epochs", epochs, "--data"])
            .arg(repo("experiments/data/fruit"))
            .args(files)
            .output()
            .expect("python with torch (run through `make test`)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (file, arch) in [
        (&st, resnet),
        (&pt, resnet),
        (&checkpoint, resnet),
        (&mobile, mobilenet),
    ] {
        let mut text = manifest(file.to_str().unwrap(), "");
        if arch == mobilenet {
            text = text.replace("family = \"resnet\"\nsize = 8", "family = \"mobilenet-v2\"");
        }
        let ws = Workspace::new(&text);
        ws.kdgrid(&["run", "--quiet"]).success();
        let id = stage_id(&ws, &[], "teacher", 0);
        let predictions = ws.dir.path().join("p.json");
        let p = predictions.to_str().unwrap();
        ws.kdgrid(&[
            "predict", "--stage", &id, "--inputs", "--limit", "100", "--out", p,
        ])
        .success();
        let check = std::process::Command::new(&python)
            .arg(&script)
            .arg("check")
            .args(arch)
            .args(["--predictions", p, "--weights"])
            .arg(file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success() && text.contains("OK"),
            "{}: {text}{}",
            file.display(),
            String::from_utf8_lossy(&check.stderr)
        );
    }
}

/// Three seeds of a teacher, their ensemble, and students of each.
pub(crate) const ENSEMBLE: &str = r#"
name = "ensemble"

[dataset]
kind = "synthetic"
seed = 11
classes = 4
train-size = 512
test-size = 256
image-size = 10
noise = 0.5

[models.teacher]
conv = [8]
dense = [16]

[models.student]
conv = [4]

[models.trio]
ensemble = "teacher"
seeds = [0, 1, 2]
COMBINE

[training]
epochs = 3
batch-size = 32
optimizer = "adam"
lr = 0.01

[grid]
seed = [0, 1, 2]
temperature = [4.0]
alpha = [0.5]
chains = [["teacher"], ["student"], ["teacher", "student"], ["trio", "student"]]
"#;

#[test]
fn an_ensemble_teacher_reuses_its_members_and_reports_its_own_row() {
    for combine in ["", "combine = \"mean-probabilities\""] {
        let ws = Workspace::new(&ENSEMBLE.replace("COMBINE", combine));
        let stages = plan_stages(&ws, &[]);
        // 3 teachers (also the ensemble's members), 3 students, 3 KD students, 1 ensemble
        // (for every seed), 3 students of the ensemble: nothing twice.
        assert_eq!(stages.len(), 13, "{stages:?}");
        assert_eq!(stages.iter().filter(|s| s.0 == "trio").count(), 1);
        let json: serde_json::Value =
            serde_json::from_str(&stdout(&ws.kdgrid(&["plan", "--json"]).success())).unwrap();
        let trio = json["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["chain"] == "trio")
            .unwrap();
        let teachers: Vec<&str> = stages
            .iter()
            .filter(|s| s.0 == "teacher")
            .map(|s| s.2.as_str())
            .collect();
        let members: Vec<&str> = trio["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert_eq!(
            members, teachers,
            "the members are the seed grid's teachers"
        );
        ws.kdgrid(&["run", "--quiet"]).success();
        let runs = ws.parquet("ensemble", "runs.parquet");
        let chains = strings(&runs, "chain");
        let accuracy = floats(&runs, "test_accuracy");
        let params = floats(&runs, "params");
        let row = |c: &str| chains.iter().position(|x| x == c).unwrap();
        let of = |c: &str| -> Vec<f64> {
            chains
                .iter()
                .zip(&accuracy)
                .filter(|(x, _)| *x == c)
                .map(|(_, a)| *a)
                .collect()
        };
        let (ensemble, members) = (accuracy[row("trio")], of("teacher"));
        // Averaging three teachers beats them on average (here by ~7 points).
        let mean = members.iter().sum::<f64>() / 3.0;
        assert!(
            ensemble > mean,
            "{combine}: ensemble {ensemble} vs members {members:?}"
        );
        assert_eq!(params[row("trio")], 3.0 * params[row("teacher")]);
        for a in of("trio > student") {
            assert!(
                a > 0.6,
                "{combine}: student of the ensemble at {a} (chance 0.25)"
            );
        }
        let summary = std::fs::read_to_string(ws.results().join("ensemble/summary.csv")).unwrap();
        assert!(
            summary.contains("trio > student") && summary.contains("\ntrio,"),
            "{summary}"
        );
        // An ensemble trains no epoch: its one evaluation is its last, no second row for it.
        assert!(!summary.contains("last_test_accuracy"), "{summary}");
        // The ensemble predicts like any stage: its accuracy from its logits.
        let trio_id = stages.iter().find(|s| s.0 == "trio").unwrap().2.clone();
        let out = ws.dir.path().join("trio.json");
        let p = out.to_str().unwrap();
        ws.kdgrid(&["predict", "--stage", &trio_id, "--limit", "256", "--out", p])
            .success();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        let logits: Vec<f64> = json["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let labels: Vec<u64> = json["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let correct = labels
            .iter()
            .zip(logits.chunks(4))
            .filter(|(l, row)| {
                let best = (0..4).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
                best as u64 == **l
            })
            .count();
        assert_eq!(correct as f64 / 256.0, ensemble, "{combine}");
        // A rerun trains nothing.
        let again = stdout(&ws.kdgrid(&["run"]).success());
        assert!(again.contains("0 trained, 13 reused"), "{again}");
    }
}

#[test]
fn ensembles_are_refused_where_they_cannot_work() {
    let ws = Workspace::new(&ENSEMBLE.replace("COMBINE", "").replace(
        "[\"trio\", \"student\"]]",
        "[\"trio\", \"student\"], [\"teacher\", \"trio\"]]",
    ));
    let err = stderr(&ws.kdgrid(&["validate"]).failure());
    assert!(
        err.contains("ensemble `trio` is not the first model of chain `teacher > trio`"),
        "{err}"
    );
    let ws = Workspace::new(&ENSEMBLE.replace("seeds = [0, 1, 2]\nCOMBINE", "seeds = [4]"));
    let err = stderr(&ws.kdgrid(&["validate"]).failure());
    assert!(
        err.contains("`models.trio.seeds` must list at least two different seeds"),
        "{err}"
    );
    assert!(err.contains("m.toml:"), "{err}");
    let ws = Workspace::new(
        &ENSEMBLE
            .replace("COMBINE", "")
            .replace("ensemble = \"teacher\"", "ensemble = \"teachr\""),
    );
    let err = stderr(&ws.kdgrid(&["validate"]).failure());
    assert!(
        err.contains("`models.trio.ensemble` names `teachr`, which is not a model"),
        "{err}"
    );
}
