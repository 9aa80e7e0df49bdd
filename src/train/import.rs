//! Weights trained elsewhere: safetensors files and PyTorch `torch.save` checkpoints
//! (`state_dict`s, or dictionaries holding one under `state_dict`, `model_state_dict` or
//! `model`), read into
//! PyTorch-named tensors for [`super::Net::import`].

use super::TrainError;
use regex::Regex;
use std::collections::BTreeMap;
use std::path::Path;

/// A file's tensors by name (after key remapping): PyTorch shape and values as `f32`.
pub type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// Element types a weights file may hold, as read from it.
#[derive(Clone, Copy)]
enum Element {
    F16,
    Bf16,
    F32,
    F64,
}

fn to_f32(bytes: &[u8], element: Element) -> Vec<f32> {
    match element {
        Element::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
        Element::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
            .collect(),
        Element::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Element::Bf16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

/// Reads every floating-point tensor of `path` (by extension: `.safetensors`, or a PyTorch
/// checkpoint `.pt`/`.pth`/`.bin`), renaming keys by `key_map` (regex, replacement; applied in
/// order to every key; a key renamed to nothing is dropped). Integer tensors
/// (`num_batches_tracked`) are left out.
pub fn read(path: &Path, key_map: &[(String, String)]) -> Result<Weights, TrainError> {
    let fail = |message: String| TrainError::ModelFile {
        path: path.to_path_buf(),
        message,
    };
    let raw = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => read_safetensors(path).map_err(fail)?,
        _ => read_pytorch(path).map_err(fail)?,
    };
    let rules: Vec<(Regex, &str)> = key_map
        .iter()
        .map(|(from, to)| Regex::new(from).map(|r| (r, to.as_str())))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("key-map: {e}")))?;
    let mut out = Weights::new();
    for (name, tensor) in raw {
        let renamed = rules.iter().fold(name.clone(), |n, (r, to)| {
            r.replace_all(&n, *to).into_owned()
        });
        // A rule that renames a tensor to nothing drops it (a pretraining head, say).
        if renamed.is_empty() {
            continue;
        }
        if out.insert(renamed.clone(), tensor).is_some() {
            return Err(fail(format!(
                "key-map renames two tensors to `{renamed}` (one of them `{name}`)"
            )));
        }
    }
    Ok(out)
}

fn read_safetensors(path: &Path) -> Result<Weights, String> {
    use safetensors::Dtype;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("not a safetensors file: {e}"))?;
    let mut out = Weights::new();
    for (name, view) in file.tensors() {
        let element = match view.dtype() {
            Dtype::F16 => Element::F16,
            Dtype::BF16 => Element::Bf16,
            Dtype::F32 => Element::F32,
            Dtype::F64 => Element::F64,
            _ => continue,
        };
        out.insert(name, (view.shape().to_vec(), to_f32(view.data(), element)));
    }
    Ok(out)
}

fn read_pytorch(path: &Path) -> Result<Weights, String> {
    use pytorch_reader::{DType, PytorchReader};
    let open = |key: Option<&str>| match key {
        None => PytorchReader::new(path),
        Some(k) => PytorchReader::with_top_level_key(path, k),
    };
    // A training checkpoint often nests the weights next to the optimizer's state and the
    // epoch (`{"state_dict": sd, "epoch": 3}`: the TAKD code, torchvision's references,
    // Lightning). The reader flattens nested dictionaries into the top level
    // (`state_dict.conv1.weight`), so the nested keys are asked for first; a plain state_dict
    // has no such key (its keys are tensor names) and is read whole.
    let reader = [
        Some("state_dict"),
        Some("model_state_dict"),
        Some("model"),
        None,
    ]
        .into_iter()
        .filter_map(|k| open(k).ok())
        .find(|r| !r.is_empty())
        .ok_or_else(|| match open(None) {
            Err(e) => format!("not a PyTorch checkpoint: {e}"),
            Ok(_) => "no tensors found (looked under `state_dict`, `model_state_dict`, `model` and at the top level)".into(),
        })?;
    let mut out = Weights::new();
    for (name, tensor) in reader.into_tensors() {
        let element = match tensor.dtype() {
            DType::F16 => Element::F16,
            DType::BF16 => Element::Bf16,
            DType::F32 => Element::F32,
            DType::F64 => Element::F64,
            _ => continue,
        };
        let bytes = tensor.read().map_err(|e| e.to_string())?;
        out.insert(name, (tensor.shape().to_vec(), to_f32(&bytes, element)));
    }
    Ok(out)
}
