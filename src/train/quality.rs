//! What a trained model's test logits say beyond accuracy: calibration, and for a distilled
//! model, how closely it follows its teacher. Computed on the host from logits, in `f64`.

/// Bins of the expected calibration error (Guo et al. 2017 use 15).
pub const ECE_BINS: usize = 15;

/// Test-set quality of one model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quality {
    /// Expected calibration error: the confidence-weighted gap between confidence and accuracy
    /// over [`ECE_BINS`] equal-width confidence bins.
    pub ece: f64,
    /// Fraction of test images where the model's top-1 class equals its teacher's.
    pub agreement: Option<f64>,
    /// Mean over test images of KL(teacher || model) at temperature 1, in nats.
    pub kl_teacher: Option<f64>,
}

fn softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let exp: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Quality of row-major `[n, classes]` logits against `labels`, and against a teacher's
/// logits of the same images when there is one.
pub fn quality(logits: &[f32], teacher: Option<&[f32]>, labels: &[u8], classes: usize) -> Quality {
    let n = labels.len();
    let mut bins = [(0usize, 0f64, 0f64); ECE_BINS]; // count, confidence sum, correct count
    let (mut agree, mut kl) = (0usize, 0f64);
    for (i, &label) in labels.iter().enumerate() {
        let row = &logits[i * classes..(i + 1) * classes];
        let p = softmax(row);
        let top = argmax(row);
        let confidence = p[top];
        let bin = ((confidence * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        bins[bin].0 += 1;
        bins[bin].1 += confidence;
        bins[bin].2 += (top == label as usize) as u8 as f64;
        if let Some(t) = teacher {
            let trow = &t[i * classes..(i + 1) * classes];
            agree += (argmax(trow) == top) as usize;
            let q = softmax(trow);
            kl += q
                .iter()
                .zip(&p)
                .filter(|(q, _)| **q > 0.0)
                .map(|(q, p)| q * (q.ln() - p.max(f64::MIN_POSITIVE).ln()))
                .sum::<f64>();
        }
    }
    let nf = n.max(1) as f64;
    Quality {
        ece: bins
            .iter()
            .map(|&(_, conf, correct)| (conf - correct).abs() / nf)
            .sum(),
        agreement: teacher.map(|_| agree as f64 / nf),
        kl_teacher: teacher.map(|_| kl / nf),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_agrees_with_itself_at_zero_divergence() {
        let logits = [2.0, 0.0, 0.0, 3.0, 1.0, 0.5];
        let q = quality(&logits, Some(&logits), &[0, 1], 2 + 1);
        assert_eq!(q.agreement, Some(1.0));
        assert!(q.kl_teacher.unwrap().abs() < 1e-12);
    }

    #[test]
    fn ece_of_a_confident_wrong_model_is_its_confidence() {
        // Both images predicted class 0 with confidence ~0.982, both labelled 1.
        let logits = [4.0, 0.0, 4.0, 0.0];
        let q = quality(&logits, None, &[1, 1], 2);
        let conf = 1.0 / (1.0 + (-4f64).exp());
        assert!((q.ece - conf).abs() < 1e-12, "{}", q.ece);
        assert_eq!(q.agreement, None);
    }
}
