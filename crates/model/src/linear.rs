//! The linear layer: a product with each model's own weight, plus its bias.

use burn::module::Param;
use burn::prelude::*;

/// `x @ weight + bias` for every model: `[models, n, d_in]` to `[models, n, d_out]`, one
/// batched matmul whatever the batch and context (rows of all positions are one matrix).
#[derive(Module, Debug)]
pub struct Linear {
    /// `[models, d_in, d_out]`
    pub(crate) weight: Param<Tensor<3>>,
    /// `[models, 1, d_out]`
    pub(crate) bias: Option<Param<Tensor<3>>>,
}

impl Linear {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let y = x.matmul(self.weight.val());
        match &self.bias {
            Some(bias) => y + bias.val(),
            None => y,
        }
    }

    /// Outputs `start..start + len` only, from those columns of the weight.
    pub fn forward_outputs(&self, x: Tensor<3>, start: usize, len: usize) -> Tensor<3> {
        let y = x.matmul(self.weight.val().narrow(2, start, len));
        match &self.bias {
            Some(bias) => y + bias.val().narrow(2, start, len),
            None => y,
        }
    }
}
