//! A run's state on disk: saving a checkpoint, restoring from one (falling back past a
//! corrupt one), and rebuilding the pointer.

use std::time::Instant;

use anyhow::{Context, bail};
use burn::prelude::*;
use elab_job::{Arch, JobSpec, RunDir, fsio};
use elab_model::{Gpt, LanguageModel, MlpNet, pack};
use serde::{Deserialize, Serialize};

use crate::backend::ChosenDevice;
use crate::optim::Moments;

use super::batches::{BatchOrder, batch_size};
use super::{Member, Trainer, claim};
use crate::snapshot;

/// Saved beside the weights and optimizer state in each checkpoint.
#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: u64,
    wall_seconds: f64,
    resumes: u32,
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

/// A job restored to where its checkpoint left it (or initialized from its seed).
pub(super) struct Loaded<'a, M: LanguageModel> {
    pub(super) member: Member<'a>,
    pub(super) model: M,
    pub(super) moments: Moments<M>,
    pub(super) step: u64,
}

impl<'a, M: LanguageModel> Loaded<'a, M> {
    pub(super) fn new(
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
            snapshot_steps: spec.snapshot_steps(),
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

impl<'a, M: LanguageModel> Trainer<'a, M> {
    /// Writes member `k`'s slice of the pack (weights and AdamW moments) as its checkpoint,
    /// unless this process already loaded or wrote the checkpoint of this step.
    pub(super) fn checkpoint(
        &mut self,
        k: usize,
        model: &M,
        started: Instant,
    ) -> anyhow::Result<()> {
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
}

impl<M: LanguageModel> Trainer<'_, M> {
    /// Writes this step's snapshot (`train.snapshots`) of each member `k` with `write[k]` that
    /// keeps one: its slice of the pack, as if it trained alone. A run that resumes from before
    /// a snapshot writes it again, with the same weights.
    pub(super) fn snapshot(&self, model: &M, write: &[bool]) -> anyhow::Result<()> {
        let keep: Vec<usize> = (0..self.members.len())
            .filter(|&k| {
                write[k]
                    && self.members[k]
                        .snapshot_steps
                        .binary_search(&self.step)
                        .is_ok()
            })
            .collect();
        if keep.is_empty() {
            return Ok(());
        }
        let valid = model.valid();
        for k in keep {
            let member = &self.members[k];
            let manifest = snapshot::Manifest::new(member.spec, self.step);
            snapshot::write(
                &pack::select(&valid, &[k]),
                &member.run.snapshot(self.step),
                &manifest,
            )?;
        }
        Ok(())
    }
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
