//! The `lstm` family: a text classifier over the token ids `data::text` lays out as two byte
//! planes.

use super::model::{Init, drop};
use crate::manifest::{LstmSpec, ModelSpec};
use burn::module::Module;
use burn::nn::{Embedding, Initializer, Linear, Lstm, LstmConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Int, Tensor};
use rand_chacha::ChaCha8Rng;

/// The token ids of row `view` of planes `[batch, 2, rows, length]` (low byte, then high
/// byte, as [`crate::data::text`] lays them out), `[batch, length]`.
pub fn token_ids(x: Tensor<4>, view: usize) -> Tensor<2, Int> {
    let [batch, _, _, length] = x.dims();
    let x = x.narrow(2, view, 1);
    let low = x.clone().narrow(1, 0, 1);
    let high = x.narrow(1, 1, 1);
    // Both planes hold exact small integers, so the sum is exact; rounding guards the cast.
    (low + high.mul_scalar(256.0))
        .reshape([batch, length])
        .round()
        .int()
}

/// Token embedding, stacked LSTM layers (batch first), the last layer's final hidden state,
/// hidden dense ReLU layers and a linear classifier.
#[derive(Module, Debug)]
pub struct LstmNet {
    embedding: Embedding,
    layers: Vec<Lstm>,
    dense: Vec<Linear>,
    head: Linear,
}

impl LstmNet {
    /// Builds the network for `classes` outputs, drawing initial weights from `rng` (zeros when
    /// `None`) as PyTorch initializes them: embeddings with unit variance (uniform here, not
    /// normal), LSTM weights and biases `U(-1/sqrt(hidden), 1/sqrt(hidden))`, linear layers as
    /// in the other families.
    pub fn new(
        spec: &ModelSpec,
        l: &LstmSpec,
        classes: usize,
        rng: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Self {
        let mut init = Init { rng, device };
        let embedding = Embedding {
            weight: init.uniform_bound([l.vocab, l.embedding], 3f32.sqrt()),
        };
        let mut d = l.embedding;
        let mut layers = Vec::new();
        for &h in &l.hidden {
            // Zeros from Burn (no draw from its global RNG), then every weight from the stream.
            let mut lstm = LstmConfig::new(d, h, true)
                .with_initializer(Initializer::Zeros)
                .init(device);
            let gate = |init: &mut Init| {
                let bound = 1.0 / (h as f32).sqrt();
                let linear = |init: &mut Init, d_in: usize| Linear {
                    weight: init.uniform_bound([d_in, h], bound),
                    bias: Some(init.uniform_bound([h], bound)),
                };
                (linear(init, d), linear(init, h))
            };
            for g in [
                Some(&mut lstm.input_gate),
                lstm.forget_gate.as_mut(),
                Some(&mut lstm.cell_gate),
                Some(&mut lstm.output_gate),
            ]
            .into_iter()
            .flatten()
            {
                (g.input_transform, g.hidden_transform) = gate(&mut init);
            }
            layers.push(lstm);
            d = h;
        }
        let mut dense = Vec::new();
        for &width in &spec.dense {
            dense.push(init.linear(d, width));
            d = width;
        }
        Self {
            embedding,
            layers,
            dense,
            head: init.linear(d, classes),
        }
    }

    /// Logits for token planes `[batch, 2, 1, length]`, with dropout after each hidden dense
    /// layer when given.
    pub fn forward_with(
        &self,
        x: Tensor<4>,
        mut dropout: Option<(f64, &mut ChaCha8Rng)>,
    ) -> Tensor<2> {
        let length = x.dims()[3];
        let batch = x.dims()[0];
        let mut h = self.embedding.forward(token_ids(x, 0));
        for layer in &self.layers {
            h = layer.forward(h, None).0;
        }
        let width = h.dims()[2];
        let mut x: Tensor<2> = h.narrow(1, length - 1, 1).reshape([batch, width]);
        for layer in &self.dense {
            x = relu(layer.forward(x));
            if let Some((p, rng)) = dropout.as_mut() {
                x = drop(x, *p, rng);
            }
        }
        self.head.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::token_ids;
    use crate::manifest::{DatasetSpec, FileFormat, TextSpec};
    use burn::tensor::{Device, Tensor, TensorData};

    /// A text dataset using every id a vocabulary can hold (`vocab-size` is at most 65533,
    /// plus padding and unknown), loaded and batched as training does: each id reaches the
    /// embedding as itself.
    #[test]
    fn every_token_id_reaches_the_embedding_exactly() {
        let (length, vocab) = (256, usize::from(u16::MAX) - 2);
        let dir = tempfile::tempdir().unwrap();
        let words: Vec<String> = (0..vocab).map(|i| format!("w{i:05}")).collect();
        let mut lines: Vec<String> = words
            .chunks(length)
            .enumerate()
            .map(|(i, c)| format!("{}\t{}", ["a", "b"][i % 2], c.join(" ")))
            .collect();
        lines.push("a\tunknownword".into());
        std::fs::write(dir.path().join("train.tsv"), lines.join("\n")).unwrap();
        std::fs::write(dir.path().join("test.tsv"), "a\tw00000\n").unwrap();
        let spec = DatasetSpec::Files {
            format: FileFormat::Text,
            path: dir.path().to_path_buf(),
            train_limit: None,
            test_limit: None,
            normalize: None,
            resize: None,
            text: Some(TextSpec {
                vocab_size: vocab,
                max_length: length,
                tokenizers: Vec::new(),
            }),
        };
        let data = crate::data::load(&spec, None).unwrap();
        let texts = data.train.len();
        // The ids as `data::text` stored them: low byte plane, then high byte plane.
        let stored: Vec<i64> = data
            .train
            .images
            .chunks_exact(2 * length)
            .flat_map(|t| {
                (0..length).map(move |i| i64::from(t[i]) + 256 * i64::from(t[length + i]))
            })
            .collect();
        let distinct: std::collections::BTreeSet<i64> = stored.iter().copied().collect();
        assert_eq!(distinct.len(), vocab + 2, "pad, unknown and every word");
        let mut batch = Vec::new();
        data.gather(&data.train, &(0..texts).collect::<Vec<_>>(), &mut batch);
        let device = Device::flex();
        let x = Tensor::<4>::from_data(TensorData::new(batch, [texts, 2, 1, length]), &device);
        let seen: Vec<i64> = token_ids(x, 0).into_data().iter::<i64>().collect();
        let first_wrong = seen.iter().zip(&stored).position(|(a, b)| a != b);
        assert_eq!(
            first_wrong,
            None,
            "id {:?} arrives as {:?}",
            first_wrong.map(|i| stored[i]),
            first_wrong.map(|i| seen[i])
        );
    }
}
