//! Which examples a step reads, and how they become tensors.

use burn::prelude::*;
use elab_job::JobSpec;
use elab_tasks::{Dataset, SplitMix64, shuffle};

pub(super) fn batch_size(spec: &JobSpec, data: &Dataset) -> usize {
    match spec.train.batch_size {
        0 => data.train.len(),
        b => b.min(data.train.len()),
    }
}

/// The order in which training examples are visited: epoch e is a shuffle seeded by
/// (seed, e); step t takes the (t-1)-th batch of that order. Full batch skips the shuffle.
pub(super) struct BatchOrder {
    seed: u64,
    pub(super) batch: usize,
    epoch: Option<u64>,
    perm: Vec<u32>,
}

impl BatchOrder {
    pub(super) fn new(seed: u64, n: usize, batch: usize) -> Self {
        Self {
            seed,
            batch,
            epoch: None,
            perm: (0..n as u32).collect(),
        }
    }

    pub(super) fn indices(&mut self, step: u64) -> &[u32] {
        let per_epoch = (self.perm.len() / self.batch) as u64;
        let (epoch, pos) = ((step - 1) / per_epoch, ((step - 1) % per_epoch) as usize);
        if self.batch < self.perm.len() && self.epoch != Some(epoch) {
            self.perm = (0..self.perm.len() as u32).collect();
            shuffle(
                &mut self.perm,
                &mut SplitMix64::derive(self.seed, 1_000 + epoch),
            );
            self.epoch = Some(epoch);
        }
        &self.perm[pos * self.batch..(pos + 1) * self.batch]
    }
}

/// Each model's examples `[models][n]` as input ids `[models * n * n_ctx]`: every token but
/// the last, row-major.
pub(super) fn inputs(examples: &[Vec<&[u32]>], data: &Dataset) -> (Vec<i64>, [usize; 3]) {
    let n_ctx = data.seq_len() - 1;
    let n = examples[0].len();
    let ids = examples
        .iter()
        .flatten()
        .flat_map(|s| s[..n_ctx].iter().map(|&t| t as i64))
        .collect();
    (ids, [examples.len(), n, n_ctx])
}

/// Each model's answer tokens `[models * n * answer_len]`.
pub(super) fn answers(examples: &[Vec<&[u32]>], data: &Dataset) -> (Vec<i64>, [usize; 3]) {
    let n = examples[0].len();
    let ids = examples
        .iter()
        .flatten()
        .flat_map(|s| s[data.prompt_len..].iter().map(|&t| t as i64))
        .collect();
    (ids, [examples.len(), n, data.answer_len])
}

pub(super) fn int_tensor(
    (values, shape): &(Vec<i64>, [usize; 3]),
    device: &Device,
) -> Tensor<3, Int> {
    Tensor::from_data(TensorData::new(values.clone(), *shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_order_covers_each_epoch_once_and_reshuffles() {
        let mut order = BatchOrder::new(1, 10, 3);
        let mut first: Vec<u32> = (1..=3).flat_map(|s| order.indices(s).to_vec()).collect();
        let second: Vec<u32> = (4..=6).flat_map(|s| order.indices(s).to_vec()).collect();
        assert_ne!(first, second);
        first.sort();
        first.dedup();
        assert_eq!(first.len(), 9);
        // A fresh order (a resumed run) gives the same batch for the same step.
        assert_eq!(BatchOrder::new(1, 10, 3).indices(5), order.indices(5));
    }
}
