//! Pure functions over numbers for emergence-lab: calibrated verdicts on thresholds of abilities
//! over scale, Schaeffer's test of whether a jump is made by the metric, loss scaling laws,
//! grokking times and their distribution over seeds. No I/O; formulas follow
//! `shared/docs/literature.md`, statistics and their calibration are in docs/analysis.md.

pub mod emergence;
pub mod forecast;
pub mod grokking;
pub mod mirage;
pub mod refine;
pub mod scaling;
pub mod stats;
pub mod subtasks;

pub use emergence::acquisition::{acquisition_step, rise_decades, wilson};
pub use emergence::over_steps::{
    Points, StepThreshold, budget_limited, log_spaced, threshold_over_steps,
};
pub use emergence::{
    Criteria, LineFit, LogisticFit, MIN_SIZES, ThresholdReport, Unresolved, Verdict,
    analyze_threshold, breakthroughness, classify, fit_line, fit_logistic, fit_smooth,
    mean_by_scale, test_smooth, usable,
};
pub use forecast::{Forecast, forecast};
pub use grokking::{Crossing, GrokkingTimes, TimeToEvent, as_event, first_crossing, kaplan_meier};
pub use mirage::{
    Attribution, JobScores, PositionMetric, SchaefferReport, expected_exact_match,
    position_resamples, schaeffer_test,
};
pub use refine::refinement_points;
pub use scaling::{PowerLawFit, fit_power_law};
pub use subtasks::{LogLogFit, fit_log_log, frequency_order, subtask_thresholds};
