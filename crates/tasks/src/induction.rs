//! In-context induction (Olsson et al. 2022): uniformly random tokens whose last
//! `segment_len` tokens repeat a segment that appeared earlier at a random place.
//!
//! The sequence is `BOS` then `seq_len` answer tokens: positions `0..seq_len - segment_len` are
//! random, with the segment written at a random offset inside them; positions
//! `seq_len - segment_len..` are the segment again. Every token before the repeat is
//! unpredictable (its best loss is ln(vocab)); inside the repeat, all but the first token can be
//! predicted by finding the previous occurrence of the current token and copying the token after
//! it, the induction-head algorithm, which needs two layers of attention (a previous-token head
//! composed with a matching head). The first occurrence moves from example to example, so no
//! single fixed offset does the copying; but its distance to the repeat stays within
//! `segment_len..=seq_len - segment_len`, and the 2-layer models trained on it copy without an
//! induction head by Olsson et al.'s scores (docs/reproductions.md).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::{Breakdown, Dataset, SplitMix64};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InductionTask {
    /// Random tokens are 0..vocab; token `vocab` is the beginning-of-sequence marker.
    #[serde(default = "default_vocab")]
    pub vocab: usize,
    /// Answer tokens per example (all of the sequence after `BOS`).
    #[serde(default = "default_seq_len")]
    pub seq_len: usize,
    /// Length of the repeated segment.
    #[serde(default = "default_segment_len")]
    pub segment_len: usize,
    #[serde(default = "default_train_size")]
    pub train_size: usize,
    /// Validation examples, disjoint from training.
    #[serde(default = "default_val_size")]
    pub val_size: usize,
}

fn default_vocab() -> usize {
    32
}
fn default_seq_len() -> usize {
    32
}
fn default_segment_len() -> usize {
    8
}
fn default_train_size() -> usize {
    20_000
}
fn default_val_size() -> usize {
    1_000
}

impl InductionTask {
    pub(crate) fn shape(&self) -> (usize, usize, usize) {
        (self.vocab + 1, 1, self.seq_len)
    }

    pub(crate) fn label(&self) -> String {
        format!("induct{}v{}s{}", self.seq_len, self.vocab, self.segment_len)
    }

    /// Answer positions of the repeat after its first token (that one has nothing to copy
    /// from: nothing says the repeat starts there, so it is as unpredictable as the rest).
    pub fn predictable(&self) -> std::ops::Range<usize> {
        self.seq_len - self.segment_len + 1..self.seq_len
    }

    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !(2..=65_535).contains(&self.vocab) {
            return Err((
                "task.vocab".into(),
                format!("an integer from 2 to 65535, got {}", self.vocab),
            ));
        }
        if !(2..=self.seq_len / 2).contains(&self.segment_len) {
            return Err((
                "task.segment_len".into(),
                format!(
                    "an integer from 2 to seq_len / 2 = {}, got {}",
                    self.seq_len / 2,
                    self.segment_len
                ),
            ));
        }
        if self.seq_len > 4096 {
            return Err((
                "task.seq_len".into(),
                format!("at most 4096, got {}", self.seq_len),
            ));
        }
        if self.train_size == 0 || self.val_size == 0 {
            return Err((
                "task.train_size / task.val_size".into(),
                "positive integers".into(),
            ));
        }
        // Distinct sequences are drawn by rejection: keep the space far larger than the draw.
        let random = (self.seq_len - self.segment_len) as f64 * (self.vocab as f64).log2();
        let wanted = (self.train_size + self.val_size) as f64;
        if random < wanted.log2() + 4.0 {
            return Err((
                "task.vocab / task.seq_len".into(),
                format!(
                    "room for 16x train_size + val_size distinct sequences (vocab^(seq_len - \
                     segment_len) >= {}), got {}^{}",
                    16.0 * wanted,
                    self.vocab,
                    self.seq_len - self.segment_len
                ),
            ));
        }
        Ok(())
    }

    /// The sequence with random part `random` (`seq_len - segment_len` tokens) whose segment
    /// starts at `offset`.
    fn encode(&self, random: &[u32], offset: usize) -> Vec<u32> {
        let mut seq = Vec::with_capacity(self.seq_len + 1);
        seq.push(self.vocab as u32);
        seq.extend_from_slice(random);
        seq.extend_from_slice(&random[offset..offset + self.segment_len]);
        seq
    }

    pub(crate) fn generate(&self, seed: u64) -> Dataset {
        let mut rng = SplitMix64::derive(seed, 5);
        let wanted = self.train_size + self.val_size;
        let random_len = self.seq_len - self.segment_len;
        let offsets = (random_len - self.segment_len + 1) as u64;
        let mut seen = HashSet::with_capacity(wanted);
        let mut seqs = Vec::with_capacity(wanted);
        while seqs.len() < wanted {
            let random: Vec<u32> = (0..random_len)
                .map(|_| rng.below(self.vocab as u64) as u32)
                .collect();
            let seq = self.encode(&random, rng.below(offsets) as usize);
            if seen.insert(seq.clone()) {
                seqs.push(seq);
            }
        }
        let val = seqs.split_off(self.train_size);
        let (vocab_size, prompt_len, answer_len) = self.shape();
        Dataset {
            vocab_size,
            prompt_len,
            answer_len,
            train: seqs,
            val,
            // Olsson et al.'s score compares a late token with an early one; here the last
            // token (inside the repeat) with the second (random, but with a token of context).
            breakdown: Breakdown::Positions {
                early: 1,
                late: self.seq_len - 1,
                repeat: self.predictable(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> InductionTask {
        InductionTask {
            vocab: 8,
            seq_len: 12,
            segment_len: 3,
            train_size: 200,
            val_size: 100,
        }
    }

    #[test]
    fn known_input_repeats_its_segment_at_the_end() {
        let t = task();
        let random = [5, 1, 7, 2, 0, 3, 6, 4, 1];
        assert_eq!(
            t.encode(&random, 2),
            vec![8, 5, 1, 7, 2, 0, 3, 6, 4, 1, 7, 2, 0]
        );
        assert_eq!(t.predictable(), 10..12);
    }

    #[test]
    fn every_example_ends_with_an_earlier_segment() {
        let t = task();
        let d = t.generate(1);
        assert_eq!((d.vocab_size, d.prompt_len, d.answer_len), (9, 1, 12));
        let mut offsets = HashSet::new();
        for s in d.train.iter().chain(&d.val) {
            assert_eq!(s.len(), 13);
            assert_eq!(s[0], 8);
            assert!(s[1..].iter().all(|&x| x < 8));
            let answer = &s[1..];
            let (random, repeat) = answer.split_at(9);
            let at: Vec<usize> = (0..=6).filter(|&o| &random[o..o + 3] == repeat).collect();
            assert!(!at.is_empty(), "{s:?}");
            offsets.insert(at[0]);
        }
        assert!(
            offsets.len() >= 6,
            "the first occurrence moves: {offsets:?}"
        );
        assert_eq!(
            d.breakdown,
            Breakdown::Positions {
                early: 1,
                late: 11,
                repeat: 10..12
            }
        );
    }

    #[test]
    fn deterministic_and_disjoint() {
        let t = task();
        let d = t.generate(7);
        assert_eq!(d, t.generate(7));
        assert_ne!(d.train, t.generate(8).train);
        let train: HashSet<_> = d.train.iter().collect();
        assert_eq!((train.len(), d.val.len()), (200, 100));
        assert!(d.val.iter().all(|s| !train.contains(s)));
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let bad = [
            (InductionTask { vocab: 1, ..task() }, "task.vocab"),
            (
                InductionTask {
                    segment_len: 7,
                    ..task()
                },
                "task.segment_len",
            ),
            (
                InductionTask {
                    segment_len: 1,
                    ..task()
                },
                "task.segment_len",
            ),
            (
                InductionTask {
                    vocab: 2,
                    seq_len: 8,
                    segment_len: 2,
                    ..task()
                },
                "task.vocab / task.seq_len",
            ),
        ];
        for (t, field) in bad {
            assert_eq!(t.validate().unwrap_err().0, field, "{t:?}");
        }
        assert_eq!(task().validate(), Ok(()));
    }
}
