//! The local executor: each job runs as an `elab train` worker process, at most `slots` at a
//! time. A worker that crashes, is OOM-killed or is killed alone is retried from its
//! checkpoint with backoff; a diverged job is final. Ctrl-C (or SIGTERM) asks every worker
//! to checkpoint and stop; a second one kills them (their state on disk is still safe).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::config::{Plan, PlannedJob};
use crate::sweepdir::{Attempt, JobState, SweepDir, now};

/// Exit codes of `elab train` (see the CLI).
const EXIT_BAD_INPUT: i32 = 2;
const EXIT_DIVERGED: i32 = 3;

/// How the local executor runs a sweep.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// The `elab` binary that runs workers (normally the running executable).
    pub elab: PathBuf,
    pub slots: usize,
    pub max_retries: u32,
    pub backend: String,
}

/// How a sweep run ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepReport {
    pub done: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Stopped by Ctrl-C or SIGTERM before the queue was empty.
    pub interrupted: bool,
}

#[derive(Deserialize)]
struct Progress {
    step: u64,
    steps: u64,
    loss: f64,
    val_exact_match: Option<f64>,
}

struct Finished {
    id: String,
    exit: Option<i32>,
    signal: Option<i32>,
    stderr_tail: String,
}

/// Runs every job of `plan` that is not done or diverged.
pub fn run_local(
    dir: &SweepDir,
    plan: &Plan,
    settings: &LocalSettings,
) -> anyhow::Result<SweepReport> {
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
    let mut report = SweepReport::default();
    let mut queue: VecDeque<(&PlannedJob, u32, Instant)> = VecDeque::new();
    for job in &plan.jobs {
        match dir.job_state(&job.id) {
            JobState::Done => report.done += 1,
            JobState::Diverged => report.diverged += 1,
            _ => queue.push_back((job, 0, Instant::now())),
        }
    }
    let bars = Bars::new(plan.jobs.len(), report.done + report.diverged);
    let mut running: JoinSet<Finished> = JoinSet::new();
    let mut pids: HashMap<String, u32> = HashMap::new();
    let mut attempts_of: HashMap<String, u32> = HashMap::new();
    let mut started_at: HashMap<String, f64> = HashMap::new();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut stopping = false;

    loop {
        // Launch what fits, in plan order, skipping jobs still in backoff.
        while !stopping && running.len() < settings.slots {
            let now_i = Instant::now();
            let Some(pos) = queue.iter().position(|(_, _, ready)| *ready <= now_i) else {
                break;
            };
            let (job, attempt, _) = queue.remove(pos).expect("position is in range");
            attempts_of.insert(job.id.clone(), attempt);
            started_at.insert(job.id.clone(), now());
            let bar = bars.job_bar(job);
            let pid = spawn_worker(&mut running, dir, job, settings, bar)?;
            tracing::info!(job = %job.id, size = %job.size, attempt, pid, "started");
            pids.insert(job.id.clone(), pid);
        }
        if running.is_empty() && (queue.is_empty() || stopping) {
            break;
        }
        let next_ready = queue.iter().map(|(_, _, r)| *r).min();
        let wake = next_ready
            .map(|r| r.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(50));
        tokio::select! {
            Some(joined) = running.join_next() => {
                let f = joined?;
                pids.remove(&f.id);
                let _ = std::fs::remove_file(dir.job(&f.id).heartbeat());
                dir.record_attempt(&f.id, &Attempt {
                    started: started_at.remove(&f.id).unwrap_or_default(),
                    ended: Some(now()),
                    exit: f.exit,
                    signal: f.signal,
                    executor: "local".into(),
                    restart_count: None,
                })?;
                let job = plan.jobs.iter().find(|j| j.id == f.id).expect("a running job is planned");
                let attempt = attempts_of[&f.id];
                match f.exit {
                    Some(0) => {
                        report.done += 1;
                        bars.event(&format!("done      {}", label(job)));
                    }
                    Some(EXIT_DIVERGED) => {
                        report.diverged += 1;
                        bars.event(&format!("diverged  {} (not retried)", label(job)));
                    }
                    _ if stopping => {
                        bars.event(&format!("stopped   {} (resumes from its last checkpoint)", label(job)));
                    }
                    exit => {
                        let retry = exit != Some(EXIT_BAD_INPUT) && attempt < settings.max_retries;
                        let why = match (exit, f.signal) {
                            (_, Some(sig)) => format!("killed by signal {sig}"),
                            (Some(code), _) => format!("exit code {code}"),
                            _ => "unknown exit".into(),
                        };
                        tracing::warn!(job = %f.id, %why, stderr = %f.stderr_tail, "worker failed");
                        if retry {
                            let backoff = Duration::from_secs(1 << attempt.min(6));
                            bars.event(&format!("failed    {} ({why}); retry {} of {} in {}s, from its checkpoint", label(job), attempt + 1, settings.max_retries, backoff.as_secs()));
                            queue.push_front((job, attempt + 1, Instant::now() + backoff));
                        } else {
                            report.failed += 1;
                            bars.event(&format!("failed    {} ({why}); log: {}\n{}", label(job), dir.job(&f.id).log().display(), f.stderr_tail));
                        }
                    }
                }
                bars.finish_job(&f.id, report.done + report.diverged);
            }
            _ = sigint.recv() => stop(&mut stopping, &pids, &bars, &mut report),
            _ = sigterm.recv() => stop(&mut stopping, &pids, &bars, &mut report),
            _ = tokio::time::sleep(wake) => {}
        }
    }
    bars.clear();
    Ok(report)
}

/// First signal: every worker checkpoints and stops. Second: kill them now.
fn stop(stopping: &mut bool, pids: &HashMap<String, u32>, bars: &Bars, report: &mut SweepReport) {
    report.interrupted = true;
    let (sig, msg) = if *stopping {
        (
            libc::SIGKILL,
            "second interrupt: killing workers now (their last checkpoints are safe)",
        )
    } else {
        (
            libc::SIGINT,
            "interrupt: running jobs checkpoint and stop (interrupt again to stop at once)",
        )
    };
    *stopping = true;
    bars.event(msg);
    for &pid in pids.values() {
        // SAFETY: plain kill(2) on a child we spawned and have not reaped.
        unsafe { libc::kill(pid as i32, sig) };
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

fn spawn_worker(
    running: &mut JoinSet<Finished>,
    dir: &SweepDir,
    job: &PlannedJob,
    settings: &LocalSettings,
    bar: ProgressBar,
) -> anyhow::Result<u32> {
    let run = dir.job(&job.id);
    let mut cmd = tokio::process::Command::new(&settings.elab);
    cmd.arg("train")
        .arg(run.spec())
        .arg("--out")
        .arg(run.path())
        .arg("--backend")
        .arg(&settings.backend)
        .arg("--progress-json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C reaches the scheduler only, which then
        // asks each worker to checkpoint.
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe. A worker must not outlive its scheduler (`kill -9`
    // of the sweep), or two workers could later train the same job.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or_default();
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let id = job.id.clone();
    running.spawn(async move {
        let progress = async {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(p) = serde_json::from_str::<Progress>(&line) {
                    bar.set_length(p.steps);
                    bar.set_position(p.step);
                    let em = p
                        .val_exact_match
                        .map(|v| format!("  val exact {v:.3}"))
                        .unwrap_or_default();
                    bar.set_message(format!("loss {:.4}{em}", p.loss));
                }
            }
        };
        let errors = async {
            let mut all = Vec::new();
            let _ = stderr.read_to_end(&mut all).await;
            let text = String::from_utf8_lossy(&all);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(8)..].join("\n")
        };
        let ((), stderr_tail) = tokio::join!(progress, errors);
        let status = child.wait().await;
        use std::os::unix::process::ExitStatusExt;
        let (exit, signal) = match status {
            Ok(s) => (s.code(), s.signal()),
            Err(_) => (None, None),
        };
        Finished {
            id,
            exit,
            signal,
            stderr_tail,
        }
    });
    Ok(pid)
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
        bar.set_prefix(format!("{} {}{}", &job.id[..8], job.size, seed));
        self.jobs
            .lock()
            .expect("not poisoned")
            .insert(job.id.clone(), bar.clone());
        bar
    }

    fn finish_job(&self, id: &str, finished: usize) {
        if let Some(bar) = self.jobs.lock().expect("not poisoned").remove(id) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.overall.set_position(finished as u64);
    }

    fn event(&self, line: &str) {
        tracing::info!("{line}");
        if self.tty {
            self.multi.suspend(|| eprintln!("{line}"));
        } else {
            eprintln!("{line}");
        }
    }

    fn clear(&self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}
