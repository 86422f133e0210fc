//! What the lab's own CPU operations share (LayerNorm, attention): whether a tensor is on the
//! CPU backend, passes over rows compiled for the CPU's widest vectors, and float32 buffers
//! that are written once rather than zeroed first.

use std::mem::MaybeUninit;

use burn::backend::DispatchDevice;
use burn::prelude::*;
use burn::tensor::{Bytes, DType, Shape};
use burn_flex::{FlexTensor, Layout};
use rayon::prelude::*;

/// Whether `x` lives on the CPU backend (Flex), with or without autodiff.
pub(crate) fn on_flex(x: &Tensor<3>) -> bool {
    matches!(
        x.device().without_autodiff().as_dispatch(),
        DispatchDevice::Flex(_)
    )
}

pub(crate) type Row<'a> = &'a mut [MaybeUninit<f32>];

/// One pass over the rows, writing `K` outputs, each with its own number of elements per row
/// (a LayerNorm's row is `d` elements of each output; attention's is one example's
/// positions).
pub(crate) trait RowPass<const K: usize>: Sync {
    /// Writes every element of row `r` of each output.
    fn row(&self, r: usize, out: [Row<'_>; K]);
}

/// Rows per piece of work: a piece of a few thousand elements pays for rayon's split.
pub(crate) const ROWS: usize = 32;

/// `kernel.row` for every row of `outs` (output `k` has `widths[k]` elements per row), in
/// pieces of [`ROWS`] rows on rayon's threads.
pub(crate) fn pass<const K: usize>(
    kernel: &impl RowPass<K>,
    outs: [&mut [MaybeUninit<f32>]; K],
    widths: [usize; K],
) {
    let n_rows = outs[0].len() / widths[0];
    for (out, width) in outs.iter().zip(widths) {
        assert_eq!(out.len(), n_rows * width, "outputs of unequal rows");
    }
    let mut width = widths.into_iter();
    let mut chunks = outs.map(|o| o.chunks_mut(width.next().expect("a width") * ROWS));
    let pieces: Vec<[Row; K]> = (0..n_rows.div_ceil(ROWS))
        .map(|_| std::array::from_fn(|k| chunks[k].next().expect("equal rows")))
        .collect();
    pieces.into_par_iter().enumerate().for_each(|(p, piece)| {
        wide(Rows {
            kernel,
            first: p * ROWS,
            piece,
            widths,
        })
    });
}

/// The rows of one piece of a [`pass`], the first of them row `first`.
struct Rows<'a, 'k, P, const K: usize> {
    kernel: &'k P,
    first: usize,
    piece: [Row<'a>; K],
    widths: [usize; K],
}

impl<P: RowPass<K>, const K: usize> Wide for Rows<'_, '_, P, K> {
    #[inline(always)]
    fn run(self) {
        let n_rows = self.piece[0].len() / self.widths[0];
        let mut width = self.widths.into_iter();
        let mut rows = self
            .piece
            .map(|o| o.chunks_mut(width.next().expect("a width")));
        for r in self.first..self.first + n_rows {
            self.kernel.row(
                r,
                std::array::from_fn(|k| rows[k].next().expect("whole rows")),
            );
        }
    }
}

/// Work to compile for the widest vectors the CPU has ([`wide`]). `run` must be
/// `#[inline(always)]`, and so must what it calls, for the loops to be compiled inside
/// [`wide`]'s target features (a closure would not be: the reason for a trait).
pub(crate) trait Wide {
    fn run(self);
}

/// `work.run()` compiled for the widest vectors this CPU has. The crate is built for baseline
/// x86-64 (SSE2), while Flex's own kernels pick AVX2 or AVX-512 at run time; these loops are
/// only as fast as theirs when compiled for the same. The arithmetic is the same IEEE float32
/// operations at any width, so the results are too: Rust never contracts `a * b + c` into a
/// fused multiply-add, and `mul_add` is fused (one rounding) with or without the FMA unit.
pub(crate) fn wide(work: impl Wide) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,fma")]
        fn avx512(work: impl Wide) {
            work.run()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(work: impl Wide) {
            work.run()
        }
        let fma = std::arch::is_x86_feature_detected!("fma");
        if fma && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F and FMA (checked above).
            return unsafe { avx512(work) };
        }
        if fma && std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            return unsafe { avx2(work) };
        }
    }
    work.run()
}

/// `a . b` in eight lanes (one AVX2 vector), summed pairwise, then the leftover elements: a
/// fixed order, the same at any vector width.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 8;
    let whole = a.len() / L * L;
    let mut lanes = [0.0f32; L];
    for (x, y) in a[..whole].chunks_exact(L).zip(b[..whole].chunks_exact(L)) {
        for l in 0..L {
            lanes[l] = x[l].mul_add(y[l], lanes[l]);
        }
    }
    let mut sum = pairwise(lanes);
    for (x, y) in a[whole..].iter().zip(&b[whole..]) {
        sum = x.mul_add(*y, sum);
    }
    sum
}

/// [`dot`] of `a` with four vectors at once, each summed exactly as [`dot`] sums it: four
/// independent chains of multiply-adds keep the CPU's pipelines full where one alone waits on
/// each addition (the head dimensions here are a few dozen).
#[inline(always)]
pub(crate) fn dot4(a: &[f32], b: [&[f32]; 4]) -> [f32; 4] {
    const L: usize = 8;
    let whole = a.len() / L * L;
    let b = b.map(|b| &b[..a.len()]);
    let mut lanes = [[0.0f32; L]; 4];
    for c in (0..whole).step_by(L) {
        let x = &a[c..c + L];
        for (lanes, b) in lanes.iter_mut().zip(&b) {
            let y = &b[c..c + L];
            for l in 0..L {
                lanes[l] = x[l].mul_add(y[l], lanes[l]);
            }
        }
    }
    let mut sums = [0.0f32; 4];
    for ((sum, lanes), b) in sums.iter_mut().zip(lanes).zip(&b) {
        *sum = pairwise(lanes);
        for (x, y) in a[whole..].iter().zip(&b[whole..]) {
            *sum = x.mul_add(*y, *sum);
        }
    }
    sums
}

/// `a . (b - shift)`, summed as [`dot`].
#[inline(always)]
pub(crate) fn dot_centred(a: &[f32], b: &[f32], shift: f32) -> f32 {
    const L: usize = 8;
    let whole = a.len() / L * L;
    let mut lanes = [0.0f32; L];
    for (x, y) in a[..whole].chunks_exact(L).zip(b[..whole].chunks_exact(L)) {
        for l in 0..L {
            lanes[l] = x[l].mul_add(y[l] - shift, lanes[l]);
        }
    }
    let mut sum = pairwise(lanes);
    for (x, y) in a[whole..].iter().zip(&b[whole..]) {
        sum = x.mul_add(y - shift, sum);
    }
    sum
}

/// `a`'s sum in eight lanes, summed pairwise, then the leftover elements (as [`dot`]).
#[inline(always)]
pub(crate) fn sum(a: &[f32]) -> f32 {
    const L: usize = 8;
    let whole = a.len() / L * L;
    let mut lanes = [0.0f32; L];
    for x in a[..whole].chunks_exact(L) {
        for l in 0..L {
            lanes[l] += x[l];
        }
    }
    let mut sum = pairwise(lanes);
    for x in &a[whole..] {
        sum += x;
    }
    sum
}

/// The eight lanes of [`dot`], [`dot4`], [`dot_centred`] and [`sum`] added pairwise.
#[inline(always)]
fn pairwise([l0, l1, l2, l3, l4, l5, l6, l7]: [f32; 8]) -> f32 {
    ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7))
}

/// `y += a * x`.
#[inline(always)]
pub(crate) fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = a.mul_add(*x, *y);
    }
}

/// The elements of `row`, each set to zero: for outputs that a pass accumulates into.
#[inline(always)]
pub(crate) fn zeroed(row: Row<'_>) -> &mut [f32] {
    for x in row.iter_mut() {
        x.write(0.0);
    }
    // SAFETY: every element was just written; `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(row as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

pub(crate) fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    }
}

pub(crate) fn dims(t: &FlexTensor) -> [usize; 3] {
    let shape = t.layout().shape();
    assert_eq!(shape.num_dims(), 3, "expected [models, rows, d]");
    [shape[0], shape[1], shape[2]]
}

pub(crate) fn f32s(t: &FlexTensor) -> &[f32] {
    assert_eq!(
        t.dtype(),
        DType::F32,
        "the fused CPU operations are float32 only"
    );
    t.storage::<f32>()
}

/// A float32 buffer that is not zeroed first: each element is written once by a pass above.
/// Kept in 16-byte words, which Flex's `Bytes` takes as aligned without a copy (the reason for
/// the vendored `FlexTensor::empty` patch, vendor/README.md); a length that is not a whole
/// number of words falls back to a zeroed vector.
pub(crate) enum Fresh {
    Words(Vec<MaybeUninit<u128>>, usize),
    Zeroed(Vec<f32>),
}

impl Fresh {
    pub(crate) fn new(len: usize) -> Self {
        if !len.is_multiple_of(4) {
            return Fresh::Zeroed(vec![0.0; len]);
        }
        let mut words = Vec::with_capacity(len / 4);
        // SAFETY: `MaybeUninit` needs no initialization.
        unsafe { words.set_len(len / 4) };
        Fresh::Words(words, len)
    }

    pub(crate) fn slice(&mut self) -> &mut [MaybeUninit<f32>] {
        match self {
            // SAFETY: the words hold exactly `len` f32s (4 per word; alignment 16 >= 4).
            Fresh::Words(words, len) => unsafe {
                std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), *len)
            },
            // SAFETY: an initialized f32 is a valid `MaybeUninit<f32>`; same layout.
            Fresh::Zeroed(v) => unsafe {
                std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), v.len())
            },
        }
    }

    /// # Safety
    /// Every element has been written.
    pub(crate) unsafe fn into_tensor(self, shape: [usize; 3]) -> FlexTensor {
        let bytes = match self {
            Fresh::Words(words, len) => {
                assert_eq!(shape.iter().product::<usize>(), len);
                let mut words = std::mem::ManuallyDrop::new(words);
                // SAFETY: every element is written (the caller's contract), so every byte is
                // initialized; same allocation, length and capacity.
                let words = unsafe {
                    Vec::from_raw_parts(
                        words.as_mut_ptr().cast::<u128>(),
                        words.len(),
                        words.capacity(),
                    )
                };
                Bytes::from_elems(words)
            }
            Fresh::Zeroed(v) => {
                assert_eq!(shape.iter().product::<usize>(), v.len());
                Bytes::from_elems(v)
            }
        };
        FlexTensor::new(
            bytes,
            Layout::contiguous(Shape::from(shape.to_vec())),
            DType::F32,
        )
    }
}
