//! `kdgrid gc`: stage folders that no manifest under `experiments/` still references (an
//! edited manifest, a bumped trainer version), with their sizes; removed unless `--dry-run`.
//!
//! It also removes what killed tasks left in every experiment folder (temporary files, claims,
//! task announcements, finished stages' checkpoints), holding the store alone.
//!
//! A stage counts as referenced if any profile of any manifest naming its experiment expands to
//! it under any compute setting the experiment's records were trained with (`--backend tch
//! --threads 4` stages have ids the manifest's own `[compute]` table does not give). Experiments
//! whose ids cannot be computed (a dataset not at hand) and stages that never finished are left
//! alone.

use super::Failure;
use crate::data;
use crate::manifest::{self, BackendKind, ComputeSpec, DeviceSpec, Manifest};
use crate::plan::{self, StageId};
use crate::store::{self, Store, gc::StageDir};
use comfy_table::{Table, presets::ASCII_MARKDOWN};
use indicatif::HumanBytes;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

/// Runs `kdgrid gc` over `results` with the manifests under `experiments`.
pub(super) fn gc(results: &Path, experiments: &Path, dry_run: bool) -> Result<(), Failure> {
    let manifests = manifests(experiments)?;
    let mut table = Table::new();
    table.load_preset(ASCII_MARKDOWN);
    table.set_header(["stage folder", "size", "trained on", "why"]);
    let (mut count, mut total) = (0usize, 0u64);
    for (name, root) in store::gc::experiments(results) {
        leftovers(&name, &root, results, dry_run)?;
        let dirs = store::gc::stage_dirs(&root);
        let unused: Vec<(StageDir, String)> = match manifests.get(&name) {
            None => dirs
                .into_iter()
                .filter(|d| d.finished)
                .map(|d| {
                    let why = format!(
                        "no manifest under {} writes `{name}`",
                        experiments.display()
                    );
                    (d, why)
                })
                .collect(),
            Some(ms) => match referenced(ms, &dirs, results) {
                Ok(ids) => dirs
                    .into_iter()
                    .filter(|d| d.finished && !ids.contains(&d.id))
                    .map(|d| (d, "not a stage of its manifest any more".to_string()))
                    .collect(),
                Err(why) => {
                    println!("{name}: left alone: {why}");
                    continue;
                }
            },
        };
        if unused.is_empty() {
            continue;
        }
        // Nothing is removed under a running sweep.
        let _lock = if dry_run {
            None
        } else {
            match Store::open(results, &name) {
                Ok(s) => Some(s),
                Err(e) => {
                    println!("{name}: left alone: {e}");
                    continue;
                }
            }
        };
        for (dir, why) in unused {
            let trained_on = dir.record.as_ref().map_or_else(
                || "unknown (corrupt record)".to_string(),
                |r| {
                    format!(
                        "{} {} {} threads, kdgrid {}",
                        r.backend, r.device, r.threads, r.kdgrid_version
                    )
                },
            );
            if !dry_run {
                store::gc::remove(&dir).map_err(|e| Failure {
                    report: miette::miette!("cannot remove `{}`: {e}", dir.path.display()),
                    code: 1,
                })?;
            }
            count += 1;
            total += dir.bytes;
            table.add_row([
                dir.path.display().to_string(),
                HumanBytes(dir.bytes).to_string(),
                trained_on,
                why,
            ]);
        }
    }
    if count == 0 {
        println!(
            "every stage folder under {} is referenced",
            results.display()
        );
        return Ok(());
    }
    println!("{table}");
    if dry_run {
        println!(
            "{count} stage folders, {}: would be removed (`kdgrid gc` removes them)",
            HumanBytes(total)
        );
    } else {
        println!("{count} stage folders, {}: removed", HumanBytes(total));
    }
    Ok(())
}

/// Removes (or, with `dry_run`, lists) what killed tasks left in experiment `name`'s folder
/// `root`, holding its store alone so that no running task's file is taken for a dead one's.
fn leftovers(name: &str, root: &Path, results: &Path, dry_run: bool) -> Result<(), Failure> {
    let _lock = if dry_run {
        None
    } else {
        match Store::open(results, name) {
            Ok(s) => Some(s),
            Err(e) => {
                println!("{name}: leftovers of killed tasks left alone: {e}");
                return Ok(());
            }
        }
    };
    if !dry_run {
        store::gc::finish_sealed_commits(root);
    }
    let found = store::gc::leftovers(root);
    if found.is_empty() {
        return Ok(());
    }
    let bytes: u64 = found.iter().map(|p| store::gc::bytes(p)).sum();
    if !dry_run {
        for path in &found {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_file(path)
            };
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Failure {
                        report: miette::miette!("cannot remove `{}`: {e}", path.display()),
                        code: 1,
                    });
                }
                _ => {}
            }
        }
    }
    println!(
        "{name}: {} files left by killed tasks (temporary files, claims, task announcements, finished stages' checkpoints and unnamed weights), {}: {}",
        found.len(),
        HumanBytes(bytes),
        if dry_run {
            "would be removed"
        } else {
            "removed"
        }
    );
    Ok(())
}

/// Every valid manifest under `dir` with each of its profiles, by the experiment it writes. An
/// invalid manifest stops gc: its experiments' stages cannot be told apart from unused ones.
fn manifests(dir: &Path) -> Result<BTreeMap<String, Vec<Manifest>>, Failure> {
    let mut by_name: BTreeMap<String, Vec<Manifest>> = BTreeMap::new();
    let files = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"));
    for file in files {
        let base = manifest::load(file.path())?;
        for profile in base.profiles.clone() {
            let m = manifest::load_profile(file.path(), Some(&profile))?;
            by_name
                .entry(plan::expand(&m, "").name)
                .or_default()
                .push(m);
        }
        by_name
            .entry(plan::expand(&base, "").name)
            .or_default()
            .push(base);
    }
    Ok(by_name)
}

/// The stage ids `manifests` expand to under their own compute settings and under every one
/// the records in `dirs` were trained with.
fn referenced(
    manifests: &[Manifest],
    dirs: &[StageDir],
    results: &Path,
) -> Result<HashSet<StageId>, String> {
    // Each distinct setting once (records share them run by run); flex's thread count does
    // not name stages, so settings are told apart by what does.
    let mut trained: Vec<ComputeSpec> = Vec::new();
    for r in dirs.iter().filter_map(|d| d.record.as_ref()) {
        let c = compute_of(&r.backend, &r.device, r.threads, &r.processor);
        if trained.iter().all(|t| t.result_key() != c.result_key()) {
            trained.push(c);
        }
    }
    let mut ids = HashSet::new();
    let mut cache = data::DigestCache::open(results);
    for m in manifests {
        let digest = data::fingerprint(&m.dataset, &mut cache)
            .map_err(|e| format!("{e}; its stages' ids name the data by content"))?;
        let own = m.compute.result_key();
        let computes = std::iter::once(m.compute)
            .chain(trained.iter().copied().filter(|c| c.result_key() != own));
        for compute in computes {
            let m = Manifest {
                compute,
                ..m.clone()
            };
            ids.extend(plan::expand(&m, &digest).stages.into_iter().map(|s| s.id));
        }
    }
    Ok(ids)
}

/// The compute settings a record was trained with (the processor's numeric class for flex).
fn compute_of(backend: &str, device: &str, threads: usize, processor: &str) -> ComputeSpec {
    ComputeSpec {
        // A flex stage of another numeric class has its class in its id.
        class: crate::numerics::class_named(processor),
        backend: if backend == "tch" {
            BackendKind::Tch
        } else {
            BackendKind::Flex
        },
        device: device.parse().unwrap_or(DeviceSpec::Cpu),
        threads: Some(threads.max(1)),
    }
}
