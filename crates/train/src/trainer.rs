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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::{ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use elab_job::{
    Arch, EvalRow, JobSpec, Progress, RunDir, RunStatus, Split, Summary, TrainSpec, eval_steps,
    fsio,
};
use elab_model::{Gpt, LanguageModel, MlpNet, pack};
use elab_tasks::{Breakdown, Dataset, ModOp, SplitMix64, TaskSpec, shuffle};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, ChosenDevice, choose_device};
use crate::fourier::{Pair, fourier_measures};
use crate::metrics::{Scorer, argmax};
use crate::optim::{Moments, PackedAdamW};
use crate::task_metrics::TaskScorer;

/// Examples per model per forward pass during evaluation.
const EVAL_BATCH: usize = 1024;
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
    pub on_progress: &'a mut dyn FnMut(usize, &Progress),
}

/// Saved beside the weights and optimizer state in each checkpoint.
#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: u64,
    wall_seconds: f64,
    resumes: u32,
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
    match jobs[0].0.model.arch {
        Arch::Gpt => train_groups::<Gpt>(jobs, &mut outcomes, &chosen, &mut opts)?,
        Arch::Mlp => train_groups::<MlpNet>(jobs, &mut outcomes, &chosen, &mut opts)?,
    }
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

/// What [`repair_checkpoints`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Repaired {
    /// The checkpoint the pointer now names, and its fallback: the newest that load.
    pub step: u64,
    pub previous: Option<u64>,
    /// Directories that did not load, with why (left in place; the next checkpoint removes
    /// them).
    pub unreadable: Vec<(u64, String)>,
}

/// Rebuilds `run`'s checkpoint pointer (`checkpoint.json`, say a corrupt one) from its
/// checkpoint directories: the newest two that load as `spec`'s network, each holding the step
/// its name says. Nothing else is touched: the next run resumes from there and drops (to
/// recompute) only the records after it, as any resume does. Refused while a worker holds the
/// run, and when no directory loads (then the records stay, and the run can only start over).
pub fn repair_checkpoints(spec: &JobSpec, run: &RunDir) -> anyhow::Result<Repaired> {
    let _lock = claim(run)?;
    match spec.model.arch {
        Arch::Gpt => repair_as::<Gpt>(spec, run),
        Arch::Mlp => repair_as::<MlpNet>(spec, run),
    }
}

fn repair_as<M: LanguageModel>(spec: &JobSpec, run: &RunDir) -> anyhow::Result<Repaired> {
    let data = spec.task.generate(spec.seed);
    let cpu = Device::flex().autodiff();
    let model = M::init(&spec.model, data.vocab_size, spec.n_ctx(), &cpu);
    let moments = Moments::zeros(&model);
    let steps = run
        .checkpoint_dirs()
        .with_context(|| format!("listing {}", run.path().display()))?;
    let (mut good, mut unreadable) = (Vec::new(), Vec::new());
    for step in steps {
        let dir = run.checkpoint_dir(step);
        match load_checkpoint(&dir, model.clone(), moments.clone()) {
            Ok((_, _, state)) if state.step == step => good.push(step),
            Ok((_, _, state)) => {
                unreadable.push((step, format!("its state.json says step {}", state.step)))
            }
            Err(e) => unreadable.push((step, format!("{e:#}"))),
        }
        if good.len() == 2 {
            break;
        }
    }
    let Some(&step) = good.first() else {
        let why: Vec<String> = unreadable
            .iter()
            .map(|(s, e)| format!("ckpt-{s:09}: {e}"))
            .collect();
        bail!(
            "no checkpoint directory of {} loads ({}); nothing was changed, and its records \
             cannot be resumed: to train the job again from step 0, move the directory away",
            run.path().display(),
            if why.is_empty() {
                "there are none".to_string()
            } else {
                why.join("; ")
            }
        );
    };
    let previous = good.get(1).copied();
    run.point_checkpoints(step, previous)
        .with_context(|| format!("writing {}", run.checkpoint_pointer().display()))?;
    tracing::info!(job = %spec.id(), step, ?previous, "checkpoint pointer rebuilt");
    Ok(Repaired {
        step,
        previous,
        unreadable,
    })
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
    /// Validation exact match at the last evaluation, for the progress line.
    val_exact_match: Option<f64>,
    /// Mean training loss at the last read-back.
    loss: Option<f64>,
}

/// A job restored to where its checkpoint left it (or initialized from its seed).
struct Loaded<'a, M: LanguageModel> {
    member: Member<'a>,
    model: M,
    moments: Moments<M>,
    step: u64,
}

impl<'a, M: LanguageModel> Loaded<'a, M> {
    fn new(
        job: usize,
        spec: &'a JobSpec,
        run: &'a RunDir,
        chosen: &ChosenDevice,
    ) -> anyhow::Result<Self> {
        let data = spec.task.generate(spec.seed);
        // Initialize on the CPU whatever the backend, so that a seed means the same initial
        // weights on Flex and on wgpu (their random generators differ).
        let cpu = Device::flex().autodiff();
        cpu.seed(spec.seed);
        let mut model = M::init(&spec.model, data.vocab_size, spec.n_ctx(), &cpu)
            .fork(&chosen.device.clone().autodiff());
        let mut moments = Moments::zeros(&model);
        let (mut step, mut wall_before, mut resumes) = (0, 0.0, 0);
        let mut resumed = false;
        let mut unreadable = Vec::new();
        let saved = run
            .checkpoints()
            .context("reading the checkpoint pointer")?;
        if saved.is_empty() {
            // Records without a checkpoint come from an attempt that died between its first
            // evaluation and its first checkpoint: start over cleanly.
            let _ = std::fs::remove_file(run.evals());
        }
        for &saved_step in &saved {
            match load_checkpoint(
                &run.checkpoint_dir(saved_step),
                model.clone(),
                moments.clone(),
            ) {
                Ok((m, o, state)) => {
                    (model, moments) = (m, o);
                    (step, wall_before, resumes) =
                        (state.step, state.wall_seconds, state.resumes + 1);
                    resumed = true;
                    run.truncate_evals_after(step)?;
                    if !unreadable.is_empty() {
                        // Point at the checkpoint that loaded, alone, before anything else is
                        // written: otherwise the next checkpoint would keep the unreadable one
                        // as its fallback and delete this one.
                        run.fall_back_to(saved_step, &unreadable)?;
                    }
                    tracing::info!(job = %spec.id(), step, "resumed from checkpoint");
                    break;
                }
                Err(e) => {
                    tracing::warn!(
                        job = %spec.id(),
                        step = saved_step,
                        error = format!("{e:#}"),
                        "checkpoint unreadable; trying the previous one"
                    );
                    unreadable.push(saved_step);
                }
            }
        }
        if !saved.is_empty() && !resumed {
            bail!(
                "none of the checkpoints of {} (steps {saved:?}) could be loaded; \
                 move the run directory away to start it over",
                run.path().display()
            );
        }
        let order = BatchOrder::new(spec.seed, data.train.len(), batch_size(spec, &data));
        let member = Member {
            job,
            spec,
            run,
            data,
            order,
            wall_before,
            resumes,
            resumed,
            checkpointed: resumed.then_some(step),
            val_exact_match: None,
            loss: None,
        };
        Ok(Self {
            member,
            model,
            moments,
            step,
        })
    }
}

fn batch_size(spec: &JobSpec, data: &Dataset) -> usize {
    match spec.train.batch_size {
        0 => data.train.len(),
        b => b.min(data.train.len()),
    }
}

struct Trainer<'a, M: LanguageModel> {
    members: Vec<Member<'a>>,
    chosen: ChosenDevice,
    optim: PackedAdamW<M>,
    step: u64,
    /// Outcomes of the members that finished (by job index).
    finished: Vec<(usize, Outcome)>,
}

impl<'a, M: LanguageModel> Trainer<'a, M> {
    /// Stacks the jobs (all at `step`) into one pack.
    fn new(group: Vec<Loaded<'a, M>>, chosen: ChosenDevice, step: u64) -> (Self, M) {
        let (mut members, mut models, mut firsts, mut seconds) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for loaded in group {
            members.push(loaded.member);
            models.push(loaded.model);
            firsts.push(loaded.moments.first);
            seconds.push(loaded.moments.second);
        }
        let moments = Moments {
            first: pack::stack(firsts),
            second: pack::stack(seconds),
        };
        let trainer = Self {
            members,
            chosen,
            optim: PackedAdamW { moments },
            step,
            finished: Vec::new(),
        };
        (trainer, pack::stack(models))
    }

    fn run(
        &mut self,
        mut model: M,
        stop: &AtomicBool,
        on_progress: &mut dyn FnMut(usize, &Progress),
    ) -> anyhow::Result<Vec<(usize, Outcome)>> {
        let spec = self.members[0].spec;
        let steps = spec.train.steps;
        let evals = eval_steps(steps, spec.eval.every);
        let started = Instant::now();
        let mut last_report = f64::NEG_INFINITY;
        // Losses `[models]` of the steps since the last read-back, still on the device.
        let mut pending: Vec<Tensor<1>> = Vec::new();
        let fresh: Vec<bool> = self.members.iter().map(|m| !m.resumed).collect();
        if fresh.contains(&true) {
            let diverged = self.evaluate_and_checkpoint(&model, started, &fresh)?;
            model = self.retire(model, diverged, started)?;
        }
        while self.step < steps && !self.members.is_empty() {
            if stop.load(Ordering::SeqCst) {
                let diverged = read_back(&mut pending, self.step, &mut self.members);
                model = self.retire(model, diverged, started)?;
                let norms = weight_norms(&model.valid());
                let diverged = self.not_finite(|k| norms[k]["weight_norm"]);
                model = self.retire(model, diverged, started)?;
                for k in 0..self.members.len() {
                    self.checkpoint(k, &model, started)?;
                    let job = self.members[k].job;
                    self.finished
                        .push((job, Outcome::Interrupted { step: self.step }));
                }
                tracing::info!(step = self.step, "stopped on request; checkpointed");
                self.members.clear();
                break;
            }
            let step = self.step + 1;
            let step_loss;
            (model, step_loss) = self.train_step(model, step);
            pending.push(step_loss);
            self.step = step;
            let is_eval = evals.binary_search(&step).is_ok();
            let elapsed = started.elapsed().as_secs_f64();
            let due = elapsed - last_report >= HEARTBEAT_SECS;
            if is_eval || due || step == steps || self.members[0].loss.is_none() {
                let diverged = read_back(&mut pending, step, &mut self.members);
                model = self.retire(model, diverged, started)?;
            }
            if is_eval && !self.members.is_empty() {
                let all = vec![true; self.members.len()];
                let diverged = self.evaluate_and_checkpoint(&model, started, &all)?;
                model = self.retire(model, diverged, started)?;
            }
            if due {
                last_report = elapsed;
                self.heartbeat()?;
            }
            for member in &self.members {
                on_progress(
                    member.job,
                    &Progress {
                        job: None,
                        step,
                        steps,
                        loss: member.loss.unwrap_or(f64::NAN),
                        val_exact_match: member.val_exact_match,
                    },
                );
            }
        }
        for k in 0..self.members.len() {
            let outcome = self.finish(k, RunStatus::Done, started)?;
            self.finished.push((self.members[k].job, outcome));
        }
        Ok(std::mem::take(&mut self.finished))
    }

    /// The members whose `value(k)` is not finite, as divergences at the current step.
    fn not_finite(&self, value: impl Fn(usize) -> f64) -> Vec<(usize, RunStatus)> {
        (0..self.members.len())
            .filter(|&k| !value(k).is_finite())
            .map(|k| (k, RunStatus::Diverged { step: self.step }))
            .collect()
    }

    /// Finishes the members `gone` (diverged) and takes them out of the pack; the others go on.
    fn retire(
        &mut self,
        model: M,
        gone: Vec<(usize, RunStatus)>,
        started: Instant,
    ) -> anyhow::Result<M> {
        if gone.is_empty() {
            return Ok(model);
        }
        for (k, status) in &gone {
            let outcome = self.finish(*k, status.clone(), started)?;
            self.finished.push((self.members[*k].job, outcome));
        }
        let keep: Vec<usize> = (0..self.members.len())
            .filter(|k| !gone.iter().any(|(g, _)| g == k))
            .collect();
        let mut k = 0;
        self.members.retain(|_| {
            k += 1;
            keep.contains(&(k - 1))
        });
        if keep.is_empty() {
            return Ok(model);
        }
        let moments = &self.optim.moments;
        self.optim.moments = Moments {
            first: pack::select(&moments.first, &keep),
            second: pack::select(&moments.second, &keep),
        };
        Ok(pack::select(&model, &keep))
    }

    /// Writes member `k`'s summary: its run is over (done, or diverged on its last finite
    /// checkpoint).
    fn finish(&self, k: usize, status: RunStatus, started: Instant) -> anyhow::Result<Outcome> {
        let member = &self.members[k];
        let job = member.spec.id();
        match status {
            RunStatus::Diverged { step } => tracing::warn!(
                %job,
                step,
                "diverged: non-finite loss; keeping the last finite checkpoint"
            ),
            RunStatus::Done => tracing::info!(%job, steps = self.step, "done"),
        }
        let summary = Summary {
            status,
            steps: self.step,
            wall_seconds: member.wall_before + started.elapsed().as_secs_f64(),
            backend: self.chosen.backend.to_string(),
            device: self.chosen.name.clone(),
            resumes: member.resumes,
        };
        fsio::write_atomic(&member.run.summary(), &serde_json::to_vec_pretty(&summary)?)?;
        Ok(Outcome::Finished(summary))
    }

    /// One AdamW update of every model on its batch of `step`; returns the batch losses
    /// `[models]` before the update, left on the device (reading them back would wait for the
    /// device every step).
    fn train_step(&mut self, model: M, step: u64) -> (M, Tensor<1>) {
        let device = self.chosen.device.clone().autodiff();
        let m = self.members.len();
        let indices: Vec<Vec<u32>> = self
            .members
            .iter_mut()
            .map(|member| member.order.indices(step).to_vec())
            .collect();
        let batches: Vec<Vec<&[u32]>> = self
            .members
            .iter()
            .zip(&indices)
            .map(|(member, indices)| {
                let train = &member.data.train;
                indices
                    .iter()
                    .map(|&i| train[i as usize].as_slice())
                    .collect()
            })
            .collect();
        let data = &self.members[0].data;
        let input = int_tensor(&inputs(&batches, data), &device);
        let targets = int_tensor(&answers(&batches, data), &device);
        let logits = model.forward(input, data.prompt_len - 1);
        let nll = if self.members[0].spec.train.stable_loss {
            stable_cross_entropy(logits, targets)
        } else {
            -log_softmax(logits, 3).gather(3, targets.unsqueeze_dim(3))
        };
        let [_, b, a, _] = nll.dims();
        // Each model's mean loss; their sum gives each model exactly its own gradient.
        let loss = nll.reshape([m, b * a]).mean_dim(1).reshape([m]);
        let grads = GradientsParams::from_grads(loss.clone().sum().backward(), &model);
        let specs: Vec<&TrainSpec> = self.members.iter().map(|m| &m.spec.train).collect();
        let model = self.optim.step(model, grads, &specs, step);
        (model, loss.detach().inner())
    }

    /// Scores both splits of every member `k` with `write[k]` and appends its rows (fsynced,
    /// non-finite values kept), then checkpoints it if every loss and weight is finite: a record
    /// on disk always has its checkpoint at or before it, so a resume never loses or repeats
    /// one. Returns the members whose scores or weights diverged (their rows are written, their
    /// checkpoint is not).
    fn evaluate_and_checkpoint(
        &mut self,
        model: &M,
        started: Instant,
        write: &[bool],
    ) -> anyhow::Result<Vec<(usize, RunStatus)>> {
        let valid = model.valid();
        let mut metrics = weight_norms(&valid);
        for (k, fourier) in self.fourier(&valid).into_iter().enumerate() {
            metrics[k].extend(fourier);
        }
        let mut rows: Vec<Vec<EvalRow>> = vec![Vec::new(); self.members.len()];
        for split in [Split::Train, Split::Val] {
            let examples: Vec<&[Vec<u32>]> = self
                .members
                .iter()
                .map(|m| {
                    let (examples, cap) = match split {
                        Split::Train => (&m.data.train, m.spec.eval.max_train_examples),
                        Split::Val => (&m.data.val, m.spec.eval.max_val_examples),
                    };
                    let n = if cap == 0 {
                        examples.len()
                    } else {
                        cap.min(examples.len())
                    };
                    &examples[..n]
                })
                .collect();
            // Task-specific scores (sparse parity's subtasks, induction's positions) need each
            // example's group, where the task has them.
            let breakdowns: Vec<(&Breakdown, &[u32])> = self
                .members
                .iter()
                .zip(&examples)
                .map(|(m, examples)| {
                    let groups = m.data.breakdown.groups(split == Split::Train);
                    (
                        &m.data.breakdown,
                        &groups[..examples.len().min(groups.len())],
                    )
                })
                .collect();
            let scores = evaluate(
                &valid,
                &examples,
                &breakdowns,
                &self.members[0].data,
                &self.chosen.device,
            );
            for (k, mut scores) in scores.into_iter().enumerate() {
                let member = &mut self.members[k];
                if split == Split::Train {
                    scores.append(&mut metrics[k]);
                } else {
                    member.val_exact_match = scores.get("exact_match").copied();
                }
                rows[k].push(EvalRow {
                    step: self.step,
                    split,
                    tokens: self.step * (member.order.batch * member.spec.n_ctx()) as u64,
                    metrics: scores,
                });
            }
        }
        let finite = |r: &Vec<EvalRow>| {
            r.iter().all(|row| {
                row.metrics["loss"].is_finite()
                    && row.metrics.get("weight_norm").is_none_or(|n| n.is_finite())
            })
        };
        let diverged = self.not_finite(|k| if finite(&rows[k]) { 0.0 } else { f64::NAN });
        for (k, rows) in rows.iter().enumerate() {
            if !write[k] {
                continue;
            }
            for row in rows {
                self.members[k].run.append_eval(row)?;
            }
            if finite(rows) {
                self.checkpoint(k, model, started)?;
            }
        }
        Ok(diverged)
    }

    /// Nanda et al.'s Fourier progress measures ([`crate::fourier`]) of each member that trains
    /// modular addition or subtraction (nothing for the others, nor for a network without
    /// token embeddings), from one forward pass over every equation.
    fn fourier(&self, model: &M) -> Vec<BTreeMap<String, f64>> {
        let sign = |member: &Member| match &member.spec.task {
            TaskSpec::Modular(t) if t.op == ModOp::Add => Some((t.p as usize, 1)),
            TaskSpec::Modular(t) if t.op == ModOp::Sub => Some((t.p as usize, -1)),
            _ => None,
        };
        let mut out = vec![BTreeMap::new(); self.members.len()];
        if self.members.iter().all(|m| sign(m).is_none()) {
            return out;
        }
        let Some(embedding) = model.token_embedding() else {
            return out;
        };
        let data = &self.members[0].data;
        let equations: Vec<Vec<&[u32]>> = self
            .members
            .iter()
            .map(|m| {
                m.data
                    .train
                    .iter()
                    .chain(&m.data.val)
                    .map(Vec::as_slice)
                    .collect()
            })
            .collect();
        let logits = answer_logits(model, &equations, data, &self.chosen.device);
        let d = embedding.dims()[2];
        let embeddings = embedding
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        let vocab = data.vocab_size;
        for (k, member) in self.members.iter().enumerate() {
            let Some((p, sign)) = sign(member) else {
                continue;
            };
            let n_train = member.data.train.len();
            let pairs: Vec<Pair> = equations[k]
                .iter()
                .enumerate()
                .map(|(i, s)| Pair {
                    a: s[0] as usize,
                    b: s[data.prompt_len - 2] as usize,
                    train: i < n_train,
                })
                .collect();
            let residue_logits: Vec<f32> = logits[k]
                .chunks(vocab)
                .flat_map(|row| &row[..p])
                .copied()
                .collect();
            let embedding = &embeddings[k * vocab * d..][..p * d];
            out[k] = fourier_measures(embedding, d, &residue_logits, &pairs, p, sign);
        }
        out
    }

    /// Writes member `k`'s slice of the pack (weights and AdamW moments) as its checkpoint,
    /// unless this process already loaded or wrote the checkpoint of this step.
    fn checkpoint(&mut self, k: usize, model: &M, started: Instant) -> anyhow::Result<()> {
        let member = &self.members[k];
        let run = member.run;
        if member.checkpointed == Some(self.step) {
            return Ok(());
        }
        let dir = run.checkpoint_dir(self.step);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        pack::select(model, &[k])
            .save_file(dir.join("model.bpk"))
            .context("saving the model")?;
        let moments = &self.optim.moments;
        Moments {
            first: pack::select(&moments.first, &[k]),
            second: pack::select(&moments.second, &[k]),
        }
        .save_file(dir.join("optim.bpk"))
        .context("saving the optimizer")?;
        let state = CheckpointState {
            step: self.step,
            wall_seconds: member.wall_before + started.elapsed().as_secs_f64(),
            resumes: member.resumes,
        };
        fsio::write_atomic(&dir.join("state.json"), &serde_json::to_vec(&state)?)?;
        for file in ["model.bpk", "optim.bpk"] {
            std::fs::File::open(dir.join(file))?.sync_all()?;
        }
        fsio::sync_dir(&dir)?;
        run.publish_checkpoint(self.step)?;
        self.members[k].checkpointed = Some(self.step);
        Ok(())
    }

    fn heartbeat(&self) -> anyhow::Result<()> {
        for member in &self.members {
            elab_job::Heartbeat::now(self.step).write(member.run)?;
        }
        Ok(())
    }
}

/// Times `steps` training updates of `spec` after `warmup` untimed ones (no evaluation, no
/// checkpoints, nothing written): seconds per step.
pub fn time_steps(
    spec: &JobSpec,
    chosen: ChosenDevice,
    warmup: u64,
    steps: u64,
) -> anyhow::Result<f64> {
    match spec.model.arch {
        Arch::Gpt => time_steps_of::<Gpt>(spec, chosen, warmup, steps),
        Arch::Mlp => time_steps_of::<MlpNet>(spec, chosen, warmup, steps),
    }
}

fn time_steps_of<M: LanguageModel>(
    spec: &JobSpec,
    chosen: ChosenDevice,
    warmup: u64,
    steps: u64,
) -> anyhow::Result<f64> {
    let scratch =
        RunDir::new(std::env::temp_dir().join(format!("elab-bench-{}", std::process::id())));
    let loaded = Loaded::<M>::new(0, spec, &scratch, &chosen)?;
    let (mut trainer, mut model) = Trainer::new(vec![loaded], chosen, 0);
    let mut losses = Vec::new();
    for step in 1..=warmup {
        let loss;
        (model, loss) = trainer.train_step(model, step);
        losses.push(loss);
    }
    let _ = read_back(&mut losses, warmup, &mut trainer.members);
    let start = Instant::now();
    for step in warmup + 1..=warmup + steps {
        let loss;
        (model, loss) = trainer.train_step(model, step);
        losses.push(loss);
    }
    // As in training: one read-back at the end, which also waits for the device to finish.
    let diverged = read_back(&mut losses, warmup + steps, &mut trainer.members);
    let seconds = start.elapsed().as_secs_f64() / steps as f64;
    anyhow::ensure!(diverged.is_empty(), "loss diverged while benchmarking");
    Ok(seconds)
}

/// Each model's examples `[models][n]` as input ids `[models * n * n_ctx]`: every token but
/// the last, row-major.
fn inputs(examples: &[Vec<&[u32]>], data: &Dataset) -> (Vec<i64>, [usize; 3]) {
    let n_ctx = data.seq_len() - 1;
    let n = examples[0].len();
    let ids = examples
        .iter()
        .flatten()
        .flat_map(|s| s[..n_ctx].iter().map(|&t| t as i64))
        .collect();
    (ids, [examples.len(), n, n_ctx])
}

/// Each model's answer tokens `[models * n * answer_len]`.
fn answers(examples: &[Vec<&[u32]>], data: &Dataset) -> (Vec<i64>, [usize; 3]) {
    let n = examples[0].len();
    let ids = examples
        .iter()
        .flatten()
        .flat_map(|s| s[data.prompt_len..].iter().map(|&t| t as i64))
        .collect();
    (ids, [examples.len(), n, data.answer_len])
}

fn int_tensor((values, shape): &(Vec<i64>, [usize; 3]), device: &Device) -> Tensor<3, Int> {
    Tensor::from_data(TensorData::new(values.clone(), *shape), device)
}

/// Cross-entropy `[models, n, answer_len, 1]` of `logits` `[models, n, answer_len, vocab]` at
/// `targets`, as log(1 + sum over c != target of exp(z_c)), z = logit - target logit (shifted
/// by m = max(0, max z) against overflow). float32 log-softmax computes log(1 + tiny) as 0 once
/// the answer's probability is within 6e-8 of 1, so the loss and the target logit's gradient
/// vanish exactly (the "softmax collapse" behind loss spikes in long grokking runs); log1p of
/// the sum over the other classes keeps both.
fn stable_cross_entropy(logits: Tensor<4>, targets: Tensor<3, Int>) -> Tensor<4> {
    let [m, n, a, vocab] = logits.dims();
    let device = logits.device();
    let targets = targets.unsqueeze_dim::<4>(3);
    let z = logits.clone() - logits.gather(3, targets.clone());
    let classes = Tensor::<1, Int>::arange(0..vocab as i64, &device)
        .reshape([1, 1, 1, vocab])
        .expand([m, n, a, vocab]);
    let others = z.mask_fill(
        classes.equal(targets.expand([m, n, a, vocab])),
        f32::NEG_INFINITY,
    );
    let shift = others.clone().max_dim(3).clamp_min(0.0).detach();
    // exp(-shift) - 1 first: it is exactly 0 when the answer is the argmax, and adding the
    // small sum to it keeps every digit (1 + sum - 1 would not).
    let rest = ((-shift.clone()).exp() - 1.0) + (others - shift.clone()).exp().sum_dim(3);
    shift + rest.log1p()
}

/// Log-softmax of the logits at the positions that predict the answer:
/// `[models, n, answer_len, vocab]`.
fn answer_log_probs<M: LanguageModel>(
    model: &M,
    input: Tensor<3, Int>,
    data: &Dataset,
) -> Tensor<4> {
    log_softmax(model.forward(input, data.prompt_len - 1), 3)
}

/// Walks each model's examples `[models][examples]` together, [`EVAL_BATCH`] at a time: `f`
/// gets each model's chunk and the rows to feed the pack, every chunk [`padded`] to the
/// longest.
fn for_each_eval_chunk<'e, T: AsRef<[u32]>>(
    examples: &[&'e [T]],
    data: &Dataset,
    mut f: impl FnMut(&[&'e [T]], &[Vec<&[u32]>]),
) {
    let blank = vec![0u32; data.seq_len()];
    let longest = examples.iter().map(|e| e.len()).max().unwrap_or(0);
    for start in (0..longest).step_by(EVAL_BATCH) {
        let chunks: Vec<&[T]> = examples
            .iter()
            .map(|e| &e[start.min(e.len())..(start + EVAL_BATCH).min(e.len())])
            .collect();
        let n = chunks.iter().map(|c| c.len()).max().unwrap_or(0);
        let rows: Vec<Vec<&[u32]>> = chunks
            .iter()
            .map(|c| padded(c.iter().map(AsRef::as_ref).collect(), n, &blank))
            .collect();
        f(&chunks, &rows);
    }
}

/// `rows` padded to `n` by repeating its first row (or `blank` when it has none): the models
/// of a pack read equally many examples per pass, and the padding's scores are dropped.
fn padded<'e>(mut rows: Vec<&'e [u32]>, n: usize, blank: &'e [u32]) -> Vec<&'e [u32]> {
    let fill = rows.first().copied().unwrap_or(blank);
    rows.resize(n, fill);
    rows
}

/// Teacher-forced and greedy-decoded scores (see [`crate::metrics`]) of each model of the
/// pack on its own examples `[models][examples]`. `data` gives the (shared) token layout.
fn evaluate<M: LanguageModel>(
    model: &M,
    examples: &[&[Vec<u32>]],
    breakdowns: &[(&Breakdown, &[u32])],
    data: &Dataset,
    device: &Device,
) -> Vec<BTreeMap<String, f64>> {
    let (answer_len, vocab) = (data.answer_len, data.vocab_size);
    let mut scorers: Vec<Scorer> = examples.iter().map(|_| Scorer::default()).collect();
    let mut task_scorers: Vec<TaskScorer> = breakdowns
        .iter()
        .map(|&(breakdown, groups)| TaskScorer::new(breakdown, groups))
        .collect();
    for_each_eval_chunk(examples, data, |chunks, rows| {
        let n = rows[0].len();
        let input = inputs(rows, data);
        let logp = answer_log_probs(model, int_tensor(&input, device), data)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let per_model = n * answer_len * vocab;
        // Greedy decoding agrees with the teacher-forced argmax up to its first wrong token, so
        // an example whose teacher-forced argmaxes are all right decodes to the target, and one
        // with a wrong token is not an exact match either way. Only those need decoding, for
        // their edit distance.
        let targets: Vec<Vec<u32>> = chunks
            .iter()
            .map(|c| {
                c.iter()
                    .flat_map(|s| s[data.prompt_len..].iter().copied())
                    .collect()
            })
            .collect();
        let mut greedy: Vec<Vec<u32>> = (0..chunks.len())
            .map(|k| {
                let own = &logp[k * per_model..][..chunks[k].len() * answer_len * vocab];
                own.chunks(vocab).map(|row| argmax(row) as u32).collect()
            })
            .collect();
        let wrong: Vec<Vec<usize>> = (0..chunks.len())
            .map(|k| {
                (0..chunks[k].len())
                    .filter(|&e| {
                        let answer = e * answer_len..(e + 1) * answer_len;
                        greedy[k][answer.clone()] != targets[k][answer]
                    })
                    .collect()
            })
            .collect();
        decode_greedy(model, chunks, &wrong, &mut greedy, data, device);
        for (k, (scorer, task_scorer)) in scorers.iter_mut().zip(&mut task_scorers).enumerate() {
            let own = &logp[k * per_model..][..chunks[k].len() * answer_len * vocab];
            scorer.add(own, vocab, &targets[k], &greedy[k], answer_len);
            task_scorer.add(own, vocab, &targets[k], answer_len);
        }
    });
    scorers
        .iter()
        .zip(&task_scorers)
        .map(|(scorer, task_scorer)| {
            let mut metrics = scorer.finish();
            metrics.extend(task_scorer.finish());
            metrics
        })
        .collect()
}

/// The logits at the first answer position of each model's examples `[models][n]`: per model,
/// `[n, vocab]` row-major.
fn answer_logits<M: LanguageModel>(
    model: &M,
    examples: &[Vec<&[u32]>],
    data: &Dataset,
    device: &Device,
) -> Vec<Vec<f32>> {
    let vocab = data.vocab_size;
    let mut out: Vec<Vec<f32>> = examples.iter().map(|_| Vec::new()).collect();
    let examples: Vec<&[&[u32]]> = examples.iter().map(Vec::as_slice).collect();
    for_each_eval_chunk(&examples, data, |chunks, rows| {
        let n = rows[0].len();
        let logits = model
            .forward(int_tensor(&inputs(rows, data), device), data.prompt_len - 1)
            .narrow(2, 0, 1)
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        for (k, chunk) in chunks.iter().enumerate() {
            out[k].extend_from_slice(&logits[k * n * vocab..][..chunk.len() * vocab]);
        }
    });
    out
}

/// Replaces answer tokens 1.. of the examples `rows[k]` of each model's `greedy[k]`
/// (`[n, answer_len]`, token 0 already the teacher-forced argmax) by greedy decoding: each
/// token is predicted after writing the earlier guesses into the input. The causal mask hides
/// the stale targets further right.
fn decode_greedy<M: LanguageModel>(
    model: &M,
    examples: &[&[Vec<u32>]],
    rows: &[Vec<usize>],
    greedy: &mut [Vec<u32>],
    data: &Dataset,
    device: &Device,
) {
    let (p, answer_len, n_ctx) = (data.prompt_len, data.answer_len, data.seq_len() - 1);
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    if n == 0 || answer_len == 1 {
        return;
    }
    let blank = vec![0u32; data.seq_len()];
    let picked: Vec<Vec<&[u32]>> = (0..rows.len())
        .map(|k| {
            let own = rows[k].iter().map(|&e| examples[k][e].as_slice()).collect();
            padded(own, n, &blank)
        })
        .collect();
    let (mut input, shape) = inputs(&picked, data);
    for j in 1..answer_len {
        for (k, own) in rows.iter().enumerate() {
            for (r, &e) in own.iter().enumerate() {
                input[(k * n + r) * n_ctx + p + j - 1] = greedy[k][e * answer_len + j - 1] as i64;
            }
        }
        let next = model
            .forward(int_tensor(&(input.clone(), shape), device), p - 1 + j)
            .narrow(2, 0, 1)
            .argmax(3)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        for (k, own) in rows.iter().enumerate() {
            for (r, &e) in own.iter().enumerate() {
                greedy[k][e * answer_len + j] = next[k * n + r] as u32;
            }
        }
    }
}

/// Reads back the losses `[models]` of the steps up to `step` (one wait for the device), sets
/// each member's mean, and returns the members whose loss went non-finite, each diverged at
/// its first non-finite step.
fn read_back(
    pending: &mut Vec<Tensor<1>>,
    step: u64,
    members: &mut [Member],
) -> Vec<(usize, RunStatus)> {
    if pending.is_empty() {
        return Vec::new();
    }
    let (n, m) = (pending.len(), members.len());
    let losses = Tensor::cat(std::mem::take(pending), 0)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let mut diverged = Vec::new();
    for (k, member) in members.iter_mut().enumerate() {
        let own: Vec<f32> = (0..n).map(|i| losses[i * m + k]).collect();
        match own.iter().position(|l| !l.is_finite()) {
            Some(i) => diverged.push((
                k,
                RunStatus::Diverged {
                    step: step + 1 + i as u64 - n as u64,
                },
            )),
            None => member.loss = Some(own.iter().map(|&l| l as f64).sum::<f64>() / n as f64),
        }
    }
    diverged
}

/// Loads a checkpoint directory written by [`Trainer::checkpoint`].
fn load_checkpoint<M: LanguageModel>(
    dir: &std::path::Path,
    model: M,
    moments: Moments<M>,
) -> anyhow::Result<(M, Moments<M>, CheckpointState)> {
    let state: CheckpointState = serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)
        .context("reading state.json")?;
    let model = model
        .try_load_file(dir.join("model.bpk"))
        .context("loading the checkpointed model")?;
    let moments = moments
        .try_load_file(dir.join("optim.bpk"))
        .context("loading the checkpointed optimizer")?;
    Ok((model, moments, state))
}

/// The order in which training examples are visited: epoch e is a shuffle seeded by
/// (seed, e); step t takes the (t-1)-th batch of that order. Full batch skips the shuffle.
struct BatchOrder {
    seed: u64,
    batch: usize,
    epoch: Option<u64>,
    perm: Vec<u32>,
}

impl BatchOrder {
    fn new(seed: u64, n: usize, batch: usize) -> Self {
        Self {
            seed,
            batch,
            epoch: None,
            perm: (0..n as u32).collect(),
        }
    }

    fn indices(&mut self, step: u64) -> &[u32] {
        let per_epoch = (self.perm.len() / self.batch) as u64;
        let (epoch, pos) = ((step - 1) / per_epoch, ((step - 1) % per_epoch) as usize);
        if self.batch < self.perm.len() && self.epoch != Some(epoch) {
            self.perm = (0..self.perm.len() as u32).collect();
            shuffle(
                &mut self.perm,
                &mut SplitMix64::derive(self.seed, 1_000 + epoch),
            );
            self.epoch = Some(epoch);
        }
        &self.perm[pos * self.batch..(pos + 1) * self.batch]
    }
}

/// Each model's L2 norm of all weights (`weight_norm`) and of each module (`weight_norm.wte`,
/// `weight_norm.blocks.0.attn`, ...): the progress measure of Nanda et al. 2023 and Omnigrok,
/// whose fall marks the cleanup that ends grokking. One read-back for all of them.
fn weight_norms<M: LanguageModel>(model: &M) -> Vec<BTreeMap<String, f64>> {
    #[derive(Default)]
    struct Norms {
        path: Vec<String>,
        /// Per module, each model's sum of squares `[models, 1]`.
        sums: BTreeMap<String, Tensor<2>>,
    }
    impl ModuleVisitor for Norms {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // `blocks.<i>.<attn|mlp|ln_1|ln_2>` inside the blocks, the field name elsewhere
            // (a parameter directly in the model, such as `wte`, is entered as itself).
            let depth = if self.path.first().is_some_and(|p| p == "blocks") {
                3
            } else {
                1
            };
            let module = format!(
                "weight_norm.{}",
                self.path[..depth.min(self.path.len())].join(".")
            );
            let s = pack::flat(param.val()).powf_scalar(2.0).sum_dim(1);
            let sum = match self.sums.remove(&module) {
                Some(t) => t + s,
                None => s,
            };
            self.sums.insert(module, sum);
        }
    }
    let mut norms = Norms::default();
    model.visit(&mut norms);
    let names: Vec<String> = norms.sums.keys().cloned().collect();
    let squares = Tensor::cat(norms.sums.into_values().collect(), 1)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    squares
        .chunks(names.len())
        .map(|squares| {
            let total = squares.iter().map(|&s| s as f64).sum::<f64>().sqrt();
            names
                .iter()
                .cloned()
                .zip(squares.iter().map(|&s| (s as f64).sqrt()))
                .chain(std::iter::once(("weight_norm".to_string(), total)))
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stable_loss_equals_cross_entropy_and_survives_saturation() {
        let device = Device::flex().autodiff();
        let targets = Tensor::<3, Int>::from_data([[[1], [0]]], &device);
        let plain =
            |logits: Tensor<4>| -log_softmax(logits, 3).gather(3, targets.clone().unsqueeze_dim(3));
        let values = |t: Tensor<4>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        // Ordinary logits: the same loss (the second example's answer is not the argmax).
        let logits = Tensor::<4>::from_data([[[[0.5, 2.0, -1.0]], [[0.1, 3.0, 0.2]]]], &device);
        let (a, b) = (
            values(stable_cross_entropy(logits.clone(), targets.clone())),
            values(plain(logits)),
        );
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{a:?} vs {b:?}");
        }
        // A saturated answer (logit 40 above the rest): float32 log-softmax gives exactly 0 and
        // no gradient on the answer's logit; the stable loss gives 2 e^-40 and a gradient.
        let logits = Tensor::<4>::from_data([[[[0.0, 40.0, 0.0]], [[40.0, 0.0, 0.0]]]], &device)
            .require_grad();
        assert_eq!(values(plain(logits.clone())), [0.0, 0.0]);
        let stable = stable_cross_entropy(logits.clone(), targets.clone());
        let want = 2.0 * (-40.0f64).exp();
        for x in values(stable.clone()) {
            assert!(((x as f64) / want - 1.0).abs() < 1e-4, "{x} vs {want}");
        }
        let grads = stable.sum().backward();
        let g = logits
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        assert!(
            g[1] < 0.0 && g[3] < 0.0,
            "the answer's logit is still pushed up: {g:?}"
        );
    }

    #[test]
    fn batch_order_covers_each_epoch_once_and_reshuffles() {
        let mut order = BatchOrder::new(1, 10, 3);
        let mut first: Vec<u32> = (1..=3).flat_map(|s| order.indices(s).to_vec()).collect();
        let second: Vec<u32> = (4..=6).flat_map(|s| order.indices(s).to_vec()).collect();
        assert_ne!(first, second);
        first.sort();
        first.dedup();
        assert_eq!(first.len(), 9);
        // A fresh order (a resumed run) gives the same batch for the same step.
        assert_eq!(BatchOrder::new(1, 10, 3).indices(5), order.indices(5));
    }
}
