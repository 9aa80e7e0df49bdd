//! A seeded synthetic image-classification set: each class is a random prototype image; a
//! sample is its class prototype, shifted by up to one pixel and blended with uniform noise.
//! Small enough for tests, hard enough that accuracy measures learning.

use super::{Dataset, Split};
use crate::manifest::SyntheticSpec;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Generates the dataset `spec` describes; the same spec always gives the same bytes.
pub fn generate(spec: &SyntheticSpec) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let (c, s) = (spec.channels, spec.image_size);
    let len = c * s * s;
    let prototypes: Vec<Vec<f32>> = (0..spec.classes)
        .map(|_| (0..len).map(|_| rng.random::<f32>()).collect())
        .collect();
    let mut split = |n: usize| {
        let mut images = Vec::with_capacity(n * len);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let class = i % spec.classes;
            let (dx, dy) = (rng.random_range(-1i32..=1), rng.random_range(-1i32..=1));
            let proto = &prototypes[class];
            for ch in 0..c {
                for y in 0..s as i32 {
                    for x in 0..s as i32 {
                        let (sy, sx) = (
                            (y + dy).clamp(0, s as i32 - 1),
                            (x + dx).clamp(0, s as i32 - 1),
                        );
                        let p = proto[ch * s * s + (sy as usize) * s + sx as usize];
                        let noise = rng.random::<f32>();
                        let v = (1.0 - spec.noise as f32) * p + spec.noise as f32 * noise;
                        images.push((v * 255.0).round() as u8);
                    }
                }
            }
            labels.push(class as u8);
        }
        Split { images, labels }
    };
    let train = split(spec.train_size);
    let test = split(spec.test_size);
    Dataset::new("synthetic".into(), [c, s, s], spec.classes, train, test)
}
