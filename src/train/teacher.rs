//! What a distilled stage learns from: one trained model, an ensemble of them, or a frozen
//! ONNX model.

use super::{Net, OnnxTeacher};
use crate::manifest::Combine;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

/// A teacher: one model, the members of an ensemble and how they are averaged, or an ONNX
/// graph.
#[derive(Debug, Clone)]
pub enum Teacher {
    /// A trained (or imported) model.
    One(Box<Net>),
    /// Trained stages whose outputs are averaged.
    Ensemble(Vec<Net>, Combine),
    /// A frozen model exported to ONNX.
    Onnx(OnnxTeacher),
}

impl Teacher {
    /// The logits a student matches at `temperature` (softmax(logits / T) are the soft
    /// targets): a model's own; an ensemble's mean logits, or, averaging probabilities,
    /// `T * ln(mean_i softmax(z_i / T))`, whose tempered softmax is exactly that mean.
    pub fn logits(&self, x: Tensor<4>, temperature: f64) -> Tensor<2> {
        match self {
            Teacher::One(m) => m.forward(x),
            Teacher::Onnx(o) => o.logits(x),
            Teacher::Ensemble(members, combine) => {
                let n = members.len() as f64;
                let mut outputs = members.iter().map(|m| m.forward(x.clone()));
                let first = outputs.next().expect("ensembles have members");
                match combine {
                    Combine::MeanLogits => outputs.fold(first, |a, b| a + b).div_scalar(n),
                    Combine::MeanProbabilities => {
                        let p = |z: Tensor<2>| softmax(z.div_scalar(temperature), 1);
                        let mean = outputs.fold(p(first), |a, z| a + p(z)).div_scalar(n);
                        // ln of a probability of 0 would be -inf: clamp at the smallest normal f32.
                        mean.clamp_min(f32::MIN_POSITIVE)
                            .log()
                            .mul_scalar(temperature)
                    }
                }
            }
        }
    }

    /// The last hidden states of a single encoder teacher, `[batch, length, width]`.
    pub fn hidden(&self, x: Tensor<4>) -> Option<Tensor<3>> {
        match self {
            Teacher::One(m) => m.forward_hidden(x, None).1.map(|(h, _)| h),
            _ => None,
        }
    }

    /// Trainable parameters of every model involved (an ONNX graph's floating-point values).
    pub fn params(&self) -> usize {
        match self {
            Teacher::One(m) => m.trainable_params(),
            Teacher::Ensemble(members, _) => members.iter().map(Net::trainable_params).sum(),
            Teacher::Onnx(o) => o.params,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ModelSpec;
    use burn::tensor::activation::log_softmax;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn averaged_probabilities_come_back_through_the_tempered_softmax() {
        let device = super::super::Backend::flex().device;
        let spec = ModelSpec::plain_cnn(2).unwrap();
        let members: Vec<Net> = (0..3)
            .map(|s| {
                let mut rng = ChaCha8Rng::seed_from_u64(s);
                Net::new(&spec, [1, 8, 8], 4, Some(&mut rng), &device)
            })
            .collect();
        let x = Tensor::<4>::random([5, 1, 8, 8], burn::tensor::Distribution::Default, &device);
        let t = 3.0;
        let expected = members
            .iter()
            .map(|m| softmax(m.forward(x.clone()).div_scalar(t), 1))
            .reduce(|a, b| a + b)
            .unwrap()
            .div_scalar(3.0);
        let ensemble = Teacher::Ensemble(members.clone(), Combine::MeanProbabilities);
        let got = log_softmax(ensemble.logits(x.clone(), t).div_scalar(t), 1).exp();
        for (a, b) in got
            .into_data()
            .iter::<f32>()
            .zip(expected.into_data().iter::<f32>())
        {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        let mean = Teacher::Ensemble(members.clone(), Combine::MeanLogits).logits(x.clone(), t);
        let by_hand = members
            .iter()
            .map(|m| m.forward(x.clone()))
            .reduce(|a, b| a + b)
            .unwrap()
            .div_scalar(3.0);
        for (a, b) in mean
            .into_data()
            .iter::<f32>()
            .zip(by_hand.into_data().iter::<f32>())
        {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }
}
