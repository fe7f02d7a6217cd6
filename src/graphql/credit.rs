//! Credit applied to invoices (billing system).

use crate::auth::RoleGuard;
use crate::graphql::context::{now, state};
use crate::graphql::events::InvoiceLineInput;
use crate::graphql::scalars::Decimal;
use crate::service::credit::{self, ApplyCredit};
use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

#[derive(InputObject)]
pub struct ApplyCreditInput {
    /// The invoice: credit is applied to it once.
    pub invoice_id: String,
    pub external_id: String,
    /// The invoice's amount: at most this much credit is applied.
    pub amount: Decimal,
    /// The invoice's lines, adding up to `amount` (1 to 100): each is paid only from credit
    /// that may be spent on its category. Left out: only credit that may be spent on anything
    /// is applied.
    pub lines: Option<Vec<InvoiceLineInput>>,
}

#[derive(SimpleObject)]
pub struct ApplyCreditPayload {
    /// Credit applied: min(available credit, amount).
    pub applied: Decimal,
    /// The account's credit still available afterwards.
    pub remaining: Decimal,
    /// True when credit had already been applied to this invoice: nothing changed.
    pub duplicate: bool,
    /// What each of the invoice's lines got, in their order; empty without lines.
    pub lines: Vec<AppliedCreditLine>,
}

/// What one invoice line got.
#[derive(SimpleObject)]
pub struct AppliedCreditLine {
    pub category: String,
    /// The line's amount.
    pub amount: Decimal,
    /// The credit applied to it.
    pub applied: Decimal,
}

#[derive(Default)]
pub struct CreditMutation;

#[Object]
impl CreditMutation {
    #[graphql(guard = "RoleGuard::SERVICE")]
    async fn apply_credit(&self, ctx: &Context<'_>, input: ApplyCreditInput) -> Result<ApplyCreditPayload> {
        let request = ApplyCredit {
            invoice_id: input.invoice_id,
            external_id: input.external_id,
            amount: input.amount.0,
            lines: input.lines.map(|lines| lines.into_iter().map(Into::into).collect()),
        };
        let done = credit::apply(&state(ctx).db, request, now(ctx)).await?;
        Ok(ApplyCreditPayload {
            applied: done.applied.into(),
            remaining: done.remaining.into(),
            duplicate: done.duplicate,
            lines: done
                .lines
                .into_iter()
                .map(|line| AppliedCreditLine {
                    category: line.category,
                    amount: line.amount.into(),
                    applied: line.applied.into(),
                })
                .collect(),
        })
    }
}
