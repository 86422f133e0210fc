//! `<run>/heartbeat.json`: rewritten every few seconds by a live worker, removed when it exits.
//! A fresh heartbeat is how `elab status`, the scheduler and the exporters tell a running job
//! from one whose worker is gone.

use std::io;

use serde::{Deserialize, Serialize};

use crate::{RunDir, fsio};

/// A heartbeat older than this means the worker is gone, whatever it last wrote.
pub const HEARTBEAT_STALE_SECS: f64 = 90.0;

/// What a live worker last wrote to `heartbeat.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub pid: u32,
    /// The step the worker had reached.
    pub step: u64,
    /// Seconds since the Unix epoch when it was written.
    pub unix_time: f64,
}

impl Heartbeat {
    /// This process at `step`, now.
    pub fn now(step: u64) -> Self {
        Self {
            pid: std::process::id(),
            step,
            unix_time: unix_now(),
        }
    }

    /// Replaces `run`'s heartbeat atomically.
    pub fn write(&self, run: &RunDir) -> io::Result<()> {
        fsio::write_atomic(&run.heartbeat(), &serde_json::to_vec(self)?)
    }

    /// `run`'s heartbeat, if a worker left one (and it parses).
    pub fn read(run: &RunDir) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(run.heartbeat()).ok()?).ok()
    }

    /// Seconds since it was written.
    pub fn age(&self) -> f64 {
        unix_now() - self.unix_time
    }

    /// Recent enough that its worker counts as alive.
    pub fn is_fresh(&self) -> bool {
        self.age() < HEARTBEAT_STALE_SECS
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ages() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path());
        assert_eq!(Heartbeat::read(&run), None);
        let beat = Heartbeat::now(42);
        beat.write(&run).unwrap();
        let back = Heartbeat::read(&run).unwrap();
        assert_eq!((back.pid, back.step), (beat.pid, beat.step));
        assert!((back.unix_time - beat.unix_time).abs() < 1e-3);
        assert!(back.is_fresh());
        let old = Heartbeat {
            unix_time: unix_now() - HEARTBEAT_STALE_SECS - 1.0,
            ..beat
        };
        assert!(!old.is_fresh());
        // The fields are the file format: what `elab status` and the scheduler read.
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.heartbeat()).unwrap()).unwrap();
        assert_eq!(json["step"], 42);
        assert_eq!(json["pid"], std::process::id());
    }
}
