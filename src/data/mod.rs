//! Datasets: images kept as `u8` in memory, normalized per channel when a batch is built.
//!
//! Loading happens once per sweep; the trainer only sees [`Dataset`]. Nothing is downloaded at
//! run time: IDX files come from disk ([`idx`]) and the synthetic set is generated from a seed
//! ([`synthetic`]).

mod error;
pub mod idx;
pub mod synthetic;

pub use error::DataError;

use crate::manifest::DatasetSpec;

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
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
    /// Per-channel mean of the training pixels, in [0, 1] units.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the training pixels, in [0, 1] units.
    pub std: Vec<f32>,
}

impl Dataset {
    /// Builds a dataset, computing normalization from the training split.
    pub fn new(
        name: String,
        [channels, height, width]: [usize; 3],
        classes: usize,
        train: Split,
        test: Split,
    ) -> Self {
        let plane = height * width;
        let mut mean = vec![0f32; channels];
        let mut std = vec![1f32; channels];
        for c in 0..channels {
            let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
            for img in train.images.chunks_exact(channels * plane) {
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
        Self {
            name,
            channels,
            height,
            width,
            classes,
            train,
            test,
            mean,
            std,
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
            for (c, chan) in img.chunks_exact(plane).enumerate() {
                let (m, s) = (self.mean[c], self.std[c]);
                out.extend(chan.iter().map(|&p| (p as f32 / 255.0 - m) / s));
            }
        }
    }
}

/// Loads the dataset a manifest names.
pub fn load(spec: &DatasetSpec) -> Result<Dataset, DataError> {
    match spec {
        DatasetSpec::Idx {
            name,
            path,
            train_limit,
            test_limit,
        } => {
            let mut ds = idx::load_folder(name, path)?;
            let len = ds.image_len();
            if let Some(n) = train_limit {
                ds.train.truncate(*n, len);
            }
            if let Some(n) = test_limit {
                ds.test.truncate(*n, len);
            }
            // Normalization must describe the data actually trained on.
            Ok(Dataset::new(
                ds.name,
                [ds.channels, ds.height, ds.width],
                ds.classes,
                ds.train,
                ds.test,
            ))
        }
        DatasetSpec::Synthetic(s) => Ok(synthetic::generate(s)),
    }
}
