use std::path::Path;

use elab_tasks::TaskSpec;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::SpecError;

/// One training run, fully resolved. Every field changes the result; nothing else is here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Seeds the data split, the batch order and the initial weights.
    #[serde(default)]
    pub seed: u64,
    pub task: TaskSpec,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub train: TrainSpec,
    #[serde(default)]
    pub eval: EvalSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Gelu,
}

/// Which network maps the tokens to logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The GPT-style decoder-only transformer.
    #[default]
    Gpt,
    /// A multilayer perceptron on the one-hot context (Michaud et al. 2023's network for sparse
    /// parity): `n_layer` hidden layers of `d_model` units; it has no attention, LayerNorm or
    /// embeddings, so `n_head` must be 1 and `d_mlp`, `layer_norm`, `tied_embeddings` and
    /// `attn_bias` do not apply.
    Mlp,
}

fn is_default_arch(a: &Arch) -> bool {
    *a == Arch::Gpt
}

/// How the weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// Embeddings N(0, 0.02) as GPT-2; linear layers burn's default, uniform with bound
    /// 1/sqrt(fan_in) (as PyTorch's `nn.Linear`).
    #[default]
    Gpt2,
    /// Nanda et al. 2023's code: every matrix N(0, 1/d_model) (embeddings included), the
    /// unembedding N(0, 1/vocab), every bias zero.
    Nanda,
}

/// The network (see `elab-model`) and its shape. `arch` and the recipe fields after the shape are
/// left out of the job id at their defaults, so that ids from before they existed stay valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ModelFile")]
pub struct ModelSpec {
    #[serde(skip_serializing_if = "is_default_arch")]
    pub arch: Arch,
    pub n_layer: usize,
    pub d_model: usize,
    pub n_head: usize,
    /// Default 4 * d_model.
    pub d_mlp: usize,
    pub activation: Activation,
    /// Pre-LN blocks and a final norm; `false` drops every LayerNorm (Nanda et al. 2023).
    pub layer_norm: bool,
    /// Unembedding shares the token-embedding matrix.
    pub tied_embeddings: bool,
    #[serde(skip_serializing_if = "is_default_init")]
    pub init: Init,
    /// Every initial weight is multiplied by this (Omnigrok's alpha: the initial weight norm is
    /// a main knob of the grokking delay).
    #[serde(skip_serializing_if = "is_one")]
    pub init_scale: f64,
    /// Biases in the attention projections (Nanda et al. 2023 have none).
    #[serde(skip_serializing_if = "is_true")]
    pub attn_bias: bool,
}

fn is_default_init(init: &Init) -> bool {
    *init == Init::default()
}
fn is_one(x: &f64) -> bool {
    *x == 1.0
}
fn is_true(b: &bool) -> bool {
    *b
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelFile::default().into()
    }
}

impl ModelSpec {
    /// The shape fields: what a size of a sweep's ladder sets (see `elab-sweep`).
    pub const SHAPE_FIELDS: [&'static str; 4] = ["n_layer", "d_model", "n_head", "d_mlp"];

    /// `model.n_layer`, `model.d_model`, `model.n_head` or `model.d_mlp`.
    pub fn is_shape_key(dotted: &str) -> bool {
        dotted
            .strip_prefix("model.")
            .is_some_and(|f| Self::SHAPE_FIELDS.contains(&f))
    }
}

/// `[model]` as written: `d_mlp` may be left out, and then is 4 * d_model; `n_head` too, and
/// then is 4 (1 for an MLP, which has no heads).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ModelFile {
    arch: Arch,
    n_layer: usize,
    d_model: usize,
    n_head: Option<usize>,
    d_mlp: Option<usize>,
    activation: Activation,
    layer_norm: bool,
    tied_embeddings: bool,
    init: Init,
    init_scale: f64,
    attn_bias: bool,
}

impl Default for ModelFile {
    fn default() -> Self {
        Self {
            arch: Arch::Gpt,
            n_layer: 1,
            d_model: 128,
            n_head: None,
            d_mlp: None,
            activation: Activation::Relu,
            layer_norm: true,
            tied_embeddings: false,
            init: Init::Gpt2,
            init_scale: 1.0,
            attn_bias: true,
        }
    }
}

impl From<ModelFile> for ModelSpec {
    fn from(m: ModelFile) -> Self {
        Self {
            arch: m.arch,
            n_layer: m.n_layer,
            d_model: m.d_model,
            n_head: m.n_head.unwrap_or(match m.arch {
                Arch::Gpt => 4,
                Arch::Mlp => 1,
            }),
            d_mlp: m.d_mlp.unwrap_or(4 * m.d_model),
            activation: m.activation,
            layer_norm: m.layer_norm,
            tied_embeddings: m.tied_embeddings,
            init: m.init,
            init_scale: m.init_scale,
            attn_bias: m.attn_bias,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// Linear warmup, then constant.
    Constant,
    /// Linear warmup, then cosine decay to `min_lr_ratio * lr` at the last step.
    Cosine,
}

/// The parameters AdamW's weight decay applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecayOn {
    /// Every parameter (PyTorch's `AdamW(model.parameters())`, Nanda et al.'s code).
    #[default]
    All,
    /// The weight matrices of linear layers only: not embeddings, biases or LayerNorm gains
    /// and shifts (the usual exclusion in language-model training).
    Matrices,
}

fn is_default_decay(d: &DecayOn) -> bool {
    *d == DecayOn::All
}

/// AdamW and the learning-rate schedule. Defaults follow Power et al. 2022.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    /// Optimizer updates.
    pub steps: u64,
    /// Examples per update; 0 means the whole training set (full batch).
    pub batch_size: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Which parameters weight decay shrinks. Left out of the job id at its default, so that
    /// ids from before it existed stay valid.
    #[serde(skip_serializing_if = "is_default_decay")]
    pub weight_decay_on: DecayOn,
    pub warmup_steps: u64,
    pub schedule: Schedule,
    pub min_lr_ratio: f64,
    /// Global gradient-norm clip; 0 disables it.
    pub grad_clip: f64,
    /// Train on a cross-entropy that keeps its precision when the answer's probability nears 1
    /// (see `elab-train`), as Nanda et al.'s float64 log-softmax does. Left out of the job id
    /// when false.
    #[serde(skip_serializing_if = "is_false")]
    pub stable_loss: bool,
    /// The weights kept along training, in safetensors (see [`Snapshots`]). Left out of the job
    /// id at `none`.
    #[serde(skip_serializing_if = "Snapshots::is_none")]
    pub snapshots: Snapshots,
}

/// When a run keeps its weights along training (`[train] snapshots`), beside its checkpoints
/// and never rotated away: the weights a researcher reads after the fact (Fourier components
/// of an embedding, attention patterns), as Pythia keeps 154 checkpoints per model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Snapshots {
    /// None (the default): only the rotating checkpoints that resume uses.
    #[default]
    None,
    /// At every evaluation step: 0, the powers of two, every `eval.every` and the last step
    /// (log-spaced early, as Pythia's, and aligned with the records).
    Log,
    /// At step 0, every K steps and the last step.
    Every(u64),
}

impl Snapshots {
    pub fn is_none(&self) -> bool {
        *self == Snapshots::None
    }
}

impl TryFrom<String> for Snapshots {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let every = text.strip_prefix("every:").map(|k| k.trim().parse::<u64>());
        match (text.as_str(), every) {
            ("none", _) => Ok(Snapshots::None),
            ("log", _) => Ok(Snapshots::Log),
            (_, Some(Ok(k))) if k >= 1 => Ok(Snapshots::Every(k)),
            _ => Err(format!(
                "snapshots must be \"none\", \"log\" or \"every:K\" with K a whole number >= 1, got {text:?}"
            )),
        }
    }
}

impl From<Snapshots> for String {
    fn from(s: Snapshots) -> String {
        match s {
            Snapshots::None => "none".into(),
            Snapshots::Log => "log".into(),
            Snapshots::Every(k) => format!("every:{k}"),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for TrainSpec {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 512,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 1.0,
            weight_decay_on: DecayOn::All,
            warmup_steps: 10,
            schedule: Schedule::Constant,
            min_lr_ratio: 0.1,
            grad_clip: 0.0,
            stable_loss: false,
            snapshots: Snapshots::None,
        }
    }
}

impl TrainSpec {
    /// Learning rate for update number `step` (1-based): linear warmup, then the schedule.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step <= self.warmup_steps {
            return self.lr * step as f64 / self.warmup_steps as f64;
        }
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Cosine => {
                let span = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
                let progress = (step - self.warmup_steps) as f64 / span;
                let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos());
                self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
            }
        }
    }
}

/// When and on what the run is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalSpec {
    /// Evaluate every `every` steps, besides steps 0, 1, 2, 4, 8, ... and the last.
    pub every: u64,
    /// Training examples scored at each eval (the first N of the training set); 0 = all.
    pub max_train_examples: usize,
    /// Validation examples scored at each eval; 0 = all.
    pub max_val_examples: usize,
}

impl Default for EvalSpec {
    fn default() -> Self {
        Self {
            every: 500,
            max_train_examples: 2000,
            max_val_examples: 0,
        }
    }
}

/// Whether `text` has the form of a job id ([`JobSpec::id`]): 12 lowercase hex digits. Ids
/// name directories and reach Slurm scripts, so anything else is refused where they are read.
pub fn is_job_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A generous bound on a snapshot's header (its tensors' names, shapes and offsets as JSON, and
/// the manifest).
const SNAPSHOT_HEADER_BYTES: u64 = 8192;

/// Steps at which a run of `steps` updates is evaluated: 0, powers of two, every `every`, last.
pub fn eval_steps(steps: u64, every: u64) -> Vec<u64> {
    let mut out: Vec<u64> = std::iter::once(0)
        .chain(std::iter::successors(Some(1u64), |s| s.checked_mul(2)).take_while(|&s| s <= steps))
        .chain((every..=steps).step_by(every.max(1) as usize))
        .chain(std::iter::once(steps))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

impl JobSpec {
    /// Parses and validates a job file; errors name the file, line and field.
    pub fn from_file(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SpecError::new("", format!("cannot read job file: {e}")).in_file(path))?;
        Self::from_toml(&text).map_err(|e| e.in_file(path))
    }

    pub fn from_toml(text: &str) -> Result<Self, SpecError> {
        let spec: JobSpec = toml::from_str(text).map_err(|e| SpecError::from_toml(&e, text))?;
        spec.validate()?;
        Ok(spec)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a job spec always serializes")
    }

    /// Rejects impossible shapes and settings before any training starts.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.task
            .validate()
            .map_err(|(field, allowed)| SpecError::new(field, format!("must be {allowed}")))?;
        let m = &self.model;
        let positive = [
            ("model.n_layer", m.n_layer),
            ("model.d_model", m.d_model),
            ("model.n_head", m.n_head),
            ("model.d_mlp", m.d_mlp),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(SpecError::new(field, "must be a positive integer, got 0"));
            }
        }
        if !(m.init_scale.is_finite() && m.init_scale > 0.0) {
            return Err(SpecError::new(
                "model.init_scale",
                format!("must be a positive number, got {}", m.init_scale),
            ));
        }
        if m.arch == Arch::Mlp && m.n_head != 1 {
            return Err(SpecError::new(
                "model.n_head",
                format!(
                    "must be 1 with model.arch = \"mlp\" (an MLP has no attention heads), got {}",
                    m.n_head
                ),
            ));
        }
        if !m.d_model.is_multiple_of(m.n_head) {
            return Err(SpecError::new(
                "model.n_head",
                format!(
                    "must divide model.d_model = {} (got n_head = {})",
                    m.d_model, m.n_head
                ),
            ));
        }
        let t = &self.train;
        if t.steps == 0 {
            return Err(SpecError::new("train.steps", "must be at least 1, got 0"));
        }
        let ranges: [(&str, f64, bool); 6] = [
            ("train.lr", t.lr, t.lr > 0.0 && t.lr.is_finite()),
            ("train.beta1", t.beta1, (0.0..1.0).contains(&t.beta1)),
            ("train.beta2", t.beta2, (0.0..1.0).contains(&t.beta2)),
            ("train.eps", t.eps, t.eps > 0.0 && t.eps < 1.0),
            (
                "train.weight_decay",
                t.weight_decay,
                (0.0..=100.0).contains(&t.weight_decay),
            ),
            (
                "train.grad_clip",
                t.grad_clip,
                t.grad_clip >= 0.0 && t.grad_clip.is_finite(),
            ),
        ];
        let allowed = |field: &str| match field {
            "train.lr" => "a positive finite number",
            "train.beta1" | "train.beta2" => "a number in [0, 1)",
            "train.eps" => "a number in (0, 1)",
            "train.weight_decay" => "a number in [0, 100]",
            _ => "a finite number >= 0 (0 disables clipping)",
        };
        for (field, v, ok) in ranges {
            if !ok {
                return Err(SpecError::new(
                    field,
                    format!("must be {}, got {v}", allowed(field)),
                ));
            }
        }
        if !(0.0..=1.0).contains(&t.min_lr_ratio) {
            return Err(SpecError::new(
                "train.min_lr_ratio",
                format!("must be a number in [0, 1], got {}", t.min_lr_ratio),
            ));
        }
        if self.eval.every == 0 {
            return Err(SpecError::new("eval.every", "must be at least 1, got 0"));
        }
        Ok(())
    }

    /// The job id: a hash of the canonical resolved spec (12 hex digits, see [`is_job_id`]).
    pub fn id(&self) -> String {
        self.sha256()[..12].to_string()
    }

    /// The SHA-256 of the canonical resolved spec, in hex: the job id is its first 12 digits.
    pub fn sha256(&self) -> String {
        let canonical = serde_json::to_string(self).expect("a job spec always serializes");
        let digest = Sha256::digest(canonical.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Jobs with equal keys can train as one pack (`elab-model`'s model axis): the same model
    /// shape and token layout, batch size, number of steps and evaluation steps (and the loss
    /// formula). Seeds, data
    /// splits, learning rates, schedules, weight decay, betas, clipping and evaluation caps may
    /// differ.
    pub fn pack_key(&self) -> String {
        let batch = match self.train.batch_size {
            0 => self.task.train_len(),
            b => b.min(self.task.train_len()),
        };
        let key = serde_json::json!({
            "model": self.model,
            "tokens": self.task.shape(),
            "batch": batch,
            "steps": self.train.steps,
            "eval_every": self.eval.every,
            "stable_loss": self.train.stable_loss,
        });
        key.to_string()
    }

    /// Estimated training FLOPs: FLOPs per token x steps x batch x context.
    pub fn train_flops(&self) -> f64 {
        let (vocab, _, _) = self.task.shape();
        let counts = crate::param_counts(&self.model, vocab, self.n_ctx());
        let per_token = crate::train_flops_per_token(&self.model, &counts, self.n_ctx());
        let n_train = self.task.train_len();
        let batch = match self.train.batch_size {
            0 => n_train,
            b => b.min(n_train),
        };
        per_token * (self.train.steps * (batch * self.n_ctx()) as u64) as f64
    }

    /// The steps whose weights the run keeps (`train.snapshots`), in order.
    pub fn snapshot_steps(&self) -> Vec<u64> {
        let steps = self.train.steps;
        match self.train.snapshots {
            Snapshots::None => Vec::new(),
            Snapshots::Log => eval_steps(steps, self.eval.every),
            Snapshots::Every(k) => {
                let mut out: Vec<u64> = (0..=steps).step_by(k as usize).collect();
                if out.last() != Some(&steps) {
                    out.push(steps);
                }
                out
            }
        }
    }

    /// About the disk the run's snapshots take: 4 bytes a parameter, and a header of names and
    /// shapes, per snapshot.
    pub fn snapshot_bytes(&self) -> u64 {
        let (vocab, _, _) = self.task.shape();
        let params = crate::param_counts(&self.model, vocab, self.n_ctx()).total;
        self.snapshot_steps().len() as u64 * (4 * params + SNAPSHOT_HEADER_BYTES)
    }

    /// The model's context length: every token but the last is read.
    pub fn n_ctx(&self) -> usize {
        let (_, prompt, answer) = self.task.shape();
        prompt + answer - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = r#"
seed = 3
[task]
kind = "modular"
p = 97
op = "add"
train_fraction = 0.3
[model]
d_model = 64
n_head = 4
"#;

    #[test]
    fn parses_with_defaults_and_round_trips() {
        let spec = JobSpec::from_toml(JOB).unwrap();
        assert_eq!(spec.model.d_model, 64);
        assert_eq!(spec.model.n_layer, 1);
        assert_eq!(spec.train.weight_decay, 1.0);
        assert_eq!(JobSpec::from_toml(&spec.to_toml()).unwrap(), spec);
        assert_eq!(spec.n_ctx(), 4);
        // d_mlp left out: 4 * d_model, as in a sweep's [[sizes]].
        assert_eq!(spec.model.d_mlp, 256);
        assert_eq!(ModelSpec::default().d_mlp, 512);
        assert!(is_job_id(&spec.id()));
        assert!(!is_job_id("abc") && !is_job_id("../../etc/xx") && !is_job_id("0123456789AB"));
    }

    #[test]
    fn id_depends_on_every_result_field_only() {
        let a = JobSpec::from_toml(JOB).unwrap();
        let mut b = a.clone();
        assert_eq!(a.id(), b.id());
        b.train.weight_decay = 0.5;
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().len(), 12);
        // The recipe options change the id only when set away from their defaults.
        let explicit = JOB.replace(
            "n_head = 4",
            "n_head = 4\ninit = \"gpt2\"\ninit_scale = 1.0\nattn_bias = true",
        );
        assert_eq!(JobSpec::from_toml(&explicit).unwrap().id(), a.id());
        let mut d = a.clone();
        d.model.init = Init::Nanda;
        assert_ne!(d.id(), a.id());
    }

    #[test]
    fn a_non_positive_init_scale_is_rejected() {
        let err = JobSpec::from_toml(&JOB.replace("n_head = 4", "n_head = 4\ninit_scale = 0"))
            .unwrap_err();
        assert_eq!(err.field, "model.init_scale");
    }

    #[test]
    fn unknown_field_names_line_and_suggestion() {
        let err = JobSpec::from_toml(&format!("{JOB}[train]\nlrr = 0.1\n")).unwrap_err();
        assert_eq!(err.line, Some(12));
        assert!(err.message.contains("did you mean `lr`?"), "{err}");
    }

    #[test]
    fn impossible_shape_is_rejected() {
        let err = JobSpec::from_toml(&JOB.replace("n_head = 4", "n_head = 5")).unwrap_err();
        assert_eq!(err.field, "model.n_head");
        assert!(err.message.contains("divide"));
    }

    #[test]
    fn warmup_then_cosine() {
        let t = TrainSpec {
            steps: 110,
            warmup_steps: 10,
            schedule: Schedule::Cosine,
            min_lr_ratio: 0.0,
            lr: 1.0,
            ..TrainSpec::default()
        };
        assert_eq!(t.lr_at(5), 0.5);
        assert_eq!(t.lr_at(10), 1.0);
        assert!((t.lr_at(60) - 0.5).abs() < 1e-12);
        assert!(t.lr_at(110).abs() < 1e-12);
    }

    #[test]
    fn eval_steps_are_log_spaced_plus_every_k() {
        assert_eq!(eval_steps(20, 8), vec![0, 1, 2, 4, 8, 16, 20]);
        assert_eq!(eval_steps(10, 3), vec![0, 1, 2, 3, 4, 6, 8, 9, 10]);
    }
}
