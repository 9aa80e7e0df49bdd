//! `--tensorboard DIR` on `run` and `run-stage`: the stages' curves written while they train,
//! and the ones the store already holds written first. A failure to write is a warning that
//! stops tracking, never the run.

use crate::plan::{Plan, Stage};
use crate::sweep::{self, Event};
use crate::track::{TensorBoard, TrackError};
use std::path::Path;

/// Live tracking of one run, if asked for.
pub(super) struct Live<'p> {
    board: Option<TensorBoard<'p>>,
}

impl<'p> Live<'p> {
    /// Opens `dir` (else the manifest's `[tracking] tensorboard`) for `plan` and writes what
    /// the store holds of `stages` (all of the plan's when `None`).
    pub(super) fn start(
        dir: Option<&Path>,
        plan: &'p Plan,
        results: &Path,
        stages: Option<&[&Stage]>,
    ) -> Self {
        let Some(dir) = dir.or(plan.tracking.tensorboard.as_deref()) else {
            return Self { board: None };
        };
        let mut live = Self { board: None };
        let opened = TensorBoard::open(dir, plan).map(|b| live.board = Some(b));
        live.check(Some(opened));
        if live.board.is_none() {
            return live;
        }
        let stages: Vec<&Stage> = match stages {
            Some(s) => s.to_vec(),
            None => plan.stages.iter().collect(),
        };
        let stored = sweep::stored(plan, results, stages.iter().copied(), &mut |e| {
            if let Event::Warning(w) = e {
                eprintln!("warning: {w}");
            }
        });
        match stored {
            Ok(records) => {
                for stage in &stages {
                    if let Some(r) = records.get(&stage.id) {
                        let result = live.board.as_mut().map(|b| b.finish(stage, r));
                        live.check(result);
                    }
                }
            }
            Err(e) => eprintln!(
                "warning: cannot read the store for TensorBoard ({e}); stages trained before \
                 this run are not written"
            ),
        }
        if live.board.is_some() {
            println!("TensorBoard runs in {}", dir.join(&plan.name).display());
        }
        live
    }

    /// Writes what `event` adds to a stage's run.
    pub(super) fn event(&mut self, event: &Event) {
        let result = match (self.board.as_mut(), event) {
            (Some(b), Event::Epoch(stage, m)) => Some(b.epoch(stage, m)),
            (Some(b), Event::Done(stage, record)) => Some(b.finish(stage, record)),
            _ => None,
        };
        self.check(result);
    }

    fn check(&mut self, result: Option<Result<(), TrackError>>) {
        if let Some(Err(e)) = result {
            eprintln!("warning: {e}; TensorBoard tracking stops here, training goes on");
            self.board = None;
        }
    }
}
