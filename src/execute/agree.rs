//! Plan agreement between stage tasks sharing a store: each task announces the plan it computed
//! (a digest of its stage ids, in order) and the settings that went into it; a task that finds
//! a running task of its kind (a shard of as many shards, another `run-stage` task) with another
//! plan stops, naming the settings that differ. Without this, shards on hosts with different
//! core counts (LibTorch CPU stage ids name the thread count) would wait forever for teachers
//! that no one trains under the ids they expect.

use super::SweepError;
use crate::plan::Plan;
use crate::report::Provenance;
use crate::store::{Peer, Presence, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::path::PathBuf;

/// What a task does: one shard of a plan, or single stages (`run-stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Shard `index` of `count` (`run --shard M/N`): waits for teachers other shards train.
    Shard {
        /// M.
        index: usize,
        /// N.
        count: usize,
    },
    /// Named stages (`run-stage`, a Slurm array task): their teachers must be in the store.
    Stage,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Shard { index, count } => write!(f, "shard {index}/{count}"),
            Role::Stage => f.write_str("`run-stage` task"),
        }
    }
}

/// What a task announces about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// What it does.
    pub role: Role,
    /// SHA-256 of its plan's stage ids, in plan order.
    pub plan: String,
    /// Backend (`flex`, `tch`).
    pub backend: String,
    /// Device (`cpu`, `cuda:0`).
    pub device: String,
    /// Threads it computes with.
    pub threads: usize,
    /// The compute part of its stage ids.
    pub compute: String,
    /// SHA-256 of its manifest (after the profile).
    pub manifest: String,
    /// SHA-256 of its dataset.
    pub data: String,
    /// Its profile.
    pub profile: Option<String>,
    /// Its kdgrid version.
    pub version: String,
    /// The claim protocol it follows (2: generations; absent in announcements of kdgrid
    /// versions whose claims were one renamed file, which do not see generations).
    #[serde(default = "first_claims")]
    pub claims: u32,
    /// `pid N on host`.
    pub holder: String,
}

/// The claim protocol of this version.
pub const CLAIMS: u32 = 2;

fn first_claims() -> u32 {
    1
}

/// The SHA-256 of `plan`'s stage ids in plan order: equal plans have equal digests.
pub fn plan_digest(plan: &Plan) -> String {
    let mut h = Sha256::new();
    for s in &plan.stages {
        h.update(s.id.as_str().as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

impl TaskInfo {
    /// This task's announcement.
    pub fn new(role: Role, plan: &Plan, provenance: &Provenance) -> Self {
        let c = &plan.compute;
        Self {
            role,
            plan: plan_digest(plan),
            backend: c.backend.to_string(),
            device: c.device.to_string(),
            threads: c.resolved_threads(),
            compute: c.result_key(),
            manifest: provenance.manifest_sha256.clone(),
            data: provenance.data_sha256.clone(),
            profile: provenance.profile.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            claims: CLAIMS,
            holder: format!("pid {} on {}", std::process::id(), crate::store::hostname()),
        }
    }

    /// Whether `other` must compute the same plan as this task: a shard of as many shards, or
    /// another `run-stage` task.
    fn same_kind(&self, other: &TaskInfo) -> bool {
        match (self.role, other.role) {
            (Role::Shard { count: a, .. }, Role::Shard { count: b, .. }) => a == b,
            (Role::Stage, Role::Stage) => true,
            _ => false,
        }
    }

    /// The settings in which `other` differs from this task, as `` `threads`: 2 here, 4 there ``.
    pub fn differences(&self, other: &TaskInfo) -> String {
        let mut out = Vec::new();
        let mut differ = |name: &str, here: String, there: String| {
            if here != there {
                out.push(format!("`{name}`: {here} here, {there} there"));
            }
        };
        differ("backend", self.backend.clone(), other.backend.clone());
        differ("device", self.device.clone(), other.device.clone());
        if self.compute != other.compute {
            if self.threads != other.threads {
                differ(
                    "threads",
                    self.threads.to_string(),
                    other.threads.to_string(),
                );
            } else {
                // Same settings on another processor class: flex ids carry the class.
                differ(
                    "compute key (processor class)",
                    self.compute.clone(),
                    other.compute.clone(),
                );
            }
        }
        let short = |d: &str| format!("sha256 {}", &d[..d.len().min(12)]);
        differ("dataset", short(&self.data), short(&other.data));
        differ("manifest", short(&self.manifest), short(&other.manifest));
        let profile = |p: &Option<String>| p.clone().unwrap_or_else(|| "none".into());
        differ("profile", profile(&self.profile), profile(&other.profile));
        differ(
            "kdgrid version",
            self.version.clone(),
            other.version.clone(),
        );
        differ(
            "claim protocol (stop the older kdgrid's tasks first)",
            self.claims.to_string(),
            other.claims.to_string(),
        );
        if out.is_empty() {
            "no setting kdgrid records differs (another build of kdgrid?)".into()
        } else {
            out.join(", ")
        }
    }
}

/// A task's announcement in the store, and the checks against the others'.
pub struct Agreement<'a> {
    store: &'a Store,
    /// This task.
    pub me: TaskInfo,
    presence: Presence,
    /// The announcements that were there when this task joined: a task with another plan among
    /// them makes this one the newcomer, refused; one that came later is the newcomer, and this
    /// task goes on.
    elders: HashSet<PathBuf>,
}

impl<'a> Agreement<'a> {
    /// Announces `me` in `store` and checks it against the tasks already running; a task with
    /// another plan not yet seen alive is watched for a few heartbeats first.
    pub fn join(store: &'a Store, me: TaskInfo) -> Result<Self, SweepError> {
        let info = serde_json::to_value(&me).expect("task infos serialize");
        let presence = store.announce(&info)?;
        let mut a = Self {
            store,
            me,
            presence,
            elders: HashSet::new(),
        };
        a.elders = a.peers()?.into_iter().map(|(p, _)| p.path).collect();
        if a.check()? {
            // An announcement left by a killed task also looks alive at first sight: watch
            // whether it is touched before calling the plans different.
            std::thread::sleep(crate::store::presence_beat() * 3 / 2);
            a.check()?;
        }
        Ok(a)
    }

    /// The running tasks of this task's kind, with their announcements; an error when one of
    /// them, running before this task joined, computed another plan. `Ok(true)` when one with
    /// another plan was not yet seen alive.
    pub fn check(&self) -> Result<bool, SweepError> {
        let mut unsure = false;
        for (peer, info) in self.peers()? {
            if (info.plan == self.me.plan && info.claims == self.me.claims)
                || !self.me.same_kind(&info)
                || peer.stale
                || !self.elders.contains(&peer.path)
            {
                continue;
            }
            if !peer.confirmed {
                unsure = true;
                continue;
            }
            return Err(SweepError::PlanMismatch {
                here: self.me.role.to_string(),
                there: format!("{} ({})", info.role, info.holder),
                differences: self.me.differences(&info),
            });
        }
        Ok(unsure)
    }

    /// Whether a live task of this plan is shard `index` (of this task's shard count).
    pub fn shard_running(&self, index: usize) -> Result<bool, SweepError> {
        let Role::Shard { count, .. } = self.me.role else {
            return Ok(false);
        };
        Ok(self.peers()?.into_iter().any(|(peer, info)| {
            !peer.stale && info.plan == self.me.plan && info.role == Role::Shard { index, count }
        }))
    }

    fn peers(&self) -> Result<Vec<(Peer, TaskInfo)>, SweepError> {
        Ok(self
            .store
            .peers(&self.presence)?
            .into_iter()
            .filter_map(|p| {
                let info = serde_json::from_value(p.info.clone()).ok()?;
                Some((p, info))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(compute: &str, threads: usize) -> TaskInfo {
        TaskInfo {
            role: Role::Shard { index: 0, count: 2 },
            plan: "p".into(),
            backend: "tch".into(),
            device: "cpu".into(),
            threads,
            compute: compute.into(),
            manifest: "m".repeat(64),
            data: "d".repeat(64),
            profile: None,
            version: "0.1.0".into(),
            claims: CLAIMS,
            holder: "pid 1 on a".into(),
        }
    }

    #[test]
    fn differences_name_the_setting() {
        let a = info("tch2-cpu-2threads", 2);
        let b = info("tch2-cpu-4threads", 4);
        assert_eq!(a.differences(&b), "`threads`: 2 here, 4 there");
        // flex ids do not name the thread count: not a difference in the plan.
        let (mut c, mut d) = (info("flex", 2), info("flex", 4));
        (c.backend, d.backend) = ("flex".into(), "flex".into());
        d.data = "e".repeat(64);
        assert_eq!(
            c.differences(&d),
            "`dataset`: sha256 dddddddddddd here, sha256 eeeeeeeeeeee there"
        );
        // An ARM node's flex plan names its class.
        let (mut e, mut f) = (info("flex", 2), info("flex-aarch64-neon", 2));
        (e.backend, f.backend) = ("flex".into(), "flex".into());
        assert_eq!(
            e.differences(&f),
            "`compute key (processor class)`: flex here, flex-aarch64-neon there"
        );
    }
}
