//! Nanda et al. 2023's progress measures for modular addition (and subtraction), computed on
//! the host from the token embedding and the logits over every pair:
//!
//! * the **key frequencies** of the embedding: `W_E[a]` (one row per residue a) seen as a
//!   signal over a, split into Fourier components cos(2πka/p), sin(2πka/p), k = 1..(p-1)/2; the
//!   [`KEYS`] components with the largest norm, and `fourier.key_share`, their share of the
//!   embedding's (non-constant) squared norm: about KEYS/((p-1)/2) for a random embedding, near
//!   1 once the model uses a few frequencies (Nanda et al.'s p = 113 models);
//! * **restricted loss**: the cross-entropy over all pairs of the logits kept only along the
//!   directions cos(w_k(a ± b - c)), sin(w_k(a ± b - c)) of the logits' own [`KEYS`] strongest
//!   frequencies: the part of the output a trig algorithm explains (it falls before the test
//!   loss);
//! * **excluded loss**: the cross-entropy on the training pairs with those directions removed:
//!   what memorization alone explains (it rises as the algorithm takes over).
//!
//! Key frequencies come from the current model (Nanda et al. take the final model's), so the
//! measures need nothing from the future of the run.

use std::collections::BTreeMap;
use std::f64::consts::PI;

/// Key frequencies kept (Nanda et al.'s models use about 5 for p = 113).
pub const KEYS: usize = 5;

/// One equation: operands `a` and `b`, and whether it is in the training set.
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub train: bool,
}

/// The Fourier progress measures. `embedding` is `[p, d]` (the rows of the residues),
/// `logits` is `[pairs, p]` (the answer logits of the residues), `sign` is +1 for addition,
/// -1 for subtraction (the answer is a + sign * b).
pub fn fourier_measures(
    embedding: &[f32],
    d: usize,
    logits: &[f32],
    pairs: &[Pair],
    p: usize,
    sign: i64,
) -> BTreeMap<String, f64> {
    assert_eq!(embedding.len(), p * d);
    assert_eq!(logits.len(), pairs.len() * p);
    let norms = frequency_norms(embedding, d, p);
    let embedding_keys = top(&norms[1..], KEYS);
    let total: f64 = norms[1..].iter().sum();
    let key_share =
        embedding_keys.iter().map(|&k| norms[k + 1]).sum::<f64>() / total.max(f64::MIN_POSITIVE);

    // The logits' coefficient on each direction cos/sin(w_k m), m = (a + sign * b - c) mod p,
    // over the grid of (pair, c): the directions are orthogonal, so a coefficient is the
    // direction's sum against the logits over its squared norm (p^3 / 2 with every pair).
    // Both depend on the logits only through their sum at each phase m.
    let phase = |pair: &Pair, c: usize| -> usize {
        (pair.a as i64 + sign * pair.b as i64 - c as i64).rem_euclid(p as i64) as usize
    };
    let mut by_phase = vec![0.0f64; p];
    for (i, pair) in pairs.iter().enumerate() {
        for c in 0..p {
            by_phase[phase(pair, c)] += logits[i * p + c] as f64;
        }
    }
    let scale = 2.0 / (pairs.len() * p) as f64;
    let angle = |k: usize, m: usize| 2.0 * PI * ((k * m) % p) as f64 / p as f64;
    let coefficients: Vec<(f64, f64)> = (1..=(p - 1) / 2)
        .map(|k| {
            let (mut a, mut b) = (0.0, 0.0);
            for (m, s) in by_phase.iter().enumerate() {
                a += s * angle(k, m).cos();
                b += s * angle(k, m).sin();
            }
            (scale * a, scale * b)
        })
        .collect();
    // The logits' key frequencies: the directions that explain most of them.
    let power: Vec<f64> = coefficients.iter().map(|(a, b)| a * a + b * b).collect();
    let logit_keys = top(&power, KEYS);
    let explained: Vec<f64> = (0..p)
        .map(|m| {
            logit_keys
                .iter()
                .map(|&j| {
                    let (a, b) = coefficients[j];
                    a * angle(j + 1, m).cos() + b * angle(j + 1, m).sin()
                })
                .sum()
        })
        .collect();
    let (mut restricted, mut excluded, mut n_train) = (0.0, 0.0, 0usize);
    let mut row = vec![0.0f64; p];
    for (i, pair) in pairs.iter().enumerate() {
        let target = (pair.a as i64 + sign * pair.b as i64).rem_euclid(p as i64) as usize;
        for (c, r) in row.iter_mut().enumerate() {
            *r = explained[phase(pair, c)];
        }
        restricted += cross_entropy(&row, target);
        if pair.train {
            for (c, r) in row.iter_mut().enumerate() {
                *r = logits[i * p + c] as f64 - *r;
            }
            excluded += cross_entropy(&row, target);
            n_train += 1;
        }
    }
    let mut out = BTreeMap::from([
        ("fourier.key_share".to_string(), key_share),
        (
            "fourier.restricted_loss".to_string(),
            restricted / pairs.len().max(1) as f64,
        ),
        (
            "fourier.excluded_loss".to_string(),
            excluded / n_train.max(1) as f64,
        ),
    ]);
    for (rank, &j) in embedding_keys.iter().enumerate() {
        out.insert(format!("fourier.key_freq_{}", rank + 1), (j + 1) as f64);
    }
    out
}

/// The indices of the `n` largest values, largest first.
fn top(values: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&x, &y| values[y].total_cmp(&values[x]));
    order.truncate(n);
    order
}

/// Squared norm of the embedding's Fourier component at each frequency k = 0..=(p-1)/2
/// (cosine and sine parts together; k = 0 is the constant).
pub fn frequency_norms(embedding: &[f32], d: usize, p: usize) -> Vec<f64> {
    (0..=(p - 1) / 2)
        .map(|k| {
            let (mut cos, mut sin) = (vec![0.0f64; d], vec![0.0f64; d]);
            for a in 0..p {
                let angle = 2.0 * PI * (k * a) as f64 / p as f64;
                for (j, &w) in embedding[a * d..(a + 1) * d].iter().enumerate() {
                    cos[j] += w as f64 * angle.cos();
                    sin[j] += w as f64 * angle.sin();
                }
            }
            cos.iter().chain(&sin).map(|x| x * x).sum()
        })
        .collect()
}

/// -log softmax(row)[target], computed stably in f64.
fn cross_entropy(row: &[f64], target: usize) -> f64 {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row.iter().map(|x| (x - max).exp()).sum();
    max + sum.ln() - row[target]
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: usize = 23;

    /// An embedding made of frequencies 3 (amplitude 1) and 7 (amplitude 2), in 4 dimensions.
    fn pure_embedding() -> Vec<f32> {
        (0..P)
            .flat_map(|a| {
                let w = |k: usize| 2.0 * PI * (k * a) as f64 / P as f64;
                [w(3).cos(), w(3).sin(), 2.0 * w(7).cos(), 2.0 * w(7).sin()].map(|x| x as f32)
            })
            .collect()
    }

    fn all_pairs() -> Vec<Pair> {
        (0..P)
            .flat_map(|a| {
                (0..P).map(move |b| Pair {
                    a,
                    b,
                    train: (a + b) % 3 == 0,
                })
            })
            .collect()
    }

    /// Logits of the trig algorithm with frequencies 3 and 7 (peaked at c = a + b), plus
    /// `memorized` on each training pair's answer.
    fn trig_logits(pairs: &[Pair], memorized: f64) -> Vec<f32> {
        pairs
            .iter()
            .flat_map(|pair| {
                (0..P).map(move |c| {
                    let m = (pair.a + pair.b + P - c) % P;
                    let trig: f64 = [3, 7]
                        .iter()
                        .map(|&k| 4.0 * (2.0 * PI * (k * m) as f64 / P as f64).cos())
                        .sum();
                    let bonus = if pair.train && c == (pair.a + pair.b) % P {
                        memorized
                    } else {
                        0.0
                    };
                    (trig + bonus) as f32
                })
            })
            .collect()
    }

    #[test]
    fn a_pure_fourier_embedding_has_exactly_its_frequencies() {
        let m = fourier_measures(
            &pure_embedding(),
            4,
            &trig_logits(&all_pairs(), 0.0),
            &all_pairs(),
            P,
            1,
        );
        assert_eq!(m["fourier.key_freq_1"], 7.0);
        assert_eq!(m["fourier.key_freq_2"], 3.0);
        assert!((m["fourier.key_share"] - 1.0).abs() < 1e-9, "{m:?}");
        // A random-looking embedding spreads its norm: 5 of 11 frequencies hold far less.
        let mut rng = elab_tasks::SplitMix64::new(1);
        let noise: Vec<f32> = (0..P * 4)
            .map(|_| rng.below(1000) as f32 / 1000.0 - 0.5)
            .collect();
        let m = fourier_measures(
            &noise,
            4,
            &trig_logits(&all_pairs(), 0.0),
            &all_pairs(),
            P,
            1,
        );
        assert!(m["fourier.key_share"] < 0.8, "{m:?}");
    }

    #[test]
    fn restricted_loss_keeps_the_algorithm_and_excluded_loss_removes_it() {
        let pairs = all_pairs();
        let ce = |logits: &[f32], train_only: bool| {
            let rows: Vec<f64> = pairs
                .iter()
                .enumerate()
                .filter(|(_, q)| q.train || !train_only)
                .map(|(i, q)| {
                    let row: Vec<f64> = logits[i * P..(i + 1) * P]
                        .iter()
                        .map(|&x| x as f64)
                        .collect();
                    cross_entropy(&row, (q.a + q.b) % P)
                })
                .collect();
            rows.iter().sum::<f64>() / rows.len() as f64
        };
        // The trig algorithm alone: restricted loss is the full loss; with it removed, nothing
        // is left, so excluded loss is log p (uniform).
        let logits = trig_logits(&pairs, 0.0);
        let m = fourier_measures(&pure_embedding(), 4, &logits, &pairs, P, 1);
        assert!(
            (m["fourier.restricted_loss"] - ce(&logits, false)).abs() < 1e-6,
            "{m:?}"
        );
        assert!(
            (m["fourier.excluded_loss"] - (P as f64).ln()).abs() < 1e-6,
            "{m:?}"
        );
        assert!(m["fourier.restricted_loss"] < 0.5 * (P as f64).ln());
        // Memorization on top: the excluded loss on the training pairs falls, while the
        // restricted loss barely moves.
        let memorizing = trig_logits(&pairs, 8.0);
        let mm = fourier_measures(&pure_embedding(), 4, &memorizing, &pairs, P, 1);
        assert!(mm["fourier.excluded_loss"] < 0.1, "{mm:?}");
        assert!((mm["fourier.restricted_loss"] - m["fourier.restricted_loss"]).abs() < 0.5);
        // Subtraction: the same algorithm with c = a - b.
        let sub: Vec<f32> = pairs
            .iter()
            .flat_map(|q| {
                (0..P).map(move |c| {
                    let m = (q.a + 2 * P - q.b - c) % P;
                    (4.0 * (2.0 * PI * (3 * m) as f64 / P as f64).cos()) as f32
                })
            })
            .collect();
        let ms = fourier_measures(&pure_embedding(), 4, &sub, &pairs, P, -1);
        assert!(
            (ms["fourier.excluded_loss"] - (P as f64).ln()).abs() < 1e-6,
            "{ms:?}"
        );
    }
}
