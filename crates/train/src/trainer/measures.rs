//! Progress measures: what an evaluation reads from the weights (and from forward passes of
//! its own), beside the scores. Each [`Measure`] decides which members it applies to (by their
//! task), so a task brings its measures without the step loop knowing them.

use std::collections::BTreeMap;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use elab_model::{LanguageModel, pack};
use elab_tasks::{ModOp, TaskSpec};

use crate::fourier::{Pair, fourier_measures};

use super::Member;
use super::evaluation::answer_logits;

/// A progress measure of a pack: each member's values (named `<measure>...`), empty for a
/// member it does not apply to.
trait Measure<M: LanguageModel> {
    fn measure(&self, model: &M, members: &[Member], device: &Device)
    -> Vec<BTreeMap<String, f64>>;
}

/// Every measure of every member, one map per member.
pub(super) fn measure_all<M: LanguageModel>(
    model: &M,
    members: &[Member],
    device: &Device,
) -> Vec<BTreeMap<String, f64>> {
    let measures: [&dyn Measure<M>; 2] = [&WeightNorms, &Fourier];
    let mut out = vec![BTreeMap::new(); members.len()];
    for measure in measures {
        for (k, values) in measure
            .measure(model, members, device)
            .into_iter()
            .enumerate()
        {
            out[k].extend(values);
        }
    }
    out
}

/// [`weight_norms`], for every network.
struct WeightNorms;

impl<M: LanguageModel> Measure<M> for WeightNorms {
    fn measure(&self, model: &M, _: &[Member], _: &Device) -> Vec<BTreeMap<String, f64>> {
        weight_norms(model)
    }
}

/// Nanda et al.'s Fourier progress measures ([`crate::fourier`]).
struct Fourier;

impl<M: LanguageModel> Measure<M> for Fourier {
    fn measure(
        &self,
        model: &M,
        members: &[Member],
        device: &Device,
    ) -> Vec<BTreeMap<String, f64>> {
        let sign = |member: &Member| match &member.spec.task {
            TaskSpec::Modular(t) if t.op == ModOp::Add => Some((t.p as usize, 1)),
            TaskSpec::Modular(t) if t.op == ModOp::Sub => Some((t.p as usize, -1)),
            _ => None,
        };
        let mut out = vec![BTreeMap::new(); members.len()];
        if members.iter().all(|m| sign(m).is_none()) {
            return out;
        }
        let Some(embedding) = model.token_embedding() else {
            return out;
        };
        let data = &members[0].data;
        let equations: Vec<Vec<&[u32]>> = members
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
        let logits = answer_logits(model, &equations, data, device);
        let d = embedding.dims()[2];
        let embeddings = embedding
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        let vocab = data.vocab_size;
        for (k, member) in members.iter().enumerate() {
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
}

/// Each model's L2 norm of all weights (`weight_norm`) and of each module (`weight_norm.wte`,
/// `weight_norm.blocks.0.attn`, ...): the progress measure of Nanda et al. 2023 and Omnigrok,
/// whose fall marks the cleanup that ends grokking. One read-back for all of them.
pub(super) fn weight_norms<M: LanguageModel>(model: &M) -> Vec<BTreeMap<String, f64>> {
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
