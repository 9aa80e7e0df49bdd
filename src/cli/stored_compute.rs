//! `report` and `status` read what a `run` wrote. Stage ids include the compute settings that
//! decide a stage's numbers (backend, and on LibTorch CPU the thread count), so a `run
//! --backend tch` leaves stages a plain `report` would not find. Without compute flags, when
//! the manifest's settings find no stage in the store, the settings recorded in the
//! experiment's records are tried, and the one finding the most stages is used (and named).

use super::{ComputeArgs, Failure, load_plan};
use crate::plan::{Plan, StageId};
use crate::report::Provenance;
use crate::store::gc;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

/// The plan of `manifest` under the compute settings its stored stages were computed with
/// (see the module doc); explicit flags in `compute` are used as given.
pub(super) fn load_plan_from_store(
    manifest: &Path,
    profile: Option<&str>,
    compute: &ComputeArgs,
    results: &Path,
) -> Result<(Plan, Provenance), Failure> {
    let (plan, provenance) = load_plan(manifest, profile, compute, results)?;
    if compute.is_given() {
        return Ok((plan, provenance));
    }
    // The plan's own stages first, by name: a store shared with other plans (or 100k other
    // stages) is listed only when the manifest's settings find none of its stages.
    let stages = results.join(&plan.name).join("stages");
    if plan
        .stages
        .iter()
        .any(|s| stages.join(s.id.as_str()).join("record.json").exists())
    {
        return Ok((plan, provenance));
    }
    let dirs = gc::stage_dirs(&results.join(&plan.name));
    let stored: HashSet<&StageId> = dirs
        .iter()
        .filter(|d| d.record.is_some())
        .map(|d| &d.id)
        .collect();
    let found = |p: &Plan| p.stages.iter().filter(|s| stored.contains(&s.id)).count();
    if stored.is_empty() || found(&plan) > 0 {
        return Ok((plan, provenance));
    }
    let settings: BTreeSet<(String, String, usize, String)> = dirs
        .iter()
        .filter_map(|d| d.record.as_ref())
        .map(|r| {
            (
                r.backend.clone(),
                r.device.clone(),
                r.threads,
                r.processor.clone(),
            )
        })
        .collect();
    let mut best: Option<(usize, Plan, Provenance)> = None;
    for (backend, device, threads, processor) in settings {
        let Ok(device) = device.parse() else { continue };
        let args = ComputeArgs {
            backend: Some(backend),
            device: Some(device),
            threads: Some(threads),
            // Flex stages of another numeric class carry it in their ids.
            class: crate::numerics::class_named(&processor),
        };
        // A setting this build cannot plan for (e.g. `tch` without LibTorch) is skipped.
        let Ok((p, prov)) = load_plan(manifest, profile, &args, results) else {
            continue;
        };
        let n = found(&p);
        if n > best.as_ref().map_or(0, |b| b.0) {
            best = Some((n, p, prov));
        }
    }
    match best {
        Some((n, p, prov)) => {
            eprintln!(
                "note: the manifest's compute settings (`{}`) find no stage in the store; \
                 showing the {n} stages computed with `{}` (what the records say a run used; \
                 `--backend`/`--device`/`--threads` choose)",
                plan.compute.result_key(),
                p.compute.result_key()
            );
            Ok((p, prov))
        }
        None => Ok((plan, provenance)),
    }
}
