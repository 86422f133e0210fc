//! Scores of answers, computed on the host from log-probabilities and greedy decodes.
//! Pure functions: the same numbers whatever backend produced the inputs.

use std::collections::BTreeMap;

/// The metrics of one split, averaged over examples (per answer token where it says so).
///
/// * `loss`: mean cross-entropy per answer token (nats), teacher-forced.
/// * `answer_logprob`: mean over examples of the summed log p of the target answer.
/// * `token_accuracy`: fraction of answer tokens whose teacher-forced argmax is right.
/// * `exact_match`: fraction of examples whose greedy decoded answer equals the target.
/// * `edit_distance`: mean Levenshtein distance between greedy answer and target.
/// * `brier`: mean over answer tokens of sum_k (p_k - 1[k = target])^2.
///
/// Beside them, per answer position i (0 = first answer token), for Schaeffer et al.'s test
/// (is exact match's jump the product of smoothly improving per-token accuracies?):
/// * `token_accuracy.pos<i>`: fraction of examples whose teacher-forced argmax at i is right;
/// * `token_logprob.pos<i>`: mean log p of the target token at i.
///
/// Greedy decoding reproduces the target exactly when every teacher-forced argmax is right,
/// so exact match is the share of examples right at every position; the product of the
/// per-position accuracies is what it would be if positions were independent.
pub const METRICS: [&str; 6] = [
    "loss",
    "answer_logprob",
    "token_accuracy",
    "exact_match",
    "edit_distance",
    "brier",
];

/// Index of the largest value; the first one on ties (as torch.argmax).
pub fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, k| if row[k] > row[best] { k } else { best })
}

/// Running sums over batches of examples.
#[derive(Debug, Default)]
pub struct Scorer {
    examples: usize,
    tokens: usize,
    nll: f64,
    correct_tokens: usize,
    exact: usize,
    edits: usize,
    brier: f64,
    /// Per answer position: right teacher-forced argmaxes, and summed log p of the target.
    correct_at: Vec<usize>,
    logp_at: Vec<f64>,
}

impl Scorer {
    /// Adds a batch of examples. `logp` is `[n, answer_len, vocab]` row-major: teacher-forced
    /// log-softmax at the answer positions. `targets` and `greedy` are `[n, answer_len]`.
    pub fn add(
        &mut self,
        logp: &[f32],
        vocab: usize,
        targets: &[u32],
        greedy: &[u32],
        answer_len: usize,
    ) {
        assert_eq!(logp.len(), targets.len() * vocab);
        assert_eq!(targets.len(), greedy.len());
        if self.correct_at.len() < answer_len {
            self.correct_at.resize(answer_len, 0);
            self.logp_at.resize(answer_len, 0.0);
        }
        for (t, &target) in targets.iter().enumerate() {
            let row = &logp[t * vocab..(t + 1) * vocab];
            let target = target as usize;
            let right = argmax(row) == target;
            self.nll -= row[target] as f64;
            self.correct_tokens += usize::from(right);
            self.correct_at[t % answer_len] += usize::from(right);
            self.logp_at[t % answer_len] += row[target] as f64;
            self.brier += row
                .iter()
                .enumerate()
                .map(|(k, &lp)| {
                    let p = (lp as f64).exp();
                    let y = if k == target { 1.0 } else { 0.0 };
                    (p - y) * (p - y)
                })
                .sum::<f64>();
        }
        self.tokens += targets.len();
        for (target, guess) in targets.chunks(answer_len).zip(greedy.chunks(answer_len)) {
            self.examples += 1;
            self.exact += usize::from(target == guess);
            self.edits += strsim::generic_levenshtein(&target.to_vec(), &guess.to_vec());
        }
    }

    pub fn finish(&self) -> BTreeMap<String, f64> {
        let (n, t) = (self.examples.max(1) as f64, self.tokens.max(1) as f64);
        let per_position = self.correct_at.iter().zip(&self.logp_at).enumerate();
        let positions = per_position.flat_map(|(i, (&right, &logp))| {
            [
                (format!("token_accuracy.pos{i}"), right as f64 / n),
                (format!("token_logprob.pos{i}"), logp / n),
            ]
        });
        let mut out = BTreeMap::from([
            ("loss".to_string(), self.nll / t),
            ("answer_logprob".to_string(), -self.nll / n),
            ("token_accuracy".to_string(), self.correct_tokens as f64 / t),
            ("exact_match".to_string(), self.exact as f64 / n),
            ("edit_distance".to_string(), self.edits as f64 / n),
            ("brier".to_string(), self.brier / t),
        ]);
        out.extend(positions);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_a_hand_made_batch() {
        // Two examples, answer length 2, vocabulary 2.
        let p = |a: f32| [a.ln(), (1.0 - a).ln()];
        let logp: Vec<f32> = [p(0.9), p(0.2), p(0.6), p(0.5)].concat();
        let targets = [0, 1, 1, 0];
        let greedy = [0, 1, 0, 0];
        let mut s = Scorer::default();
        s.add(&logp, 2, &targets, &greedy, 2);
        let m = s.finish();
        let nll = -(0.9f64.ln() + 0.8f64.ln() + 0.4f64.ln() + 0.5f64.ln());
        assert!((m["loss"] - nll / 4.0).abs() < 1e-6);
        assert!((m["answer_logprob"] + nll / 2.0).abs() < 1e-6);
        // argmax: 0 (right), 1 (right), 0 (wrong), 0 (tie -> first, right)
        assert_eq!(m["token_accuracy"], 0.75);
        assert_eq!(m["exact_match"], 0.5);
        assert_eq!(m["edit_distance"], 0.5);
        let brier = 2.0 * (0.01 + 0.04 + 0.36 + 0.25) / 4.0;
        assert!((m["brier"] - brier).abs() < 1e-6);
        // Position 0: right, wrong; position 1: right, right (tie -> first).
        assert_eq!(m["token_accuracy.pos0"], 0.5);
        assert_eq!(m["token_accuracy.pos1"], 1.0);
        assert!((m["token_logprob.pos0"] - (0.9f64.ln() + 0.4f64.ln()) / 2.0).abs() < 1e-6);
        assert!((m["token_logprob.pos1"] - (0.8f64.ln() + 0.5f64.ln()) / 2.0).abs() < 1e-6);
        assert_eq!(m.len(), 6 + 2 * 2);
    }
}
