//! `kdgrid export`: a study's stages from the store to TensorBoard files and an MLflow server.

use super::{ComputeArgs, Failure, stored_compute};
use crate::sweep;
use crate::track::{TensorBoard, mlflow};
use std::path::Path;

/// Writes every settled stage of the manifest's study to the viewers asked for (on the
/// command line, else in the manifest's `[tracking]`).
pub(super) fn export(
    cli: &super::Cli,
    manifest: &Path,
    compute: &ComputeArgs,
    tensorboard: Option<&Path>,
    mlflow_uri: Option<&str>,
) -> Result<(), Failure> {
    let (plan, _) = stored_compute::load_plan_from_store(
        manifest,
        cli.profile.as_deref(),
        compute,
        &cli.results,
    )?;
    let tensorboard = tensorboard.or(plan.tracking.tensorboard.as_deref());
    let mlflow_uri = mlflow_uri.or(plan.tracking.mlflow.as_deref());
    if tensorboard.is_none() && mlflow_uri.is_none() {
        return Err(Failure {
            report: miette::miette!(
                help = "give `--tensorboard DIR` or `--mlflow URI`, or set them in the manifest's `[tracking]` table",
                "nowhere to export `{}` to",
                manifest.display()
            ),
            code: 2,
        });
    }
    let records = sweep::stored(&plan, &cli.results, &plan.stages, &mut |e| {
        if let sweep::Event::Warning(w) = e {
            eprintln!("warning: {w}");
        }
    })?;
    let fail = |e: crate::track::TrackError| Failure {
        report: e.into(),
        code: 1,
    };
    let settled = plan
        .stages
        .iter()
        .filter(|s| records.contains_key(&s.id))
        .count();
    if let Some(dir) = tensorboard {
        let mut board = TensorBoard::open(dir, &plan).map_err(fail)?;
        for stage in &plan.stages {
            if let Some(r) = records.get(&stage.id) {
                board.finish(stage, r).map_err(fail)?;
            }
        }
        println!(
            "TensorBoard: {settled} of {} stages in {} (`tensorboard --logdir {}`)",
            plan.stages.len(),
            dir.join(&plan.name).display(),
            dir.display()
        );
    }
    if let Some(uri) = mlflow_uri {
        let report = std::fs::read_to_string(cli.results.join(&plan.name).join("report.md")).ok();
        let done = mlflow::export(uri, &plan, &records, report.as_deref()).map_err(fail)?;
        println!(
            "MLflow: experiment `{}` (id {}) at {uri}: {} runs created, {} updated, {} unchanged",
            plan.name, done.experiment_id, done.created, done.updated, done.unchanged
        );
    }
    Ok(())
}
