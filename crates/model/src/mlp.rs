//! The multilayer perceptron of Michaud et al. 2023 ("The quantization model of neural
//! scaling"), whose sparse-parity results come from an MLP on the one-hot input, not from a
//! transformer.
//!
//! Its input is the one-hot code of every (position, token) pair the prediction may read, so
//! the first layer is a table with one row per pair, and a position's pre-activation is the
//! sum of the rows of the tokens up to it: a running sum over time. The logits at the last
//! position read the whole context, as the paper's MLP reads all its input bits. Then ReLU (or
//! GELU), `n_layer - 1` more hidden layers of `d_model` units, and a linear head. Like [`Gpt`],
//! every parameter has a leading model axis, so a pack trains as one.
//!
//! [`Gpt`]: crate::Gpt

use burn::prelude::*;
use burn::tensor::activation::{gelu, relu};
use elab_job::{Activation, ModelSpec};

use crate::{LanguageModel, Linear, Weights};

#[derive(Module, Debug)]
pub struct MlpNet {
    /// The first layer: weight `[models, n_ctx * vocab, d]`, one row per (position, token).
    input: Linear,
    hidden: Vec<Linear>,
    head: Linear,
    /// Rows of the first layer per position.
    vocab: usize,
    gelu: bool,
}

impl MlpNet {
    fn activation(&self, x: Tensor<3>) -> Tensor<3> {
        if self.gelu { gelu(x) } else { relu(x) }
    }
}

impl LanguageModel for MlpNet {
    fn init(spec: &ModelSpec, vocab_size: usize, n_ctx: usize, device: &Device) -> Self {
        let d = spec.d_model;
        let w = Weights {
            init: spec.init,
            scale: spec.init_scale,
            d_model: d,
            device,
        };
        // A one-hot input of n_ctx positions sums n_ctx rows: that is the fan-in.
        let input = w.linear(n_ctx * vocab_size, n_ctx, d, true, None);
        let hidden = (1..spec.n_layer)
            .map(|_| w.linear(d, d, d, true, None))
            .collect();
        MlpNet {
            input,
            hidden,
            head: w.linear(d, d, vocab_size, true, None),
            vocab: vocab_size,
            gelu: spec.activation == Activation::Gelu,
        }
    }

    fn forward(&self, idx: Tensor<3, Int>, first: usize) -> Tensor<4> {
        let [m, b, t] = idx.dims();
        let device = idx.device();
        let table = self.input.weight.val();
        let [_, rows, d] = table.dims();
        // Model k's row for token v at position p: k * rows + p * vocab + v, one gather.
        let models =
            Tensor::<1, Int>::arange(0..m as i64, &device).reshape([m, 1, 1]) * rows as i64;
        let positions =
            Tensor::<1, Int>::arange(0..t as i64, &device).reshape([1, 1, t]) * self.vocab as i64;
        let picked = (idx + models + positions).reshape([m * b * t]);
        let x = table
            .reshape([m * rows, d])
            .select(0, picked)
            .reshape([m * b, t, d]);
        // Position p reads the tokens 0..=p: the running sum of their rows. Only positions
        // `first..` are wanted (usually the last alone), so the rows up to `first` are summed
        // at once and the running sum covers the rest.
        let upto_first = x.clone().narrow(1, 0, first + 1).sum_dim(1);
        let x = if first + 1 == t {
            upto_first
        } else {
            Tensor::cat(vec![upto_first, x.narrow(1, first + 1, t - first - 1)], 1).cumsum(1)
        };
        let mut x = x.reshape([m, b * (t - first), d]);
        if let Some(bias) = &self.input.bias {
            x = x + bias.val();
        }
        let mut x = self.activation(x);
        for layer in &self.hidden {
            x = if self.gelu {
                gelu(layer.forward(x))
            } else {
                layer.forward_relu(x)
            };
        }
        self.head.forward(x).reshape([m, b, t - first, self.vocab])
    }

    fn models(&self) -> usize {
        self.input.weight.dims()[0]
    }

    fn token_embedding(&self) -> Option<Tensor<3>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack;
    use crate::tests::values;
    use elab_job::{Arch, param_counts};

    fn spec(n_layer: usize, d: usize) -> ModelSpec {
        ModelSpec {
            arch: Arch::Mlp,
            n_layer,
            d_model: d,
            n_head: 1,
            ..ModelSpec::default()
        }
    }

    #[test]
    fn parameter_count_matches_closed_form() {
        let device = Device::flex();
        for (l, d) in [(1, 16), (3, 8)] {
            let m = spec(l, d);
            let model = MlpNet::init(&m, 5, 7, &device);
            assert_eq!(model.num_params() as u64, param_counts(&m, 5, 7).total);
        }
    }

    /// The running sum over positions is the paper's MLP: at position p, the first layer applied
    /// to the one-hot code of tokens 0..=p (and zeros after), then ReLU and the head.
    #[test]
    fn forward_is_an_mlp_on_the_one_hot_prefix() {
        let device = Device::flex();
        device.seed(3);
        let (vocab, t, d) = (3, 5, 8);
        let model = MlpNet::init(&spec(1, d), vocab, t, &device);
        let tokens = [2i64, 0, 1, 1, 0];
        let idx = Tensor::<1, Int>::from_data(tokens.as_slice(), &device).reshape([1, 1, t]);
        let logits = model.forward(idx, 0);
        assert_eq!(logits.dims(), [1, 1, t, vocab]);
        for p in 0..t {
            let mut one_hot = vec![0f32; t * vocab];
            for (q, &tok) in tokens.iter().enumerate().take(p + 1) {
                one_hot[q * vocab + tok as usize] = 1.0;
            }
            let x = Tensor::<1>::from_data(one_hot.as_slice(), &device).reshape([1, 1, t * vocab]);
            let want = model.head.forward(relu(model.input.forward(x)));
            let got = logits.clone().narrow(2, p, 1).reshape([1, 1, vocab]);
            let gap = (got - want).abs().max().into_scalar::<f32>();
            assert!(gap < 1e-5, "position {p}: {gap}");
        }
        // Asking for the later positions only (the last, or the last two) changes nothing.
        for first in [t - 2, t - 1] {
            let idx = Tensor::<1, Int>::from_data(tokens.as_slice(), &device).reshape([1, 1, t]);
            let tail = values(model.forward(idx, first));
            let want = values(logits.clone().narrow(2, first, t - first));
            let gap = tail
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(gap < 1e-5, "first {first}: {gap}");
        }
    }

    #[test]
    fn a_model_computes_the_same_in_a_pack_as_alone() {
        let device = Device::flex();
        let m = spec(2, 8);
        let models: Vec<MlpNet> = (0..3)
            .map(|seed| {
                device.seed(seed);
                MlpNet::init(&m, 4, 6, &device)
            })
            .collect();
        let pack = pack::stack(models.clone());
        assert_eq!(pack.models(), 3);
        let idx = |k: i64| {
            let rows: Vec<i64> = (0..2 * 6).map(|i| (i * 3 + k) % 4).collect();
            Tensor::<1, Int>::from_data(rows.as_slice(), &device).reshape([1, 2, 6])
        };
        let packed = pack.forward(Tensor::cat((0..3).map(idx).collect(), 0), 4);
        for (k, model) in models.iter().enumerate() {
            let alone = values(model.forward(idx(k as i64), 4));
            assert_eq!(values(packed.clone().narrow(0, k, 1)), alone, "model {k}");
        }
    }
}
