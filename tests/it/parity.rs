//! Step parity with PyTorch: kdgrid traces a stage (`kdgrid trace`: initial weights, every
//! batch as the model saw it, learning rates, losses, final weights) and
//! `scripts/parity/replay.py` replays it with torch.optim, torch's schedulers and F.cross_entropy
//! / F.kl_div. Losses must agree at every step and weights, batch-norm statistics and
//! evaluation-mode logits at the end. Needs the cached torch (`make test` puts its venv first
//! on PATH, as for the `tch` tests).
//!
//! Tolerances (relative): float32 rounds each operation to ~6e-8, and different reduction
//! orders make kdgrid and PyTorch differ by ~1e-7 per op; over 12 steps the losses measured
//! agree within 1e-6 on both backends, so 1e-5 (LibTorch) and 1e-4 (flex, whose kernels are not
//! PyTorch's) leave a margin while catching any real difference (the biased batch-norm running
//! variance was 1.6e-3; a wrong epsilon, decay or schedule is larger still). Adam divides
//! gradients by their own magnitude, so weights fed by tiny gradients amplify rounding: 1e-3
//! (measured up to 1.5e-4).

use crate::support::*;
use std::path::Path;

/// Dataset, two models (one with batch norm, one with valid padding), 3 epochs of 4 steps, a teacher > student chain.
const BASE: &str = r#"
name = "parity"

[dataset]
kind = "synthetic"
seed = 3
classes = 4
train-size = 64
test-size = 64
image-size = 8
channels = 3
noise = 0.5

[models.teacher]
conv = [6, 8]
dense = [16]
batch-norm = true

[models.student]
conv = [4]
dense = [8]
padding = "valid"

[training]
epochs = 3
batch-size = 16
TRAINING

[grid]
seed = [0]
temperature = [4.0]
alpha = [0.7]
chains = [["teacher", "student"]]
"#;

/// `[training]` settings of each case: every optimizer, both schedules, both KL reductions.
const CASES: &[(&str, &str)] = &[
    (
        "sgd, momentum, nesterov, weight decay, step schedule, per-sample KL, batch norm",
        "optimizer = \"sgd\"\nlr = 0.05\nmomentum = 0.9\nnesterov = true\nweight-decay = 1e-4\n\
         schedule = { kind = \"step\", every = 1, gamma = 0.5 }",
    ),
    (
        "adam, coupled weight decay, cosine schedule",
        "optimizer = \"adam\"\nlr = 0.01\nweight-decay = 1e-4\nschedule = { kind = \"cosine\" }",
    ),
    (
        "adamw with its default decay, element-mean KL",
        "optimizer = \"adamw\"\nlr = 0.01\nkl-reduction = \"element-mean\"",
    ),
    (
        "plain sgd with dampening",
        "optimizer = \"sgd\"\nlr = 0.1\nmomentum = 0.5\ndampening = 0.5",
    ),
];

fn python() -> String {
    std::env::var("KDGRID_TORCH_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Traces every stage of `ws` on `compute` and replays each in PyTorch.
fn replay_all(ws: &Workspace, case: &str, compute: &[&str], loss_tol: f64, weight_tol: f64) {
    let mut run = vec!["run", "--quiet"];
    run.extend(compute);
    ws.kdgrid(&run).success();
    let mut plan = vec!["plan", "--json"];
    plan.extend(compute);
    let plan: serde_json::Value =
        serde_json::from_str(&stdout(&ws.kdgrid(&plan).success())).unwrap();
    for stage in plan["stages"].as_array().unwrap() {
        let id = stage["id"].as_str().unwrap();
        let out = ws.dir.path().join(format!("{id}.json"));
        let mut trace = vec!["trace", "--stage", id, "--out", out.to_str().unwrap()];
        trace.extend(compute);
        ws.kdgrid(&trace).success();
        let replay = std::process::Command::new(python())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/parity/replay.py"))
            .arg(&out)
            .args(["--loss-tol", &loss_tol.to_string()])
            .args(["--weight-tol", &weight_tol.to_string()])
            .output()
            .expect("python3 with torch (run through `make test`)");
        assert!(
            replay.status.success(),
            "{case}, {} on {compute:?}:\n{}{}",
            stage["chain"],
            String::from_utf8_lossy(&replay.stdout),
            String::from_utf8_lossy(&replay.stderr)
        );
    }
}

#[test]
fn flex_training_matches_pytorch_step_by_step() {
    for (case, training) in CASES {
        let ws = Workspace::new(&BASE.replace("TRAINING", training));
        replay_all(&ws, case, &["--backend", "flex"], 1e-4, 1e-3);
    }
}

#[test]
fn libtorch_training_matches_pytorch_step_by_step() {
    for (case, training) in CASES {
        let ws = Workspace::new(&BASE.replace("TRAINING", training));
        replay_all(
            &ws,
            case,
            &["--backend", "tch", "--threads", "1"],
            1e-5,
            1e-3,
        );
    }
}

/// The encoders on the shipped reviews (64 texts, 2 epochs of 4 steps, Adam): the shipped BERT
/// (imported) teaches a BERT trained from scratch with weight decay, and a half-depth
/// DistilBERT that starts from its first layer (`init-from`) and adds DistilBERT's cosine loss
/// on the hidden states; each replayed in `transformers`.
fn encoders() -> Workspace {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/data");
    Workspace::new(&format!(
        r#"
name = "parity-text"

[dataset]
kind = "text"
path = "{reviews}"
max-length = 16
train-limit = 64
test-limit = 32

[models.bert]
family = "bert"
weights = "{teacher}"

[models.scratch]
family = "bert"
layers = 1
hidden = 32
heads = 4
intermediate = 48
tokenizer = "{teacher}"
lr = 0.01
weight-decay = 0.01

[models.distil]
family = "distilbert"
layers = 1
hidden = 64
heads = 4
intermediate = 128
tokenizer = "{teacher}"
init-from = {{ model = "bert", layers = [1] }}
hidden-loss = {{ kind = "cosine", weight = 0.5 }}

[training]
epochs = 2
batch-size = 16
optimizer = "adam"
lr = 0.002

[grid]
seed = [0]
temperature = [2.0]
alpha = [0.5]
chains = [["bert", "scratch"], ["bert", "distil"]]
"#,
        reviews = data.join("reviews").display(),
        teacher = data.join("reviews-bert").display(),
    ))
}

#[test]
fn encoders_match_pytorch_step_by_step() {
    replay_all(&encoders(), "encoders", &["--backend", "flex"], 1e-5, 1e-3);
    replay_all(
        &encoders(),
        "encoders",
        &["--backend", "tch", "--threads", "1"],
        1e-5,
        1e-3,
    );
}
