//! Resizing image-folder images (`image-size`) as PIL does, bit for bit:
//! `img.resize((width, height), Image.BILINEAR)`, what torchvision's `Resize` calls on a PIL
//! image. A port of Pillow's `ImagingResample` for its bilinear filter: a triangle filter
//! widened by the scale when shrinking (so every source pixel counts), weights rounded to
//! 22-bit fixed point, a horizontal pass over the rows the vertical one needs, then the
//! vertical pass, each rounding to bytes. The `image` crate's triangle filter computes the same
//! weights in floating point and differed from PIL by one level in about a third of the pixels.

use image::RgbImage;

/// Fixed-point weights: `(1 << PRECISION_BITS)` is 1, leaving room for 8-bit samples and sign.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// `image` resized to `width` x `height`; unchanged dimensions copy it, as in PIL.
pub fn bilinear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let src = image.as_raw();
    let horizontal = Weights::new(in_w, out_w);
    let mut vertical = Weights::new(in_h, out_h);
    // The horizontal pass covers only the source rows the vertical pass reads.
    let (rows, first_row) = if out_w != in_w {
        let first = vertical.bounds.first().map_or(0, |b| b.0);
        let last = vertical.bounds.last().map_or(0, |b| b.0 + b.1);
        for bound in &mut vertical.bounds {
            bound.0 -= first;
        }
        let mut rows = vec![0u8; (last - first) * out_w * 3];
        for (y, out_row) in rows.chunks_exact_mut(out_w * 3).enumerate() {
            let in_row = &src[(first + y) * in_w * 3..(first + y + 1) * in_w * 3];
            for (x, out) in out_row.chunks_exact_mut(3).enumerate() {
                let (start, weights) = horizontal.of(x);
                for (c, out) in out.iter_mut().enumerate() {
                    *out = weigh(weights, |i| in_row[(start + i) * 3 + c]);
                }
            }
        }
        (rows, first)
    } else {
        (src.clone(), 0)
    };
    debug_assert!(first_row <= in_h);
    let pixels = if out_h != in_h {
        let stride = out_w * 3;
        let mut out = vec![0u8; out_h * stride];
        for (y, out_row) in out.chunks_exact_mut(stride).enumerate() {
            let (start, weights) = vertical.of(y);
            for (i, out) in out_row.iter_mut().enumerate() {
                *out = weigh(weights, |k| rows[(start + k) * stride + i]);
            }
        }
        out
    } else {
        rows
    };
    RgbImage::from_raw(width, height, pixels).expect("width x height x 3 bytes")
}

/// The weighted sum of `sample(0..weights.len())`, rounded to a byte as Pillow does.
fn weigh(weights: &[i32], sample: impl Fn(usize) -> u8) -> u8 {
    let sum = weights
        .iter()
        .enumerate()
        .fold(1i32 << (PRECISION_BITS - 1), |sum, (i, &w)| {
            sum + i32::from(sample(i)) * w
        });
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `bilinear_filter`.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for the bilinear filter: per output
/// pixel, the first source pixel and the fixed-point weights of the source pixels from there.
struct Weights {
    /// `(first, count)` per output pixel.
    bounds: Vec<(usize, usize)>,
    /// `window` weights per output pixel, the first `count` of them used.
    weights: Vec<i32>,
    window: usize,
}

impl Weights {
    fn new(in_size: usize, out_size: usize) -> Weights {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let support = filter_scale; // the triangle's support, 1, widened when shrinking
        let window = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0; out_size * window];
        for (xx, out) in weights.chunks_exact_mut(window).enumerate() {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero, as `as` does.
            let min = ((center - support + 0.5) as i64).max(0) as usize;
            let max = ((center + support + 0.5) as i64).min(in_size as i64) as usize - min;
            let k: Vec<f64> = (0..max)
                .map(|x| triangle(((x + min) as f64 - center + 0.5) * (1.0 / filter_scale)))
                .collect();
            let total: f64 = k.iter().sum();
            for (w, &k) in out.iter_mut().zip(&k) {
                let k = if total != 0.0 { k / total } else { k };
                *w = (k * f64::from(1u32 << PRECISION_BITS) + 0.5) as i32;
            }
            bounds.push((min, max));
        }
        Weights {
            bounds,
            weights,
            window,
        }
    }

    /// The first source pixel of output pixel `i` and its weights.
    fn of(&self, i: usize) -> (usize, &[i32]) {
        let (first, count) = self.bounds[i];
        (
            first,
            &self.weights[i * self.window..i * self.window + count],
        )
    }
}
