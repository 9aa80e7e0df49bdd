//! `kdgrid report [--check]`.

use super::{Failure, progress};
use crate::plan::Plan;
use crate::report::{self, Provenance};
use crate::sweep::{self, Event};
use std::path::Path;

/// `kdgrid report`: rewrites the tables from the store, or with `check` compares the
/// committed ones with a regeneration and fails on any difference.
pub(super) fn report_command(
    plan: &Plan,
    results: &Path,
    provenance: &Provenance,
    check: bool,
) -> Result<(), Failure> {
    let mut display = progress::Display::new(true);
    let warn = &mut |e: Event| display.event(e);
    if !check {
        let (tables, files) = sweep::report(plan, results, provenance, None, warn)?;
        println!("{}", report::summary_table(&tables));
        for f in files {
            println!("  {}", f.display());
        }
        return Ok(());
    }
    let dir = results.join(&plan.name);
    let scratch = tempfile::tempdir().map_err(|e| Failure {
        report: miette::miette!("cannot create a scratch folder: {e}"),
        code: 1,
    })?;
    sweep::report(plan, results, provenance, Some(scratch.path()), warn)?;
    let diff = report::diff::compare(&dir, scratch.path(), 0.0, None).map_err(|e| Failure {
        report: e.into(),
        code: 1,
    })?;
    print!("{}", diff.text);
    if diff.differences > 0 {
        return Err(Failure {
            report: miette::miette!(
                help = format!(
                    "if the change is meant, `kdgrid report {}` rewrites them; review `git diff`",
                    provenance.manifest
                ),
                "the committed tables in `{}` differ from the ones regenerated from the store ({} differences)",
                dir.display(),
                diff.differences
            ),
            code: 1,
        });
    }
    println!("tables in {} are up to date", dir.display());
    Ok(())
}
