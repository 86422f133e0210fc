//! Causal self-attention over each example's positions, all heads from one fused projection.

use burn::prelude::*;
use burn::tensor::activation::softmax;

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
    /// over the positions up to itself (`future` is the `[time, time]` mask, true above the
    /// diagonal). Models and batch are one axis here: attention never crosses examples.
    pub fn forward(
        &self,
        x: Tensor<3>,
        batch: usize,
        first: usize,
        future: Tensor<2, Bool>,
    ) -> Tensor<3> {
        let [m, n, d] = x.dims();
        let (b, t) = (m * batch, n / batch);
        let (h, hd, tq) = (self.n_head, d / self.n_head, t - first);
        let heads = |x: Tensor<3>, t| x.reshape([b, t, h, hd]).swap_dims(1, 2);
        // Three products from the columns of one fused weight rather than one product cut into
        // three: each output is contiguous, so splitting out its heads is a view, and the
        // backward adds three gradients instead of zero-filling and writing three full-width
        // ones. Queries only at the positions whose outputs are read (keys and values at all):
        // with the loss on one of four positions (Nanda's), 14% of the step's matmul work saved.
        let queries_from = positions_from(x.clone(), batch, first);
        let q = self.c_attn.forward_outputs(queries_from, 0, d);
        let k = self.c_attn.forward_outputs(x.clone(), d, d);
        let v = self.c_attn.forward_outputs(x, 2 * d, d);
        let (q, k, v) = (heads(q, tq), heads(k, t), heads(v, t));
        let att = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
        let future = future
            .narrow(0, first, tq)
            .unsqueeze::<4>()
            .expand([b, h, tq, t]);
        let att = softmax(att.mask_fill(future, -1e9), 3);
        let y = att.matmul(v).swap_dims(1, 2).reshape([m, batch * tq, d]);
        self.c_proj.forward(y)
    }

    /// The attention pattern `[models * batch, heads, time, time]` (query, key) of every
    /// position of `x` `[models, batch * time, d]`: what [`Self::forward`] weighs the values by.
    pub fn pattern(&self, x: Tensor<3>, batch: usize, future: Tensor<2, Bool>) -> Tensor<4> {
        let [m, n, d] = x.dims();
        let (b, t) = (m * batch, n / batch);
        let (h, hd) = (self.n_head, d / self.n_head);
        let heads = |x: Tensor<3>| x.reshape([b, t, h, hd]).swap_dims(1, 2);
        let mut qkv = self.c_attn.forward(x).chunk(3, 2);
        qkv.pop();
        let k = heads(qkv.pop().unwrap());
        let q = heads(qkv.pop().unwrap());
        let att = q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt();
        let future = future.unsqueeze::<4>().expand([b, h, t, t]);
        softmax(att.mask_fill(future, -1e9), 3)
    }
}
