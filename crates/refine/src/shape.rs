//! A model shape for a parameter count that falls between (or beyond) the rungs of a size
//! ladder: the shape fields are interpolated along the ladder and the shape whose parameter
//! count is closest to the target is kept.

/// One shape of a ladder, with its learning rate (a size may override `train.lr`).
#[derive(Debug, Clone, PartialEq)]
pub struct Rung {
    pub n_layer: usize,
    pub d_model: usize,
    pub n_head: usize,
    pub d_mlp: usize,
    pub lr: f64,
}

impl Rung {
    fn same_shape(&self, other: &Rung) -> bool {
        (self.n_layer, self.d_model, self.n_head, self.d_mlp)
            == (other.n_layer, other.d_model, other.n_head, other.d_mlp)
    }
}

/// The shape for `target_log10` (log10 of `params`) on `ladder`, or `None` when the ladder
/// has fewer than two distinct sizes, already has a size at the target, or no shape fits.
///
/// Between two rungs `a` and `b` (by parameter count), at the fraction `t` of the way from
/// `a` to `b` in log10 params: n_layer ranges over the rungs' values, n_head is one of theirs
/// (and divides d_model; any count up to the larger rung's if no d_model they divide fits),
/// d_mlp / d_model and the learning rate are interpolated geometrically at `t`, and every
/// d_model up to 4 times the larger rung's is tried. The
/// shape kept is the one closest to the target in log10 params among those strictly between
/// `a` and `b`, so that it never duplicates a rung and always splits the gap. Beyond an edge
/// the two edge rungs are extrapolated the same way, and the shape lies strictly beyond the
/// edge.
pub fn interpolate_shape(
    ladder: &[Rung],
    target_log10: f64,
    params: impl Fn(&Rung) -> u64,
) -> Option<Rung> {
    let mut rungs: Vec<(f64, &Rung)> = ladder
        .iter()
        .map(|r| ((params(r) as f64).log10(), r))
        .collect();
    rungs.sort_by(|a, b| a.0.total_cmp(&b.0));
    rungs.dedup_by(|a, b| a.0 == b.0);
    let n = rungs.len();
    if n < 2 || !target_log10.is_finite() || rungs.iter().any(|r| r.0 == target_log10) {
        return None;
    }
    // The two rungs to interpolate between (or extrapolate from), and the open interval of
    // log10 params the new shape must fall in.
    let (a, b, bounds) = if target_log10 > rungs[n - 1].0 {
        (rungs[n - 2], rungs[n - 1], (rungs[n - 1].0, f64::INFINITY))
    } else if target_log10 < rungs[0].0 {
        (rungs[0], rungs[1], (f64::NEG_INFINITY, rungs[0].0))
    } else {
        let i = rungs.iter().rposition(|r| r.0 < target_log10)?;
        (rungs[i], rungs[i + 1], (rungs[i].0, rungs[i + 1].0))
    };
    let t = (target_log10 - a.0) / (b.0 - a.0);
    let (a, b) = (a.1, b.1);
    let geometric = |x: f64, y: f64| x * (y / x).powf(t);
    let ratio = geometric(
        a.d_mlp as f64 / a.d_model as f64,
        b.d_mlp as f64 / b.d_model as f64,
    );
    let lr = if a.lr == b.lr {
        a.lr
    } else {
        geometric(a.lr, b.lr)
    };
    let layers_at_t = (a.n_layer as f64 + t * (b.n_layer as f64 - a.n_layer as f64))
        .round()
        .max(1.0) as usize;
    let layers = [a.n_layer, b.n_layer, layers_at_t];
    let (l_lo, l_hi) = (*layers.iter().min()?, *layers.iter().max()?);
    let rung_heads: Vec<usize> = if a.n_head == b.n_head {
        vec![a.n_head]
    } else {
        vec![a.n_head, b.n_head]
    };
    let heads_at_t = geometric(a.n_head as f64, b.n_head as f64);
    let d_max = 4 * a.d_model.max(b.d_model);
    let best_with = |heads: &[usize]| {
        let mut best: Option<((f64, f64), Rung)> = None;
        for n_layer in l_lo..=l_hi {
            for &n_head in heads {
                for d_model in (n_head..=d_max).step_by(n_head) {
                    let candidate = Rung {
                        n_layer,
                        d_model,
                        n_head,
                        d_mlp: ((ratio * d_model as f64).round() as usize).max(1),
                        lr,
                    };
                    let x = (params(&candidate) as f64).log10();
                    if !(x > bounds.0 && x < bounds.1)
                        || ladder.iter().any(|r| r.same_shape(&candidate))
                    {
                        continue;
                    }
                    // Closest in params; among equal counts (n_head does not change them),
                    // the head count closest to the rungs'.
                    let key = ((x - target_log10).abs(), (n_head as f64 - heads_at_t).abs());
                    if best.as_ref().is_none_or(|(k, _)| key < *k) {
                        best = Some((key, candidate));
                    }
                }
            }
        }
        best.map(|(_, shape)| shape)
    };
    // The rungs' head counts first; only when no d_model they divide fits in the gap (d20 and
    // d24 with 4 heads), any head count up to the larger rung's (d22 with 2 heads).
    best_with(&rung_heads).or_else(|| {
        let any: Vec<usize> = (1..=a.n_head.max(b.n_head)).collect();
        best_with(&any)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use elab_job::{ModelSpec, param_counts};

    /// Total parameters on 3-digit addition's vocabulary and context, as the sweep counts them.
    fn count(r: &Rung) -> u64 {
        let model = ModelSpec {
            n_layer: r.n_layer,
            d_model: r.d_model,
            n_head: r.n_head,
            d_mlp: r.d_mlp,
            ..ModelSpec::default()
        };
        param_counts(&model, 14, 12).total
    }

    fn rung(n_layer: usize, d_model: usize, n_head: usize) -> Rung {
        Rung {
            n_layer,
            d_model,
            n_head,
            d_mlp: 4 * d_model,
            lr: 3e-3,
        }
    }

    #[test]
    fn a_target_between_two_rungs_gets_a_shape_strictly_between_close_to_it() {
        // The arith ladder's widest gap: d32 to d48 (1 layer, 4 heads).
        let ladder = vec![rung(1, 16, 2), rung(1, 32, 4), rung(1, 48, 4)];
        let (lo, hi) = (count(&ladder[1]) as f64, count(&ladder[2]) as f64);
        let target = 0.5 * (lo.log10() + hi.log10());
        let shape = interpolate_shape(&ladder, target, count).unwrap();
        let p = count(&shape) as f64;
        assert!(p > lo && p < hi, "{p} not in ({lo}, {hi}): {shape:?}");
        assert!(
            (p.log10() - target).abs() < 0.02,
            "{shape:?}: log10 {} vs target {target}",
            p.log10()
        );
        assert_eq!((shape.n_layer, shape.n_head), (1, 4));
        assert_eq!(
            shape.d_mlp,
            4 * shape.d_model,
            "the ladder's d_mlp rule is kept"
        );
        assert_eq!(shape.d_model % shape.n_head, 0);
    }

    #[test]
    fn layers_heads_and_lr_are_interpolated_between_unlike_rungs() {
        // 1 layer / 2 heads / lr 1e-2 to 3 layers / 4 heads / lr 1e-3.
        let mut a = rung(1, 16, 2);
        a.lr = 1e-2;
        let mut b = rung(3, 64, 4);
        b.lr = 1e-3;
        let (lo, hi) = (count(&a) as f64, count(&b) as f64);
        for t in [0.25, 0.5, 0.75] {
            let target = lo.log10() + t * (hi.log10() - lo.log10());
            let shape = interpolate_shape(&[a.clone(), b.clone()], target, count).unwrap();
            let p = count(&shape) as f64;
            assert!(p > lo && p < hi, "t = {t}: {shape:?}");
            assert!((p.log10() - target).abs() < 0.03, "t = {t}: {shape:?}");
            assert!((1..=3).contains(&shape.n_layer) && [2, 4].contains(&shape.n_head));
            let lr = 1e-2 * 0.1f64.powf(t);
            assert!((shape.lr - lr).abs() < 1e-12, "t = {t}: lr {}", shape.lr);
        }
    }

    #[test]
    fn beyond_an_edge_the_shape_lies_beyond_it_and_a_rung_is_never_repeated() {
        let ladder = vec![rung(1, 8, 2), rung(1, 12, 2), rung(1, 16, 2)];
        let logs: Vec<f64> = ladder.iter().map(|r| (count(r) as f64).log10()).collect();
        let above = interpolate_shape(&ladder, logs[2] + (logs[2] - logs[1]), count).unwrap();
        assert!(count(&above) > count(&ladder[2]), "{above:?}");
        let below = interpolate_shape(&ladder, logs[0] - (logs[1] - logs[0]), count).unwrap();
        assert!(count(&below) < count(&ladder[0]), "{below:?}");
        // A target on a rung, or a gap with no shape inside it, adds nothing.
        assert_eq!(interpolate_shape(&ladder, logs[1], count), None);
        let adjacent = vec![rung(1, 8, 2), rung(1, 9, 3)];
        let l: Vec<f64> = adjacent.iter().map(|r| (count(r) as f64).log10()).collect();
        assert_eq!(
            interpolate_shape(&adjacent, 0.5 * (l[0] + l[1]), count),
            None
        );
        assert_eq!(interpolate_shape(&ladder[..1], 3.0, count), None);
    }

    #[test]
    fn when_the_rungs_head_count_divides_nothing_in_the_gap_another_one_does() {
        // d20 and d24 with 4 heads: no multiple of 4 in between; d22 with 2 heads is.
        let ladder = vec![rung(1, 20, 4), rung(1, 24, 4)];
        let l: Vec<f64> = ladder.iter().map(|r| (count(r) as f64).log10()).collect();
        let shape = interpolate_shape(&ladder, 0.5 * (l[0] + l[1]), count).unwrap();
        assert_eq!((shape.d_model, shape.n_head), (22, 2), "{shape:?}");
        // d14 and d16 (2 heads): d15 takes the one head count up to 2 that divides it.
        let ladder = vec![rung(1, 14, 2), rung(1, 16, 2)];
        let l: Vec<f64> = ladder.iter().map(|r| (count(r) as f64).log10()).collect();
        let shape = interpolate_shape(&ladder, 0.5 * (l[0] + l[1]), count).unwrap();
        assert_eq!((shape.d_model, shape.n_head), (15, 1), "{shape:?}");
    }
}
