//! Where to add sizes so that a threshold can be placed (the analysis half of adaptive
//! refinement: which scales to run next; running them is the sweep's job).

use crate::emergence::{ThresholdReport, Unresolved, Verdict};

/// log10 scales to add to a ladder (`ladder`: the log10 sizes fitted, sorted) so that the
/// threshold of `report` narrows:
///
/// * `unresolved` between two sizes: their geometric midpoint;
/// * `unresolved` at an edge: one size beyond it, at the edge's own spacing;
/// * `unresolved` on a ladder too short for the width criterion: the sizes it names;
/// * `emergent` with an interval wider than `target_width_decades`: the geometric midpoint of
///   every pair of adjacent sizes whose gap overlaps the interval;
/// * anything else (`unresolved` for too few seeds included: seeds are not sizes): nothing.
pub fn refinement_points(
    report: &ThresholdReport,
    ladder: &[f64],
    target_width_decades: f64,
) -> Vec<f64> {
    let n = ladder.len();
    if n < 2 {
        return Vec::new();
    }
    match report.reason {
        Some(Unresolved::BetweenSizes { below, above }) => {
            vec![0.5 * (below.log10() + above.log10())]
        }
        Some(Unresolved::TopEdge { .. }) => vec![ladder[n - 1] + (ladder[n - 1] - ladder[n - 2])],
        Some(Unresolved::BottomEdge { .. }) => vec![ladder[0] - (ladder[1] - ladder[0])],
        Some(Unresolved::LadderTooShort {
            add_below,
            add_above,
        }) => [add_below, add_above]
            .into_iter()
            .flatten()
            .map(f64::log10)
            .collect(),
        Some(Unresolved::TooFewSeeds) => Vec::new(),
        None if report.verdict == Verdict::Emergent => {
            match report.x0_ci_low.zip(report.x0_ci_high) {
                Some((lo, hi)) if hi - lo > target_width_decades => ladder
                    .windows(2)
                    .filter(|w| w[1] > lo && w[0] < hi)
                    .map(|w| 0.5 * (w[0] + w[1]))
                    .collect(),
                _ => Vec::new(),
            }
        }
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emergence::{Criteria, analyze_threshold};

    fn ladder() -> Vec<f64> {
        (0..17).map(|i| 3.0 + 0.25 * i as f64).collect()
    }

    fn report(f: impl Fn(f64) -> f64) -> ThresholdReport {
        let pts: Vec<_> = ladder()
            .into_iter()
            .flat_map(|x| {
                let y = f(x);
                (0..8).map(move |s| (10f64.powf(x), y + 0.003 * s as f64, s))
            })
            .collect();
        analyze_threshold(&pts, &Criteria::default(), Some(2000), 200, 1)
    }

    #[test]
    fn between_rungs_adds_the_midpoint_and_the_edge_one_beyond() {
        let r = report(|x| if x < 5.1 { 0.02 } else { 0.95 });
        let mid = refinement_points(&r, &ladder(), 0.2);
        assert!(
            mid.len() == 1 && (mid[0] - 5.125).abs() < 1e-9,
            "{mid:?} {r:?}"
        );
        let r = report(|x| 1.0 / (1.0 + (-6.0 * (x - 6.95)).exp()));
        assert_eq!(r.verdict, Verdict::Unresolved);
        assert_eq!(refinement_points(&r, &ladder(), 0.2), vec![7.25]);
        // A sharp rise with less than the criterion width of ladder below it: the size that
        // would reach it.
        // Half the seeds acquire at 10^3.5, all above: placed at 3.5, half a decade from the
        // bottom of the ladder.
        let pts: Vec<_> = ladder()
            .into_iter()
            .flat_map(|x| {
                (0..8u64).map(move |s| {
                    let acquired = x > 3.5 || (x == 3.5 && s % 2 == 0);
                    (10f64.powf(x), if acquired { 0.95 } else { 0.02 }, s)
                })
            })
            .collect();
        let r = analyze_threshold(&pts, &Criteria::default(), Some(2000), 200, 1);
        assert!(
            matches!(r.reason, Some(Unresolved::LadderTooShort { .. })),
            "{r:?}"
        );
        let add = refinement_points(&r, &ladder(), 0.2);
        assert!(add.len() == 1 && add[0] < 3.0 && add[0] > 2.4, "{add:?}");
    }

    #[test]
    fn a_wide_interval_gets_midpoints_inside_it_a_narrow_one_nothing() {
        let r = report(|x| 1.0 / (1.0 + (-6.0 * (x - 5.0)).exp()));
        assert_eq!(r.verdict, Verdict::Emergent);
        let (lo, hi) = (r.x0_ci_low.unwrap(), r.x0_ci_high.unwrap());
        let points = refinement_points(&r, &ladder(), (hi - lo) / 2.0);
        assert!(!points.is_empty());
        assert!(
            points.iter().all(|&p| p > lo - 0.25 && p < hi + 0.25),
            "{points:?} [{lo}, {hi}]"
        );
        assert!(refinement_points(&r, &ladder(), hi - lo + 0.01).is_empty());
        let smooth = report(|x| 0.1 * x - 0.2);
        assert!(refinement_points(&smooth, &ladder(), 0.01).is_empty());
    }
}
