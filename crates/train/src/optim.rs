//! AdamW for a pack of models: each model has its own learning rate (schedule), weight decay,
//! betas, epsilon and global-norm gradient clipping, applied along the model axis. burn's
//! AdamW takes one learning rate for all parameters and clips per tensor, so the pack has its
//! own, in the form of PyTorch's `AdamW` (decoupled weight decay, bias-corrected moments,
//! epsilon added to the corrected root of the second moment).
//!
//! The moments are kept as two modules of the same shape as the model (without gradients): a
//! job's optimizer state is cut out of the pack, saved and stacked back exactly like its
//! weights (`elab_model::pack`).

mod flex;

use burn::backend::{Dispatch, DispatchDevice};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use elab_job::{DecayOn, TrainSpec};
use elab_model::LanguageModel;
use elab_model::pack::flat;
use flex::AdamBackend;

/// The first and second moments of AdamW, one module shaped as the model each.
#[derive(Module, Debug)]
pub struct Moments<M: Module> {
    pub first: M,
    pub second: M,
}

impl<M: LanguageModel> Moments<M> {
    /// Zero moments for `model` (a pack), on its device without gradients.
    pub fn zeros(model: &M) -> Self {
        struct Zeros;
        impl ModuleMapper for Zeros {
            fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
                p.map(|t| t.zeros_like())
            }
        }
        let zeros = model.valid().map(&mut Zeros);
        Self {
            first: zeros.clone(),
            second: zeros,
        }
    }
}

/// Runs AdamW steps on a pack whose model i follows `specs[i]`.
pub struct PackedAdamW<M: Module> {
    pub moments: Moments<M>,
}

/// Each model's value of one hyperparameter, as a `[models, 1]` column that broadcasts over
/// a flattened `[models, rest]` parameter.
fn column(values: impl Iterator<Item = f64>, device: &Device) -> Tensor<2> {
    let values: Vec<f32> = values.map(|v| v as f32).collect();
    let n = values.len();
    Tensor::<1>::from_data(values.as_slice(), device).reshape([n, 1])
}

impl<M: LanguageModel> PackedAdamW<M> {
    /// Update `step` (1-based) of every model of `model` with its gradients in `grads`.
    pub fn step(
        &mut self,
        model: M,
        mut grads: GradientsParams,
        specs: &[&TrainSpec],
        step: u64,
    ) -> M {
        assert_eq!(specs.len(), model.models());
        let device = self.moments.first.devices()[0].clone();
        let col = |f: &dyn Fn(&TrainSpec) -> f64| column(specs.iter().map(|s| f(s)), &device);
        let t = step as i32;
        // Weight decay on every parameter, or on linear layers' matrices only.
        let decay_all = col(&|s| 1.0 - s.lr_at(step) * s.weight_decay);
        let decay_others = col(&|s| match s.weight_decay_on {
            DecayOn::All => 1.0 - s.lr_at(step) * s.weight_decay,
            DecayOn::Matrices => 1.0,
        });
        let hyper = Hyper {
            b1: col(&|s| s.beta1),
            c1: col(&|s| 1.0 - s.beta1),
            b2: col(&|s| s.beta2),
            c2: col(&|s| 1.0 - s.beta2),
            inv_sqrt_bias2: col(&|s| 1.0 / (1.0 - s.beta2.powi(t)).sqrt()),
            eps: col(&|s| s.eps),
            step_size: col(&|s| s.lr_at(step) / (1.0 - s.beta1.powi(t))),
        };

        let params = params_of(&model);
        let mut g: Vec<Tensor<2>> = params
            .iter()
            .map(|(id, dims, _)| match grads.remove::<3>(*id) {
                Some(g) => flat(g),
                // A parameter the loss does not reach (none in the lab's networks today) has zero gradient.
                None => Tensor::zeros([dims[0], dims[1] * dims[2]], &device),
            })
            .collect();
        if specs.iter().any(|s| s.grad_clip > 0.0) {
            // Each model's global gradient norm, scaled down to its own limit (a factor of
            // exactly 1 leaves a gradient bit for bit as it was).
            let limit = col(&|s| {
                if s.grad_clip > 0.0 {
                    s.grad_clip
                } else {
                    f64::INFINITY
                }
            });
            let total = g
                .iter()
                .map(|g| g.clone().powf_scalar(2.0).sum_dim(1))
                .reduce(|a, b| a + b)
                .expect("a network has parameters");
            let factor = (total.sqrt().recip() * limit).clamp_max(1.0);
            g = g.into_iter().map(|g| g * factor.clone()).collect();
        }
        let first = values(&self.moments.first);
        let second = values(&self.moments.second);
        let current = values(&model).into_iter().map(|p| p.inner());
        let on_cpu = matches!(
            device.clone().without_autodiff().as_dispatch(),
            DispatchDevice::Flex(_)
        );
        // The CPU's update takes each model's hyperparameters as one row, built once a step.
        let packed = on_cpu.then(|| [hyper.packed(&decay_all), hyper.packed(&decay_others)]);
        let (mut new_params, mut new_first, mut new_second) = (Vec::new(), Vec::new(), Vec::new());
        let moments = first.into_iter().zip(second);
        for (((g, (m, v)), p), (_, _, matrix)) in
            g.into_iter().zip(moments).zip(current).zip(&params)
        {
            let decay = if *matrix { &decay_all } else { &decay_others };
            // On the CPU one pass per parameter (flex.rs), bit for bit the composite.
            let [p, m, v] = match &packed {
                Some([all, others]) => fused(p, g, m, v, if *matrix { all } else { others }),
                None => composite(p, g, m, v, &hyper, decay),
            };
            new_params.push(p);
            new_first.push(m);
            new_second.push(v);
        }
        self.moments.first = replace(self.moments.first.clone(), new_first);
        self.moments.second = replace(self.moments.second.clone(), new_second);
        model.map(&mut Update(new_params.into_iter()))
    }
}

/// One step's hyperparameters, each model's in a `[models, 1]` column.
struct Hyper {
    b1: Tensor<2>,
    /// `1 - beta1`
    c1: Tensor<2>,
    b2: Tensor<2>,
    /// `1 - beta2`
    c2: Tensor<2>,
    /// `1 / sqrt(1 - beta2^t)`: the second moment's bias correction, on its root.
    inv_sqrt_bias2: Tensor<2>,
    eps: Tensor<2>,
    /// `lr / (1 - beta1^t)`: the learning rate with the first moment's bias correction.
    step_size: Tensor<2>,
}

/// One parameter's value and moments after the step, `[models, n]` each, composed of tensor
/// ops (the GPU's path): PyTorch's AdamW with `decay` = `1 - lr * weight_decay` (or 1).
fn composite(
    p: Tensor<2>,
    g: Tensor<2>,
    m: Tensor<2>,
    v: Tensor<2>,
    h: &Hyper,
    decay: &Tensor<2>,
) -> [Tensor<2>; 3] {
    let m = m * h.b1.clone() + g.clone() * h.c1.clone();
    let v = v * h.b2.clone() + g.powf_scalar(2.0) * h.c2.clone();
    let denom = v.clone().sqrt() * h.inv_sqrt_bias2.clone() + h.eps.clone();
    let p = p * decay.clone() - m.clone() / denom * h.step_size.clone();
    [p, m, v]
}

/// [`composite`] as one operation on the CPU (flex.rs): one pass over the parameter, with the
/// hyperparameters and decay as [`Hyper::packed`] rows.
fn fused(
    p: Tensor<2>,
    g: Tensor<2>,
    m: Tensor<2>,
    v: Tensor<2>,
    hyper: &Tensor<2>,
) -> [Tensor<2>; 3] {
    let [models, n] = p.dims();
    let all = <Dispatch as AdamBackend>::adamw(
        p.into_dispatch(),
        g.into_dispatch(),
        m.into_dispatch(),
        v.into_dispatch(),
        hyper.clone().into_dispatch(),
    );
    let all = Tensor::<3>::from_dispatch(all);
    std::array::from_fn(|i| all.clone().narrow(0, i, 1).reshape([models, n]))
}

impl Hyper {
    /// Each model's hyperparameters and `decay` as one row `[models, HYPER]`, in the order
    /// flex.rs reads them.
    fn packed(&self, decay: &Tensor<2>) -> Tensor<2> {
        let columns = [
            &self.b1,
            &self.c1,
            &self.b2,
            &self.c2,
            &self.inv_sqrt_bias2,
            &self.eps,
            &self.step_size,
            decay,
        ];
        Tensor::cat(columns.into_iter().cloned().collect(), 1)
    }
}

/// Each parameter's new value (flattened) in visiting order, as new trainable leaves.
struct Update<I>(I);
impl<I: Iterator<Item = Tensor<2>>> ModuleMapper for Update<I> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let updated = self.0.next().expect("one update per parameter");
        let (id, tensor, mapper) = param.consume();
        let updated = Tensor::from_inner(updated.reshape(tensor.dims())).require_grad();
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// Each parameter's id, `[models, a, b]` dims and whether it is a linear layer's matrix (the
/// field `weight`; embeddings are `wte`/`wpe`, norms `gamma`/`beta`, biases `bias`), in
/// visiting order.
fn params_of<M: Module>(model: &M) -> Vec<(burn::module::ParamId, [usize; 3], bool)> {
    #[derive(Default)]
    struct Ids {
        path: Vec<String>,
        params: Vec<(burn::module::ParamId, [usize; 3], bool)>,
    }
    impl ModuleVisitor for Ids {
        fn enter_module(&mut self, name: &str, _container: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let dims = param.dims();
            let matrix = self.path.last().is_some_and(|name| name == "weight");
            self.params
                .push((param.id, [dims[0], dims[1], dims[2]], matrix));
        }
    }
    let mut ids = Ids::default();
    model.visit(&mut ids);
    ids.params
}

/// A module's parameters in visiting order, flattened to `[models, rest]`.
fn values<M: Module>(module: &M) -> Vec<Tensor<2>> {
    struct Values(Vec<Tensor<2>>);
    impl ModuleVisitor for Values {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(flat(param.val()));
        }
    }
    let mut v = Values(Vec::new());
    module.visit(&mut v);
    v.0
}

/// `module` with its parameters replaced, in visiting order, by `values` (flattened).
fn replace<M: Module>(module: M, values: Vec<Tensor<2>>) -> M {
    struct Replace(std::vec::IntoIter<Tensor<2>>);
    impl ModuleMapper for Replace {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let value = self.0.next().expect("one value per parameter");
            param.map(|t| value.reshape(t.dims()))
        }
    }
    module.map(&mut Replace(values.into_iter()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use elab_job::ModelSpec;
    use elab_model::{Gpt, GptConfig};

    /// The CPU's one-pass update against the composite: parameter and moments bit for bit,
    /// two models with their own hyperparameters, 70k elements each (several parallel pieces
    /// of unequal size), moments as views into an earlier step's output (as they are after
    /// the first step).
    #[test]
    fn the_cpu_adamw_update_is_the_composite_bit_for_bit() {
        use burn::tensor::Distribution;
        let device = Device::flex();
        device.seed(4);
        let (models, n) = (2, 70_000);
        let random = |dist| Tensor::<2>::random([models, n], dist, &device);
        let p = random(Distribution::Normal(0.0, 0.2));
        let g = random(Distribution::Normal(0.0, 1e-2));
        let col = |a: f64, b: f64| column([a, b].into_iter(), &device);
        let h = Hyper {
            b1: col(0.9, 0.8),
            c1: col(0.1, 0.2),
            b2: col(0.999, 0.98),
            c2: col(0.001, 0.02),
            inv_sqrt_bias2: col(1.3, 2.1),
            eps: col(1e-8, 1e-6),
            step_size: col(1e-3, 3e-4),
        };
        let decay = col(0.9999, 1.0);
        // Moments from a first step of each kind: the fused one's are views at offsets.
        let zero = Tensor::<2>::zeros([models, n], &device);
        let packed = h.packed(&decay);
        let [_, m0, v0] = fused(p.clone(), g.clone(), zero.clone(), zero, &packed);
        let g = random(Distribution::Normal(0.0, 1e-2));
        let bits = |t: Tensor<2>| -> Vec<u32> {
            let v = t.into_data().try_to_vec::<f32>().unwrap();
            v.iter().map(|x| x.to_bits()).collect()
        };
        let a = fused(p.clone(), g.clone(), m0.clone(), v0.clone(), &packed);
        let b = composite(p, g, m0, v0, &h, &decay);
        for (what, (a, b)) in ["param", "first", "second"]
            .iter()
            .zip(a.into_iter().zip(b))
        {
            let (a, b) = (bits(a), bits(b));
            let differ = a.iter().zip(&b).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "{what}: {differ} of {} differ", a.len());
        }
    }

    #[test]
    fn only_linear_matrices_count_as_matrices() {
        let spec = ModelSpec {
            n_layer: 2,
            d_model: 16,
            n_head: 2,
            d_mlp: 32,
            ..ModelSpec::default()
        };
        let model = GptConfig::from_spec(&spec, 10, 5).init(&Device::flex());
        let params = params_of(&model);
        // Per block: c_attn, c_proj, c_fc, mlp c_proj; then lm_head.
        assert_eq!(params.iter().filter(|p| p.2).count(), 2 * 4 + 1);
        // wte and wpe come first and are not decayed under `matrices`.
        assert!(!params[0].2 && !params[1].2);
    }

    #[test]
    fn weight_decay_applies_per_model_and_per_parameter_kind() {
        let device = Device::flex().autodiff();
        let spec = ModelSpec {
            n_layer: 1,
            d_model: 8,
            n_head: 2,
            d_mlp: 16,
            ..ModelSpec::default()
        };
        let config = GptConfig::from_spec(&spec, 10, 5);
        let pack = elab_model::pack::stack(vec![config.init(&device), config.init(&device)]);
        let before = pack.clone();
        let all = TrainSpec {
            lr: 0.1,
            weight_decay: 1.0,
            warmup_steps: 0,
            ..TrainSpec::default()
        };
        let matrices = TrainSpec {
            weight_decay_on: DecayOn::Matrices,
            ..all.clone()
        };
        // No gradient: the update is the decay alone, a factor 1 - lr * wd = 0.9.
        let mut optim = PackedAdamW {
            moments: Moments::zeros(&pack),
        };
        let after = optim.step(pack, GradientsParams::new(), &[&all, &matrices], 1);
        let ratio = |model: &Gpt, param: usize, m: usize| {
            let (x, y) = (
                &values(&model.valid())[param],
                &values(&before.valid())[param],
            );
            let x = x.clone().narrow(0, m, 1).sum().into_scalar::<f32>();
            let y = y.clone().narrow(0, m, 1).sum().into_scalar::<f32>();
            x / y
        };
        let close = |r: f32, want: f32| (r - want).abs() < 1e-5;
        let params = params_of(&after);
        let matrix = params.iter().position(|p| p.2).unwrap();
        // wte (parameter 0): shrunk in the first model, untouched in the second.
        assert!(close(ratio(&after, 0, 0), 0.9) && close(ratio(&after, 0, 1), 1.0));
        // A matrix: shrunk in both.
        assert!(close(ratio(&after, matrix, 0), 0.9) && close(ratio(&after, matrix, 1), 0.9));
    }
}
