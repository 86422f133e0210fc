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
        let d = x.dims()[2];
        // Three products from the columns of one fused weight rather than one product cut into
        // three: each output is contiguous, so splitting out its heads is a view, and the
        // backward adds three gradients instead of zero-filling and writing three full-width
        // ones. Queries only at the positions whose outputs are read (keys and values at all):
        // with the loss on one of four positions (Nanda's), 14% of the step's matmul work saved.
        let queries_from = positions_from(x.clone(), batch, first);
        let q = self.c_attn.forward_outputs(queries_from, 0, d);
        let k = self.c_attn.forward_outputs(x.clone(), d, d);
        let v = self.c_attn.forward_outputs(x, 2 * d, d);
        self.c_proj
            .forward(causal_attention(q, k, v, self.n_head, batch))
    }

    /// The attention pattern `[models * batch, heads, time, time]` (query, key) of every
    /// position of `x` `[models, batch * time, d]`: what [`Self::forward`] weighs the values by.
    pub fn pattern(&self, x: Tensor<3>, batch: usize) -> Tensor<4> {
        let [m, n, d] = x.dims();
        let (b, t) = (m * batch, n / batch);
        let (h, hd) = (self.n_head, d / self.n_head);
        let heads = |x: Tensor<3>| x.reshape([b, t, h, hd]).swap_dims(1, 2);
        let future = future(t, &x.device()).unsqueeze::<4>().expand([b, h, t, t]);
        let mut qkv = self.c_attn.forward(x).chunk(3, 2);
        qkv.pop();
        let k = heads(qkv.pop().unwrap());
        let q = heads(qkv.pop().unwrap());
        let att = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
        softmax(att.mask_fill(future, -1e9), 3)
    }
}

/// `softmax(q k^T / sqrt(hd)) v` per example and head, each query over the positions up to its
/// own: `q` `[models, batch * tq, d]` at each example's last `tq` positions, `k` and `v`
/// `[models, batch * t, d]` at all of them.
fn causal_attention(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    n_head: usize,
    batch: usize,
) -> Tensor<3> {
    if !on_flex(&q) {
        return composite(q, k, v, n_head, batch);
    }
    // On the CPU: one operation (flex.rs).
    let y = <Dispatch as AttentionBackend>::causal_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        n_head,
        batch,
    );
    Tensor::from_dispatch(y)
}

/// Attention composed of tensor ops, heads split out as a batch of matrices: what the GPU runs,
/// and the definition that the CPU's operation is tested against.
fn composite(q: Tensor<3>, k: Tensor<3>, v: Tensor<3>, n_head: usize, batch: usize) -> Tensor<3> {
    let [m, rows_q, d] = q.dims();
    let (b, t, tq) = (m * batch, k.dims()[1] / batch, rows_q / batch);
    let (h, hd) = (n_head, d / n_head);
    let heads = |x: Tensor<3>, t| x.reshape([b, t, h, hd]).swap_dims(1, 2);
    let mask = future(t, &q.device())
        .narrow(0, t - tq, tq)
        .unsqueeze::<4>()
        .expand([b, h, tq, t]);
    let (q, k, v) = (heads(q, tq), heads(k, t), heads(v, t));
    let att = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
    let att = softmax(att.mask_fill(mask, -1e9), 3);
    att.matmul(v).swap_dims(1, 2).reshape([m, rows_q, d])
}

/// The `[time, time]` mask of the keys each query may not see: true above the diagonal.
fn future(t: usize, device: &Device) -> Tensor<2, Bool> {
    Tensor::<2, Bool>::tril_mask([t, t], 0, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::values;
    use burn::tensor::Distribution;

    /// The CPU operation against the composite it replaces: the output and the gradients of
    /// the queries, keys and values agree to float32 rounding (the sums run in another order).
    /// Heads of 4 and 20 columns (all lanes, lanes and a rest), queries at every position, at
    /// some and at the last only, two models of three examples.
    #[test]
    fn the_cpu_attention_matches_the_composite() {
        let device = Device::flex().autodiff();
        device.seed(11);
        let (m, batch, t) = (2, 3, 6);
        for (d, n_head, first) in [(12, 3, 0), (40, 2, 2), (40, 2, 5)] {
            let tq = t - first;
            let random = |rows| {
                Tensor::<3>::random(
                    [m, batch * rows, d],
                    Distribution::Normal(0.0, 1.5),
                    &device,
                )
            };
            let (q0, k0, v0, w) = (random(tq), random(t), random(t), random(tq));
            let run = |fused: bool| {
                let (q, k, v) = (
                    q0.clone().require_grad(),
                    k0.clone().require_grad(),
                    v0.clone().require_grad(),
                );
                let (a, b, c) = (q.clone(), k.clone(), v.clone());
                let y = if fused {
                    causal_attention(a, b, c, n_head, batch)
                } else {
                    composite(a, b, c, n_head, batch)
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                let grad = |p: &Tensor<3>| values(p.grad(&grads).expect("a gradient"));
                [values(y), grad(&q), grad(&k), grad(&v)]
            };
            let (fused, composed) = (run(true), run(false));
            for (what, (a, b)) in ["output", "d q", "d k", "d v"]
                .iter()
                .zip(fused.iter().zip(&composed))
            {
                assert_eq!(a.len(), b.len());
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
                    .fold(0.0f32, f32::max);
                assert!(worst < 1e-5, "d {d}, first {first}, {what}: off by {worst}");
                assert!(a.iter().any(|&x| x != 0.0), "{what}: all zero");
            }
        }
    }
}
