//! How errors leave the program: each library error becomes a rendered report and an exit
//! code (`1` a runtime failure, `2` invalid input).

use crate::manifest::ManifestError;
use crate::sweep::SweepError;

/// An error on its way to the user: the report rendered on stderr and the exit code.
pub(super) struct Failure {
    pub(super) report: miette::Report,
    pub(super) code: u8,
}

impl From<ManifestError> for Failure {
    fn from(e: ManifestError) -> Self {
        Self {
            report: e.into(),
            code: 2,
        }
    }
}

impl From<SweepError> for Failure {
    fn from(e: SweepError) -> Self {
        let code = if matches!(
            e,
            SweepError::Data(_)
                | SweepError::Shape { .. }
                | SweepError::UnknownStage { .. }
                | SweepError::AdaptiveTasks
        ) {
            2
        } else {
            1
        };
        Self {
            report: e.into(),
            code,
        }
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        Self {
            report: e.into(),
            code: 1,
        }
    }
}
