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

/// Σ λ / Σ |λ| over the eigenvalues of the square matrix `m`; 0 when every eigenvalue is 0.
pub fn copying_score(m: DMatrix<f64>) -> f64 {
    let eig = m.complex_eigenvalues();
    let total: f64 = eig.iter().map(|l| l.re).sum();
    let size: f64 = eig.iter().map(|l| l.norm()).sum();
    if size > 0.0 { total / size } else { 0.0 }
}

/// One layer's attention weights, in the lab's `x @ W` convention: `qkv` `[d, 3d]` (queries,
/// keys, values for all heads, head-major inside each), `proj` `[d, d]`.
pub struct Layer {
    pub qkv: DMatrix<f64>,
    pub proj: DMatrix<f64>,
}

/// The copying score of each head of each layer: `embed` `[vocab, d]` (W_E), `unembed`
/// `[d, vocab]` (W_U).
pub fn copying_scores(
    embed: &DMatrix<f64>,
    unembed: &DMatrix<f64>,
    layers: &[Layer],
    n_head: usize,
) -> Vec<Vec<f64>> {
    let d = embed.ncols();
    let hd = d / n_head;
    // W_U W_E: `[d, d]`, shared by every head.
    let ue = unembed * embed;
    layers
        .iter()
        .map(|layer| {
            (0..n_head)
                .map(|h| {
                    let value = layer.qkv.columns(2 * d + h * hd, hd);
                    let out = layer.proj.rows(h * hd, hd);
                    copying_score(out * &ue * value)
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
        let m = |v: [f64; 4]| DMatrix::from_row_slice(2, 2, &v);
        // Identity: every eigenvalue 1. Its negative: every eigenvalue -1.
        assert!((copying_score(m([1.0, 0.0, 0.0, 1.0])) - 1.0).abs() < 1e-12);
        assert!((copying_score(m([-1.0, 0.0, 0.0, -1.0])) + 1.0).abs() < 1e-12);
        // A rotation by 90 degrees: eigenvalues +-i, no copying.
        assert!(copying_score(m([0.0, -1.0, 1.0, 0.0])).abs() < 1e-12);
        assert_eq!(copying_score(m([0.0; 4])), 0.0);
    }

    #[test]
    fn copying_scores_read_each_heads_value_and_output_slices() {
        // d = 4, two heads of 2, vocab = d with W_E = W_U = I: head 0's circuit is
        // W_O^0 W_V^0; make it the identity (copying) and head 1's its negative.
        let eye = DMatrix::<f64>::identity(4, 4);
        let mut qkv = DMatrix::zeros(4, 12);
        let mut proj = DMatrix::zeros(4, 4);
        for i in 0..4 {
            qkv[(i, 8 + i)] = 1.0; // W_V = I
            proj[(i, i)] = if i < 2 { 1.0 } else { -1.0 };
        }
        let scores = copying_scores(&eye, &eye, &[Layer { qkv, proj }], 2);
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
