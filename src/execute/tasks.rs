//! Stage tasks: one process among several sharing a store (Slurm array tasks, `kdgrid run-stage`,
//! `kdgrid run --shard M/N`). It trains the stages it is given, in plan order, each once its
//! teacher is in the store, and claims each stage so that no two live processes train it.

use super::stage;
use super::{Event, SweepError};
use crate::data::Dataset;
use crate::plan::{Plan, Stage};
use crate::store::{self, ClaimState, Lookup, StageRecord, Status, Store};
use crate::train::{Backend, Progress};
use std::time::Duration;

/// How often a task looks at the store again while it waits.
const POLL: Duration = Duration::from_millis(500);

/// What to do about a teacher that is not in the store and that no live process trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Teachers {
    /// Wait for it: another shard will train it (`run --shard`).
    Wait,
    /// Fail: its task has already ended without it (Slurm levels run after their parents').
    Require,
}

/// What a batch of tasks did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Stages trained here.
    pub trained: usize,
    /// Stages found settled in the store (by an earlier run or another task).
    pub reused: usize,
    /// Stages that failed here.
    pub failed: usize,
    /// Stages not trained because a teacher failed.
    pub skipped: usize,
}

/// Trains each of `stages` not yet in the shared `store`, waiting for teachers and for stages
/// other processes hold, as `teachers` says.
pub fn run(
    plan: &Plan,
    store: &Store,
    backend: &Backend,
    stages: &[&Stage],
    teachers: Teachers,
    load_data: &mut dyn FnMut() -> Result<Dataset, SweepError>,
    on_event: &mut dyn FnMut(Event),
) -> Result<Tally, SweepError> {
    let mut tally = Tally::default();
    let mut data: Option<Dataset> = None;
    let total = stages.len();
    for (i, stage) in stages.iter().enumerate() {
        let mut told = false;
        let mut say = |on_event: &mut dyn FnMut(Event), text: String| {
            if !std::mem::replace(&mut told, true) {
                on_event(Event::Note(text));
            }
        };
        loop {
            if let Some(r) = settled(store, stage, on_event)? {
                if r.status == Status::Ok {
                    tally.reused += 1;
                } else {
                    tally.failed += 1;
                }
                break;
            }
            match teacher(plan, store, stage)? {
                Teacher::Ready => {}
                Teacher::Failed(parent) => {
                    let record = stage::skipped_record(stage, &parent);
                    on_event(Event::Done(stage, &record));
                    tally.skipped += 1;
                    break;
                }
                Teacher::Pending(p) => {
                    let live = matches!(
                        store::claim_state(store.root(), &p),
                        Some(ClaimState::Live(_))
                    );
                    if teachers == Teachers::Require && !live {
                        return Err(SweepError::TeacherMissing {
                            stage: stage.id.to_string(),
                            teacher: p.to_string(),
                        });
                    }
                    say(
                        on_event,
                        format!("stage `{}` waits for its teacher `{p}`", stage.id),
                    );
                    std::thread::sleep(POLL);
                    continue;
                }
            }
            let Some(claim) = store.claim(&stage.id)? else {
                let holder = match store::claim_state(store.root(), &stage.id) {
                    Some(ClaimState::Live(h) | ClaimState::Stale(h)) => h,
                    None => "another task".into(),
                };
                say(
                    on_event,
                    format!("stage `{}` is being trained by {holder}; waiting", stage.id),
                );
                std::thread::sleep(POLL);
                continue;
            };
            // Committed between the look and the claim.
            if matches!(store.lookup(&stage.id)?, Lookup::Found(_)) {
                drop(claim);
                continue;
            }
            if data.is_none() {
                data = Some(load_data()?);
            }
            let data = data.as_ref().expect("loaded");
            let teacher = stage::load_teacher(plan, store, data, backend, stage)?;
            on_event(Event::Start(stage, i + 1, total));
            let finished = stage::train_and_commit(
                store,
                stage,
                data,
                teacher.as_ref(),
                backend,
                1,
                &mut |p| match p {
                    Progress::Step { epoch, step, steps } => {
                        on_event(Event::Step(stage, epoch, step, steps))
                    }
                    Progress::Epoch(m) => on_event(Event::Epoch(stage, m)),
                },
            )?;
            drop(claim);
            if let Some(epoch) = finished.resumed_from {
                on_event(Event::Note(format!(
                    "stage `{}` resumed from its epoch-{epoch} checkpoint",
                    stage.id
                )));
            }
            on_event(Event::Done(stage, &finished.record));
            if finished.record.status == Status::Ok {
                tally.trained += 1;
            } else {
                tally.failed += 1;
            }
            break;
        }
    }
    Ok(tally)
}

/// The stage's committed record; a corrupt one is reported and counts as missing.
fn settled(
    store: &Store,
    stage: &Stage,
    on_event: &mut dyn FnMut(Event),
) -> Result<Option<StageRecord>, SweepError> {
    Ok(match store.lookup(&stage.id)? {
        Lookup::Found(r) => Some(*r),
        Lookup::Missing => None,
        Lookup::Corrupt { path, message } => {
            on_event(Event::Warning(format!(
                "stage `{}` is corrupt (`{}`: {message}); training it again",
                stage.id,
                path.display()
            )));
            None
        }
    })
}

enum Teacher {
    /// No teacher, or its weights are in the store.
    Ready,
    /// The teacher, or a stage above it, failed: this stage is skipped.
    Failed(Box<StageRecord>),
    /// The teacher has not finished.
    Pending(crate::plan::StageId),
}

fn teacher(plan: &Plan, store: &Store, stage: &Stage) -> Result<Teacher, SweepError> {
    let mut pending = None;
    for need in stage.needs() {
        match store.lookup(need)? {
            Lookup::Found(r) if r.status == Status::Ok => {}
            Lookup::Found(r) => return Ok(Teacher::Failed(r)),
            // A stage below a failed one is never trained: look above it.
            _ => match failed_above(plan, store, need)? {
                Some(r) => return Ok(Teacher::Failed(r)),
                None => pending = pending.or(Some(need.clone())),
            },
        }
    }
    Ok(pending.map_or(Teacher::Ready, Teacher::Pending))
}

/// A failed record among the stages `id` needs, directly or further up.
fn failed_above(
    plan: &Plan,
    store: &Store,
    id: &crate::plan::StageId,
) -> Result<Option<Box<StageRecord>>, SweepError> {
    let Some(stage) = plan.stage(id) else {
        return Ok(None);
    };
    for need in stage.needs() {
        match store.lookup(need)? {
            Lookup::Found(r) if r.status == Status::Ok => {}
            Lookup::Found(r) => return Ok(Some(r)),
            _ => {
                if let Some(r) = failed_above(plan, store, need)? {
                    return Ok(Some(r));
                }
            }
        }
    }
    Ok(None)
}
