//! Stage tasks: one process among several sharing a store (Slurm array tasks, `kdgrid run-stage`,
//! `kdgrid run --shard M/N`). It trains the stages it is given, in plan order, each once its
//! teacher is in the store, and claims each stage so that no two live processes train it.
//!
//! Waits are bounded: a `run-stage` task whose teacher is neither in the store nor held fails
//! after twice the stale time (a teacher just committed may take a moment to show on a network
//! file system); a shard waiting for a teacher that no live task holds, for twice the stale time
//! during which the teacher's shard was not running either, trains the teacher itself. So a
//! crashed, missing or suspended shard delays the others but never stops them, and a suspended
//! one that resumes finds its stages done and goes on with the rest. Every task first checks that
//! the running tasks of its kind computed its plan ([`super::agree`]).

use super::agree::{Agreement, Role, TaskInfo};
use super::stage;
use super::{Event, SweepError};
use crate::data::Dataset;
use crate::plan::{Plan, Stage};
use crate::report::Provenance;
use crate::store::{self, ClaimState, Lookup, StageRecord, Status, Store, StoreError};
use crate::train::{Backend, Progress};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often a task looks at the store again while it waits.
const POLL: Duration = Duration::from_millis(500);

/// How often a task that still waits says so again.
const RETELL: Duration = Duration::from_secs(60);

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

/// How long a task waits for a teacher no one is seen to work on: twice the stale time.
pub fn wait_bound() -> Duration {
    store::stale_time() * 2
}

/// Trains each of `stages` not yet in the shared `store`, as a task of `role` (a shard waits
/// for teachers other shards train; a `run-stage` task needs them in the store), waiting for
/// stages other processes hold.
#[allow(clippy::too_many_arguments)]
pub fn run(
    plan: &Plan,
    store: &Store,
    backend: &Backend,
    stages: &[&Stage],
    role: Role,
    provenance: &Provenance,
    load_data: &mut dyn FnMut() -> Result<Dataset, SweepError>,
    on_event: &mut dyn FnMut(Event),
) -> Result<Tally, SweepError> {
    let agreement = Agreement::join(store, TaskInfo::new(role, plan, provenance))?;
    let mut tally = Tally::default();
    let mut data: Option<Dataset> = None;
    // A shard adopts a teacher whose shard is gone (crashed, never started, or stopped past the
    // bound): the teacher goes first in the queue, before the stage that waited for it.
    let mut queue: VecDeque<&Stage> = stages.iter().copied().collect();
    let mut total = stages.len();
    let mut started = 0;
    // Other tasks' announcements are read at most once per poll, not once per stage: a shard
    // going over a finished plan of 100k stages would read them 100k times.
    let mut checked: Option<Instant> = None;
    'stages: while let Some(stage) = queue.pop_front() {
        // A wait is told when it starts, then again every minute, with how long it has lasted.
        let mut told: Option<(Instant, Instant)> = None;
        let mut say = |on_event: &mut dyn FnMut(Event), text: String| {
            let now = Instant::now();
            match &mut told {
                None => {
                    told = Some((now, now));
                    on_event(Event::Note(text));
                }
                Some((since, last)) if now - *last >= RETELL => {
                    *last = now;
                    let waited = (now - *since).as_secs();
                    on_event(Event::Note(format!(
                        "{text} (for {}m{:02}s now)",
                        waited / 60,
                        waited % 60
                    )));
                }
                Some(_) => {}
            }
        };
        // Since when the teacher waited for has been neither held nor (for a shard) its shard
        // running.
        let mut unattended: Option<Instant> = None;
        loop {
            if checked.is_none_or(|t| t.elapsed() >= POLL) {
                agreement.check()?;
                checked = Some(Instant::now());
            }
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
                    let held = matches!(store.claim_seen(&p)?, Some(ClaimState::Live(_)));
                    let owner = match role {
                        Role::Shard { count, .. } => Some(p.shard(count)),
                        Role::Stage => None,
                    };
                    let attended = held
                        || match owner {
                            Some(k) => agreement.shard_running(k)?,
                            None => false,
                        };
                    let since = if attended {
                        unattended = None;
                        Instant::now()
                    } else {
                        *unattended.get_or_insert_with(Instant::now)
                    };
                    if since.elapsed() >= wait_bound() {
                        let (Role::Shard { count, .. }, Some(k), Some(t)) =
                            (role, owner, plan.stage(&p))
                        else {
                            return Err(SweepError::TeacherMissing {
                                stage: stage.id.to_string(),
                                teacher: p.to_string(),
                            });
                        };
                        on_event(Event::Note(format!(
                            "stage `{}` waited {} s for its teacher `{p}`, which no task holds, and shard {k}/{count} is not running: training the teacher here",
                            stage.id,
                            since.elapsed().as_secs()
                        )));
                        queue.push_front(stage);
                        queue.push_front(t);
                        total += 1;
                        continue 'stages;
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
                let holder = match store.claim_seen(&stage.id)? {
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
            let init = stage::load_init(plan, store, data, backend, stage)?;
            match claim.took_over_from() {
                Some(holder) => {
                    on_event(Event::Note(format!(
                        "stage `{}`: took over the stale claim of {holder}",
                        stage.id
                    )));
                    store.log(
                        &stage.id,
                        &claim,
                        &format!(
                            "start, claim {} (took over from {holder})",
                            claim.generation()
                        ),
                    );
                }
                None => store.log(
                    &stage.id,
                    &claim,
                    &format!("start, claim {}", claim.generation()),
                ),
            }
            started += 1;
            on_event(Event::Start(stage, started, total));
            let finished = stage::train_and_commit(
                store,
                &claim,
                stage,
                data,
                teacher.as_ref(),
                init.as_ref(),
                backend,
                1,
                &mut |p| match p {
                    Progress::Step { epoch, step, steps } => {
                        on_event(Event::Step(stage, epoch, step, steps))
                    }
                    Progress::Epoch(m) => on_event(Event::Epoch(stage, m)),
                },
            );
            let finished = match finished {
                Ok(f) => f,
                // Taken over while this task trained (it was stopped past the stale time), or
                // its checkpoints removed by the task that took over and committed: the stage is
                // that task's; look again.
                Err(e)
                    if !claim.holds()
                        || matches!(
                            e,
                            SweepError::Model(crate::train::TrainError::Abandoned { .. })
                        ) =>
                {
                    let holder = claim.holder_now();
                    store.log(&stage.id, &claim, &format!("lost the claim to {holder}"));
                    let why = match &e {
                        SweepError::Store(StoreError::ClaimLost { .. }) => String::new(),
                        e => format!(" ({e})"),
                    };
                    on_event(Event::Warning(format!(
                        "stage `{}`: the claim was taken over by {holder} while this task trained; not committing{why}",
                        stage.id
                    )));
                    drop(claim);
                    continue;
                }
                Err(e) => return Err(e),
            };
            drop(claim);
            if let Some(epoch) = finished.resumed_from {
                on_event(Event::Note(format!(
                    "stage `{}` resumed from its epoch-{epoch} checkpoint",
                    stage.id
                )));
            }
            on_event(Event::Done(stage, &finished.record));
            if !finished.committed {
                tally.reused += 1;
            } else if finished.record.status == Status::Ok {
                tally.trained += 1;
            } else {
                tally.failed += 1;
            }
            break;
        }
    }
    Ok(tally)
}

/// Whether some stage of `plan` is still to be trained: one without a record whose teachers
/// did not fail (a stage below a failed one is settled as skipped). Looks from the end of the
/// plan, where the last stages are, and stops at the first, so the tasks that finish before the
/// plan does (all but the last) look at a few stages rather than every one: a check over the
/// whole store at the end of each of n tasks would make a job array quadratic. A record present
/// counts here even if corrupt; the full check that precedes the tables reads each one.
pub fn some_unsettled(plan: &Plan, store: &Store) -> Result<bool, SweepError> {
    for s in plan.stages.iter().rev() {
        if store.has_record(&s.id) {
            continue;
        }
        if failed_above(plan, store, &s.id)?.is_none() {
            return Ok(true);
        }
    }
    Ok(false)
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
pub(crate) fn failed_above(
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
