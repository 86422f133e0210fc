//! How the claims write numbers: fixed rules, so that a regenerated doc changes only where
//! the data did.

/// A parameter count from its log10: 744, 1.2k, 116k, 1.2M.
pub fn params_log(x: f64) -> String {
    params(10f64.powf(x))
}

pub fn params(n: f64) -> String {
    if n < 1e3 {
        format!("{n:.0}")
    } else if n < 1e4 {
        format!("{:.1}k", n / 1e3)
    } else if n < 1e6 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{:.1}M", n / 1e6)
    }
}

/// A step count with a thousands separator: 12,500.
pub fn steps(n: f64) -> String {
    let n = n.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A value with `d` decimals, or "-" when missing.
pub fn opt(x: Option<f64>, d: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.d$}"))
}

/// A p-value: two significant digits, "< 0.001" below that.
pub fn p(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(x) if x < 0.001 => "< 0.001".into(),
        Some(x) => format!("{x:.3}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_by_fixed_rules() {
        assert_eq!(params(744.0), "744");
        assert_eq!(params(1184.0), "1.2k");
        assert_eq!(params(115_584.0), "116k");
        assert_eq!(params(2.5e6), "2.5M");
        assert_eq!(steps(12_500.0), "12,500");
        assert_eq!(steps(256.0), "256");
        assert_eq!(p(Some(0.0004)), "< 0.001");
        assert_eq!(opt(None, 2), "-");
    }
}
