//! The lab's model: a GPT-style decoder-only transformer, written to be read top to bottom
//! like nanoGPT's model.py. Config in, `Module` out, `forward` from tokens to logits.
//! It knows nothing of files, schedules or tasks. [`MlpNet`] (`arch = "mlp"`) is the one
//! other network, the multilayer perceptron of the sparse-parity literature; training sees
//! either through [`LanguageModel`].
//!
//! Every parameter has a leading *model axis*: a `Gpt` is a pack of M models of one shape
//! that train side by side (stacked weights, batched matmuls), each on its own batch. A single
//! model is the pack of one. Nothing mixes the models: every op is per model, so a model
//! computes the same numbers in a pack as alone. [`pack`] stacks models into a pack and takes
//! models out of one.

mod attention;
mod cpu;
mod layer_norm;
mod linear;
mod mlp;
pub mod pack;

pub use attention::CausalSelfAttention;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use mlp::MlpNet;

use burn::module::{ModuleDisplay, Param};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::gelu;
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

    /// One model (a pack of one), drawn from `device`'s random generator in a fixed order.
    pub fn init(&self, device: &Device) -> Gpt {
        let d = self.d_model;
        let w = Weights {
            init: self.init,
            scale: self.init_scale,
            d_model: d,
            device,
        };
        let linear = |d_in, d_out, bias, std| w.linear(d_in, d_in, d_out, bias, std);
        let norm = || {
            self.layer_norm.then(|| LayerNorm {
                gamma: w.ones([1, 1, d]),
                beta: w.zeros([1, 1, d]),
            })
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
        // Embeddings start small (std 0.02, as GPT-2) rather than N(0, 1);
        // Nanda et al.'s are N(0, 1/d_model).
        let embedding_std = match self.init {
            Init::Gpt2 => 0.02,
            Init::Nanda => 1.0 / (d as f64).sqrt(),
        };
        let unembedding_std = 1.0 / (self.vocab_size as f64).sqrt();
        Gpt {
            wte: w.normal([1, self.vocab_size, d], embedding_std),
            wpe: w.normal([1, self.n_ctx, d], embedding_std),
            blocks,
            ln_f: norm(),
            lm_head: (!self.tied_embeddings)
                .then(|| linear(d, self.vocab_size, false, Some(unembedding_std))),
        }
    }
}

/// Draws a model's initial parameters, each with a leading model axis of 1 (a pack of one).
struct Weights<'a> {
    init: Init,
    /// Multiplies every initial weight (Omnigrok's alpha).
    scale: f64,
    d_model: usize,
    device: &'a Device,
}

impl Weights<'_> {
    fn param(&self, shape: [usize; 3], dist: Distribution) -> Param<Tensor<3>> {
        Param::from_tensor(Tensor::random(shape, dist, self.device))
    }

    fn normal(&self, shape: [usize; 3], std: f64) -> Param<Tensor<3>> {
        self.param(shape, Distribution::Normal(0.0, self.scale * std))
    }

    fn zeros(&self, shape: [usize; 3]) -> Param<Tensor<3>> {
        Param::from_tensor(Tensor::zeros(shape, self.device))
    }

    fn ones(&self, shape: [usize; 3]) -> Param<Tensor<3>> {
        Param::from_tensor(Tensor::ones(shape, self.device))
    }

    /// A linear layer of `d_in` rows whose output sums `fan_in` of them (all of them, but in a
    /// one-hot table): PyTorch's default (weight and bias uniform, bound 1/sqrt(fan_in)), or
    /// Nanda et al.'s N(0, 1/d_model) with zero biases; `std` overrides the matrix's.
    fn linear(
        &self,
        d_in: usize,
        fan_in: usize,
        d_out: usize,
        bias: bool,
        std: Option<f64>,
    ) -> Linear {
        let bound = self.scale / (fan_in as f64).sqrt();
        let uniform = || Distribution::Uniform(-bound, bound);
        match self.init {
            Init::Gpt2 => Linear {
                weight: self.param([1, d_in, d_out], uniform()),
                bias: bias.then(|| self.param([1, 1, d_out], uniform())),
            },
            Init::Nanda => Linear {
                weight: self.normal(
                    [1, d_in, d_out],
                    std.unwrap_or(1.0 / (self.d_model as f64).sqrt()),
                ),
                bias: bias.then(|| self.zeros([1, 1, d_out])),
            },
        }
    }
}

fn norm(ln: &Option<LayerNorm>, x: Tensor<3>) -> Tensor<3> {
    match ln {
        Some(ln) => ln.forward(x),
        None => x,
    }
}

/// The rows of positions `first..` of `x` `[models, batch * time, d]`.
pub(crate) fn positions_from(x: Tensor<3>, batch: usize, first: usize) -> Tensor<3> {
    // All positions: `x` itself. burn's autodiff does not see that a full-range slice is the
    // identity, and its backward would zero-fill a tensor of `x`'s size to copy the gradient in.
    if first == 0 {
        return x;
    }
    let [m, n, d] = x.dims();
    let t = n / batch;
    x.reshape([m * batch, t, d])
        .narrow(1, first, t - first)
        .reshape([m, batch * (t - first), d])
}

#[derive(Module, Debug)]
pub struct Mlp {
    c_fc: Linear,
    c_proj: Linear,
    gelu: bool,
}

impl Mlp {
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = if self.gelu {
            gelu(self.c_fc.forward(x))
        } else {
            self.c_fc.forward_relu(x)
        };
        self.c_proj.forward(h)
    }
}

/// A pre-LN block: x + attn(ln(x)), then x + mlp(ln(x)). Without LayerNorm, plain residuals.
#[derive(Module, Debug)]
pub struct Block {
    ln_1: Option<LayerNorm>,
    attn: CausalSelfAttention,
    ln_2: Option<LayerNorm>,
    mlp: Mlp,
}

impl Block {
    /// The block's output at positions `first..` (earlier positions still serve as keys).
    pub fn forward(&self, x: Tensor<3>, batch: usize, first: usize) -> Tensor<3> {
        let attn = self.attn.forward(norm(&self.ln_1, x.clone()), batch, first);
        let x = positions_from(x, batch, first) + attn;
        x.clone() + self.mlp.forward(norm(&self.ln_2, x))
    }
}

#[derive(Module, Debug)]
pub struct Gpt {
    /// Token embeddings `[models, vocab, d]`.
    wte: Param<Tensor<3>>,
    /// Position embeddings `[models, n_ctx, d]`.
    wpe: Param<Tensor<3>>,
    blocks: Vec<Block>,
    ln_f: Option<LayerNorm>,
    /// `None` when the unembedding is tied to `wte`.
    lm_head: Option<Linear>,
}

/// What training needs of a network: one model built from a job's model section, and the
/// forward pass of a pack of them.
pub trait LanguageModel: Module + ModuleDisplay {
    /// One model (a pack of one) for `vocab_size` tokens and `n_ctx` positions, drawn from
    /// `device`'s random generator.
    fn init(spec: &ModelSpec, vocab_size: usize, n_ctx: usize, device: &Device) -> Self;

    /// Token ids `[models, batch, time]` (each model its own batch) to the logits at positions
    /// `first..`: `[models, batch, time - first, vocab]`. Only the positions a loss or a
    /// decoder reads need logits (nanoGPT does the same when generating).
    fn forward(&self, idx: Tensor<3, Int>, first: usize) -> Tensor<4>;

    /// Models in the pack.
    fn models(&self) -> usize;

    /// The token embeddings `[models, vocab, d]`, if the network has them.
    fn token_embedding(&self) -> Option<Tensor<3>>;

    /// Each attention layer's pattern `[models, batch, heads, time, time]` (query, key) on the
    /// token ids `[models, batch, time]`; none for a network without attention.
    fn attention_patterns(&self, _idx: Tensor<3, Int>) -> Vec<Tensor<5>> {
        Vec::new()
    }
}

impl Gpt {
    /// Token plus position embeddings of `idx` `[models, batch, time]`: `[models, batch * time, d]`.
    fn embed(&self, idx: Tensor<3, Int>) -> Tensor<3> {
        let [m, b, t] = idx.dims();
        let device = idx.device();
        let [_, vocab, d] = self.wte.dims();
        // Each model looks up its own table: one gather in the stacked `[models * vocab, d]`.
        let offsets =
            Tensor::<1, Int>::arange(0..m as i64, &device).reshape([m, 1, 1]) * vocab as i64;
        let rows = (idx + offsets).reshape([m * b * t]);
        let tok = self.wte.val().reshape([m * vocab, d]).select(0, rows);
        let pos = self.wpe.val().narrow(1, 0, t).unsqueeze_dim::<4>(1);
        (tok.reshape([m, b, t, d]) + pos).reshape([m, b * t, d])
    }
}

impl LanguageModel for Gpt {
    fn init(spec: &ModelSpec, vocab_size: usize, n_ctx: usize, device: &Device) -> Self {
        GptConfig::from_spec(spec, vocab_size, n_ctx).init(device)
    }

    /// The last block computes its queries, MLP and head at positions `first..` only.
    fn forward(&self, idx: Tensor<3, Int>, first: usize) -> Tensor<4> {
        let [m, b, t] = idx.dims();
        let vocab = self.wte.dims()[1];
        let mut x = self.embed(idx);
        let last = self.blocks.len() - 1; // n_layer >= 1 (validated in the spec)
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x, b, if i == last { first } else { 0 });
        }
        let x = norm(&self.ln_f, x);
        let logits = match &self.lm_head {
            Some(head) => head.forward(x),
            None => x.matmul(self.wte.val().swap_dims(1, 2)),
        };
        logits.reshape([m, b, t - first, vocab])
    }

    fn models(&self) -> usize {
        self.wte.dims()[0]
    }

    fn token_embedding(&self) -> Option<Tensor<3>> {
        Some(self.wte.val())
    }

    fn attention_patterns(&self, idx: Tensor<3, Int>) -> Vec<Tensor<5>> {
        let [m, b, t] = idx.dims();
        let mut x = self.embed(idx);
        let mut patterns = Vec::new();
        for block in &self.blocks {
            let pattern = block.attn.pattern(norm(&block.ln_1, x.clone()), b);
            let h = pattern.dims()[1];
            patterns.push(pattern.reshape([m, b, h, t, t]));
            x = block.forward(x, b, 0);
        }
        patterns
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

    /// Root mean square of a weight tensor.
    fn rms(t: Tensor<3>) -> f32 {
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
        assert!(close(rms(model.wte.val()), inv_sqrt(128.0)));
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
        assert!(close(rms(scaled.wte.val()), 3.0 * inv_sqrt(128.0)));
        let mut gpt2 = spec(1, 128, 4, 512, true, false);
        let c_fc = |m: &ModelSpec| {
            let model = GptConfig::from_spec(m, 114, 3).init(&device);
            rms(model.blocks[0].mlp.c_fc.weight.val())
        };
        let base = c_fc(&gpt2);
        // PyTorch's default: uniform with bound 1/sqrt(fan_in), rms bound/sqrt(3).
        assert!(close(base, inv_sqrt(3.0 * 128.0)), "{base}");
        gpt2.init_scale = 3.0;
        let tripled = c_fc(&gpt2);
        assert!(close(tripled, 3.0 * base), "{base} -> {tripled}");
    }

    /// A tensor's elements, for the crate's tests.
    pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Panics unless each of the lab's CPU operation's tensors (`ours`) is within 1e-5 of the
    /// composite's (`theirs`), relative to the largest magnitude of the composite's tensor (a
    /// gradient that sums many rows is compared at its own scale). `what` names the tensors.
    pub(crate) fn assert_close(what: &[&str], ours: &[Vec<f32>], theirs: &[Vec<f32>]) {
        for ((what, a), b) in what.iter().zip(ours).zip(theirs) {
            assert_eq!(a.len(), b.len(), "{what}");
            let scale = b.iter().fold(0.0f32, |s, v| s.max(v.abs()));
            assert!(scale > 0.0, "{what}: all zero");
            let worst = a
                .iter()
                .zip(b)
                .map(|(a, b)| (a - b).abs() / scale)
                .fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{what}: off by {worst} of {scale}");
        }
    }

    /// Attention splits the heads out of a chunk of the fused QKV projection: a view whose rows
    /// are contiguous at a larger stride, which the vendored Flex copies a row at a time
    /// (vendor/README.md). Small and large (Flex's parallel threshold is 1M elements).
    #[test]
    fn a_chunk_of_the_last_axis_reshaped_holds_its_values() {
        let device = Device::flex();
        for (rows, d) in [(5, 12), (3000, 384)] {
            let all: Vec<f32> = (0..rows * d).map(|i| i as f32).collect();
            let x = Tensor::<3>::from_data(TensorData::new(all, [1, rows, d]), &device);
            let third = d / 3;
            for (c, chunk) in x.clone().chunk(3, 2).into_iter().enumerate() {
                let got = values(chunk.reshape([rows, 2, third / 2]));
                let want: Vec<f32> = (0..rows)
                    .flat_map(|r| (0..third).map(move |j| (r * d + c * third + j) as f32))
                    .collect();
                assert_eq!(got, want, "rows {rows}, chunk {c}");
            }
        }
    }

    /// The vendored Flex cuts element-wise loops of 64k elements and more into one piece per
    /// thread (vendor/README.md): every path (in place, swapped into the right operand,
    /// allocating, broadcast rows, a transposed operand, scalar, unary) must give each element
    /// exactly what the one-thread loop gives. Run on a pool of 3 threads so the pieces are
    /// uneven; 700 x 300 is above the threshold, 5 x 12 below.
    #[test]
    fn element_wise_ops_split_across_threads_compute_each_element_once() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            let device = Device::flex();
            for (rows, cols) in [(5, 12), (700, 300)] {
                let n = rows * cols;
                let a: Vec<f32> = (0..n).map(|i| (i % 997) as f32 * 0.25 - 7.0).collect();
                let b: Vec<f32> = (0..n).map(|i| (i % 113) as f32 * 0.5 + 1.0).collect();
                let bias: Vec<f32> = (0..cols).map(|j| j as f32 * 0.125 - 3.0).collect();
                let t = |v: &Vec<f32>| {
                    Tensor::<2>::from_data(TensorData::new(v.clone(), [rows, cols]), &device)
                };
                let row = Tensor::<1>::from_data(TensorData::new(bias.clone(), [cols]), &device)
                    .reshape([1, cols]);
                let each = |f: &dyn Fn(usize) -> f32| (0..n).map(f).collect::<Vec<f32>>();
                let (r, c) = (|i: usize| i / cols, |i: usize| i % cols);

                // a unique: written in place; a shared: swapped into b, or a fresh output.
                assert_eq!(values(t(&a) + t(&b)), each(&|i| a[i] + b[i]));
                let shared = t(&a);
                assert_eq!(values(shared.clone() - t(&b)), each(&|i| a[i] - b[i]));
                assert_eq!(
                    values(shared.clone() * shared.clone()),
                    each(&|i| a[i] * a[i])
                );
                assert_eq!(values(shared.clone() / t(&b)), each(&|i| a[i] / b[i]));
                // Broadcast rows, both orders.
                assert_eq!(values(t(&a) * row.clone()), each(&|i| a[i] * bias[c(i)]));
                assert_eq!(values(row.clone() - t(&a)), each(&|i| bias[c(i)] - a[i]));
                // A transposed operand: the general strided inner loop.
                let bt = Tensor::<2>::from_data(TensorData::new(b.clone(), [cols, rows]), &device);
                assert_eq!(
                    values(shared.clone() + bt.transpose()),
                    each(&|i| a[i] + b[c(i) * rows + r(i)])
                );
                // Scalar and unary, in place and allocating.
                assert_eq!(values(t(&a) * 3.0), each(&|i| a[i] * 3.0));
                assert_eq!(
                    values(shared.clone().mul_scalar(0.5)),
                    each(&|i| a[i] * 0.5)
                );
                let exp_one_thread: Vec<f32> = (0..rows)
                    .flat_map(|i| values(shared.clone().slice([i..i + 1, 0..cols]).exp()))
                    .collect();
                assert_eq!(values(shared.clone().exp()), exp_one_thread);
                assert_eq!(values(t(&a).exp()), exp_one_thread);
                assert_eq!(
                    values(Tensor::<2>::zeros([rows, cols], &device)),
                    vec![0.0; n]
                );
            }
        });
    }

    #[test]
    fn forward_shape_and_causality() {
        let device = Device::flex();
        device.seed(0);
        let model = GptConfig::from_spec(&spec(2, 32, 4, 64, true, false), 10, 6).init(&device);
        let a = Tensor::<3, Int>::from_data([[[1, 2, 3, 4, 5, 6]]], &device);
        let b = Tensor::<3, Int>::from_data([[[1, 2, 3, 9, 9, 9]]], &device);
        let (la, lb) = (model.forward(a.clone(), 0), model.forward(b, 0));
        assert_eq!(la.dims(), [1, 1, 6, 10]);
        // The logits of a suffix of positions are those of the full forward.
        let tail = model.forward(a, 4);
        assert_eq!(tail.dims(), [1, 1, 2, 10]);
        let close = |x: Tensor<4>, y: Tensor<4>| (x - y).abs().max().into_scalar::<f32>() < 1e-5;
        assert!(close(tail, la.clone().narrow(2, 4, 2)));
        // Changing tokens 3.. must not change the logits at positions 0..3.
        let first = |l: Tensor<4>| values(l.narrow(2, 0, 3));
        assert_eq!(first(la.clone()), first(lb.clone()));
        assert_ne!(values(la), values(lb));
    }

    #[test]
    fn attention_patterns_are_causal_distributions_per_layer_and_head() {
        let device = Device::flex();
        device.seed(3);
        let model = GptConfig::from_spec(&spec(2, 32, 4, 64, true, false), 10, 6).init(&device);
        let idx = Tensor::<3, Int>::from_data([[[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]]], &device);
        let patterns = model.attention_patterns(idx);
        assert_eq!(patterns.len(), 2);
        for p in patterns {
            assert_eq!(p.dims(), [1, 2, 4, 6, 6]);
            let v = values(p.reshape([2 * 4 * 6 * 6]));
            for row in v.chunks(6).enumerate() {
                let (i, row) = (row.0 % 6, row.1);
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{row:?}");
                assert!(
                    row[i + 1..].iter().all(|&a| a == 0.0),
                    "row {i} sees the future: {row:?}"
                );
            }
        }
    }

    #[test]
    fn a_model_computes_the_same_in_a_pack_as_alone() {
        let device = Device::flex();
        let config = GptConfig::from_spec(&spec(2, 32, 4, 64, true, true), 10, 6);
        let models: Vec<Gpt> = (0..3)
            .map(|seed| {
                device.seed(seed);
                config.init(&device)
            })
            .collect();
        let pack = pack::stack(models.clone());
        assert_eq!(pack.models(), 3);
        let idx = |m: i64| {
            let rows: Vec<i64> = (0..2 * 5).map(|i| (i * 7 + m * 3) % 10).collect();
            Tensor::<1, Int>::from_data(rows.as_slice(), &device).reshape([1, 2, 5])
        };
        let packed = pack.forward(Tensor::cat((0..3).map(idx).collect(), 0), 1);
        for (m, model) in models.iter().enumerate() {
            let alone = values(model.forward(idx(m as i64), 1));
            assert_eq!(values(packed.clone().narrow(0, m, 1)), alone, "model {m}");
        }
        // Taking a model out of the pack gives it back as it was.
        let second = pack::select(&pack, &[1]);
        assert_eq!(values(second.wte.val()), values(models[1].wte.val()));
        assert_eq!(
            values(second.forward(idx(1), 0)),
            values(models[1].forward(idx(1), 0))
        );
    }
}
