//! Decision: the verdict vocabulary, the criteria, and how a fit against the smooth null becomes
//! a verdict (flat, smooth, emergent, or unresolved with what to add).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::MIN_SIZES;
use super::fit::{K_MAX, LogisticFit, Shape, fit_either, width_of};
use super::noise::Summary;
use crate::stats;

/// The free logistic, the smooth null, and the statistic comparing them.
#[derive(Debug, Clone)]
pub(super) struct Comparison {
    pub(super) free: LogisticFit,
    pub(super) null: LogisticFit,
    /// Weighted RSS(null) - RSS(free): with precision weights, the chi-square that only a rise
    /// sharper than the criterion removes.
    pub(super) stat: f64,
}

/// How a score behaves over scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// A rise sharper than the width criterion that no smooth curve explains (the test rejects
    /// the smooth null), located inside the ladder. For two-state runs: the probability that a
    /// run acquires rises within less than the criterion width.
    Emergent,
    /// A seed lottery: each run acquires or not, and the share of runs that acquire rises over
    /// at least the criterion width (the sharp acquisition null is rejected).
    Lottery,
    /// Changes with scale, and a smooth curve explains it within the seeds' noise.
    Smooth,
    /// Barely changes over the sampled range.
    Flat,
    /// The data cannot settle it; the report's `reason` ([`Unresolved`]) says why and what to
    /// add.
    Unresolved,
    /// Fewer than [`MIN_SIZES`] distinct sizes.
    #[serde(rename = "not enough sizes")]
    NotEnoughSizes,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Emergent => "emergent",
            Verdict::Lottery => "lottery",
            Verdict::Smooth => "smooth",
            Verdict::Flat => "flat",
            Verdict::Unresolved => "unresolved",
            Verdict::NotEnoughSizes => "not enough sizes",
        })
    }
}

/// Why a verdict is `unresolved`, with the sizes (in the units of scale) that would settle it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Unresolved {
    /// A sharp rise with no size inside it: it lies between two adjacent sizes.
    BetweenSizes { below: f64, above: f64 },
    /// A sharp rise with fewer than `min_sizes_each_side` sizes above it.
    TopEdge { largest: f64 },
    /// A sharp rise with fewer than `min_sizes_each_side` sizes below it.
    BottomEdge { smallest: f64 },
    /// A sharp rise, but the ladder does not reach the criterion width beyond it on each side,
    /// so a smooth curve of that width could bend just outside the data: sizes to add down to
    /// `add_below` and up to `add_above` (where short).
    LadderTooShort {
        add_below: Option<f64>,
        add_above: Option<f64>,
    },
    /// Two-state runs, but too few of them to tell a jump from a lottery: neither the smooth
    /// nor the sharp acquisition null is rejected. More seeds settle it.
    TooFewSeeds,
}

impl Unresolved {
    /// The short name written in the `reason` column.
    pub fn tag(&self) -> &'static str {
        match self {
            Unresolved::BetweenSizes { .. } => "between_sizes",
            Unresolved::TopEdge { .. } => "top_edge",
            Unresolved::BottomEdge { .. } => "bottom_edge",
            Unresolved::LadderTooShort { .. } => "ladder_too_short",
            Unresolved::TooFewSeeds => "too_few_seeds",
        }
    }
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Unresolved::BetweenSizes { below, above } => write!(
                f,
                "rise between sizes {below:.3e} and {above:.3e}: add sizes in between \
                 (geometric midpoint {:.3e})",
                (below * above).sqrt()
            ),
            Unresolved::TopEdge { largest } => {
                write!(
                    f,
                    "rise at the top of the ladder: add sizes above {largest:.3e}"
                )
            }
            Unresolved::BottomEdge { smallest } => write!(
                f,
                "rise at the bottom of the ladder: add sizes below {smallest:.3e}"
            ),
            Unresolved::LadderTooShort {
                add_below,
                add_above,
            } => {
                f.write_str("ladder too short for the width criterion: add sizes")?;
                if let Some(b) = add_below {
                    write!(f, " down to {b:.3e}")?;
                }
                if let (Some(_), Some(_)) = (add_below, add_above) {
                    f.write_str(" and")?;
                }
                if let Some(a) = add_above {
                    write!(f, " up to {a:.3e}")?;
                }
                Ok(())
            }
            Unresolved::TooFewSeeds => f.write_str(
                "runs each acquire or not, but too few to tell a jump from a lottery: add seeds",
            ),
        }
    }
}

/// Thresholds for the verdict. Defaults assume scores in [0, 1] and x in decades.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Criteria {
    /// Below this spread (max - min of the per-size means) the curve is Flat (0.05 = 5 points).
    pub flat_range: f64,
    /// A rise is sharp when its 10%-90% width is below this many decades (1.0: most of the
    /// change within one decade of scale, as in Wei et al.'s examples, e.g. 13B -> 175B). The
    /// smooth null is every logistic at least this wide, lines and saturating curves included.
    pub max_width_decades: f64,
    /// Sizes needed strictly on each side of x0 (2: a jump at the grid's edge, pinned by one
    /// point, cannot be told from a curve that keeps bending beyond the data).
    pub min_sizes_each_side: usize,
    /// The score's possible range. Both fits keep their asymptotes inside it: without that, a
    /// wide logistic with a huge amplitude is locally as steep as any jump, and "width" would
    /// say nothing. Use infinite ends for an unbounded score.
    pub score_min: f64,
    /// Upper end of the score's range.
    pub score_max: f64,
    /// Level of the test against the smooth null (0.05: at most 5% of smooth curves are called
    /// emergent, as measured by the calibration tests).
    pub alpha: f64,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            flat_range: 0.05,
            max_width_decades: 1.0,
            min_sizes_each_side: 2,
            score_min: 0.0,
            score_max: 1.0,
            alpha: 0.05,
        }
    }
}

pub(super) fn compare(s: &Summary, c: &Criteria) -> Option<Comparison> {
    let bounds = (c.score_min, c.score_max);
    let free = fit_either(&s.xs, &s.means, &s.weights, K_MAX, bounds)?;
    let k_null = width_of(c.max_width_decades.max(1e-9));
    let null = fit_either(&s.xs, &s.means, &s.weights, k_null, bounds)?;
    // The free model contains the null; an optimizer miss must not make the statistic negative.
    let stat = (null.rss - free.rss).max(0.0);
    Some(Comparison { free, null, stat })
}

/// The verdict for one (resampled) data set on per-size means, and why it is `unresolved`.
pub(super) fn decide(
    s: &Summary,
    cmp: Option<&Comparison>,
    significant: bool,
    c: &Criteria,
) -> (Verdict, Option<Unresolved>) {
    let Some(cmp) = cmp.filter(|_| stats::distinct_count(&s.xs) >= MIN_SIZES) else {
        return (Verdict::NotEnoughSizes, None);
    };
    let g = &cmp.free;
    if range(&s.means) < c.flat_range {
        return (Verdict::Flat, None);
    }
    if g.width_decades >= c.max_width_decades || !significant {
        return (Verdict::Smooth, None);
    }
    sharp(&s.xs, g.x0, g.k, g.shape, c)
}

/// Max - min.
pub(super) fn range(ys: &[f64]) -> f64 {
    ys.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - ys.iter().copied().fold(f64::INFINITY, f64::min)
}

/// A rise judged sharp (midpoint `x0`, steepness `k`) on the ladder `xs` (log10, sorted): is it
/// placed? It needs `min_sizes_each_side` sizes on each side, a size inside the rise (else it
/// is only known to lie in a gap), and the criterion width of ladder on each side (else a
/// smooth curve of that width could bend just beyond the data). The gap comes before the
/// ladder's length: one size in it is the cheapest next step, and places the rise.
pub(super) fn sharp(
    xs: &[f64],
    x0: f64,
    k: f64,
    shape: Shape,
    c: &Criteria,
) -> (Verdict, Option<Unresolved>) {
    let scale = |x: f64| 10f64.powf(x);
    let (first, last) = (xs[0], xs[xs.len() - 1]);
    let unresolved = |r| (Verdict::Unresolved, Some(r));
    if xs.iter().filter(|&&x| x > x0).count() < c.min_sizes_each_side {
        return unresolved(Unresolved::TopEdge {
            largest: scale(last),
        });
    }
    if xs.iter().filter(|&&x| x < x0).count() < c.min_sizes_each_side {
        return unresolved(Unresolved::BottomEdge {
            smallest: scale(first),
        });
    }
    // A size "inside the rise" has a fitted value between 10% and 90% of the way up. With none,
    // any x0 in the gap fits as well: the data locate the rise only to the gap.
    let inside = xs
        .iter()
        .any(|&x| (0.1..=0.9).contains(&shape.basis(k * (x - x0))));
    if !inside {
        let (lo, hi) = bracket(xs, x0);
        return unresolved(Unresolved::BetweenSizes {
            below: scale(lo),
            above: scale(hi),
        });
    }
    let w = c.max_width_decades;
    // A hundredth of a decade of slack: ladders built to span exactly W are not turned away by
    // rounding in the parameter counts.
    let short_below = x0 - first < w - 0.01;
    let short_above = last - x0 < w - 0.01;
    if short_below || short_above {
        return unresolved(Unresolved::LadderTooShort {
            add_below: short_below.then(|| scale(x0 - w)),
            add_above: short_above.then(|| scale(x0 + w)),
        });
    }
    (Verdict::Emergent, None)
}

/// The largest x below `x0` and the smallest above (the ends of xs if none).
pub(super) fn bracket(xs: &[f64], x0: f64) -> (f64, f64) {
    let lo = xs
        .iter()
        .copied()
        .filter(|&x| x <= x0)
        .fold(f64::NAN, f64::max);
    let hi = xs
        .iter()
        .copied()
        .filter(|&x| x >= x0)
        .fold(f64::NAN, f64::min);
    let first = xs.first().copied().unwrap_or(f64::NAN);
    let last = xs.last().copied().unwrap_or(f64::NAN);
    (
        if lo.is_nan() { first } else { lo },
        if hi.is_nan() { last } else { hi },
    )
}
