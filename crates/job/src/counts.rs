//! Parameter and compute counts in closed form (Kaplan et al. 2020; Hoffmann et al. 2022).
//! `elab-model` checks these against the parameters its module really holds.

use serde::Serialize;

use crate::{Arch, ModelSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamCounts {
    /// Every trainable parameter.
    pub total: u64,
    /// Without token and position embeddings and without the unembedding (Kaplan's N).
    pub non_embedding: u64,
    /// Kaplan's approximation 12 * n_layer * d_model^2.
    pub kaplan_12ld2: u64,
}

/// Counts for a decoder with biases in every Linear (but the attention's when `attn_bias` is
/// off) and LayerNorm, as `elab-model` builds it. For an MLP (`arch = "mlp"`) the first
/// layer, one row per (position, token), counts as its embedding, and its head as the
/// unembedding.
pub fn param_counts(m: &ModelSpec, vocab: usize, n_ctx: usize) -> ParamCounts {
    let (d, f, l) = (m.d_model as u64, m.d_mlp as u64, m.n_layer as u64);
    if m.arch == Arch::Mlp {
        let non_embedding = d + (l - 1) * (d * d + d);
        return ParamCounts {
            total: n_ctx as u64 * vocab as u64 * d
                + non_embedding
                + (d * vocab as u64 + vocab as u64),
            non_embedding,
            kaplan_12ld2: 12 * l * d * d,
        };
    }
    let norm = if m.layer_norm { 2 * d } else { 0 };
    let attention = 4 * d * d + if m.attn_bias { 4 * d } else { 0 };
    let mlp = (d * f + f) + (f * d + d);
    let block = 2 * norm + attention + mlp;
    let non_embedding = l * block + norm;
    let embeddings = (vocab as u64 + n_ctx as u64) * d;
    let unembedding = if m.tied_embeddings {
        0
    } else {
        vocab as u64 * d
    };
    ParamCounts {
        total: non_embedding + embeddings + unembedding,
        non_embedding,
        kaplan_12ld2: 12 * l * d * d,
    }
}

/// Training FLOPs per token: 3 x (forward 2N + 2 * n_layer * n_ctx * d_model), N non-embedding
/// (an MLP has no attention term).
pub fn train_flops_per_token(m: &ModelSpec, counts: &ParamCounts, n_ctx: usize) -> f64 {
    let attention = match m.arch {
        Arch::Gpt => 2.0 * m.n_layer as f64 * n_ctx as f64 * m.d_model as f64,
        Arch::Mlp => 0.0,
    };
    3.0 * (2.0 * counts.non_embedding as f64 + attention)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanda_model_is_about_227k() {
        // 1 layer, d 128, 4 heads, d_mlp 512, no LayerNorm, untied, vocab 114, 3 input tokens.
        let m = ModelSpec {
            n_layer: 1,
            d_model: 128,
            n_head: 4,
            d_mlp: 512,
            layer_norm: false,
            tied_embeddings: false,
            ..ModelSpec::default()
        };
        let c = param_counts(&m, 114, 3);
        // Attention 4*128^2 + MLP 2*128*512 = 196,608 weights (+ 1,280 biases),
        // embed 114*128 + pos 3*128, unembed 114*128.
        assert_eq!(c.non_embedding, 196_608 + 4 * 128 + 512 + 128);
        assert_eq!(c.total, c.non_embedding + 114 * 128 + 3 * 128 + 114 * 128);
        assert!((225_000..232_000).contains(&c.total));
        assert_eq!(c.kaplan_12ld2, 12 * 128 * 128);
    }

    #[test]
    fn kaplan_approximation_holds_when_d_mlp_is_4d() {
        let m = ModelSpec {
            n_layer: 6,
            d_model: 384,
            n_head: 6,
            d_mlp: 1536,
            ..ModelSpec::default()
        };
        let c = param_counts(&m, 13, 16);
        let ratio = c.non_embedding as f64 / c.kaplan_12ld2 as f64;
        assert!((1.0..1.01).contains(&ratio), "{ratio}");
        let flops = train_flops_per_token(&m, &c, 16);
        assert_eq!(
            flops,
            6.0 * c.non_embedding as f64 + 6.0 * 6.0 * 16.0 * 384.0
        );
    }
}
