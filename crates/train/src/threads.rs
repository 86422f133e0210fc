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
            .start_handler(|_| flush_subnormals_on_this_thread())
            .build()
            .expect("rayon could not start its threads")
    })
    .install(work)
}

/// Turns on flush-to-zero and denormals-are-zero on the calling thread. A model that memorizes
/// without weight decay (Nanda's recipe at weight decay 0) drives its wrong-class probabilities
/// below float32's normal range, and an x86 core takes a slow microcode assist on every
/// subnormal operand: those runs trained at half the speed of their weight-decay twins. Flushing
/// changes only values below 1.2e-38, which no loss or gradient here can tell from 0; PyTorch
/// offers the same switch (`torch.set_flush_denormal`). The compute pool's threads always flush:
/// every training step runs on them, and on a GPU run their own floats are bookkeeping.
pub(crate) fn flush_subnormals_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    {
        // MXCSR bit 15 is FTZ, bit 6 DAZ. The intrinsics are deprecated because the compiler
        // assumes the default floating-point environment: with these two flags that assumption
        // differs only on subnormals, which is the point.
        #[allow(deprecated)]
        // SAFETY: reads and writes this thread's SSE control register, nothing else.
        unsafe {
            use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
            _mm_setcsr(_mm_getcsr() | 0x8040);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn every_compute_thread_flushes_subnormals() {
        // Half the smallest normal float is subnormal: kept by default, 0 when flushed.
        let halves = on_compute_threads(|| {
            rayon::broadcast(|_| black_box(f32::MIN_POSITIVE) / black_box(2.0f32))
        });
        assert!(!halves.is_empty());
        assert!(halves.iter().all(|&h| h == 0.0), "{halves:?}");
    }
}
