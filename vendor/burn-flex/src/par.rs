//! emergence-lab patch (vendor/README.md): element-wise loops split across rayon's threads.
//!
//! Upstream runs element-wise ops (add, mul, exp, the broadcast zips) on the calling thread,
//! except the SIMD in-place kernels at 4M elements or more. A small transformer's training step
//! is matmuls, which gemm spreads over the cores, and between them element-wise ops over tensors
//! of 100k-2M elements, during which every other core idles. These helpers cut such a loop into
//! one consecutive piece per thread. Each element is computed by the same expression as before,
//! only on another thread, so results are bit for bit the same.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

#[cfg(feature = "rayon")]
use rayon::prelude::*;

/// Loops over fewer elements stay on the calling thread: handing a piece to another thread
/// costs a few microseconds, about what one thread needs for this many elements.
pub(crate) const MIN_PIECE: usize = 32 * 1024;

/// How many pieces a loop over `n` elements is cut into: 1 for small loops, else one per thread
/// (fewer when the pieces would be smaller than [`MIN_PIECE`]).
pub(crate) fn pieces(n: usize) -> usize {
    #[cfg(feature = "rayon")]
    {
        (n / MIN_PIECE).clamp(1, rayon::current_num_threads())
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = n;
        1
    }
}

/// Calls `f(first, chunk)` for `dst` cut into consecutive chunks of `size` elements (the last
/// may be shorter), where `first` is the chunk's first index in `dst`; in parallel when there is
/// more than one chunk.
pub(crate) fn for_chunks_mut<T: Send>(dst: &mut [T], size: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let size = size.max(1);
    if dst.len() <= size {
        return f(0, dst);
    }
    #[cfg(feature = "rayon")]
    dst.par_chunks_mut(size)
        .enumerate()
        .for_each(|(i, chunk)| f(i * size, chunk));
    #[cfg(not(feature = "rayon"))]
    dst.chunks_mut(size)
        .enumerate()
        .for_each(|(i, chunk)| f(i * size, chunk));
}

/// Chunk size that cuts `n` elements into [`pieces`]`(n)` pieces, rounded up to whole SIMD
/// registers so each piece's vector loop starts aligned with the others'.
fn piece_size(n: usize) -> usize {
    n.div_ceil(pieces(n)).next_multiple_of(16)
}

/// `*d = op(*d)` for every element of `dst`.
pub(crate) fn apply<T: Copy + Send>(dst: &mut [T], op: impl Fn(T) -> T + Sync) {
    for_chunks_mut(dst, piece_size(dst.len()), |_, chunk| {
        for d in chunk {
            *d = op(*d);
        }
    });
}

/// `*d = op(*d, s)` for the elements of `dst` and `src` side by side (same length).
pub(crate) fn apply2<T: Copy + Send, S: Copy + Sync>(
    dst: &mut [T],
    src: &[S],
    op: impl Fn(T, S) -> T + Sync,
) {
    assert_eq!(dst.len(), src.len());
    for_chunks_mut(dst, piece_size(dst.len()), |first, chunk| {
        for (d, &s) in chunk.iter_mut().zip(&src[first..]) {
            *d = op(*d, s);
        }
    });
}

/// A vector of `n` elements whose chunks (cut as [`for_chunks_mut`] cuts them, `size` elements
/// each) are written by `fill(first, chunk)`.
///
/// # Safety
/// `fill` must write every element of the chunk it is given.
pub(crate) unsafe fn collect_chunks<T: Send>(
    n: usize,
    size: usize,
    fill: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    for_chunks_mut(&mut out.spare_capacity_mut()[..n], size, fill);
    // SAFETY: the chunks cover `0..n` and `fill` wrote each of their elements (the contract).
    unsafe { out.set_len(n) };
    out
}

/// `op(s)` for every element of `src`, as a new vector.
pub(crate) fn map<S: Copy + Sync, T: Send>(src: &[S], op: impl Fn(S) -> T + Sync) -> Vec<T> {
    let fill = |first: usize, chunk: &mut [MaybeUninit<T>]| {
        let src = &src[first..first + chunk.len()];
        for (o, &s) in chunk.iter_mut().zip(src) {
            o.write(op(s));
        }
    };
    // SAFETY: `src` is sliced to the chunk's length, so the zip writes every element.
    unsafe { collect_chunks(src.len(), piece_size(src.len()), fill) }
}

/// `op(a, b)` for the elements of `a` and `b` side by side (same length), as a new vector.
pub(crate) fn map2<A: Copy + Sync, B: Copy + Sync, T: Send>(
    a: &[A],
    b: &[B],
    op: impl Fn(A, B) -> T + Sync,
) -> Vec<T> {
    assert_eq!(a.len(), b.len());
    let fill = |first: usize, chunk: &mut [MaybeUninit<T>]| {
        let (a, b) = (&a[first..first + chunk.len()], &b[first..first + chunk.len()]);
        for (o, (&a, &b)) in chunk.iter_mut().zip(a.iter().zip(b)) {
            o.write(op(a, b));
        }
    };
    // SAFETY: both inputs are sliced to the chunk's length, so the zip writes every element.
    unsafe { collect_chunks(a.len(), piece_size(a.len()), fill) }
}

/// A vector of `n` copies of `value` (written one piece per thread: zeroing fresh pages costs
/// a page fault each, which the other cores take on too).
pub(crate) fn filled<T: Copy + Send + Sync>(n: usize, value: T) -> Vec<T> {
    let fill = |_: usize, chunk: &mut [MaybeUninit<T>]| {
        for o in chunk {
            o.write(value);
        }
    };
    // SAFETY: `fill` writes every element of its chunk.
    unsafe { collect_chunks(n, piece_size(n), fill) }
}
