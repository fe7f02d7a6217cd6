//! Facts reported by the billing system. Recording one is the same for every kind: check the
//! input and put it in canonical form (its hash tells a replay from a conflicting reuse of the
//! eventId), insert it once (`once`), let the kind's own module establish what it changes on the
//! account (and take back what it undoes), apply the rules to what it established, and store
//! the decisions with the event, all in one transaction. The same eventId again is answered
//! again, unchanged.
//!
//! One module per kind owns its input check, canonical form and facts: `purchase`, `top_up`,
//! `payment_method`, `invoice`, `refund`, `account_closed`, `account_reopened`. Every match over kinds here is exhaustive: a
//! new kind does not compile until it says what it is.
//!
//! A closed account's events still record. Those that happened before the closure (arriving
//! late) are evaluated as usual; those that happened after it earn nothing: every rule is
//! skipped with that reason, until it is reopened. Refunds still take back what the refunded
//! event caused.

mod account_closed;
mod account_reopened;
mod invoice;
mod payment_method;
mod purchase;
mod refund;
mod top_up;

pub use invoice::{Invoice, MAX_LINES};
pub use payment_method::PaymentMethod;
pub use purchase::Purchase;
use purchase::planned;
pub use refund::Refund;
pub use top_up::TopUp;

use crate::amount::Amount;
use crate::db::{Direct, OwnedDirect, begin_write};
use crate::error::{AppError, AppResult};
use crate::service::batches::group_commit::GroupCommit;
use crate::service::once::{self, Inserted};
use crate::service::rules::{self, Decision, EventFacts, Outcome, Rule};
use crate::service::{accounts, ledger, request_hash, required_text, rewards, take_backs};
use chrono::{DateTime, Utc};
use entity::enums::EventKind;
use entity::{account, event, ledger_entry, product};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde_json::json;
use std::future::Future;

/// What happened, as the billing system reports it.
#[derive(Debug, Clone)]
pub enum Fact {
    Purchase(Purchase),
    PaymentMethodVerified(PaymentMethod),
    TopUp(TopUp),
    InvoicePaid(Invoice),
    Refund(Refund),
    AccountClosed,
    AccountReopened,
}

#[derive(Debug, Clone)]
pub struct EventInput {
    pub event_id: String,
    pub external_id: String,
    /// When it happened; absent: when it arrives.
    pub occurred_at: Option<DateTime<Utc>>,
    pub fact: Fact,
}

#[derive(Debug)]
pub struct EventOutcome {
    pub event: event::Model,
    pub duplicate: bool,
    /// The entries the event wrote or changed (rewards paid, rewards taken back), by id.
    pub rewards: Vec<ledger_entry::Model>,
    pub decisions: Vec<Decision>,
    /// The rules the event was evaluated against, as it read them (none on a replay): what
    /// its decisions name.
    pub rules: Vec<Rule>,
}

impl Fact {
    pub fn kind(&self) -> EventKind {
        match self {
            Fact::Purchase(_) => EventKind::Purchase,
            Fact::PaymentMethodVerified(_) => EventKind::PaymentMethodVerified,
            Fact::TopUp(_) => EventKind::TopUp,
            Fact::InvoicePaid(_) => EventKind::InvoicePaid,
            Fact::Refund(_) => EventKind::Refund,
            Fact::AccountClosed => EventKind::AccountClosed,
            Fact::AccountReopened => EventKind::AccountReopened,
        }
    }

    /// Checks the input and returns its canonical form: the same fact, however it was written,
    /// has the same form (and hash).
    fn canonical(&self) -> AppResult<(Fact, serde_json::Value)> {
        Ok(match self {
            Fact::Purchase(purchase) => {
                let (purchase, detail) = purchase.canonical()?;
                (Fact::Purchase(purchase), detail)
            }
            Fact::PaymentMethodVerified(method) => {
                let (method, detail) = method.canonical()?;
                (Fact::PaymentMethodVerified(method), detail)
            }
            Fact::TopUp(top_up) => {
                let (top_up, detail) = top_up.canonical()?;
                (Fact::TopUp(top_up), detail)
            }
            Fact::InvoicePaid(invoice) => {
                let (invoice, detail) = invoice.canonical()?;
                (Fact::InvoicePaid(invoice), detail)
            }
            Fact::Refund(refund) => {
                let (refund, detail) = refund.canonical()?;
                (Fact::Refund(refund), detail)
            }
            Fact::AccountClosed => (Fact::AccountClosed, json!({})),
            Fact::AccountReopened => (Fact::AccountReopened, json!({})),
        })
    }
}

/// The rules an event is evaluated against, read inside the event's transaction.
pub trait RuleSource: Sync {
    fn rules(&self, txn: &DatabaseTransaction) -> impl Future<Output = AppResult<Vec<Rule>>> + Send;
}

/// The enabled rules: what a real event is evaluated against.
pub struct Published;

impl RuleSource for Published {
    async fn rules(&self, txn: &DatabaseTransaction) -> AppResult<Vec<Rule>> {
        rules::enabled_rules(txn).await
    }
}

/// How a recording ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The event is recorded.
    Commit,
    /// Everything is done and then undone: what the event would do now (the simulator).
    RollBack,
}

/// On PostgreSQL, purchases go to the database two round trips per batch, in batches of those
/// that waited for one of a few writers (see `batches::group_commit` and `purchase::planned`).
pub struct PurchaseBatches(GroupCommit<planned::Pending, AppResult<planned::Planned>>);

/// Batches in flight at once: while one waits for PostgreSQL the other's plans are made in Rust,
/// and purchases under load wait and go together. Measured on two cores, 32 connections, 10³ and
/// 10⁶ accounts: 2 writers beat 4, and 4 beat 8, in rate and in p99 (BENCHMARKS.md, midnight).
const PURCHASE_WRITERS: usize = 2;

/// The instance's purchase batches, written on `pool` (used on PostgreSQL only).
pub fn purchase_batches(pool: OwnedDirect) -> PurchaseBatches {
    PurchaseBatches(GroupCommit::new(PURCHASE_WRITERS, move |batch| {
        let pool = pool.clone();
        async move { planned::record_together(pool.direct(), batch).await }
    }))
}

/// Records an event under the published rules. On PostgreSQL a purchase is first tried in two
/// round trips, with the purchases that wait beside it (`PurchaseBatches`); what that path does
/// not decide is recorded in steps.
pub async fn record(
    direct: Direct<'_>,
    purchases: &PurchaseBatches,
    input: EventInput,
    now: DateTime<Utc>,
) -> AppResult<EventOutcome> {
    let db = direct.db;
    let mut prepared = Prepared::new(input)?;
    if matches!(prepared.fact, Fact::Purchase(_)) && db.get_database_backend() == DbBackend::Postgres {
        let pending = planned::Pending { prepared, now };
        let answer = purchases
            .0
            .write(pending)
            .await
            .map_err(|_| AppError::internal(anyhow::anyhow!("the purchase's batch ended without its answer")))?;
        match answer? {
            planned::Planned::Recorded(outcome) => return Ok(outcome),
            planned::Planned::InSteps(back) => prepared = back,
        }
    }
    record_prepared(db, prepared, &Published, Finish::Commit, now).await
}

/// Records an event against the rules `source` gives, and commits or rolls back.
pub async fn record_with(
    db: &DatabaseConnection,
    input: EventInput,
    source: &impl RuleSource,
    finish: Finish,
    now: DateTime<Utc>,
) -> AppResult<EventOutcome> {
    record_prepared(db, Prepared::new(input)?, source, finish, now).await
}

/// An event's input checked and in canonical form, with the hash that tells a replay from a
/// conflicting reuse of its eventId.
struct Prepared {
    event_id: String,
    external_id: String,
    occurred_at: Option<DateTime<Utc>>,
    fact: Fact,
    /// The canonical input, as stored with the event.
    payload: String,
    hash: String,
}

impl Prepared {
    fn new(input: EventInput) -> AppResult<Prepared> {
        let event_id = required_text("eventId", &input.event_id, 128)?;
        let external_id = required_text("externalId", &input.external_id, 128)?;
        let (fact, detail) = input.fact.canonical()?;
        let canonical = json!({
            "kind": fact.kind(),
            "externalId": external_id,
            "occurredAt": input.occurred_at.map(|t| t.to_rfc3339()),
            "detail": detail,
        });
        Ok(Prepared {
            event_id,
            external_id,
            occurred_at: input.occurred_at,
            fact,
            payload: canonical.to_string(),
            hash: request_hash(&canonical),
        })
    }

    fn key(&self) -> EventKey<'_> {
        EventKey {
            event_id: &self.event_id,
            hash: &self.hash,
        }
    }
}

async fn record_prepared(
    db: &DatabaseConnection,
    prepared: Prepared,
    source: &impl RuleSource,
    finish: Finish,
    now: DateTime<Utc>,
) -> AppResult<EventOutcome> {
    let key = prepared.key();
    // A replay is answered without taking the write lock.
    if let Some(first) = once::stored(db, &key).await? {
        return replay(db, first).await;
    }

    let txn = begin_write(db).await?;
    let account = accounts::get_by_external_id(&txn, &prepared.external_id).await?;
    let row = event::ActiveModel {
        event_id: Set(prepared.event_id.clone()),
        kind: Set(prepared.fact.kind()),
        account_id: Set(account.id),
        request_hash: Set(prepared.hash.clone()),
        payload: Set(prepared.payload.clone()),
        decisions: Set("[]".into()),
        occurred_at: Set(prepared.occurred_at.unwrap_or(now)),
        created_at: Set(now),
        amount: Set(None),
        refund_of: Set(None),
        ..Default::default()
    };
    let (event, txn) = match once::insert(db, txn, &key, row).await? {
        Inserted::New(event, txn) => (event, txn),
        Inserted::First(first) => return replay(db, first).await,
    };

    let rules = source.rules(&txn).await?;
    let step = Step {
        txn: &txn,
        account: &account,
        event: &event,
        timed: prepared.occurred_at.is_some(),
        rules: &rules,
        now,
    };
    let recorded = match &prepared.fact {
        Fact::Purchase(purchase) => purchase::record(&step, purchase).await?,
        Fact::PaymentMethodVerified(method) => payment_method::record(&step, method).await?,
        Fact::TopUp(top_up) => top_up::record(&step, top_up).await?,
        Fact::InvoicePaid(invoice) => invoice::record(&step, invoice).await?,
        Fact::Refund(refund) => refund::record(&step, refund).await?,
        Fact::AccountClosed => account_closed::record(&step).await?,
        Fact::AccountReopened => account_reopened::record(&step).await?,
    };

    let mut row = event.into_active_model();
    row.decisions = Set(serde_json::to_string(&recorded.decisions).map_err(AppError::internal)?);
    row.amount = Set(recorded.amount.map(Amount::micros));
    row.refund_of = Set(recorded.refund_of);
    let event = row.update(&txn).await?;
    let mut rewards = recorded.rewards;
    rewards.sort_by_key(|e| e.id);
    rewards.dedup_by_key(|e| e.id);
    match finish {
        Finish::Commit => {
            txn.commit().await?;
            tracing::info!(event_id = %event.event_id, kind = ?event.kind, entries = rewards.len(), "event recorded");
        }
        Finish::RollBack => txn.rollback().await?,
    }
    Ok(EventOutcome {
        event,
        duplicate: false,
        rewards,
        decisions: recorded.decisions,
        rules,
    })
}

/// What every kind's step works with: the transaction, the event's account (as read at the
/// start), the inserted event, the rules, and the time it is recorded at.
struct Step<'a> {
    txn: &'a DatabaseTransaction,
    account: &'a account::Model,
    event: &'a event::Model,
    /// Whether the input said when it happened; if not, it happened when it arrived.
    timed: bool,
    rules: &'a [Rule],
    now: DateTime<Utc>,
}

/// What a kind's step did.
#[derive(Default)]
struct Recorded {
    /// Entries written or changed: rewards paid, rewards taken back.
    rewards: Vec<ledger_entry::Model>,
    decisions: Vec<Decision>,
    /// The money of the fact, stored with the event (`events.amount`).
    amount: Option<Amount>,
    /// The event a refund refunds (`events.refund_of`).
    refund_of: Option<i64>,
}

impl Step<'_> {
    /// Evaluates the rules against what the event established and pays what they decide. An
    /// event that happened after its account was closed earns nothing.
    async fn apply(
        &self,
        facts: &EventFacts<'_>,
        product: Option<&product::Model>,
    ) -> AppResult<(Vec<ledger_entry::Model>, Vec<Decision>)> {
        if let Some(decisions) = closed_skips(self.account, self.event.occurred_at, self.rules) {
            return Ok((Vec::new(), decisions));
        }
        rewards::apply(
            self.txn,
            self.account,
            Some(self.event),
            facts,
            product,
            self.rules,
            self.now,
        )
        .await
    }
}

/// Every rule skipped, when the event happened after its account was closed: what happens
/// after that earns nothing. `None` when the account was open then.
fn closed_skips(account: &account::Model, occurred_at: DateTime<Utc>, rules: &[Rule]) -> Option<Vec<Decision>> {
    let closed_at = account.closed_at.filter(|closed_at| occurred_at > *closed_at)?;
    let reason = format!(
        "the account was closed at {}; what happens after that earns nothing",
        closed_at.to_rfc3339()
    );
    Some(
        rules
            .iter()
            .map(|rule| Decision {
                rule_id: rule.id,
                rule_name: rule.name.clone(),
                outcome: Outcome::Skipped,
                reason: reason.clone(),
            })
            .collect(),
    )
}

/// An event is recorded once per eventId.
struct EventKey<'a> {
    event_id: &'a str,
    hash: &'a str,
}

impl once::Key for EventKey<'_> {
    type Row = event::Model;

    fn on_conflict(&self) -> OnConflict {
        OnConflict::column(event::Column::EventId)
    }

    async fn find<C: ConnectionTrait>(&self, db: &C) -> AppResult<Option<event::Model>> {
        find_event(db, self.event_id).await
    }

    fn same_request(&self, row: &event::Model) -> bool {
        row.request_hash == *self.hash
    }

    fn conflict(&self, row: &event::Model) -> AppError {
        AppError::IdempotencyConflict(format!(
            "eventId {:?} was already recorded with different input",
            row.event_id
        ))
    }
}

async fn find_event(db: &impl ConnectionTrait, event_id: &str) -> AppResult<Option<event::Model>> {
    Ok(event::Entity::find()
        .filter(event::Column::EventId.eq(event_id))
        .one(db)
        .await?)
}

/// The eventId's first answer again: the entries it wrote or changed (as they are now) and its
/// decisions.
async fn replay(db: &impl ConnectionTrait, event: event::Model) -> AppResult<EventOutcome> {
    let mut rewards = ledger::entries_of_event(db, event.id).await?;
    // Entries the event changed rather than wrote (a pending reward it voided) carry another
    // event's id; only the kinds that take back can have any.
    let takes_back = match event.kind {
        EventKind::Purchase | EventKind::Refund => true,
        EventKind::PaymentMethodVerified
        | EventKind::TopUp
        | EventKind::InvoicePaid
        | EventKind::AccountClosed
        | EventKind::AccountReopened => false,
    };
    let mut changed = if takes_back {
        take_backs::written_by_event(db, event.id).await?
    } else {
        Default::default()
    };
    for entry in &rewards {
        changed.remove(&entry.id);
    }
    if !changed.is_empty() {
        rewards.extend(
            ledger_entry::Entity::find()
                .filter(ledger_entry::Column::Id.is_in(changed))
                .order_by_asc(ledger_entry::Column::Id)
                .all(db)
                .await?,
        );
        rewards.sort_by_key(|e| e.id);
    }
    let decisions = serde_json::from_str(&event.decisions).map_err(AppError::internal)?;
    Ok(EventOutcome {
        event,
        duplicate: true,
        rewards,
        decisions,
        rules: Vec::new(),
    })
}
