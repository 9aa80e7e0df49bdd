//! `[dataset]`: which images a study trains and tests on, as far as the manifest says.

use super::error::Problems;
use super::values::{Count, Fraction};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Which data a study uses. Relative paths are resolved against the manifest's folder.
///
/// ```toml
/// [dataset]
/// kind = "fashion-mnist"   # or "mnist", "cifar10", "cifar100", "image-folder", "text", "synthetic"
/// path = "../data/fashion-mnist"
/// train-limit = 20000
/// mean = [0.286]           # optional per-channel normalization; computed from the
/// std = [0.353]            # training split when absent
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DatasetSpec {
    /// A dataset read from files on disk.
    Files {
        /// On-disk format, part of stage ids.
        format: FileFormat,
        /// Folder with the files; not part of stage ids, so data may move.
        #[serde(skip)]
        path: PathBuf,
        /// Use only the first N training images.
        train_limit: Option<usize>,
        /// Use only the first N test images.
        test_limit: Option<usize>,
        /// Per-channel mean and std in [0, 1] pixel units; computed from the training split
        /// when absent.
        #[serde(skip_serializing_if = "Option::is_none")]
        normalize: Option<Normalize>,
        /// Side every image of an image folder is resized to at load (`image-size`), with PIL's
        /// bilinear filter; `None` keeps the files' size, which must then agree.
        #[serde(skip_serializing_if = "Option::is_none")]
        resize: Option<usize>,
        /// Vocabulary and length of a `text` dataset.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<TextSpec>,
    },
    /// Seeded synthetic images: noisy class prototypes, for tests and demos.
    Synthetic(SyntheticSpec),
}

impl DatasetSpec {
    /// Revision of the reader that turns this dataset's files into model inputs, part of stage
    /// ids when set: a change there moves the numbers of exactly these datasets' stages, so it
    /// invalidates them and no other (unlike [`crate::identity::TRAINER_VERSION`]).
    /// Text 2: token ids reach the embedding exactly (1 passed them through a float
    /// normalization that truncated about half of them to the neighbouring id).
    /// Image folder 2: images decode and resize to PIL's pixels (1 decoded JPEGs with the
    /// `image` crate, whose IDCT and chroma upsampling differ from libjpeg's in about a quarter
    /// of the pixels, and resized with its triangle filter, a level off in about a third).
    pub fn reader_version(&self) -> Option<u32> {
        match self {
            DatasetSpec::Files {
                format: FileFormat::Text,
                ..
            } => Some(TEXT_READER),
            DatasetSpec::Files {
                format: FileFormat::ImageFolder,
                ..
            } => Some(IMAGE_FOLDER_READER),
            _ => None,
        }
    }
}

/// See [`DatasetSpec::reader_version`].
const TEXT_READER: u32 = 2;
/// See [`DatasetSpec::reader_version`].
const IMAGE_FOLDER_READER: u32 = 2;

/// How a `text` dataset becomes model inputs: a word-level vocabulary of the `vocab_size` most
/// frequent words of the training split, and every text cut or left-padded to `max_length`
/// tokens.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextSpec {
    /// Words kept (ids 2..; 0 pads, 1 is an unknown word).
    pub vocab_size: usize,
    /// Tokens per text.
    pub max_length: usize,
    /// The Hugging Face tokenizers the study's models read (each model's [`ModelSpec::view`]
    /// `n` is the `n`-th, 1-based; 0 is the word vocabulary), set from `[models.*]`. Not part of
    /// stage ids: a model's id holds its own tokenizer's digest, and which other tokenizers a
    /// study defines changes no model's ids.
    ///
    /// [`ModelSpec::view`]: crate::manifest::ModelSpec::view
    #[serde(skip)]
    pub tokenizers: Vec<crate::manifest::TokenizerRef>,
}

impl TextSpec {
    /// Rows of the embedding table: the words, padding and unknown.
    pub fn vocab_rows(&self) -> usize {
        self.vocab_size + 2
    }
}

/// What a dataset looks like, as far as it is known from the manifest alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    /// `[channels, height, width]`.
    pub input: [usize; 3],
    /// Number of classes.
    pub classes: usize,
    /// Training images used.
    pub train: usize,
    /// Test images used.
    pub test: usize,
}

impl DatasetSpec {
    /// The shape of the data, for formats whose shape is fixed (not image folders).
    pub fn shape(&self) -> Option<DataShape> {
        match self {
            DatasetSpec::Synthetic(s) => Some(DataShape {
                input: [s.channels, s.image_size, s.image_size],
                classes: s.classes,
                train: s.train_size,
                test: s.test_size,
            }),
            DatasetSpec::Files {
                format,
                train_limit,
                test_limit,
                ..
            } => {
                let (input, classes, train) = match format {
                    FileFormat::FashionMnist | FileFormat::Mnist => ([1, 28, 28], 10, 60_000),
                    FileFormat::Cifar10 => ([3, 32, 32], 10, 50_000),
                    FileFormat::Cifar100 => ([3, 32, 32], 100, 50_000),
                    FileFormat::ImageFolder | FileFormat::Text => return None,
                };
                Some(DataShape {
                    input,
                    classes,
                    train: train_limit.map_or(train, |l| l.min(train)),
                    test: test_limit.map_or(10_000, |l| l.min(10_000)),
                })
            }
        }
    }
}

/// File formats kdgrid reads (never downloads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileFormat {
    /// Fashion-MNIST in IDX files (`train-images-idx3-ubyte[.gz]`, `t10k-*`).
    FashionMnist,
    /// MNIST in IDX files.
    Mnist,
    /// The CIFAR-10 binary release (`data_batch_{1..5}.bin`, `test_batch.bin`).
    Cifar10,
    /// The CIFAR-100 binary release (`train.bin`, `test.bin`; fine labels).
    Cifar100,
    /// `train/<class>/*.png|jpg` and `test/<class>/*` (ImageFolder layout), read as RGB with
    /// PIL's pixels.
    ImageFolder,
    /// `train.tsv` and `test.tsv`, one `label<TAB>text` per line.
    Text,
}

impl FileFormat {
    /// Name as written in manifests.
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::FashionMnist => "fashion-mnist",
            FileFormat::Mnist => "mnist",
            FileFormat::Cifar10 => "cifar10",
            FileFormat::Cifar100 => "cifar100",
            FileFormat::ImageFolder => "image-folder",
            FileFormat::Text => "text",
        }
    }

    /// Channels of the images as loaded.
    pub fn channels(self) -> usize {
        match self {
            FileFormat::FashionMnist | FileFormat::Mnist => 1,
            // A token id's low and high byte (see `data::text`).
            FileFormat::Text => 2,
            _ => 3,
        }
    }
}

/// Given per-channel normalization.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Normalize {
    /// Mean per channel, in [0, 1] pixel units.
    pub mean: Vec<f64>,
    /// Standard deviation per channel, in [0, 1] pixel units.
    pub std: Vec<f64>,
}

/// Parameters of the synthetic dataset.
///
/// ```toml
/// [dataset]
/// kind = "synthetic"
/// seed = 7
/// classes = 4
/// train-size = 512
/// test-size = 256
/// image-size = 12
/// noise = 0.6
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyntheticSpec {
    /// Seed of the generator.
    pub seed: u64,
    /// Number of classes.
    pub classes: usize,
    /// Training images.
    pub train_size: usize,
    /// Test images.
    pub test_size: usize,
    /// Square image side in pixels.
    pub image_size: usize,
    /// Channels per image.
    pub channels: usize,
    /// Pixel noise relative to the prototype contrast, in [0, 1).
    pub noise: f64,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum DatasetKind {
    FashionMnist,
    Mnist,
    Cifar10,
    Cifar100,
    ImageFolder,
    Text,
    Synthetic,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct RawDataset {
    kind: Spanned<DatasetKind>,
    path: Option<Spanned<String>>,
    train_limit: Option<Spanned<Count>>,
    test_limit: Option<Spanned<Count>>,
    seed: Option<Spanned<u64>>,
    classes: Option<Spanned<Count>>,
    train_size: Option<Spanned<Count>>,
    test_size: Option<Spanned<Count>>,
    image_size: Option<Spanned<Count>>,
    channels: Option<Spanned<Count>>,
    noise: Option<Spanned<Fraction>>,
    mean: Option<Spanned<Vec<f64>>>,
    std: Option<Spanned<Vec<f64>>>,
    vocab_size: Option<Spanned<Count>>,
    max_length: Option<Spanned<Count>>,
}

pub(crate) fn check_dataset(
    raw: &Spanned<RawDataset>,
    base: &Path,
    problems: &mut Problems,
) -> Option<DatasetSpec> {
    let d = raw.get_ref();
    // `image-size` also resizes image folders (checked below).
    let synthetic_keys: [(&str, Option<Range<usize>>); 6] = [
        ("seed", d.seed.as_ref().map(Spanned::span)),
        ("classes", d.classes.as_ref().map(Spanned::span)),
        ("train-size", d.train_size.as_ref().map(Spanned::span)),
        ("test-size", d.test_size.as_ref().map(Spanned::span)),
        ("channels", d.channels.as_ref().map(Spanned::span)),
        ("noise", d.noise.as_ref().map(Spanned::span)),
    ];
    let format = match d.kind.get_ref() {
        DatasetKind::FashionMnist => Some(FileFormat::FashionMnist),
        DatasetKind::Mnist => Some(FileFormat::Mnist),
        DatasetKind::Cifar10 => Some(FileFormat::Cifar10),
        DatasetKind::Cifar100 => Some(FileFormat::Cifar100),
        DatasetKind::ImageFolder => Some(FileFormat::ImageFolder),
        DatasetKind::Text => Some(FileFormat::Text),
        DatasetKind::Synthetic => None,
    };
    let text = check_text(d, format, problems);
    let channels = format.map_or_else(
        || d.channels.as_ref().map_or(1, |c| c.get_ref().get()),
        FileFormat::channels,
    );
    let normalize = match text {
        Some(_) => text_normalization(d, problems),
        None => check_normalize(d, channels, problems),
    };
    match format {
        Some(format) => {
            for (key, span) in synthetic_keys {
                if let Some(span) = span {
                    problems.push(
                        Some(span),
                        format!("`dataset.{key}` applies only to `kind = \"synthetic\"`"),
                        None,
                    );
                }
            }
            let Some(path) = &d.path else {
                problems.push(
                    Some(raw.span()),
                    format!("`dataset.path` is required for `kind = \"{}\"`", format.name()),
                    Some("point it at the folder holding the dataset's files, relative to the manifest".into()),
                );
                return None;
            };
            let resize = d.image_size.as_ref().map(|s| (s.span(), s.get_ref().get()));
            match resize.clone() {
                Some((span, _)) if format != FileFormat::ImageFolder => problems.push(
                    Some(span),
                    format!(
                        "`dataset.image-size` applies to `kind = \"synthetic\"` and `kind = \"image-folder\"`, not `{}` (whose size is fixed)",
                        format.name()
                    ),
                    None,
                ),
                Some((span, size)) if size < 4 => {
                    problems.push(Some(span), "`dataset.image-size` must be at least 4", None)
                }
                _ => {}
            }
            Some(DatasetSpec::Files {
                format,
                path: base.join(path.get_ref()),
                train_limit: d.train_limit.as_ref().map(|c| c.get_ref().get()),
                test_limit: d.test_limit.as_ref().map(|c| c.get_ref().get()),
                normalize,
                resize: resize.map(|(_, size)| size),
                text,
            })
        }
        None => {
            if let Some(path) = &d.path {
                problems.push(
                    Some(path.span()),
                    "`dataset.path` does not apply to `kind = \"synthetic\"`",
                    None,
                );
            }
            for (key, limit, size) in [
                ("train-limit", &d.train_limit, "train-size"),
                ("test-limit", &d.test_limit, "test-size"),
            ] {
                if let Some(limit) = limit {
                    problems.push(
                        Some(limit.span()),
                        format!("`dataset.{key}` does not apply to `kind = \"synthetic\"`"),
                        Some(format!(
                            "set `dataset.{size}` to the number of images wanted"
                        )),
                    );
                }
            }
            let count = |v: &Option<Spanned<Count>>, default: usize| {
                v.as_ref().map_or(default, |c| c.get_ref().get())
            };
            let image_size = count(&d.image_size, 12);
            if image_size < 4 {
                problems.push(
                    d.image_size.as_ref().map(Spanned::span),
                    "`dataset.image-size` must be at least 4",
                    None,
                );
            }
            let classes = count(&d.classes, 4);
            if !(2..=256).contains(&classes) {
                problems.push(
                    d.classes.as_ref().map(Spanned::span),
                    "`dataset.classes` must be within [2, 256]",
                    None,
                );
            }
            if let Some(mean) = d.mean.as_ref().filter(|_| normalize.is_some()) {
                problems.push(
                    Some(mean.span()),
                    "`dataset.mean` and `dataset.std` apply to file datasets; synthetic data is normalized from its training split",
                    None,
                );
            }
            Some(DatasetSpec::Synthetic(SyntheticSpec {
                seed: d.seed.as_ref().map_or(0, |s| *s.get_ref()),
                classes,
                train_size: count(&d.train_size, 512),
                test_size: count(&d.test_size, 256),
                image_size,
                channels: count(&d.channels, 1),
                noise: d.noise.as_ref().map_or(0.5, |n| n.get_ref().get()),
            }))
        }
    }
}

/// `vocab-size` and `max-length`, for `text` datasets only.
fn check_text(
    d: &RawDataset,
    format: Option<FileFormat>,
    problems: &mut Problems,
) -> Option<TextSpec> {
    let keys = [("vocab-size", &d.vocab_size), ("max-length", &d.max_length)];
    if format != Some(FileFormat::Text) {
        for (key, v) in keys {
            if let Some(v) = v {
                problems.push(
                    Some(v.span()),
                    format!("`dataset.{key}` applies only to `kind = \"text\"`"),
                    None,
                );
            }
        }
        return None;
    }
    let vocab_size = d.vocab_size.as_ref().map_or(5000, |v| v.get_ref().get());
    if vocab_size > usize::from(u16::MAX) - 2 {
        problems.push(
            d.vocab_size.as_ref().map(Spanned::span),
            format!("`dataset.vocab-size` is at most {}", u16::MAX - 2),
            None,
        );
    }
    Some(TextSpec {
        vocab_size,
        max_length: d.max_length.as_ref().map_or(64, |v| v.get_ref().get()),
        tokenizers: Vec::new(),
    })
}

/// Token bytes reach the model as they are ([`crate::data::Dataset::tokens`]): no
/// normalization, and none may be given.
fn text_normalization(d: &RawDataset, problems: &mut Problems) -> Option<Normalize> {
    if let Some(v) = d.mean.as_ref().or(d.std.as_ref()) {
        problems.push(
            Some(v.span()),
            "`dataset.mean` and `dataset.std` do not apply to `kind = \"text\"`",
            None,
        );
    }
    None
}

fn check_normalize(d: &RawDataset, channels: usize, problems: &mut Problems) -> Option<Normalize> {
    match (&d.mean, &d.std) {
        (None, None) => None,
        (Some(mean), Some(std)) => {
            let mut ok = true;
            for (key, v) in [("mean", mean), ("std", std)] {
                if v.get_ref().len() != channels {
                    ok = false;
                    problems.push(
                        Some(v.span()),
                        format!(
                            "`dataset.{key}` has {} values; the images have {channels} channel{}",
                            v.get_ref().len(),
                            if channels == 1 { "" } else { "s" }
                        ),
                        None,
                    );
                }
            }
            if std.get_ref().iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                ok = false;
                problems.push(Some(std.span()), "`dataset.std` values must be > 0", None);
            }
            ok.then(|| Normalize {
                mean: mean.get_ref().clone(),
                std: std.get_ref().clone(),
            })
        }
        (Some(v), None) | (None, Some(v)) => {
            problems.push(
                Some(v.span()),
                "`dataset.mean` and `dataset.std` go together",
                None,
            );
            None
        }
    }
}
