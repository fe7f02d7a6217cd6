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
    Withdrawal,
    Conversion,
    Material,
    DomainEvent,
    WebhookEndpoint,
    WebhookDelivery,
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
            Kind::Withdrawal => "wdr",
            Kind::Conversion => "cnv",
            Kind::Material => "mkt",
            // As `service::outbox::public_id` writes it in webhooks (tested below).
            Kind::DomainEvent => "de",
            Kind::WebhookEndpoint => "whe",
            Kind::WebhookDelivery => "whd",
        }
    }
}

pub fn to_id(kind: Kind, id: i64) -> ID {
    ID(format!("{}_{id}", kind.prefix()))
}

/// A balance, one per account and unit: `bal_12_points`. Only the account itself and staff
/// read a balance, so the account's number in it tells no one anything new.
pub fn balance_id(account_id: i64, unit: entity::enums::Unit) -> ID {
    use entity::enums::Unit;
    let unit = match unit {
        Unit::Points => "points",
        Unit::Credit => "credit",
        Unit::Cash => "cash",
    };
    ID(format!("bal_{account_id}_{unit}"))
}

/// Which side of a referral a participant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Referrer,
    Referee,
}

/// One side of a referral: `par_7_referrer`, `par_7_referee`. Keyed on the referral, which the
/// viewer already sees, never on the account: a customer must not learn another account's id.
/// The same person on two referrals is two cached objects, each of one referral's screen.
pub fn participant_id(referral_id: i64, side: Side) -> ID {
    let side = match side {
        Side::Referrer => "referrer",
        Side::Referee => "referee",
    };
    ID(format!("par_{referral_id}_{side}"))
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
    fn event_ids_are_the_ones_webhooks_carry() {
        assert_eq!(to_id(Kind::DomainEvent, 7).0, crate::service::outbox::public_id(7));
    }

    #[test]
    fn ids_round_trip_and_keep_their_kind() {
        let id = to_id(Kind::Claim, 42);
        assert_eq!(id.as_str(), "clm_42");
        assert_eq!(from_id(Kind::Claim, &id).ok(), Some(42));
        assert!(from_id(Kind::Provider, &id).is_err());
        assert!(from_id(Kind::Claim, &ID("clm_x".into())).is_err());
        assert!(from_id(Kind::Claim, &ID("clm_-1".into())).is_err());
    }

    #[test]
    fn compound_ids_name_their_parts_and_are_no_other_kind() {
        let balance = balance_id(12, entity::enums::Unit::Points);
        assert_eq!(balance.as_str(), "bal_12_points");
        assert_ne!(balance, balance_id(12, entity::enums::Unit::Credit));
        assert!(from_id(Kind::Account, &balance).is_err());
        let referee = participant_id(7, Side::Referee);
        assert_eq!(referee.as_str(), "par_7_referee");
        assert_ne!(referee, participant_id(7, Side::Referrer));
        assert!(from_id(Kind::Referral, &referee).is_err());
    }
}
