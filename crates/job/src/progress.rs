//! What `elab train --progress-json` prints on stdout, one JSON object per line, and the local
//! scheduler reads to draw its progress bars.

use serde::{Deserialize, Serialize};

/// What a live run reports after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The job's id when the worker trains a pack of jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub step: u64,
    pub steps: u64,
    /// Mean training loss over the steps between the last two read-backs of the losses from the
    /// device (at the first step of each attempt, at every evaluation, every few seconds and at
    /// the end): the trainer does not wait for the device every step.
    pub loss: f64,
    /// Validation exact match at the last evaluation.
    pub val_exact_match: Option<f64>,
}
