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
        let mean = x.clone().mean_dim(2);
        return composite(x, mean, gamma, beta);
    }
    // On the CPU: the same arithmetic as two operations (flex.rs), bit for bit.
    let mean = <Dispatch as LayerNormBackend>::row_mean(x.clone().into_dispatch());
    let mean = Tensor::<3>::from_dispatch(mean);
    let y = <Dispatch as LayerNormBackend>::centred_layer_norm(
        x.into_dispatch(),
        mean.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
    );
    Tensor::from_dispatch(y)
}

/// LayerNorm composed of tensor ops, given the row means of `x`: what the GPU runs, and the
/// definition that the CPU's fused operation reproduces.
fn composite(x: Tensor<3>, mean: Tensor<3>, gamma: Tensor<3>, beta: Tensor<3>) -> Tensor<3> {
    // Centred once and scaled by a reciprocal: `var_mean_bias` would centre `x` a second
    // time, and a division by a per-row tensor costs the backward two more passes over
    // the whole activation than a product does (the reciprocal is one value per row).
    let centred = x - mean;
    let var = centred.clone().square().mean_dim(2);
    let inv_std = (var + 1e-5).sqrt().recip();
    centred * inv_std * gamma + beta
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::values;
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

    /// The fused CPU operation against the composite it replaces: the output and the gradients
    /// of the input, gain and shift, bit for bit. The input has a second consumer (as in the
    /// last block, where the residual takes the rows of the read positions), so that the order
    /// in which its two gradients add up is tested too.
    #[test]
    fn the_fused_cpu_layer_norm_is_the_composite_bit_for_bit() {
        let device = Device::flex().autodiff();
        device.seed(7);
        let (m, batch, t, d) = (2, 40, 5, 24); // 200 rows: several pieces of parallel work
        let n = batch * t;
        let random = |shape, dist| Tensor::<3>::random(shape, dist, &device);
        let x0 = random([m, n, d], Distribution::Normal(0.5, 2.0));
        let gamma0 = random([m, 1, d], Distribution::Uniform(0.5, 2.0));
        let beta0 = random([m, 1, d], Distribution::Uniform(-1.0, 1.0));
        let w = random([m, n, d], Distribution::Normal(0.0, 1.0));
        let w_rest = random([m, batch * (t - 2), d], Distribution::Normal(0.0, 1.0));
        let bits = |t: Tensor<3>| -> Vec<u32> { values(t).iter().map(|v| v.to_bits()).collect() };
        let run = |fused: bool| {
            let x = x0.clone().require_grad();
            let gamma = gamma0.clone().require_grad();
            let beta = beta0.clone().require_grad();
            let y = if fused {
                layer_norm(x.clone(), gamma.clone(), beta.clone())
            } else {
                composite(
                    x.clone(),
                    x.clone().mean_dim(2),
                    gamma.clone(),
                    beta.clone(),
                )
            };
            let rest = crate::positions_from(x.clone(), batch, 2);
            let loss = (y.clone() * w.clone()).sum() + (rest * w_rest.clone()).sum();
            let grads = loss.backward();
            let grad = |p: &Tensor<3>| bits(p.grad(&grads).expect("a gradient"));
            [bits(y), grad(&x), grad(&gamma), grad(&beta)]
        };
        let (fused, composed) = (run(true), run(false));
        for (what, (a, b)) in ["output", "d input", "d gamma", "d beta"]
            .iter()
            .zip(fused.iter().zip(&composed))
        {
            let differ = a.iter().zip(b).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "{what}: {differ} of {} values differ", a.len());
        }
    }
}
