//! n-digit addition and multiplication on digit tokens: `a op b =` then the answer, zero-padded
//! to a fixed length L (n+1 for addition, 2n for multiplication), optionally reversed (least
//! significant digit first, which Lee et al. 2024 find much easier to learn).
//!
//! Addition's examples are grouped by their number of carries (0 to n): a longer answer also
//! carries more often, so per-group scores let an analysis of answer length hold the carries
//! fixed (Schaeffer et al.'s length sweep is otherwise confounded with them).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::{Breakdown, Dataset, SplitMix64, shuffle};

const PLUS: u32 = 10;
const TIMES: u32 = 11;
const EQUALS: u32 = 12;
const VOCAB: usize = 13;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigitOp {
    Add,
    Mul,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigitsTask {
    #[serde(default = "default_op")]
    pub op: DigitOp,
    /// Digits per operand (operands are uniform in 0..10^n).
    #[serde(default = "default_digits")]
    pub digits: u32,
    /// Answer least significant digit first.
    #[serde(default)]
    pub reversed: bool,
    #[serde(default = "default_train_size")]
    pub train_size: usize,
    /// Validation examples, disjoint from training; >= 2000 keeps accuracies of 0.1% visible.
    #[serde(default = "default_val_size")]
    pub val_size: usize,
}

fn default_op() -> DigitOp {
    DigitOp::Add
}
fn default_digits() -> u32 {
    3
}
fn default_train_size() -> usize {
    10_000
}
fn default_val_size() -> usize {
    2_000
}

impl DigitsTask {
    fn answer_len(&self) -> usize {
        match self.op {
            DigitOp::Add => self.digits as usize + 1,
            DigitOp::Mul => 2 * self.digits as usize,
        }
    }

    pub(crate) fn shape(&self) -> (usize, usize, usize) {
        (VOCAB, 2 * self.digits as usize + 2, self.answer_len())
    }

    pub(crate) fn label(&self) -> String {
        let op = match self.op {
            DigitOp::Add => "add",
            DigitOp::Mul => "mul",
        };
        format!(
            "{op}{}{}",
            self.digits,
            if self.reversed { "r" } else { "" }
        )
    }

    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=9).contains(&self.digits) {
            return Err((
                "task.digits".into(),
                format!("an integer from 1 to 9, got {}", self.digits),
            ));
        }
        if self.train_size == 0 || self.val_size == 0 {
            return Err((
                "task.train_size / task.val_size".into(),
                "positive integers".into(),
            ));
        }
        let pairs = 10u128.pow(2 * self.digits);
        if (self.train_size + self.val_size) as u128 > pairs {
            return Err((
                "task.train_size + task.val_size".into(),
                format!(
                    "at most the {pairs} distinct {}-digit operand pairs, got {}",
                    self.digits,
                    self.train_size + self.val_size
                ),
            ));
        }
        Ok(())
    }

    fn encode(&self, a: u64, b: u64) -> Vec<u32> {
        let n = self.digits as usize;
        let c = match self.op {
            DigitOp::Add => a + b,
            DigitOp::Mul => a * b,
        };
        let mut seq = Vec::with_capacity(2 * n + 2 + self.answer_len());
        seq.extend(digits_msb_first(a, n));
        seq.push(if self.op == DigitOp::Add { PLUS } else { TIMES });
        seq.extend(digits_msb_first(b, n));
        seq.push(EQUALS);
        let mut answer = digits_msb_first(c, self.answer_len());
        if self.reversed {
            answer.reverse();
        }
        seq.extend(answer);
        seq
    }

    pub(crate) fn generate(&self, seed: u64) -> Dataset {
        let range = 10u64.pow(self.digits);
        let wanted = self.train_size + self.val_size;
        let mut rng = SplitMix64::derive(seed, 2);
        // Small spaces are enumerated and shuffled; large ones sampled without replacement.
        let pairs: Vec<(u64, u64)> = if (range * range) as usize <= 4 * wanted {
            let mut all: Vec<_> = (0..range)
                .flat_map(|a| (0..range).map(move |b| (a, b)))
                .collect();
            shuffle(&mut all, &mut rng);
            all.truncate(wanted);
            all
        } else {
            let mut seen = HashSet::with_capacity(wanted);
            let mut out = Vec::with_capacity(wanted);
            while out.len() < wanted {
                let pair = (rng.below(range), rng.below(range));
                if seen.insert(pair) {
                    out.push(pair);
                }
            }
            out
        };
        let mut seqs: Vec<Vec<u32>> = pairs.iter().map(|&(a, b)| self.encode(a, b)).collect();
        let val = seqs.split_off(self.train_size);
        let breakdown = match self.op {
            DigitOp::Add => {
                let mut groups: Vec<u32> = pairs.iter().map(|&(a, b)| carries(a, b)).collect();
                let val = groups.split_off(self.train_size);
                Breakdown::Groups {
                    count: self.digits as usize + 1,
                    train: groups,
                    val,
                }
            }
            DigitOp::Mul => Breakdown::None,
        };
        let (vocab_size, prompt_len, answer_len) = self.shape();
        Dataset {
            vocab_size,
            prompt_len,
            answer_len,
            train: seqs,
            val,
            breakdown,
        }
    }
}

/// Column additions of a + b that carry into the next column.
fn carries(mut a: u64, mut b: u64) -> u32 {
    let (mut carry, mut count) = (0, 0);
    while a > 0 || b > 0 {
        carry = u64::from((a % 10 + b % 10 + carry) >= 10);
        count += carry as u32;
        (a, b) = (a / 10, b / 10);
    }
    count
}

fn digits_msb_first(mut v: u64, len: usize) -> Vec<u32> {
    let mut out = vec![0; len];
    for slot in out.iter_mut().rev() {
        *slot = (v % 10) as u32;
        v /= 10;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(tokens: &[u32]) -> u64 {
        tokens.iter().fold(0, |acc, &d| acc * 10 + d as u64)
    }

    #[test]
    fn addition_is_padded_and_correct() {
        let t = DigitsTask {
            op: DigitOp::Add,
            digits: 3,
            reversed: false,
            train_size: 500,
            val_size: 2000,
        };
        assert_eq!(t.encode(999, 7), vec![9, 9, 9, 10, 0, 0, 7, 12, 1, 0, 0, 6]);
        let d = t.generate(5);
        assert_eq!((d.prompt_len, d.answer_len), (8, 4));
        for s in d.train.iter().chain(&d.val) {
            assert_eq!(s.len(), 12);
            assert_eq!(number(&s[0..3]) + number(&s[4..7]), number(&s[8..]));
        }
    }

    #[test]
    fn addition_groups_examples_by_their_carries() {
        let t = DigitsTask {
            op: DigitOp::Add,
            digits: 3,
            reversed: true,
            train_size: 300,
            val_size: 200,
        };
        assert_eq!(
            (carries(999, 1), carries(123, 456), carries(95, 5)),
            (3, 0, 2)
        );
        let d = t.generate(1);
        let Breakdown::Groups { count, train, val } = &d.breakdown else {
            panic!("addition has groups: {:?}", d.breakdown);
        };
        assert_eq!((*count, train.len(), val.len()), (4, 300, 200));
        // Kummer: the carries of a + b are (digit sum of a + of b - of a + b) / 9.
        let digit_sum = |tokens: &[u32]| tokens.iter().sum::<u32>();
        for (s, &g) in d.train.iter().chain(&d.val).zip(train.iter().chain(val)) {
            let kummer = (digit_sum(&s[0..3]) + digit_sum(&s[4..7]) - digit_sum(&s[8..])) / 9;
            assert_eq!(g, kummer, "{s:?}");
        }
        for c in 0..4 {
            assert!(val.contains(&c), "no validation example with {c} carries");
        }
    }

    #[test]
    fn reversed_multiplication() {
        let t = DigitsTask {
            op: DigitOp::Mul,
            digits: 2,
            reversed: true,
            train_size: 10,
            val_size: 10,
        };
        // 12 * 34 = 408 -> "0408" -> reversed "8040"
        assert_eq!(t.encode(12, 34), vec![1, 2, 11, 3, 4, 12, 8, 0, 4, 0]);
    }

    #[test]
    fn train_and_validation_never_overlap() {
        for digits in [1, 2, 4] {
            let t = DigitsTask {
                op: DigitOp::Add,
                digits,
                reversed: false,
                train_size: 60,
                val_size: 40,
            };
            let d = t.generate(9);
            assert_eq!((d.train.len(), d.val.len()), (60, 40));
            let train: HashSet<_> = d.train.iter().collect();
            assert_eq!(train.len(), 60);
            assert!(d.val.iter().all(|s| !train.contains(s)));
            assert_eq!(d, t.generate(9));
        }
    }

    #[test]
    fn too_many_examples_for_the_space_is_an_error() {
        let t = DigitsTask {
            op: DigitOp::Add,
            digits: 1,
            reversed: false,
            train_size: 90,
            val_size: 20,
        };
        assert!(t.validate().unwrap_err().1.contains("100"));
    }
}
