//! From a manifest path to a plan: reading and validating the manifest (warnings on stderr),
//! command-line compute overrides, the data's content digest, and where the numbers come from.

use super::{Cli, ComputeArgs, Failure};
use crate::data;
use crate::manifest::{self, Manifest};
use crate::plan::{self, Plan};
use crate::report::Provenance;
use crate::train::Backend;
use std::path::{Path, PathBuf};

/// Reads and validates `manifest` with `profile`, printing its warnings to stderr.
pub(super) fn load_manifest(manifest: &Path, profile: Option<&str>) -> Result<Manifest, Failure> {
    let m = manifest::load_profile(manifest, profile)?;
    if !m.warnings.is_empty() {
        let warnings = manifest::ManifestWarnings {
            path: m.path.clone(),
            profile: m.profile.clone(),
            src: miette::NamedSource::new(m.path.display().to_string(), m.text.clone()),
            warnings: m.warnings.iter().cloned().map(manifest::Warning).collect(),
        };
        eprintln!("{:?}", miette::Report::new(warnings));
    }
    Ok(m)
}

/// The plan of `manifest` and the backend it computes on (an unavailable backend is bad input).
pub(super) fn plan_and_backend(
    cli: &Cli,
    manifest: &Path,
    compute: &ComputeArgs,
) -> Result<(Plan, Backend), Failure> {
    let (plan, _) = load_plan(manifest, cli.profile.as_deref(), compute, &cli.results)?;
    let backend = Backend::new(plan.compute).map_err(|e| Failure {
        report: e.into(),
        code: 2,
    })?;
    Ok((plan, backend))
}

/// Reads and validates `manifest`, applies the command-line compute overrides, and expands it
/// with the content digest of its data (cached under `results`); also says where its numbers
/// come from.
pub(super) fn load_plan(
    manifest: &Path,
    profile: Option<&str>,
    compute: &ComputeArgs,
    results: &Path,
) -> Result<(Plan, Provenance), Failure> {
    load_plan_with(manifest, profile, compute, results, false)
}

/// [`load_plan`]; with `data_optional`, a dataset that cannot be read gives a warning and
/// provisional stage ids instead of an error (for `slurm submit --dry-run` away from the data).
pub(super) fn load_plan_with(
    manifest: &Path,
    profile: Option<&str>,
    compute: &ComputeArgs,
    results: &Path,
    data_optional: bool,
) -> Result<(Plan, Provenance), Failure> {
    let mut m = load_manifest(manifest, profile)?;
    compute.apply(&mut m)?;
    let data = match data::fingerprint(&m.dataset, &mut data::DigestCache::open(results)) {
        Ok(d) => d,
        Err(e) if data_optional => {
            eprintln!(
                "warning: {e}; stage ids below are provisional (they name the data by content)"
            );
            String::new()
        }
        Err(e) => {
            return Err(Failure {
                report: e.into(),
                code: 2,
            });
        }
    };
    let plan = plan::expand(&m, &data);
    let provenance = Provenance {
        experiment: plan.name.clone(),
        description: m.description.clone(),
        manifest: manifest_label(manifest),
        manifest_sha256: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(m.text.as_bytes())),
        profile: m.profile.clone(),
        git_revision: git_revision(manifest),
        data_sha256: data,
        compute: format!("{} on {}", plan.compute.result_key(), plan.compute.device),
        adaptive: plan.adaptive,
    };
    Ok((plan, provenance))
}

/// How provenance names the manifest: its path within its git checkout (`experiments/default.toml`),
/// or its file name, so the label is the same on every clone and machine.
fn manifest_label(file: &Path) -> String {
    let name = || {
        file.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let Ok(abs) = std::path::absolute(file) else {
        return name();
    };
    let dir = abs.parent().unwrap_or(Path::new("/"));
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--show-toplevel"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let top = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            let top = top.canonicalize().unwrap_or(top);
            let abs = abs.canonicalize().ok()?;
            Some(abs.strip_prefix(top).ok()?.display().to_string())
        })
        .unwrap_or_else(name)
}

/// The last commit that changed `file`, when it is tracked by git.
fn git_revision(file: &Path) -> Option<String> {
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%H", "--"])
        .arg(file.file_name()?)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let rev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !rev.is_empty()).then_some(rev)
}
