//! The local executor: one process trains a plan's pending stages on worker threads, each as
//! soon as its teacher is done (`kdgrid run`, `--jobs N`).

use super::stage::{self, Finished};
use super::{Event, SweepError};
use crate::data::Dataset;
use crate::plan::{Plan, Stage, StageId};
use crate::store::{Claim, StageRecord, Store};
use crate::train::{Backend, EpochMetrics, Net, Progress, Teacher};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Messages from training workers to the sweep's thread.
enum Msg {
    Step(usize, usize, usize, usize),
    Epoch(usize, EpochMetrics),
    Done(usize, Box<Result<Finished, SweepError>>),
}

/// Trains `pending` (in plan order) up to `jobs` at a time, adding each stage's record to
/// `records` as it ends.
#[allow(clippy::too_many_arguments)]
pub fn run(
    store: &Store,
    backend: &Backend,
    data: &Dataset,
    plan: &Plan,
    records: &mut BTreeMap<StageId, StageRecord>,
    pending: &[&Stage],
    jobs: usize,
    on_event: &mut dyn FnMut(Event),
) -> Result<(), SweepError> {
    Scheduler {
        store,
        backend,
        data,
        plan,
        records,
        models: HashMap::new(),
        waiting: HashMap::new(),
    }
    .run(pending, jobs, on_event)
}

/// Runs pending stages on worker threads in dependency order.
struct Scheduler<'a> {
    store: &'a Store,
    backend: &'a Backend,
    data: &'a Dataset,
    plan: &'a Plan,
    records: &'a mut BTreeMap<StageId, StageRecord>,
    /// Teachers still needed by a pending child, by the child's parent id.
    models: HashMap<StageId, Teacher>,
    /// Pending children per teacher.
    waiting: HashMap<StageId, usize>,
}

impl Scheduler<'_> {
    fn run(
        mut self,
        pending: &[&Stage],
        jobs: usize,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<(), SweepError> {
        for s in pending {
            for p in s.needs() {
                *self.waiting.entry(p.clone()).or_insert(0) += 1;
            }
        }
        // Each pending stage waits for its unsettled needs; a settled stage releases its
        // children. Bookkeeping is linear in the stages, whatever their number.
        let mut unsettled: Vec<usize> = vec![0; pending.len()];
        let mut children: HashMap<&StageId, Vec<usize>> = HashMap::new();
        for (i, s) in pending.iter().enumerate() {
            for n in s.needs().filter(|n| !self.records.contains_key(*n)) {
                unsettled[i] += 1;
                children.entry(n).or_default().push(i);
            }
        }
        // Plan order among the ready ones: teachers before the stages that could wait.
        let mut ready: BTreeSet<usize> =
            (0..pending.len()).filter(|&i| unsettled[i] == 0).collect();
        let mut left = pending.len();
        let settle = |id: &StageId, unsettled: &mut Vec<usize>, ready: &mut BTreeSet<usize>| {
            for &c in children.get(id).into_iter().flatten() {
                unsettled[c] -= 1;
                if unsettled[c] == 0 {
                    ready.insert(c);
                }
            }
        };
        let mut claims: HashMap<usize, std::sync::Arc<Claim>> = HashMap::new();
        let mut started = 0;
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        std::thread::scope(|scope| -> Result<(), SweepError> {
            loop {
                // Start ready stages in plan order while slots are free.
                while claims.len() < jobs {
                    let Some(idx) = ready.pop_first() else { break };
                    let stage = pending[idx];
                    match stage::failed_need(stage, self.records) {
                        Some(r) => {
                            let record = stage::skipped_record(stage, r);
                            self.release_parent(stage);
                            on_event(Event::Done(stage, &record));
                            self.records.insert(stage.id.clone(), record);
                            left -= 1;
                            settle(&stage.id, &mut unsettled, &mut ready);
                        }
                        None => {
                            let teacher = self.teacher(stage)?;
                            let init = self.init(stage)?;
                            // A sweep holds its store; only a process on another machine of a
                            // mount without locks can hold the stage's claim meanwhile.
                            let claim = self.store.claim(&stage.id)?.ok_or_else(|| {
                                crate::store::StoreError::Locked {
                                    path: self.store.root().join("stages").join(stage.id.as_str()),
                                    holder: "a process of another machine (is the results folder on a mount without locks?)".into(),
                                }
                            })?;
                            let claim = std::sync::Arc::new(claim);
                            claims.insert(idx, std::sync::Arc::clone(&claim));
                            started += 1;
                            on_event(Event::Start(stage, started, pending.len()));
                            let tx = tx.clone();
                            let (store, data, backend) = (self.store, self.data, self.backend);
                            scope.spawn(move || {
                                backend.bind_thread();
                                // Training panics fail their stage inside; anything else that
                                // panics (saving, committing) must still report, or the
                                // receive below, whose sender this scheduler also holds,
                                // would wait forever.
                                let result =
                                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                        stage::train_and_commit(
                                            store,
                                            &claim,
                                            stage,
                                            data,
                                            teacher.as_ref(),
                                            init.as_ref(),
                                            backend,
                                            jobs,
                                            &mut |p| {
                                                let _ = tx.send(match p {
                                                    Progress::Step { epoch, step, steps } => {
                                                        Msg::Step(idx, epoch, step, steps)
                                                    }
                                                    Progress::Epoch(m) => {
                                                        Msg::Epoch(idx, m.clone())
                                                    }
                                                });
                                            },
                                        )
                                    }))
                                    .unwrap_or_else(
                                        |panic| {
                                            Err(SweepError::Crashed {
                                                stage: stage.id.to_string(),
                                                message: stage::panic_message(panic.as_ref()),
                                            })
                                        },
                                    );
                                let _ = tx.send(Msg::Done(idx, Box::new(result)));
                            });
                        }
                    }
                }
                if claims.is_empty() {
                    if left == 0 {
                        return Ok(());
                    }
                    if ready.is_empty() {
                        // Needs outside the pending list and the records: nothing can start.
                        let stuck = (0..pending.len())
                            .find(|&i| unsettled[i] > 0)
                            .map(|i| pending[i]);
                        return Err(SweepError::Stuck {
                            stage: stuck.map_or_else(String::new, |s| s.id.to_string()),
                            waiting: left,
                        });
                    }
                    continue; // skipped stages may have unblocked others
                }
                match rx.recv().expect("workers hold a sender while running") {
                    Msg::Step(idx, e, s, n) => on_event(Event::Step(pending[idx], e, s, n)),
                    Msg::Epoch(idx, m) => on_event(Event::Epoch(pending[idx], &m)),
                    Msg::Done(idx, result) => {
                        claims.remove(&idx);
                        let stage = pending[idx];
                        self.release_parent(stage);
                        let finished = (*result)?;
                        if let Some(epoch) = finished.resumed_from {
                            on_event(Event::Note(format!(
                                "stage `{}` resumed from its epoch-{epoch} checkpoint",
                                stage.id
                            )));
                        }
                        // Kept for children distilling from it; an ensemble's members are
                        // loaded from the store when needed.
                        if let Some(model) = finished.model
                            && self.waiting.get(&stage.id).is_some_and(|&n| n > 0)
                        {
                            self.models
                                .insert(stage.id.clone(), Teacher::One(Box::new(model)));
                        }
                        on_event(Event::Done(stage, &finished.record));
                        self.records.insert(stage.id.clone(), finished.record);
                        left -= 1;
                        settle(&stage.id, &mut unsettled, &mut ready);
                    }
                }
            }
        })
    }

    /// What `stage` learns from (a frozen stage: what it runs), from memory or from the
    /// store.
    fn teacher(&mut self, stage: &Stage) -> Result<Option<Teacher>, SweepError> {
        let p = match &stage.parent {
            _ if stage.is_frozen() => {
                return stage::load_teacher(self.plan, self.store, self.data, self.backend, stage);
            }
            Some(p) => p,
            None => return Ok(None),
        };
        if !self.models.contains_key(p) {
            let model = stage::load_teacher(self.plan, self.store, self.data, self.backend, stage)?
                .expect("the stage has a parent");
            self.models.insert(p.clone(), model);
        }
        Ok(self.models.get(p).cloned())
    }

    /// The model `stage` starts from (`init-from`): kept in memory when it trained in this
    /// sweep, else from the store.
    fn init(&mut self, stage: &Stage) -> Result<Option<Net>, SweepError> {
        let Some(id) = &stage.init else {
            return Ok(None);
        };
        if let Some(Teacher::One(net)) = self.models.get(id) {
            return Ok(Some((**net).clone()));
        }
        stage::load_init(self.plan, self.store, self.data, self.backend, stage)
    }

    /// One fewer child waits for what `stage` needs; drop weights after the last.
    fn release_parent(&mut self, stage: &Stage) {
        for p in stage.needs() {
            let left = self.waiting.get_mut(p).expect("counted");
            *left -= 1;
            if *left == 0 {
                self.models.remove(p);
            }
        }
    }
}
