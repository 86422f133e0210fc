//! The sweep file: fixed defaults for every job, a size ladder (zip axis) and product axes,
//! expanded into the jobs of a [`Plan`]. Every error names the file, the line and the key.
//!
//! One rule for the model shape (n_layer, d_model, n_head, d_mlp): each field is set in one
//! place. Without `[[sizes]]`, `[model]` is the only size. With `[[sizes]]`, each size sets
//! n_layer, d_model and n_head, so `[model]` may not; d_mlp is set per size or once in
//! `[model]` for every size, not both, and is 4 * d_model where neither sets it.

mod slurm_options;

pub use slurm_options::{DEFAULT_SIGNAL_SECS, SlurmOptions};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use elab_job::{
    EvalSpec, JobSpec, ModelSpec, Plan, PlannedJob, SpecError, TaskSpec, TrainSpec, did_you_mean,
};
use serde::{Deserialize, Serialize};
use toml::{Spanned, Value};

use crate::packs::PackSize;

/// `[sweep]`: the sweep's name and how it runs here. Execution settings never enter job ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    /// Names `sweeps/<name>/`: letters, digits, `_` and `-`.
    pub name: String,
    /// Jobs run side by side on this machine [default: the number of CPU cores].
    #[serde(default)]
    pub slots: Option<usize>,
    /// Attempts after a failure (crash, OOM, killed worker) before the job is reported failed.
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// auto, wgpu or cpu (see `elab train --backend`).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Jobs of one shape trained together by one worker: "auto" or the most per pack (1 =
    /// every job in its own worker). See `packs`.
    #[serde(default)]
    pub pack: PackSize,
    /// The most disk (in GB, 1e9 bytes) the jobs' snapshots (`train.snapshots`) may take in
    /// all: a sweep that would take more is refused before it starts.
    #[serde(default = "default_snapshot_budget_gb")]
    pub snapshot_budget_gb: f64,
}

fn default_retries() -> u32 {
    2
}
fn default_snapshot_budget_gb() -> f64 {
    10.0
}
fn default_backend() -> String {
    "auto".into()
}

/// One rung of the size ladder: the shape parameters move together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub name: String,
    pub n_layer: usize,
    pub d_model: usize,
    pub n_head: usize,
    /// Default: `[model]`'s d_mlp if it sets one, else 4 * d_model. Always set once parsed.
    #[serde(default)]
    pub d_mlp: Option<usize>,
    /// Overrides `train.lr` for this size.
    #[serde(default)]
    pub lr: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    sweep: SweepSection,
    #[serde(default)]
    seed: u64,
    task: TaskSpec,
    #[serde(default)]
    model: ModelSpec,
    #[serde(default)]
    train: TrainSpec,
    #[serde(default)]
    eval: EvalSpec,
    #[serde(default)]
    sizes: Vec<Spanned<Size>>,
    #[serde(default)]
    axes: BTreeMap<Spanned<String>, Spanned<Value>>,
    #[serde(default)]
    executor: ExecutorSection,
    #[serde(default)]
    refine: RefineFile,
}

/// `[refine]` as written: counts read as any number, so that `max_rounds = -1` or `= 1.5` is
/// reported with the field and what is allowed rather than as a type error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RefineFile {
    target_width_decades: f64,
    max_rounds: f64,
    max_new_jobs: f64,
}

impl Default for RefineFile {
    fn default() -> Self {
        let d = RefineSection::default();
        Self {
            target_width_decades: d.target_width_decades,
            max_rounds: d.max_rounds as f64,
            max_new_jobs: d.max_new_jobs as f64,
        }
    }
}

impl RefineFile {
    fn validate(&self) -> Result<RefineSection, SpecError> {
        let count = |field: &str, v: f64, max: usize| {
            (v.fract() == 0.0 && v >= 1.0 && v <= max as f64)
                .then_some(v as usize)
                .ok_or_else(|| {
                    SpecError::new(
                        format!("refine.{field}"),
                        format!("must be an integer from 1 to {max}, got {v}"),
                    )
                })
        };
        let section = RefineSection {
            target_width_decades: self.target_width_decades,
            max_rounds: count("max_rounds", self.max_rounds, RefineSection::MAX_ROUNDS)?,
            max_new_jobs: count(
                "max_new_jobs",
                self.max_new_jobs,
                RefineSection::MAX_NEW_JOBS,
            )?,
        };
        section.validate("refine.")?;
        Ok(section)
    }
}

/// `[refine]`: how far `elab refine` may go in adding sizes. Never enters job ids.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RefineSection {
    /// Stop refining a group once its threshold interval is at most this wide (log10 params).
    pub target_width_decades: f64,
    /// Rounds of refinement recorded in the sweep directory, all runs of `elab refine` together.
    pub max_rounds: usize,
    /// Jobs refinement may add, all rounds together (each added size costs one job per seed).
    pub max_new_jobs: usize,
}

impl Default for RefineSection {
    fn default() -> Self {
        Self {
            target_width_decades: 0.2,
            max_rounds: 2,
            max_new_jobs: 24,
        }
    }
}

impl RefineSection {
    /// Upper bounds that catch a typo (1000 rounds) before it turns into days of training.
    pub const MAX_ROUNDS: usize = 20;
    pub const MAX_NEW_JOBS: usize = 10_000;

    /// Checks every field; the error names `<prefix><field>` (`refine.` for the file, `--` for
    /// the command line's flags) and what is allowed.
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let field = |name: &str| {
            if prefix == "--" {
                format!("--{}", name.replace('_', "-"))
            } else {
                format!("{prefix}{name}")
            }
        };
        let w = self.target_width_decades;
        if !(w.is_finite() && w > 0.0 && w <= 10.0) {
            return Err(SpecError::new(
                field("target_width_decades"),
                format!("must be a number of decades in (0, 10], got {w}"),
            ));
        }
        if !(1..=Self::MAX_ROUNDS).contains(&self.max_rounds) {
            return Err(SpecError::new(
                field("max_rounds"),
                format!(
                    "must be an integer from 1 to {}, got {}",
                    Self::MAX_ROUNDS,
                    self.max_rounds
                ),
            ));
        }
        if !(1..=Self::MAX_NEW_JOBS).contains(&self.max_new_jobs) {
            return Err(SpecError::new(
                field("max_new_jobs"),
                format!(
                    "must be an integer from 1 to {}, got {}",
                    Self::MAX_NEW_JOBS,
                    self.max_new_jobs
                ),
            ));
        }
        Ok(())
    }
}

/// `[executor.*]`: how the sweep runs on a cluster. Never enters job ids.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecutorSection {
    #[serde(default)]
    slurm: Option<SlurmOptions>,
}

/// The shape fields `[model]` sets in the file, with where (what defaulted is not here).
#[derive(Default, Deserialize)]
struct ShapeProbe {
    #[serde(default)]
    model: ModelShape,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ModelShape {
    n_layer: Option<Spanned<Value>>,
    d_model: Option<Spanned<Value>>,
    n_head: Option<Spanned<Value>>,
    d_mlp: Option<Spanned<Value>>,
}

impl ModelShape {
    fn get(&self, field: &str) -> Option<&Spanned<Value>> {
        match field {
            "n_layer" => self.n_layer.as_ref(),
            "d_model" => self.d_model.as_ref(),
            "n_head" => self.n_head.as_ref(),
            "d_mlp" => self.d_mlp.as_ref(),
            _ => None,
        }
    }
}

/// A parsed sweep file.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    pub path: PathBuf,
    pub text: String,
    pub sweep: SweepSection,
    /// The fixed defaults: what every job is before its size and axis values are applied.
    pub base: JobSpec,
    pub sizes: Vec<Size>,
    /// Product axes: dotted job field -> values, in file order.
    pub axes: Vec<(String, Vec<Value>)>,
    /// Line of each size (`sizes.<name>`) and axis (`axes.<key>`), for errors found on expansion.
    pub lines: BTreeMap<String, usize>,
    /// `[executor.slurm]`, validated (see `elab sweep --executor slurm`).
    pub slurm: Option<SlurmOptions>,
    /// `[refine]`, validated (see `elab refine`).
    pub refine: RefineSection,
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn err_at(
    path: &Path,
    text: &str,
    span: std::ops::Range<usize>,
    field: &str,
    msg: String,
) -> SpecError {
    let line = line_at(text, span.start);
    SpecError::new(field, msg).in_file(path).at_line(line)
}

impl SweepConfig {
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SpecError::new("", format!("cannot read sweep file: {e}")).in_file(path)
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, SpecError> {
        let file: SweepFile =
            toml::from_str(text).map_err(|e| SpecError::from_toml(&e, text).in_file(path))?;
        let line_of = |field: &str| {
            text.lines()
                .position(|l| l.trim_start().starts_with(field))
                .map(|i| i + 1)
        };
        let name = &file.sweep.name;
        let safe = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && !name.starts_with(['-', '_']);
        if !safe {
            let e = SpecError::new(
                "sweep.name",
                format!(
                    "must be 1-64 letters, digits, `_` or `-`, not starting with `-` or `_` (it names sweeps/<name>/), got {name:?}"
                ),
            );
            return Err(with_line(e.in_file(path), line_of("name")));
        }
        if file.sweep.slots == Some(0) {
            return Err(with_line(
                SpecError::new("sweep.slots", "must be at least 1").in_file(path),
                line_of("slots"),
            ));
        }
        let budget = file.sweep.snapshot_budget_gb;
        if !(budget.is_finite() && budget >= 0.0) {
            let e = SpecError::new(
                "sweep.snapshot_budget_gb",
                format!("must be a finite number of GB >= 0, got {budget}"),
            );
            return Err(with_line(e.in_file(path), line_of("snapshot_budget_gb")));
        }
        if !["auto", "wgpu", "cpu"].contains(&file.sweep.backend.as_str()) {
            let e = SpecError::new(
                "sweep.backend",
                format!("must be auto, wgpu or cpu, got {:?}", file.sweep.backend),
            );
            return Err(with_line(e.in_file(path), line_of("backend")));
        }
        if let Some(slurm) = &file.executor.slurm {
            slurm
                .validate("executor.slurm")
                .and_then(|()| slurm.check_time_limit("executor.slurm.time"))
                .map_err(|e| {
                    let key = e.field.rsplit('.').next().unwrap_or_default().to_string();
                    with_line(e.in_file(path), line_of(&key))
                })?;
        }
        let refine = file.refine.validate().map_err(|e| {
            let key = e.field.rsplit('.').next().unwrap_or_default().to_string();
            with_line(e.in_file(path), line_of(&key))
        })?;
        let base = JobSpec {
            seed: file.seed,
            task: file.task,
            model: file.model,
            train: file.train,
            eval: file.eval,
        };
        base.validate().map_err(|e| {
            let key = e.field.rsplit('.').next().unwrap_or_default().to_string();
            with_line(e.in_file(path), line_of(&key))
        })?;

        let mut sizes = Vec::new();
        let mut lines = BTreeMap::new();
        for size in &file.sizes {
            if sizes.iter().any(|s: &Size| s.name == size.get_ref().name) {
                return Err(err_at(
                    path,
                    text,
                    size.span(),
                    "sizes.name",
                    format!("duplicate size name {:?}", size.get_ref().name),
                ));
            }
            sizes.push(size.get_ref().clone());
            lines.insert(
                format!("sizes.{}", size.get_ref().name),
                line_at(text, size.span().start),
            );
        }
        if !sizes.is_empty() {
            let probe: ShapeProbe =
                toml::from_str(text).map_err(|e| SpecError::from_toml(&e, text).in_file(path))?;
            check_shape_set_once(path, text, &probe.model, &file.sizes)?;
            // d_mlp: the size's, else [model]'s (when it sets one), else 4 * d_model.
            let shared_d_mlp = probe.model.d_mlp.is_some().then_some(base.model.d_mlp);
            for size in &mut sizes {
                size.d_mlp = Some(size.d_mlp.or(shared_d_mlp).unwrap_or(4 * size.d_model));
            }
        }

        let base_table = toml::Table::try_from(&base).expect("a job spec is a table");
        let mut axes = Vec::new();
        for (key, value) in &file.axes {
            let mut flat = Vec::new();
            flatten(key.get_ref(), value.get_ref(), &mut flat);
            for (dotted, values) in flat {
                let span = key.span();
                let Some(values) = values else {
                    return Err(err_at(
                        path,
                        text,
                        span,
                        &format!("axes.{dotted}"),
                        "an axis is a list of values, e.g. [0, 1, 2]".into(),
                    ));
                };
                if values.is_empty() {
                    return Err(err_at(
                        path,
                        text,
                        span,
                        &format!("axes.{dotted}"),
                        "an axis needs at least one value; [] would make an empty sweep".into(),
                    ));
                }
                check_path(&base_table, &dotted, &values[0]).map_err(|msg| {
                    err_at(path, text, span.clone(), &format!("axes.{dotted}"), msg)
                })?;
                if ModelSpec::is_shape_key(&dotted) && !sizes.is_empty() {
                    return Err(err_at(
                        path,
                        text,
                        span,
                        &format!("axes.{dotted}"),
                        "model shape is set by [[sizes]]; put it there, or drop [[sizes]]".into(),
                    ));
                }
                lines.insert(format!("axes.{dotted}"), line_at(text, span.start));
                axes.push((dotted, values));
            }
        }
        let config = Self {
            path: path.to_path_buf(),
            text: text.to_string(),
            sweep: file.sweep,
            base,
            sizes,
            axes,
            lines,
            slurm: file.executor.slurm,
            refine,
        };
        // Expanding validates every job, so an impossible combination fails here, not mid-sweep.
        config.plan()?;
        Ok(config)
    }

    /// Expands the sweep into its jobs, in the order they run: breadth-first over seeds, then
    /// sizes, then the other axes, so that every curve gets points early.
    /// Refuses a plan whose snapshots would take more disk than `[sweep] snapshot_budget_gb`.
    pub fn check_snapshot_budget(&self, plan: &Plan) -> Result<(), SpecError> {
        let bytes = crate::snapshot_bytes(plan);
        let budget = self.sweep.snapshot_budget_gb;
        if bytes as f64 <= budget * 1e9 {
            return Ok(());
        }
        let line = self
            .text
            .lines()
            .position(|l| l.trim_start().starts_with("snapshots"))
            .map(|i| i + 1);
        let e = SpecError::new(
            "train.snapshots",
            format!(
                "the jobs' snapshots would take {:.2} GB, over [sweep] snapshot_budget_gb = {budget}: \
                 keep fewer (\"every:K\" with a larger K), or raise the budget",
                bytes as f64 / 1e9
            ),
        );
        Err(with_line(e.in_file(&self.path), line))
    }

    pub fn plan(&self) -> Result<Plan, SpecError> {
        self.plan_with(&[])
    }

    /// [`Self::plan`], then the jobs of sizes added by refinement: each `(size, axes)` for
    /// every seed and every combination of the other axes that has `axes`' values (a
    /// comparison group). They come last, so that adding them never reorders the sweep.
    pub fn plan_with(
        &self,
        added: &[(&Size, &BTreeMap<String, Value>)],
    ) -> Result<Plan, SpecError> {
        let default_size = Size {
            name: "default".into(),
            n_layer: self.base.model.n_layer,
            d_model: self.base.model.d_model,
            n_head: self.base.model.n_head,
            d_mlp: Some(self.base.model.d_mlp),
            lr: None,
        };
        let sizes = if self.sizes.is_empty() {
            std::slice::from_ref(&default_size)
        } else {
            &self.sizes[..]
        };
        // Seed first (outermost), then size, then the other axes.
        let seed_axis = self.axes.iter().position(|(k, _)| k == "seed");
        let mut axes: Vec<&(String, Vec<Value>)> = self.axes.iter().collect();
        if let Some(i) = seed_axis {
            let seed = axes.remove(i);
            axes.insert(0, seed);
        }
        let seeds = seed_axis.map(|_| axes.remove(0));
        let combos = product(&axes);
        let seed_values: Vec<Option<&Value>> = match seeds {
            Some((_, values)) => values.iter().map(Some).collect(),
            None => vec![None],
        };

        let mut jobs: Vec<PlannedJob> = Vec::new();
        let mut push = |job: PlannedJob| {
            if !jobs.iter().any(|j| j.id == job.id) {
                jobs.push(job);
            }
        };
        for seed in &seed_values {
            for size in sizes {
                for combo in &combos {
                    push(self.job(*seed, size, combo)?);
                }
            }
        }
        for (size, group) in added {
            for seed in &seed_values {
                let in_group = |combo: &&Vec<(String, Value)>| {
                    group
                        .iter()
                        .all(|(k, v)| combo.iter().any(|(ck, cv)| ck == k && cv == v))
                };
                for combo in combos.iter().filter(in_group) {
                    push(self.job(*seed, size, combo)?);
                }
            }
        }
        Ok(Plan {
            sweep: self.sweep.name.clone(),
            jobs,
        })
    }

    /// The job of one seed (`None`: the file's `seed`), size and combination of other axes.
    fn job(
        &self,
        seed: Option<&Value>,
        size: &Size,
        combo: &[(String, Value)],
    ) -> Result<PlannedJob, SpecError> {
        let mut table = toml::Table::try_from(&self.base).expect("a job spec is a table");
        let mut swept = BTreeMap::new();
        if let Some(seed) = seed {
            set_path(&mut table, "seed", seed.clone());
            swept.insert("seed".to_string(), seed.clone());
        }
        set_path(
            &mut table,
            "model.n_layer",
            Value::Integer(size.n_layer as i64),
        );
        set_path(
            &mut table,
            "model.d_model",
            Value::Integer(size.d_model as i64),
        );
        set_path(
            &mut table,
            "model.n_head",
            Value::Integer(size.n_head as i64),
        );
        let d_mlp = size.d_mlp.unwrap_or(4 * size.d_model);
        set_path(&mut table, "model.d_mlp", Value::Integer(d_mlp as i64));
        if let Some(lr) = size.lr {
            set_path(&mut table, "train.lr", Value::Float(lr));
        }
        for (key, value) in combo {
            set_path(&mut table, key, value.clone());
            swept.insert(key.clone(), value.clone());
        }
        let where_ = || {
            let axes: Vec<String> = swept.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!(
                "size {:?}{}{}",
                size.name,
                if axes.is_empty() { "" } else { ", " },
                axes.join(", ")
            )
        };
        let spec: JobSpec = table.try_into().map_err(|e: toml::de::Error| {
            SpecError::new(
                "axes",
                format!(
                    "{} (in the job for {})",
                    did_you_mean(e.message()),
                    where_()
                ),
            )
            .in_file(&self.path)
        })?;
        spec.validate().map_err(|e| {
            // Point at the axis that set the field, else at the size for shapes.
            let line = self.lines.get(&format!("axes.{}", e.field)).or_else(|| {
                let from_size = e.field.starts_with("model.") || e.field == "train.lr";
                from_size
                    .then(|| self.lines.get(&format!("sizes.{}", size.name)))
                    .flatten()
            });
            let err = SpecError::new(
                e.field.clone(),
                format!("{} (in the job for {})", e.message, where_()),
            )
            .in_file(&self.path);
            with_line(err, line.copied())
        })?;
        Ok(PlannedJob {
            id: spec.id(),
            size: size.name.clone(),
            axes: swept,
            spec: Some(spec),
        })
    }
}

fn with_line(e: SpecError, line: Option<usize>) -> SpecError {
    match line {
        Some(l) => e.at_line(l),
        None => e,
    }
}

/// The shape rule (see the module doc): a shape field set in `[model]` must not be set by any
/// size. Errors point at `[model]`'s line, the one to remove.
fn check_shape_set_once(
    path: &Path,
    text: &str,
    model: &ModelShape,
    sizes: &[Spanned<Size>],
) -> Result<(), SpecError> {
    for field in ModelSpec::SHAPE_FIELDS {
        let Some(set) = model.get(field) else {
            continue;
        };
        let sets = |s: &Size| match field {
            "d_mlp" => s.d_mlp.is_some(),
            _ => true,
        };
        let also: Vec<String> = sizes
            .iter()
            .map(Spanned::get_ref)
            .filter(|s| sets(s))
            .map(|s| format!("{:?}", s.name))
            .collect();
        if also.is_empty() {
            continue;
        }
        let fix = if field == "d_mlp" {
            "remove it from [model] to set it per size, or from every size to share [model]'s"
        } else {
            "every size sets n_layer, d_model and n_head, so remove it from [model]"
        };
        return Err(err_at(
            path,
            text,
            set.span(),
            &format!("model.{field}"),
            format!(
                "is set both in [model] and in [[sizes]] (size {}); a shape field (n_layer, d_model, n_head, d_mlp) is set in one place: {fix}",
                also.join(", ")
            ),
        ));
    }
    Ok(())
}

/// `train = { weight_decay = [0, 1] }` (what `train.weight_decay = [..]` parses to) becomes
/// `("train.weight_decay", Some([0, 1]))`; a non-list leaf becomes `None`.
fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Option<Vec<Value>>)>) {
    match value {
        Value::Table(t) => {
            for (k, v) in t {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(a) => out.push((prefix.to_string(), Some(a.clone()))),
        _ => out.push((prefix.to_string(), None)),
    }
}

/// Checks that `dotted` names a field of the job, suggesting the nearest one if not.
/// `table` is the serialized base job, which leaves the recipe fields out at their defaults
/// (so that old job ids stay valid): a leaf missing from it is a field when the job still
/// deserializes with it set to `sample` (every section denies unknown fields).
fn check_path(table: &toml::Table, dotted: &str, sample: &Value) -> Result<(), String> {
    let mut current = table;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Some(next) = current.get(*part) else {
            if i + 1 == parts.len() && i > 0 {
                let mut probe = table.clone();
                set_path(&mut probe, dotted, sample.clone());
                if JobSpec::deserialize(Value::Table(probe)).is_ok() {
                    return Ok(());
                }
            }
            let known: Vec<String> = current.keys().map(|k| format!("`{k}`")).collect();
            let msg = format!(
                "unknown field `{part}`, expected one of {}",
                known.join(", ")
            );
            return Err(did_you_mean(&msg));
        };
        match next {
            Value::Table(t) if i + 1 < parts.len() => current = t,
            Value::Table(_) => {
                return Err(format!("`{dotted}` is a section; sweep one of its fields"));
            }
            _ if i + 1 < parts.len() => {
                return Err(format!("`{}` is not a section", parts[..=i].join(".")));
            }
            _ => {}
        }
    }
    Ok(())
}

fn set_path(table: &mut toml::Table, dotted: &str, value: Value) {
    let (head, last) = match dotted.rsplit_once('.') {
        Some((head, last)) => (Some(head), last),
        None => (None, dotted),
    };
    let mut current = table;
    for part in head.into_iter().flat_map(|h| h.split('.')) {
        current = current
            .entry(part)
            .or_insert_with(|| Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("check_path ran first");
    }
    current.insert(last.to_string(), value);
}

/// Cartesian product of the axes, the first axis varying slowest.
fn product(axes: &[&(String, Vec<Value>)]) -> Vec<Vec<(String, Value)>> {
    axes.iter().fold(vec![Vec::new()], |acc, (key, values)| {
        acc.iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push((key.clone(), v.clone()));
                    next
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWEEP: &str = r#"[sweep]
name = "t"

[task]
kind = "digits"
digits = 2
train_size = 400
val_size = 300

[model]
activation = "gelu"

[[sizes]]
name = "xs"
n_layer = 1
d_model = 16
n_head = 2

[[sizes]]
name = "s"
n_layer = 1
d_model = 32
n_head = 4
"#;

    fn parse(text: &str) -> Result<SweepConfig, SpecError> {
        SweepConfig::parse(Path::new("t.toml"), text)
    }

    fn d_mlps(config: &SweepConfig) -> Vec<usize> {
        let plan = config.plan().unwrap();
        plan.jobs
            .iter()
            .map(|j| j.spec.as_ref().unwrap().model.d_mlp)
            .collect()
    }

    #[test]
    fn a_shape_field_in_model_and_in_sizes_is_an_error() {
        for (field, extra) in [
            ("model.d_model", "d_model = 64\n"),
            ("model.n_layer", "n_layer = 2\n"),
            ("model.n_head", "n_head = 8\n"),
        ] {
            let text = SWEEP.replace(
                "activation = \"gelu\"\n",
                &format!("activation = \"gelu\"\n{extra}"),
            );
            let err = parse(&text).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert_eq!(err.line, Some(12), "the line in [model]: {err}");
            let msg = err.to_string();
            assert!(
                msg.starts_with("t.toml:12")
                    && msg.contains("[[sizes]] (size \"xs\", \"s\")")
                    && msg.contains("set in one place"),
                "{msg}"
            );
        }
        // d_mlp in [model] and in one size.
        let text = SWEEP
            .replace(
                "activation = \"gelu\"\n",
                "activation = \"gelu\"\nd_mlp = 100\n",
            )
            .replace("d_model = 32\n", "d_model = 32\nd_mlp = 64\n");
        let err = parse(&text).unwrap_err();
        assert_eq!((err.field.as_str(), err.line), ("model.d_mlp", Some(12)));
        assert!(err.message.contains("(size \"s\")"), "{err}");
    }

    #[test]
    fn d_mlp_is_set_in_one_place_and_defaults_to_4_d_model() {
        // Neither sets it: 4 * d_model per size, as without [[sizes]].
        assert_eq!(d_mlps(&parse(SWEEP).unwrap()), vec![64, 128]);
        // [model] sets it for every size.
        let shared = SWEEP.replace(
            "activation = \"gelu\"\n",
            "activation = \"gelu\"\nd_mlp = 100\n",
        );
        assert_eq!(d_mlps(&parse(&shared).unwrap()), vec![100, 100]);
        // Sizes set it, each its own (a size without one gets 4 * d_model).
        let per_size = SWEEP.replace("d_model = 16\n", "d_model = 16\nd_mlp = 48\n");
        assert_eq!(d_mlps(&parse(&per_size).unwrap()), vec![48, 128]);
        // Without [[sizes]], [model] is the one size, and the default is the same rule.
        let no_sizes = SWEEP[..SWEEP.find("[[sizes]]").unwrap()]
            .replace("activation = \"gelu\"\n", "d_model = 64\nn_head = 4\n");
        assert_eq!(d_mlps(&parse(&no_sizes).unwrap()), vec![256]);
    }

    #[test]
    fn recipe_fields_left_out_at_their_defaults_are_still_axes() {
        // init_scale, stable_loss and weight_decay_on are not in the serialized base job (they
        // are at their defaults), yet they are job fields: sweeping them works.
        let text = format!(
            "{SWEEP}\n[axes]\nmodel.init_scale = [0.5, 2.0]\ntrain.stable_loss = [true]\n\
             train.weight_decay_on = [\"matrices\"]\n"
        );
        let plan = parse(&text).unwrap().plan().unwrap();
        let scales: Vec<f64> = plan
            .jobs
            .iter()
            .map(|j| j.spec.as_ref().unwrap())
            .inspect(|spec| assert!(spec.train.stable_loss))
            .map(|spec| spec.model.init_scale)
            .collect();
        assert_eq!(scales, vec![0.5, 2.0, 0.5, 2.0]);
        // A misspelt one is still an error naming the axis and the nearest field.
        let err = parse(&format!("{SWEEP}\n[axes]\nmodel.init_scael = [0.5]\n")).unwrap_err();
        assert_eq!(err.field, "axes.model.init_scael", "{err}");
        assert!(err.message.contains("unknown field `init_scael`"), "{err}");
    }

    #[test]
    fn refine_has_defaults_and_bad_values_name_the_field_and_what_is_allowed() {
        assert_eq!(parse(SWEEP).unwrap().refine, RefineSection::default());
        let with = |section: &str| format!("{SWEEP}\n[refine]\n{section}");
        let set = parse(&with(
            "target_width_decades = 0.1\nmax_rounds = 3\nmax_new_jobs = 12\n",
        ))
        .unwrap();
        assert_eq!(
            set.refine,
            RefineSection {
                target_width_decades: 0.1,
                max_rounds: 3,
                max_new_jobs: 12,
            }
        );
        let line = SWEEP.lines().count() + 3;
        for (text, field, allowed) in [
            (
                "target_width_decades = 0.0",
                "refine.target_width_decades",
                "(0, 10]",
            ),
            (
                "target_width_decades = -1.0",
                "refine.target_width_decades",
                "(0, 10]",
            ),
            (
                "target_width_decades = nan",
                "refine.target_width_decades",
                "(0, 10]",
            ),
            ("max_rounds = 0", "refine.max_rounds", "from 1 to 20"),
            ("max_rounds = 1000", "refine.max_rounds", "from 1 to 20"),
            ("max_new_jobs = 0", "refine.max_new_jobs", "from 1 to 10000"),
            ("max_rounds = -2", "refine.max_rounds", "got -2"),
        ] {
            let err = parse(&with(text)).unwrap_err();
            assert_eq!(err.field, field, "{text}: {err}");
            assert_eq!(err.line, Some(line), "{text}: {err}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("t.toml:{line}")) && msg.contains(allowed),
                "{text}: {msg}"
            );
        }
        // Unknown fields and wrong types are caught by the parser, with the file and field.
        let msg = parse(&with("max_round = 2")).unwrap_err().to_string();
        assert!(msg.contains("t.toml") && msg.contains("max_round"), "{msg}");
        let err = parse(&with("max_rounds = 1.5")).unwrap_err();
        assert_eq!(err.field, "refine.max_rounds", "{err}");
        let msg = parse(&with("max_rounds = \"two\""))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with(&format!("t.toml:{line}")), "{msg}");
    }

    #[test]
    fn an_added_size_gets_a_job_per_seed_in_its_group_only_after_the_planned_ones() {
        let text = format!("{SWEEP}\n[axes]\nseed = [0, 1]\ntrain.weight_decay = [0.0, 0.5]\n");
        let config = parse(&text).unwrap();
        let planned = config.plan().unwrap();
        assert_eq!(planned.jobs.len(), 8);
        let size = Size {
            name: "r1-L1d24".into(),
            n_layer: 1,
            d_model: 24,
            n_head: 4,
            d_mlp: Some(96),
            lr: None,
        };
        let group = BTreeMap::from([("train.weight_decay".to_string(), Value::Float(0.5))]);
        let plan = config.plan_with(&[(&size, &group)]).unwrap();
        assert_eq!(
            plan.jobs[..8],
            planned.jobs[..],
            "planned jobs keep their order"
        );
        let added = &plan.jobs[8..];
        assert_eq!(added.len(), 2, "one per seed, in the group only");
        for (job, seed) in added.iter().zip([0, 1]) {
            let spec = job.spec.as_ref().unwrap();
            assert_eq!(job.size, "r1-L1d24");
            assert_eq!(
                (spec.seed, spec.model.d_model, spec.model.d_mlp),
                (seed, 24, 96)
            );
            assert_eq!(spec.train.weight_decay, 0.5);
        }
    }
}
