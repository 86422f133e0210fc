//! The training loop: AdamW with warmup and schedule, log-spaced evaluation, step-level
//! checkpoints, exact resume, divergence detection and clean stop on a signal.
//!
//! Exact resume rests on three facts: the batch of step t is a pure function of (seed, t);
//! the learning rate is a pure function of t; a checkpoint holds the weights, the AdamW
//! moments and t. So training N steps, stopping and resuming for N more replays exactly
//! the updates of 2N straight steps (bitwise on the Flex CPU backend).
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
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use elab_job::{EvalRow, JobSpec, Progress, RunDir, RunStatus, Split, Summary, eval_steps, fsio};
use elab_model::{Gpt, GptConfig};
use elab_tasks::{Dataset, SplitMix64, shuffle};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, ChosenDevice, choose_device};
use crate::metrics::{Scorer, argmax};
use crate::task_metrics::TaskScorer;

/// Examples per forward pass during evaluation.
const EVAL_BATCH: usize = 1024;
/// Seconds between heartbeat writes.
const HEARTBEAT_SECS: f64 = 5.0;

/// How a call to [`train`] ended.
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
    pub on_progress: &'a mut dyn FnMut(&Progress),
}

/// Saved beside the weights and optimizer state in each checkpoint.
#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: u64,
    wall_seconds: f64,
    resumes: u32,
}

/// Trains `spec` in `run`, resuming from its checkpoint if it has one.
pub fn train(spec: &JobSpec, run: &RunDir, opts: RunOptions) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(run.path())?;
    let _lock = fsio::try_lock(&run.lock())?.with_context(|| {
        format!(
            "{} is being trained by another process",
            run.path().display()
        )
    })?;
    claim_run_dir(spec, run)?;
    if let Some(summary) = run.read_summary() {
        return Ok(Outcome::Finished(summary));
    }

    let chosen = choose_device(opts.backend)?;
    tracing::info!(backend = chosen.backend, device = %chosen.name, reason = %chosen.reason, "device chosen");
    let (mut trainer, model) = Trainer::new(spec, run, chosen)?;
    let outcome = trainer.run(model, opts);
    let _ = std::fs::remove_file(run.heartbeat());
    outcome
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

struct Trainer<'a> {
    spec: &'a JobSpec,
    run: &'a RunDir,
    chosen: ChosenDevice,
    data: Dataset,
    optim: ModuleOptimizer,
    step: u64,
    wall_before: f64,
    resumes: u32,
    /// Started from a checkpoint (whose evaluation rows are already written).
    resumed: bool,
    batch_size: usize,
    order: BatchOrder,
}

impl<'a> Trainer<'a> {
    /// Builds the trainer and the model, restored from the last checkpoint if there is one.
    fn new(
        spec: &'a JobSpec,
        run: &'a RunDir,
        chosen: ChosenDevice,
    ) -> anyhow::Result<(Self, Gpt)> {
        let data = spec.task.generate(spec.seed);
        // Initialize on the CPU whatever the backend, so that a seed means the same initial
        // weights on Flex and on wgpu (their random generators differ).
        // burn initializes parameters lazily, on their device, at first use: materialize them
        // on the CPU before moving.
        let cpu = Device::flex().autodiff();
        cpu.seed(spec.seed);
        let config = GptConfig::from_spec(&spec.model, data.vocab_size, spec.n_ctx());
        let mut model = materialize(config.init(&cpu)).fork(&chosen.device.clone().autodiff());
        let t = &spec.train;
        let new_optim = || {
            AdamWConfig::new()
                .with_beta_1(t.beta1 as f32)
                .with_beta_2(t.beta2 as f32)
                .with_epsilon(t.eps as f32)
                .with_weight_decay(t.weight_decay as f32)
                .init()
        };
        let mut optim = new_optim();
        let (mut step, mut wall_before, mut resumes) = (0, 0.0, 0);
        let mut resumed = false;
        let saved = run
            .checkpoints()
            .context("reading the checkpoint pointer")?;
        if saved.is_empty() {
            // Records without a checkpoint come from an attempt that died between its first
            // evaluation and its first checkpoint: start over cleanly.
            let _ = std::fs::remove_file(run.evals());
        }
        for &saved_step in &saved {
            match load_checkpoint(&run.checkpoint_dir(saved_step), model.clone(), new_optim()) {
                Ok((m, o, state)) => {
                    (model, optim) = (m, o);
                    (step, wall_before, resumes) =
                        (state.step, state.wall_seconds, state.resumes + 1);
                    resumed = true;
                    run.truncate_evals_after(step)?;
                    tracing::info!(step, "resumed from checkpoint");
                    break;
                }
                Err(e) => tracing::warn!(
                    step = saved_step,
                    error = format!("{e:#}"),
                    "checkpoint unreadable; trying the previous one"
                ),
            }
        }
        if !saved.is_empty() && !resumed {
            bail!(
                "none of the checkpoints of {} (steps {saved:?}) could be loaded; \
                 move the run directory away to start it over",
                run.path().display()
            );
        }
        let batch_size = match t.batch_size {
            0 => data.train.len(),
            b => b.min(data.train.len()),
        };
        let order = BatchOrder::new(spec.seed, data.train.len(), batch_size);
        let trainer = Self {
            spec,
            run,
            chosen,
            data,
            optim,
            step,
            wall_before,
            resumes,
            resumed,
            batch_size,
            order,
        };
        Ok((trainer, model))
    }

    fn run(&mut self, mut model: Gpt, opts: RunOptions) -> anyhow::Result<Outcome> {
        let steps = self.spec.train.steps;
        let evals = eval_steps(steps, self.spec.eval.every);
        let started = Instant::now();
        let mut last_report = f64::NEG_INFINITY;
        let mut val_exact_match = None;
        let mut loss = None;
        // Losses of the steps since the last read-back, still on the device.
        let mut pending: Vec<Tensor<1>> = Vec::new();
        if !self.resumed {
            match self.evaluate_and_checkpoint(&model, started)? {
                Ok(em) => val_exact_match = em,
                Err(diverged) => return self.finish(diverged, started),
            }
        }
        while self.step < steps {
            if opts.stop.load(Ordering::SeqCst) {
                if let Err(diverged) = read_back(&mut pending, self.step) {
                    return self.finish(diverged, started);
                }
                if !weight_norms(&model)["weight_norm"].is_finite() {
                    let diverged = RunStatus::Diverged { step: self.step };
                    return self.finish(diverged, started);
                }
                self.checkpoint(&model, started)?;
                tracing::info!(step = self.step, "stopped on request; checkpointed");
                return Ok(Outcome::Interrupted { step: self.step });
            }
            let step = self.step + 1;
            let step_loss;
            (model, step_loss) = self.train_step(model, step);
            pending.push(step_loss);
            self.step = step;
            let is_eval = evals.binary_search(&step).is_ok();
            let elapsed = started.elapsed().as_secs_f64();
            let due = elapsed - last_report >= HEARTBEAT_SECS;
            if is_eval || due || step == steps || loss.is_none() {
                match read_back(&mut pending, step) {
                    Ok(mean) => loss = Some(mean),
                    Err(diverged) => return self.finish(diverged, started),
                }
            }
            if is_eval {
                match self.evaluate_and_checkpoint(&model, started)? {
                    Ok(em) => val_exact_match = em,
                    Err(diverged) => return self.finish(diverged, started),
                }
            }
            if due {
                last_report = elapsed;
                self.heartbeat()?;
            }
            (opts.on_progress)(&Progress {
                step,
                steps,
                loss: loss.unwrap_or(f64::NAN),
                val_exact_match,
            });
        }
        self.finish(RunStatus::Done, started)
    }

    /// Writes the summary: the run is over (done, or diverged on its last finite checkpoint).
    fn finish(&self, status: RunStatus, started: Instant) -> anyhow::Result<Outcome> {
        match status {
            RunStatus::Diverged { step } => tracing::warn!(
                step,
                "diverged: non-finite loss; keeping the last finite checkpoint"
            ),
            RunStatus::Done => tracing::info!(steps = self.step, "done"),
        }
        let summary = self.summary(status, started);
        fsio::write_atomic(&self.run.summary(), &serde_json::to_vec_pretty(&summary)?)?;
        Ok(Outcome::Finished(summary))
    }

    /// One AdamW update on the batch of `step`; returns the batch loss before the update, left
    /// on the device (reading it back would wait for the device every step).
    fn train_step(&mut self, model: Gpt, step: u64) -> (Gpt, Tensor<1>) {
        let device = self.chosen.device.clone().autodiff();
        let batch: Vec<&Vec<u32>> = self
            .order
            .indices(step)
            .iter()
            .map(|&i| &self.data.train[i as usize])
            .collect();
        let (input, targets) = tensors(&batch, &self.data, &device);
        let logp = answer_log_probs(&model, input, &self.data);
        let loss = -logp.gather(2, targets.unsqueeze_dim(2)).mean();
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if self.spec.train.grad_clip > 0.0 {
            clip_global_norm(&model, &mut grads, self.spec.train.grad_clip);
        }
        let model = self.optim.step(self.spec.train.lr_at(step), model, grads);
        (model, loss.detach().inner())
    }

    /// Scores both splits and appends the rows (fsynced, non-finite values kept), then
    /// checkpoints if every loss and weight is finite: a record on disk always has its
    /// checkpoint at or before it, so a resume never loses or repeats one. `Err` is the
    /// divergence seen in the scores or weights (the rows are written, the checkpoint is not).
    fn evaluate_and_checkpoint(
        &self,
        model: &Gpt,
        started: Instant,
    ) -> anyhow::Result<Result<Option<f64>, RunStatus>> {
        let valid = model.valid();
        let tokens = self.step * (self.batch_size * self.spec.n_ctx()) as u64;
        let mut val_exact_match = None;
        let norms = weight_norms(&valid);
        let mut finite = norms["weight_norm"].is_finite();
        for (split, examples, cap) in [
            (
                Split::Train,
                &self.data.train,
                self.spec.eval.max_train_examples,
            ),
            (Split::Val, &self.data.val, self.spec.eval.max_val_examples),
        ] {
            let n = if cap == 0 {
                examples.len()
            } else {
                cap.min(examples.len())
            };
            let groups = self.data.breakdown.groups(split == Split::Train);
            let groups = &groups[..n.min(groups.len())];
            let mut metrics = evaluate(
                &valid,
                &examples[..n],
                groups,
                &self.data,
                &self.chosen.device,
            );
            finite &= metrics["loss"].is_finite();
            if split == Split::Train {
                metrics.extend(norms.clone());
            }
            if split == Split::Val {
                val_exact_match = metrics.get("exact_match").copied();
            }
            self.run.append_eval(&EvalRow {
                step: self.step,
                split,
                tokens,
                metrics,
            })?;
        }
        if !finite {
            return Ok(Err(RunStatus::Diverged { step: self.step }));
        }
        self.checkpoint(model, started)?;
        Ok(Ok(val_exact_match))
    }

    fn checkpoint(&self, model: &Gpt, started: Instant) -> anyhow::Result<()> {
        if self.run.checkpoints()?.first() == Some(&self.step) {
            return Ok(());
        }
        let dir = self.run.checkpoint_dir(self.step);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        model
            .clone()
            .save_file(dir.join("model.bpk"))
            .context("saving the model")?;
        self.optim
            .save(dir.join("optim.bpk"))
            .context("saving the optimizer")?;
        let state = CheckpointState {
            step: self.step,
            wall_seconds: self.wall_before + started.elapsed().as_secs_f64(),
            resumes: self.resumes,
        };
        fsio::write_atomic(&dir.join("state.json"), &serde_json::to_vec(&state)?)?;
        for file in ["model.bpk", "optim.bpk"] {
            std::fs::File::open(dir.join(file))?.sync_all()?;
        }
        fsio::sync_dir(&dir)?;
        self.run.publish_checkpoint(self.step)?;
        Ok(())
    }

    fn heartbeat(&self) -> anyhow::Result<()> {
        elab_job::Heartbeat::now(self.step).write(self.run)?;
        Ok(())
    }

    fn summary(&self, status: RunStatus, started: Instant) -> Summary {
        Summary {
            status,
            steps: self.step,
            wall_seconds: self.wall_before + started.elapsed().as_secs_f64(),
            backend: self.chosen.backend.to_string(),
            device: self.chosen.name.clone(),
            resumes: self.resumes,
        }
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
    let scratch =
        RunDir::new(std::env::temp_dir().join(format!("elab-bench-{}", std::process::id())));
    let (mut trainer, mut model) = Trainer::new(spec, &scratch, chosen)?;
    let mut losses = Vec::new();
    for step in 1..=warmup {
        let loss;
        (model, loss) = trainer.train_step(model, step);
        losses.push(loss);
    }
    let _ = read_back(&mut losses, warmup);
    let start = Instant::now();
    for step in warmup + 1..=warmup + steps {
        let loss;
        (model, loss) = trainer.train_step(model, step);
        losses.push(loss);
    }
    // As in training: one read-back at the end, which also waits for the device to finish.
    let finite = read_back(&mut losses, warmup + steps).is_ok();
    let seconds = start.elapsed().as_secs_f64() / steps as f64;
    anyhow::ensure!(finite, "loss diverged while benchmarking");
    Ok(seconds)
}

/// Input tokens `[n, n_ctx]` and answer targets `[n, answer_len]` for a batch of examples.
fn tensors(
    batch: &[&Vec<u32>],
    data: &Dataset,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let n_ctx = data.seq_len() - 1;
    let input: Vec<i64> = batch
        .iter()
        .flat_map(|s| s[..n_ctx].iter().map(|&t| t as i64))
        .collect();
    let targets: Vec<i64> = batch
        .iter()
        .flat_map(|s| s[data.prompt_len..].iter().map(|&t| t as i64))
        .collect();
    (
        int_tensor(input, batch.len(), n_ctx, device),
        int_tensor(targets, batch.len(), data.answer_len, device),
    )
}

/// A `[rows, cols]` integer tensor from row-major token ids.
fn int_tensor(values: Vec<i64>, rows: usize, cols: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// Log-softmax of the logits at the positions that predict the answer: `[n, answer_len, vocab]`.
fn answer_log_probs(model: &Gpt, input: Tensor<2, Int>, data: &Dataset) -> Tensor<3> {
    log_softmax(model.forward(input, data.prompt_len - 1), 2)
}

/// Teacher-forced and greedy-decoded scores of `examples` (see [`crate::metrics`]).
fn evaluate(
    model: &Gpt,
    examples: &[Vec<u32>],
    groups: &[u32],
    data: &Dataset,
    device: &Device,
) -> BTreeMap<String, f64> {
    let (p, answer_len, vocab) = (data.prompt_len, data.answer_len, data.vocab_size);
    let mut scorer = Scorer::default();
    let mut task_scorer = TaskScorer::new(&data.breakdown, groups);
    let n_ctx = data.seq_len() - 1;
    for chunk in examples.chunks(EVAL_BATCH) {
        let tokens: Vec<i64> = chunk
            .iter()
            .flat_map(|s| s[..n_ctx].iter().map(|&t| t as i64))
            .collect();
        let input = int_tensor(tokens.clone(), chunk.len(), n_ctx, device);
        let logp = answer_log_probs(model, input, data)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let targets: Vec<u32> = chunk.iter().flat_map(|s| s[p..].iter().copied()).collect();
        // Greedy decoding agrees with the teacher-forced argmax up to its first wrong token, so
        // an example whose teacher-forced argmaxes are all right decodes to the target, and one
        // with a wrong token is not an exact match either way. Only those need decoding, for
        // their edit distance.
        let mut greedy: Vec<u32> = logp.chunks(vocab).map(|row| argmax(row) as u32).collect();
        let wrong: Vec<usize> = (0..chunk.len())
            .filter(|&e| {
                let answer = e * answer_len..(e + 1) * answer_len;
                greedy[answer.clone()] != targets[answer]
            })
            .collect();
        decode_greedy(model, &tokens, &wrong, &mut greedy, data, device);
        scorer.add(&logp, vocab, &targets, &greedy, answer_len);
        task_scorer.add(&logp, vocab, &targets, answer_len);
    }
    let mut metrics = scorer.finish();
    metrics.extend(task_scorer.finish());
    metrics
}

/// Replaces answer tokens 1.. of the examples `rows` in `greedy` (`[n, answer_len]`, token 0
/// already the teacher-forced argmax) by greedy decoding: each token is predicted after writing
/// the earlier guesses into the input. The causal mask hides the stale targets further right.
fn decode_greedy(
    model: &Gpt,
    tokens: &[i64],
    rows: &[usize],
    greedy: &mut [u32],
    data: &Dataset,
    device: &Device,
) {
    let (p, answer_len, n_ctx) = (data.prompt_len, data.answer_len, data.seq_len() - 1);
    if rows.is_empty() || answer_len == 1 {
        return;
    }
    let mut input: Vec<i64> = rows
        .iter()
        .flat_map(|&e| tokens[e * n_ctx..(e + 1) * n_ctx].iter().copied())
        .collect();
    for j in 1..answer_len {
        for (r, &e) in rows.iter().enumerate() {
            input[r * n_ctx + p + j - 1] = greedy[e * answer_len + j - 1] as i64;
        }
        let next = model
            .forward(
                int_tensor(input.clone(), rows.len(), n_ctx, device),
                p - 1 + j,
            )
            .narrow(1, 0, 1)
            .argmax(2)
            .into_data()
            .convert::<i64>()
            .try_to_vec::<i64>()
            .unwrap();
        for (r, &e) in rows.iter().enumerate() {
            greedy[e * answer_len + j] = next[r] as u32;
        }
    }
}

/// Reads back the losses of the steps up to `step` (one wait for the device) and returns their
/// mean, or the divergence at the first non-finite one.
fn read_back(pending: &mut Vec<Tensor<1>>, step: u64) -> Result<f64, RunStatus> {
    if pending.is_empty() {
        return Ok(f64::NAN);
    }
    let n = pending.len();
    let losses = Tensor::cat(std::mem::take(pending), 0)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    match losses.iter().position(|l| !l.is_finite()) {
        Some(i) => Err(RunStatus::Diverged {
            step: step + 1 + i as u64 - n as u64,
        }),
        None => Ok(losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64),
    }
}

/// Loads a checkpoint directory written by [`Trainer::checkpoint`].
fn load_checkpoint(
    dir: &std::path::Path,
    model: Gpt,
    optim: ModuleOptimizer,
) -> anyhow::Result<(Gpt, ModuleOptimizer, CheckpointState)> {
    let state: CheckpointState = serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)
        .context("reading state.json")?;
    let model = model
        .try_load_file(dir.join("model.bpk"))
        .context("loading the checkpointed model")?;
    let optim = optim
        .load(dir.join("optim.bpk"))
        .context("loading the checkpointed optimizer")?;
    Ok((model, optim, state))
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

/// Forces every lazily initialized parameter to take its value now, in visiting order.
fn materialize(model: Gpt) -> Gpt {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
    model
}

/// Scales all gradients so that their global L2 norm is at most `max_norm` (burn's own
/// clipping works per tensor, which is not what the literature means). The factor stays on the
/// device (a factor of exactly 1 leaves a gradient bit for bit as it was): no read-back.
fn clip_global_norm(model: &Gpt, grads: &mut GradientsParams, max_norm: f64) {
    struct Scale<'g> {
        grads: &'g mut GradientsParams,
        factor: Tensor<1>,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let factor = self.factor.clone().reshape(Shape::new([1; D]));
                self.grads.register(param.id, g * factor);
            }
        }
    }
    let Some(total) = squared_norm(model, grads) else {
        return;
    };
    let factor = (total.sqrt().recip() * max_norm).clamp_max(1.0);
    model.visit(&mut Scale { grads, factor });
}

/// The L2 norm of all weights (`weight_norm`) and of each module (`weight_norm.wte`,
/// `weight_norm.blocks.0.attn`, ...): the progress measure of Nanda et al. 2023 and Omnigrok,
/// whose fall marks the cleanup that ends grokking. One read-back for all of them.
fn weight_norms(model: &Gpt) -> BTreeMap<String, f64> {
    #[derive(Default)]
    struct Norms {
        path: Vec<String>,
        sums: BTreeMap<String, Tensor<1>>,
    }
    impl ModuleVisitor for Norms {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            // `blocks.<i>.<attn|mlp|ln_1|ln_2>` inside the blocks, the field name elsewhere.
            let depth = if self.path[0] == "blocks" { 3 } else { 1 };
            let module = format!("weight_norm.{}", self.path[..depth].join("."));
            let s = param.val().powf_scalar(2.0).sum();
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
    let squares = Tensor::cat(norms.sums.into_values().collect(), 0)
        .into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .unwrap();
    let total = squares.iter().map(|&s| s as f64).sum::<f64>().sqrt();
    names
        .into_iter()
        .zip(squares.iter().map(|&s| (s as f64).sqrt()))
        .chain(std::iter::once(("weight_norm".to_string(), total)))
        .collect()
}

/// Sum of the squares of the gradients of `model`'s parameters, on the device; `None` when
/// there is none.
fn squared_norm(model: &Gpt, grads: &GradientsParams) -> Option<Tensor<1>> {
    struct SquaredNorm<'g> {
        grads: &'g GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredNorm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.powf_scalar(2.0).sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    let mut norm = SquaredNorm { grads, total: None };
    model.visit(&mut norm);
    norm.total
}

#[cfg(test)]
mod tests {
    use super::*;

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
