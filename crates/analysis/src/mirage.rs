//! The "mirage" view (Schaeffer et al. 2023): if per-token accuracy p improves smoothly, exact
//! match over an L-token answer is about p^L, which can look like a jump on a log-scale axis.
//! A task is flagged when it is sharp under exact match only.

use serde::Serialize;

use crate::emergence::{ThresholdReport, Verdict};

/// Exact match expected from independent tokens: `p^L`. `answer_len` may be a mean length, in
/// which case this is only an approximation (`E[p^L] >= p^E[L]` by Jensen).
pub fn expected_exact_match(token_accuracy: f64, answer_len: f64) -> f64 {
    token_accuracy.powf(answer_len)
}

/// True when exact match is Emergent and every smooth metric (at least one) is not.
/// With no continuous metric there is nothing to compare against, so no flag.
pub fn mirage_flag(exact: &Verdict, smooth_metrics: &[Verdict]) -> bool {
    *exact == Verdict::Emergent
        && !smooth_metrics.is_empty()
        && smooth_metrics.iter().all(|v| *v != Verdict::Emergent)
}

/// Largest |observed exact match - token_accuracy^L| over sizes; `None` if the slices are empty
/// or differ in length. A small gap means p^L explains exact match.
pub fn max_exact_match_gap(
    exact_match: &[f64],
    token_accuracy: &[f64],
    answer_len: f64,
) -> Option<f64> {
    if exact_match.is_empty() || exact_match.len() != token_accuracy.len() {
        return None;
    }
    Some(
        exact_match
            .iter()
            .zip(token_accuracy)
            .map(|(&e, &p)| (e - expected_exact_match(p, answer_len)).abs())
            .fold(0.0, f64::max),
    )
}

/// Verdicts for one task under each metric, and whether the jump is a metric artefact.
#[derive(Debug, Clone, Serialize)]
pub struct MirageReport {
    /// Verdict under exact match.
    pub exact_match: Verdict,
    /// Verdict under per-token accuracy.
    pub token_accuracy: Verdict,
    /// Verdict under per-token answer log-probability, if measured.
    pub answer_logprob: Option<Verdict>,
    /// Verdict under an edit-distance score (e.g. 1 - d/L), if measured.
    pub edit_score: Option<Verdict>,
    /// Threshold (log10 scale) under exact match.
    pub exact_x0: Option<f64>,
    /// Threshold (log10 scale) under token accuracy.
    pub token_x0: Option<f64>,
    /// See [`max_exact_match_gap`].
    pub max_gap: Option<f64>,
    /// See [`mirage_flag`].
    pub mirage: bool,
}

/// Combine per-metric reports for one task. Each report should be made with criteria suited to
/// its metric's units (e.g. log-probabilities are not in [0, 1], so `flat_range` differs).
pub fn mirage_report(
    exact: &ThresholdReport,
    token_accuracy: &ThresholdReport,
    answer_logprob: Option<&ThresholdReport>,
    edit_score: Option<&ThresholdReport>,
    max_gap: Option<f64>,
) -> MirageReport {
    let smooth: Vec<Verdict> = std::iter::once(token_accuracy)
        .chain(answer_logprob)
        .chain(edit_score)
        .map(|r| r.verdict)
        .collect();
    MirageReport {
        exact_match: exact.verdict,
        token_accuracy: token_accuracy.verdict,
        answer_logprob: answer_logprob.map(|r| r.verdict),
        edit_score: edit_score.map(|r| r.verdict),
        exact_x0: exact.x0,
        token_x0: token_accuracy.x0,
        max_gap,
        mirage: mirage_flag(&exact.verdict, &smooth),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emergence::{Criteria, analyze_threshold, classify};

    #[test]
    fn expected_exact_match_is_p_to_the_l() {
        assert!((expected_exact_match(0.9, 2.0) - 0.81).abs() < 1e-12);
        assert!((expected_exact_match(0.5, 5.0) - 0.03125).abs() < 1e-12);
        assert_eq!(expected_exact_match(1.0, 20.0), 1.0);
    }

    #[test]
    fn smooth_token_accuracy_gives_sharp_exact_match() {
        // Token accuracy rises linearly in log10 N from 0.5 (1e3) to 0.99 (1e6), then stays at 0.99;
        // a 20-token answer turns that into a jump between 1e5 and 1e6.
        let xs: Vec<f64> = (0..9).map(|i| 3.0 + 0.5 * i as f64).collect();
        let p: Vec<f64> = xs
            .iter()
            .map(|x| (0.5 + 0.49 * (x - 3.0) / 3.0).min(0.99))
            .collect();
        let len = 20.0;
        let em: Vec<f64> = p.iter().map(|&p| expected_exact_match(p, len)).collect();
        let c = Criteria::default();
        let (v_em, v_p) = (classify(&xs, &em, &c), classify(&xs, &p, &c));
        assert_eq!(v_em, Verdict::Emergent);
        assert_eq!(v_p, Verdict::Smooth);
        let fit = crate::emergence::fit_logistic(&xs, &em).unwrap();
        assert!(fit.width_decades < 0.5, "width {}", fit.width_decades);
        assert!(mirage_flag(&v_em, &[v_p]));
        assert!(max_exact_match_gap(&em, &p, len).unwrap() < 1e-12);
        // With a shorter answer (L = 2) exact match stays smooth too: no mirage.
        let em2: Vec<f64> = p.iter().map(|&p| expected_exact_match(p, 2.0)).collect();
        assert_eq!(classify(&xs, &em2, &c), Verdict::Smooth);

        // Through the report: seeds at each scale, same verdicts.
        let pts = |ys: &[f64]| -> Vec<(f64, f64, u64)> {
            xs.iter()
                .zip(ys)
                .map(|(x, y)| (10f64.powf(*x), *y, 0))
                .collect()
        };
        let r = mirage_report(
            &analyze_threshold(&pts(&em), &c, None, 199, 0),
            &analyze_threshold(&pts(&p), &c, None, 199, 0),
            None,
            None,
            None,
        );
        assert!(r.mirage);
        assert!(
            r.exact_x0.unwrap() > 5.0 && r.exact_x0.unwrap() < 6.0,
            "x0 = {:?}",
            r.exact_x0
        );
    }

    #[test]
    fn flag_needs_sharp_exact_and_no_sharp_smooth_metric() {
        use Verdict::*;
        assert!(!mirage_flag(&Smooth, &[Smooth]));
        assert!(!mirage_flag(&Emergent, &[Smooth, Emergent]));
        assert!(!mirage_flag(&Emergent, &[]));
        assert!(mirage_flag(&Emergent, &[Smooth, Flat]));
        assert_eq!(max_exact_match_gap(&[0.5, 0.2], &[0.5], 1.0), None);
        assert!((max_exact_match_gap(&[0.5, 0.2], &[0.5, 0.5], 2.0).unwrap() - 0.25).abs() < 1e-12);
    }
}
