//! Multitask sparse parity (Michaud et al. 2023, "The quantization model of neural scaling").
//!
//! An example is `control ++ bits =` then one answer bit. The control prefix is `n_tasks` bits,
//! one-hot: bit i set means subtask i, whose answer is the parity of its own `k` of the `n_bits`
//! data bits (which `k` is drawn from the seed, different for every subtask). Subtask i (from 1)
//! is drawn with probability proportional to i^-alpha, so a model that can afford only a few
//! subtasks learns the frequent ones: each subtask jumps from chance to perfect at its own scale
//! while the loss averaged over the Zipf mixture falls smoothly.
//!
//! Michaud et al. write the Zipf exponent as alpha + 1, alpha being the exponent of the
//! resulting power law in the loss; here `alpha` is the Zipf exponent itself.
//!
//! `control = "token"` replaces the one-hot prefix by one token per subtask written last, in
//! place of `=`: `bits ++ task_i` then the answer. The one-hot prefix suits the paper's MLPs,
//! which see every input bit at once; a transformer reading it must first carry the subtask from
//! the prefix to the answer position (one layer) before it can look up the subtask's bits
//! (another), while a subtask token at the answer position can look them up directly.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::{Breakdown, Dataset, SplitMix64};

/// Bits are tokens 0 and 1 (in the control prefix and in the data alike); token 2 is `=`, or,
/// with a control token, subtask i is token 2 + i.
const EQUALS: u32 = 2;

/// How the example says which subtask it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// n_tasks bits before the data bits, the subtask's set (Michaud et al.).
    #[default]
    OneHot,
    /// One token per subtask after the data bits, where the one-hot layout has `=`.
    Token,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SparseParityTask {
    /// Number of subtasks (the length of the one-hot control prefix).
    #[serde(default = "default_n_tasks")]
    pub n_tasks: usize,
    /// Data bits per example.
    #[serde(default = "default_n_bits")]
    pub n_bits: usize,
    /// Bits each subtask's parity reads.
    #[serde(default = "default_k")]
    pub k: usize,
    /// Zipf exponent of the subtask frequencies: p_i proportional to i^-alpha (i = 1..n_tasks).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default = "default_train_size")]
    pub train_size: usize,
    /// Validation examples, drawn from the same mixture and disjoint from training.
    #[serde(default = "default_val_size")]
    pub val_size: usize,
    /// How an example names its subtask (see the module doc). The default, the paper's one-hot
    /// prefix, is left out of the serialized spec, so a job id names only the departures.
    #[serde(default, skip_serializing_if = "is_one_hot")]
    pub control: Control,
}

fn is_one_hot(c: &Control) -> bool {
    *c == Control::OneHot
}

fn default_n_tasks() -> usize {
    6
}
fn default_n_bits() -> usize {
    16
}
fn default_k() -> usize {
    3
}
fn default_alpha() -> f64 {
    1.5
}
fn default_train_size() -> usize {
    20_000
}
fn default_val_size() -> usize {
    3_000
}

impl SparseParityTask {
    pub(crate) fn shape(&self) -> (usize, usize, usize) {
        match self.control {
            Control::OneHot => (3, self.n_tasks + self.n_bits + 1, 1),
            Control::Token => (2 + self.n_tasks, self.n_bits + 1, 1),
        }
    }

    pub(crate) fn label(&self) -> String {
        let control = match self.control {
            Control::OneHot => "",
            Control::Token => "t",
        };
        format!("parity{}x{}k{}{control}", self.n_tasks, self.n_bits, self.k)
    }

    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=64).contains(&self.n_tasks) {
            return Err((
                "task.n_tasks".into(),
                format!("an integer from 1 to 64, got {}", self.n_tasks),
            ));
        }
        if !(1..=40).contains(&self.n_bits) {
            return Err((
                "task.n_bits".into(),
                format!("an integer from 1 to 40, got {}", self.n_bits),
            ));
        }
        if !(1..=self.n_bits).contains(&self.k) {
            return Err((
                "task.k".into(),
                format!(
                    "an integer from 1 to n_bits = {}, got {}",
                    self.n_bits, self.k
                ),
            ));
        }
        if binomial(self.n_bits, self.k) < self.n_tasks as f64 {
            return Err((
                "task.n_tasks".into(),
                format!(
                    "at most the {} distinct {}-bit subsets of {} bits, got {}",
                    binomial(self.n_bits, self.k),
                    self.k,
                    self.n_bits,
                    self.n_tasks
                ),
            ));
        }
        if !(self.alpha.is_finite() && (0.0..=10.0).contains(&self.alpha)) {
            return Err((
                "task.alpha".into(),
                format!("a number from 0 to 10, got {}", self.alpha),
            ));
        }
        if self.train_size == 0 || self.val_size == 0 {
            return Err((
                "task.train_size / task.val_size".into(),
                "positive integers".into(),
            ));
        }
        // Even if every example fell in one subtask, sampling without replacement would stay
        // quick: at most half of that subtask's 2^n_bits inputs are taken.
        let half_space = 2f64.powi(self.n_bits as i32 - 1);
        if (self.train_size + self.val_size) as f64 > half_space {
            return Err((
                "task.train_size + task.val_size".into(),
                format!(
                    "at most 2^(n_bits - 1) = {half_space}, got {}",
                    self.train_size + self.val_size
                ),
            ));
        }
        Ok(())
    }

    /// Subtask frequencies, p_i proportional to i^-alpha, summing to 1.
    pub fn frequencies(&self) -> Vec<f64> {
        let w: Vec<f64> = (1..=self.n_tasks)
            .map(|i| (i as f64).powf(-self.alpha))
            .collect();
        let total: f64 = w.iter().sum();
        w.iter().map(|x| x / total).collect()
    }

    /// Each subtask's `k` data-bit positions, sorted; distinct subtasks read distinct subsets.
    pub fn subsets(&self, seed: u64) -> Vec<Vec<usize>> {
        let mut rng = SplitMix64::derive(seed, 3);
        let mut out: Vec<Vec<usize>> = Vec::with_capacity(self.n_tasks);
        while out.len() < self.n_tasks {
            // Partial Fisher-Yates: the first k of a shuffled 0..n_bits.
            let mut bits: Vec<usize> = (0..self.n_bits).collect();
            for i in 0..self.k {
                let j = i + rng.below((self.n_bits - i) as u64) as usize;
                bits.swap(i, j);
            }
            let mut subset = bits[..self.k].to_vec();
            subset.sort_unstable();
            if !out.contains(&subset) {
                out.push(subset);
            }
        }
        out
    }

    /// The sequence of subtask `task` on data bits `bits` (bit j of the integer is data bit j).
    fn encode(&self, task: usize, bits: u64, subset: &[usize]) -> Vec<u32> {
        let mut seq = Vec::with_capacity(self.n_tasks + self.n_bits + 2);
        let data = (0..self.n_bits).map(|j| ((bits >> j) & 1) as u32);
        match self.control {
            Control::OneHot => {
                seq.extend((0..self.n_tasks).map(|i| u32::from(i == task)));
                seq.extend(data);
                seq.push(EQUALS);
            }
            Control::Token => {
                seq.extend(data);
                seq.push(EQUALS + task as u32);
            }
        }
        let parity = subset.iter().map(|&j| (bits >> j) & 1).sum::<u64>() % 2;
        seq.push(parity as u32);
        seq
    }

    pub(crate) fn generate(&self, seed: u64) -> Dataset {
        let subsets = self.subsets(seed);
        let cdf: Vec<f64> = self
            .frequencies()
            .iter()
            .scan(0.0, |acc, p| {
                *acc += p;
                Some(*acc)
            })
            .collect();
        let mut rng = SplitMix64::derive(seed, 4);
        let wanted = self.train_size + self.val_size;
        let mut seen = HashSet::with_capacity(wanted);
        let (mut seqs, mut groups) = (Vec::with_capacity(wanted), Vec::with_capacity(wanted));
        while seqs.len() < wanted {
            let u = rng.next_f64();
            let task = cdf.iter().position(|&c| u < c).unwrap_or(self.n_tasks - 1);
            let bits = rng.below(1 << self.n_bits);
            // Distinct (subtask, bits) pairs, so no validation example is a training example.
            if seen.insert((task, bits)) {
                seqs.push(self.encode(task, bits, &subsets[task]));
                groups.push(task as u32);
            }
        }
        let val = seqs.split_off(self.train_size);
        let val_groups = groups.split_off(self.train_size);
        let (vocab_size, prompt_len, answer_len) = self.shape();
        Dataset {
            vocab_size,
            prompt_len,
            answer_len,
            train: seqs,
            val,
            breakdown: Breakdown::Groups {
                count: self.n_tasks,
                train: groups,
                val: val_groups,
            },
        }
    }
}

/// n choose k as a float (exact for the sizes validated here).
fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> SparseParityTask {
        SparseParityTask {
            n_tasks: 4,
            n_bits: 10,
            k: 3,
            alpha: 1.0,
            train_size: 300,
            val_size: 200,
            control: Control::OneHot,
        }
    }

    #[test]
    fn known_input_is_encoded_with_its_parity() {
        let t = task();
        // Subtask 2 of 4, data bits 0, 1 and 4 set, parity of bits {1, 4, 7}: two set -> 0.
        let seq = t.encode(2, 0b1_0011, &[1, 4, 7]);
        assert_eq!(
            seq,
            vec![0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0],
            "control one-hot, bits least significant first, `=`, parity"
        );
        assert_eq!(*t.encode(0, 0b1000_0010, &[1, 4, 7]).last().unwrap(), 0);
        assert_eq!(*t.encode(0, 0b1001_0010, &[1, 4, 7]).last().unwrap(), 1);
        assert_eq!(seq.len(), t.shape().1 + t.shape().2);
    }

    #[test]
    fn control_token_replaces_the_prefix_and_the_equals() {
        let t = SparseParityTask {
            control: Control::Token,
            ..task()
        };
        let seq = t.encode(2, 0b1_0011, &[1, 4, 7]);
        assert_eq!(seq, vec![1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 4, 0]);
        assert_eq!(t.shape(), (6, 11, 1));
        assert_eq!(t.label(), "parity4x10k3t");
        let d = t.generate(5);
        for (s, &g) in d.train.iter().zip(d.breakdown.groups(true)) {
            assert_eq!(s[10], 2 + g, "the control token is the group's");
            assert!(s.iter().all(|&x| (x as usize) < d.vocab_size));
        }
    }

    #[test]
    fn every_example_answers_its_subtasks_parity() {
        let t = task();
        let d = t.generate(11);
        let subsets = t.subsets(11);
        let groups = [d.breakdown.groups(true), d.breakdown.groups(false)];
        for (seqs, groups) in [&d.train, &d.val].into_iter().zip(groups) {
            assert_eq!(seqs.len(), groups.len());
            for (s, &g) in seqs.iter().zip(groups) {
                let control = &s[..t.n_tasks];
                assert_eq!(control.iter().sum::<u32>(), 1);
                assert_eq!(control[g as usize], 1, "the group is the hot control bit");
                let data = &s[t.n_tasks..t.n_tasks + t.n_bits];
                let parity = subsets[g as usize].iter().map(|&j| data[j]).sum::<u32>() % 2;
                assert_eq!(s[t.n_tasks + t.n_bits], EQUALS);
                assert_eq!(s[t.n_tasks + t.n_bits + 1], parity);
            }
        }
    }

    #[test]
    fn deterministic_disjoint_and_zipf_distributed() {
        let t = SparseParityTask {
            n_bits: 14,
            train_size: 4000,
            val_size: 1000,
            ..task()
        };
        assert_eq!(t.validate(), Ok(()));
        let d = t.generate(3);
        assert_eq!(d, t.generate(3));
        assert_ne!(d.train, t.generate(4).train);
        let train: HashSet<_> = d.train.iter().collect();
        assert_eq!(train.len(), 4000);
        assert!(d.val.iter().all(|s| !train.contains(s)));
        // Subtask counts follow 1 : 1/2 : 1/3 : 1/4 within sampling noise (5 sigma).
        let freqs = t.frequencies();
        let groups = d.breakdown.groups(true);
        for (i, p) in freqs.iter().enumerate() {
            let seen = groups.iter().filter(|&&g| g as usize == i).count() as f64;
            let sd = (4000.0 * p * (1.0 - p)).sqrt();
            assert!((seen - 4000.0 * p).abs() < 5.0 * sd, "subtask {i}: {seen}");
        }
        assert!((freqs[0] / freqs[3] - 4.0).abs() < 1e-12);
    }

    #[test]
    fn subsets_are_distinct_sorted_and_in_range() {
        let t = SparseParityTask {
            n_tasks: 10,
            n_bits: 5,
            ..task()
        };
        let s = t.subsets(0);
        assert_eq!(s.len(), 10, "all C(5,3) = 10 subsets");
        for (i, a) in s.iter().enumerate() {
            assert!(a.windows(2).all(|w| w[0] < w[1]) && a.iter().all(|&j| j < 5));
            assert!(s[i + 1..].iter().all(|b| b != a));
        }
    }

    #[test]
    fn bad_parameters_name_their_field() {
        let bad = [
            (SparseParityTask { k: 11, ..task() }, "task.k"),
            (
                SparseParityTask {
                    n_tasks: 0,
                    ..task()
                },
                "task.n_tasks",
            ),
            (
                SparseParityTask {
                    n_tasks: 11,
                    n_bits: 5,
                    ..task()
                },
                "task.n_tasks",
            ),
            (
                SparseParityTask {
                    alpha: f64::NAN,
                    ..task()
                },
                "task.alpha",
            ),
            (
                SparseParityTask {
                    train_size: 500,
                    ..task()
                },
                "task.train_size + task.val_size",
            ),
        ];
        for (t, field) in bad {
            assert_eq!(t.validate().unwrap_err().0, field, "{t:?}");
        }
        assert_eq!(task().validate(), Ok(()));
    }
}
