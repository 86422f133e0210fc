//! The local executor: each pack of jobs (see `packs`; one job when packing is off) runs as
//! an `elab train` worker process, at most `slots` at a time. A worker that crashes, is
//! OOM-killed or is killed alone is retried from its jobs' checkpoints with backoff (the jobs
//! it did not finish, as a pack again); a diverged job is final. Ctrl-C (or SIGTERM, or a
//! hang-up unless SIGHUP is ignored as under `nohup`) asks every worker to checkpoint and stop;
//! a second Ctrl-C or SIGTERM kills them (their state on disk is still safe). Workers start
//! with their stop signals blocked until their handlers are up, so a stop in their first
//! milliseconds is a checkpoint too.
//!
//! The scheduler never leaves its workers behind without a checkpoint: an error of its own
//! (say `attempts.jsonl` cannot be written) or a bug (a panic) asks every worker to checkpoint
//! and stop, waits for them, and only then reports the error. Each worker is signalled only by
//! the task that owns its process handle, and only until that task has reaped it, so a signal
//! can never reach a recycled pid.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use elab_job::{Attempt, JobSpec, JobState, Plan, PlannedJob, Progress, SweepDir, exit, unix_now};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdout};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::packs::{Device, PackSize, form_packs};

/// How the local executor runs a sweep.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// The `elab` binary that runs workers (normally the running executable).
    pub elab: PathBuf,
    pub slots: usize,
    pub max_retries: u32,
    pub backend: String,
    pub pack: PackSize,
}

/// How a sweep run ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepReport {
    pub done: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Stopped by Ctrl-C, SIGTERM or SIGHUP before the queue was empty.
    pub interrupted: bool,
}

/// The CPU cores this process may use (its affinity and cgroup quota): the default number of
/// slots, shared out between them as worker threads.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The rayon threads each worker gets: the cores shared out between the slots, so that `slots`
/// workers side by side do not each start a pool as large as the machine. Oversubscribed, rayon's
/// idle threads spin (`sched_yield`) against the other workers' compute: two 1M-rung jobs on 2
/// cores stepped in 277 ms with a pool of 2 each and 250 ms with 1 each (docs/performance.md).
/// `None` when the user set `RAYON_NUM_THREADS` (theirs is inherited).
fn worker_threads(user_set: bool, cores: usize, slots: usize) -> Option<usize> {
    (!user_set).then(|| (cores / slots.max(1)).max(1))
}

/// What the workers are asked to do, sent to every worker's supervising task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stop {
    Run,
    /// Checkpoint at the next step and exit (SIGINT, as a terminal's Ctrl-C would send).
    Checkpoint,
    /// Now (SIGKILL): the last checkpoint is still safe.
    Kill,
}

impl Stop {
    fn signal(self) -> Option<i32> {
        match self {
            Stop::Run => None,
            Stop::Checkpoint => Some(libc::SIGINT),
            Stop::Kill => Some(libc::SIGKILL),
        }
    }
}

/// How a worker ended.
#[derive(Debug)]
struct Finished {
    /// The jobs of the worker's pack.
    ids: Vec<String>,
    exit: Option<i32>,
    signal: Option<i32>,
    /// The last lines of its stderr.
    stderr_tail: String,
    /// The signals its supervising task sent it.
    signalled: Vec<i32>,
}

/// Runs every job of `plan` that is not done or diverged.
pub fn run_local(
    dir: &SweepDir,
    plan: &Plan,
    settings: &LocalSettings,
) -> anyhow::Result<SweepReport> {
    plan.check_ids().map_err(anyhow::Error::msg)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(schedule(dir, plan, settings))
}

async fn schedule(
    dir: &SweepDir,
    plan: &Plan,
    settings: &LocalSettings,
) -> anyhow::Result<SweepReport> {
    let mut s = Scheduler::new(dir, plan, settings);
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // A hang-up (the terminal or ssh session went away) stops the sweep like Ctrl-C, unless
    // SIGHUP is ignored: under `nohup` the sweep goes on, as it always did.
    let mut sighup = match elab_job::signals::ignored(libc::SIGHUP) {
        true => None,
        false => Some(signal(SignalKind::hangup())?),
    };
    // The first error (or panic) of the scheduler itself: every worker is asked to checkpoint,
    // and the error is returned once all have exited.
    let mut failure: Option<anyhow::Error> = None;

    loop {
        if !s.stopping()
            && let Err(e) = guard(|| s.launch())
        {
            s.fail(&mut failure, e);
        }
        if s.running.is_empty() && (s.queue.is_empty() || s.stopping()) {
            break;
        }
        let wake = s.next_wake();
        tokio::select! {
            Some(joined) = s.running.join_next() => {
                let handled = match joined {
                    Ok(f) => guard(|| s.finished(f)),
                    Err(e) => Err(anyhow::anyhow!("a worker's supervising task failed: {e}")),
                };
                if let Err(e) = handled {
                    s.fail(&mut failure, e);
                }
            }
            _ = sigint.recv() => s.interrupt_guarded(Interrupt::Repeatable, &mut failure),
            _ = sigterm.recv() => s.interrupt_guarded(Interrupt::Repeatable, &mut failure),
            Some(()) = hang_up(&mut sighup) => s.interrupt_guarded(Interrupt::HangUp, &mut failure),
            _ = tokio::time::sleep(wake) => {}
        }
    }
    s.bars.clear();
    match failure {
        Some(e) => Err(e),
        None => Ok(s.report),
    }
}

/// The next SIGHUP, if it is handled (never, if it is not).
async fn hang_up(sighup: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sighup {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// What stopped the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    /// Ctrl-C or SIGTERM: a second one kills the workers at once.
    Repeatable,
    /// SIGHUP: one hang-up often brings two (the shell passes one on to its jobs, the kernel
    /// sends another to the foreground group when the shell exits), so it never escalates.
    HangUp,
}

/// `f`, with a panic turned into an error, so that the scheduler can still stop its workers
/// gracefully.
fn guard<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(anyhow::anyhow!(
            "the sweep scheduler panicked ({what}); this is a bug"
        ))
    })
}

/// The scheduler's state. Its methods are synchronous, so that a panic in one of them can be
/// caught ([`guard`]) between two awaits.
struct Scheduler<'a> {
    dir: &'a SweepDir,
    plan: &'a Plan,
    settings: &'a LocalSettings,
    report: SweepReport,
    /// Packs to run: (jobs, attempt number, not before).
    queue: VecDeque<(Vec<&'a PlannedJob>, u32, Instant)>,
    running: JoinSet<Finished>,
    attempts_of: HashMap<String, u32>,
    started_at: HashMap<String, f64>,
    stop: watch::Sender<Stop>,
    bars: Bars,
}

impl<'a> Scheduler<'a> {
    fn new(dir: &'a SweepDir, plan: &'a Plan, settings: &'a LocalSettings) -> Self {
        let mut report = SweepReport::default();
        let mut pending = Vec::new();
        for job in &plan.jobs {
            match dir.job_state(&job.id) {
                JobState::Done => report.done += 1,
                JobState::Diverged => report.diverged += 1,
                _ => pending.push(job),
            }
        }
        // The plan from a sweep file carries the specs; a resumed sweep's are in the jobs'
        // directories (a job without one trains alone).
        let specs: Vec<Option<JobSpec>> = pending
            .iter()
            .map(|job| {
                job.spec.clone().or_else(|| {
                    let text = std::fs::read_to_string(dir.job(&job.id).spec()).ok()?;
                    JobSpec::from_toml(&text).ok()
                })
            })
            .collect();
        let with_specs: Vec<(&PlannedJob, Option<&JobSpec>)> = pending
            .iter()
            .copied()
            .zip(specs.iter().map(Option::as_ref))
            .collect();
        // The costliest packs first (longest processing time first): the last workers to finish
        // are short ones, so no slot idles long at the end of the sweep.
        let flops: HashMap<&str, f64> = with_specs
            .iter()
            .filter_map(|(job, spec)| Some((job.id.as_str(), (*spec)?.train_flops())))
            .collect();
        let cost = |pack: &[&PlannedJob]| -> f64 {
            pack.iter().filter_map(|j| flops.get(j.id.as_str())).sum()
        };
        let device = Device::of_backend(&settings.backend);
        let mut packs = form_packs(&with_specs, settings.pack, settings.slots, device);
        packs.sort_by(|a, b| cost(b).total_cmp(&cost(a)));
        let queue = packs
            .into_iter()
            .map(|pack| (pack, 0, Instant::now()))
            .collect();
        let bars = Bars::new(plan.jobs.len(), report.done + report.diverged);
        Self {
            dir,
            plan,
            settings,
            report,
            queue,
            running: JoinSet::new(),
            attempts_of: HashMap::new(),
            started_at: HashMap::new(),
            stop: watch::Sender::new(Stop::Run),
            bars,
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow() != Stop::Run
    }

    /// When the next job in backoff becomes ready (or an hour, if none waits).
    fn next_wake(&self) -> Duration {
        self.queue
            .iter()
            .map(|(_, _, ready)| *ready)
            .min()
            .map(|r| r.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(50))
    }

    /// Launches what fits, in plan order, skipping jobs still in backoff.
    fn launch(&mut self) -> anyhow::Result<()> {
        while self.running.len() < self.settings.slots {
            let now = Instant::now();
            let Some(pos) = self.queue.iter().position(|(_, _, ready)| *ready <= now) else {
                break;
            };
            let (pack, attempt, _) = self.queue.remove(pos).expect("position is in range");
            // One attempt of the pack: the same start (and end) for each of its jobs.
            let started = unix_now();
            for job in &pack {
                self.attempts_of.insert(job.id.clone(), attempt);
                self.started_at.insert(job.id.clone(), started);
            }
            let pid = self.spawn_worker(&pack)?;
            let ids: Vec<&str> = pack.iter().map(|j| j.id.as_str()).collect();
            tracing::info!(jobs = ?ids, size = %pack[0].size, attempt, pid, "started");
        }
        Ok(())
    }

    /// Records a worker's attempt for each job of its pack and decides what comes next for
    /// each: a job is done or diverged by its summary; the pack's unfinished jobs are retried
    /// together (as a smaller pack), stopped, or reported failed.
    fn finished(&mut self, f: Finished) -> anyhow::Result<()> {
        let plan = self.plan;
        let mut recorded = Ok(());
        let mut retry = Vec::new();
        let code = |c: u8| Some(i32::from(c));
        let why = match (f.exit, f.signal) {
            (_, Some(sig)) => format!("killed by signal {sig}"),
            (Some(c), _) => format!("exit code {c}"),
            _ => "unknown exit".into(),
        };
        let mut attempt = 0;
        let ended = unix_now();
        for id in &f.ids {
            let _ = std::fs::remove_file(self.dir.job(id).heartbeat());
            let written = self
                .dir
                .record_attempt(
                    id,
                    &Attempt {
                        started: self.started_at.remove(id).unwrap_or_default(),
                        ended: Some(ended),
                        exit: f.exit,
                        signal: f.signal,
                        executor: "local".into(),
                        restart_count: None,
                    },
                )
                .with_context(|| {
                    format!(
                        "recording the attempt of job {id} in {}",
                        self.dir.attempts(id).display()
                    )
                });
            if recorded.is_ok() {
                recorded = written;
            }
            let job = plan
                .jobs
                .iter()
                .find(|j| j.id == *id)
                .with_context(|| format!("job {id} ran but is not in the plan"))?;
            attempt = self.attempts_of.get(id).copied().unwrap_or_default();
            // A pack's exit code speaks for the pack; each job's summary speaks for the job.
            let alone = f.ids.len() == 1;
            match self.dir.job_state(id) {
                JobState::Done => self.done(job),
                JobState::Diverged => self.diverged(job),
                _ if alone && f.exit == code(exit::DONE) => self.done(job),
                _ if alone && f.exit == code(exit::DIVERGED) => self.diverged(job),
                _ if self.stopping() => self.bars.event(&format!(
                    "stopped   {} (resumes from its last checkpoint)",
                    label(job)
                )),
                _ => retry.push(job),
            }
            self.bars
                .finish_job(id, self.report.done + self.report.diverged);
        }
        if !retry.is_empty() {
            let labels: Vec<String> = retry.iter().map(|j| label(j)).collect();
            let labels = labels.join(", ");
            tracing::warn!(jobs = %labels, %why, stderr = %f.stderr_tail, "worker failed");
            if f.exit != code(exit::BAD_INPUT) && attempt < self.settings.max_retries {
                let backoff = Duration::from_secs(1 << attempt.min(6));
                self.bars.event(&format!(
                    "failed    {labels} ({why}); retry {} of {} in {}s, from its checkpoint",
                    attempt + 1,
                    self.settings.max_retries,
                    backoff.as_secs()
                ));
                self.queue
                    .push_front((retry, attempt + 1, Instant::now() + backoff));
            } else {
                self.report.failed += retry.len();
                let logs: Vec<String> = retry
                    .iter()
                    .map(|j| self.dir.job(&j.id).log().display().to_string())
                    .collect();
                self.bars.event(&format!(
                    "failed    {labels} ({why}); log: {}\n{}",
                    logs.join(", "),
                    f.stderr_tail
                ));
            }
        }
        if !f.signalled.is_empty() {
            tracing::info!(jobs = ?f.ids, signals = ?f.signalled, "signalled by the scheduler");
        }
        recorded
    }

    fn done(&mut self, job: &PlannedJob) {
        self.report.done += 1;
        self.bars.event(&format!("done      {}", label(job)));
    }

    fn diverged(&mut self, job: &PlannedJob) {
        self.report.diverged += 1;
        self.bars
            .event(&format!("diverged  {} (not retried)", label(job)));
    }

    /// Ctrl-C, SIGTERM or SIGHUP. First: every worker checkpoints and stops. A second Ctrl-C or
    /// SIGTERM: kill them now.
    fn interrupt(&mut self, how: Interrupt) {
        self.report.interrupted = true;
        if self.stopping() && how == Interrupt::HangUp {
            self.bars
                .event("hang-up: running jobs are already checkpointing");
        } else if self.stopping() {
            self.bars
                .event("second interrupt: killing workers now (their last checkpoints are safe)");
            self.stop.send_replace(Stop::Kill);
        } else {
            let what = match how {
                Interrupt::Repeatable => "interrupt",
                Interrupt::HangUp => "hang-up",
            };
            self.bars.event(&format!(
                "{what}: running jobs checkpoint and stop (interrupt again to stop at once)"
            ));
            self.stop.send_replace(Stop::Checkpoint);
        }
    }

    /// [`Scheduler::interrupt`], under the panic guard like every other step of the loop.
    fn interrupt_guarded(&mut self, how: Interrupt, failure: &mut Option<anyhow::Error>) {
        if let Err(e) = guard(|| {
            self.interrupt(how);
            Ok(())
        }) {
            self.fail(failure, e);
        }
    }

    /// The scheduler itself failed: keep the first error, and ask every worker to checkpoint
    /// and stop (the loop then waits for them before returning the error).
    fn fail(&mut self, failure: &mut Option<anyhow::Error>, e: anyhow::Error) {
        if failure.is_some() {
            tracing::error!("{e:#}");
            self.bars.event(&format!("error: {e:#}"));
            return;
        }
        self.bars.event(&format!(
            "error: {e:#}\nstopping: {} running job(s) checkpoint and stop first",
            self.running.len()
        ));
        if !self.stopping() {
            self.stop.send_replace(Stop::Checkpoint);
        }
        *failure = Some(e);
    }

    fn spawn_worker(&mut self, pack: &[&PlannedJob]) -> anyhow::Result<u32> {
        let mut cmd = tokio::process::Command::new(&self.settings.elab);
        cmd.arg("train");
        for job in pack {
            cmd.arg(self.dir.job(&job.id).spec());
        }
        for job in pack {
            cmd.arg("--out").arg(self.dir.job(&job.id).path());
        }
        let bars: HashMap<String, ProgressBar> = pack
            .iter()
            .map(|job| (job.id.clone(), self.bars.job_bar(job)))
            .collect();
        if let Some(threads) = worker_threads(
            std::env::var_os("RAYON_NUM_THREADS").is_some(),
            cores(),
            self.settings.slots,
        ) {
            cmd.env("RAYON_NUM_THREADS", threads.to_string());
        }
        cmd.arg("--backend")
            .arg(&self.settings.backend)
            .arg("--progress-json")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches the scheduler only, which then
            // asks each worker to checkpoint.
            .process_group(0)
            // Only if its supervising task is dropped unfinished, which the scheduler never does.
            .kill_on_drop(true);
        // SAFETY: prctl and pthread_sigmask are async-signal-safe. A worker must not outlive its
        // scheduler (`kill -9` of the sweep), or two workers could later train the same job.
        // It starts with its stop signals blocked (std has just cleared the mask): a stop asked
        // before `elab train` has installed its handlers stays pending until it has, rather
        // than killing the worker uncheckpointed (`elab_train::stop_on_signals` unblocks them).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                elab_job::signals::set_blocked(true)
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.settings.elab.display()))?;
        let pid = child.id().unwrap_or_default();
        // Readers run as their own tasks: whatever happens to them, the supervising task still
        // owns the child, waits for it, and can stop it gracefully.
        let progress = tokio::spawn(show_progress(child.stdout.take().expect("piped"), bars));
        let tail = tokio::spawn(read_tail(child.stderr.take().expect("piped")));
        self.running.spawn(supervise(
            pack.iter().map(|j| j.id.clone()).collect(),
            child,
            self.stop.subscribe(),
            progress,
            tail,
        ));
        Ok(pid)
    }
}

/// Owns a worker: waits for it to exit, and meanwhile passes on every stop request as a signal.
/// `child.id()` is `None` once the child has been reaped (by `child.wait()`, in this task), so
/// a signal never reaches a pid that may have been reused.
async fn supervise(
    ids: Vec<String>,
    mut child: Child,
    mut stop: watch::Receiver<Stop>,
    progress: JoinHandle<()>,
    tail: JoinHandle<String>,
) -> Finished {
    let mut sent = Stop::Run;
    let mut signalled = Vec::new();
    let status = loop {
        let wanted = *stop.borrow_and_update();
        if wanted > sent {
            if let (Some(sig), Some(pid)) = (wanted.signal(), child.id()) {
                // SAFETY: kill(2) on our own child, not reaped yet (see above).
                unsafe { libc::kill(pid as i32, sig) };
                signalled.push(sig);
            }
            sent = wanted;
        }
        tokio::select! {
            status = child.wait() => break status,
            changed = stop.changed() => {
                if changed.is_err() {
                    // The scheduler is gone: nothing more will be asked.
                    break child.wait().await;
                }
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let (exit, signal) = match status {
        Ok(s) => (s.code(), s.signal()),
        Err(_) => (None, None),
    };
    // The pipes close when the worker exits (unless something it started keeps them open).
    let grace = Duration::from_secs(5);
    let stderr_tail = match tokio::time::timeout(grace, tail).await {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => format!("(stderr not read: {e})"),
        Err(_) => "(stderr still open after the worker exited)".into(),
    };
    let _ = tokio::time::timeout(grace, progress).await;
    Finished {
        ids,
        exit,
        signal,
        stderr_tail,
        signalled,
    }
}

/// Moves the jobs' bars with the progress lines the worker prints (see [`Progress`]; a pack's
/// lines name their job).
async fn show_progress(stdout: ChildStdout, bars: HashMap<String, ProgressBar>) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(p) = serde_json::from_str::<Progress>(&line) {
            let bar = match &p.job {
                Some(id) => bars.get(id),
                None => bars.values().next(),
            };
            let Some(bar) = bar else { continue };
            bar.set_length(p.steps);
            bar.set_position(p.step);
            let em = p
                .val_exact_match
                .map(|v| format!("  val exact {v:.3}"))
                .unwrap_or_default();
            bar.set_message(format!("loss {:.4}{em}", p.loss));
        }
    }
}

/// The last [`Tail::LINES`] lines of a worker's stderr, read to its end.
async fn read_tail(mut stderr: ChildStderr) -> String {
    read_tail_of(&mut stderr).await
}

async fn read_tail_of(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut tail = Tail::default();
    let mut buf = vec![0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => tail.push(&buf[..n]),
        }
    }
    tail.finish()
}

/// The end of a stream, kept in bounded memory whatever its size: the last [`Tail::LINES`]
/// lines, each cut at [`Tail::LINE_BYTES`] bytes.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    /// The line being read.
    partial: Vec<u8>,
    /// The line being read was longer than `LINE_BYTES`.
    cut: bool,
}

impl Tail {
    const LINES: usize = 8;
    const LINE_BYTES: usize = 2000;

    fn push(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let (text, ends) = match piece.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (piece, false),
            };
            let room = Self::LINE_BYTES - self.partial.len();
            self.partial
                .extend_from_slice(&text[..text.len().min(room)]);
            self.cut |= text.len() > room;
            if ends {
                self.end_line();
            }
        }
    }

    fn end_line(&mut self) {
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        if self.cut {
            line.push_str(" [...]");
        }
        self.lines.push_back(line);
        if self.lines.len() > Self::LINES {
            self.lines.pop_front();
        }
        self.partial.clear();
        self.cut = false;
    }

    fn finish(mut self) -> String {
        if !self.partial.is_empty() || self.cut {
            self.end_line();
        }
        Vec::from(self.lines).join("\n")
    }

    /// Bytes held (for the test of the bound).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.partial.capacity().max(self.partial.len())
            + self.lines.iter().map(String::len).sum::<usize>()
    }
}

fn label(job: &PlannedJob) -> String {
    let axes: Vec<String> = job.axes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{} [{}{}{}]",
        job.id,
        job.size,
        if axes.is_empty() { "" } else { " " },
        axes.join(" ")
    )
}

/// The progress display: one overall bar with ETA, one line per running job. On a terminal
/// only; elsewhere events are printed as plain lines.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    jobs: Arc<Mutex<HashMap<String, ProgressBar>>>,
    tty: bool,
}

impl Bars {
    fn new(total: usize, finished: usize) -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {pos}/{len} jobs  {elapsed} elapsed, ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        overall.set_prefix("sweep");
        overall.set_position(finished as u64);
        Self {
            multi,
            overall,
            jobs: Arc::default(),
            tty,
        }
    }

    fn job_bar(&self, job: &PlannedJob) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(1));
        bar.set_style(
            ProgressStyle::with_template("  {prefix:30} step {pos:>7}/{len:7} {msg}")
                .expect("valid template"),
        );
        let seed = job
            .axes
            .get("seed")
            .map(|s| format!(" s{s}"))
            .unwrap_or_default();
        let short = job.id.get(..8).unwrap_or(&job.id);
        bar.set_prefix(format!("{short} {}{seed}", job.size));
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.id.clone(), bar.clone());
        bar
    }

    fn finish_job(&self, id: &str, finished: usize) {
        if let Some(bar) = self
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
        {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.overall.set_position(finished as u64);
    }

    /// Logs `line` and shows it on stderr. A stderr that can no longer be written (the
    /// terminal hung up, the `| tee` reading it died) is no reason to stop: `eprintln!` would
    /// panic, and the workers would be killed without a checkpoint. The log keeps the line.
    fn event(&self, line: &str) {
        use std::io::Write;
        tracing::info!("{line}");
        let show = || {
            let _ = writeln!(std::io::stderr(), "{line}");
        };
        if self.tty {
            self.multi.suspend(show);
        } else {
            show();
        }
    }

    fn clear(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    #[test]
    fn the_stderr_tail_is_bounded_and_keeps_the_last_lines() {
        const BOUND: usize = 2 * (Tail::LINES + 2) * Tail::LINE_BYTES;
        let mut tail = Tail::default();
        // 2 MB of output, in reads that split lines anywhere, and one endless line.
        let text: String = (0..100_000)
            .map(|i| format!("line {i:06} ....\n"))
            .collect();
        for chunk in text.as_bytes().chunks(777) {
            tail.push(chunk);
            assert!(tail.held() <= BOUND);
        }
        let long = vec![b'x'; 1_000_000];
        tail.push(&long);
        tail.push(b"\nlast words");
        assert!(tail.held() <= BOUND);
        let out = tail.finish();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), Tail::LINES);
        assert_eq!(lines[0], "line 099994 ....");
        assert_eq!(lines[5], "line 099999 ....");
        assert_eq!(lines[6].len(), Tail::LINE_BYTES + " [...]".len());
        assert_eq!(lines[7], "last words");

        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut stream: &[u8] = b"a\nb\n\xffc";
        assert_eq!(rt.block_on(read_tail_of(&mut stream)), "a\nb\n\u{fffd}c");
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn sh(script: &str) -> Child {
        tokio::process::Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    async fn supervised(mut child: Child, stop: watch::Receiver<Stop>) -> Finished {
        let progress = tokio::spawn(show_progress(child.stdout.take().unwrap(), HashMap::new()));
        let tail = tokio::spawn(read_tail(child.stderr.take().unwrap()));
        supervise(vec!["0123456789ab".into()], child, stop, progress, tail).await
    }

    #[test]
    fn a_worker_is_signalled_while_it_runs_and_never_after() {
        runtime().block_on(async {
            // A live worker: one SIGINT, on which it "checkpoints" and exits 75.
            let tmp = tempfile::tempdir().unwrap();
            let ready = tmp.path().join("ready");
            let (tx, rx) = watch::channel(Stop::Run);
            let child = sh(&format!(
                "trap 'echo stopping >&2; exit 75' INT; touch '{}'; while :; do sleep 0.02; done",
                ready.display()
            ));
            let task = tokio::spawn(supervised(child, rx));
            let start = Instant::now();
            while !ready.exists() && start.elapsed() < Duration::from_secs(20) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tx.send_replace(Stop::Checkpoint);
            let f = task.await.unwrap();
            assert_eq!((f.exit, f.signal), (Some(75), None), "{f:?}");
            assert_eq!(f.signalled, vec![libc::SIGINT]);
            assert_eq!(f.stderr_tail, "stopping");

            // A worker that has exited and been reaped is not signalled, whatever is asked.
            let (tx, rx) = watch::channel(Stop::Run);
            let f = supervised(sh("echo bye >&2; exit 4"), rx).await;
            tx.send_replace(Stop::Kill);
            assert_eq!((f.exit, f.signalled.len()), (Some(4), 0), "{f:?}");
            assert_eq!(f.stderr_tail, "bye");
        });
    }

    fn plan(ids: &[&str]) -> Plan {
        Plan {
            sweep: "t".into(),
            jobs: ids
                .iter()
                .map(|id| PlannedJob {
                    id: id.to_string(),
                    size: "xs".into(),
                    axes: BTreeMap::new(),
                    spec: None,
                })
                .collect(),
        }
    }

    fn settings(elab: &Path, slots: usize) -> LocalSettings {
        LocalSettings {
            elab: elab.to_path_buf(),
            slots,
            max_retries: 0,
            backend: "cpu".into(),
            pack: PackSize::Auto,
        }
    }

    #[test]
    fn a_plan_with_a_short_id_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SweepDir::new(tmp.path());
        let err = run_local(
            &dir,
            &plan(&["0123456789ab", "abc"]),
            &settings(Path::new("/nonexistent/elab"), 1),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("\"abc\", which is not a job id"),
            "{err}"
        );
    }

    /// A stand-in for `elab train` (args: train <spec> --out <dir> ...): a job whose directory
    /// holds `fast` waits until another worker is up, then exits 0; any other trains until
    /// SIGINT, then "checkpoints" (leaves `stopped`) and exits 75.
    const FAKE_ELAB: &str = r#"#!/bin/sh
out="$4"
if [ -e "$out/fast" ]; then
    while ! ls "$out"/../*/ready >/dev/null 2>&1; do sleep 0.01; done
    exit 0
fi
trap 'echo checkpointed > "$out/stopped"; exit 75' INT
echo up > "$out/ready"
while :; do sleep 0.02; done
"#;

    #[test]
    fn a_failed_attempts_write_stops_the_other_workers_gracefully() {
        let tmp = tempfile::tempdir().unwrap();
        let elab = tmp.path().join("elab");
        std::fs::write(&elab, FAKE_ELAB).unwrap();
        std::fs::set_permissions(&elab, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = SweepDir::new(tmp.path().join("sweep"));
        let (fast, slow) = ("0000000000aa", "0000000000bb");
        for id in [fast, slow] {
            std::fs::create_dir_all(dir.job(id).path()).unwrap();
        }
        std::fs::write(dir.job(fast).path().join("fast"), "").unwrap();
        // attempts.jsonl cannot be appended to: it is a directory.
        std::fs::create_dir(dir.attempts(fast)).unwrap();

        let err = run_local(&dir, &plan(&[fast, slow]), &settings(&elab, 2)).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("recording the attempt of job 0000000000aa")
                && msg.contains("attempts.jsonl"),
            "{msg}"
        );
        // The other worker was asked to checkpoint, did, and its attempt was recorded; before,
        // the scheduler returned at once and it was SIGKILLed with nothing recorded.
        assert!(dir.job(slow).path().join("stopped").exists());
        let attempts = dir.read_attempts(slow);
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(
            (attempts[0].exit, attempts[0].signal),
            (Some(75), None),
            "{attempts:?}"
        );
    }

    #[test]
    fn workers_share_the_cores_between_the_slots() {
        assert_eq!(worker_threads(false, 2, 2), Some(1));
        assert_eq!(worker_threads(false, 16, 3), Some(5));
        assert_eq!(worker_threads(false, 2, 8), Some(1));
        assert_eq!(worker_threads(false, 8, 1), Some(8));
        assert_eq!(worker_threads(true, 8, 2), None);

        // And a worker is started with its share in its environment.
        let tmp = tempfile::tempdir().unwrap();
        let elab = tmp.path().join("elab");
        let fake = "#!/bin/sh\necho \"$RAYON_NUM_THREADS\" > \"$4/threads\"\nexit 0\n";
        std::fs::write(&elab, fake).unwrap();
        std::fs::set_permissions(&elab, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = SweepDir::new(tmp.path().join("sweep"));
        let id = "0000000000dd";
        std::fs::create_dir_all(dir.job(id).path()).unwrap();
        let report = run_local(&dir, &plan(&[id]), &settings(&elab, 2)).unwrap();
        assert_eq!(report.done, 1, "{report:?}");
        let got = std::fs::read_to_string(dir.job(id).path().join("threads")).unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        let want = match std::env::var("RAYON_NUM_THREADS") {
            Ok(user) => user,
            Err(_) => (cores / 2).max(1).to_string(),
        };
        assert_eq!(got.trim(), want);
    }

    /// A worker starts with its stop signals blocked; `elab train` unblocks them once its
    /// handlers are installed (`elab_train::stop_on_signals`). Before, a Ctrl-C in a sweep's
    /// first milliseconds reached workers that had no handler yet: they died of SIGINT,
    /// uncheckpointed, and their attempts were recorded as killed by signal 2.
    #[test]
    fn workers_start_with_their_stop_signals_blocked() {
        let tmp = tempfile::tempdir().unwrap();
        let elab = tmp.path().join("elab");
        // Writes the worker's own blocked-signal mask (the shell leaves the one it inherited).
        let fake = "#!/bin/sh\nout=\"$4\"\nwhile read -r key value; do\n    \
                    [ \"$key\" = SigBlk: ] && echo \"$value\" > \"$out/sigblk\"\n\
                    done < /proc/$$/status\nexit 0\n";
        std::fs::write(&elab, fake).unwrap();
        std::fs::set_permissions(&elab, std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = SweepDir::new(tmp.path().join("sweep"));
        let id = "0000000000cc";
        std::fs::create_dir_all(dir.job(id).path()).unwrap();
        let report = run_local(&dir, &plan(&[id]), &settings(&elab, 1)).unwrap();
        assert_eq!(report.done, 1, "{report:?}");
        let mask = std::fs::read_to_string(dir.job(id).path().join("sigblk")).unwrap();
        let mask = u64::from_str_radix(mask.trim(), 16).unwrap();
        for signal in elab_job::signals::STOP {
            assert!(
                mask & (1 << (signal - 1)) != 0,
                "signal {signal}: {mask:#x}"
            );
        }
    }
}
