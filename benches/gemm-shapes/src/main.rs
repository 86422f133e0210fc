//! Row-major `C[m, n] = A[m, k] B[k, n]` for the 1M rung's products (2816 rows = 256 examples x
//! 11 positions, d 144, d_mlp 576), timed in `gemm` 0.19 on rayon's threads as Flex calls it and
//! in `matrixmultiply` 0.3 (threads from MATMUL_NUM_THREADS), best of 15 each. The weight
//! gradients are timed with a row-major left operand, not the transposed view training passes.
//! The shapes are in shapes.txt; `torch_mm.py` times the same ones in PyTorch.
//!
//! ```text
//! cargo run --release --features v4   # gemm's AVX-512 kernels (elab's default build)
//! cargo run --release                 # gemm's AVX2 kernels (elab built without `avx512`)
//! ```
//!
//! `matrixmultiply` picks its AVX-512 kernel wherever the CPU has one; build with
//! `MMTEST_FEATURE=fma,avx2` in the environment to hold it to its AVX2 kernel.

use std::time::Instant;

/// `(m, k, n, what)` from shapes.txt, the list torch_mm.py reads too.
fn shapes() -> Vec<(usize, usize, usize, &'static str)> {
    include_str!("../shapes.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.splitn(4, ' ');
            let mut dim = || f.next().and_then(|x| x.parse().ok()).expect("m k n what");
            (dim(), dim(), dim(), f.next().expect("what"))
        })
        .collect()
}

fn main() {
    for (m, k, n, what) in shapes() {
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32) * 0.01).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32) * 0.01).collect();
        let mut c = vec![0.0f32; m * n];
        let mut best = f64::MAX;
        for _ in 0..15 {
            let t = Instant::now();
            // SAFETY: a, b and c hold m x k, k x n and m x n elements at the strides given.
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    k,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    k as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(0),
                );
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let mut best_mm = f64::MAX;
        for _ in 0..15 {
            let t = Instant::now();
            // SAFETY: as above.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    k as isize,
                    1,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
            best_mm = best_mm.min(t.elapsed().as_secs_f64());
        }
        let f = 2.0 * (m * k * n) as f64 / 1e9;
        println!(
            "{what:18} {m}x{k}x{n}: gemm {:.0} GFLOP/s, matrixmultiply {:.0} GFLOP/s",
            f / best,
            f / best_mm
        );
    }
}
