//! Imported models: `weights`, `key-map` and `fine-tune` of a model trained elsewhere.

use super::Family;
use super::raw::RawModel;
use crate::manifest::error::Problems;
use serde::Serialize;
use std::path::Path;
use toml::Spanned;

/// A weights file a model is loaded from (`weights`, `key-map` and `fine-tune` of `[models.<name>]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportedWeights {
    /// The file (resolved against the manifest's folder); its digest, not its path, is part
    /// of stage ids.
    #[serde(skip)]
    pub path: std::path::PathBuf,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// Renames applied to the file's tensor names: (regex, replacement), in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub key_map: Vec<(String, String)>,
    /// Whether the model trains further (`fine-tune`), which lets a classifier of another
    /// class count be replaced; without it the model is used as it is.
    pub fine_tune: bool,
}

/// Resolves `weights`, `key-map` and `fine-tune` of an imported model.
pub(super) fn check_weights(
    name: &str,
    m: &RawModel,
    base: &Path,
    problems: &mut Problems,
) -> Option<ImportedWeights> {
    let Some(weights) = &m.weights else {
        for (key, span) in [
            ("key-map", m.key_map.as_ref().map(Spanned::span)),
            ("fine-tune", m.fine_tune.as_ref().map(Spanned::span)),
        ] {
            if let Some(span) = span {
                problems.push(
                    Some(span),
                    format!("`models.{name}.{key}` applies to imported models only"),
                    Some("add `weights = \"path/to/file.safetensors\"`".into()),
                );
            }
        }
        return None;
    };
    if m.family
        .as_ref()
        .is_some_and(|f| *f.get_ref() == Family::Lstm)
    {
        problems.push(
            Some(weights.span()),
            format!("`models.{name}.weights`: `lstm` models cannot be imported (yet)"),
            Some("import image families (`cnn`, `plain-cnn`, `mlp`, `resnet`, `mobilenet-v2`), or train the LSTM here".into()),
        );
        return None;
    }
    if m.epochs.is_some() || m.lr.is_some() {
        problems.push(
            Some(weights.span()),
            format!("`models.{name}` is imported: its `epochs` and `lr` go in `fine-tune`"),
            Some("`fine-tune = { epochs = 2, lr = 0.001 }` trains it further; without it the model is used as it is".into()),
        );
    }
    let key_map: Vec<(String, String)> = m
        .key_map
        .as_ref()
        .map(|k| {
            k.get_ref()
                .iter()
                .map(|[a, b]| (a.clone(), b.clone()))
                .collect()
        })
        .unwrap_or_default();
    for (from, _) in &key_map {
        if let Err(e) = regex::Regex::new(from) {
            problems.push(
                m.key_map.as_ref().map(Spanned::span),
                format!("`models.{name}.key-map`: `{from}` is not a regular expression: {e}"),
                None,
            );
        }
    }
    let family = m.family.as_ref().map_or(Family::Cnn, |f| *f.get_ref());
    let file = if base.join(weights.get_ref()).is_dir() {
        // A Hugging Face checkpoint folder (`save_pretrained`): its weights file; its
        // `config.json` sizes the model and its `tokenizer.json` tokenizes (family files).
        if !family.is_encoder() {
            problems.push(
                Some(weights.span()),
                format!("`models.{name}.weights` is a folder: only `bert` and `distilbert` read Hugging Face checkpoint folders"),
                Some("name the weights file itself".into()),
            );
            return None;
        }
        let dir = base.join(weights.get_ref());
        let Some(file) = ["model.safetensors", "pytorch_model.bin"]
            .into_iter()
            .find(|f| dir.join(f).is_file())
        else {
            problems.push(
                Some(weights.span()),
                format!("`models.{name}.weights`: `{}` holds neither `model.safetensors` nor `pytorch_model.bin`", dir.display()),
                None,
            );
            return None;
        };
        Spanned::new(weights.span(), format!("{}/{file}", weights.get_ref()))
    } else {
        weights.clone()
    };
    let (path, sha256) = super::file_digest(name, "weights", &file, base, problems);
    Some(ImportedWeights {
        path,
        sha256,
        key_map,
        fine_tune: m.fine_tune.is_some(),
    })
}
