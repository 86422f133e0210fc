//! The linear layer: a product with each model's own weight, plus its bias (and the MLP's
//! ReLU after it).

mod flex;

use burn::backend::Dispatch;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::activation::relu;
use flex::BiasBackend;

use crate::cpu::on_flex;

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
            Some(bias) => add_bias(y, bias.val(), false),
            None => y,
        }
    }

    /// `relu(forward(x))`.
    pub fn forward_relu(&self, x: Tensor<3>) -> Tensor<3> {
        let y = x.matmul(self.weight.val());
        match &self.bias {
            Some(bias) => add_bias(y, bias.val(), true),
            None => relu(y),
        }
    }

    /// Outputs `start..start + len` only, from those columns of the weight.
    pub fn forward_outputs(&self, x: Tensor<3>, start: usize, len: usize) -> Tensor<3> {
        let y = x.matmul(self.weight.val().narrow(2, start, len));
        match &self.bias {
            Some(bias) => add_bias(y, bias.val().narrow(2, start, len), false),
            None => y,
        }
    }
}

/// `y + bias` `[models, rows, d]` + `[models, 1, d]`, then ReLU where `relu` is set.
fn add_bias(y: Tensor<3>, bias: Tensor<3>, relu: bool) -> Tensor<3> {
    if !on_flex(&y) {
        return composite(y, bias, relu);
    }
    // On the CPU: one operation, in place (flex.rs).
    let z = <Dispatch as BiasBackend>::add_bias(y.into_dispatch(), bias.into_dispatch(), relu);
    Tensor::from_dispatch(z)
}

/// The bias and ReLU as tensor ops: what the GPU runs, and the definition that the CPU's
/// operation is tested against.
fn composite(y: Tensor<3>, bias: Tensor<3>, with_relu: bool) -> Tensor<3> {
    let z = y + bias;
    if with_relu { relu(z) } else { z }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::values;
    use burn::tensor::Distribution;

    /// The CPU operation against the composite it replaces, with and without the ReLU: the
    /// output and the gradients of `y` and the bias are the same bits. Two models, rows that
    /// are no whole number of pieces, columns that are no whole number of bands, and `y` read
    /// a second time (so the operation must not write over it).
    #[test]
    fn the_cpu_bias_is_the_composite_bit_for_bit() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let (m, n, d) = (2, 77, 36);
        let random = |shape, dist| Tensor::<3>::random(shape, dist, &device);
        let y0 = random([m, n, d], Distribution::Normal(0.0, 1.0));
        let bias0 = random([m, 1, d], Distribution::Uniform(-0.5, 0.5));
        let w = random([m, n, d], Distribution::Normal(0.0, 1.0));
        let w_y = random([m, n, d], Distribution::Normal(0.0, 1.0));
        for relu in [false, true] {
            let run = |fused: bool| {
                let y = y0.clone().require_grad();
                let bias = bias0.clone().require_grad();
                let z = if fused {
                    add_bias(y.clone(), bias.clone(), relu)
                } else {
                    composite(y.clone(), bias.clone(), relu)
                };
                let loss = (z.clone() * w.clone()).sum() + (y.clone() * w_y.clone()).sum();
                let grads = loss.backward();
                let grad = |p: &Tensor<3>| values(p.grad(&grads).expect("a gradient"));
                [values(z), grad(&y), grad(&bias), values(y)]
            };
            let (ours, theirs) = (run(true), run(false));
            for (what, (a, b)) in ["output", "d y", "d bias", "y"]
                .iter()
                .zip(ours.iter().zip(&theirs))
            {
                assert_eq!(a.len(), b.len(), "{what}");
                let differ = a
                    .iter()
                    .zip(b)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
                assert_eq!(
                    differ,
                    0,
                    "relu {relu}, {what}: {differ} of {} differ",
                    a.len()
                );
            }
            if relu {
                let zeros = ours[0].iter().filter(|&&v| v == 0.0).count();
                assert!(
                    zeros > 0 && zeros < ours[0].len(),
                    "the ReLU both kept and cut"
                );
            }
        }
    }
}
