//! `kdgrid validate`: checks a manifest and each of its profiles, counting cells and stages.

use super::{Cli, Failure, load_manifest};
use crate::manifest::Manifest;
use crate::plan;
use std::path::Path;

/// Checks `manifest` (with the chosen profile, or every profile it declares), reporting each
/// invalid one before failing.
pub(super) fn validate(cli: &Cli, manifest: &Path) -> Result<(), Failure> {
    let m = load_manifest(manifest, cli.profile.as_deref())?;
    let profiles = match cli.profile {
        Some(_) => Vec::new(),
        None => m.profiles.clone(),
    };
    let show = |m: &Manifest| {
        // Counting needs no data: the content digest only names stages.
        let plan = plan::expand(m, "");
        println!(
            "{}{} is valid: {} cells, {} stages",
            manifest.display(),
            m.profile
                .as_ref()
                .map(|p| format!(" with profile `{p}`"))
                .unwrap_or_default(),
            plan.cells.len(),
            plan.stages.len()
        );
    };
    show(&m);
    // Every profile is checked, and each invalid one reported, before failing.
    let mut last_failure = None;
    for p in profiles {
        match load_manifest(manifest, Some(&p)) {
            Ok(m) => show(&m),
            Err(failure) => {
                if let Some(previous) = last_failure.replace(failure) {
                    eprintln!("{:?}", previous.report);
                }
            }
        }
    }
    last_failure.map_or(Ok(()), Err)
}
