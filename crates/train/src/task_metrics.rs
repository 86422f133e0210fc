//! Scores particular to a task, from the same teacher-forced log-probabilities as [`Scorer`]
//! (see `elab_tasks::Breakdown`). They are extra keys of the eval row's metrics:
//!
//! * Groups (sparse parity's subtasks): `subtask_accuracy.<i>` (fraction of examples of subtask i
//!   whose answer is entirely right under teacher forcing: for a one-token answer, exact match)
//!   and `subtask_loss.<i>` (mean cross-entropy per answer token) for every i in `0..count`;
//!   NaN for a subtask with no example in the scored slice.
//! * Positions (induction): `icl_score` = loss at the late position minus loss at the early one
//!   (Olsson et al. 2022; negative once the model learns in context), `repeat_accuracy` and
//!   `repeat_loss` over the predictable part of the repeated segment, and `random_loss` over the
//!   other answer positions (whose floor is ln(vocab)).
//!
//! [`Scorer`]: crate::metrics::Scorer

use std::collections::BTreeMap;

use elab_tasks::Breakdown;

use crate::metrics::argmax;

/// Running sums of the task-specific scores over batches of examples, in order.
#[derive(Debug)]
pub struct TaskScorer<'a> {
    breakdown: &'a Breakdown,
    /// Group of every example that will be added (empty unless the breakdown has groups).
    groups: &'a [u32],
    added: usize,
    /// Per group: (examples, examples all right, summed nll, answer tokens).
    per_group: Vec<(usize, usize, f64, usize)>,
    /// Per answer position: (summed nll, correct argmaxes, examples).
    per_position: Vec<(f64, usize, usize)>,
}

impl<'a> TaskScorer<'a> {
    /// `groups` are the groups of the examples that will be added, in order
    /// (`breakdown.groups(..)` cut to the scored examples).
    pub fn new(breakdown: &'a Breakdown, groups: &'a [u32]) -> Self {
        let count = match breakdown {
            Breakdown::Groups { count, .. } => *count,
            _ => 0,
        };
        Self {
            breakdown,
            groups,
            added: 0,
            per_group: vec![(0, 0, 0.0, 0); count],
            per_position: Vec::new(),
        }
    }

    /// Adds a batch: `logp` is `[n, answer_len, vocab]` row-major teacher-forced log-softmax at
    /// the answer positions, `targets` is `[n, answer_len]` (as for [`crate::metrics::Scorer`]).
    pub fn add(&mut self, logp: &[f32], vocab: usize, targets: &[u32], answer_len: usize) {
        assert_eq!(logp.len(), targets.len() * vocab);
        let n = targets.len() / answer_len;
        match self.breakdown {
            Breakdown::None => {}
            Breakdown::Groups { .. } => {
                let groups = &self.groups[self.added..self.added + n];
                for (e, &g) in groups.iter().enumerate() {
                    let (mut nll, mut all_right) = (0.0, true);
                    for t in e * answer_len..(e + 1) * answer_len {
                        let row = &logp[t * vocab..(t + 1) * vocab];
                        nll -= row[targets[t] as usize] as f64;
                        all_right &= argmax(row) == targets[t] as usize;
                    }
                    let slot = &mut self.per_group[g as usize];
                    slot.0 += 1;
                    slot.1 += usize::from(all_right);
                    slot.2 += nll;
                    slot.3 += answer_len;
                }
            }
            Breakdown::Positions { .. } => {
                self.per_position.resize(answer_len, (0.0, 0, 0));
                for (t, &target) in targets.iter().enumerate() {
                    let row = &logp[t * vocab..(t + 1) * vocab];
                    let slot = &mut self.per_position[t % answer_len];
                    slot.0 -= row[target as usize] as f64;
                    slot.1 += usize::from(argmax(row) == target as usize);
                    slot.2 += 1;
                }
            }
        }
        self.added += n;
    }

    pub fn finish(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        match self.breakdown {
            Breakdown::None => {}
            Breakdown::Groups { .. } => {
                for (i, &(examples, right, nll, tokens)) in self.per_group.iter().enumerate() {
                    let (acc, loss) = match examples {
                        0 => (f64::NAN, f64::NAN),
                        n => (right as f64 / n as f64, nll / tokens as f64),
                    };
                    out.insert(format!("subtask_accuracy.{i}"), acc);
                    out.insert(format!("subtask_loss.{i}"), loss);
                }
            }
            Breakdown::Positions {
                early,
                late,
                repeat,
            } => {
                // Mean loss and accuracy over a set of positions, pooled over examples.
                let pooled = |keep: &dyn Fn(usize) -> bool| {
                    let (mut nll, mut right, mut count) = (0.0, 0, 0);
                    for (t, &(n, r, c)) in self.per_position.iter().enumerate() {
                        if keep(t) {
                            (nll, right, count) = (nll + n, right + r, count + c);
                        }
                    }
                    match count {
                        0 => (f64::NAN, f64::NAN),
                        c => (nll / c as f64, right as f64 / c as f64),
                    }
                };
                let (late_loss, _) = pooled(&|t| t == *late);
                let (early_loss, _) = pooled(&|t| t == *early);
                let (repeat_loss, repeat_accuracy) = pooled(&|t| repeat.contains(&t));
                let first_of_repeat = repeat.start.saturating_sub(1);
                let (random_loss, _) = pooled(&|t| !repeat.contains(&t) && t != first_of_repeat);
                out.insert("icl_score".to_string(), late_loss - early_loss);
                out.insert("repeat_accuracy".to_string(), repeat_accuracy);
                out.insert("repeat_loss".to_string(), repeat_loss);
                out.insert("random_loss".to_string(), random_loss);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// log-probabilities of a vocabulary of 2 with p(token 0) = a.
    fn p(a: f32) -> [f32; 2] {
        [a.ln(), (1.0 - a).ln()]
    }

    #[test]
    fn per_group_accuracy_and_loss_by_hand() {
        let breakdown = Breakdown::Groups {
            count: 3,
            train: vec![],
            val: vec![],
        };
        // Four one-token examples in two batches: groups 1, 0 | 1, 1. Group 2 has none.
        let groups = [1, 0, 1, 1];
        let mut s = TaskScorer::new(&breakdown, &groups);
        s.add(&[p(0.9), p(0.3)].concat(), 2, &[0, 0], 1);
        s.add(&[p(0.2), p(0.6)].concat(), 2, &[1, 1], 1);
        let m = s.finish();
        // Group 1: right (0.9 on 0), right (0.8 on 1), wrong (0.4 on 1).
        assert!((m["subtask_accuracy.1"] - 2.0 / 3.0).abs() < 1e-12);
        let nll1 = -(0.9f64.ln() + 0.8f64.ln() + 0.4f64.ln()) / 3.0;
        assert!((m["subtask_loss.1"] - nll1).abs() < 1e-6);
        // Group 0: wrong (0.3 on 0).
        assert_eq!(m["subtask_accuracy.0"], 0.0);
        assert!((m["subtask_loss.0"] + 0.3f64.ln()).abs() < 1e-6);
        assert!(m["subtask_accuracy.2"].is_nan() && m["subtask_loss.2"].is_nan());
        assert_eq!(m.len(), 6);
    }

    #[test]
    fn group_accuracy_needs_every_answer_token() {
        let breakdown = Breakdown::Groups {
            count: 1,
            train: vec![],
            val: vec![],
        };
        let groups = [0, 0];
        let mut s = TaskScorer::new(&breakdown, &groups);
        // Example 1 all right; example 2 right then wrong.
        let logp = [p(0.9), p(0.1), p(0.9), p(0.9)].concat();
        s.add(&logp, 2, &[0, 1, 0, 1], 2);
        assert_eq!(s.finish()["subtask_accuracy.0"], 0.5);
    }

    #[test]
    fn icl_score_and_repeat_accuracy_by_hand() {
        // Answer length 4: position 1 early, 3 late, repeat 3..4 (position 2 is the
        // repeat's unpredictable first token, in neither the repeat nor the random part).
        let breakdown = Breakdown::Positions {
            early: 1,
            late: 3,
            repeat: 3..4,
        };
        let mut s = TaskScorer::new(&breakdown, &[]);
        let ex1 = [p(0.5), p(0.5), p(0.5), p(0.9)].concat();
        let ex2 = [p(0.5), p(0.25), p(0.5), p(0.3)].concat();
        s.add(&[ex1, ex2].concat(), 2, &[0, 0, 0, 0, 0, 0, 0, 0], 4);
        let m = s.finish();
        let late = -(0.9f64.ln() + 0.3f64.ln()) / 2.0;
        let early = -(0.5f64.ln() + 0.25f64.ln()) / 2.0;
        assert!((m["icl_score"] - (late - early)).abs() < 1e-6);
        assert!((m["repeat_loss"] - late).abs() < 1e-6);
        assert_eq!(m["repeat_accuracy"], 0.5);
        let random = -(2.0 * 0.5f64.ln() + 0.5f64.ln() + 0.25f64.ln()) / 4.0;
        assert!((m["random_loss"] - random).abs() < 1e-6);
    }

    #[test]
    fn no_breakdown_adds_nothing() {
        let mut s = TaskScorer::new(&Breakdown::None, &[]);
        s.add(&p(0.5), 2, &[0], 1);
        assert!(s.finish().is_empty());
    }
}
