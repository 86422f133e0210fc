//! AdamW's update of one parameter on the CPU backend (Flex) as one pass: it reads the
//! parameter, its gradient and both moments once and writes the three new values, where the
//! composite in `optim.rs` is fourteen element-wise operations over the parameter (each a pass
//! with its own output, the per-model columns broadcast). Every element goes through the
//! composite's float32 operations in the composite's order (Rust never fuses `a * b + c`, and
//! `powf_scalar(2.0)` is Flex's `g * g`), so the results are bit for bit the composite's.

use std::mem::MaybeUninit;

use burn::backend::{Backend, Flex, backend_extension};
use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

type FloatTensor<B> = burn::backend::tensor::FloatTensor<B>;

/// A model's hyperparameters for one step, in the order of a row of the `hyper` tensor.
pub const HYPER: usize = 8;

/// AdamW's update as one backend operation.
#[backend_extension(Flex)]
pub trait AdamBackend: Backend {
    /// The parameter, first and second moments after one step, as `[3, models, n]`, from the
    /// parameter, its gradient and the moments `[models, n]` and each model's
    /// `[beta1, 1 - beta1, beta2, 1 - beta2, 1 / sqrt(1 - beta2^t), eps, step size, decay]`
    /// (`hyper`, `[models, HYPER]`).
    fn adamw(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        hyper: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl AdamBackend for Flex {
    fn adamw(
        param: FlexTensor,
        grad: FlexTensor,
        first: FlexTensor,
        second: FlexTensor,
        hyper: FlexTensor,
    ) -> FlexTensor {
        let [models, n] = dims(&param);
        let (ps, gs) = (values(&param), values(&grad));
        let (ms, vs, hs) = (values(&first), values(&second), values(&hyper));
        assert!(gs.len() == ps.len() && ms.len() == ps.len() && vs.len() == ps.len());
        assert_eq!(hs.len(), models * HYPER);
        let mut out: Vec<f32> = Vec::with_capacity(3 * models * n);
        let (p_out, rest) = out.spare_capacity_mut()[..3 * models * n].split_at_mut(models * n);
        let (m_out, v_out) = rest.split_at_mut(models * n);
        // Pieces of at least 16k elements, never across two models.
        const PIECE: usize = 1 << 14;
        let pieces = p_out
            .chunks_mut(n)
            .zip(m_out.chunks_mut(n))
            .zip(v_out.chunks_mut(n))
            .enumerate()
            .flat_map(|(k, ((p, m), v))| {
                p.chunks_mut(PIECE)
                    .zip(m.chunks_mut(PIECE))
                    .zip(v.chunks_mut(PIECE))
                    .enumerate()
                    .map(move |(c, ((p, m), v))| (k, k * n + c * PIECE, p, m, v))
            })
            .collect::<Vec<_>>();
        pieces.into_par_iter().for_each(|(k, at, p, m, v)| {
            let hyper: &[f32; HYPER] = hs[k * HYPER..][..HYPER].try_into().expect("a row");
            update(hyper, &ps[at..], &gs[at..], &ms[at..], &vs[at..], p, m, v);
        });
        // SAFETY: every element of the three parts written by `update` (pieces cover them).
        unsafe { out.set_len(3 * models * n) };
        FlexTensor::new(
            Bytes::from_elems(out),
            Layout::contiguous(Shape::from(vec![3, models, n])),
            DType::F32,
        )
    }
}

/// One piece: the composite's `m = m * b1 + g * c1`, `v = v * b2 + (g * g) * c2`,
/// `p = p * decay - m / (sqrt(v) * ib2 + eps) * step`.
#[allow(clippy::too_many_arguments)]
fn update(
    hyper: &[f32; HYPER],
    ps: &[f32],
    gs: &[f32],
    ms: &[f32],
    vs: &[f32],
    p_out: &mut [MaybeUninit<f32>],
    m_out: &mut [MaybeUninit<f32>],
    v_out: &mut [MaybeUninit<f32>],
) {
    let &[b1, c1, b2, c2, ib2, eps, step, decay] = hyper;
    let len = p_out.len();
    let ins = ps[..len]
        .iter()
        .zip(&gs[..len])
        .zip(&ms[..len])
        .zip(&vs[..len]);
    let outs = p_out.iter_mut().zip(m_out.iter_mut()).zip(v_out.iter_mut());
    for ((((&p, &g), &m), &v), ((p_out, m_out), v_out)) in ins.zip(outs) {
        let m = m * b1 + g * c1;
        let v = v * b2 + (g * g) * c2;
        let denom = v.sqrt() * ib2 + eps;
        p_out.write(p * decay - m / denom * step);
        m_out.write(m);
        v_out.write(v);
    }
}

fn dims(t: &FlexTensor) -> [usize; 2] {
    let shape = t.layout().shape();
    assert_eq!(shape.num_dims(), 2, "AdamW takes [models, n]");
    [shape[0], shape[1]]
}

/// A float32 tensor's elements in order: its own storage when contiguous (a view at an offset
/// included, as the moments are: parts of the previous step's output), else a copy.
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    assert_eq!(t.dtype(), DType::F32, "AdamW on the CPU is float32 only");
    let len = t.layout().num_elements();
    let own = |t: &FlexTensor| t.storage::<f32>()[t.layout().start_offset()..][..len].to_vec();
    if t.is_contiguous() {
        std::borrow::Cow::Borrowed(&t.storage::<f32>()[t.layout().start_offset()..][..len])
    } else {
        std::borrow::Cow::Owned(own(&t.to_contiguous()))
    }
}
