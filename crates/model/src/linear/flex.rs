//! A linear layer's bias (and the ReLU after it, in the MLP) as one operation on the CPU
//! backend (Flex), forward and backward.
//!
//! Why: composed of tensor ops, `relu(x @ w + b)` is the product, then a broadcast add and a
//! ReLU that each read the whole output and write a new one; backward, ReLU's mask writes one
//! more and the bias's gradient (a sum over rows) reads it again on one thread. On the 1M rung
//! (an AVX-512 Xeon, docs/performance.md) those passes, with the residual adds that share the
//! broadcast add's code, were about 9% of the step. Here the
//! forward adds the bias and applies the ReLU in place, in the product's output, and the
//! backward masks the gradient in place and sums it over rows in the same pass.
//!
//! The arithmetic is the composite's, in its order: one addition per element forward, and
//! each column of the bias's gradient summed row after row from zero, as Flex's `sum_dim`
//! does. So results are the composite's bit for bit. The backward runs columns in bands on
//! rayon's threads (a band's rows in order) rather than rows in pieces, for that reason.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, backend_extension};
use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

use crate::cpu::{ROWS, Wide, contiguous, dims, f32s, wide};

type FloatTensor<B> = burn::backend::tensor::FloatTensor<B>;

/// A bias, and optionally a ReLU, as one backend operation.
#[backend_extension(Flex, Autodiff)]
pub trait BiasBackend: Backend {
    /// `y + bias`, then `relu` of that where `relu` is set; `y` `[models, rows, d]`, `bias`
    /// `[models, 1, d]`.
    fn add_bias(y: FloatTensor<Self>, bias: FloatTensor<Self>, relu: bool) -> FloatTensor<Self>;
}

impl BiasBackend for Flex {
    fn add_bias(y: FlexTensor, bias: FlexTensor, relu: bool) -> FlexTensor {
        forward(y, bias, relu)
    }
}

impl<C: CheckpointStrategy> BiasBackend for Autodiff<Flex, C> {
    fn add_bias(y: FloatTensor<Self>, bias: FloatTensor<Self>, relu: bool) -> FloatTensor<Self> {
        let prep = BiasBackward
            .prepare::<C>([y.node(), bias.node()])
            .compute_bound()
            .stateful();
        let (y, bias) = (Self::inner(y), Self::inner(bias));
        match prep {
            OpsKind::Tracked(prep) => {
                let z = forward(y, bias, relu);
                // ReLU's backward reads its output (where it is positive); the bias's nothing.
                prep.finish(relu.then(|| z.clone()), z)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(y, bias, relu)),
        }
    }
}

/// ReLU as Flex's: NaN passes through, as PyTorch's does.
#[inline(always)]
fn positive(x: f32) -> bool {
    x.is_nan() || x > 0.0
}

fn forward(y: FlexTensor, bias: FlexTensor, relu: bool) -> FlexTensor {
    let bias = contiguous(bias);
    // The product's output is normally held by nobody else: then the sum is written over it.
    let mut z = contiguous(y);
    let [m, n, d] = dims(&z);
    let bias = &f32s(&bias)[..m * d];
    let zs = &mut z.storage_mut::<f32>()[..m * n * d];
    zs.par_chunks_mut(d * ROWS)
        .enumerate()
        .for_each(|(p, rows)| {
            wide(AddBias {
                rows,
                first: p * ROWS,
                n,
                d,
                bias,
                relu,
            })
        });
    z
}

/// `row += bias` (then ReLU) for a piece of rows, the first of them row `first`.
struct AddBias<'a> {
    rows: &'a mut [f32],
    first: usize,
    /// Rows per model: row `r` takes model `r / n`'s bias.
    n: usize,
    d: usize,
    bias: &'a [f32],
    relu: bool,
}

impl Wide for AddBias<'_> {
    #[inline(always)]
    fn run(self) {
        let d = self.d;
        for (i, row) in self.rows.chunks_mut(d).enumerate() {
            let bias = &self.bias[(self.first + i) / self.n * d..][..d];
            if self.relu {
                for (y, &b) in row.iter_mut().zip(bias) {
                    let v = *y + b;
                    *y = if positive(v) { v } else { 0.0 };
                }
            } else {
                for (y, &b) in row.iter_mut().zip(bias) {
                    *y += b;
                }
            }
        }
    }
}

#[derive(Debug)]
struct BiasBackward;

impl Backward<Flex, 2> for BiasBackward {
    /// The ReLU's output, if there is a ReLU.
    type State = Option<FlexTensor>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let mut grad = contiguous(grads.consume::<Flex>(&ops.node));
        let [m, n, d] = dims(&grad);
        let width = band_width(d);
        let bands = d.div_ceil(width);
        let mut dbias = vec![0.0; m * d];
        match ops.state {
            None => {
                let gs = &f32s(&grad)[..m * n * d];
                outs(&mut dbias, d, width)
                    .into_par_iter()
                    .enumerate()
                    .for_each(|(job, out)| {
                        let (model, first) = (job / bands, job % bands * width);
                        wide(ColumnSums {
                            grad: &gs[model * n * d..][..n * d],
                            d,
                            first,
                            out,
                        })
                    });
            }
            Some(z) => {
                let z = contiguous(z);
                let zs = &f32s(&z)[..m * n * d];
                // Each band's segment of every row, in row order: the bands are disjoint,
                // so they are written in parallel.
                let mut segments: Vec<Vec<&mut [f32]>> =
                    (0..m * bands).map(|_| Vec::with_capacity(n)).collect();
                let gs = &mut grad.storage_mut::<f32>()[..m * n * d];
                for (r, row) in gs.chunks_mut(d).enumerate() {
                    for (b, segment) in row.chunks_mut(width).enumerate() {
                        segments[r / n * bands + b].push(segment);
                    }
                }
                segments
                    .into_par_iter()
                    .zip(outs(&mut dbias, d, width))
                    .enumerate()
                    .for_each(|(job, (rows, out))| {
                        let (model, first) = (job / bands, job % bands * width);
                        wide(MaskedColumnSums {
                            rows,
                            z: &zs[model * n * d..][..n * d],
                            d,
                            first,
                            out,
                        })
                    });
            }
        }
        let [y_node, bias_node] = ops.parents;
        if let Some(node) = bias_node {
            let dbias = FlexTensor::new(
                Bytes::from_elems(dbias),
                Layout::contiguous(Shape::from(vec![m, 1, d])),
                DType::F32,
            );
            grads.register::<Flex>(node.id, dbias);
        }
        if let Some(node) = y_node {
            grads.register::<Flex>(node.id, grad);
        }
    }
}

/// Columns per band of the backward: a few bands per thread, each a whole number of
/// AVX-512 vectors.
fn band_width(d: usize) -> usize {
    let bands = 4 * rayon::current_num_threads();
    d.div_ceil(bands).next_multiple_of(16).min(d)
}

/// Each band of each model's row of `dbias` `[models * d]`, in the order of the jobs.
fn outs(dbias: &mut [f32], d: usize, width: usize) -> Vec<&mut [f32]> {
    dbias
        .chunks_mut(d)
        .flat_map(|model| model.chunks_mut(width))
        .collect()
}

/// The sums over rows of columns `first..first + out.len()` of one model's gradient
/// `grad` `[rows, d]`, row after row.
struct ColumnSums<'a> {
    grad: &'a [f32],
    d: usize,
    first: usize,
    out: &'a mut [f32],
}

impl Wide for ColumnSums<'_> {
    #[inline(always)]
    fn run(self) {
        let w = self.out.len();
        for row in self.grad.chunks_exact(self.d) {
            for (s, g) in self.out.iter_mut().zip(&row[self.first..][..w]) {
                *s += g;
            }
        }
    }
}

/// ReLU's backward on one band of one model's rows (`rows`: each row's segment, in order),
/// zeroing the gradient where the output `z` `[rows, d]` was not positive, and the band's
/// sums over rows of what is left.
struct MaskedColumnSums<'a, 'g> {
    rows: Vec<&'g mut [f32]>,
    z: &'a [f32],
    d: usize,
    first: usize,
    out: &'a mut [f32],
}

impl Wide for MaskedColumnSums<'_, '_> {
    #[inline(always)]
    fn run(self) {
        let w = self.out.len();
        for (grad, z) in self.rows.into_iter().zip(self.z.chunks_exact(self.d)) {
            for ((g, &z), s) in grad
                .iter_mut()
                .zip(&z[self.first..][..w])
                .zip(&mut *self.out)
            {
                if !positive(z) {
                    *g = 0.0;
                }
                *s += *g;
            }
        }
    }
}
