//! Progress while a sweep runs: on a terminal, an overall bar (stages done, optimizer steps,
//! ETA from the measured rate) and one bar per running stage (epoch and batch); otherwise —
//! logs, CI — plain lines, each labelled with its stage.

use super::kd_text;
use crate::plan::{Stage, StageId};
use crate::store::Status;
use crate::sweep::Event;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;

/// Renders sweep events.
pub struct Display {
    quiet: bool,
    bars: Option<Bars>,
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    stages: HashMap<StageId, ProgressBar>,
    done: usize,
    total: usize,
}

fn label(stage: &Stage) -> String {
    format!("{} {} seed {}", stage.id, stage.chain_label(), stage.seed)
}

fn epoch_line(stage: &Stage, m: &crate::train::EpochMetrics) -> String {
    let val = m
        .val_accuracy
        .map_or_else(String::new, |v| format!(", val accuracy {v:.4}"));
    format!(
        "{}: epoch {}/{}: train loss {:.4}, test loss {:.4}, test accuracy {:.4}{val} ({:.1}s)",
        label(stage),
        m.epoch,
        stage.training.epochs,
        m.train_loss,
        m.test_loss,
        m.test_accuracy,
        m.seconds
    )
}

impl Display {
    /// Bars when stderr is a terminal and not `quiet`; plain lines otherwise.
    pub fn new(quiet: bool) -> Self {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30.cyan/blue}] {percent}% of steps, ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            Bars {
                multi,
                overall,
                stages: HashMap::new(),
                done: 0,
                total: 0,
            }
        });
        Self { quiet, bars }
    }

    /// Shows one event.
    pub fn event(&mut self, event: Event) {
        let line = match &event {
            Event::Warning(w) => Some(format!("warning: {w}")),
            Event::Note(n) if !self.quiet => Some(format!("note: {n}")),
            _ => None,
        };
        if let Some(line) = line {
            match &self.bars {
                Some(b) => b.multi.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
            return;
        }
        if self.quiet {
            return;
        }
        match &mut self.bars {
            Some(b) => b.event(event),
            None => plain(event),
        }
    }

    /// Clears the bars.
    pub fn finish(&mut self) {
        if let Some(b) = &self.bars {
            b.overall.finish_and_clear();
            let _ = b.multi.clear();
        }
    }
}

fn plain(event: Event) {
    match event {
        Event::Begin { stages, steps } => {
            let s = if stages == 1 { "" } else { "s" };
            eprintln!("training {stages} stage{s} ({steps} optimizer steps)")
        }
        Event::Start(stage, i, n) => eprintln!(
            "[{i}/{n}] {} {} (seed {}, {})",
            stage.id,
            stage.chain_label(),
            stage.seed,
            kd_text(stage)
        ),
        Event::Epoch(stage, m) => eprintln!("{}", epoch_line(stage, m)),
        Event::Done(stage, record) if record.status != Status::Ok => eprintln!(
            "{}: {}: {}",
            label(stage),
            record.status.as_str(),
            record.error.as_deref().unwrap_or("")
        ),
        Event::Step(..) | Event::Done(..) | Event::Warning(_) | Event::Note(_) => {}
    }
}

impl Bars {
    fn prefix(&self) -> String {
        format!("stages {}/{}", self.done, self.total)
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Begin { stages, steps } => {
                self.total = stages;
                self.overall.set_length(steps);
                self.overall.set_prefix(self.prefix());
                self.overall.reset_eta();
            }
            Event::Start(stage, ..) => {
                let bar = self.multi.add(ProgressBar::new(0));
                bar.set_style(
                    ProgressStyle::with_template("  {prefix} [{bar:20}] {pos}/{len} {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(label(stage));
                bar.set_message(format!("epoch 1/{}", stage.training.epochs));
                self.stages.insert(stage.id.clone(), bar);
            }
            Event::Step(stage, epoch, step, steps) => {
                self.overall.inc(1);
                if let Some(bar) = self.stages.get(&stage.id) {
                    bar.set_length(steps as u64);
                    bar.set_position(step as u64);
                    bar.set_message(format!("epoch {epoch}/{}", stage.training.epochs));
                }
            }
            Event::Epoch(stage, m) => self.multi.suspend(|| eprintln!("{}", epoch_line(stage, m))),
            Event::Done(stage, record) => {
                if let Some(bar) = self.stages.remove(&stage.id) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if record.status != Status::Ok {
                    let line = format!(
                        "{}: {}: {}",
                        label(stage),
                        record.status.as_str(),
                        record.error.as_deref().unwrap_or("")
                    );
                    self.multi.suspend(|| eprintln!("{line}"));
                }
                self.done += 1;
                self.overall.set_prefix(self.prefix());
            }
            Event::Warning(_) | Event::Note(_) => {}
        }
    }
}
