//! Exact fixed-point amounts. Points, credit, cash and rates are kept as whole millionths in
//! an `i64`: exact on both databases, comparable and summable in SQL (which a decimal stored as
//! SQLite text would not be), and wide enough for 9.2 × 10¹² units.

use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt;

/// Decimal places kept. Inputs with more are refused rather than silently rounded.
pub const SCALE: u32 = 6;
const ONE: i64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(i64);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("has more than {SCALE} decimal places")]
    TooPrecise,
    #[error("is too large")]
    TooLarge,
    #[error("is not a decimal number")]
    NotANumber,
}

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_micros(micros: i64) -> Self {
        Amount(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub fn from_units(units: i64) -> Option<Self> {
        units.checked_mul(ONE).map(Amount)
    }

    /// Exact conversion: a value with more than six decimal places is an error, not rounded.
    pub fn from_decimal(value: Decimal) -> Result<Self, AmountError> {
        let normalized = value.normalize();
        if normalized.scale() > SCALE {
            return Err(AmountError::TooPrecise);
        }
        let micros = normalized
            .checked_mul(Decimal::from(ONE))
            .ok_or(AmountError::TooLarge)?;
        i64::try_from(micros).map(Amount).map_err(|_| AmountError::TooLarge)
    }

    pub fn parse(text: &str) -> Result<Self, AmountError> {
        let value = Decimal::from_str_exact(text.trim()).map_err(|_| AmountError::NotANumber)?;
        Self::from_decimal(value)
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, SCALE)
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn checked_mul_int(self, factor: i64) -> Option<Amount> {
        self.0.checked_mul(factor).map(Amount)
    }

    /// Rounded toward zero to the cent: what a computed payment pays, never a fraction of a cent
    /// more.
    pub fn floor_cent(self) -> Amount {
        const CENT: i64 = 10_000;
        Amount(self.0 / CENT * CENT)
    }

    /// `self × other`, rounded toward zero to six places: a reward never pays a fraction of a
    /// millionth more than the rate says.
    pub fn checked_mul(self, other: Amount) -> Option<Amount> {
        let product = i128::from(self.0) * i128::from(other.0) / i128::from(ONE);
        i64::try_from(product).ok().map(Amount)
    }
}

impl fmt::Display for Amount {
    /// At least two decimal places, no trailing zeros beyond them: "10.50", "0.125", "3.00".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut value = self.to_decimal().normalize();
        if value.scale() < 2 {
            value.rescale(2);
        }
        write!(f, "{}", value.round_dp_with_strategy(SCALE, RoundingStrategy::ToZero))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_and_refuses_what_it_cannot_keep() {
        assert_eq!(Amount::parse("10.5").map(Amount::micros), Ok(10_500_000));
        assert_eq!(Amount::parse(" 0.000001 ").map(Amount::micros), Ok(1));
        assert_eq!(Amount::parse("-2").map(Amount::micros), Ok(-2_000_000));
        assert_eq!(Amount::parse("1.0000000"), Amount::parse("1"));
        assert_eq!(Amount::parse("0.0000001"), Err(AmountError::TooPrecise));
        assert_eq!(Amount::parse("abc"), Err(AmountError::NotANumber));
        assert_eq!(Amount::parse("1e3"), Err(AmountError::NotANumber));
        assert_eq!(Amount::parse("99999999999999999"), Err(AmountError::TooLarge));
    }

    #[test]
    fn displays_with_two_places_at_least() {
        assert_eq!(Amount::from_micros(10_500_000).to_string(), "10.50");
        assert_eq!(Amount::from_micros(125_000).to_string(), "0.125");
        assert_eq!(Amount::from_micros(3_000_000).to_string(), "3.00");
        assert_eq!(Amount::from_micros(-1).to_string(), "-0.000001");
    }

    #[test]
    fn multiplies_rounding_toward_zero() {
        let rate = Amount::parse("2.5").ok();
        let gb = Amount::parse("3.333333").ok();
        let product = rate.zip(gb).and_then(|(r, g)| r.checked_mul(g));
        assert_eq!(product.map(Amount::micros), Some(8_333_332));
        let huge = Amount::from_micros(i64::MAX);
        assert_eq!(huge.checked_mul(Amount::from_micros(2_000_000)), None);
    }
}
