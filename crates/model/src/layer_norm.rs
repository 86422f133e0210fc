//! LayerNorm over the last axis, with each model's own gain and shift.

use burn::module::Param;
use burn::prelude::*;

/// LayerNorm over the last axis (eps 1e-5, as PyTorch), with per-model gain and shift.
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// `[models, 1, d]`
    pub(crate) gamma: Param<Tensor<3>>,
    pub(crate) beta: Param<Tensor<3>>,
}

impl LayerNorm {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        // Centred once and scaled by a reciprocal: `var_mean_bias` would centre `x` a second
        // time, and a division by a per-row tensor costs the backward two more passes over
        // the whole activation than a product does (the reciprocal is one value per row).
        let centred = x.clone() - x.mean_dim(2);
        let var = centred.clone().square().mean_dim(2);
        let inv_std = (var + 1e-5).sqrt().recip();
        centred * inv_std * self.gamma.val() + self.beta.val()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

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
}
