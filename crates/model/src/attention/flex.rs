//! Causal attention as one operation on the CPU backend (Flex), forward and backward, one
//! example (all its heads) at a time.
//!
//! Why: composed of tensor ops, attention over the lab's short contexts is two batched
//! products forward and four backward of tiny matrices (11 x 36 by 36 x 11 per example and
//! head at the 1M rung: gemm's setup per matrix costs several times its arithmetic), a scale, a
//! mask and a five-op softmax with a dozen backward ops, and copies that split the heads out and
//! merge them back. An ablation on an AVX-512 Xeon (docs/performance.md) put all that at 7-11 ms
//! of the 1M rung's ~85 ms step. Here it is one pass forward and one backward over the examples,
//! reading the projections where they are (head `h` is columns `h * hd..` of each row), and
//! each query visits only the keys it may see (the composite scores all of them, then masks).
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

use crate::cpu::{Fresh, Row, RowPass, axpy, contiguous, dims, dot, f32s, pass, zeroed};

type FloatTensor<B> = burn::backend::tensor::FloatTensor<B>;

/// Causal attention as one backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait AttentionBackend: Backend {
    /// `softmax(q k^T / sqrt(hd)) v` per example and head, each query over the keys at its
    /// position and before. `q` `[models, batch * tq, d]` holds the queries of each example's
    /// last `tq` positions, `k` and `v` `[models, batch * t, d]` the keys and values of all
    /// `t`; head `h` is columns `h * hd..(h + 1) * hd`. Output: like `q`.
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        n_head: usize,
        batch: usize,
    ) -> FloatTensor<Self>;
}

impl AttentionBackend for Flex {
    fn causal_attention(
        q: FlexTensor,
        k: FlexTensor,
        v: FlexTensor,
        n_head: usize,
        batch: usize,
    ) -> FlexTensor {
        forward(q, k, v, n_head, batch).0
    }
}

impl<C: CheckpointStrategy> AttentionBackend for Autodiff<Flex, C> {
    fn causal_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        n_head: usize,
        batch: usize,
    ) -> FloatTensor<Self> {
        let prep = AttentionBackward
            .prepare::<C>([q.node(), k.node(), v.node()])
            .compute_bound()
            .stateful();
        let (q, k, v) = (Self::inner(q), Self::inner(k), Self::inner(v));
        match prep {
            OpsKind::Tracked(prep) => {
                let (y, saved) = forward(q, k, v, n_head, batch);
                prep.finish(saved, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(q, k, v, n_head, batch).0),
        }
    }
}

/// Where things are: `t` positions per example, queries at the last `tq` (from `first`),
/// `n_head` heads of `hd` columns in rows of `d`.
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
}

impl Geometry {
    fn new(q: &FlexTensor, k: &FlexTensor, n_head: usize, batch: usize) -> Self {
        let ([m, rows_q, d], [mk, rows, dk]) = (dims(q), dims(k));
        assert_eq!((m, d), (mk, dk), "queries and keys of one shape");
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
        }
    }

    /// Head `h` of query `i` of example `e` in `x` `[.., examples * tq, d]`.
    #[inline(always)]
    fn query<'a>(&self, x: &'a [f32], e: usize, i: usize, h: usize) -> &'a [f32] {
        &x[(e * self.tq + i) * self.d + h * self.hd..][..self.hd]
    }

    /// Head `h` at position `j` of example `e` in `x` `[.., examples * t, d]`.
    #[inline(always)]
    fn key<'a>(&self, x: &'a [f32], e: usize, j: usize, h: usize) -> &'a [f32] {
        &x[(e * self.t + j) * self.d + h * self.hd..][..self.hd]
    }

    /// Elements of the attention weights per example: `[heads, tq, t]`.
    fn weights(&self) -> usize {
        self.n_head * self.tq * self.t
    }
}

/// What the backward needs: the inputs and the attention weights.
#[derive(Debug, Clone)]
struct Saved {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    /// `[examples, heads, tq, t]` (zero at the keys a query may not see).
    p: FlexTensor,
    g: Geometry,
}

fn forward(
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    n_head: usize,
    batch: usize,
) -> (FlexTensor, Saved) {
    let (q, k, v) = (contiguous(q), contiguous(k), contiguous(v));
    assert_eq!(dims(&k), dims(&v), "keys and values of one shape");
    let g = Geometry::new(&q, &k, n_head, batch);
    let [m, rows_q, d] = dims(&q);
    let examples = m * batch;
    let mut y = Fresh::new(m * rows_q * d);
    let mut p = Fresh::new(examples * g.weights());
    let kernel = Forward {
        q: f32s(&q),
        k: f32s(&k),
        v: f32s(&v),
        g,
    };
    pass(&kernel, [y.slice(), p.slice()], [g.tq * d, g.weights()]);
    // SAFETY (both): `pass` visits every example and `Forward` writes all of its elements.
    let y = unsafe { y.into_tensor([m, rows_q, d]) };
    let p = unsafe { p.into_tensor([examples, g.n_head * g.tq, g.t]) };
    (y, Saved { q, k, v, p, g })
}

/// One example's outputs `[tq, d]` and attention weights `[heads, tq, t]`.
struct Forward<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    g: Geometry,
}

impl RowPass<2> for Forward<'_> {
    #[inline(always)]
    fn row(&self, e: usize, [y, p]: [Row; 2]) {
        let g = &self.g;
        let (y, p) = (zeroed(y), zeroed(p));
        for h in 0..g.n_head {
            for i in 0..g.tq {
                let q = g.query(self.q, e, i, h);
                // The keys up to the query's own position; the rest keep weight 0.
                let p = &mut p[(h * g.tq + i) * g.t..][..g.first + i + 1];
                let mut max = f32::NEG_INFINITY;
                for (j, s) in p.iter_mut().enumerate() {
                    *s = dot(q, g.key(self.k, e, j, h)) / g.scale;
                    max = max.max(*s);
                }
                let mut sum = 0.0;
                for s in p.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let y = &mut y[i * g.d + h * g.hd..][..g.hd];
                for (j, s) in p.iter_mut().enumerate() {
                    *s /= sum;
                    axpy(*s, g.key(self.v, e, j, h), y);
                }
            }
        }
    }
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved { q, k, v, p, g } = ops.state;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let ([m, rows_q, d], [_, rows, _]) = (dims(&q), dims(&k));
        let mut dq = Fresh::new(m * rows_q * d);
        let mut dk = Fresh::new(m * rows * d);
        let mut dv = Fresh::new(m * rows * d);
        let kernel = Gradient {
            dy: f32s(&grad),
            q: f32s(&q),
            k: f32s(&k),
            v: f32s(&v),
            p: f32s(&p),
            g,
        };
        let outs = [dq.slice(), dk.slice(), dv.slice()];
        pass(&kernel, outs, [g.tq * d, g.t * d, g.t * d]);
        // SAFETY (all three): every element of every example written by `Gradient`.
        let dq = unsafe { dq.into_tensor([m, rows_q, d]) };
        let dk = unsafe { dk.into_tensor([m, rows, d]) };
        let dv = unsafe { dv.into_tensor([m, rows, d]) };
        let [q_node, k_node, v_node] = ops.parents;
        for (node, grad) in [(q_node, dq), (k_node, dk), (v_node, dv)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

/// One example's gradients of the queries `[tq, d]`, keys and values `[t, d]`: with `P` the
/// weights, `dV = P^T dY`, `dP = dY V^T`, the softmax's `dS = P * (dP - rowsum(P * dP))`, then
/// through the scale, `dQ = dS K / scale` and `dK = dS^T Q / scale`.
struct Gradient<'a> {
    dy: &'a [f32],
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    p: &'a [f32],
    g: Geometry,
}

impl RowPass<3> for Gradient<'_> {
    #[inline(always)]
    fn row(&self, e: usize, [dq, dk, dv]: [Row; 3]) {
        let g = &self.g;
        let (dq, dk, dv) = (zeroed(dq), zeroed(dk), zeroed(dv));
        let mut dp = vec![0.0; g.t];
        for h in 0..g.n_head {
            for i in 0..g.tq {
                let keys = g.first + i + 1;
                let p = &self.p[((e * g.n_head + h) * g.tq + i) * g.t..][..keys];
                let dy = g.query(self.dy, e, i, h);
                let mut through = 0.0;
                for (j, (&p, dp)) in p.iter().zip(&mut dp).enumerate() {
                    axpy(p, dy, &mut dv[j * g.d + h * g.hd..][..g.hd]);
                    *dp = dot(dy, g.key(self.v, e, j, h));
                    through = p.mul_add(*dp, through);
                }
                let q = g.query(self.q, e, i, h);
                let dq = &mut dq[i * g.d + h * g.hd..][..g.hd];
                for (j, (&p, &dp)) in p.iter().zip(&dp).enumerate() {
                    let ds = p * (dp - through) / g.scale;
                    axpy(ds, g.key(self.k, e, j, h), dq);
                    axpy(ds, q, &mut dk[j * g.d + h * g.hd..][..g.hd]);
                }
            }
        }
    }
}
