//! Helpers shared by the integration tests.

use assert_cmd::Command;
use polars::prelude::*;
use std::path::{Path, PathBuf};

/// A tiny synthetic grid: 2 seeds x (no-KD, KD, TA chain) = 10 stages.
pub const TINY: &str = r#"
name = "tiny"

[dataset]
kind = "synthetic"
seed = 11
classes = 4
train-size = 1024
test-size = 256
image-size = 10
noise = 0.5

[models.teacher]
conv = [8, 16]
dense = [32]

[models.assistant]
conv = [6]
dense = [16]

[models.student]
conv = [4]

[training]
epochs = 4
batch-size = 32
optimizer = "adam"
lr = 0.01

[grid]
seed = [0, 1]
temperature = [4.0]
alpha = [0.5]
chains = [["student"], ["teacher", "student"], ["teacher", "assistant", "student"]]
"#;

/// A temporary folder holding `m.toml` with `text`, and a `results/` path inside it.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.toml"), text).unwrap();
        Self { dir }
    }

    pub fn manifest(&self) -> PathBuf {
        self.dir.path().join("m.toml")
    }

    pub fn results(&self) -> PathBuf {
        self.dir.path().join("results")
    }

    /// `kdgrid --results <results> <args> <manifest>`.
    pub fn kdgrid(&self, args: &[&str]) -> assert_cmd::assert::Assert {
        self.kdgrid_env(args, &[])
    }

    /// [`Workspace::kdgrid`] with environment variables set.
    pub fn kdgrid_env(&self, args: &[&str], env: &[(&str, &str)]) -> assert_cmd::assert::Assert {
        Command::cargo_bin("kdgrid")
            .unwrap()
            .arg("--results")
            .arg(self.results())
            .args(args)
            .arg(self.manifest())
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .assert()
    }

    pub fn parquet(&self, experiment: &str, name: &str) -> DataFrame {
        read_parquet(&self.results().join(experiment).join(name))
    }

    pub fn parquet_csv(&self, experiment: &str, name: &str) -> DataFrame {
        let path = self.results().join(experiment).join(name);
        CsvReader::new(std::fs::File::open(&path).unwrap())
            .finish()
            .unwrap()
    }
}

pub fn read_parquet(path: &Path) -> DataFrame {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetReader::new(file).finish().unwrap()
}

pub fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

pub fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// The values of a string column.
pub fn strings(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect()
}

/// The values of a numeric column as floats (nulls as NaN).
pub fn floats(df: &DataFrame, name: &str) -> Vec<f64> {
    df.column(name)
        .unwrap()
        .cast(&DataType::Float64)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect()
}

/// The stages `kdgrid plan --json <args>` lists for `ws`, as `(chain, seed, id)`, in plan order.
pub fn plan_stages(ws: &Workspace, args: &[&str]) -> Vec<(String, u64, String)> {
    let mut cmd = vec!["plan", "--json"];
    cmd.extend(args);
    let plan: serde_json::Value =
        serde_json::from_str(&stdout(&ws.kdgrid(&cmd).success())).unwrap();
    plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["chain"].as_str().unwrap().to_string(),
                s["seed"].as_u64().unwrap(),
                s["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The id of the stage of `chain` and `seed` in `ws`'s plan under `args`.
pub fn stage_id(ws: &Workspace, args: &[&str], chain: &str, seed: u64) -> String {
    let stages = plan_stages(ws, args);
    stages
        .iter()
        .find(|(c, s, _)| c == chain && *s == seed)
        .unwrap_or_else(|| panic!("no `{chain}` seed {seed} in {stages:?}"))
        .2
        .clone()
}

/// Asserts that `plan --json`'s analytic parameter counts equal those Burn counted when training
/// `experiment` (which must have run).
pub fn assert_plan_params_match(ws: &Workspace, experiment: &str) {
    let json = stdout(&ws.kdgrid(&["plan", "--json"]).success());
    let plan: serde_json::Value = serde_json::from_str(&json).unwrap();
    let runs = ws.parquet(experiment, "runs.parquet");
    let models = strings(&runs, "model");
    let params: Vec<u64> = runs
        .column("params")
        .unwrap()
        .u64()
        .unwrap()
        .iter()
        .map(|p| p.unwrap())
        .collect();
    for m in plan["models"].as_array().unwrap() {
        let name = m["name"].as_str().unwrap();
        let i = models.iter().position(|x| x == name).unwrap();
        assert_eq!(
            m["params"].as_u64().unwrap(),
            params[i],
            "analytic vs Burn for {name}"
        );
    }
}

/// A diagnostic as one line: miette wraps long messages and draws a margin.
pub fn flat(text: &str) -> String {
    text.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A stage's history, oldest first: every claim generation's `history/<g>.log`.
pub fn history(stage_dir: &Path) -> String {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(stage_dir.join("history"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let g = e.file_name().to_str()?.strip_suffix(".log")?.parse().ok()?;
            Some((g, e.path()))
        })
        .collect();
    files.sort();
    files
        .iter()
        .map(|(_, p)| std::fs::read_to_string(p).unwrap_or_default())
        .collect()
}
