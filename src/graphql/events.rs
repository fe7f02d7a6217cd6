//! Facts from the billing system.

use crate::auth::RoleGuard;
use crate::graphql::context::{now, state};
use crate::graphql::enums::BillingCycle;
use crate::graphql::scalars::Decimal;
use crate::graphql::types::{Event, LedgerEntry, RuleDecision};
use crate::service::events::{self, EventInput, EventOutcome, Fact, Invoice, PaymentMethod, Purchase, Refund, TopUp};
use crate::service::rules::InvoiceLine;
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

#[derive(InputObject)]
pub struct PaymentMethodVerifiedInput {
    pub event_id: String,
    pub external_id: String,
    /// The payment provider's fingerprint of the method (1 to 200 characters; opaque): a
    /// referee with its referrer's, or another referee's of the same referrer, is rejected
    /// (DUPLICATE_FINGERPRINT), and one fingerprint makes one eligible referrer
    /// (DUPLICATE_REFERRER).
    pub fingerprint: Option<String>,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct TopUpInput {
    pub event_id: String,
    /// The billing account topped up; only its own top-ups count towards its threshold.
    pub external_id: String,
    pub amount: Decimal,
    /// False for a top-up that failed; it is recorded but does not count. Default true.
    #[graphql(default = true)]
    pub successful: bool,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// A paid invoice. Only what was paid in cash counts as spend (towards thresholds and
/// percentages), spread over the lines in proportion to their amounts.
#[derive(InputObject)]
pub struct InvoicePaidInput {
    /// The platform's id of this payment: the same id is recorded once.
    pub event_id: String,
    /// The account that paid.
    pub external_id: String,
    /// 1 to 100 lines; their amounts add up to the invoice's total.
    pub lines: Vec<InvoiceLineInput>,
    /// Paid in cash (or card). Left out: the total less `paidWithCredit`.
    pub paid_in_cash: Option<Decimal>,
    /// Paid with credit or coupons; counts for nothing. Left out: 0. With `paidInCash`, it
    /// must add up to the total.
    pub paid_with_credit: Option<Decimal>,
    pub occurred_at: Option<DateTime<Utc>>,
    /// The plan it bills (up to 100 characters) and how often: the account's current plan
    /// and billing cycle, which its referrer sees, once no later invoice named others.
    pub plan: Option<String>,
    pub billing_cycle: Option<BillingCycle>,
}

/// One line of an invoice.
#[derive(InputObject)]
pub struct InvoiceLineInput {
    /// The product category (a key, any case): rules with `productCategories` count only
    /// lines of those.
    pub category: String,
    /// At least 0.
    pub amount: Decimal,
}

#[derive(InputObject)]
pub struct RefundInput {
    /// The platform's id of this refund: the same id is recorded once.
    pub event_id: String,
    pub external_id: String,
    /// The eventId of the refunded purchase, top-up or invoice.
    pub refund_of: String,
    /// How much was refunded; left out: all that earlier refunds left. A refunded event
    /// without an amount can only be refunded whole.
    pub amount: Option<Decimal>,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct CloseAccountInput {
    pub event_id: String,
    pub external_id: String,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(InputObject)]
pub struct ReopenAccountInput {
    pub event_id: String,
    pub external_id: String,
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(SimpleObject)]
pub struct RecordEventPayload {
    pub event: Event,
    /// The ledger entries this event wrote or changed: rewards paid, and rewards taken back by
    /// a refund or a corrected first purchase (on a duplicate: those of the first time, as
    /// they are now).
    pub rewards: Vec<LedgerEntry>,
    /// Each enabled rule's decision, with the reason (none for the kinds no rule triggers on:
    /// refunds and closures).
    pub decisions: Vec<RuleDecision>,
}

impl From<EventOutcome> for RecordEventPayload {
    fn from(outcome: EventOutcome) -> Self {
        RecordEventPayload {
            event: Event {
                row: outcome.event,
                duplicate: outcome.duplicate,
            },
            rewards: outcome.rewards.into_iter().map(LedgerEntry::from).collect(),
            decisions: outcome
                .decisions
                .into_iter()
                .map(|decision| {
                    let rule = outcome.rules.iter().find(|rule| rule.id == decision.rule_id).cloned();
                    RuleDecision(decision, rule)
                })
                .collect(),
        }
    }
}

#[derive(Default)]
pub struct EventMutation;

async fn record(ctx: &Context<'_>, input: EventInput) -> Result<RecordEventPayload> {
    let state = state(ctx);
    Ok(events::record(state.direct(), &state.purchase_batches, input, now(ctx))
        .await?
        .into())
}

#[Object]
impl EventMutation {
    /// A purchase; a referee's first one can earn its referrer points.
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn record_purchase(&self, ctx: &Context<'_>, input: PurchaseInput) -> Result<RecordEventPayload> {
        record(ctx, input.into()).await
    }

    /// A payment method was verified: qualifies a postpaid referee.
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn record_payment_method_verified(
        &self,
        ctx: &Context<'_>,
        input: PaymentMethodVerifiedInput,
    ) -> Result<RecordEventPayload> {
        record(ctx, input.into()).await
    }

    /// A top-up: qualifies a prepaid referee once its own successful top-ups reach a rule's
    /// threshold.
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn record_top_up(&self, ctx: &Context<'_>, input: TopUpInput) -> Result<RecordEventPayload> {
        record(ctx, input.into()).await
    }

    /// An invoice paid: the referee's paid invoices (INVOICE_PAID rules) and its cash spend
    /// (SPEND_TOTAL_REACHED, percentages) can earn rewards.
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn record_invoice_paid(&self, ctx: &Context<'_>, input: InvoicePaidInput) -> Result<RecordEventPayload> {
        record(ctx, input.into()).await
    }

    /// A purchase, top-up or invoice refunded, in whole or in part: what it caused is taken back in
    /// proportion (voided while pending, reversed once posted). The rewards answered are the
    /// entries the refund wrote or changed.
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn record_refund(&self, ctx: &Context<'_>, input: RefundInput) -> Result<RecordEventPayload> {
        record(ctx, input.into()).await
    }

    /// The platform closed the account: it becomes CLOSED (an inactive referee). Its later
    /// events still record but earn nothing; refunds still take back.
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn close_account(&self, ctx: &Context<'_>, input: CloseAccountInput) -> Result<RecordEventPayload> {
        record(ctx, input.into()).await
    }

    /// The platform reopened a closed account: it is ACTIVE again (an active referral once it
    /// pays), and its later events earn again. An open account stays as it is.
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn reopen_account(&self, ctx: &Context<'_>, input: ReopenAccountInput) -> Result<RecordEventPayload> {
        record(ctx, input.into()).await
    }
}

impl From<PurchaseInput> for EventInput {
    fn from(input: PurchaseInput) -> Self {
        EventInput {
            event_id: input.event_id,
            external_id: input.external_id,
            occurred_at: input.occurred_at,
            fact: Fact::Purchase(Purchase {
                product_key: input.product_key,
                quantity_gb: input.quantity_gb.0,
                amount: input.amount.map(|d| d.0),
            }),
        }
    }
}

impl From<PaymentMethodVerifiedInput> for EventInput {
    fn from(input: PaymentMethodVerifiedInput) -> Self {
        EventInput {
            event_id: input.event_id,
            external_id: input.external_id,
            occurred_at: input.occurred_at,
            fact: Fact::PaymentMethodVerified(PaymentMethod {
                fingerprint: input.fingerprint,
            }),
        }
    }
}

impl From<TopUpInput> for EventInput {
    fn from(input: TopUpInput) -> Self {
        EventInput {
            event_id: input.event_id,
            external_id: input.external_id,
            occurred_at: input.occurred_at,
            fact: Fact::TopUp(TopUp {
                amount: input.amount.0,
                successful: input.successful,
            }),
        }
    }
}

impl From<InvoiceLineInput> for InvoiceLine {
    fn from(line: InvoiceLineInput) -> Self {
        InvoiceLine {
            category: line.category,
            amount: line.amount.0,
        }
    }
}

impl From<InvoicePaidInput> for EventInput {
    fn from(input: InvoicePaidInput) -> Self {
        EventInput {
            event_id: input.event_id,
            external_id: input.external_id,
            occurred_at: input.occurred_at,
            fact: Fact::InvoicePaid(Invoice {
                lines: input.lines.into_iter().map(Into::into).collect(),
                paid_in_cash: input.paid_in_cash.map(|d| d.0),
                paid_with_credit: input.paid_with_credit.map(|d| d.0),
                plan: input.plan,
                billing_cycle: input.billing_cycle.map(Into::into),
            }),
        }
    }
}

impl From<RefundInput> for EventInput {
    fn from(input: RefundInput) -> Self {
        EventInput {
            event_id: input.event_id,
            external_id: input.external_id,
            occurred_at: input.occurred_at,
            fact: Fact::Refund(Refund {
                refund_of: input.refund_of,
                amount: input.amount.map(|d| d.0),
            }),
        }
    }
}

impl From<CloseAccountInput> for EventInput {
    fn from(input: CloseAccountInput) -> Self {
        EventInput {
            event_id: input.event_id,
            external_id: input.external_id,
            occurred_at: input.occurred_at,
            fact: Fact::AccountClosed,
        }
    }
}

impl From<ReopenAccountInput> for EventInput {
    fn from(input: ReopenAccountInput) -> Self {
        EventInput {
            event_id: input.event_id,
            external_id: input.external_id,
            occurred_at: input.occurred_at,
            fact: Fact::AccountReopened,
        }
    }
}
