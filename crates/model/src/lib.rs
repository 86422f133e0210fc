//! The lab's model: a GPT-style decoder-only transformer, written to be read top to bottom
//! like nanoGPT's model.py. Config in, `Module` out, `forward` from tokens to logits.
//! It knows nothing of files, schedules or tasks.

use burn::module::Param;
use burn::nn::{
    Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::{gelu, relu, softmax};
use elab_job::{Activation, Init, ModelSpec};

/// Everything needed to build a [`Gpt`]: the job's model section plus the task's vocabulary
/// and context length.
#[derive(Config, Debug)]
pub struct GptConfig {
    pub vocab_size: usize,
    pub n_ctx: usize,
    pub n_layer: usize,
    pub d_model: usize,
    pub n_head: usize,
    pub d_mlp: usize,
    pub gelu: bool,
    pub layer_norm: bool,
    pub tied_embeddings: bool,
    pub attn_bias: bool,
    pub init: Init,
    pub init_scale: f64,
}

impl GptConfig {
    pub fn from_spec(m: &ModelSpec, vocab_size: usize, n_ctx: usize) -> Self {
        Self {
            vocab_size,
            n_ctx,
            n_layer: m.n_layer,
            d_model: m.d_model,
            n_head: m.n_head,
            d_mlp: m.d_mlp,
            gelu: m.activation == Activation::Gelu,
            layer_norm: m.layer_norm,
            tied_embeddings: m.tied_embeddings,
            attn_bias: m.attn_bias,
            init: m.init,
            init_scale: m.init_scale,
        }
    }

    pub fn init(&self, device: &Device) -> Gpt {
        let (d, scale) = (self.d_model, self.init_scale);
        let normal = |std: f64| Initializer::Normal {
            mean: 0.0,
            std: scale * std,
        };
        // A linear layer: burn's default (uniform, bound 1/sqrt(fan_in), as PyTorch), or
        // Nanda et al.'s N(0, 1/d_model) with zero biases; `std` overrides the matrix's.
        let linear = |d_in, d_out, bias: bool, std: Option<f64>| {
            let config = LinearConfig::new(d_in, d_out).with_bias(bias);
            let mut layer = match self.init {
                // burn's default initializer, scaled.
                Init::Gpt2 => config
                    .with_initializer(Initializer::KaimingUniform {
                        gain: scale / 3f64.sqrt(),
                        fan_out_only: false,
                    })
                    .init(device),
                Init::Nanda => {
                    let std = std.unwrap_or(1.0 / (d as f64).sqrt());
                    config.with_initializer(normal(std)).init(device)
                }
            };
            if self.init == Init::Nanda {
                layer.bias = bias.then(|| Param::from_tensor(Tensor::zeros([d_out], device)));
            }
            layer
        };
        let norm = || {
            self.layer_norm
                .then(|| LayerNormConfig::new(d).init(device))
        };
        let blocks = (0..self.n_layer)
            .map(|_| Block {
                ln_1: norm(),
                attn: CausalSelfAttention {
                    c_attn: linear(d, 3 * d, self.attn_bias, None),
                    c_proj: linear(d, d, self.attn_bias, None),
                    n_head: self.n_head,
                },
                ln_2: norm(),
                mlp: Mlp {
                    c_fc: linear(d, self.d_mlp, true, None),
                    c_proj: linear(self.d_mlp, d, true, None),
                    gelu: self.gelu,
                },
            })
            .collect();
        // Embeddings start small (std 0.02, as GPT-2) rather than burn's default N(0, 1);
        // Nanda et al.'s are N(0, 1/d_model).
        let embedding_std = match self.init {
            Init::Gpt2 => 0.02,
            Init::Nanda => 1.0 / (d as f64).sqrt(),
        };
        let embedding = |n| {
            EmbeddingConfig::new(n, d)
                .with_initializer(normal(embedding_std))
                .init(device)
        };
        let unembedding_std = 1.0 / (self.vocab_size as f64).sqrt();
        Gpt {
            wte: embedding(self.vocab_size),
            wpe: embedding(self.n_ctx),
            blocks,
            ln_f: norm(),
            lm_head: (!self.tied_embeddings)
                .then(|| linear(d, self.vocab_size, false, Some(unembedding_std))),
        }
    }
}

#[derive(Module, Debug)]
pub struct CausalSelfAttention {
    /// Query, key and value projections for all heads, in one matrix.
    c_attn: Linear,
    c_proj: Linear,
    n_head: usize,
}

impl CausalSelfAttention {
    /// Attention for the queries at positions `first..` of `x` `[batch, time, d]`, each over
    /// the positions up to itself (`future` is the `[time, time]` mask, true above the diagonal).
    pub fn forward(&self, x: Tensor<3>, first: usize, future: Tensor<2, Bool>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let (h, hd, tq) = (self.n_head, d / self.n_head, t - first);
        let heads = |x: Tensor<3>, t| x.reshape([b, t, h, hd]).swap_dims(1, 2);
        let mut qkv = linear(&self.c_attn, x).chunk(3, 2);
        let v = heads(qkv.pop().unwrap(), t);
        let k = heads(qkv.pop().unwrap(), t);
        let q = heads(qkv.pop().unwrap().narrow(1, first, tq), tq);
        let att = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
        let future = future
            .narrow(0, first, tq)
            .unsqueeze::<4>()
            .expand([b, h, tq, t]);
        let att = softmax(att.mask_fill(future, -1e9), 3);
        let y = att.matmul(v).swap_dims(1, 2).reshape([b, tq, d]);
        linear(&self.c_proj, y)
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    gelu: bool,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = linear(&self.c_fc, x);
        let h = if self.gelu { gelu(h) } else { relu(h) };
        linear(&self.c_proj, h)
    }
}

/// `layer` applied to `[batch, time, d]` as one `[batch * time, d]` matmul. burn's `Linear`
/// keeps a 3-D input as `batch` separate small matmuls unless `time` is a multiple of its row
/// tile (a GPU heuristic): on the CPU, with contexts of 4-12 tokens, that was most of a step.
fn linear(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, t, d] = x.dims();
    let y = layer.forward(x.reshape([b * t, d]));
    let n = y.dims()[1];
    y.reshape([b, t, n])
}

/// A pre-LN block: x + attn(ln(x)), then x + mlp(ln(x)). Without LayerNorm, plain residuals.
#[derive(Module, Debug)]
pub struct Block {
    ln_1: Option<LayerNorm>,
    attn: CausalSelfAttention,
    ln_2: Option<LayerNorm>,
    mlp: Mlp,
}

fn norm(ln: &Option<LayerNorm>, x: Tensor<3>) -> Tensor<3> {
    match ln {
        Some(ln) => ln.forward(x),
        None => x,
    }
}

impl Block {
    /// The block's output at positions `first..` (earlier positions still serve as keys).
    pub fn forward(&self, x: Tensor<3>, first: usize, future: Tensor<2, Bool>) -> Tensor<3> {
        let t = x.dims()[1];
        let attn = self
            .attn
            .forward(norm(&self.ln_1, x.clone()), first, future);
        let x = x.narrow(1, first, t - first) + attn;
        x.clone() + self.mlp.forward(norm(&self.ln_2, x))
    }
}

#[derive(Module, Debug)]
pub struct Gpt {
    wte: Embedding,
    wpe: Embedding,
    blocks: Vec<Block>,
    ln_f: Option<LayerNorm>,
    /// `None` when the unembedding is tied to `wte`.
    lm_head: Option<Linear>,
}

impl Gpt {
    /// Token ids `[batch, time]` to the logits at positions `first..`: `[batch, time - first,
    /// vocab]`. Only the positions a loss or a decoder reads need logits (nanoGPT does the same
    /// when generating): the last block computes its queries, MLP and head there only.
    pub fn forward(&self, idx: Tensor<2, Int>, first: usize) -> Tensor<3> {
        let [b, t] = idx.dims();
        let device = idx.device();
        let pos = Tensor::<1, Int>::arange(0..t as i64, &device)
            .reshape([1, t])
            .expand([b, t]);
        let future = Tensor::<2, Bool>::tril_mask([t, t], 0, &device);
        let mut x = self.wte.forward(idx) + self.wpe.forward(pos);
        let last = self.blocks.len() - 1; // n_layer >= 1 (validated in the spec)
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, if i == last { first } else { 0 }, future.clone());
        }
        let x = norm(&self.ln_f, x);
        match &self.lm_head {
            Some(head) => linear(head, x),
            None => {
                let [b, t, d] = x.dims();
                let [vocab, _] = self.wte.weight.dims();
                let logits = x
                    .reshape([b * t, d])
                    .matmul(self.wte.weight.val().transpose());
                logits.reshape([b, t, vocab])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use elab_job::param_counts;

    fn spec(n_layer: usize, d: usize, h: usize, f: usize, ln: bool, tied: bool) -> ModelSpec {
        ModelSpec {
            n_layer,
            d_model: d,
            n_head: h,
            d_mlp: f,
            activation: Activation::Gelu,
            layer_norm: ln,
            tied_embeddings: tied,
            ..ModelSpec::default()
        }
    }

    #[test]
    fn parameter_count_matches_closed_form() {
        let device = Device::flex();
        for m in [
            spec(1, 128, 4, 512, false, false),
            spec(2, 64, 2, 256, true, true),
            spec(3, 48, 6, 100, true, false),
        ] {
            let model = GptConfig::from_spec(&m, 13, 11).init(&device);
            assert_eq!(
                model.num_params() as u64,
                param_counts(&m, 13, 11).total,
                "{m:?}"
            );
        }
    }

    /// Root mean square of a weight matrix.
    fn rms(t: Tensor<2>) -> f32 {
        t.powf_scalar(2.0).mean().sqrt().into_scalar::<f32>()
    }

    #[test]
    fn nanda_init_and_omnigrok_scale() {
        let device = Device::flex();
        device.seed(1);
        let mut m = spec(1, 128, 4, 512, false, false);
        m.init = Init::Nanda;
        m.attn_bias = false;
        let model = GptConfig::from_spec(&m, 114, 3).init(&device);
        assert_eq!(model.num_params() as u64, param_counts(&m, 114, 3).total);
        let inv_sqrt = |n: f32| 1.0 / n.sqrt();
        let close = |x: f32, want: f32| (x / want - 1.0).abs() < 0.05;
        assert!(close(rms(model.wte.weight.val()), inv_sqrt(128.0)));
        let block = &model.blocks[0];
        assert!(close(rms(block.mlp.c_fc.weight.val()), inv_sqrt(128.0)));
        assert!(close(
            rms(model.lm_head.as_ref().unwrap().weight.val()),
            inv_sqrt(114.0)
        ));
        assert!(block.attn.c_attn.bias.is_none());
        let bias = block.mlp.c_fc.bias.as_ref().unwrap().val();
        assert_eq!(bias.abs().sum().into_scalar::<f32>(), 0.0);

        // Omnigrok's alpha multiplies every initial weight.
        m.init_scale = 3.0;
        let scaled = GptConfig::from_spec(&m, 114, 3).init(&device);
        assert!(close(rms(scaled.wte.weight.val()), 3.0 * inv_sqrt(128.0)));
        let mut gpt2 = spec(1, 128, 4, 512, true, false);
        let base = rms(GptConfig::from_spec(&gpt2, 114, 3).init(&device).blocks[0]
            .mlp
            .c_fc
            .weight
            .val());
        gpt2.init_scale = 3.0;
        let tripled = rms(GptConfig::from_spec(&gpt2, 114, 3).init(&device).blocks[0]
            .mlp
            .c_fc
            .weight
            .val());
        assert!(close(tripled, 3.0 * base), "{base} -> {tripled}");
    }

    #[test]
    fn forward_shape_and_causality() {
        let device = Device::flex();
        device.seed(0);
        let model = GptConfig::from_spec(&spec(2, 32, 4, 64, true, false), 10, 6).init(&device);
        let a = Tensor::<2, Int>::from_data([[1, 2, 3, 4, 5, 6]], &device);
        let b = Tensor::<2, Int>::from_data([[1, 2, 3, 9, 9, 9]], &device);
        let (la, lb) = (model.forward(a.clone(), 0), model.forward(b, 0));
        assert_eq!(la.dims(), [1, 6, 10]);
        // The logits of a suffix of positions are those of the full forward.
        let tail = model.forward(a, 4);
        assert_eq!(tail.dims(), [1, 2, 10]);
        let close = |x: Tensor<3>, y: Tensor<3>| (x - y).abs().max().into_scalar::<f32>() < 1e-5;
        assert!(close(tail, la.clone().narrow(1, 4, 2)));
        // Changing tokens 3.. must not change the logits at positions 0..3.
        let first = |l: Tensor<3>| l.narrow(1, 0, 3).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(first(la.clone()), first(lb.clone()));
        assert_ne!(
            la.into_data().try_to_vec::<f32>().unwrap(),
            lb.into_data().try_to_vec::<f32>().unwrap()
        );
    }
}
