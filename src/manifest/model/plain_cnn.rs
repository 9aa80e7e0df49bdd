//! The TAKD paper's `plain-cnn` family: sizes 2 to 10 from its two width tables.

use super::ModelSpec;
use super::cnn::Padding;
use super::raw::RawModel;
use crate::manifest::backticked;
use crate::manifest::error::Problems;
use toml::Spanned;

/// Which of the TAKD paper's plain-CNN width tables a study uses: its code takes the CIFAR-100
/// table (wider layers, FC512 in size 10) for CIFAR-100 and the CIFAR-10 one otherwise, and so
/// does kdgrid, by dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainCnnTable {
    /// `plane_cifar10_book`: every dataset but CIFAR-100.
    Cifar10,
    /// `plane_cifar100_book`: `kind = "cifar100"`.
    Cifar100,
}

/// Sizes of the `plain-cnn` family.
pub const PLAIN_CNN_SIZES: [usize; 5] = [2, 4, 6, 8, 10];

impl ModelSpec {
    /// The TAKD paper's plain CNN of `size` conv layers (2, 4, 6, 8 or 10), with batch norm,
    /// from its CIFAR-10 table.
    pub fn plain_cnn(size: usize) -> Option<Self> {
        Self::plain_cnn_in(size, PlainCnnTable::Cifar10)
    }

    /// The TAKD paper's plain CNN of `size` conv layers from one of its two width tables
    /// (`plane_cifar10_book` and `plane_cifar100_book` in the paper's `model_factory.py`).
    pub fn plain_cnn_in(size: usize, table: PlainCnnTable) -> Option<Self> {
        let (conv, pool, dense): (&[usize], &[usize], &[usize]) = match (table, size) {
            (PlainCnnTable::Cifar10, 2) => (&[16, 16], &[1, 2], &[]),
            (PlainCnnTable::Cifar10, 4) => (&[16, 16, 32, 32], &[2, 4], &[]),
            (PlainCnnTable::Cifar10, 6) => (&[16, 16, 32, 32, 64, 64], &[2, 4, 6], &[]),
            (PlainCnnTable::Cifar10, 8) => {
                (&[16, 16, 32, 32, 64, 64, 128, 128], &[2, 4, 6, 8], &[64])
            }
            (PlainCnnTable::Cifar10, 10) => (
                &[32, 32, 64, 64, 128, 128, 256, 256, 256, 256],
                &[2, 4, 6, 10],
                &[128],
            ),
            (PlainCnnTable::Cifar100, 2) => (&[32, 32], &[1, 2], &[]),
            (PlainCnnTable::Cifar100, 4) => (&[32, 32, 64, 64], &[2, 4], &[]),
            // No pooling after the last pair, as in the paper's code.
            (PlainCnnTable::Cifar100, 6) => (&[32, 32, 64, 64, 128, 128], &[2, 4], &[]),
            (PlainCnnTable::Cifar100, 8) => {
                (&[32, 32, 64, 64, 128, 128, 256, 256], &[2, 4, 6, 8], &[64])
            }
            (PlainCnnTable::Cifar100, 10) => (
                &[32, 32, 64, 64, 128, 128, 256, 256, 256, 256],
                &[2, 4, 6, 10],
                &[512],
            ),
            _ => return None,
        };
        Some(Self {
            conv: conv.to_vec(),
            dense: dense.to_vec(),
            kernel: 3,
            padding: Padding::Same,
            pool: Some(pool.to_vec()),
            batch_norm: true,
            dropout: None,
            resnet: None,
            lstm: None,
            mobilenet_v2: false,
            weights: None,
            ensemble: None,
            onnx: None,
            bert: None,
            tokenizer: None,
            init_from: None,
            hidden_loss: None,
            view: 0,
            family: format!("plain-cnn-{size}"),
        })
    }
}

/// A `plain-cnn` table's architecture from its `size`, with `dense` and `batch-norm` when set.
pub(super) fn resolve(
    name: &str,
    m: &RawModel,
    table: PlainCnnTable,
    problems: &mut Problems,
) -> ModelSpec {
    let size = m.size.as_ref().map(|s| s.get_ref().get());
    let spec = size.and_then(|s| ModelSpec::plain_cnn_in(s, table));
    if spec.is_none() {
        problems.push(
            m.size
                .as_ref()
                .map(Spanned::span)
                .or(m.family.as_ref().map(Spanned::span)),
            match size {
                Some(s) => format!("`models.{name}.size` = {s} is not a plain-cnn size"),
                None => format!("`models.{name}.size` is required for `plain-cnn`"),
            },
            Some(format!(
                "sizes: {}",
                backticked(&PLAIN_CNN_SIZES.map(|s| s.to_string()))
            )),
        );
    }
    let mut spec = spec.unwrap_or_else(|| ModelSpec::plain_cnn(2).expect("size 2 exists"));
    if !m.dense.is_empty() {
        spec.dense = m.dense.iter().map(|c| c.get()).collect();
    }
    spec.batch_norm = m.batch_norm.unwrap_or(true);
    spec
}
