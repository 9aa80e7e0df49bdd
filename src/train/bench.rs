//! Throughput of kdgrid's training path on fixed workloads, for `kdgrid bench` and `make bench`
//! (which runs the PyTorch peer `bench/peer.py` on the same workloads). Each workload is a
//! small synthetic study built from a manifest, so the timed code is exactly what a study runs.

use super::evaluate::evaluate;
use super::{Backend, Net, StageRun};
use crate::data;
use crate::manifest;
use crate::plan::{self, Role};
use burn::module::Module;
use std::path::Path;
use std::time::Instant;

/// The workloads, named `model/shape/mode` like the peer's.
pub const WORKLOADS: [&str; 8] = [
    "cnn2/fmnist/plain",
    "cnn2/fmnist/kd",
    "cnn2/fmnist/eval",
    "cnn2/cifar/plain",
    "cnn2/cifar/kd",
    "cnn2/cifar/eval",
    "plain4/cifar/plain",
    "plain4/cifar/eval",
];

fn manifest(workload: &str) -> Option<manifest::Manifest> {
    let mut parts = workload.split('/');
    let (model, shape, mode) = (parts.next()?, parts.next()?, parts.next()?);
    let (channels, size) = match shape {
        "fmnist" => (1, 28),
        "cifar" => (3, 32),
        _ => return None,
    };
    let student = match model {
        "cnn2" => "conv = [32, 64]\ndense = [64]",
        "plain4" => "family = \"plain-cnn\"\nsize = 4",
        _ => return None,
    };
    let chains = if mode == "kd" {
        r#"[["teacher", "student"]]"#
    } else {
        r#"[["student"]]"#
    };
    let text = format!(
        r#"
name = "bench"
[dataset]
kind = "synthetic"
seed = 1
classes = 10
train-size = 2048
test-size = 64
image-size = {size}
channels = {channels}
noise = 0.5
[models.student]
{student}
[models.teacher]
conv = [32, 64]
dense = [64]
[training]
epochs = 1000
batch-size = 64
optimizer = "adam"
lr = 0.001
[grid]
seed = [0]
temperature = [4.0]
alpha = [0.5]
chains = {chains}
"#
    );
    manifest::parse(Path::new("bench.toml"), &text).ok()
}

/// Images per second of `workload` on `backend`, timed over about `seconds` after a warm-up.
pub fn images_per_second(workload: &str, backend: &Backend, seconds: f64) -> Option<f64> {
    let m = manifest(workload)?;
    let plan = plan::expand(&m, "");
    let data = data::load(&plan.dataset, None).ok()?;
    let stage = plan.stages.iter().find(|s| s.role == Role::Student)?;
    // A teacher with initial weights costs what a trained one costs.
    let teacher = stage.parent.as_ref().map(|p| {
        let t = plan.stage(p).expect("parents are in the plan");
        super::Teacher::One(Box::new(Net::new(
            &t.spec,
            [data.channels, data.height, data.width],
            data.classes,
            Some(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)),
            &backend.device,
        )))
    });
    let mut run = StageRun::new(stage, &data, teacher.as_ref(), None, backend).ok()?;
    let eval = workload.ends_with("/eval");
    let mut work = |epoch: usize| -> usize {
        if eval {
            let model = run.model().valid();
            evaluate(&model, &data, &data.train, &backend.device);
            data.train.len()
        } else {
            run.train_epoch(epoch, &mut |_| {})
                .map(|loss| loss.steps)
                .ok()
                .unwrap_or(0)
                * stage.training.batch_size
        }
    };
    work(1);
    let start = Instant::now();
    let (mut images, mut epoch) = (0, 2);
    while start.elapsed().as_secs_f64() < seconds {
        images += work(epoch);
        epoch += 1;
    }
    Some(images as f64 / start.elapsed().as_secs_f64())
}
