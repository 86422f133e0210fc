//! LayerNorm as one operation on the CPU backend (Flex), forward and backward, computing every
//! element with the same float32 operations, in the same order, as the composite it replaces
//! ([`super::composite`] and burn's autodiff of it), so that results are bit for bit
//! the same.
//!
//! Why: composed of tensor ops, a LayerNorm is 7 passes over the activation forward and about
//! 20 backward, each with its own output allocation and autodiff node: about 12 ms of the 1M
//! rung's 90 ms step on an AVX-512 Xeon (docs/performance.md). Here it is 2 passes forward and 2
//! backward, plus the row reductions, which are Flex's own (`sum_dim`, `mean_dim`) on the same
//! intermediate tensors so that their summation order is unchanged.
//!
//! The row mean is an operation of its own ([`LayerNormBackend::row_mean`]), a node where the
//! composite's `x.mean_dim(2)` was, so that the gradient reaching `x` arrives in the same two
//! parts, in the same order, as before (floating-point addition is not associative, and `x` has
//! other consumers: the residual); its backward writes in one pass what burn's writes in three.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Flex, backend_extension};
use burn::tensor::{DType, Scalar, Shape};
use burn_flex::FlexTensor;

use crate::cpu::{Fresh, Row, RowPass, contiguous, dims, f32s, pass};

type FloatTensor<B> = burn::backend::tensor::FloatTensor<B>;

/// The LayerNorm of [`super::composite`] as one backend operation, and the row mean it takes.
#[backend_extension(Flex, Autodiff)]
pub trait LayerNormBackend: Backend {
    /// `x.mean_dim(2)` of `x` `[models, rows, d]`, with a backward that writes its gradient in
    /// one pass (burn's fills a tensor of ones, scales it, then multiplies).
    fn row_mean(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `((x - mean) * (1 / sqrt(var + 1e-5))) * gamma + beta` over the last axis of `x`
    /// `[models, rows, d]`, with `mean = x.mean_dim(2)` `[models, rows, 1]` and `var` the mean
    /// of the squared deviations; `gamma`, `beta`: `[models, 1, d]`.
    fn centred_layer_norm(
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl LayerNormBackend for Flex {
    fn row_mean(x: FlexTensor) -> FlexTensor {
        Flex::float_mean_dim(x, 2)
    }

    fn centred_layer_norm(
        x: FlexTensor,
        mean: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
    ) -> FlexTensor {
        forward(x, mean, gamma, beta).0
    }
}

impl<C: CheckpointStrategy> LayerNormBackend for Autodiff<Flex, C> {
    fn row_mean(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = RowMeanBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        let x = Self::inner(x);
        let d = dims(&x)[2];
        match prep {
            OpsKind::Tracked(prep) => prep.finish(d, Flex::float_mean_dim(x, 2)),
            OpsKind::UnTracked(prep) => prep.finish(Flex::float_mean_dim(x, 2)),
        }
    }

    fn centred_layer_norm(
        x: FloatTensor<Self>,
        mean: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        // Parents in the order the composite's first op (`x - mean`) and its gain and shift
        // would list them; the node's depth is that of `x - mean`, one below the mean's.
        let prep = LayerNormBackward
            .prepare::<C>([x.node(), mean.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, mean) = (Self::inner(x), Self::inner(mean));
        let (gamma, beta) = (Self::inner(gamma), Self::inner(beta));
        match prep {
            OpsKind::Tracked(prep) => {
                let (y, saved) = forward(x, mean, gamma, beta);
                prep.finish(saved, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(x, mean, gamma, beta).0),
        }
    }
}

/// What the backward needs: the centred input, the per-row `var + eps`, its square root and
/// reciprocal (`[models, rows, 1]`), and the gain.
#[derive(Debug, Clone)]
struct Saved {
    centred: FlexTensor,
    var_eps: FlexTensor,
    std: FlexTensor,
    inv_std: FlexTensor,
    gamma: FlexTensor,
}

fn forward(
    x: FlexTensor,
    mean: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
) -> (FlexTensor, Saved) {
    let x = contiguous(x);
    let [m, n, d] = dims(&x);
    let (gamma, mean) = (contiguous(gamma), contiguous(mean));
    let beta = contiguous(beta);
    let (xs, means) = (f32s(&x), f32s(&mean));

    // `centred = x - mean`, `squares = centred * centred` (the composite's `square()` is
    // `powi(2)`, which autodiff records as `centred * centred`).
    let mut centred = Fresh::new(m * n * d);
    let mut squares = Fresh::new(m * n * d);
    pass(
        &Centre { xs, means, d },
        [centred.slice(), squares.slice()],
        [d; 2],
    );
    // SAFETY (both): `pass` visits every row and `Centre` writes every element of each.
    let centred = unsafe { centred.into_tensor([m, n, d]) };
    let squares = unsafe { squares.into_tensor([m, n, d]) };

    // The row statistics, by the composite's own ops on `[models, rows, 1]`.
    let var = Flex::float_mean_dim(squares, 2);
    let var_eps = Flex::float_add_scalar(var, Scalar::new(1e-5, &DType::F32));
    let std = Flex::float_sqrt(var_eps.clone());
    let inv_std = Flex::float_recip(std.clone());

    // `y = ((centred * inv_std) * gamma) + beta`.
    let (cs, is) = (f32s(&centred), f32s(&inv_std));
    let (gs, bs) = (f32s(&gamma), f32s(&beta));
    let mut y = Fresh::new(m * n * d);
    let scale = Scale {
        cs,
        is,
        gs,
        bs,
        n,
        d,
    };
    pass(&scale, [y.slice()], [d]);
    // SAFETY: every element written.
    let y = unsafe { y.into_tensor([m, n, d]) };
    let saved = Saved {
        centred,
        var_eps,
        std,
        inv_std,
        gamma,
    };
    (y, saved)
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 4> for LayerNormBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Saved, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let Saved {
            centred,
            var_eps,
            std,
            inv_std,
            gamma,
        } = ops.state;
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let [m, n, d] = dims(&grad);
        let [x_node, mean_node, gamma_node, beta_node] = ops.parents;

        // Through `y = q + beta`, `q = p * gamma`, `p = centred * inv_std` (burn's `Mul`
        // backward: the gradient times the other operand, summed over broadcast axes).
        let (gy, cs, is, gs) = (f32s(&grad), f32s(&centred), f32s(&inv_std), f32s(&gamma));
        let mut for_gamma = Fresh::new(m * n * d); // grad * p
        let mut for_inv_std = Fresh::new(m * n * d); // (grad * gamma) * centred
        let mut via_p = Fresh::new(m * n * d); // (grad * gamma) * inv_std
        let products = Products {
            gy,
            cs,
            is,
            gs,
            n,
            d,
        };
        let outs = [for_gamma.slice(), for_inv_std.slice(), via_p.slice()];
        pass(&products, outs, [d; 3]);
        // SAFETY (all three): every element written.
        let for_gamma = unsafe { for_gamma.into_tensor([m, n, d]) };
        let for_inv_std = unsafe { for_inv_std.into_tensor([m, n, d]) };
        let via_p = unsafe { via_p.into_tensor([m, n, d]) };
        let grad_inv_std = Flex::float_sum_dim(for_inv_std, 2);

        // Through `recip`, `sqrt`, `+ eps` and the mean of the squares, by autodiff's own ops
        // on `[models, rows, 1]`; the mean's backward is `(1/d) * sum_dim(grad)` per row.
        let grad_std = Flex::float_mul(
            grad_inv_std,
            Flex::float_neg(Flex::float_powi_scalar(std, (-2).into())),
        );
        let grad_var = Flex::float_mul(
            grad_std,
            Flex::float_div_scalar(Flex::float_powf_scalar(var_eps, (-0.5).into()), 2f32.into()),
        );
        let row_shape = Shape::from(vec![m, n, 1]);
        let ones = Flex::float_ones(row_shape, &Default::default(), DType::F32.into());
        let per_square = Flex::float_mul(
            Flex::float_mul_scalar(ones, (1_f64 / d as f64).into()),
            Flex::float_sum_dim(grad_var, 2),
        );

        // Through `squares = centred * centred`: the gradient reaches `centred` once from `p`
        // and twice from the square, accumulated as autodiff does (`new + old`).
        let (vp, ps) = (f32s(&via_p), f32s(&per_square));
        let mut grad_centred = Fresh::new(m * n * d);
        let sum = CentredGrad { vp, cs, ps, d };
        pass(&sum, [grad_centred.slice()], [d]);
        // SAFETY: every element written.
        let grad_centred = unsafe { grad_centred.into_tensor([m, n, d]) };

        // Through `centred = x - mean`: `x` gets the gradient, the mean its negated row sums
        // (the composite took `sum_dim(neg(grad))`: the same, as negation commutes with
        // rounding, but for the sign of a row sum that is exactly zero).
        if let Some(node) = mean_node {
            let sums = Flex::float_sum_dim(grad_centred.clone(), 2);
            grads.register::<Flex>(node.id, Flex::float_neg(sums));
        }
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, grad_centred);
        }
        if let Some(node) = gamma_node {
            grads.register::<Flex>(node.id, Flex::float_sum_dim(for_gamma, 1));
        }
        if let Some(node) = beta_node {
            grads.register::<Flex>(node.id, Flex::float_sum_dim(grad, 1));
        }
    }
}

#[derive(Debug)]
struct RowMeanBackward;

impl Backward<Flex, 1> for RowMeanBackward {
    /// The row length `d`.
    type State = usize;

    fn backward(self, ops: Ops<usize, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let [node] = ops.parents;
        let Some(node) = node else { return };
        // burn's `MeanDim` backward: `(ones * (1/d)) * sum_dim(grad, 2)`, whose elements are
        // `(1/d as f32) * row` with `row` the sum over the one-element axis, as here.
        let rows = contiguous(Flex::float_sum_dim(grad, 2));
        let [m, n, _] = dims(&rows);
        let scale = (1_f64 / d as f64) as f32;
        let mut out = Fresh::new(m * n * d);
        pass(
            &Spread {
                rows: f32s(&rows),
                scale,
            },
            [out.slice()],
            [d],
        );
        // SAFETY: every element written.
        grads.register::<Flex>(node.id, unsafe { out.into_tensor([m, n, d]) });
    }
}

/// Each row's value times `scale`, over the row.
struct Spread<'a> {
    rows: &'a [f32],
    scale: f32,
}

impl RowPass<1> for Spread<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [out]: [Row; 1]) {
        let v = self.scale * self.rows[r];
        for o in out.iter_mut() {
            o.write(v);
        }
    }
}

/// `centred = x - mean`, `squares = centred * centred`.
struct Centre<'a> {
    xs: &'a [f32],
    means: &'a [f32],
    d: usize,
}

impl RowPass<2> for Centre<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [c, s]: [Row; 2]) {
        let a = self.means[r];
        for ((c, s), &x) in c.iter_mut().zip(s).zip(&self.xs[r * self.d..][..self.d]) {
            let v = x - a;
            c.write(v);
            s.write(v * v);
        }
    }
}

/// `y = ((centred * inv_std) * gamma) + beta`.
struct Scale<'a> {
    cs: &'a [f32],
    is: &'a [f32],
    gs: &'a [f32],
    bs: &'a [f32],
    n: usize,
    d: usize,
}

impl RowPass<1> for Scale<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [y]: [Row; 1]) {
        let (d, i, k) = (self.d, self.is[r], r / self.n);
        let (g, b) = (&self.gs[k * d..][..d], &self.bs[k * d..][..d]);
        for (((y, &c), &g), &b) in y.iter_mut().zip(&self.cs[r * d..][..d]).zip(g).zip(b) {
            y.write(c * i * g + b);
        }
    }
}

/// The backward's products through `y = q + beta`, `q = p * gamma`, `p = centred * inv_std`:
/// `grad * p` (for gamma), `(grad * gamma) * centred` (for inv_std), `(grad * gamma) * inv_std`
/// (for centred).
struct Products<'a> {
    gy: &'a [f32],
    cs: &'a [f32],
    is: &'a [f32],
    gs: &'a [f32],
    n: usize,
    d: usize,
}

impl RowPass<3> for Products<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [tg, ti, gc]: [Row; 3]) {
        let (d, i) = (self.d, self.is[r]);
        let (g_r, c_r) = (&self.gy[r * d..][..d], &self.cs[r * d..][..d]);
        let gam = &self.gs[(r / self.n) * d..][..d];
        let outs = tg.iter_mut().zip(ti).zip(gc);
        for ((((tg, ti), gc), (&g, &c)), &gam) in outs.zip(g_r.iter().zip(c_r)).zip(gam) {
            let gp = g * gam;
            tg.write(g * (c * i));
            ti.write(gp * c);
            gc.write(gp * i);
        }
    }
}

/// The gradient reaching `centred`: from `p` (`vp`), then twice from the square
/// (`t = per_square * centred`), added as autodiff registers them (`new + old`).
struct CentredGrad<'a> {
    vp: &'a [f32],
    cs: &'a [f32],
    ps: &'a [f32],
    d: usize,
}

impl RowPass<1> for CentredGrad<'_> {
    #[inline(always)]
    fn row(&self, r: usize, [out]: [Row; 1]) {
        let (d, s) = (self.d, self.ps[r]);
        let rows = self.vp[r * d..][..d].iter().zip(&self.cs[r * d..][..d]);
        for (o, (&v, &c)) in out.iter_mut().zip(rows) {
            let t = s * c;
            o.write(t + (t + v));
        }
    }
}
