//! Decision: the verdict vocabulary, the criteria, and how a fit against the smooth null becomes
//! a verdict (flat, smooth, emergent, or unresolved with what to add).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::MIN_SIZES;
use super::fit::{K_MAX, LogisticFit, fit_bounded, sigmoid, width_of};
use super::noise::{Summary, Table};
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
    /// the smooth null), located inside the ladder.
    Emergent,
    /// Changes with scale, and a smooth curve explains it within the seeds' noise.
    Smooth,
    /// Barely changes over the sampled range.
    Flat,
    /// A rise no smooth curve explains, but the ladder cannot place it: it falls between two
    /// adjacent sizes or at the ladder's edge (see the report's `note` for what to add).
    Unresolved,
    /// Fewer than [`MIN_SIZES`] distinct sizes.
    #[serde(rename = "not enough sizes")]
    NotEnoughSizes,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Emergent => "emergent",
            Verdict::Smooth => "smooth",
            Verdict::Flat => "flat",
            Verdict::Unresolved => "unresolved",
            Verdict::NotEnoughSizes => "not enough sizes",
        })
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
    let free = fit_bounded(&s.xs, &s.means, &s.weights, K_MAX, bounds)?;
    let k_null = width_of(c.max_width_decades.max(1e-9));
    let null = fit_bounded(&s.xs, &s.means, &s.weights, k_null, bounds)?;
    // The free model contains the null; an optimizer miss must not make the statistic negative.
    let stat = (null.rss - free.rss).max(0.0);
    Some(Comparison { free, null, stat })
}

/// The verdict for one (resampled) data set, and the note explaining an `unresolved`.
pub(super) fn decide(
    s: &Summary,
    cmp: Option<&Comparison>,
    significant: bool,
    table: &Table,
    c: &Criteria,
) -> (Verdict, Option<String>) {
    let Some(cmp) = cmp.filter(|_| stats::distinct_count(&s.xs) >= MIN_SIZES) else {
        return (Verdict::NotEnoughSizes, None);
    };
    let range = s.means.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - s.means.iter().copied().fold(f64::INFINITY, f64::min);
    let g = &cmp.free;
    if range < c.flat_range {
        return (Verdict::Flat, None);
    }
    if g.width_decades >= c.max_width_decades || !significant {
        return (Verdict::Smooth, None);
    }
    let scale = |x: f64| 10f64.powf(x);
    let below = s.xs.iter().filter(|&&x| x < g.x0).count();
    let above = s.xs.iter().filter(|&&x| x > g.x0).count();
    if above < c.min_sizes_each_side {
        let top = table.scales.last().copied().unwrap_or(f64::NAN);
        return (
            Verdict::Unresolved,
            Some(format!(
                "rise at the top of the ladder: add sizes above {top:.3e}"
            )),
        );
    }
    if below < c.min_sizes_each_side {
        let bottom = table.scales.first().copied().unwrap_or(f64::NAN);
        return (
            Verdict::Unresolved,
            Some(format!(
                "rise at the bottom of the ladder: add sizes below {bottom:.3e}"
            )),
        );
    }
    // A size "inside the rise" has a fitted value between 10% and 90% of the way up. With none,
    // any x0 in the gap fits as well: the data locate the rise only to the gap.
    let inside =
        s.xs.iter()
            .any(|&x| (0.1..=0.9).contains(&sigmoid(g.k * (x - g.x0))));
    if !inside {
        let (lo, hi) = bracket(&s.xs, g.x0);
        return (
            Verdict::Unresolved,
            Some(format!(
                "{BETWEEN} {:.3e} and {:.3e}: add sizes in between (geometric midpoint {:.3e})",
                scale(lo),
                scale(hi),
                scale(0.5 * (lo + hi))
            )),
        );
    }
    (Verdict::Emergent, None)
}

/// Whether a verdict is `unresolved` because the rise falls between two adjacent sizes.
pub fn is_between_rungs(verdict: Verdict, note: Option<&str>) -> bool {
    verdict == Verdict::Unresolved && note.is_some_and(|n| n.starts_with(BETWEEN))
}

const BETWEEN: &str = "rise between sizes";

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
