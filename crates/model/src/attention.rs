//! Causal self-attention over each example's positions, all heads from one fused projection.

mod flex;

use burn::backend::Dispatch;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use flex::AttentionBackend;

use crate::cpu::on_flex;
use crate::{Linear, positions_from};

#[derive(Module, Debug)]
pub struct CausalSelfAttention {
    /// Query, key and value projections for all heads, in one matrix.
    pub(crate) c_attn: Linear,
    pub(crate) c_proj: Linear,
    pub(crate) n_head: usize,
}

impl CausalSelfAttention {
    /// Attention for the queries at positions `first..` of `x` `[models, batch * time, d]`, each
    /// over the positions up to itself. Models and batch are one axis here: attention never
    /// crosses examples.
    pub fn forward(&self, x: Tensor<3>, batch: usize, first: usize) -> Tensor<3> {
        let y = if on_flex(&x) {
            self.on_cpu(x, batch, first)
        } else {
            self.composed(x, batch, first)
        };
        self.c_proj.forward(y)
    }

    /// On the CPU: one product for the queries, keys and values, read where they are by one
    /// attention operation (flex.rs), whose backward writes one gradient for the product. In
    /// the block whose outputs are read at positions `first..` only, queries there only: with
    /// the loss on one of four positions (Nanda's), 14% of the step's matmul work saved.
    fn on_cpu(&self, x: Tensor<3>, batch: usize, first: usize) -> Tensor<3> {
        let n_head = self.n_head;
        let y = if first == 0 {
            let qkv = self.c_attn.forward(x);
            <Dispatch as AttentionBackend>::causal_attention(qkv.into_dispatch(), n_head, batch)
        } else {
            let d = x.dims()[2];
            let q = self
                .c_attn
                .forward_outputs(positions_from(x.clone(), batch, first), 0, d);
            let kv = self.c_attn.forward_outputs(x, d, 2 * d);
            <Dispatch as AttentionBackend>::causal_attention_at(
                q.into_dispatch(),
                kv.into_dispatch(),
                n_head,
                batch,
            )
        };
        Tensor::from_dispatch(y)
    }

    /// Composed of tensor ops (the GPU's path, and the definition the CPU's is tested against).
    /// Three products from the columns of one fused weight rather than one product cut into
    /// three: each output is contiguous, so splitting out its heads is a view, and the backward
    /// adds three gradients instead of zero-filling and writing three full-width ones. Queries
    /// only at the positions whose outputs are read, as on the CPU.
    fn composed(&self, x: Tensor<3>, batch: usize, first: usize) -> Tensor<3> {
        let d = x.dims()[2];
        let q = self
            .c_attn
            .forward_outputs(positions_from(x.clone(), batch, first), 0, d);
        let k = self.c_attn.forward_outputs(x.clone(), d, d);
        let v = self.c_attn.forward_outputs(x, 2 * d, d);
        composite(q, k, v, self.n_head, batch)
    }

    /// The attention pattern `[models * batch, heads, time, time]` (query, key) of every
    /// position of `x` `[models, batch * time, d]`: what [`Self::forward`] weighs the values by.
    pub fn pattern(&self, x: Tensor<3>, batch: usize) -> Tensor<4> {
        let mut qkv = self.c_attn.forward(x).chunk(3, 2);
        qkv.pop();
        let k = qkv.pop().expect("keys");
        let q = qkv.pop().expect("queries");
        weights(q, k, self.n_head, batch)
    }
}

/// `softmax(q k^T / sqrt(hd)) v` per example and head, each query over the positions up to its
/// own, composed of tensor ops with the heads split out as a batch of matrices: `q`
/// `[models, batch * tq, d]` at each example's last `tq` positions, `k` and `v`
/// `[models, batch * t, d]` at all of them.
fn composite(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, n_head: usize, batch: usize) -> Tensor<3> {
    let [m, rows_q, d] = q.dims();
    let (b, t) = (m * batch, v.dims()[1] / batch);
    let v = v.reshape([b, t, n_head, d / n_head]).swap_dims(1, 2);
    let att = weights(q, k, n_head, batch);
    att.matmul(v).swap_dims(1, 2).reshape([m, rows_q, d])
}

/// The attention weights of [`composite`], `[models * batch, heads, tq, t]` (query, key).
fn weights(q: Tensor<3>, k: Tensor<3>, n_head: usize, batch: usize) -> Tensor<4> {
    let [m, rows_q, d] = q.dims();
    let (b, t, tq) = (m * batch, k.dims()[1] / batch, rows_q / batch);
    let (h, hd) = (n_head, d / n_head);
    let heads = |x: Tensor<3>, t| x.reshape([b, t, h, hd]).swap_dims(1, 2);
    let mask = future(t, &q.device())
        .narrow(0, t - tq, tq)
        .unsqueeze::<4>()
        .expand([b, h, tq, t]);
    let att = heads(q, tq).matmul(heads(k, t).swap_dims(2, 3)) / (hd as f64).sqrt();
    softmax(att.mask_fill(mask, -1e9), 3)
}

/// The `[time, time]` mask of the keys each query may not see: true above the diagonal.
fn future(t: usize, device: &Device) -> Tensor<2, Bool> {
    Tensor::<2, Bool>::tril_mask([t, t], 0, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{assert_close, values};
    use burn::module::Param;
    use burn::tensor::Distribution;

    /// The CPU's path against the composite: the output and the gradients of the input and
    /// of the projection's weight and bias agree to float32 rounding (the sums run in another
    /// order). Heads of 4 and 20 columns (all lanes, lanes and a rest); queries at every
    /// position (the one product), at some and at the last only (two); two models of three
    /// examples.
    #[test]
    fn the_cpu_attention_matches_the_composite() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let (m, batch, t) = (2, 3, 6);
        for (d, n_head, first) in [(12, 3, 0), (40, 2, 0), (40, 2, 2), (40, 2, 5)] {
            let random =
                |shape| Tensor::<3>::random(shape, Distribution::Normal(0.0, 0.5), &device);
            let (x0, w) = (
                random([m, batch * t, d]),
                random([m, batch * (t - first), d]),
            );
            let (weight, bias) = (random([m, d, 3 * d]), random([m, 1, 3 * d]));
            let run = |cpu: bool| {
                let x = x0.clone().require_grad();
                let linear = |weight: &Tensor<3>, bias: &Tensor<3>| Linear {
                    weight: Param::from_tensor(weight.clone()),
                    bias: Some(Param::from_tensor(bias.clone())),
                };
                let attn = CausalSelfAttention {
                    c_attn: linear(&weight, &bias),
                    c_proj: linear(&weight, &bias),
                    n_head,
                };
                let y = if cpu {
                    attn.on_cpu(x.clone(), batch, first)
                } else {
                    attn.composed(x.clone(), batch, first)
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                let grad = |p: Tensor<3>| values(p.grad(&grads).expect("a gradient"));
                let c_attn = &attn.c_attn;
                [
                    values(y),
                    grad(x),
                    grad(c_attn.weight.val()),
                    grad(c_attn.bias.as_ref().expect("a bias").val()),
                ]
            };
            let names = ["output", "d x", "d weight", "d bias"]
                .map(|what| format!("d {d}, first {first}: {what}"));
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            assert_close(&names, &run(true), &run(false));
        }
    }
}
