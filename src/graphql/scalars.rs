//! The `Decimal` scalar: exact, written as a string. A JSON number is accepted only where it
//! converts exactly (integers, and decimals whose shortest form has at most six places);
//! async-graphql's own Decimal would take numbers through `f64`.

use crate::amount::Amount;
use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// An exact decimal number, written as a string such as "10.50". At most six decimal places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decimal(pub Amount);

#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        let parsed = match &value {
            Value::String(text) => Amount::parse(text),
            Value::Number(number) => match number.as_i64() {
                Some(units) => Amount::from_units(units).ok_or(crate::amount::AmountError::TooLarge),
                None => Amount::parse(&number.to_string()),
            },
            _ => return Err(InputValueError::expected_type(value)),
        };
        parsed
            .map(Decimal)
            .map_err(|err| InputValueError::custom(format!("{value} {err}")))
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

impl From<Amount> for Decimal {
    fn from(amount: Amount) -> Self {
        Decimal(amount)
    }
}

impl Decimal {
    pub fn micros(micros: i64) -> Self {
        Decimal(Amount::from_micros(micros))
    }
}
