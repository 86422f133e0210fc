//! Synthetic tasks, deterministic from a seed.
//!
//! Every task produces fixed-length token sequences `prompt ++ answer`. A model reads the
//! sequence left to right; loss and accuracy count only the answer tokens. Each task lives in
//! its own module and is reached through [`TaskSpec`], so a new task (sparse parity, copy,
//! induction) is one more file and one more enum variant.

mod digits;
mod induction;
mod modular;
mod rng;
mod sparse_parity;

pub use digits::{DigitOp, DigitsTask};
pub use induction::InductionTask;
pub use modular::{ModOp, ModularTask};
pub use rng::SplitMix64;
pub use sparse_parity::{Control, SparseParityTask};

use serde::{Deserialize, Serialize};

/// The task section of a job: which task, with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskSpec {
    /// `x op y = c (mod p)`, all equations enumerated and split by `train_fraction`.
    Modular(ModularTask),
    /// n-digit addition or multiplication with a zero-padded (optionally reversed) answer.
    Digits(DigitsTask),
    /// Multitask sparse parity (Michaud et al. 2023): a one-hot control prefix picks one of
    /// n_tasks subtasks, each the parity of its own k of n bits; subtasks are Zipf-frequent.
    SparseParity(SparseParityTask),
    /// Random tokens whose last segment repeats an earlier one (Olsson et al. 2022).
    Induction(InductionTask),
}

/// A generated dataset: every example is `prompt_len + answer_len` tokens long.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub vocab_size: usize,
    pub prompt_len: usize,
    pub answer_len: usize,
    pub train: Vec<Vec<u32>>,
    pub val: Vec<Vec<u32>>,
    /// What the task-specific scores need to know beyond the tokens.
    pub breakdown: Breakdown,
}

/// The structure a task's own metrics are computed from (see `elab-train`'s task metrics).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Breakdown {
    /// Only the generic metrics.
    #[default]
    None,
    /// Each example belongs to one of `count` groups (sparse parity's subtask), given per
    /// example, parallel to `Dataset::train` and `Dataset::val`: accuracy and loss per group.
    Groups {
        count: usize,
        train: Vec<u32>,
        val: Vec<u32>,
    },
    /// Answer positions with a fixed role (induction): the in-context-learning score is the loss
    /// at `late` minus the loss at `early`; `repeat` are the answer positions a model can only
    /// predict by copying from earlier in the context.
    Positions {
        early: usize,
        late: usize,
        repeat: std::ops::Range<usize>,
    },
}

impl Breakdown {
    /// Per-example groups of one split (empty when the task has none).
    pub fn groups(&self, train: bool) -> &[u32] {
        match self {
            Breakdown::Groups { train: t, .. } if train => t,
            Breakdown::Groups { val, .. } => val,
            _ => &[],
        }
    }
}

impl Dataset {
    /// Tokens per example (the model's context length is one less: it never reads the last).
    pub fn seq_len(&self) -> usize {
        self.prompt_len + self.answer_len
    }
}

impl TaskSpec {
    /// Checks the parameters, returning `(field, what is allowed)` on the first bad one.
    pub fn validate(&self) -> Result<(), (String, String)> {
        match self {
            TaskSpec::Modular(t) => t.validate(),
            TaskSpec::Digits(t) => t.validate(),
            TaskSpec::SparseParity(t) => t.validate(),
            TaskSpec::Induction(t) => t.validate(),
        }
    }

    /// Builds the train and validation sets. The split depends only on the task and `seed`.
    pub fn generate(&self, seed: u64) -> Dataset {
        match self {
            TaskSpec::Modular(t) => t.generate(seed),
            TaskSpec::Digits(t) => t.generate(seed),
            TaskSpec::SparseParity(t) => t.generate(seed),
            TaskSpec::Induction(t) => t.generate(seed),
        }
    }

    /// Vocabulary size, prompt and answer lengths, known without generating the data.
    pub fn shape(&self) -> (usize, usize, usize) {
        match self {
            TaskSpec::Modular(t) => t.shape(),
            TaskSpec::Digits(t) => t.shape(),
            TaskSpec::SparseParity(t) => t.shape(),
            TaskSpec::Induction(t) => t.shape(),
        }
    }

    /// Number of training examples, known without generating the data.
    pub fn train_len(&self) -> usize {
        match self {
            TaskSpec::Modular(t) => t.train_len(),
            TaskSpec::Digits(t) => t.train_size,
            TaskSpec::SparseParity(t) => t.train_size,
            TaskSpec::Induction(t) => t.train_size,
        }
    }

    /// A short human name: `mod97_add`, `add3r`, `parity6x16k3`, `induct32v32s8`.
    pub fn label(&self) -> String {
        match self {
            TaskSpec::Modular(t) => t.label(),
            TaskSpec::Digits(t) => t.label(),
            TaskSpec::SparseParity(t) => t.label(),
            TaskSpec::Induction(t) => t.label(),
        }
    }
}

/// Fisher–Yates shuffle driven by [`SplitMix64`].
pub fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}
