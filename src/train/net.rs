//! The network a stage trains: one of the manifest's families, behind one type.

use super::TrainError;
use super::bert::BertNet;
use super::import::Weights;
use super::lstm::LstmNet;
use super::mobilenet::MobileNetV2;
use super::model::Cnn;
use super::named::{NamedTensor, Slots};
use super::resnet::ResNet;
use crate::manifest::ModelSpec;
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// A model of any family. Files hold the family's own module, as before there were several,
/// so weights saved by earlier versions still load.
// Few models live at once (a stage's model and its teacher), so the padding costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Net {
    /// `cnn`, `plain-cnn` and `mlp`.
    Cnn(Cnn),
    /// `resnet`.
    ResNet(ResNet),
    /// `lstm`.
    Lstm(LstmNet),
    /// `mobilenet-v2`.
    MobileNet(MobileNetV2),
    /// `bert` and `distilbert`.
    Bert(BertNet),
}

impl Net {
    /// Builds the network of `spec` for `[channels, height, width]` inputs and `classes`
    /// outputs, drawing initial weights from `rng` (zeros when `None`).
    pub fn new(
        spec: &ModelSpec,
        input: [usize; 3],
        classes: usize,
        rng: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Self {
        if let Some(b) = &spec.bert {
            return Net::Bert(BertNet::new(b, spec.view, classes, rng, device));
        }
        match (&spec.resnet, &spec.lstm) {
            (Some(r), _) => Net::ResNet(ResNet::new(r, input[0], classes, rng, device)),
            (_, Some(l)) => Net::Lstm(LstmNet::new(spec, l, classes, rng, device)),
            _ if spec.mobilenet_v2 => {
                Net::MobileNet(MobileNetV2::new(input[0], classes, rng, device))
            }
            _ => Net::Cnn(Cnn::new(spec, input, classes, rng, device)),
        }
    }

    /// Logits `[batch, classes]`, without dropout.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_with(x, None)
    }

    /// Logits with dropout of probability `p` after each hidden dense layer (families that
    /// have them), masks drawn from `rng`.
    pub fn forward_with(&self, x: Tensor<4>, dropout: Option<(f64, &mut ChaCha8Rng)>) -> Tensor<2> {
        match self {
            Net::Cnn(m) => m.forward_with(x, dropout),
            Net::ResNet(m) => m.forward(x),
            Net::Lstm(m) => m.forward_with(x, dropout),
            Net::MobileNet(m) => m.forward_with(x, dropout),
            Net::Bert(m) => m.forward_with(x, dropout),
        }
    }

    /// Logits and, for encoders, the last hidden states `[batch, length, width]` with the mask
    /// of the tokens that are not padding.
    pub fn forward_hidden(
        &self,
        x: Tensor<4>,
        dropout: Option<(f64, &mut ChaCha8Rng)>,
    ) -> (Tensor<2>, Option<(Tensor<3>, Tensor<2>)>) {
        match self {
            Net::Bert(m) => {
                let mask = m.token_mask(x.clone());
                let (logits, hidden) = m.forward_hidden(x, dropout);
                (logits, Some((hidden, mask)))
            }
            _ => (self.forward_with(x, dropout), None),
        }
    }

    /// Trainable parameters, as PyTorch counts them.
    pub fn trainable_params(&self) -> usize {
        match self {
            Net::Cnn(m) => m.trainable_params(),
            // No running statistics: every parameter trains.
            Net::Lstm(m) => m.num_params(),
            Net::Bert(m) => m.num_params(),
            Net::ResNet(_) | Net::MobileNet(_) => {
                let mut model = self.clone();
                let mut slots = Slots::default();
                model.slots(&mut slots);
                slots.trainable()
            }
        }
    }

    fn slots<'a>(&'a mut self, out: &mut Slots<'a>) {
        match self {
            Net::Cnn(m) => m.slots(out),
            Net::ResNet(m) => m.slots(out),
            // Not named yet: an lstm cannot be traced or imported.
            Net::Lstm(_) => {}
            Net::MobileNet(m) => m.slots(out),
            Net::Bert(m) => m.slots(out),
        }
    }

    /// Name prefix of the classifier layer (`head`, `fc`).
    fn head(&self) -> &'static str {
        match self {
            Net::Cnn(_) => "head.",
            Net::ResNet(_) => "fc.",
            Net::Lstm(_) => "head.",
            Net::MobileNet(_) => "classifier.1.",
            Net::Bert(_) => "classifier.",
        }
    }

    /// Every tensor of the model, named and laid out as in the equivalent PyTorch module (see
    /// docs/manifest.md for each family as PyTorch code).
    pub fn export(&self) -> Vec<NamedTensor> {
        let mut model = self.clone();
        let mut slots = Slots::default();
        model.slots(&mut slots);
        slots.export()
    }

    /// Replaces the weights with `weights` (PyTorch names and layouts), as PyTorch's strict
    /// `load_state_dict` does: every tensor must be there with its shape, and nothing else may
    /// be. With `keep_head`, a classifier whose shape differs from the file's, or that the file
    /// lacks, keeps its own (fresh) weights, to be fine-tuned. `Err` says what disagrees.
    pub fn import(&mut self, weights: &Weights, keep_head: bool) -> Result<(), String> {
        let head = self.head();
        let mut slots = Slots::default();
        self.slots(&mut slots);
        let mut problems = Vec::new();
        let mut missing = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        for (name, slot) in &mut slots.0 {
            let Some((shape, values)) = weights.get(name) else {
                // A backbone saved without a classifier (a pretraining checkpoint) gets a fresh
                // one to fine-tune.
                if !(keep_head && name.starts_with(head)) {
                    missing.push(&*name);
                }
                continue;
            };
            used.insert(name.as_str());
            let expected = slot.shape();
            if *shape == expected {
                slot.write(values.clone());
            } else if !(keep_head && name.starts_with(head)) {
                problems.push(format!(
                    "`{name}` is {shape:?} in the file, {expected:?} in the model{}",
                    if name.starts_with(head) {
                        " (a different class count: add `fine-tune = { epochs = .. }` to replace the head)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if !missing.is_empty() {
            problems.insert(
                0,
                format!("the model's {} missing from the file", list(&missing)),
            );
        }
        let unexpected: Vec<&String> = weights
            .keys()
            .filter(|k| !used.contains(k.as_str()) && !k.ends_with("num_batches_tracked"))
            .collect();
        if !unexpected.is_empty() {
            problems.push(format!(
                "the file has tensors the model does not: {}",
                list(&unexpected)
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} (is it this family and size? a `key-map` renames tensors)",
                problems.join("; ")
            ))
        }
    }

    /// Starts this encoder from `source`'s embeddings and encoder layers `layers` (see
    /// [`crate::manifest::InitFrom`]); `Err` when either is not an encoder.
    pub fn init_from(&mut self, source: &Net, layers: &[usize]) -> Result<(), String> {
        match (self, source) {
            (Net::Bert(m), Net::Bert(s)) => {
                m.copy_from(s, layers);
                Ok(())
            }
            _ => Err("`init-from` copies an encoder's layers into an encoder".into()),
        }
    }

    /// Loads weights saved by [`Net::save`] into this (blank) model.
    pub fn load(self, path: &Path) -> Result<Self, TrainError> {
        let loaded = match self {
            Net::Cnn(m) => m.try_load_file(path).map(Net::Cnn),
            Net::ResNet(m) => m.try_load_file(path).map(Net::ResNet),
            Net::Lstm(m) => m.try_load_file(path).map(Net::Lstm),
            Net::MobileNet(m) => m.try_load_file(path).map(Net::MobileNet),
            Net::Bert(m) => m.try_load_file(path).map(Net::Bert),
        };
        loaded.map_err(|e| TrainError::ModelFile {
            path: path.to_path_buf(),
            message: format!("{e:?}"),
        })
    }

    /// Saves the weights to `path` (the caller makes the write atomic).
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let saved = match self.clone() {
            Net::Cnn(m) => m.save_file(path),
            Net::ResNet(m) => m.save_file(path),
            Net::Lstm(m) => m.save_file(path),
            Net::MobileNet(m) => m.save_file(path),
            Net::Bert(m) => m.save_file(path),
        };
        saved.map_err(|e| TrainError::ModelFile {
            path: path.to_path_buf(),
            message: format!("{e:?}"),
        })
    }

    /// Whether a 2x2 max-pool follows each conv layer (`cnn` families; empty otherwise).
    pub fn pools(&self) -> &[bool] {
        match self {
            Net::Cnn(m) => m.pools(),
            Net::ResNet(_) | Net::Lstm(_) | Net::MobileNet(_) | Net::Bert(_) => &[],
        }
    }
}

/// The first names of a list, and how many more.
fn list(names: &[&String]) -> String {
    let shown: Vec<String> = names.iter().take(5).map(|n| format!("`{n}`")).collect();
    match names.len() {
        n if n > 5 => format!("{} and {} more", shown.join(", "), n - 5),
        _ => shown.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ModelSpec, ResNetSpec};
    use rand::SeedableRng;

    fn device() -> Device {
        super::super::Backend::flex().device
    }

    fn weights_of(net: &Net) -> Weights {
        net.export()
            .into_iter()
            .map(|t| (t.name, (t.shape, t.values)))
            .collect()
    }

    fn round_trip(spec: &ModelSpec) {
        let input = [3, 12, 12];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let source = Net::new(spec, input, 5, Some(&mut rng), &device());
        let mut blank = Net::new(spec, input, 5, None, &device());
        blank.import(&weights_of(&source), false).unwrap();
        let x = Tensor::<4>::random(
            [2, 3, 12, 12],
            burn::tensor::Distribution::Default,
            &device(),
        );
        let exported = |n: &Net| -> Vec<(String, Vec<usize>, Vec<u32>)> {
            n.export()
                .into_iter()
                .map(|t| {
                    (
                        t.name,
                        t.shape,
                        t.values.iter().map(|v| v.to_bits()).collect(),
                    )
                })
                .collect()
        };
        assert_eq!(exported(&source), exported(&blank), "{}", spec.family);
        // Outputs agree to rounding: a transposed copy may be multiplied in another order.
        let (a, b) = (source.forward(x.clone()), blank.forward(x));
        for (a, b) in a.into_data().iter::<f32>().zip(b.into_data().iter::<f32>()) {
            assert!((a - b).abs() <= 1e-5, "{}: {a} vs {b}", spec.family);
        }
    }

    #[test]
    fn exported_weights_import_to_the_same_model() {
        let mut cnn = ModelSpec::plain_cnn(4).unwrap();
        cnn.dense = vec![7];
        round_trip(&cnn);
        round_trip(&ModelSpec {
            mobilenet_v2: true,
            family: "mobilenet-v2".into(),
            ..ModelSpec::plain_cnn(2).unwrap()
        });
        for depth in [8, 18] {
            round_trip(&ModelSpec {
                resnet: ResNetSpec::of_depth(depth),
                family: format!("resnet-{depth}"),
                ..ModelSpec::plain_cnn(2).unwrap()
            });
        }
    }

    #[test]
    fn import_is_strict_like_load_state_dict() {
        let spec = ModelSpec {
            resnet: ResNetSpec::of_depth(8),
            ..ModelSpec::plain_cnn(2).unwrap()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let source = Net::new(&spec, [3, 8, 8], 10, Some(&mut rng), &device());
        let mut weights = weights_of(&source);
        // A head of another class count is refused unless fine-tuned, then kept fresh.
        let mut five = Net::new(&spec, [3, 8, 8], 5, None, &device());
        let err = five.import(&weights, false).unwrap_err();
        assert!(
            err.contains("`fc.weight` is [10, 64]") && err.contains("fine-tune"),
            "{err}"
        );
        five.import(&weights, true).unwrap();
        // Missing and unexpected tensors are both named.
        weights.remove("layer2.0.conv1.weight");
        weights.insert("extra.weight".into(), (vec![1], vec![0.0]));
        let mut model = Net::new(&spec, [3, 8, 8], 10, None, &device());
        let err = model.import(&weights, false).unwrap_err();
        assert!(
            err.contains("`layer2.0.conv1.weight` missing from the file"),
            "{err}"
        );
        assert!(err.contains("`extra.weight`"), "{err}");
    }
}
