//! Causal attention as one operation on the CPU backend (Flex), forward and backward, one
//! example (all its heads) at a time.
//!
//! Why: composed of tensor ops, attention over the lab's short contexts is two batched
//! products forward and four backward of tiny matrices (11 x 36 by 36 x 11 per example and
//! head at the 1M rung: gemm's setup per matrix costs several times its arithmetic), a scale, a
//! mask and a five-op softmax with a dozen backward ops, and copies that split the heads out and
//! merge them back. An ablation on an AVX-512 Xeon (docs/performance.md) put all that at 7-11 ms
//! of the 1M rung's ~85 ms step. Here it is one pass forward and one backward over the examples,
//! reading the queries, keys and values where the projection wrote them (one product, or two
//! where queries are needed at the last positions only), and each query visits only the keys
//! it may see (the composite scores all of them, then masks). The backward writes one gradient
//! per product, so no slice of the projection's output is ever zero-filled or summed back.
//!
//! The arithmetic is the composite's, in another order: dot products over the head axis sum
//! eight lanes then the rest, with fused multiply-adds. So results are close to the composite's
//! (the tests bound the difference), not bit for bit; unlike gemm's, this order is the same on
//! every CPU, AVX2 or AVX-512.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, backend_extension};
use burn_flex::FlexTensor;

use crate::cpu::{Fresh, Row, RowPass, axpy, contiguous, dims, dot, dot4, f32s, pass, zeroed};

type FloatTensor<B> = burn::backend::tensor::FloatTensor<B>;

/// Causal attention as one backend operation, in two layouts of its inputs.
#[backend_extension(Flex, Autodiff)]
pub trait AttentionBackend: Backend {
    /// `softmax(q k^T / sqrt(hd)) v` per example and head, each query over the keys at its
    /// position and before, with queries, keys and values at every position side by side in
    /// `qkv` `[models, batch * t, 3 d]` (head `h` of each: columns `h * hd..(h + 1) * hd` of
    /// its third). Output: `[models, batch * t, d]`.
    fn causal_attention(qkv: FloatTensor<Self>, n_head: usize, batch: usize) -> FloatTensor<Self>;

    /// The same for queries at each example's last `tq` positions only, `q`
    /// `[models, batch * tq, d]`, with keys and values at all `t` in `kv`
    /// `[models, batch * t, 2 d]`. Output: like `q`.
    fn causal_attention_at(
        q: FloatTensor<Self>,
        kv: FloatTensor<Self>,
        n_head: usize,
        batch: usize,
    ) -> FloatTensor<Self>;
}

impl AttentionBackend for Flex {
    fn causal_attention(qkv: FlexTensor, n_head: usize, batch: usize) -> FlexTensor {
        forward(Inputs::Fused(contiguous(qkv)), n_head, batch).0
    }

    fn causal_attention_at(
        q: FlexTensor,
        kv: FlexTensor,
        n_head: usize,
        batch: usize,
    ) -> FlexTensor {
        let inputs = Inputs::Split(contiguous(q), contiguous(kv));
        forward(inputs, n_head, batch).0
    }
}

impl<C: CheckpointStrategy> AttentionBackend for Autodiff<Flex, C> {
    fn causal_attention(qkv: FloatTensor<Self>, n_head: usize, batch: usize) -> FloatTensor<Self> {
        let prep = AttentionBackward
            .prepare::<C>([qkv.node()])
            .compute_bound()
            .stateful();
        let inputs = Inputs::Fused(contiguous(Self::inner(qkv)));
        match prep {
            OpsKind::Tracked(prep) => {
                let (y, saved) = forward(inputs, n_head, batch);
                prep.finish(saved, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(inputs, n_head, batch).0),
        }
    }

    fn causal_attention_at(
        q: FloatTensor<Self>,
        kv: FloatTensor<Self>,
        n_head: usize,
        batch: usize,
    ) -> FloatTensor<Self> {
        let prep = AttentionAtBackward
            .prepare::<C>([q.node(), kv.node()])
            .compute_bound()
            .stateful();
        let inputs = Inputs::Split(contiguous(Self::inner(q)), contiguous(Self::inner(kv)));
        match prep {
            OpsKind::Tracked(prep) => {
                let (y, saved) = forward(inputs, n_head, batch);
                prep.finish(saved, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(inputs, n_head, batch).0),
        }
    }
}

/// The operation's inputs (contiguous): `[models, rows, 3 d]`, or queries `[models, rows_q, d]`
/// and keys and values `[models, rows, 2 d]`.
#[derive(Debug, Clone)]
enum Inputs {
    Fused(FlexTensor),
    Split(FlexTensor, FlexTensor),
}

impl Inputs {
    /// The elements that hold the queries, and those that hold the keys and values.
    fn slices(&self) -> (&[f32], &[f32]) {
        match self {
            Inputs::Fused(qkv) => (f32s(qkv), f32s(qkv)),
            Inputs::Split(q, kv) => (f32s(q), f32s(kv)),
        }
    }
}

/// Where a row's head `h` of the queries, keys or values is: row `r` of `x` starts at
/// `r * stride`, head `h` at `offset + h * hd` in it.
#[derive(Debug, Clone, Copy)]
struct Columns {
    stride: usize,
    offset: usize,
}

/// Where things are: `t` positions per example, queries at the last `tq` (from `first`),
/// `n_head` heads of `hd` columns, `d` in all.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    t: usize,
    tq: usize,
    first: usize,
    d: usize,
    n_head: usize,
    hd: usize,
    /// `sqrt(hd)`, as the composite divides by it (an f64 rounded to f32).
    scale: f32,
    q: Columns,
    k: Columns,
    v: Columns,
}

impl Geometry {
    fn new(inputs: &Inputs, n_head: usize, batch: usize) -> Self {
        let (rows_q, rows, d, q, k, v) = match inputs {
            Inputs::Fused(qkv) => {
                let [_, rows, width] = dims(qkv);
                assert!(
                    width.is_multiple_of(3),
                    "queries, keys and values side by side"
                );
                let d = width / 3;
                let at = |offset| Columns {
                    stride: width,
                    offset,
                };
                (rows, rows, d, at(0), at(d), at(2 * d))
            }
            Inputs::Split(q, kv) => {
                let ([m, rows_q, d], [mk, rows, width]) = (dims(q), dims(kv));
                assert_eq!((mk, width), (m, 2 * d), "keys and values beside queries");
                let at = |stride, offset| Columns { stride, offset };
                (rows_q, rows, d, at(d, 0), at(width, 0), at(width, d))
            }
        };
        assert!(rows.is_multiple_of(batch) && rows_q.is_multiple_of(batch));
        assert!(d.is_multiple_of(n_head), "d_model a multiple of the heads");
        let (t, tq) = (rows / batch, rows_q / batch);
        assert!(tq <= t, "queries at most at every position");
        let hd = d / n_head;
        Geometry {
            t,
            tq,
            first: t - tq,
            d,
            n_head,
            hd,
            scale: (hd as f64).sqrt() as f32,
            q,
            k,
            v,
        }
    }

    /// Head `h` of query `i` (position `first + i`) of example `e`.
    #[inline(always)]
    fn query<'a>(&self, qs: &'a [f32], e: usize, i: usize, h: usize) -> &'a [f32] {
        let Columns { stride, offset } = self.q;
        &qs[(e * self.tq + i) * stride + offset + h * self.hd..][..self.hd]
    }

    /// Head `h` of the key at position `j` of example `e`.
    #[inline(always)]
    fn key<'a>(&self, kvs: &'a [f32], e: usize, j: usize, h: usize) -> &'a [f32] {
        let Columns { stride, offset } = self.k;
        &kvs[(e * self.t + j) * stride + offset + h * self.hd..][..self.hd]
    }

    /// Head `h` of the value at position `j` of example `e`.
    #[inline(always)]
    fn value<'a>(&self, kvs: &'a [f32], e: usize, j: usize, h: usize) -> &'a [f32] {
        let Columns { stride, offset } = self.v;
        &kvs[(e * self.t + j) * stride + offset + h * self.hd..][..self.hd]
    }

    /// `out[j] = a . (head h at position j of example e)` of the keys or values (`at`), for
    /// positions `0..out.len()`: four at a time.
    #[inline(always)]
    fn dots(&self, a: &[f32], kvs: &[f32], at: Columns, e: usize, h: usize, out: &mut [f32]) {
        let Columns { stride, offset } = at;
        let row = |j: usize| &kvs[(e * self.t + j) * stride + offset + h * self.hd..][..self.hd];
        let mut fours = out.chunks_exact_mut(4);
        for (n, out) in (&mut fours).enumerate() {
            let j = 4 * n;
            out.copy_from_slice(&dot4(a, [row(j), row(j + 1), row(j + 2), row(j + 3)]));
        }
        let done = out.len() / 4 * 4;
        for (j, out) in out.iter_mut().enumerate().skip(done) {
            *out = dot(a, row(j));
        }
    }

    /// Head `h` of the output (or its gradient) at query `i` of example `e`, `[.., tq, d]`.
    #[inline(always)]
    fn output<'a>(&self, ys: &'a [f32], e: usize, i: usize, h: usize) -> &'a [f32] {
        &ys[(e * self.tq + i) * self.d + h * self.hd..][..self.hd]
    }

    /// Head `h` of a row of `d` (an output's, or a gradient's of queries, keys or values).
    #[inline(always)]
    fn head<'a>(&self, row: &'a mut [f32], h: usize) -> &'a mut [f32] {
        &mut row[h * self.hd..][..self.hd]
    }

    /// Elements of the attention weights per example: `[heads, tq, t]`.
    fn weights(&self) -> usize {
        self.n_head * self.tq * self.t
    }
}

/// What the backward needs: the inputs and the attention weights.
#[derive(Debug, Clone)]
struct Saved {
    inputs: Inputs,
    /// `[examples, heads, tq, t]` (zero at the keys a query may not see).
    p: FlexTensor,
    g: Geometry,
}

impl Saved {
    /// The backward's kernel, for the output's gradient `dy`.
    fn gradient<'a>(&'a self, dy: &'a FlexTensor) -> Gradient<'a> {
        let (qs, kvs) = self.inputs.slices();
        Gradient {
            dy: f32s(dy),
            qs,
            kvs,
            p: f32s(&self.p),
            g: self.g,
        }
    }
}

fn forward(inputs: Inputs, n_head: usize, batch: usize) -> (FlexTensor, Saved) {
    let g = Geometry::new(&inputs, n_head, batch);
    let m = match &inputs {
        Inputs::Fused(x) | Inputs::Split(x, _) => dims(x)[0],
    };
    let examples = m * batch;
    let mut y = Fresh::new(examples * g.tq * g.d);
    let mut p = Fresh::new(examples * g.weights());
    let (qs, kvs) = inputs.slices();
    let kernel = Forward { qs, kvs, g };
    pass(&kernel, [y.slice(), p.slice()], [g.tq * g.d, g.weights()]);
    // SAFETY (both): `pass` visits every example and `Forward` writes all of its elements.
    let y = unsafe { y.into_tensor([m, batch * g.tq, g.d]) };
    let p = unsafe { p.into_tensor([examples, g.n_head * g.tq, g.t]) };
    (y, Saved { inputs, p, g })
}

/// One example's outputs `[tq, d]` and attention weights `[heads, tq, t]`.
struct Forward<'a> {
    qs: &'a [f32],
    kvs: &'a [f32],
    g: Geometry,
}

impl RowPass<2> for Forward<'_> {
    #[inline(always)]
    fn row(&self, e: usize, [y, p]: [Row; 2]) {
        let g = &self.g;
        let (y, p) = (zeroed(y), zeroed(p));
        for h in 0..g.n_head {
            for i in 0..g.tq {
                let q = g.query(self.qs, e, i, h);
                // The keys up to the query's own position; the rest keep weight 0.
                let p = &mut p[(h * g.tq + i) * g.t..][..g.first + i + 1];
                g.dots(q, self.kvs, g.k, e, h, p);
                let mut max = f32::NEG_INFINITY;
                for s in p.iter_mut() {
                    *s /= g.scale;
                    max = max.max(*s);
                }
                let mut sum = 0.0;
                for s in p.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let y = g.head(&mut y[i * g.d..][..g.d], h);
                for (j, s) in p.iter_mut().enumerate() {
                    *s /= sum;
                    axpy(*s, g.value(self.kvs, e, j, h), y);
                }
            }
        }
    }
}

/// The backward of [`AttentionBackend::causal_attention`]: one gradient, `[.., 3 d]`.
#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 1> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let Inputs::Fused(qkv) = &saved.inputs else {
            unreachable!("the one-product attention saves one input")
        };
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (kernel, g) = (saved.gradient(&grad), saved.g);
        let [m, rows, width] = dims(qkv);
        let mut dqkv = Fresh::new(m * rows * width);
        pass(&kernel, [dqkv.slice()], [g.t * width]);
        let [node] = ops.parents;
        if let Some(node) = node {
            // SAFETY: every element of every example written by `Gradient`.
            grads.register::<Flex>(node.id, unsafe { dqkv.into_tensor([m, rows, width]) });
        }
    }
}

/// The backward of [`AttentionBackend::causal_attention_at`]: the queries' gradient and the
/// keys' and values'.
#[derive(Debug)]
struct AttentionAtBackward;

impl Backward<Flex, 2> for AttentionAtBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let saved = ops.state;
        let Inputs::Split(q, kv) = &saved.inputs else {
            unreachable!("the two-product attention saves two inputs")
        };
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let (kernel, g) = (saved.gradient(&grad), saved.g);
        let ([m, rows_q, d], [_, rows, width]) = (dims(q), dims(kv));
        let mut dq = Fresh::new(m * rows_q * d);
        let mut dkv = Fresh::new(m * rows * width);
        pass(&kernel, [dq.slice(), dkv.slice()], [g.tq * d, g.t * width]);
        // SAFETY (both): every element of every example written by `Gradient`.
        let dq = unsafe { dq.into_tensor([m, rows_q, d]) };
        let dkv = unsafe { dkv.into_tensor([m, rows, width]) };
        let [q_node, kv_node] = ops.parents;
        for (node, grad) in [(q_node, dq), (kv_node, dkv)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// One example's gradients of the queries, keys and values: with `P` the weights,
/// `dV = P^T dY`, `dP = dY V^T`, the softmax's `dS = P * (dP - rowsum(P * dP))`, then through
/// the scale, `dQ = dS K / scale` and `dK = dS^T Q / scale`.
struct Gradient<'a> {
    dy: &'a [f32],
    qs: &'a [f32],
    kvs: &'a [f32],
    p: &'a [f32],
    g: Geometry,
}

/// One product's gradient: each row `[dq | dk | dv]`, one row per position.
impl RowPass<1> for Gradient<'_> {
    #[inline(always)]
    fn row(&self, e: usize, [dqkv]: [Row; 1]) {
        let d = self.g.d;
        let (mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new());
        for row in zeroed(dqkv).chunks_mut(3 * d) {
            let (q, kv) = row.split_at_mut(d);
            let (k, v) = kv.split_at_mut(d);
            dq.push(q);
            dk.push(k);
            dv.push(v);
        }
        self.example(e, &mut dq, &mut dk, &mut dv);
    }
}

/// Two products' gradients: rows of `dq`, and rows `[dk | dv]`.
impl RowPass<2> for Gradient<'_> {
    #[inline(always)]
    fn row(&self, e: usize, [dq, dkv]: [Row; 2]) {
        let d = self.g.d;
        let mut dq: Vec<&mut [f32]> = zeroed(dq).chunks_mut(d).collect();
        let (mut dk, mut dv) = (Vec::new(), Vec::new());
        for row in zeroed(dkv).chunks_mut(2 * d) {
            let (k, v) = row.split_at_mut(d);
            dk.push(k);
            dv.push(v);
        }
        self.example(e, &mut dq, &mut dk, &mut dv);
    }
}

impl Gradient<'_> {
    /// Accumulates example `e`'s gradients into its rows of `dq` (`tq` of them), `dk` and `dv`
    /// (`t`), all zero on entry.
    #[inline(always)]
    fn example(
        &self,
        e: usize,
        dq: &mut [&mut [f32]],
        dk: &mut [&mut [f32]],
        dv: &mut [&mut [f32]],
    ) {
        let g = &self.g;
        let mut dp = vec![0.0; g.t];
        for h in 0..g.n_head {
            for (i, dq) in dq.iter_mut().enumerate() {
                let keys = g.first + i + 1;
                let p = &self.p[((e * g.n_head + h) * g.tq + i) * g.t..][..keys];
                let dy = g.output(self.dy, e, i, h);
                let dp = &mut dp[..keys];
                g.dots(dy, self.kvs, g.v, e, h, dp);
                let mut through = 0.0;
                for (j, (&p, &dp)) in p.iter().zip(&*dp).enumerate() {
                    axpy(p, dy, g.head(dv[j], h));
                    through = p.mul_add(dp, through);
                }
                let q = g.query(self.qs, e, i, h);
                let dq = g.head(dq, h);
                for (j, (&p, &dp)) in p.iter().zip(&*dp).enumerate() {
                    let ds = p * (dp - through) / g.scale;
                    axpy(ds, g.key(self.kvs, e, j, h), dq);
                    axpy(ds, q, g.head(dk[j], h));
                }
            }
        }
    }
}
