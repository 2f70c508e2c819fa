//! [`Money`]: amounts in minor units with their currency, as prices, the
//! spend cap and read-backs use them.

use serde::Serialize;

/// An amount of money in minor units (cents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Money {
    /// Minor units: 1250 is 12.50.
    pub cents: i64,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
}

impl Money {
    /// Parses "12.50 USD" or "12.50" (with `default_currency`).
    pub fn parse(text: &str, default_currency: &str) -> Option<Money> {
        let mut parts = text.split_whitespace();
        let number = parts.next()?;
        let currency = parts
            .next()
            .unwrap_or(default_currency)
            .to_ascii_uppercase();
        if parts.next().is_some()
            || currency.len() != 3
            || !currency.chars().all(|c| c.is_ascii_alphabetic())
        {
            return None;
        }
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > 2
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let whole: i64 = whole.parse().ok()?;
        let frac: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<2}").parse().ok()?
        };
        Some(Money {
            cents: whole.checked_mul(100)?.checked_add(frac)?,
            currency,
        })
    }

    /// "12.50".
    pub fn decimal(&self) -> String {
        format!("{}.{:02}", self.cents / 100, self.cents % 100)
    }

    /// "12.50 USD".
    pub fn spoken(&self) -> String {
        format!("{} {}", self.decimal(), self.currency)
    }
}
