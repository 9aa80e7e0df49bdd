//! `kdgrid diff A B` and `kdgrid diff A --against REV`.

use super::Failure;
use crate::report;
use std::path::{Path, PathBuf};

/// `kdgrid diff`: two results folders, or one against a git revision.
pub(super) fn diff_command(
    a: &Path,
    b: Option<&Path>,
    against: Option<&str>,
    tolerance: f64,
    across: Option<f64>,
) -> Result<(), Failure> {
    let fail = |message: String| Failure {
        report: miette::miette!("{message}"),
        code: 2,
    };
    let scratch = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let (left, right): (PathBuf, PathBuf) = match (b, against) {
        (Some(b), None) => (a.to_path_buf(), b.to_path_buf()),
        (None, Some(rev)) => {
            let n = report::diff::checkout(a, rev, scratch.path()).map_err(fail)?;
            if n == 0 {
                return Err(fail(format!(
                    "`{}` has no result tables at `{rev}`",
                    a.display()
                )));
            }
            (scratch.path().to_path_buf(), a.to_path_buf())
        }
        _ => {
            return Err(fail(
                "give two folders, or one folder and `--against REV`".into(),
            ));
        }
    };
    for dir in [&left, &right] {
        if !dir.is_dir() {
            return Err(fail(format!("`{}` is not a results folder", dir.display())));
        }
    }
    let diff = report::diff::compare(&left, &right, tolerance, across).map_err(|e| Failure {
        report: e.into(),
        code: 2,
    })?;
    print!("{}", diff.text);
    if diff.differences > 0 {
        return Err(Failure {
            report: miette::miette!(
                "{} differences beyond tolerance {}",
                diff.differences,
                diff.tolerance
            ),
            code: 1,
        });
    }
    // The tolerance applied: `--across`'s when the folders were computed differently.
    println!("no differences beyond tolerance {}", diff.tolerance);
    Ok(())
}
