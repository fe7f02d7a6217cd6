//! Global IDs: `acc_12`, `clm_7`. The prefix names the kind of object, so an ID of one kind
//! passed where another is expected is refused instead of finding the wrong row.

use crate::error::AppError;
use async_graphql::ID;

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Account,
    Referral,
    Entry,
    Claim,
    Provider,
    Product,
    Event,
    Rule,
    Audit,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Account => "acc",
            Kind::Referral => "ref",
            Kind::Entry => "led",
            Kind::Claim => "clm",
            Kind::Provider => "prv",
            Kind::Product => "prd",
            Kind::Event => "evt",
            Kind::Rule => "rul",
            Kind::Audit => "aud",
        }
    }
}

pub fn to_id(kind: Kind, id: i64) -> ID {
    ID(format!("{}_{id}", kind.prefix()))
}

pub fn from_id(kind: Kind, id: &ID) -> Result<i64, AppError> {
    id.strip_prefix(kind.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|number| number.parse::<i64>().ok())
        .filter(|number| *number > 0)
        .ok_or_else(|| AppError::bad_input(format!("{:?} is not a {kind:?} id", id.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_keep_their_kind() {
        let id = to_id(Kind::Claim, 42);
        assert_eq!(id.as_str(), "clm_42");
        assert_eq!(from_id(Kind::Claim, &id).ok(), Some(42));
        assert!(from_id(Kind::Provider, &id).is_err());
        assert!(from_id(Kind::Claim, &ID("clm_x".into())).is_err());
        assert!(from_id(Kind::Claim, &ID("clm_-1".into())).is_err());
    }
}
