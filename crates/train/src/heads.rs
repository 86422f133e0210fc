//! Olsson et al. 2022's two scores of an attention head, the signature of an induction head:
//!
//! * **prefix matching**: on random tokens repeated once (`BOS, r_1..r_n, r_1..r_n`), the
//!   head's mean attention from each token of the repeat to the token that followed its first
//!   occurrence (from r_j's second occurrence to r_{j+1}'s first): where an induction head
//!   looks;
//! * **copying**: whether what the head writes raises the logit of the token it attends to,
//!   read from the weights as Elhage et al. 2021 summarize an OV circuit: over the eigenvalues
//!   λ of W_E W_V^h W_O^h W_U (vocabulary to vocabulary; LayerNorm left out, as in their
//!   analysis), Σ λ / Σ |λ|, in [-1, 1], near 1 for a head that copies.
//!
//! An induction head scores high on both. The circuit's non-zero eigenvalues are those of the
//! `d_head x d_head` product W_O^h W_U W_E W_V^h (cyclic permutations of a product share
//! them), so no vocabulary-sized matrix is formed.

use elab_tasks::{SplitMix64, shuffle};
use nalgebra::DMatrix;

/// Sequences per prefix-matching measurement.
pub const SEQUENCES: usize = 64;

/// Σ λ / Σ |λ| over the eigenvalues of the square matrix `m` (`n x n`, row-major); 0 when
/// every eigenvalue is 0.
pub fn copying_score(m: &[f64], n: usize) -> f64 {
    let eig = DMatrix::from_row_slice(n, n, m).complex_eigenvalues();
    let total: f64 = eig.iter().map(|l| l.re).sum();
    let size: f64 = eig.iter().map(|l| l.norm()).sum();
    if size > 0.0 { total / size } else { 0.0 }
}

/// A row-major host matrix.
#[derive(Debug, Clone)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub v: Vec<f64>,
}

impl Mat {
    pub fn new(rows: usize, cols: usize, v: Vec<f64>) -> Self {
        assert_eq!(v.len(), rows * cols);
        Self { rows, cols, v }
    }

    pub fn transpose(&self) -> Mat {
        let mut v = vec![0.0; self.v.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                v[j * self.rows + i] = self.v[i * self.cols + j];
            }
        }
        Mat::new(self.cols, self.rows, v)
    }

    /// Columns `from..from + n`.
    pub fn columns(&self, from: usize, n: usize) -> Mat {
        let v = (0..self.rows)
            .flat_map(|i| self.v[i * self.cols + from..][..n].iter().copied())
            .collect();
        Mat::new(self.rows, n, v)
    }

    /// Rows `from..from + n`.
    pub fn rows(&self, from: usize, n: usize) -> Mat {
        Mat::new(
            n,
            self.cols,
            self.v[from * self.cols..][..n * self.cols].to_vec(),
        )
    }

    pub fn matmul(&self, other: &Mat) -> Mat {
        assert_eq!(self.cols, other.rows);
        let mut v = vec![0.0; self.rows * other.cols];
        for i in 0..self.rows {
            for k in 0..self.cols {
                let a = self.v[i * self.cols + k];
                for j in 0..other.cols {
                    v[i * other.cols + j] += a * other.v[k * other.cols + j];
                }
            }
        }
        Mat::new(self.rows, other.cols, v)
    }
}

/// One layer's attention weights, in the lab's `x @ W` convention: `qkv` `[d, 3d]` (queries,
/// keys, values for all heads, head-major inside each), `proj` `[d, d]`.
pub struct Layer {
    pub qkv: Mat,
    pub proj: Mat,
}

/// The copying score of each head of each layer: `embed` `[vocab, d]` (W_E), `unembed`
/// `[d, vocab]` (W_U).
pub fn copying_scores(
    embed: &Mat,
    unembed: &Mat,
    layers: &[Layer],
    n_head: usize,
) -> Vec<Vec<f64>> {
    let d = embed.cols;
    let hd = d / n_head;
    // W_U W_E: `[d, d]`, shared by every head.
    let ue = unembed.matmul(embed);
    layers
        .iter()
        .map(|layer| {
            (0..n_head)
                .map(|h| {
                    let value = layer.qkv.columns(2 * d + h * hd, hd);
                    let out = layer.proj.rows(h * hd, hd);
                    let circuit = out.matmul(&ue).matmul(&value);
                    copying_score(&circuit.v, hd)
                })
                .collect()
        })
        .collect()
}

/// `count` sequences `BOS, r_1..r_n, r_1..r_n` of `2n + 1 <= n_ctx` tokens, n = (n_ctx - 1) / 2,
/// the r drawn from 0..vocab without repeats where the vocabulary allows (a repeat inside the
/// first half would give a token two earlier occurrences).
pub fn repeated_tokens(
    vocab: usize,
    bos: u32,
    n_ctx: usize,
    count: usize,
    seed: u64,
) -> Vec<Vec<u32>> {
    let n = (n_ctx - 1) / 2;
    let mut rng = SplitMix64::derive(seed, 3_000);
    (0..count)
        .map(|_| {
            let half: Vec<u32> = if vocab >= n {
                let mut all: Vec<u32> = (0..vocab as u32).collect();
                shuffle(&mut all, &mut rng);
                all.truncate(n);
                all
            } else {
                (0..n).map(|_| rng.below(vocab as u64) as u32).collect()
            };
            std::iter::once(bos)
                .chain(half.iter().copied())
                .chain(half.iter().copied())
                .collect()
        })
        .collect()
}

/// Each head's prefix-matching score from one model's patterns `[count, heads, t, t]` (query,
/// key) on [`repeated_tokens`] (t = 2n + 1): the mean over sequences and j = 1..n-1 of the
/// attention from position n + j (r_j again) to position j + 1 (the token after r_j's first
/// occurrence).
pub fn prefix_matching(pattern: &[f32], count: usize, heads: usize, t: usize) -> Vec<f64> {
    let n = (t - 1) / 2;
    (0..heads)
        .map(|h| {
            let mut sum = 0.0;
            for s in 0..count {
                let head = &pattern[(s * heads + h) * t * t..][..t * t];
                for j in 1..n {
                    sum += head[(n + j) * t + j + 1] as f64;
                }
            }
            sum / (count * (n - 1)) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copying_circuit_scores_one_and_an_anti_copying_one_minus_one() {
        // Identity: every eigenvalue 1. Its negative: every eigenvalue -1.
        let eye = [1.0, 0.0, 0.0, 1.0];
        assert!((copying_score(&eye, 2) - 1.0).abs() < 1e-12);
        let neg: Vec<f64> = eye.iter().map(|x| -x).collect();
        assert!((copying_score(&neg, 2) + 1.0).abs() < 1e-12);
        // A rotation by 90 degrees: eigenvalues +-i, no copying.
        assert!(copying_score(&[0.0, -1.0, 1.0, 0.0], 2).abs() < 1e-12);
        assert_eq!(copying_score(&[0.0; 4], 2), 0.0);
    }

    #[test]
    fn copying_scores_read_each_heads_value_and_output_slices() {
        // d = 4, two heads of 2, vocab = d with W_E = W_U = I: head 0's circuit is
        // W_O^0 W_V^0; make it the identity (copying) and head 1's its negative.
        let eye = |n: usize| {
            Mat::new(
                n,
                n,
                (0..n * n)
                    .map(|i| if i / n == i % n { 1.0 } else { 0.0 })
                    .collect(),
            )
        };
        let mut qkv = vec![0.0; 4 * 12];
        let mut proj = vec![0.0; 16];
        for i in 0..4 {
            qkv[i * 12 + 8 + i] = 1.0; // W_V = I
            proj[i * 4 + i] = if i < 2 { 1.0 } else { -1.0 };
        }
        let layer = Layer {
            qkv: Mat::new(4, 12, qkv),
            proj: Mat::new(4, 4, proj),
        };
        let scores = copying_scores(&eye(4), &eye(4), &[layer], 2);
        assert!((scores[0][0] - 1.0).abs() < 1e-12, "{scores:?}");
        assert!((scores[0][1] + 1.0).abs() < 1e-12, "{scores:?}");
    }

    #[test]
    fn prefix_matching_reads_the_token_after_the_first_occurrence() {
        let (t, heads, count) = (7, 2, 1);
        let tokens = repeated_tokens(10, 10, 8, count, 1);
        assert_eq!(tokens[0].len(), t);
        assert_eq!(tokens[0][1..4], tokens[0][4..7]);
        // Head 0 attends exactly where an induction head does, head 1 to BOS.
        let mut pattern = vec![0.0f32; heads * t * t];
        let n = 3;
        for q in 0..t {
            let induction = if q > n && q < 2 * n { q - n + 1 } else { 0 };
            pattern[q * t + induction] = 1.0;
            pattern[t * t + q * t] = 1.0;
        }
        let scores = prefix_matching(&pattern, count, heads, t);
        assert_eq!(scores, vec![1.0, 0.0]);
    }
}
