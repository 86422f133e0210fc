//! What a sweep's records say, computed once for every consumer: the records loaded (each job's
//! evaluations by column, [`evals`]) and grouped for comparison ([`load`]), thresholds and verdicts per (group, score, scale)
//! ([`thresholds`]), grokking times ([`grokking`]), acquisition times ([`acquisition`]), per-subtask fits for sparse parity
//! ([`subtasks`]) and phase diagrams over pairs of swept axes ([`phase`]).
//!
//! Pure computation on loaded records: it writes nothing. `elab-report` renders these as CSV,
//! figures and HTML; `elab-refine` reads the thresholds to decide where to add sizes, so both
//! see the same numbers. The statistics themselves are `elab-analysis`'s.

pub mod acquisition;
pub mod evals;
pub mod grokking;
pub mod load;
pub mod phase;
pub mod subtasks;
pub mod thresholds;
