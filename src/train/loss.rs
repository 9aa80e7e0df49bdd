//! Losses and metrics of one batch.

use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Int, Tensor};

/// Mean cross-entropy of `logits` against class `labels`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    CrossEntropyLossConfig::new()
        .init(&logits.device())
        .forward(logits, labels)
}

/// Hinton distillation loss:
/// `alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(y, s)`,
/// with the KL summed over classes and averaged over the batch (per-sample, as in Hinton et
/// al.), then scaled by `kl_scale` (`1 / classes` gives PyTorch's element-mean `KLDivLoss`).
/// `teacher` carries no gradient. Also returns the soft-target term as it enters the total
/// (`alpha * T^2 * kl_scale * KL`), for the record; `None` when `alpha` is 0.
pub fn distillation(
    student: Tensor<2>,
    teacher: Tensor<2>,
    labels: Tensor<1, Int>,
    temperature: f64,
    alpha: f64,
    kl_scale: f64,
) -> (Tensor<1>, Option<Tensor<1>>) {
    let ce = cross_entropy(student.clone(), labels);
    if alpha == 0.0 {
        return (ce, None);
    }
    let t = teacher.div_scalar(temperature).detach();
    let log_p_teacher = log_softmax(t.clone(), 1);
    let p_teacher = softmax(t, 1);
    let log_p_student = log_softmax(student.div_scalar(temperature), 1);
    let kl: Tensor<1> = (p_teacher * (log_p_teacher - log_p_student))
        .sum_dim(1)
        .mean();
    let soft = kl.mul_scalar(alpha * temperature * temperature * kl_scale);
    (soft.clone() + ce.mul_scalar(1.0 - alpha), Some(soft))
}

/// DistilBERT's cosine loss between a student's and its teacher's last hidden states
/// `[batch, length, width]`: `1 - cos(s, t)` per token, averaged over the tokens `mask` keeps
/// (`[batch, length]`, 1 or 0), with `cos = s·t / sqrt((|s|² + 1e-12)(|t|² + 1e-12))` as
/// PyTorch's `CosineEmbeddingLoss` computes it. The teacher's side is a constant.
pub fn hidden_cosine(student: Tensor<3>, teacher: Tensor<3>, mask: Tensor<2>) -> Tensor<1> {
    const EPS: f64 = 1e-12;
    let teacher = teacher.detach();
    let dot = (student.clone() * teacher.clone()).sum_dim(2);
    let ss = student.powi_scalar(2).sum_dim(2).add_scalar(EPS);
    let tt = teacher.powi_scalar(2).sum_dim(2).add_scalar(EPS);
    let cos = dot / (ss * tt).sqrt();
    let [batch, length, _] = cos.dims();
    let per_token: Tensor<2> = cos.reshape([batch, length]).neg().add_scalar(1.0);
    let kept = mask.clone().sum();
    (per_token * mask).sum() / kept
}

/// Number of rows whose argmax equals the label.
pub fn correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let predicted: Tensor<1, Int> = logits.argmax(1).flatten(0, 1);
    predicted.equal(labels).int().sum().into_scalar::<i64>() as usize
}
