//! LayerNorm over the last axis, with each model's own gain and shift.

mod flex;

use burn::backend::Dispatch;
use burn::module::Param;
use burn::prelude::*;
use flex::LayerNormBackend;

use crate::cpu::on_flex;

/// LayerNorm over the last axis (eps 1e-5, as PyTorch), with per-model gain and shift.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// `[models, 1, d]`
    pub(crate) gamma: Param<Tensor<3>>,
    pub(crate) beta: Param<Tensor<3>>,
}

impl LayerNorm {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        layer_norm(x, self.gamma.val(), self.beta.val())
    }
}

fn layer_norm(x: Tensor<3>, gamma: Tensor<3>, beta: Tensor<3>) -> Tensor<3> {
    if !on_flex(&x) {
        return composite(x, gamma, beta);
    }
    // On the CPU: one operation (flex.rs).
    let y = <Dispatch as LayerNormBackend>::layer_norm(
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
    );
    Tensor::from_dispatch(y)
}

/// LayerNorm composed of tensor ops: what the GPU runs, and the definition that the CPU's
/// operation is tested against.
fn composite(x: Tensor<3>, gamma: Tensor<3>, beta: Tensor<3>) -> Tensor<3> {
    // Centred once and scaled by a reciprocal: `var_mean_bias` would centre `x` a second
    // time, and a division by a per-row tensor costs the backward two more passes over
    // the whole activation than a product does (the reciprocal is one value per row).
    let centred = x.clone() - x.mean_dim(2);
    let var = centred.clone().square().mean_dim(2);
    let inv_std = (var + 1e-5).sqrt().recip();
    centred * inv_std * gamma + beta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{assert_close, values};
    use burn::tensor::Distribution;

    #[test]
    fn layer_norm_matches_its_definition_per_model() {
        // (x - mean) / sqrt(var + 1e-5) * gamma + beta over the last axis, with the biased
        // variance and each model's own gain and shift, against the same sums in f64.
        let device = Device::flex();
        device.seed(5);
        let (m, n, d) = (2, 3, 8);
        let x = Tensor::<3>::random([m, n, d], Distribution::Normal(1.5, 2.0), &device);
        let gamma = Tensor::<3>::random([m, 1, d], Distribution::Uniform(0.5, 2.0), &device);
        let beta = Tensor::<3>::random([m, 1, d], Distribution::Uniform(-1.0, 1.0), &device);
        let ln = LayerNorm {
            gamma: Param::from_tensor(gamma.clone()),
            beta: Param::from_tensor(beta.clone()),
        };
        let y = values(ln.forward(x.clone()).reshape([m * n * d]));
        let (x, gamma, beta) = (
            values(x.reshape([m * n * d])),
            values(gamma.reshape([m * d])),
            values(beta.reshape([m * d])),
        );
        for (row, (xs, ys)) in x.chunks(d).zip(y.chunks(d)).enumerate() {
            let model = row / n;
            let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
            let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
            for j in 0..d {
                let (g, b) = (gamma[model * d + j] as f64, beta[model * d + j] as f64);
                let want = (xs[j] as f64 - mean) / (var + 1e-5).sqrt() * g + b;
                assert!(
                    (ys[j] as f64 - want).abs() < 1e-5,
                    "row {row}, {j}: {} vs {want}",
                    ys[j]
                );
            }
        }
    }

    /// The CPU operation against the composite it replaces: the output and the gradients of
    /// the input, gain and shift agree to float32 rounding (the sums run in another order). The
    /// input has a second consumer (as in the last block, where the residual takes the rows of
    /// the read positions), and rows far from zero mean, where a careless variance cancels.
    #[test]
    fn the_cpu_layer_norm_matches_the_composite() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let (m, batch, t, d) = (2, 40, 5, 36); // 200 rows: several pieces of parallel work
        let n = batch * t;
        let random = |shape, dist| Tensor::<3>::random(shape, dist, &device);
        let x0 = random([m, n, d], Distribution::Normal(30.0, 2.0));
        let gamma0 = random([m, 1, d], Distribution::Uniform(0.5, 2.0));
        let beta0 = random([m, 1, d], Distribution::Uniform(-1.0, 1.0));
        let w = random([m, n, d], Distribution::Normal(0.0, 1.0));
        let w_rest = random([m, batch * (t - 2), d], Distribution::Normal(0.0, 1.0));
        let run = |fused: bool| {
            let x = x0.clone().require_grad();
            let gamma = gamma0.clone().require_grad();
            let beta = beta0.clone().require_grad();
            let (a, g, b) = (x.clone(), gamma.clone(), beta.clone());
            let y = if fused {
                layer_norm(a, g, b)
            } else {
                composite(a, g, b)
            };
            let rest = crate::positions_from(x.clone(), batch, 2);
            let loss = (y.clone() * w.clone()).sum() + (rest * w_rest.clone()).sum();
            let grads = loss.backward();
            let grad = |p: &Tensor<3>| values(p.grad(&grads).expect("a gradient"));
            [values(y), grad(&x), grad(&gamma), grad(&beta)]
        };
        let names = ["output", "d input", "d gamma", "d beta"];
        assert_close(&names, &run(true), &run(false));
    }
}
