//! What an evaluation computes: teacher-forced and greedy-decoded scores on both splits.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use elab_job::{EvalRow, RunStatus, Split};
use elab_model::LanguageModel;
use elab_tasks::{Breakdown, Dataset};

use crate::metrics::{Scorer, argmax};
use crate::task_metrics::TaskScorer;

use super::Trainer;
use super::batches::{inputs, int_tensor};
use super::measures::measure_all;

/// Examples per model per forward pass during evaluation.
const EVAL_BATCH: usize = 1024;

impl<'a, M: LanguageModel> Trainer<'a, M> {
    /// Scores both splits of every member `k` with `write[k]` and appends its rows (fsynced,
    /// non-finite values kept), then checkpoints it if every loss and weight is finite: a record
    /// on disk always has its checkpoint at or before it, so a resume never loses or repeats
    /// one. Returns the members whose scores or weights diverged (their rows are written, their
    /// checkpoint is not).
    pub(super) fn evaluate_and_checkpoint(
        &mut self,
        model: &M,
        started: Instant,
        write: &[bool],
    ) -> anyhow::Result<Vec<(usize, RunStatus)>> {
        let valid = model.valid();
        let mut metrics = measure_all(&valid, &self.members, &self.chosen.device);
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
pub(super) fn answer_logits<M: LanguageModel>(
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
