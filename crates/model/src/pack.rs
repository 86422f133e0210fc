//! Packs of models: any module whose parameters all have a leading model axis (a [`Gpt`], or
//! an optimizer's moments stored as one) can be stacked from single models and cut back into
//! them. Parameter ids are those of the first module stacked, so an optimizer's state keyed by
//! position stays valid.
//!
//! [`Gpt`]: crate::Gpt

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

/// The modules' parameters stacked along the model axis, in the modules' order.
pub fn stack<M: Module>(modules: Vec<M>) -> M {
    /// Each module's parameters in visiting order, flattened to `[models, rest]`.
    struct Collect(Vec<Tensor<2>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(flat(param.val()));
        }
    }
    struct Stack(Vec<Vec<Tensor<2>>>, usize);
    impl ModuleMapper for Stack {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let parts: Vec<Tensor<2>> = self.0.iter().map(|p| p[self.1].clone()).collect();
            self.1 += 1;
            param.map(|t| {
                let mut dims = t.dims();
                let stacked = Tensor::cat(parts, 0);
                dims[0] = stacked.dims()[0];
                leaf(&t, stacked.reshape(dims))
            })
        }
    }
    let mut modules = modules.into_iter();
    let first = modules.next().expect("a pack holds at least one model");
    let mut params = vec![collect(&first)];
    params.extend(modules.map(|m| collect(&m)));
    fn collect<M: Module>(m: &M) -> Vec<Tensor<2>> {
        let mut c = Collect(Vec::new());
        m.visit(&mut c);
        c.0
    }
    first.map(&mut Stack(params, 0))
}

/// The models `which` of the pack (in that order), as a pack of `which.len()`.
pub fn select<M: Module>(module: &M, which: &[usize]) -> M {
    struct Select(Vec<i64>);
    impl ModuleMapper for Select {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let which = self.0.clone();
            param.map(|t| {
                let index = Tensor::<1, Int>::from_data(which.as_slice(), &t.device());
                leaf(&t, t.clone().select(0, index))
            })
        }
    }
    module
        .clone()
        .map(&mut Select(which.iter().map(|&i| i as i64).collect()))
}

/// A `[models, ...]` tensor as `[models, rest]`.
pub fn flat<const D: usize>(t: Tensor<D>) -> Tensor<2> {
    let dims = t.dims();
    t.reshape([dims[0], dims[1..].iter().product()])
}

/// `value` as a new leaf: detached from how it was computed, and trainable if `like` was.
fn leaf<const D: usize>(like: &Tensor<D>, value: Tensor<D>) -> Tensor<D> {
    if like.is_require_grad() {
        value.detach().require_grad()
    } else {
        value
    }
}
