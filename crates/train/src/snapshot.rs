//! Weights along training as safetensors files that Python reads without the lab
//! (`safetensors.numpy.load_file`, or `safe_open` for the manifest).
//!
//! A snapshot holds one model (a job's slice of its pack, exactly as if it trained alone): each
//! parameter under the model's own name (`wte`, `blocks.0.attn.c_attn.weight`, ...), float32,
//! with the pack axis removed, and the axes of length 1 too (a bias is `[d]`, not `[1, 1, d]`).
//! A `Linear` weight is `[d_in, d_out]` (the lab computes `x @ W`, the transpose of PyTorch's
//! `nn.Linear`). The file's `__metadata__` is the manifest: `job`, `step` and `spec_sha256`
//! (of the job's canonical spec, whose first 12 hex digits are the job id).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;
use elab_job::{JobSpec, fsio};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// What a snapshot says about itself (its `__metadata__`).
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub job: String,
    pub step: u64,
    pub spec_sha256: String,
}

impl Manifest {
    pub fn new(spec: &JobSpec, step: u64) -> Self {
        Self {
            job: spec.id(),
            step,
            spec_sha256: spec.sha256(),
        }
    }

    fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("format".into(), "elab-snapshot-1".into()),
            ("job".into(), self.job.clone()),
            ("step".into(), self.step.to_string()),
            ("spec_sha256".into(), self.spec_sha256.clone()),
        ])
    }

    fn from_map(map: &HashMap<String, String>) -> anyhow::Result<Self> {
        let field = |name: &str| {
            map.get(name)
                .cloned()
                .with_context(|| format!("the manifest has no `{name}`"))
        };
        Ok(Self {
            job: field("job")?,
            step: field("step")?.parse().context("the manifest's `step`")?,
            spec_sha256: field("spec_sha256")?,
        })
    }
}

/// A parameter's name from the modules entered to reach it.
#[derive(Default)]
struct ParamPath(Vec<String>);

impl ParamPath {
    fn name(&self) -> String {
        self.0.join(".")
    }
}

/// The shape a snapshot stores: without the pack axis and the axes of length 1.
fn stored_shape(dims: &[usize]) -> Vec<usize> {
    dims[1..].iter().copied().filter(|&d| d != 1).collect()
}

/// A parameter read back to the host.
pub(crate) struct Parameter {
    /// The model's name for it (`blocks.0.attn.c_attn.weight`).
    pub name: String,
    /// Its shape, pack axis first.
    pub dims: Vec<usize>,
    pub values: Vec<f32>,
}

/// Every parameter of `model`, by name, in visiting order.
pub(crate) fn parameters<M: Module>(model: &M) -> Vec<Parameter> {
    struct Collect {
        path: ParamPath,
        params: Vec<Parameter>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let t = param.val();
            let dims = t.dims().to_vec();
            let values = t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            self.params.push(Parameter {
                name: self.path.name(),
                dims,
                values,
            });
        }
    }
    let mut collect = Collect {
        path: ParamPath::default(),
        params: Vec::new(),
    };
    model.visit(&mut collect);
    collect.params
}

/// Writes `model` (a pack of one) as `path`, atomically and durably.
pub fn write<M: Module>(model: &M, path: &Path, manifest: &Manifest) -> anyhow::Result<()> {
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = parameters(model)
        .into_iter()
        .map(|p| {
            assert_eq!(p.dims[0], 1, "a snapshot holds one model");
            let bytes = p.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (p.name, stored_shape(&p.dims), bytes)
        })
        .collect();
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            Ok((
                name.as_str(),
                TensorView::new(Dtype::F32, shape.clone(), bytes)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
    let bytes = safetensors::serialize(views, Some(manifest.to_map()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    fsio::write_atomic(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Loads the snapshot `path` into `model` (a pack of one of the same network): every parameter
/// must be in the file under its name, with its shape. Returns the model and the manifest.
pub fn read_into<M: Module>(model: M, path: &Path) -> anyhow::Result<(M, Manifest)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{} is not a safetensors file", path.display()))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)?;
    let manifest = header
        .metadata()
        .as_ref()
        .context("no manifest (`__metadata__`)")
        .and_then(Manifest::from_map)
        .with_context(|| format!("reading the manifest of {}", path.display()))?;

    struct Load<'a> {
        path: ParamPath,
        file: &'a SafeTensors<'a>,
        error: Option<anyhow::Error>,
        loaded: usize,
    }
    impl ModuleMapper for Load<'_> {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.0.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.0.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let name = self.path.name();
            let view = match self.file.tensor(&name) {
                Ok(view) => view,
                Err(e) => {
                    self.error.get_or_insert(anyhow::anyhow!("{name}: {e}"));
                    return param;
                }
            };
            param.map(|t| {
                let dims = t.dims();
                if view.dtype() != Dtype::F32 || view.shape() != stored_shape(&dims) {
                    self.error.get_or_insert(anyhow::anyhow!(
                        "{name}: the file holds {:?} {:?}, the model wants F32 {:?}",
                        view.dtype(),
                        view.shape(),
                        stored_shape(&dims)
                    ));
                    return t;
                }
                let values: Vec<f32> = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                self.loaded += 1;
                let loaded = Tensor::from_data(TensorData::new(values, dims), &t.device());
                if t.is_require_grad() {
                    loaded.require_grad()
                } else {
                    loaded
                }
            })
        }
    }
    let mut load = Load {
        path: ParamPath::default(),
        file: &file,
        error: None,
        loaded: 0,
    };
    let model = model.map(&mut load);
    if let Some(e) = load.error {
        return Err(e.context(format!("loading {}", path.display())));
    }
    if load.loaded != file.len() {
        bail!(
            "{} holds {} tensors, the model has {}",
            path.display(),
            file.len(),
            load.loaded
        );
    }
    Ok((model, manifest))
}
