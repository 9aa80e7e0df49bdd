//! A digest of a model's weights: equal digests mean bit-identical weights.

use super::Net;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use sha2::{Digest as _, Sha256};

/// SHA-256 of every parameter's `f32` bits, in module order: equal digests mean bit-identical
/// weights, whatever the file encoding.
pub fn weights_digest(model: &Net) -> String {
    struct Digest(Sha256);
    impl ModuleVisitor for Digest {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data();
            for v in data.iter::<f32>() {
                self.0.update(v.to_bits().to_le_bytes());
            }
        }
    }
    let mut d = Digest(Sha256::new());
    model.visit(&mut d);
    hex::encode(d.0.finalize())
}
