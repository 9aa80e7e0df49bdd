//! TensorBoard event files, one run folder per stage under `DIR/<study>/`, named as the grid
//! ([`runs::run_names`]), with the HParams plugin's summaries so its dashboard shows the grid.
//!
//! A stage's file (`events.out.tfevents.kdgrid.<stage id>`) is only ever appended to, and
//! only with what it lacks: before writing, the file is read back, a torn last record (a
//! killed writer) is cut off, and every `(tag, step)` already there is skipped. So rerunning a
//! study, resuming a stage or exporting it again writes each scalar once, and a stage retrained
//! after a failure continues its curve (reruns are bit-identical, so the values it would
//! repeat are the ones already there).

use super::TrackError;
use super::proto::google::protobuf::{ListValue, Value as PbValue, value::Kind};
use super::proto::tensorboard::hparams::{
    self as hp, Experiment, HParamInfo, HParamsPluginData, MetricInfo, MetricName, SessionEndInfo,
    SessionStartInfo, h_param_info::Domain, h_params_plugin_data::Data,
};
use super::proto::tensorboard::{
    DataClass, DataType, Event, Summary, SummaryMetadata, TensorProto, TensorShapeProto, event,
    summary, summary_metadata::PluginData, tensor_shape_proto::Dim,
};
use super::runs::{self, FINAL_TAGS, Scalar, Value};
use super::tfrecord;
use crate::plan::{Plan, Stage, StageId};
use crate::store::{StageRecord, Status};
use crate::train::EpochMetrics;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The HParams plugin's tags (`tensorboard/plugins/hparams/metadata.py`).
const EXPERIMENT_TAG: &str = "_hparams_/experiment";
const SESSION_START_TAG: &str = "_hparams_/session_start_info";
const SESSION_END_TAG: &str = "_hparams_/session_end_info";

/// Name of a stage's event file: TensorBoard reads files whose name holds `tfevents`.
pub fn event_file_name(id: &StageId) -> String {
    format!("events.out.tfevents.kdgrid.{id}")
}

/// A study's TensorBoard folder, written while it trains or from the store.
pub struct TensorBoard<'p> {
    plan: &'p Plan,
    role_seeds: bool,
    root: PathBuf,
    names: HashMap<StageId, String>,
    open: HashMap<StageId, RunFile>,
}

impl<'p> TensorBoard<'p> {
    /// Opens `dir/<study>` for `plan`, writing the HParams experiment (the grid's axes and the
    /// metrics) when it is missing or another plan's.
    pub fn open(dir: &Path, plan: &'p Plan) -> Result<Self, TrackError> {
        let root = dir.join(&plan.name);
        let role_seeds = runs::role_seeds_vary(plan);
        let experiment = summary_event(
            0.0,
            0,
            vec![hparams_value(
                EXPERIMENT_TAG,
                Data::Experiment(experiment(plan, role_seeds)),
            )],
        );
        let mut bytes = Vec::new();
        tfrecord::write_record(&mut bytes, &file_version(0.0).encode_to_vec()).expect("memory");
        tfrecord::write_record(&mut bytes, &experiment.encode_to_vec()).expect("memory");
        let path = root.join("events.out.tfevents.kdgrid.experiment");
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            crate::atomic::write(&path, &bytes).map_err(|source| TrackError::Io {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Self {
            plan,
            role_seeds,
            names: runs::run_names(plan),
            root,
            open: HashMap::new(),
        })
    }

    /// The folder of `stage`'s run.
    pub fn run_dir(&self, stage: &Stage) -> PathBuf {
        self.root.join(&self.names[&stage.id])
    }

    /// Writes an epoch that just ended (and the session's start, the first time).
    pub fn epoch(&mut self, stage: &Stage, m: &EpochMetrics) -> Result<(), TrackError> {
        let scalars = runs::epoch_scalars(self.plan, stage, m);
        let (plan, role_seeds) = (self.plan, self.role_seeds);
        let file = self.file(stage)?;
        file.write(|| runs::hparams(plan, stage, role_seeds), &scalars, None)
    }

    /// Writes what `stage`'s run lacks of its record: epochs, the final scalars and the
    /// session's end. Skipped stages have no run.
    pub fn finish(&mut self, stage: &Stage, record: &StageRecord) -> Result<(), TrackError> {
        if record.status == Status::Skipped {
            return Ok(());
        }
        let mut scalars: Vec<Scalar> = record
            .epochs
            .iter()
            .flat_map(|m| runs::epoch_scalars(self.plan, stage, m))
            .collect();
        scalars.extend(runs::final_scalars(record));
        let status = match record.status {
            Status::Ok => hp::Status::Success,
            _ => hp::Status::Failure,
        };
        let (plan, role_seeds) = (self.plan, self.role_seeds);
        let file = self.file(stage)?;
        file.write(
            || runs::hparams(plan, stage, role_seeds),
            &scalars,
            Some(status),
        )?;
        self.open.remove(&stage.id);
        Ok(())
    }

    fn file(&mut self, stage: &Stage) -> Result<&mut RunFile, TrackError> {
        if !self.open.contains_key(&stage.id) {
            let path = self.run_dir(stage).join(event_file_name(&stage.id));
            let file = RunFile::open(path)?;
            self.open.insert(stage.id.clone(), file);
        }
        Ok(self.open.get_mut(&stage.id).expect("inserted"))
    }
}

/// A stage's event file and what it already holds.
struct RunFile {
    path: PathBuf,
    file: File,
    /// `(tag, step)` of every summary value in the file.
    seen: HashSet<(String, i64)>,
    /// The status of the last session end written.
    ended: Option<i32>,
}

impl RunFile {
    fn open(path: PathBuf) -> Result<Self, TrackError> {
        let io = |source| TrackError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("a run folder")).map_err(io)?;
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (records, end) = tfrecord::read_records(&bytes);
        let mut seen = HashSet::new();
        let mut ended = None;
        for record in &records {
            let Ok(event) = Event::decode(*record) else {
                continue;
            };
            let Some(event::What::Summary(s)) = event.what else {
                continue;
            };
            for v in s.value {
                if v.tag == SESSION_END_TAG {
                    ended = session_end_status(&v);
                }
                seen.insert((v.tag, event.step));
            }
        }
        // Cut a torn record off, so what follows is read.
        file.set_len(end as u64).map_err(io)?;
        file.seek(SeekFrom::End(0)).map_err(io)?;
        let mut run = Self {
            path,
            file,
            seen,
            ended,
        };
        if records.is_empty() {
            run.append(&[file_version(now())])?;
        }
        Ok(run)
    }

    /// Appends the scalars not yet in the file, the session's start before them (once), and
    /// its end when `end` differs from the last one written.
    fn write(
        &mut self,
        hparams: impl FnOnce() -> Vec<(&'static str, Value)>,
        scalars: &[Scalar],
        end: Option<hp::Status>,
    ) -> Result<(), TrackError> {
        let time = now();
        let mut events = Vec::new();
        if self.seen.insert((SESSION_START_TAG.into(), 0)) {
            let start = SessionStartInfo {
                hparams: hparams()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), pb_value(&v)))
                    .collect(),
                start_time_secs: time,
                ..Default::default()
            };
            events.push(summary_event(
                time,
                0,
                vec![hparams_value(
                    SESSION_START_TAG,
                    Data::SessionStartInfo(start),
                )],
            ));
        }
        let mut by_step: BTreeMap<u64, Vec<summary::Value>> = BTreeMap::new();
        let mut tagged: HashSet<&str> = self.seen.iter().map(|(t, _)| t.as_str()).collect();
        let mut fresh = Vec::new();
        for s in scalars {
            let key = (s.tag.to_string(), s.step as i64);
            if self.seen.contains(&key) {
                continue;
            }
            // TensorBoard reads a tag's plugin from its first value in a run.
            let first = tagged.insert(s.tag);
            by_step
                .entry(s.step)
                .or_default()
                .push(scalar_value(s.tag, s.value, first));
            fresh.push(key);
        }
        self.seen.extend(fresh);
        for (step, values) in by_step {
            events.push(summary_event(time, step as i64, values));
        }
        if let Some(status) = end.map(|s| s as i32)
            && self.ended != Some(status)
        {
            let info = SessionEndInfo {
                status,
                end_time_secs: time,
            };
            let step = scalars.iter().map(|s| s.step).max().unwrap_or(0) as i64;
            events.push(summary_event(
                time,
                step,
                vec![hparams_value(SESSION_END_TAG, Data::SessionEndInfo(info))],
            ));
            self.seen.insert((SESSION_END_TAG.into(), step));
            self.ended = Some(status);
        }
        self.append(&events)
    }

    fn append(&mut self, events: &[Event]) -> Result<(), TrackError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::new();
        for e in events {
            tfrecord::write_record(&mut bytes, &e.encode_to_vec()).expect("memory");
        }
        // One write per batch, flushed, so a viewer reading the file while it grows sees
        // whole epochs.
        self.file
            .write_all(&bytes)
            .and_then(|_| self.file.flush())
            .map_err(|source| TrackError::Io {
                path: self.path.clone(),
                source,
            })
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn file_version(time: f64) -> Event {
    Event {
        wall_time: time,
        what: Some(event::What::FileVersion("brain.Event:2".into())),
        ..Default::default()
    }
}

fn summary_event(time: f64, step: i64, value: Vec<summary::Value>) -> Event {
    Event {
        wall_time: time,
        step,
        what: Some(event::What::Summary(Summary { value })),
        ..Default::default()
    }
}

/// A scalar as TensorBoard 2 writes one: a rank-0 `DT_FLOAT` tensor of the `scalars` plugin.
/// TensorBoard keeps scalars as `f32` (its data server reads no other type), so the value is
/// rounded to the nearest `f32`; MLflow gets the `f64`.
fn scalar_value(tag: &str, value: f64, with_metadata: bool) -> summary::Value {
    summary::Value {
        tag: tag.into(),
        metadata: with_metadata.then(|| SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "scalars".into(),
                content: Vec::new(),
            }),
            data_class: DataClass::Scalar as i32,
            ..Default::default()
        }),
        value: Some(summary::value::Value::Tensor(TensorProto {
            dtype: DataType::DtFloat as i32,
            tensor_shape: Some(TensorShapeProto::default()),
            float_val: vec![value as f32],
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// An HParams plugin summary: the data in the metadata, an empty float tensor as the value
/// (the plugin's `NULL_TENSOR`).
fn hparams_value(tag: &str, data: Data) -> summary::Value {
    let content = HParamsPluginData {
        version: 0,
        data: Some(data),
    };
    summary::Value {
        tag: tag.into(),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "hparams".into(),
                content: content.encode_to_vec(),
            }),
            data_class: DataClass::Tensor as i32,
            ..Default::default()
        }),
        value: Some(summary::value::Value::Tensor(TensorProto {
            dtype: DataType::DtFloat as i32,
            tensor_shape: Some(TensorShapeProto {
                dim: vec![Dim {
                    size: 0,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn session_end_status(v: &summary::Value) -> Option<i32> {
    let content = &v.metadata.as_ref()?.plugin_data.as_ref()?.content;
    match HParamsPluginData::decode(&content[..]).ok()?.data? {
        Data::SessionEndInfo(info) => Some(info.status),
        _ => None,
    }
}

fn pb_value(v: &Value) -> PbValue {
    PbValue {
        kind: Some(match v {
            Value::Text(s) => Kind::StringValue(s.clone()),
            Value::Number(x) => Kind::NumberValue(*x),
        }),
    }
}

/// The study as the HParams plugin's experiment: every hyperparameter the stages have, with
/// the values they take (sorted), and the metrics its table shows.
fn experiment(plan: &Plan, role_seeds: bool) -> Experiment {
    let mut texts: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut numbers: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for stage in &plan.stages {
        for (name, value) in runs::hparams(plan, stage, role_seeds) {
            *uses.entry(name).or_default() += 1;
            match value {
                Value::Text(s) => {
                    texts.entry(name).or_default().insert(s);
                }
                // Ordered by value: non-negative floats order as their bits do.
                Value::Number(x) => {
                    numbers.entry(name).or_default().insert((x + 0.0).to_bits());
                }
            }
        }
    }
    let discrete = |values: Vec<Kind>| {
        Some(Domain::DomainDiscrete(ListValue {
            values: values
                .into_iter()
                .map(|kind| PbValue { kind: Some(kind) })
                .collect(),
        }))
    };
    // TensorBoard lists first (and shows by default) the hyperparameters that differ between
    // sessions: those with two values or more, or missing from some stages.
    let stages = plan.stages.len();
    let info = |name: &str, kind: hp::DataType, values: Vec<Kind>| HParamInfo {
        name: name.into(),
        r#type: kind as i32,
        differs: values.len() > 1 || uses[name] < stages,
        domain: discrete(values),
        ..Default::default()
    };
    let mut hparam_infos: Vec<HParamInfo> = texts
        .into_iter()
        .map(|(name, values)| {
            let values = values.into_iter().map(Kind::StringValue).collect();
            info(name, hp::DataType::String, values)
        })
        .collect();
    hparam_infos.extend(numbers.into_iter().map(|(name, values)| {
        let values = values
            .into_iter()
            .map(|b| Kind::NumberValue(f64::from_bits(b)))
            .collect();
        info(name, hp::DataType::Float64, values)
    }));
    let metric = |tag: &str| MetricInfo {
        name: Some(MetricName {
            group: String::new(),
            tag: tag.into(),
        }),
        display_name: tag.into(),
        ..Default::default()
    };
    Experiment {
        name: plan.name.clone(),
        description: format!("kdgrid study `{}`: one session per stage", plan.name),
        hparam_infos,
        metric_infos: FINAL_TAGS
            .iter()
            .filter(|t| plan.validation.is_some() || **t != "final/val_accuracy")
            .chain(&["accuracy/test", "loss/train", "loss/test"])
            .map(|t| metric(t))
            .collect(),
        ..Default::default()
    }
}
