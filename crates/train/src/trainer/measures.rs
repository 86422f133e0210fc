//! Progress measures: what an evaluation reads from the weights (and from forward passes of
//! its own), beside the scores. Each [`Measure`] decides which members it applies to (by their
//! task), so a task brings its measures without the step loop knowing them.

use std::collections::BTreeMap;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use elab_model::{LanguageModel, pack};
use elab_tasks::{ModOp, TaskSpec};
use nalgebra::DMatrix;

use crate::fourier::{Pair, fourier_measures};
use crate::heads::{self, Layer};
use crate::snapshot;

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
    let measures: [&dyn Measure<M>; 3] = [&WeightNorms, &Fourier, &HeadScores];
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

/// Olsson et al.'s prefix-matching and copying scores of every head ([`crate::heads`]), for the
/// members that train the induction task: `heads.prefix_matching.<layer>.<head>`,
/// `heads.copying.<layer>.<head>` and `heads.induction`, the highest prefix-matching score
/// of a head whose copying score is positive (0 when none copies).
struct HeadScores;

impl<M: LanguageModel> Measure<M> for HeadScores {
    fn measure(
        &self,
        model: &M,
        members: &[Member],
        device: &Device,
    ) -> Vec<BTreeMap<String, f64>> {
        let mut out = vec![BTreeMap::new(); members.len()];
        let task = |m: &Member| match &m.spec.task {
            TaskSpec::Induction(t) => Some(t.clone()),
            _ => None,
        };
        let Some(first) = members.iter().find_map(task) else {
            return out;
        };
        let n_ctx = members[0].spec.n_ctx();
        let sequences: Vec<Vec<u32>> = members
            .iter()
            .flat_map(|m| {
                let vocab = task(m).map_or(first.vocab, |t| t.vocab);
                heads::repeated_tokens(vocab, vocab as u32, n_ctx, heads::SEQUENCES, m.spec.seed)
            })
            .collect();
        let t = sequences[0].len();
        let ids: Vec<i64> = sequences.iter().flatten().map(|&x| x as i64).collect();
        let idx = Tensor::<3, Int>::from_data(
            TensorData::new(ids, [members.len(), heads::SEQUENCES, t]),
            device,
        );
        let patterns: Vec<Vec<f32>> = model
            .attention_patterns(idx)
            .into_iter()
            .map(|p| p.into_data().convert::<f32>().try_to_vec::<f32>().unwrap())
            .collect();
        if patterns.is_empty() {
            return out;
        }
        let params = snapshot::parameters(model);
        // Model `k`'s `[rows, cols]` slice of a parameter, by name.
        let slice = |name: &str, k: usize, rows: usize, cols: usize| -> Option<DMatrix<f64>> {
            let p = params.iter().find(|p| p.name == name)?;
            let v = p.values[k * rows * cols..][..rows * cols]
                .iter()
                .map(|&x| x as f64);
            Some(DMatrix::from_row_iterator(rows, cols, v))
        };
        for (k, member) in members.iter().enumerate() {
            if task(member).is_none() {
                continue;
            }
            let n_head = member.spec.model.n_head;
            let (vocab, d) = (member.data.vocab_size, member.spec.model.d_model);
            let Some(embed) = slice("wte", k, vocab, d) else {
                continue;
            };
            let unembed = slice("lm_head.weight", k, d, vocab).unwrap_or_else(|| embed.transpose());
            let layers: Vec<Layer> = (0..patterns.len())
                .map(|l| Layer {
                    qkv: slice(&format!("blocks.{l}.attn.c_attn.weight"), k, d, 3 * d)
                        .expect("a GPT layer has c_attn"),
                    proj: slice(&format!("blocks.{l}.attn.c_proj.weight"), k, d, d)
                        .expect("a GPT layer has c_proj"),
                })
                .collect();
            let copying = heads::copying_scores(&embed, &unembed, &layers, n_head);
            let mut induction = 0.0f64;
            for (l, pattern) in patterns.iter().enumerate() {
                let own = &pattern[k * heads::SEQUENCES * n_head * t * t..]
                    [..heads::SEQUENCES * n_head * t * t];
                let prefix = heads::prefix_matching(own, heads::SEQUENCES, n_head, t);
                for h in 0..n_head {
                    out[k].insert(format!("heads.prefix_matching.{l}.{h}"), prefix[h]);
                    out[k].insert(format!("heads.copying.{l}.{h}"), copying[l][h]);
                    if copying[l][h] > 0.0 {
                        induction = induction.max(prefix[h]);
                    }
                }
            }
            out[k].insert("heads.induction".into(), induction);
        }
        out
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
