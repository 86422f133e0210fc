//! LayerNorm as one operation on the CPU backend (Flex), forward and backward, each a single
//! pass over the rows that sums inside the pass.
//!
//! Why: composed of tensor ops, a LayerNorm is 7 passes over the activation forward and about
//! 20 backward, each with its own output allocation and autodiff node: about 12 ms of the 1M
//! rung's 90 ms step on an AVX-512 Xeon (docs/performance.md). What is left of its cost is
//! memory traffic (about 0.2 ms per pass over a 2816 x 144 activation there), so here the
//! forward reads `x` and writes `y` (plus two numbers per row), and the backward reads the
//! gradient and `x` and writes the input's gradient (plus a row of partial sums per piece of
//! rows for the gain's and shift's).
//!
//! The arithmetic is the composite's, in another order: row sums in eight lanes, then the rest,
//! the gain's and shift's sums over rows by pieces of [`ROWS`] rows added in piece order. So
//! results are close to the composite's (the tests bound the difference), not bit for bit, and
//! the same whatever the threads and vector width.

use std::mem::MaybeUninit;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, backend_extension};
use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

use crate::cpu::{
    Fresh, ROWS, Row, RowPass, Wide, contiguous, dims, dot, dot_centred, f32s, pass, sum, wide,
};

type FloatTensor<B> = burn::backend::tensor::FloatTensor<B>;

/// LayerNorm as one backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait LayerNormBackend: Backend {
    /// `(x - mean) / sqrt(var + 1e-5) * gamma + beta` over the last axis of `x`
    /// `[models, rows, d]`, with the biased variance; `gamma`, `beta`: `[models, 1, d]`.
    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl LayerNormBackend for Flex {
    fn layer_norm(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor) -> FlexTensor {
        forward(x, gamma, beta).0
    }
}

impl<C: CheckpointStrategy> LayerNormBackend for Autodiff<Flex, C> {
    fn layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let prep = LayerNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma, beta) = (Self::inner(x), Self::inner(gamma), Self::inner(beta));
        match prep {
            OpsKind::Tracked(prep) => {
                let (y, saved) = forward(x, gamma, beta);
                prep.finish(saved, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(x, gamma, beta).0),
        }
    }
}

/// PyTorch's default.
const EPS: f32 = 1e-5;

/// What the backward needs: the input, each row's mean and `1 / sqrt(var + eps)`
/// (interleaved, `[rows, 2]`), and the gain.
#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    stats: Vec<f32>,
    gamma: FlexTensor,
}

fn forward(x: FlexTensor, gamma: FlexTensor, beta: FlexTensor) -> (FlexTensor, Saved) {
    let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let [m, n, d] = dims(&x);
    let mut y = Fresh::new(m * n * d);
    let mut stats = vec![0.0; m * n * 2];
    let kernel = Normalize {
        xs: f32s(&x),
        gs: f32s(&gamma),
        bs: f32s(&beta),
        n,
        d,
    };
    // SAFETY: an initialized f32 is a valid `MaybeUninit<f32>`, of the same layout.
    let stats_out =
        unsafe { &mut *(stats.as_mut_slice() as *mut [f32] as *mut [MaybeUninit<f32>]) };
    pass(&kernel, [y.slice(), stats_out], [d, 2]);
    // SAFETY: `pass` visits every row and `Normalize` writes every element of each.
    let y = unsafe { y.into_tensor([m, n, d]) };
    (y, Saved { x, stats, gamma })
}

/// Each row: its mean and variance (centred values parked in the output row), then
/// `y = (x - mean) * inv_std * gamma + beta`.
struct Normalize<'a> {
    xs: &'a [f32],
    gs: &'a [f32],
    bs: &'a [f32],
    /// Rows per model: row `r` takes model `r / n`'s gain and shift.
    n: usize,
    d: usize,
}

impl RowPass<2> for Normalize<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [y, stats]: [Row; 2]) {
        let (d, k) = (self.d, r / self.n);
        let x = &self.xs[r * d..][..d];
        let (g, b) = (&self.gs[k * d..][..d], &self.bs[k * d..][..d]);
        let y = crate::cpu::zeroed(y);
        let mean = sum(x) / d as f32;
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x - mean;
        }
        let inv_std = 1.0 / (dot(y, y) / d as f32 + EPS).sqrt();
        for ((y, &g), &b) in y.iter_mut().zip(g).zip(b) {
            *y = (*y * inv_std).mul_add(g, b);
        }
        stats[0].write(mean);
        stats[1].write(inv_std);
    }
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved { x, stats, gamma } = ops.state;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let [m, n, d] = dims(&grad);
        let mut dx = Fresh::new(m * n * d);
        let (gy, xs, gs) = (f32s(&grad), f32s(&x), f32s(&gamma));
        // Pieces of whole rows of one model each, so that each piece's partial sums of the
        // gain's and shift's gradients belong to one model.
        let pieces_per_model = n.div_ceil(ROWS);
        let pieces: Vec<_> = dx
            .slice()
            .chunks_mut(d * n)
            .flat_map(|model| model.chunks_mut(d * ROWS))
            .enumerate()
            .collect();
        assert_eq!(pieces.len(), m * pieces_per_model);
        let partials: Vec<Vec<f32>> = pieces
            .into_par_iter()
            .map(|(p, out)| {
                let (model, first) = (p / pieces_per_model, (p % pieces_per_model) * ROWS);
                let mut partial = vec![0.0; 2 * d];
                wide(Gradient {
                    gy,
                    xs,
                    gamma: &gs[model * d..][..d],
                    stats: &stats,
                    first: model * n + first,
                    d,
                    out,
                    partial: &mut partial,
                });
                partial
            })
            .collect();
        // SAFETY: every row of every piece written by `Gradient`.
        let dx = unsafe { dx.into_tensor([m, n, d]) };
        // Each model's sums over its pieces, in piece order.
        let mut dgamma = vec![0.0; m * d];
        let mut dbeta = vec![0.0; m * d];
        for (p, partial) in partials.iter().enumerate() {
            let model = p / pieces_per_model;
            let (pg, pb) = partial.split_at(d);
            for (s, v) in dgamma[model * d..][..d].iter_mut().zip(pg) {
                *s += v;
            }
            for (s, v) in dbeta[model * d..][..d].iter_mut().zip(pb) {
                *s += v;
            }
        }
        let [x_node, gamma_node, beta_node] = ops.parents;
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, tensor(dgamma, [m, 1, d]));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, tensor(dbeta, [m, 1, d]));
        }
    }
}

/// The input's gradient for a piece of rows of one model, and the piece's sums of
/// `grad * x_hat` (the gain's gradient) and `grad` (the shift's). With `x_hat` the normalized
/// row and `g = grad * gamma`: `dx = inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`.
struct Gradient<'a, 'o> {
    gy: &'a [f32],
    xs: &'a [f32],
    /// The model's gain `[d]`.
    gamma: &'a [f32],
    stats: &'a [f32],
    /// The piece's first row.
    first: usize,
    d: usize,
    out: Row<'o>,
    /// `[d]` for the gain, then `[d]` for the shift.
    partial: &'a mut [f32],
}

impl Wide for Gradient<'_, '_> {
    #[inline(always)]
    fn run(self) {
        let d = self.d;
        let (pg, pb) = self.partial.split_at_mut(d);
        for (i, out) in self.out.chunks_mut(d).enumerate() {
            let r = self.first + i;
            let (gy, x) = (&self.gy[r * d..][..d], &self.xs[r * d..][..d]);
            let (mean, inv_std) = (self.stats[2 * r], self.stats[2 * r + 1]);
            // `g` parked in the output row.
            let g = crate::cpu::zeroed(out);
            for ((((g, &gy), &x), &gamma), (pg, pb)) in g
                .iter_mut()
                .zip(gy)
                .zip(x)
                .zip(self.gamma)
                .zip(pg.iter_mut().zip(pb.iter_mut()))
            {
                *g = gy * gamma;
                *pg = gy.mul_add((x - mean) * inv_std, *pg);
                *pb += gy;
            }
            let mean_g = sum(g) / d as f32;
            // mean(g * x_hat), `inv_std` taken out of the sum.
            let mean_gx = dot_centred(g, x, mean) * inv_std / d as f32;
            for (g, &x) in g.iter_mut().zip(x) {
                let x_hat = (x - mean) * inv_std;
                *g = inv_std * (*g - mean_g - x_hat * mean_gx);
            }
        }
    }
}

fn tensor(values: Vec<f32>, shape: [usize; 3]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(shape.to_vec())),
        DType::F32,
    )
}
