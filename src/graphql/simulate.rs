//! The rule simulator (admin): what an event would do now, under the published rules or a draft
//! set, writing nothing.

use crate::auth::RoleGuard;
use crate::error::AppError;
use crate::graphql::context::{loader, now, state};
use crate::graphql::enums::{DecisionOutcome, EventKind, LedgerEntryKind, LedgerEntryStatus, RewardUnit};
use crate::graphql::events::{
    CloseAccountInput, InvoicePaidInput, PaymentMethodVerifiedInput, PurchaseInput, RefundInput, ReopenAccountInput,
    TopUpInput,
};
use crate::graphql::loaders::{AccountById, RuleById};
use crate::graphql::rules::{RewardRule, RewardRuleInput};
use crate::graphql::scalars::Decimal;
use crate::graphql::types::Account;
use crate::service::events::EventInput;
use crate::service::rules::Decision;
use crate::service::simulate::{self, Simulation};
use async_graphql::{Context, Object, OneofObject, Result};
use chrono::{DateTime, Utc};
use entity::ledger_entry;

/// One event, as its own operation would send it (exactly one field).
#[derive(OneofObject)]
pub enum SimulatedEventInput {
    Purchase(PurchaseInput),
    PaymentMethodVerified(PaymentMethodVerifiedInput),
    TopUp(TopUpInput),
    InvoicePaid(InvoicePaidInput),
    Refund(RefundInput),
    AccountClosed(CloseAccountInput),
    AccountReopened(ReopenAccountInput),
}

impl From<SimulatedEventInput> for EventInput {
    fn from(input: SimulatedEventInput) -> Self {
        match input {
            SimulatedEventInput::Purchase(input) => input.into(),
            SimulatedEventInput::PaymentMethodVerified(input) => input.into(),
            SimulatedEventInput::TopUp(input) => input.into(),
            SimulatedEventInput::InvoicePaid(input) => input.into(),
            SimulatedEventInput::Refund(input) => input.into(),
            SimulatedEventInput::AccountClosed(input) => input.into(),
            SimulatedEventInput::AccountReopened(input) => input.into(),
        }
    }
}

#[derive(Default)]
pub struct SimulateQuery;

#[Object]
impl SimulateQuery {
    /// What `event` would do if it were recorded now: each rule's decision and the ledger
    /// entries it would write or change. Evaluated under the published rules, or, given
    /// `rules`, under that draft set instead (its enabled rules; nothing is saved). Writes
    /// nothing. An eventId already recorded is answered as its replay would be.
    #[graphql(guard = "RoleGuard::ADMIN")]
    async fn simulate_event(
        &self,
        ctx: &Context<'_>,
        event: SimulatedEventInput,
        rules: Option<Vec<RewardRuleInput>>,
    ) -> Result<EventSimulation> {
        let drafts = rules.map(|rules| rules.into_iter().map(Into::into).collect());
        let simulation = simulate::simulate(&state(ctx).db, event.into(), drafts, now(ctx)).await?;
        Ok(EventSimulation(simulation))
    }
}

/// What an event would do.
pub struct EventSimulation(Simulation);

#[Object]
impl EventSimulation {
    /// True when the eventId was recorded already: recording it again changes nothing, and
    /// this is what it did the first time.
    async fn duplicate(&self) -> bool {
        self.0.outcome.duplicate
    }

    async fn kind(&self) -> EventKind {
        self.0.outcome.event.kind.into()
    }

    /// Each evaluated rule's decision, with the reason.
    async fn decisions(&self) -> Vec<SimulatedDecision> {
        self.0
            .outcome
            .decisions
            .iter()
            .map(|decision| SimulatedDecision {
                draft_index: self.0.drafts.get(&decision.rule_id).copied(),
                decision: decision.clone(),
            })
            .collect()
    }

    /// The ledger entries the event would write or change: rewards paid, rewards taken back.
    async fn rewards(&self) -> Vec<SimulatedEntry> {
        self.0.outcome.rewards.iter().cloned().map(SimulatedEntry).collect()
    }
}

/// One rule's decision in a simulation.
pub struct SimulatedDecision {
    decision: Decision,
    draft_index: Option<usize>,
}

#[Object]
impl SimulatedDecision {
    /// The published rule; null for a draft rule (see `draftIndex`).
    async fn rule(&self, ctx: &Context<'_>) -> Result<Option<RewardRule>> {
        if self.draft_index.is_some() {
            return Ok(None);
        }
        let rule = loader(ctx).load_one(RuleById(self.decision.rule_id)).await?;
        Ok(rule.map(RewardRule))
    }

    /// For a draft rule: its position in the `rules` given (from 0).
    async fn draft_index(&self) -> Option<i32> {
        self.draft_index.and_then(|i| i32::try_from(i).ok())
    }

    async fn rule_name(&self) -> &str {
        &self.decision.rule_name
    }

    async fn outcome(&self) -> DecisionOutcome {
        self.decision.outcome.into()
    }

    async fn reason(&self) -> &str {
        &self.decision.reason
    }
}

/// A ledger entry a simulated event would write or change. It has no id: it was never kept.
pub struct SimulatedEntry(ledger_entry::Model);

#[Object]
impl SimulatedEntry {
    async fn account(&self, ctx: &Context<'_>) -> Result<Account> {
        let account = loader(ctx).load_one(AccountById(self.0.account_id)).await?;
        Ok(Account(
            account.ok_or_else(|| AppError::not_found("account not found"))?,
        ))
    }

    async fn kind(&self) -> LedgerEntryKind {
        self.0.kind.into()
    }

    async fn unit(&self) -> RewardUnit {
        self.0.unit.into()
    }

    /// Positive for what the account would receive, negative for what it would lose.
    async fn amount(&self) -> Decimal {
        Decimal::micros(self.0.amount)
    }

    async fn status(&self) -> LedgerEntryStatus {
        self.0.status.into()
    }

    async fn description(&self) -> &str {
        &self.0.description
    }

    async fn available_at(&self) -> Option<DateTime<Utc>> {
        self.0.available_at
    }

    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
}
