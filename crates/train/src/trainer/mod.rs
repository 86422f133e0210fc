//! The training loop: AdamW with warmup and schedule, log-spaced evaluation, step-level
//! checkpoints, exact resume, divergence detection and clean stop on a signal, for a *pack*
//! of jobs of one shape trained side by side as one batched model (a single job is the pack
//! of one).
//!
//! Exact resume rests on three facts: the batch of step t is a pure function of (seed, t);
//! the learning rate is a pure function of t; a checkpoint holds the weights, the AdamW
//! moments and t. So training N steps, stopping and resuming for N more replays exactly
//! the updates of 2N straight steps (bitwise on the Flex CPU backend).
//!
//! A pack changes none of that: every job keeps its own run directory, records and
//! checkpoints (its slice of the pack), written exactly as if it trained alone, so it can
//! resume alone or in another pack. Nothing mixes the models of a pack; one that diverges is
//! finished and taken out, and the others go on.
//!
//! The step loop never waits on the device: losses stay on it and are read back together at
//! evaluations, heartbeats and the end. Divergence is noticed there, and nothing non-finite is
//! ever checkpointed, so a diverged run ends on its last finite checkpoint with every record
//! kept.
//!
//! The rooms: [`step`] the loop and the update, [`evaluation`] the scores at each evaluation,
//! [`checkpoints`] saving, loading and repairing a run's state, [`batches`] which examples a
//! step reads, [`measures`] the progress measures read from the weights.

mod batches;
mod checkpoints;
mod evaluation;
mod measures;
mod step;

pub use checkpoints::{Repaired, repair_checkpoints};
pub use step::time_steps;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Context, bail};
use elab_job::{Arch, JobSpec, Progress, RunDir, Summary, fsio};
use elab_model::{Gpt, LanguageModel, MlpNet};
use elab_tasks::Dataset;

use crate::backend::{Backend, ChosenDevice, choose_device};
use crate::optim::PackedAdamW;

use batches::BatchOrder;
use checkpoints::Loaded;

/// Seconds between heartbeat writes.
const HEARTBEAT_SECS: f64 = 5.0;

/// How a call to [`train`] ended for one job.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done or diverged: `summary.json` is written and the run will not continue.
    Finished(Summary),
    /// Stopped on request at `step`, checkpointed there; running again resumes.
    Interrupted { step: u64 },
}

pub struct RunOptions<'a> {
    pub backend: Backend,
    /// Set (by a signal handler) to checkpoint at the next step boundary and return.
    pub stop: Arc<AtomicBool>,
    /// Called after each step with the job's index in the pack and its progress.
    pub on_progress: &'a mut (dyn FnMut(usize, &Progress) + Send),
}

/// The run's lock and lease, held until dropped: refused if a process on this node holds the
/// lock, or one on another node holds a fresh lease (a cluster file system whose flock does
/// not reach across nodes).
fn claim(run: &RunDir) -> anyhow::Result<elab_job::lease::Lease> {
    elab_job::lease::lock_with_lease(&run.lock(), &run.lease())?.with_context(|| {
        format!(
            "{} is being trained by another process",
            run.path().display()
        )
    })
}

/// Trains `spec` in `run` alone, resuming from its checkpoint if it has one.
pub fn train(spec: &JobSpec, run: &RunDir, opts: RunOptions) -> anyhow::Result<Outcome> {
    Ok(train_pack(&[(spec, run)], opts)?.remove(0))
}

/// Trains jobs with equal [`JobSpec::pack_key`]s as one pack, each resuming from its own
/// checkpoint; returns each job's outcome, in order. Jobs already finished are skipped; jobs
/// checkpointed at different steps (by earlier, different packs) train as separate packs,
/// the earliest first.
pub fn train_pack(
    jobs: &[(&JobSpec, &RunDir)],
    mut opts: RunOptions,
) -> anyhow::Result<Vec<Outcome>> {
    anyhow::ensure!(!jobs.is_empty(), "no job to train");
    let mut locks = Vec::new();
    for (spec, run) in jobs {
        std::fs::create_dir_all(run.path())?;
        locks.push(claim(run)?);
        remove_temps(run)?;
        claim_run_dir(spec, run)?;
    }
    let key = jobs[0].0.pack_key();
    if let Some((spec, _)) = jobs.iter().find(|(s, _)| s.pack_key() != key) {
        bail!(
            "job {} cannot train in a pack with job {}: model shape, token layout, batch size, \
             steps and evaluation steps must be equal",
            spec.id(),
            jobs[0].0.id()
        );
    }
    let mut outcomes: Vec<Option<Outcome>> = jobs
        .iter()
        .map(|(_, run)| run.read_summary().map(Outcome::Finished))
        .collect();
    if outcomes.iter().all(Option::is_some) {
        return Ok(outcomes.into_iter().flatten().collect());
    }

    let chosen = choose_device(opts.backend)?;
    tracing::info!(backend = chosen.backend, device = %chosen.name, reason = %chosen.reason, jobs = jobs.len(), "device chosen");
    crate::on_compute_threads(|| match jobs[0].0.model.arch {
        Arch::Gpt => train_groups::<Gpt>(jobs, &mut outcomes, &chosen, &mut opts),
        Arch::Mlp => train_groups::<MlpNet>(jobs, &mut outcomes, &chosen, &mut opts),
    })?;
    for (_, run) in jobs {
        let _ = std::fs::remove_file(run.heartbeat());
    }
    drop(locks);
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every job ran"))
        .collect())
}

/// Trains the unfinished jobs (`outcomes[job]` is `None`) as networks `M`, one pack per
/// checkpointed step, and fills in their outcomes.
fn train_groups<M: LanguageModel>(
    jobs: &[(&JobSpec, &RunDir)],
    outcomes: &mut [Option<Outcome>],
    chosen: &ChosenDevice,
    opts: &mut RunOptions,
) -> anyhow::Result<()> {
    let mut by_step: BTreeMap<u64, Vec<Loaded<M>>> = BTreeMap::new();
    for (job, (spec, run)) in jobs.iter().enumerate() {
        if outcomes[job].is_none() {
            let loaded = Loaded::new(job, spec, run, chosen)?;
            by_step.entry(loaded.step).or_default().push(loaded);
        }
    }
    for (step, group) in by_step {
        // Asked to stop: each group still starts (evaluating a fresh job's step 0 and
        // checkpointing it) and stops at once.
        let (mut trainer, model) = Trainer::new(group, chosen.clone(), step);
        for (job, outcome) in trainer.run(model, &opts.stop, opts.on_progress)? {
            outcomes[job] = Some(outcome);
        }
    }
    Ok(())
}

/// Removes what writes killed mid-way left in `run` (held: no writer is left):
/// [`fsio::write_atomic`]'s temporary files in the run, its snapshots and its checkpoints.
fn remove_temps(run: &RunDir) -> anyhow::Result<()> {
    let mut dirs = vec![run.path().to_path_buf(), run.snapshots()];
    dirs.extend(
        run.checkpoint_dirs()?
            .into_iter()
            .map(|s| run.checkpoint_dir(s)),
    );
    for dir in dirs {
        let n = fsio::remove_temps(&dir).with_context(|| format!("cleaning {}", dir.display()))?;
        if n > 0 {
            tracing::info!(dir = %dir.display(), files = n, "removed temporary files of interrupted writes");
        }
    }
    Ok(())
}

/// Writes the spec into a new run directory, or checks that an existing one holds this job.
fn claim_run_dir(spec: &JobSpec, run: &RunDir) -> anyhow::Result<()> {
    match std::fs::read_to_string(run.spec()) {
        Ok(text) => {
            let existing = JobSpec::from_toml(&text)
                .with_context(|| format!("{} is not a valid job", run.spec().display()))?;
            if existing != *spec {
                bail!(
                    "{} holds job {}, not {}: use another --out directory",
                    run.path().display(),
                    existing.id(),
                    spec.id()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(fsio::write_atomic(&run.spec(), spec.to_toml().as_bytes())?)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", run.spec().display())),
    }
}

/// One job of a pack: what it trains on and where its records go.
struct Member<'a> {
    /// Index in the caller's list of jobs.
    job: usize,
    spec: &'a JobSpec,
    run: &'a RunDir,
    data: Dataset,
    order: BatchOrder,
    wall_before: f64,
    resumes: u32,
    /// Started from a checkpoint (whose evaluation rows are already written).
    resumed: bool,
    /// The step of the checkpoint this process loaded or wrote last: the only one it may
    /// skip rewriting. A directory of the same step on disk proves nothing (it may be the
    /// corrupt one a resume fell back past).
    checkpointed: Option<u64>,
    /// The steps whose weights it keeps (`train.snapshots`), in order.
    snapshot_steps: Vec<u64>,
    /// Validation exact match at the last evaluation, for the progress line.
    val_exact_match: Option<f64>,
    /// Mean training loss at the last read-back.
    loss: Option<f64>,
}

struct Trainer<'a, M: LanguageModel> {
    members: Vec<Member<'a>>,
    chosen: ChosenDevice,
    optim: PackedAdamW<M>,
    step: u64,
    /// Outcomes of the members that finished (by job index).
    finished: Vec<(usize, Outcome)>,
}
