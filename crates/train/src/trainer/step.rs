//! The step loop: train, evaluate at the evaluation steps, stop on request, retire what diverges.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use elab_job::{Arch, JobSpec, Progress, RunDir, RunStatus, Summary, TrainSpec, eval_steps, fsio};
use elab_model::{Gpt, LanguageModel, MlpNet, pack};

use crate::backend::ChosenDevice;
use crate::optim::{Moments, PackedAdamW};

use super::batches::{answers, inputs, int_tensor};
use super::checkpoints::Loaded;
use super::measures::weight_norms;
use super::{HEARTBEAT_SECS, Member, Outcome, Trainer};

impl<'a, M: LanguageModel> Trainer<'a, M> {
    /// Stacks the jobs (all at `step`) into one pack.
    pub(super) fn new(group: Vec<Loaded<'a, M>>, chosen: ChosenDevice, step: u64) -> (Self, M) {
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

    pub(super) fn run(
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
            self.snapshot(&model, &fresh)?;
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
            let all = vec![true; self.members.len()];
            self.snapshot(&model, &all)?;
            if is_eval && !self.members.is_empty() {
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
    pub(super) fn not_finite(&self, value: impl Fn(usize) -> f64) -> Vec<(usize, RunStatus)> {
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
    pub(super) fn train_step(&mut self, model: M, step: u64) -> (M, Tensor<1>) {
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
    crate::on_compute_threads(|| time_steps_on::<M>(spec, chosen, warmup, steps))
}

fn time_steps_on<M: LanguageModel>(
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

/// Reads back the losses `[models]` of the steps up to `step` (one wait for the device), sets
/// each member's mean, and returns the members whose loss went non-finite, each diverged at
/// its first non-finite step.
pub(super) fn read_back(
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
}
