//! Exit codes of `elab`, in one place: the CLI returns them, the local scheduler and the Slurm
//! task script read them.

/// Finished: the run is done (or the command succeeded).
pub const DONE: u8 = 0;
/// Anything else went wrong (I/O, a crash, a failed job in a sweep).
pub const FAILURE: u8 = 1;
/// Bad input: the file, line and field are on stderr; nothing was written. Never retried.
pub const BAD_INPUT: u8 = 2;
/// The run diverged (non-finite loss); final, never retried.
pub const DIVERGED: u8 = 3;
/// Stopped on request (SIGINT, SIGTERM, SIGUSR1, SIGHUP) after a checkpoint: running again
/// resumes.
/// (75 is EX_TEMPFAIL of sysexits.h.)
pub const INTERRUPTED: u8 = 75;
/// A sweep stopped by Ctrl-C, SIGTERM or a hang-up (128 + SIGINT, as a shell reports a
/// Ctrl-C): every job is safe on disk.
pub const SWEEP_INTERRUPTED: u8 = 130;
