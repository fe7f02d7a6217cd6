//! Facts from the billing system.

use crate::auth::RoleGuard;
use crate::graphql::context::state;
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{Event, LedgerEntry, RuleDecision};
use crate::service::events::{self, EventOutcome, Purchase};
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

#[derive(InputObject)]
pub struct PurchaseInput {
    /// The platform's id of this purchase: the same id is recorded once.
    pub event_id: String,
    pub external_id: String,
    pub product_key: String,
    pub quantity_gb: Decimal,
    /// What the customer paid.
    pub amount: Option<Decimal>,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct RecordEventPayload {
    pub event: Event,
    /// The ledger entries this event caused (on a duplicate: those it caused the first time).
    pub rewards: Vec<LedgerEntry>,
    /// Each enabled rule's decision, with the reason.
    pub decisions: Vec<RuleDecision>,
}

impl From<EventOutcome> for RecordEventPayload {
    fn from(outcome: EventOutcome) -> Self {
        RecordEventPayload {
            event: Event { row: outcome.event, duplicate: outcome.duplicate },
            rewards: outcome.rewards.into_iter().map(LedgerEntry).collect(),
            decisions: outcome.decisions.into_iter().map(RuleDecision).collect(),
        }
    }
}

#[derive(Default)]
pub struct EventMutation;

#[Object]
impl EventMutation {
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn record_purchase(&self, ctx: &Context<'_>, input: PurchaseInput) -> Result<RecordEventPayload> {
        let purchase = Purchase {
            event_id: input.event_id,
            external_id: input.external_id,
            product_key: input.product_key,
            quantity_gb: input.quantity_gb.0,
            amount: input.amount.map(|d| d.0),
            occurred_at: input.occurred_at,
        };
        Ok(events::record_purchase(&state(ctx).db, purchase).await?.into())
    }
}
