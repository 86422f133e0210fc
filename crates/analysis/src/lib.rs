//! Pure functions over numbers for emergence-lab: thresholds of abilities over scale, grokking
//! times, and the "mirage" comparison of metrics. No I/O; formulas follow
//! `shared/docs/literature.md`.

pub mod emergence;
pub mod grokking;
pub mod mirage;
pub mod stats;
pub mod subtasks;

pub use emergence::{
    Criteria, LineFit, LogisticFit, ThresholdReport, Verdict, analyze_threshold, breakthroughness,
    classify, fit_line, fit_logistic, mean_by_scale,
};
pub use grokking::{Crossing, GrokkingTimes, first_crossing};
pub use mirage::{
    MirageReport, expected_exact_match, max_exact_match_gap, mirage_flag, mirage_report,
};
pub use subtasks::{PowerLawFit, fit_power_law, frequency_order, subtask_thresholds};
