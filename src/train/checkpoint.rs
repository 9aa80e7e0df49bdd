//! Epoch checkpoints: what a stage needs to continue exactly where it stopped — the model, the
//! optimizer's state, the positions of its random streams, the data order, the history and the
//! selected epoch's weights.
//!
//! ```text
//! stages/<id>/checkpoints/epoch-<N>/model.bpk   weights after epoch N
//!                                   optim.bpk   optimizer state (Adam moments, momentum)
//!                                   best.bpk    the selected epoch's weights, when not N
//!                                   state.json  epoch, stream positions, order, history
//! ```
//! A checkpoint is written in a temporary folder of its writer's own (`.tmp-epoch-N-<random>`)
//! and renamed into place, so a kill leaves the previous one whole, and two processes training
//! one stage (one of them about to lose its claim) never write into each other's folders; an
//! epoch already in place is kept (it holds the same state). Older ones are removed, and the
//! sweep removes the folder once the stage's record is committed.

use super::optimizer::optimizer;
use super::{EpochMetrics, Net, StageRun, TrainError};
use burn::module::Module;
use burn::optim::OptimizerRecord;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
struct State {
    epoch: usize,
    /// Word positions of the order, augmentation and dropout streams (decimal: JSON has no
    /// 128-bit integers).
    streams: [String; 3],
    order: Vec<u32>,
    epochs: Vec<EpochMetrics>,
    /// The selected epoch so far and its score.
    best: Option<(usize, f64)>,
}

fn failed(path: &Path, e: impl std::fmt::Debug) -> TrainError {
    TrainError::ModelFile {
        path: path.to_path_buf(),
        message: format!("{e:?}"),
    }
}

fn epoch_of(path: &Path) -> Option<usize> {
    path.file_name()?
        .to_str()?
        .strip_prefix("epoch-")?
        .parse()
        .ok()
}

/// The committed checkpoints under `dir`, latest first.
fn committed(dir: &Path) -> Vec<(usize, PathBuf)> {
    let mut v: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("state.json").exists())
        .filter_map(|p| Some((epoch_of(&p)?, p)))
        .collect();
    v.sort_by_key(|c| std::cmp::Reverse(c.0));
    v
}

/// Commits the state of `run` after epoch `epoch` under `dir`.
pub(super) fn save(dir: &Path, epoch: usize, run: &StageRun) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let prefix = format!(".tmp-epoch-{epoch}-");
    let tmp = crate::atomic::as_umask_allows(tempfile::Builder::new().prefix(&prefix), true)
        .tempdir_in(dir)
        .map_err(|e| failed(dir, e))?;
    let tmp = tmp.path();
    let model = tmp.join("model.bpk");
    run.model().save(&model)?;
    let optim = tmp.join("optim.bpk");
    run.optim
        .to_record()
        .save(&optim)
        .map_err(|e| failed(&optim, e))?;
    if let Some((best, _, weights)) = &run.best
        && *best != epoch
    {
        let path = tmp.join("best.bpk");
        weights.save(&path)?;
    }
    let state = State {
        epoch,
        streams: [&run.order_rng, &run.augment_rng, &run.dropout_rng]
            .map(|r| r.get_word_pos().to_string()),
        order: run.order.iter().map(|&i| i as u32).collect(),
        epochs: run.epochs.clone(),
        best: run.best.as_ref().map(|b| (b.0, b.1)),
    };
    let path = tmp.join("state.json");
    crate::atomic::write(
        &path,
        &serde_json::to_vec(&state).expect("states serialize"),
    )
    .map_err(|e| failed(&path, e))?;
    let target = dir.join(format!("epoch-{epoch}"));
    if !target.join("state.json").exists() {
        // Half a folder of an older layout (written in place): replaced.
        let _ = std::fs::remove_dir_all(&target);
    }
    // A folder already there (another process's, of the same epoch) stays: renaming a folder
    // onto a non-empty one fails, and ours is dropped with the temporary folder.
    if let Err(e) = std::fs::rename(tmp, &target)
        && !target.join("state.json").exists()
    {
        return Err(failed(&target, e));
    }
    for (e, old) in committed(dir) {
        if e < epoch {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(())
}

/// Restores `run` from the latest checkpoint under `dir`; returns its epoch, or `None` when
/// there is none.
pub(super) fn resume(dir: &Path, run: &mut StageRun) -> Result<Option<usize>, TrainError> {
    let Some((epoch, path)) = committed(dir).into_iter().next() else {
        return Ok(None);
    };
    let state_path = path.join("state.json");
    let text = std::fs::read(&state_path).map_err(|e| failed(&state_path, e))?;
    let state: State = serde_json::from_slice(&text).map_err(|e| failed(&state_path, e))?;
    let (stage, data) = (run.stage, run.data);
    let shape = [data.channels, data.height, data.width];
    let blank =
        |device: &burn::tensor::Device| Net::new(&stage.spec, shape, data.classes, None, device);
    let model_path = path.join("model.bpk");
    let autodiff = run.plain.clone().autodiff();
    let model = blank(&autodiff).load(&model_path)?;
    let optim_path = path.join("optim.bpk");
    let record = OptimizerRecord::load(&optim_path).map_err(|e| failed(&optim_path, e))?;
    let best = match state.best {
        Some((e, score)) if e == epoch => Some((e, score, model.valid())),
        Some((e, score)) => {
            let best_path = path.join("best.bpk");
            let weights = blank(&run.plain).load(&best_path)?;
            Some((e, score, weights))
        }
        None => None,
    };
    let mut positions = state.streams.iter().map(|p| p.parse::<u128>());
    for rng in [
        &mut run.order_rng,
        &mut run.augment_rng,
        &mut run.dropout_rng,
    ] {
        let pos = positions
            .next()
            .and_then(Result::ok)
            .ok_or_else(|| failed(&state_path, "bad stream position"))?;
        rng.set_word_pos(pos);
    }
    run.model = Some(model);
    run.optim = optimizer(stage).load_record(record);
    run.order = state.order.iter().map(|&i| i as usize).collect();
    run.epochs = state.epochs;
    run.best = best;
    Ok(Some(epoch))
}
