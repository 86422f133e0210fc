//! The training loop: AdamW with warmup and schedule, log-spaced evaluation, step-level
//! checkpoints, exact resume, divergence detection and clean stop on a signal.
//!
//! Exact resume rests on three facts: the batch of step t is a pure function of (seed, t);
//! the learning rate is a pure function of t; a checkpoint holds the weights, the AdamW
//! moments and t. So training N steps, stopping and resuming for N more replays exactly
//! the updates of 2N straight steps (bitwise on the Flex CPU backend).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::{ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use elab_job::{EvalRow, JobSpec, RunDir, RunStatus, Split, Summary, eval_steps, fsio};
use elab_model::{Gpt, GptConfig};
use elab_tasks::{Dataset, SplitMix64, shuffle};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, ChosenDevice, choose_device};
use crate::metrics::{Scorer, argmax};

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

/// What a live run reports after each step (the CLI prints it as a JSON line for the sweep).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub step: u64,
    pub steps: u64,
    pub loss: f64,
    /// Validation exact match at the last evaluation.
    pub val_exact_match: Option<f64>,
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
        Err(_) => Ok(fsio::write_atomic(&run.spec(), spec.to_toml().as_bytes())?),
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
        let mut optim = AdamWConfig::new()
            .with_beta_1(t.beta1 as f32)
            .with_beta_2(t.beta2 as f32)
            .with_epsilon(t.eps as f32)
            .with_weight_decay(t.weight_decay as f32)
            .init();
        let (mut step, mut wall_before, mut resumes) = (0, 0.0, 0);
        match run.checkpoint_step() {
            Some(saved) => {
                let dir = run.checkpoint_dir(saved);
                let state: CheckpointState =
                    serde_json::from_slice(&std::fs::read(dir.join("state.json"))?)?;
                model = model
                    .try_load_file(dir.join("model.bpk"))
                    .context("loading the checkpointed model")?;
                optim = optim
                    .load(dir.join("optim.bpk"))
                    .context("loading the checkpointed optimizer")?;
                (step, wall_before, resumes) = (state.step, state.wall_seconds, state.resumes + 1);
                run.truncate_evals_after(step)?;
                tracing::info!(step, "resumed from checkpoint");
            }
            None => {
                // Records without a checkpoint come from an attempt that died before its
                // first one: start over cleanly.
                let _ = std::fs::remove_file(run.evals());
            }
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
            batch_size,
            order,
        };
        Ok((trainer, model))
    }

    fn run(&mut self, mut model: Gpt, opts: RunOptions) -> anyhow::Result<Outcome> {
        let steps = self.spec.train.steps;
        let evals = eval_steps(steps, self.spec.eval.every);
        let started = Instant::now();
        let mut last_heartbeat = f64::NEG_INFINITY;
        let mut val_exact_match = None;
        if self.step == 0 {
            val_exact_match = self.evaluate_and_checkpoint(&model, started)?;
        }
        while self.step < steps {
            if opts.stop.load(Ordering::SeqCst) {
                self.checkpoint(&model, started)?;
                tracing::info!(step = self.step, "stopped on request; checkpointed");
                return Ok(Outcome::Interrupted { step: self.step });
            }
            let step = self.step + 1;
            let loss;
            (model, loss) = self.train_step(model, step);
            if !loss.is_finite() {
                tracing::warn!(
                    step,
                    loss,
                    "diverged: non-finite loss; keeping the last checkpoint"
                );
                let summary = self.summary(RunStatus::Diverged { step }, started);
                fsio::write_atomic(&self.run.summary(), &serde_json::to_vec_pretty(&summary)?)?;
                return Ok(Outcome::Finished(summary));
            }
            self.step = step;
            if evals.binary_search(&step).is_ok() {
                val_exact_match = self.evaluate_and_checkpoint(&model, started)?;
            }
            let elapsed = started.elapsed().as_secs_f64();
            if elapsed - last_heartbeat >= HEARTBEAT_SECS {
                last_heartbeat = elapsed;
                self.heartbeat()?;
            }
            (opts.on_progress)(&Progress {
                step,
                steps,
                loss,
                val_exact_match,
            });
        }
        let summary = self.summary(RunStatus::Done, started);
        fsio::write_atomic(&self.run.summary(), &serde_json::to_vec_pretty(&summary)?)?;
        tracing::info!(steps, wall_seconds = summary.wall_seconds, "done");
        Ok(Outcome::Finished(summary))
    }

    /// One AdamW update on the batch of `step`; returns the batch loss before the update.
    fn train_step(&mut self, model: Gpt, step: u64) -> (Gpt, f64) {
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
        let value = loss.clone().into_scalar::<f32>() as f64;
        if !value.is_finite() {
            return (model, value);
        }
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if self.spec.train.grad_clip > 0.0 {
            clip_global_norm(&model, &mut grads, self.spec.train.grad_clip);
        }
        let model = self.optim.step(self.spec.train.lr_at(step), model, grads);
        (model, value)
    }

    /// Scores both splits, appends the rows (fsynced), then checkpoints: a record on disk
    /// always has its checkpoint at or before it, so a resume never loses or repeats one.
    fn evaluate_and_checkpoint(
        &self,
        model: &Gpt,
        started: Instant,
    ) -> anyhow::Result<Option<f64>> {
        let valid = model.valid();
        let tokens = self.step * (self.batch_size * self.spec.n_ctx()) as u64;
        let mut val_exact_match = None;
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
            let metrics = evaluate(&valid, &examples[..n], &self.data, &self.chosen.device);
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
        self.checkpoint(model, started)?;
        Ok(val_exact_match)
    }

    fn checkpoint(&self, model: &Gpt, started: Instant) -> anyhow::Result<()> {
        if self.run.checkpoint_step() == Some(self.step) {
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
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64();
        let beat =
            serde_json::json!({"pid": std::process::id(), "step": self.step, "unix_time": now});
        fsio::write_atomic(&self.run.heartbeat(), beat.to_string().as_bytes())?;
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
    let mut loss = 0.0;
    for step in 1..=warmup {
        (model, loss) = trainer.train_step(model, step);
    }
    let start = Instant::now();
    for step in warmup + 1..=warmup + steps {
        (model, loss) = trainer.train_step(model, step);
    }
    // train_step reads the loss back each step, so the device has finished by now.
    anyhow::ensure!(loss.is_finite(), "loss diverged while benchmarking");
    Ok(start.elapsed().as_secs_f64() / steps as f64)
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
    let logits = model.forward(input);
    log_softmax(logits.narrow(1, data.prompt_len - 1, data.answer_len), 2)
}

/// Teacher-forced and greedy-decoded scores of `examples` (see [`crate::metrics`]).
fn evaluate(
    model: &Gpt,
    examples: &[Vec<u32>],
    data: &Dataset,
    device: &Device,
) -> BTreeMap<String, f64> {
    let (p, answer_len, vocab) = (data.prompt_len, data.answer_len, data.vocab_size);
    let mut scorer = Scorer::default();
    let n_ctx = data.seq_len() - 1;
    for chunk in examples.chunks(EVAL_BATCH) {
        let mut tokens: Vec<i64> = chunk
            .iter()
            .flat_map(|s| s[..n_ctx].iter().map(|&t| t as i64))
            .collect();
        let input = int_tensor(tokens.clone(), chunk.len(), n_ctx, device);
        let logp = answer_log_probs(model, input, data)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let targets: Vec<u32> = chunk.iter().flat_map(|s| s[p..].iter().copied()).collect();
        // Greedy decoding: the first answer token is the teacher-forced argmax; each later one
        // is predicted after writing the earlier guesses into the input. The causal mask makes
        // the stale target tokens further right invisible.
        let mut greedy = vec![0u32; targets.len()];
        for (i, g) in greedy.iter_mut().enumerate().step_by(answer_len) {
            *g = argmax(&logp[i * vocab..(i + 1) * vocab]) as u32;
        }
        for j in 1..answer_len {
            for e in 0..chunk.len() {
                tokens[e * n_ctx + p + j - 1] = greedy[e * answer_len + j - 1] as i64;
            }
            let input = int_tensor(tokens.clone(), chunk.len(), n_ctx, device);
            let next = model
                .forward(input)
                .narrow(1, p - 1 + j, 1)
                .argmax(2)
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap();
            for (e, t) in next.into_iter().enumerate() {
                greedy[e * answer_len + j] = t as u32;
            }
        }
        scorer.add(&logp, vocab, &targets, &greedy, answer_len);
    }
    scorer.finish()
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
/// clipping works per tensor, which is not what the literature means).
fn clip_global_norm(model: &Gpt, grads: &mut GradientsParams, max_norm: f64) {
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
    struct Scale<'g> {
        grads: &'g mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g * self.factor);
            }
        }
    }
    let mut norm = SquaredNorm { grads, total: None };
    model.visit(&mut norm);
    let Some(total) = norm.total else { return };
    let norm = (total.into_scalar::<f32>() as f64).sqrt();
    if norm > max_norm {
        model.visit(&mut Scale {
            grads,
            factor: max_norm / norm,
        });
    }
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
