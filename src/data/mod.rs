//! Datasets: images kept as `u8` in memory, normalized per channel when a batch is built.
//!
//! Loading happens once per sweep; the trainer only sees [`Dataset`]. Nothing is downloaded at
//! run time: IDX files come from disk ([`idx`]) and the synthetic set is generated from a seed
//! ([`synthetic`]).

pub mod cifar;
pub mod decode;
mod error;
pub mod fingerprint;
pub mod folder;
pub mod idx;
pub mod resize;
pub mod synthetic;
pub mod text;

pub use error::DataError;
pub use fingerprint::{DigestCache, Fingerprint, fingerprint};

use crate::manifest::{DatasetSpec, FileFormat, Holdout};

/// One split (train or test): images in NCHW order as bytes, and labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// `len * channels * height * width` pixel bytes.
    pub images: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images at `indices`, in that order.
    fn select(&self, indices: &[usize]) -> Split {
        let image_len = self.images.len() / self.len().max(1);
        Split {
            images: indices
                .iter()
                .flat_map(|&i| &self.images[i * image_len..(i + 1) * image_len])
                .copied()
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }

    fn truncate(&mut self, n: usize, image_len: usize) {
        self.labels.truncate(n);
        self.images.truncate(n * image_len);
    }
}

/// A loaded dataset with its per-channel normalization.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Name for messages.
    pub name: String,
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes.
    pub classes: usize,
    /// Training split (without the validation images, once [`Dataset::hold_out`] ran).
    pub train: Split,
    /// Validation split held out of the training split, if any.
    pub val: Option<Split>,
    /// Test split.
    pub test: Split,
    /// Per-channel mean of the training pixels, in [0, 1] units.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the training pixels, in [0, 1] units.
    pub std: Vec<f32>,
    /// The planes hold token-id bytes ([`text`]): they reach the model as the integers they
    /// are, never normalized, since an id one ulp below its value would truncate to its
    /// neighbour.
    pub tokens: bool,
}

impl Dataset {
    /// Moves `n` training images into a validation split, stratified by class: each class
    /// gives its share (largest remainders break ties by class index), picked by a fixed
    /// shuffle, so every stage of every study on this data holds out the same images. Both
    /// splits keep the original order. Normalization computed from the data is recomputed from
    /// the images left to train on: validation pixels must not leak into it.
    pub fn hold_out(&mut self, n: usize, recompute_normalization: bool) {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let total = self.train.len();
        let n = n.min(total);
        let mut order: Vec<usize> = (0..total).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
            0x6b64_6772_6964,
        ));
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.classes.max(1)];
        for &i in &order {
            by_class[self.train.labels[i] as usize].push(i);
        }
        // Largest-remainder allocation of `n` over the classes, proportional to their sizes.
        let exact: Vec<f64> = by_class
            .iter()
            .map(|c| n as f64 * c.len() as f64 / total.max(1) as f64)
            .collect();
        let mut quota: Vec<usize> = exact.iter().map(|q| q.floor() as usize).collect();
        let mut by_remainder: Vec<usize> = (0..quota.len()).collect();
        by_remainder.sort_by(|&a, &b| {
            (exact[b] - quota[b] as f64)
                .total_cmp(&(exact[a] - quota[a] as f64))
                .then(a.cmp(&b))
        });
        let short = n - quota.iter().sum::<usize>();
        for &c in by_remainder.iter().take(short) {
            quota[c] += 1;
        }
        let mut val: Vec<usize> = by_class
            .iter()
            .zip(&quota)
            .flat_map(|(c, &q)| c[..q.min(c.len())].iter().copied())
            .collect();
        val.sort_unstable();
        let mut is_val = vec![false; total];
        for &i in &val {
            is_val[i] = true;
        }
        let train: Vec<usize> = (0..total).filter(|&i| !is_val[i]).collect();
        self.val = Some(self.train.select(&val));
        self.train = self.train.select(&train);
        if recompute_normalization {
            (self.mean, self.std) =
                normalization(&self.train, self.channels, self.height * self.width);
        }
    }

    /// Builds a dataset, computing normalization from the training split.
    pub fn new(
        name: String,
        [channels, height, width]: [usize; 3],
        classes: usize,
        train: Split,
        test: Split,
    ) -> Self {
        let (mean, std) = normalization(&train, channels, height * width);
        Self {
            name,
            channels,
            height,
            width,
            classes,
            train,
            val: None,
            test,
            mean,
            std,
            tokens: false,
        }
    }

    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Appends the normalized `f32` pixels of `indices` of `split` to `out` (NCHW).
    pub fn gather(&self, split: &Split, indices: &[usize], out: &mut Vec<f32>) {
        let len = self.image_len();
        let plane = self.height * self.width;
        out.reserve(indices.len() * len);
        for &i in indices {
            let img = &split.images[i * len..(i + 1) * len];
            if self.tokens {
                out.extend(img.iter().map(|&p| f32::from(p)));
                continue;
            }
            for (c, chan) in img.chunks_exact(plane).enumerate() {
                let (m, s) = (self.mean[c], self.std[c]);
                out.extend(chan.iter().map(|&p| (p as f32 / 255.0 - m) / s));
            }
        }
    }
}

/// Per-channel mean and standard deviation of `split`'s pixels, in [0, 1] units.
fn normalization(split: &Split, channels: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    let mut mean = vec![0f32; channels];
    let mut std = vec![1f32; channels];
    for c in 0..channels {
        let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
        for img in split.images.chunks_exact(channels * plane) {
            for &p in &img[c * plane..(c + 1) * plane] {
                let v = p as f64 / 255.0;
                sum += v;
                sq += v * v;
                n += 1.0;
            }
        }
        if n > 0.0 {
            let m = sum / n;
            mean[c] = m as f32;
            std[c] = ((sq / n - m * m).max(0.0).sqrt() as f32).max(1e-3);
        }
    }
    (mean, std)
}

/// Random crop (after zero padding) and horizontal flip, drawn per image from `rng`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Pixels of zero padding on each side before cropping back to size.
    pub crop_padding: usize,
    /// Flip horizontally with probability 1/2.
    pub flip: bool,
}

impl Dataset {
    /// Like [`Dataset::gather`], with each image augmented by draws from `rng`: a crop offset
    /// in `[-pad, pad]` on each axis, then a flip. Padding is a black pixel, normalized.
    pub fn gather_augmented(
        &self,
        split: &Split,
        indices: &[usize],
        augment: Augment,
        rng: &mut impl rand::Rng,
        out: &mut Vec<f32>,
    ) {
        use rand::RngExt;
        let (h, w) = (self.height as isize, self.width as isize);
        let len = self.image_len();
        let plane = self.height * self.width;
        let pad = augment.crop_padding as i64;
        out.reserve(indices.len() * len);
        for &i in indices {
            let dy = rng.random_range(-pad..=pad) as isize;
            let dx = rng.random_range(-pad..=pad) as isize;
            let flip = augment.flip && rng.random::<bool>();
            let img = &split.images[i * len..(i + 1) * len];
            for (c, chan) in img.chunks_exact(plane).enumerate() {
                let (m, s) = (self.mean[c], self.std[c]);
                for y in 0..h {
                    for x in 0..w {
                        let sx = if flip { w - 1 - x } else { x } + dx;
                        let sy = y + dy;
                        let p = if (0..h).contains(&sy) && (0..w).contains(&sx) {
                            chan[(sy * w + sx) as usize] as f32 / 255.0
                        } else {
                            0.0
                        };
                        out.push((p - m) / s);
                    }
                }
            }
        }
    }
}

/// Loads the dataset a manifest names, holding out `validation` training images (see
/// [`Dataset::hold_out`]).
pub fn load(spec: &DatasetSpec, validation: Option<Holdout>) -> Result<Dataset, DataError> {
    let mut ds = load_splits(spec)?;
    if let Some(h) = validation {
        // Image folders' sizes are known only now; a fractional split can also round to 0.
        let n = h.count(ds.train.len());
        if !h.fits(ds.train.len()) {
            return Err(DataError::Holdout {
                dataset: ds.name.clone(),
                held_out: n,
                train: ds.train.len(),
            });
        }
        let fixed = matches!(
            spec,
            DatasetSpec::Files {
                normalize: Some(_),
                ..
            }
        );
        ds.hold_out(n, !fixed);
    }
    Ok(ds)
}

fn load_splits(spec: &DatasetSpec) -> Result<Dataset, DataError> {
    let DatasetSpec::Files {
        format,
        path,
        train_limit,
        test_limit,
        normalize,
        resize,
        text,
    } = spec
    else {
        let DatasetSpec::Synthetic(s) = spec else {
            unreachable!()
        };
        return Ok(synthetic::generate(s));
    };
    let name = format.name().to_string();
    let (mut train, mut test, shape, classes) = match format {
        FileFormat::FashionMnist | FileFormat::Mnist => {
            let ds = idx::load_folder(path)?;
            (ds.train, ds.test, [1, ds.size[0], ds.size[1]], ds.classes)
        }
        FileFormat::Cifar10 | FileFormat::Cifar100 => {
            let release = if *format == FileFormat::Cifar10 {
                cifar::Release::Cifar10
            } else {
                cifar::Release::Cifar100
            };
            let (train, test) = cifar::load(release, path)?;
            (train, test, [3, 32, 32], release.classes())
        }
        FileFormat::ImageFolder => {
            let f = folder::load(path, [*train_limit, *test_limit], *resize)?;
            (f.train, f.test, [3, f.size[0], f.size[1]], f.classes.len())
        }
        FileFormat::Text => {
            let spec = text.as_ref().expect("text datasets have a text spec");
            let t = text::load(path, spec, [*train_limit, *test_limit])?;
            let rows = 1 + spec.tokenizers.len();
            (t.train, t.test, [2, rows, spec.max_length], t.classes.len())
        }
    };
    let len = shape.iter().product();
    if let Some(n) = train_limit {
        train.truncate(*n, len);
    }
    if let Some(n) = test_limit {
        test.truncate(*n, len);
    }
    // Normalization must describe the data actually trained on.
    let mut ds = Dataset::new(name, shape, classes, train, test);
    ds.tokens = *format == FileFormat::Text;
    if let Some(n) = normalize {
        ds.mean = n.mean.iter().map(|&m| m as f32).collect();
        ds.std = n.std.iter().map(|&s| s as f32).collect();
    }
    Ok(ds)
}
