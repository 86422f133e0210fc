//! How `elab train` is asked to stop: a flag that the stop signals set
//! ([`elab_job::signals::STOP`]), read by the trainer at every step boundary.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use elab_job::signals;
use signal_hook::consts::SIGHUP;

/// A flag set by SIGINT, SIGTERM, SIGUSR1, and SIGHUP unless it is ignored (`nohup`): the
/// trainer then checkpoints at the next step boundary and returns `Interrupted`.
///
/// Then unblocks those signals: the local scheduler starts its workers with them blocked, so
/// that a stop it sends in the worker's first milliseconds (a Ctrl-C right after a sweep
/// starts) stays pending until this point and reaches the handler, instead of killing the
/// worker before it can checkpoint.
pub fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in signals::STOP {
        if signal == SIGHUP && signals::ignored(SIGHUP) {
            continue;
        }
        signal_hook::flag::register(signal, stop.clone())?;
    }
    signals::set_blocked(false)?;
    Ok(stop)
}
