//! The signals that ask a worker to checkpoint and stop, in one place: `elab train` handles
//! them, the local scheduler starts its workers with them blocked (so that one sent before
//! the worker's handlers are installed waits for them instead of killing it).
//!
//! SIGINT (Ctrl-C, or the scheduler), SIGTERM (`kill`, Slurm's preemption and scancel),
//! SIGUSR1 (Slurm's warning before the time limit) and SIGHUP (the terminal or ssh session
//! went away) all mean the same: checkpoint at the next step boundary and exit 75. SIGHUP
//! only where it is not ignored: under `nohup` a hang-up must change nothing.

use std::io;

use libc::c_int;

/// The stop signals, SIGHUP last (it is handled only where it is not ignored, see
/// [`ignored`]).
pub const STOP: [c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1, libc::SIGHUP];

/// Whether `signal` is ignored in this process, as `nohup` leaves SIGHUP for the command it
/// runs (an ignored disposition is inherited across fork and exec).
pub fn ignored(signal: c_int) -> bool {
    // SAFETY: a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// Blocks (`true`) or unblocks the stop signals in the calling thread; a blocked signal sent
/// meanwhile stays pending and is delivered on unblocking. Async-signal-safe (no allocation),
/// so that it can run between fork and exec; the mask is inherited across exec.
pub fn set_blocked(block: bool) -> io::Result<()> {
    // SAFETY: plain libc calls on a local signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in STOP {
            libc::sigaddset(&mut set, signal);
        }
        let how = if block {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        match libc::pthread_sigmask(how, &set, std::ptr::null_mut()) {
            0 => Ok(()),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }
}
