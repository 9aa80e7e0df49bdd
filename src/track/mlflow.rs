//! A study's stages sent to an MLflow tracking server through its REST API
//! (`/api/2.0/mlflow/...`): one experiment per study, one run per stage (params: the grid
//! cell; metrics: every epoch's scalars by step and the final ones; tags: stage id, chain,
//! role, backend, processor, kdgrid version), the study's `report.md` as the experiment's
//! description.
//!
//! Exporting twice updates, never duplicates: runs are found by their `kdgrid.stage_id` tag,
//! and each run's `kdgrid.logged_epochs` / `kdgrid.logged_final` tags, sent in the same batch
//! as the metrics they count, say what it already holds.

use super::TrackError;
use super::runs::{self, Scalar};
use crate::plan::{Plan, Stage};
use crate::store::{StageRecord, Status};
use serde_json::{Value as Json, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// MLflow's limits on one `log-batch` request and on an experiment tag's value
/// (`mlflow/utils/validation.py`).
const MAX_METRICS_PER_BATCH: usize = 1000;
const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
const MAX_EXPERIMENT_TAG_CHARS: usize = 20_000;

/// What an export did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Exported {
    /// Runs created.
    pub created: usize,
    /// Existing runs that got something new.
    pub updated: usize,
    /// Existing runs that already held everything.
    pub unchanged: usize,
    /// The experiment's id on the server.
    pub experiment_id: String,
}

/// A connection to one tracking server.
pub struct Client {
    uri: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Client {
    /// A client of the server at `uri` (`http://host:port`; `https` needs the `tls` feature).
    /// A token in `MLFLOW_TRACKING_TOKEN` is sent as a bearer token, as MLflow's own client
    /// does.
    pub fn new(uri: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            uri: uri.trim_end_matches('/').to_string(),
            agent,
            token: std::env::var("MLFLOW_TRACKING_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        }
    }

    fn fail(&self, what: impl Into<String>) -> TrackError {
        TrackError::Mlflow {
            uri: self.uri.clone(),
            what: what.into(),
        }
    }

    /// Calls `method` of the REST API (a POST with `body`, or a GET with `query`); `Ok(None)`
    /// for a "does not exist" answer.
    fn call(&self, method: &str, body: &Json) -> Result<Option<Json>, TrackError> {
        self.request(method, Some(body), &[])
    }

    fn request(
        &self,
        method: &str,
        body: Option<&Json>,
        query: &[(&str, &str)],
    ) -> Result<Option<Json>, TrackError> {
        let url = format!("{}/api/2.0/mlflow/{method}", self.uri);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let sent = match body {
            Some(body) => {
                let mut r = self.agent.post(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send_json(body)
            }
            None => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                for (k, v) in query {
                    r = r.query(*k, *v);
                }
                r.call()
            }
        };
        let mut response = sent.map_err(|e| self.fail(format!("{method}: {e}")))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.fail(format!("{method}: reading the answer: {e}")))?;
        let answer: Json = serde_json::from_str(&text).unwrap_or(Json::String(text.clone()));
        if status == 404 && answer["error_code"] == "RESOURCE_DOES_NOT_EXIST" {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(self.fail(format!("{method} answered {status}: {}", short(&text))));
        }
        Ok(Some(answer))
    }

    fn must(&self, method: &str, body: &Json) -> Result<Json, TrackError> {
        self.call(method, body)?
            .ok_or_else(|| self.fail(format!("{method}: not found")))
    }

    /// The experiment named `name`, created if missing.
    fn experiment(&self, name: &str) -> Result<String, TrackError> {
        let found = self.request(
            "experiments/get-by-name",
            None,
            &[("experiment_name", name)],
        )?;
        let id = match found {
            Some(a) if a["experiment"]["lifecycle_stage"] == "deleted" => {
                return Err(self.fail(format!(
                    "experiment `{name}` is deleted: restore it (`mlflow experiments restore`) or \
                     delete it for good (`mlflow gc`) before exporting"
                )));
            }
            Some(a) => a["experiment"]["experiment_id"].clone(),
            None => {
                self.must("experiments/create", &json!({"name": name}))?["experiment_id"].clone()
            }
        };
        id.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.fail(format!("no experiment id for `{name}`")))
    }

    /// Every run of the experiment by its stage-id tag, with its tags.
    fn runs(&self, experiment: &str) -> Result<HashMap<String, RunState>, TrackError> {
        let mut runs = HashMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({
                "experiment_ids": [experiment],
                "max_results": 1000,
                // Runs deleted in the UI stay deleted: their stages get new runs.
                "run_view_type": "ACTIVE_ONLY",
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let answer = self.must("runs/search", &body)?;
            for run in answer["runs"].as_array().into_iter().flatten() {
                let tags: HashMap<&str, &str> = run["data"]["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| Some((t["key"].as_str()?, t["value"].as_str()?)))
                    .collect();
                let (Some(stage), Some(id)) =
                    (tags.get("kdgrid.stage_id"), run["info"]["run_id"].as_str())
                else {
                    continue;
                };
                runs.insert(
                    stage.to_string(),
                    RunState {
                        run_id: id.to_string(),
                        logged_epochs: tags
                            .get("kdgrid.logged_epochs")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0),
                        logged_params: tags.get("kdgrid.logged_params") == Some(&"true"),
                        logged_final: tags.get("kdgrid.logged_final").map(|s| s.to_string()),
                        status: run["info"]["status"].as_str().unwrap_or("").to_string(),
                    },
                );
            }
            match answer["next_page_token"].as_str() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(runs),
            }
        }
    }
}

/// What a run on the server already holds.
struct RunState {
    run_id: String,
    logged_params: bool,
    logged_epochs: usize,
    /// The stage status whose final metrics the run holds (`ok`, `failed`).
    logged_final: Option<String>,
    status: String,
}

/// Sends every settled stage of `plan` (`records`: the store's) to the server at `uri`, with
/// `report` (the study's `report.md`, when there is one) as the experiment's description.
pub fn export(
    uri: &str,
    plan: &Plan,
    records: &BTreeMap<crate::plan::StageId, StageRecord>,
    report: Option<&str>,
) -> Result<Exported, TrackError> {
    let client = Client::new(uri);
    let experiment = client.experiment(&plan.name)?;
    if let Some(text) = report {
        client.must(
            "experiments/set-experiment-tag",
            &json!({"experiment_id": experiment, "key": "mlflow.note.content", "value": note(text, &plan.name)}),
        )?;
    }
    let mut existing = client.runs(&experiment)?;
    let names = runs::run_names(plan);
    let role_seeds = runs::role_seeds_vary(plan);
    let mut done = Exported {
        experiment_id: experiment.clone(),
        ..Default::default()
    };
    for stage in &plan.stages {
        let Some(record) = records
            .get(&stage.id)
            .filter(|r| r.status != Status::Skipped)
        else {
            continue;
        };
        let name = &names[&stage.id];
        match existing.remove(stage.id.as_str()) {
            None => {
                let run = create_run(&client, &experiment, stage, record, (&plan.name, name))?;
                send(&client, &run, plan, stage, record, role_seeds)?;
                done.created += 1;
            }
            Some(run) => {
                if send(&client, &run, plan, stage, record, role_seeds)? {
                    done.updated += 1;
                } else {
                    done.unchanged += 1;
                }
            }
        }
    }
    Ok(done)
}

fn create_run(
    client: &Client,
    experiment: &str,
    stage: &Stage,
    record: &StageRecord,
    (study, name): (&str, &str),
) -> Result<RunState, TrackError> {
    let tags = [
        ("kdgrid.stage_id", stage.id.to_string()),
        ("kdgrid.study", study.to_string()),
        ("kdgrid.chain", stage.chain_label()),
        ("kdgrid.role", stage.role.as_str().to_string()),
        ("kdgrid.backend", record.backend.clone()),
        ("kdgrid.processor", record.processor.clone()),
        ("kdgrid.version", record.kdgrid_version.clone()),
    ];
    let answer = client.must(
        "runs/create",
        &json!({
            "experiment_id": experiment,
            "run_name": name,
            "start_time": now_ms(),
            "tags": tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        }),
    )?;
    let run_id = answer["run"]["info"]["run_id"]
        .as_str()
        .ok_or_else(|| client.fail("runs/create gave no run id"))?
        .to_string();
    Ok(RunState {
        run_id,
        logged_params: false,
        logged_epochs: 0,
        logged_final: None,
        status: "RUNNING".into(),
    })
}

/// Logs what `run` lacks of `record`; whether anything was sent.
fn send(
    client: &Client,
    run: &RunState,
    plan: &Plan,
    stage: &Stage,
    record: &StageRecord,
    role_seeds: bool,
) -> Result<bool, TrackError> {
    let time = now_ms();
    let mut sent = false;
    // Params with the tag that says they are there: a run whose creation was cut short gets
    // them on the next export.
    if !run.logged_params {
        let params: Vec<Json> = runs::hparams(plan, stage, role_seeds)
            .into_iter()
            .map(|(k, v)| json!({"key": k, "value": v.text()}))
            .collect();
        let chunks: Vec<&[Json]> = params.chunks(MAX_PARAMS_TAGS_PER_BATCH - 1).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let mut body = json!({"run_id": run.run_id, "params": chunk});
            if i + 1 == chunks.len() {
                body["tags"] = json!([{"key": "kdgrid.logged_params", "value": "true"}]);
            }
            client.must("runs/log-batch", &body)?;
        }
        sent = true;
    }
    // Whole epochs per batch, each batch with the tag that counts it (one entity of the
    // batch's 1,000).
    let epochs_per_batch = ((MAX_METRICS_PER_BATCH - 1) / runs::EPOCH_TAGS.len()).max(1);
    let new = record.epochs.get(run.logged_epochs..).unwrap_or(&[]);
    for (i, chunk) in new.chunks(epochs_per_batch).enumerate() {
        let metrics: Vec<Json> = chunk
            .iter()
            .flat_map(|m| runs::epoch_scalars(plan, stage, m))
            .map(|s| metric(&s, time))
            .collect();
        let logged = run.logged_epochs + i * epochs_per_batch + chunk.len();
        client.must(
            "runs/log-batch",
            &json!({
                "run_id": run.run_id,
                "metrics": metrics,
                "tags": [{"key": "kdgrid.logged_epochs", "value": logged.to_string()}],
            }),
        )?;
        sent = true;
    }
    // A stage retrained after a failure ends with other final numbers: sent again.
    let outcome = record.status.as_str();
    if run.logged_final.as_deref() != Some(outcome) {
        let metrics: Vec<Json> = runs::final_scalars(record)
            .iter()
            .map(|s| metric(s, time))
            .collect();
        client.must(
            "runs/log-batch",
            &json!({
                "run_id": run.run_id,
                "metrics": metrics,
                "tags": [{"key": "kdgrid.logged_final", "value": outcome}],
            }),
        )?;
        sent = true;
    }
    let status = match record.status {
        Status::Ok => "FINISHED",
        _ => "FAILED",
    };
    if run.status != status {
        client.must(
            "runs/update",
            &json!({"run_id": run.run_id, "status": status, "end_time": time}),
        )?;
        sent = true;
    }
    Ok(sent)
}

/// A metric as the REST API takes it; a value JSON cannot hold (`NaN`, infinities of a
/// diverged stage) as the string protobuf's JSON mapping uses.
fn metric(s: &Scalar, time: u64) -> Json {
    let value = if s.value.is_finite() {
        json!(s.value)
    } else if s.value.is_nan() {
        json!("NaN")
    } else if s.value > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    };
    json!({"key": s.tag, "value": value, "timestamp": time, "step": s.step})
}

/// The report as the experiment's description, cut to what MLflow takes with a pointer to the
/// whole file.
fn note(report: &str, study: &str) -> String {
    if report.chars().count() <= MAX_EXPERIMENT_TAG_CHARS {
        return report.to_string();
    }
    let tail = format!(
        "\n\n… (cut at MLflow's {MAX_EXPERIMENT_TAG_CHARS} characters: the whole report is \
         `results/{study}/report.md`)"
    );
    let keep = MAX_EXPERIMENT_TAG_CHARS - tail.chars().count();
    let mut text: String = report.chars().take(keep).collect();
    text.push_str(&tail);
    text
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() > 300 {
        format!("{}…", line.chars().take(300).collect::<String>())
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_report_is_cut_to_mlflows_limit_with_a_pointer_to_the_file() {
        let short = "# report\n".repeat(10);
        assert_eq!(note(&short, "s"), short);
        let long = "é".repeat(25_000);
        let cut = note(&long, "big");
        assert_eq!(cut.chars().count(), MAX_EXPERIMENT_TAG_CHARS);
        assert!(cut.ends_with("`results/big/report.md`)"), "{cut}");
    }
}
