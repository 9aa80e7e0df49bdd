//! The optimizer a stage trains with (Adam, AdamW, SGD with momentum), from its training block.

use crate::manifest::{DEFAULT_ADAMW_DECAY, Optimizer};
use crate::plan::Stage;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, AdamWConfig, ModuleOptimizer, SgdConfig};

/// The optimizer of `stage`, with PyTorch's defaults where the manifest is silent.
pub(super) fn optimizer(stage: &Stage) -> ModuleOptimizer {
    let t = &stage.training;
    let decay = t.weight_decay.map(|penalty| WeightDecayConfig {
        penalty: penalty as f32,
    });
    let [beta_1, beta_2] = t.betas.map(|b| b as f32);
    match t.optimizer {
        Optimizer::Adam => AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(t.epsilon as f32)
            .with_weight_decay(decay)
            .init(),
        Optimizer::Adamw => AdamWConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(t.epsilon as f32)
            .with_weight_decay(t.weight_decay.unwrap_or(DEFAULT_ADAMW_DECAY) as f32)
            .init(),
        Optimizer::Sgd => SgdConfig::new()
            .with_weight_decay(decay)
            .with_momentum(t.momentum.map(|momentum| MomentumConfig {
                momentum,
                dampening: t.dampening,
                nesterov: t.nesterov,
            }))
            .init(),
    }
}
