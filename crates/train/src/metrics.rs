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
        for (t, &target) in targets.iter().enumerate() {
            let row = &logp[t * vocab..(t + 1) * vocab];
            let target = target as usize;
            self.nll -= row[target] as f64;
            self.correct_tokens += usize::from(argmax(row) == target);
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
        BTreeMap::from([
            ("loss".to_string(), self.nll / t),
            ("answer_logprob".to_string(), -self.nll / n),
            ("token_accuracy".to_string(), self.correct_tokens as f64 / t),
            ("exact_match".to_string(), self.exact as f64 / n),
            ("edit_distance".to_string(), self.edits as f64 / n),
            ("brier".to_string(), self.brier / t),
        ])
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
    }
}
