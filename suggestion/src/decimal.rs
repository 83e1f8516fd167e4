//! A small exact decimal number: an `i128` mantissa and a base-10 scale.
//!
//! Katib's values travel as strings ("0.01", "1e-3"). Stepped values (`min + k*step`) are
//! computed on these decimals so a grid prints `0.01, 0.02, ..., 0.05` and never the binary
//! floating-point noise `0.019999999999999997` that `numpy.arange` produces in Katib's grid.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Largest scale (digits after the point) kept; beyond it a value is not represented exactly.
const MAX_SCALE: u32 = 38;

/// An exact decimal `mantissa * 10^-scale`.
///
/// Equality, hashing and ordering are by value: `"0.10" == "0.1"`. [`Display`](fmt::Display)
/// prints the shortest exact form without an exponent (`"0.1"`, `"5"`, `"-0.25"`).
#[derive(Clone, Copy, Debug)]
pub struct Decimal {
    mantissa: i128,
    scale: u32,
}

/// Why a string is not an exact [`Decimal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not a number at all (`"abc"`, `""`, `"nan"`).
    #[error("is not a number")]
    Invalid,
    /// A number, but with too many digits (or too large an exponent) to be kept exactly.
    #[error("has too many digits to be represented exactly (at most 38 significant digits)")]
    OutOfRange,
}

impl Decimal {
    /// Zero.
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };

    /// `mantissa * 10^-scale`.
    pub fn new(mantissa: i128, scale: u32) -> Self {
        Decimal { mantissa, scale }.normalized()
    }

    /// An integer as a decimal.
    pub fn from_int(value: i64) -> Self {
        Decimal {
            mantissa: i128::from(value),
            scale: 0,
        }
    }

    /// The mantissa of the normalized form (no trailing zeros after the point).
    pub fn mantissa(&self) -> i128 {
        self.normalized().mantissa
    }

    /// The scale of the normalized form.
    pub fn scale(&self) -> u32 {
        self.normalized().scale
    }

    /// The same value without trailing zeros after the point.
    pub fn normalized(self) -> Self {
        let Decimal {
            mut mantissa,
            mut scale,
        } = self;
        if mantissa == 0 {
            return Decimal::ZERO;
        }
        while scale > 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            scale -= 1;
        }
        Decimal { mantissa, scale }
    }

    /// The mantissa once the value is written with exactly `scale` digits after the point;
    /// `None` if that loses digits or overflows.
    pub fn mantissa_at(&self, scale: u32) -> Option<i128> {
        let n = self.normalized();
        if scale < n.scale {
            return None;
        }
        pow10(scale - n.scale).and_then(|p| n.mantissa.checked_mul(p))
    }

    /// True if the value has no fractional part.
    pub fn is_integer(&self) -> bool {
        self.normalized().scale == 0
    }

    /// The value as an `i64`, if it is an integer in range.
    pub fn to_i64(&self) -> Option<i64> {
        let n = self.normalized();
        if n.scale != 0 {
            return None;
        }
        i64::try_from(n.mantissa).ok()
    }

    /// True if the value is strictly greater than zero.
    pub fn is_positive(&self) -> bool {
        self.mantissa > 0
    }

    /// The nearest `f64` (correctly rounded).
    pub fn to_f64(&self) -> f64 {
        // Going through the exact text lets the standard library round correctly.
        self.to_string().parse().unwrap_or(f64::NAN)
    }
}

fn all_digits(p: &str) -> bool {
    p.bytes().all(|b| b.is_ascii_digit())
}

/// `10^exp`, if it fits in an `i128`.
pub(crate) fn pow10(exp: u32) -> Option<i128> {
    10i128.checked_pow(exp)
}

impl FromStr for Decimal {
    type Err = DecimalError;

    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]`, as Python's `float()` accepts them
    /// (surrounding spaces allowed; `inf`/`nan` are not numbers here).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let s = text.trim();
        let (negative, s) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (number, exponent) = match s.find(['e', 'E']) {
            Some(at) => (&s[..at], Some(&s[at + 1..])),
            None => (s, None),
        };
        let (int_part, frac_part) = match number.find('.') {
            Some(at) => (&number[..at], &number[at + 1..]),
            None => (number, ""),
        };
        let had_digits = !int_part.is_empty() || !frac_part.is_empty();
        // Trailing zeros after the point carry no value; dropping them early keeps
        // "1.000...0" from overflowing the mantissa.
        let frac_part = frac_part.trim_end_matches('0');
        if !had_digits || !all_digits(int_part) || !all_digits(frac_part) {
            return Err(DecimalError::Invalid);
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !all_digits(digits) {
                    return Err(DecimalError::Invalid);
                }
                // Absurd exponents are out of range rather than invalid.
                e.parse().map_err(|_| DecimalError::OutOfRange)?
            }
        };
        let mut mantissa: i128 = 0;
        // Skipping leading zeros keeps "000...0001" from overflowing.
        for b in int_part
            .bytes()
            .chain(frac_part.bytes())
            .skip_while(|&b| b == b'0')
        {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(b - b'0')))
                .ok_or(DecimalError::OutOfRange)?;
        }
        if negative {
            mantissa = -mantissa;
        }
        let mut scale = (frac_part.len() as i64)
            .checked_sub(exponent)
            .ok_or(DecimalError::OutOfRange)?;
        if scale < 0 {
            let exp = u32::try_from(scale.unsigned_abs()).map_err(|_| DecimalError::OutOfRange)?;
            if mantissa != 0 {
                mantissa = pow10(exp)
                    .and_then(|p| mantissa.checked_mul(p))
                    .ok_or(DecimalError::OutOfRange)?;
            }
            scale = 0;
        }
        let mut d = Decimal {
            mantissa,
            scale: u32::try_from(scale).map_err(|_| DecimalError::OutOfRange)?,
        };
        // Drop trailing zeros before judging the scale: "1.000...0" is fine.
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        if d.mantissa == 0 {
            return Ok(Decimal::ZERO);
        }
        if d.scale > MAX_SCALE {
            return Err(DecimalError::OutOfRange);
        }
        Ok(d)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.normalized();
        let digits = n.mantissa.unsigned_abs().to_string();
        let sign = if n.mantissa < 0 { "-" } else { "" };
        let scale = n.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{sign}{int}.{frac}")
        } else {
            let zeros = "0".repeat(scale - digits.len());
            write!(f, "{sign}0.{zeros}{digits}")
        }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.mantissa == b.mantissa && a.scale == b.scale
    }
}

impl Eq for Decimal {}

impl Hash for Decimal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let n = self.normalized();
        n.mantissa.hash(state);
        n.scale.hash(state);
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.normalized(), other.normalized());
        let sign = |m: i128| m.signum();
        match sign(a.mantissa).cmp(&sign(b.mantissa)) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
        let scale = a.scale.max(b.scale);
        match (a.mantissa_at(scale), b.mantissa_at(scale)) {
            (Some(x), Some(y)) => x.cmp(&y),
            // Both have the same sign here; the one that overflows when scaled up has the
            // larger magnitude.
            (None, Some(_)) => {
                if a.mantissa > 0 {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (Some(_), None) => {
                if b.mantissa > 0 {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (None, None) => a.to_f64().total_cmp(&b.to_f64()),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_canonically() {
        for (input, printed) in [
            ("0.01", "0.01"),
            ("0.10", "0.1"),
            ("+1.50", "1.5"),
            ("-0.25", "-0.25"),
            ("5", "5"),
            ("5.", "5"),
            (".5", "0.5"),
            ("1e-3", "0.001"),
            ("1.5E2", "150"),
            ("-0", "0"),
            ("0.000", "0"),
            (" 42 ", "42"),
            ("1.000000000000000000000000000000000000000000", "1"),
        ] {
            assert_eq!(d(input).to_string(), printed, "{input}");
        }
    }

    #[test]
    fn rejects_non_numbers_and_out_of_range() {
        for bad in [
            "", "abc", ".", "1.2.3", "1e", "e5", "nan", "inf", "--1", "1_000", "0x10",
        ] {
            assert_eq!(bad.parse::<Decimal>(), Err(DecimalError::Invalid), "{bad}");
        }
        for big in ["1e300", "1e-300", "123456789012345678901234567890123456789012"] {
            assert_eq!(big.parse::<Decimal>(), Err(DecimalError::OutOfRange), "{big}");
        }
    }

    #[test]
    fn compares_by_value() {
        assert_eq!(d("0.10"), d("0.1"));
        assert!(d("0.09") < d("0.1"));
        assert!(d("-1") < d("0.001"));
        assert!(d("-2.5") < d("-2"));
        assert!(d("1e20") > d("0.000000000000000001"));
        assert_eq!(d("2.50").to_f64(), 2.5);
        assert_eq!(d("7.0").to_i64(), Some(7));
        assert_eq!(d("7.5").to_i64(), None);
        assert_eq!(d("3").mantissa_at(2), Some(300));
        assert_eq!(d("0.125").mantissa_at(2), None);
    }
}
