//! Modular arithmetic `x op y = c (mod p)` (Power et al. 2022): one token per residue, then
//! one token for the operator and one for `=`; the answer is the single token `c`.

use serde::{Deserialize, Serialize};

use crate::{Dataset, SplitMix64, shuffle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModOp {
    /// x + y
    Add,
    /// x - y
    Sub,
    /// x * y
    Mul,
    /// x / y, y != 0 (multiplication by the modular inverse; p must be prime)
    Div,
    /// x^2 + y^2
    SquareSum,
    /// x^2 + xy + y^2
    QuadSym,
    /// x^3 + xy
    CubicXy,
}

impl ModOp {
    pub const ALL: [&'static str; 7] = [
        "add",
        "sub",
        "mul",
        "div",
        "square_sum",
        "quad_sym",
        "cubic_xy",
    ];

    fn apply(self, x: u64, y: u64, p: u64) -> u64 {
        match self {
            ModOp::Add => (x + y) % p,
            ModOp::Sub => (x + p - y) % p,
            ModOp::Mul => x * y % p,
            ModOp::Div => x * pow_mod(y, p - 2, p) % p,
            ModOp::SquareSum => (x * x + y * y) % p,
            ModOp::QuadSym => (x * x + x * y + y * y) % p,
            ModOp::CubicXy => (x * x % p * x + x * y) % p,
        }
    }

    fn name(self) -> &'static str {
        ModOp::ALL[self as usize]
    }
}

fn pow_mod(mut base: u64, mut exp: u64, p: u64) -> u64 {
    let mut acc = 1;
    base %= p;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc * base % p;
        }
        base = base * base % p;
        exp >>= 1;
    }
    acc
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModularTask {
    /// The modulus (a prime: 97 and 113 are the literature's choices).
    #[serde(default = "default_p")]
    pub p: u64,
    #[serde(default = "default_op")]
    pub op: ModOp,
    /// Fraction of all equations used for training; the rest is validation.
    #[serde(default = "default_fraction")]
    pub train_fraction: f64,
    /// Write the operator as a token (`x op y =`, Power et al.); `false` gives `x y =`
    /// (Nanda et al. 2023). Left out of the job id when true, so old ids stay valid.
    #[serde(default = "default_op_token", skip_serializing_if = "is_true")]
    pub op_token: bool,
}

fn default_op_token() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

fn default_p() -> u64 {
    97
}
fn default_op() -> ModOp {
    ModOp::Add
}
fn default_fraction() -> f64 {
    0.3
}

impl ModularTask {
    pub(crate) fn validate(&self) -> Result<(), (String, String)> {
        if !is_prime(self.p) || self.p > 2003 {
            return Err((
                "task.p".into(),
                format!("a prime between 2 and 2003, got {}", self.p),
            ));
        }
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return Err((
                "task.train_fraction".into(),
                format!("a number in (0, 1), got {}", self.train_fraction),
            ));
        }
        Ok(())
    }

    /// (vocabulary: the residues, `=` and the operator if written; prompt length; answer length)
    pub(crate) fn shape(&self) -> (usize, usize, usize) {
        let op = usize::from(self.op_token);
        (self.p as usize + 1 + op, 3 + op, 1)
    }

    pub(crate) fn label(&self) -> String {
        format!("mod{}_{}", self.p, self.op.name())
    }

    fn equations(&self) -> usize {
        let p = self.p as usize;
        if self.op == ModOp::Div {
            p * (p - 1)
        } else {
            p * p
        }
    }

    pub(crate) fn train_len(&self) -> usize {
        let n = self.equations();
        (((n as f64) * self.train_fraction).round() as usize).clamp(1, n - 1)
    }

    pub(crate) fn generate(&self, seed: u64) -> Dataset {
        let p = self.p;
        // Token p is the operator and p + 1 is `=`; without the operator, `=` is p.
        let op_token = p as u32;
        let eq_token = op_token + u32::from(self.op_token);
        let mut all: Vec<Vec<u32>> = (0..p)
            .flat_map(|x| (0..p).map(move |y| (x, y)))
            .filter(|&(_, y)| !(self.op == ModOp::Div && y == 0))
            .map(|(x, y)| {
                let c = self.op.apply(x, y, p) as u32;
                let (x, y) = (x as u32, y as u32);
                match self.op_token {
                    true => vec![x, op_token, y, eq_token, c],
                    false => vec![x, y, eq_token, c],
                }
            })
            .collect();
        shuffle(&mut all, &mut SplitMix64::derive(seed, 1));
        debug_assert_eq!(all.len(), self.equations());
        let val = all.split_off(self.train_len());
        let (vocab_size, prompt_len, answer_len) = self.shape();
        Dataset {
            vocab_size,
            prompt_len,
            answer_len,
            train: all,
            val,
            breakdown: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(op: ModOp) -> ModularTask {
        ModularTask {
            p: 7,
            op,
            train_fraction: 0.5,
            op_token: true,
        }
    }

    #[test]
    fn every_equation_once_and_correct() {
        for (op, f) in [
            (ModOp::Add, (|x, y| x + y) as fn(i64, i64) -> i64),
            (ModOp::Sub, |x, y| x - y),
            (ModOp::Mul, |x, y| x * y),
            (ModOp::SquareSum, |x, y| x * x + y * y),
            (ModOp::QuadSym, |x, y| x * x + x * y + y * y),
            (ModOp::CubicXy, |x, y| x * x * x + x * y),
        ] {
            let d = task(op).generate(3);
            let mut all: Vec<_> = d.train.iter().chain(&d.val).cloned().collect();
            assert_eq!(all.len(), 49);
            for s in &all {
                let want = f(s[0] as i64, s[2] as i64).rem_euclid(7);
                assert_eq!(s[4] as i64, want, "{op:?} {s:?}");
                assert_eq!((s[1], s[3]), (7, 8));
            }
            all.sort();
            all.dedup();
            assert_eq!(all.len(), 49);
        }
    }

    #[test]
    fn division_skips_zero_and_inverts_multiplication() {
        let d = task(ModOp::Div).generate(0);
        let all: Vec<_> = d.train.iter().chain(&d.val).collect();
        assert_eq!(all.len(), 42);
        for s in all {
            assert_ne!(s[2], 0);
            assert_eq!(s[4] as u64 * s[2] as u64 % 7, s[0] as u64);
        }
    }

    #[test]
    fn split_follows_fraction_and_seed() {
        let t = ModularTask {
            p: 97,
            op: ModOp::Add,
            train_fraction: 0.3,
            op_token: true,
        };
        let a = t.generate(1);
        assert_eq!(a.train.len(), (97.0f64 * 97.0 * 0.3).round() as usize);
        assert_eq!(a.train.len() + a.val.len(), 97 * 97);
        assert_eq!(a, t.generate(1));
        assert_ne!(a.train, t.generate(2).train);
    }

    #[test]
    fn without_the_operator_token_the_input_is_x_y_equals() {
        let t = ModularTask {
            op_token: false,
            ..task(ModOp::Sub)
        };
        assert_eq!(t.shape(), (8, 3, 1));
        let d = t.generate(3);
        let with_op = task(ModOp::Sub).generate(3);
        assert_eq!((d.vocab_size, d.prompt_len), (8, 3));
        for (s, w) in d.train.iter().zip(&with_op.train) {
            assert_eq!(s, &vec![w[0], w[2], 7, w[4]], "same split, same answers");
            assert_eq!(s[3] as i64, (s[0] as i64 - s[1] as i64).rem_euclid(7));
        }
    }

    #[test]
    fn rejects_composite_modulus() {
        let t = ModularTask {
            p: 91,
            op: ModOp::Add,
            train_fraction: 0.3,
            op_token: true,
        };
        assert_eq!(t.validate().unwrap_err().0, "task.p");
    }
}
