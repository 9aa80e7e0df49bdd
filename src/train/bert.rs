//! The `bert` and `distilbert` families: Hugging Face's `BertForSequenceClassification` and
//! `DistilBertForSequenceClassification` (post-LayerNorm encoder layers, erf GELU), under their
//! tensor names so checkpoints saved with `save_pretrained` load as they are.

use super::lstm::token_ids;
use super::model::{Init, drop};
use super::named::Slots;
use crate::manifest::{BertSpec, Encoder};
use burn::module::{Module, Param};
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear};
use burn::tensor::activation::{gelu, relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand_chacha::ChaCha8Rng;

/// Hugging Face's initializer range (`initializer_range`, BERT and DistilBERT).
const INIT_STD: f32 = 0.02;

/// One encoder layer: self-attention and a feed-forward pair, each added back and normalized.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    attention_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// A transformer text classifier reading row `view` of the token planes.
#[derive(Module, Debug)]
pub struct BertNet {
    words: Embedding,
    positions: Embedding,
    token_types: Option<Embedding>,
    embedding_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
    /// BERT's pooler, or DistilBERT's pre-classifier, on the first token.
    pooler: Linear,
    head: Linear,
    heads: usize,
    view: usize,
    pad_id: usize,
    distil: bool,
}

/// Dropout when training with it.
type Dropout<'a, 'b> = &'a mut Option<(f64, &'b mut ChaCha8Rng)>;

fn dropped<const D: usize>(x: Tensor<D>, dropout: Dropout) -> Tensor<D> {
    match dropout {
        Some((p, rng)) => drop(x, *p, rng),
        None => x,
    }
}

impl BertNet {
    /// Builds the encoder of `b` for `classes` outputs, reading token row `view`, drawing
    /// weights from `rng` as Hugging Face initializes them (`N(0, 0.02)` for linear and
    /// embedding weights, the padding row and biases zero, LayerNorms one and zero); zeros
    /// when `None`.
    pub fn new(
        b: &BertSpec,
        view: usize,
        classes: usize,
        rng: Option<&mut ChaCha8Rng>,
        device: &Device,
    ) -> Self {
        let mut init = Init { rng, device };
        let h = b.hidden;
        let norm = || {
            LayerNormConfig::new(h)
                .with_epsilon(b.layer_norm_eps)
                .init(device)
        };
        let linear = |init: &mut Init, d_in: usize, d_out: usize| Linear {
            weight: init.normal([d_in, d_out], INIT_STD),
            bias: Some(init.zeros([d_out])),
        };
        let mut words = Embedding {
            weight: init.normal([b.vocab, h], INIT_STD),
        };
        if init.rng.is_some() && b.pad_id < b.vocab {
            // The padding row starts at zero (`padding_idx`), as in PyTorch; rebuilt from
            // values so the weight stays a leaf of the autodiff graph.
            let mut values: Vec<f32> = words.weight.val().into_data().iter::<f32>().collect();
            values[b.pad_id * h..(b.pad_id + 1) * h].fill(0.0);
            words.weight = Param::from_tensor(Tensor::from_data(
                TensorData::new(values, [b.vocab, h]),
                device,
            ));
        }
        let positions = Embedding {
            weight: init.normal([b.positions, h], INIT_STD),
        };
        let token_types = (b.encoder == Encoder::Bert).then(|| Embedding {
            weight: init.normal([b.token_types, h], INIT_STD),
        });
        let embedding_norm = norm();
        let layers = (0..b.layers)
            .map(|_| EncoderLayer {
                query: linear(&mut init, h, h),
                key: linear(&mut init, h, h),
                value: linear(&mut init, h, h),
                out: linear(&mut init, h, h),
                attention_norm: norm(),
                up: linear(&mut init, h, b.intermediate),
                down: linear(&mut init, b.intermediate, h),
                out_norm: norm(),
            })
            .collect();
        let pooler = linear(&mut init, h, h);
        let head = linear(&mut init, h, classes);
        Self {
            words,
            positions,
            token_types,
            embedding_norm,
            layers,
            pooler,
            head,
            heads: b.heads,
            view,
            pad_id: b.pad_id,
            distil: b.encoder == Encoder::Distilbert,
        }
    }

    /// The token ids of this model's row, `[batch, length]`.
    fn ids(&self, x: Tensor<4>) -> Tensor<2, Int> {
        token_ids(x, self.view)
    }

    /// The last layer's vectors of every token, `[batch, length, hidden]`.
    pub fn encode(&self, x: Tensor<4>, dropout: Dropout) -> Tensor<3> {
        let ids = self.ids(x);
        let [batch, length] = ids.dims();
        // Attention skips padding: its scores get a large negative number (exp gives 0).
        let mask: Tensor<4> = ids
            .clone()
            .equal_elem(self.pad_id as i64)
            .float()
            .mul_scalar(-1e9)
            .reshape([batch, 1, 1, length]);
        let mut h = self.words.forward(ids);
        let width = h.dims()[2];
        let positions = self
            .positions
            .weight
            .val()
            .narrow(0, 0, length)
            .reshape([1, length, width]);
        h = h + positions.expand([batch, length, width]);
        if let Some(t) = &self.token_types {
            // One segment: every token's type is 0.
            let first = t.weight.val().narrow(0, 0, 1).reshape([1, 1, width]);
            h = h + first.expand([batch, length, width]);
        }
        h = dropped(self.embedding_norm.forward(h), dropout);
        let head_width = width / self.heads;
        let split = |t: Tensor<3>| {
            t.reshape([batch, length, self.heads, head_width])
                .swap_dims(1, 2)
        };
        for layer in &self.layers {
            let q = split(layer.query.forward(h.clone()));
            let k = split(layer.key.forward(h.clone()));
            let v = split(layer.value.forward(h.clone()));
            let scores = q
                .matmul(k.swap_dims(2, 3))
                .div_scalar((head_width as f64).sqrt())
                + mask.clone();
            let probs = dropped(softmax(scores, 3), dropout);
            let context = probs
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([batch, length, width]);
            let attended = layer.out.forward(context);
            // BERT drops the attention's output; DistilBERT does not (only its weights).
            let attended = if self.distil {
                attended
            } else {
                dropped(attended, dropout)
            };
            h = layer.attention_norm.forward(attended + h);
            let ff = layer.down.forward(gelu(layer.up.forward(h.clone())));
            h = layer.out_norm.forward(dropped(ff, dropout) + h);
        }
        h
    }

    /// Logits `[batch, classes]` from the first token (`[CLS]`): BERT's tanh pooler, or
    /// DistilBERT's ReLU pre-classifier, then dropout and the classifier.
    pub fn forward_with(&self, x: Tensor<4>, dropout: Option<(f64, &mut ChaCha8Rng)>) -> Tensor<2> {
        self.forward_hidden(x, dropout).0
    }

    /// 1 where a token is not padding, 0 where it is, `[batch, length]`.
    pub fn token_mask(&self, x: Tensor<4>) -> Tensor<2> {
        self.ids(x).not_equal_elem(self.pad_id as i64).float()
    }

    /// Logits and the last layer's vectors of every token.
    pub fn forward_hidden(
        &self,
        x: Tensor<4>,
        mut dropout: Option<(f64, &mut ChaCha8Rng)>,
    ) -> (Tensor<2>, Tensor<3>) {
        let hidden = self.encode(x, &mut dropout);
        (self.classify(hidden.clone(), &mut dropout), hidden)
    }

    fn classify(&self, h: Tensor<3>, dropout: Dropout) -> Tensor<2> {
        let [batch, _, width] = h.dims();
        let first: Tensor<2> = h.narrow(1, 0, 1).reshape([batch, width]);
        let pooled = self.pooler.forward(first);
        let pooled = if self.distil {
            relu(pooled)
        } else {
            pooled.tanh()
        };
        self.head.forward(dropped(pooled, dropout))
    }

    /// Takes `source`'s embeddings (token types only from a BERT into a BERT) and its encoder
    /// layers `layers`, one per layer of this model, as values: the trained model keeps its
    /// own parameters (leaves of its own graph). Pooler and classifier stay as drawn.
    pub(super) fn copy_from(&mut self, source: &BertNet, layers: &[usize]) {
        fn set<const D: usize>(dst: &mut Param<Tensor<D>>, src: &Param<Tensor<D>>) {
            let device = dst.val().device();
            *dst = Param::from_tensor(Tensor::from_data(src.val().into_data(), &device));
        }
        fn linear(dst: &mut Linear, src: &Linear) {
            set(&mut dst.weight, &src.weight);
            if let (Some(d), Some(s)) = (&mut dst.bias, &src.bias) {
                set(d, s);
            }
        }
        fn norm(dst: &mut LayerNorm, src: &LayerNorm) {
            set(&mut dst.gamma, &src.gamma);
            if let (Some(d), Some(s)) = (&mut dst.beta, &src.beta) {
                set(d, s);
            }
        }
        set(&mut self.words.weight, &source.words.weight);
        set(&mut self.positions.weight, &source.positions.weight);
        if let (Some(d), Some(s)) = (&mut self.token_types, &source.token_types) {
            set(&mut d.weight, &s.weight);
        }
        norm(&mut self.embedding_norm, &source.embedding_norm);
        for (dst, &l) in self.layers.iter_mut().zip(layers) {
            let src = &source.layers[l];
            for (d, s) in [
                (&mut dst.query, &src.query),
                (&mut dst.key, &src.key),
                (&mut dst.value, &src.value),
                (&mut dst.out, &src.out),
                (&mut dst.up, &src.up),
                (&mut dst.down, &src.down),
            ] {
                linear(d, s);
            }
            norm(&mut dst.attention_norm, &src.attention_norm);
            norm(&mut dst.out_norm, &src.out_norm);
        }
    }

    /// Every tensor under its Hugging Face name.
    pub(super) fn slots<'a>(&'a mut self, out: &mut Slots<'a>) {
        if self.distil {
            out.embedding("distilbert.embeddings.word_embeddings", &mut self.words);
            out.embedding(
                "distilbert.embeddings.position_embeddings",
                &mut self.positions,
            );
            out.layer_norm("distilbert.embeddings.LayerNorm", &mut self.embedding_norm);
            for (i, l) in self.layers.iter_mut().enumerate() {
                let p = format!("distilbert.transformer.layer.{i}");
                out.linear(&format!("{p}.attention.q_lin"), &mut l.query);
                out.linear(&format!("{p}.attention.k_lin"), &mut l.key);
                out.linear(&format!("{p}.attention.v_lin"), &mut l.value);
                out.linear(&format!("{p}.attention.out_lin"), &mut l.out);
                out.layer_norm(&format!("{p}.sa_layer_norm"), &mut l.attention_norm);
                out.linear(&format!("{p}.ffn.lin1"), &mut l.up);
                out.linear(&format!("{p}.ffn.lin2"), &mut l.down);
                out.layer_norm(&format!("{p}.output_layer_norm"), &mut l.out_norm);
            }
            out.linear("pre_classifier", &mut self.pooler);
        } else {
            out.embedding("bert.embeddings.word_embeddings", &mut self.words);
            out.embedding("bert.embeddings.position_embeddings", &mut self.positions);
            if let Some(t) = &mut self.token_types {
                out.embedding("bert.embeddings.token_type_embeddings", t);
            }
            out.layer_norm("bert.embeddings.LayerNorm", &mut self.embedding_norm);
            for (i, l) in self.layers.iter_mut().enumerate() {
                let p = format!("bert.encoder.layer.{i}");
                out.linear(&format!("{p}.attention.self.query"), &mut l.query);
                out.linear(&format!("{p}.attention.self.key"), &mut l.key);
                out.linear(&format!("{p}.attention.self.value"), &mut l.value);
                out.linear(&format!("{p}.attention.output.dense"), &mut l.out);
                out.layer_norm(
                    &format!("{p}.attention.output.LayerNorm"),
                    &mut l.attention_norm,
                );
                out.linear(&format!("{p}.intermediate.dense"), &mut l.up);
                out.linear(&format!("{p}.output.dense"), &mut l.down);
                out.layer_norm(&format!("{p}.output.LayerNorm"), &mut l.out_norm);
            }
            out.linear("bert.pooler.dense", &mut self.pooler);
        }
        out.linear("classifier", &mut self.head);
    }
}
