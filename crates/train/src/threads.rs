//! Where a training step runs: on a thread of rayon's pool, not on the thread that called.
//!
//! The CPU backend (burn's Flex) splits matmuls and large element-wise ops across rayon's
//! threads. Called from outside the pool, each such op is handed to the pool while the caller
//! sleeps, and between ops the pool's threads fall asleep too: a step of a small model is
//! hundreds of ops, each paying a wake-up. Run from a thread of the pool, an op keeps one piece
//! for itself and the idle thread steals the other, still spinning from the last op.
//! Measured on an AMD EPYC (AVX2, 2 cores), `elab bench`: the 1M rung 148 -> 137 ms/step,
//! nanda 101 -> 93 (docs/performance.md). Results are the same bit for bit: each op's pieces
//! and their arithmetic do not depend on which thread runs them.

use std::sync::OnceLock;

/// Runs `work` on a thread of the compute pool (as many threads as rayon's default:
/// `RAYON_NUM_THREADS`, else one per core) and returns what it returns.
pub fn on_compute_threads<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("elab-compute-{i}"))
            .build()
            .expect("rayon could not start its threads")
    })
    .install(work)
}
