//! Exact decimal amounts, so that money is never summed as floats.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Fraction digits kept internally: every amount is stored as an integer
/// number of 10⁻¹⁸ units.
const SCALE: u32 = 18;
/// 10^18.
const ONE: u128 = 1_000_000_000_000_000_000;
/// At most this many integer digits (after leading zeros): `u128` holds
/// about 3.4 × 10³⁸ units, i.e. 3.4 × 10²⁰ whole units.
const MAX_INT_DIGITS: usize = 20;

/// A non-negative decimal amount such as `12.50`, exact to 18 fraction digits.
///
/// Comparison is by value (`12.5 == 12.50`); [`Display`](fmt::Display) keeps
/// as many fraction digits as were written (for a sum: as the most precise
/// summand), so `12.50 + 3.5` shows as `16.00`.
#[derive(Debug, Clone, Copy)]
pub struct Decimal {
    /// The value × 10^18.
    units: u128,
    /// Fraction digits to show.
    shown: u32,
}

/// A text that is not a plain non-negative decimal number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid amount {text:?}: {reason}")]
pub struct DecimalError {
    /// The text.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Decimal {
    /// Zero, shown as `0`.
    pub const ZERO: Decimal = Decimal { units: 0, shown: 0 };

    /// Parses `DIGITS` or `DIGITS.DIGITS` (ASCII digits only; no sign,
    /// exponent, spaces or thousands separators; at most 18 fraction digits
    /// and 20 integer digits).
    pub fn parse(text: &str) -> Result<Decimal, DecimalError> {
        let fail = |reason| DecimalError {
            text: text.to_string(),
            reason,
        };
        let (int, frac) = match text.split_once('.') {
            Some((int, frac)) => (int, Some(frac)),
            None => (text, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(int) || frac.is_some_and(|f| !all_digits(f)) {
            return Err(fail(
                "expected digits with an optional decimal point, like 12.50",
            ));
        }
        let frac = frac.unwrap_or("");
        if frac.len() > SCALE as usize {
            return Err(fail("more than 18 fraction digits"));
        }
        let int = int.trim_start_matches('0');
        if int.len() > MAX_INT_DIGITS {
            return Err(fail("too large"));
        }
        let mut units: u128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            units = units * 10 + u128::from(b - b'0');
        }
        let shown = frac.len() as u32;
        let units = units * 10u128.pow(SCALE - shown);
        Ok(Decimal { units, shown })
    }

    /// The sum, or `None` if it is too large to represent.
    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        Some(Decimal {
            units: self.units.checked_add(other.units)?,
            shown: self.shown.max(other.shown),
        })
    }

    /// Whether the value is zero.
    pub fn is_zero(self) -> bool {
        self.units == 0
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let int = self.units / ONE;
        let frac = self.units % ONE;
        // Never hide digits: show at least as many as the value has.
        let mut needed = SCALE;
        let mut rest = frac;
        while needed > 0 && rest.is_multiple_of(10) {
            rest /= 10;
            needed -= 1;
        }
        let shown = self.shown.max(needed);
        if shown == 0 {
            write!(f, "{int}")
        } else {
            let digits = frac / 10u128.pow(SCALE - shown);
            write!(f, "{int}.{digits:0width$}", width = shown as usize)
        }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.units == other.units
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        self.units.cmp(&other.units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        match Decimal::parse(s) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn parses_and_shows_what_was_written() {
        for s in [
            "0",
            "12",
            "12.50",
            "0.01",
            "007.5",
            "99999999999999999999.999999999999999999",
        ] {
            let shown = d(s).to_string();
            let expected = if s == "007.5" { "7.5" } else { s };
            assert_eq!(shown, expected);
        }
    }

    #[test]
    fn rejects_anything_else() {
        for s in [
            "",
            ".",
            "1.",
            ".5",
            "-1",
            "+1",
            "1e3",
            " 1",
            "1 ",
            "1,5",
            "1.2.3",
            "١٢",
            "NaN",
            "0.1234567890123456789",
            "123456789012345678901",
        ] {
            assert!(Decimal::parse(s).is_err(), "{s:?} was accepted");
        }
    }

    #[test]
    fn sums_exactly() {
        // 0.1 + 0.2 as floats is 0.30000000000000004.
        let sum = d("0.1").checked_add(d("0.2"));
        assert_eq!(sum.map(|s| s.to_string()), Some("0.3".to_string()));
        let sum = d("12.50").checked_add(d("3.5"));
        assert_eq!(sum.map(|s| s.to_string()), Some("16.00".to_string()));
        let max = d("99999999999999999999.999999999999999999");
        let mut total = Decimal::ZERO;
        let mut overflowed = false;
        for _ in 0..10 {
            match total.checked_add(max) {
                Some(t) => total = t,
                None => overflowed = true,
            }
        }
        assert!(overflowed);
    }

    #[test]
    fn compares_by_value() {
        assert_eq!(d("12.5"), d("12.50"));
        assert!(d("12.51") > d("12.5"));
        assert!(d("9.99") < d("10"));
        assert!(Decimal::ZERO.is_zero());
    }
}
