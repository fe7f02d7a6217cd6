//! The rule simulator: the decisions and amounts an event would produce now, under the
//! published rules or under a draft set an admin has not saved, writing nothing.
//!
//! It does not re-implement the events flow: it runs the very same flow (`events::record_with`)
//! in a transaction that is always rolled back. So its answer is what recording the event at
//! this moment does: the same checks and errors, the same account facts (first purchase,
//! top-up total, a corrected first purchase), the same ledger (once-per-referral slots, holds),
//! the same decisions. A draft set is written into that transaction (`rules::stage`: the
//! ledger's entries name their rule), evaluated in place of the published rules, and rolled
//! back with the rest. An eventId that was already recorded is answered as its replay would
//! be.
//!
//! What it costs: the transaction takes the locks a real event takes (on SQLite, the write
//! lock) for its few milliseconds, and on PostgreSQL the ids it drew from sequences are not
//! reused; no id of what it wrote is answered.

use crate::error::{AppError, AppResult};
use crate::service::events::{self, EventInput, EventOutcome, Finish, Published, RuleSource};
use crate::service::rules::{self, MAX_RULES, Rule, RuleInput};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use std::collections::HashMap;
use std::sync::Mutex;

pub struct Simulation {
    pub outcome: EventOutcome,
    /// The id each draft rule had inside the simulation → its position in the given list.
    pub drafts: HashMap<i64, usize>,
}

/// What `event` would do now under the published rules (`drafts: None`) or under the given
/// draft set (only its enabled rules are evaluated, as only enabled rules are once published).
pub async fn simulate(
    db: &DatabaseConnection,
    event: EventInput,
    drafts: Option<Vec<RuleInput>>,
    now: DateTime<Utc>,
) -> AppResult<Simulation> {
    let Some(inputs) = drafts else {
        let outcome = events::record_with(db, event, &Published, Finish::RollBack, now).await?;
        return Ok(Simulation {
            outcome,
            drafts: HashMap::new(),
        });
    };
    if inputs.len() as u64 > MAX_RULES {
        return Err(AppError::bad_input(format!("rules: at most {MAX_RULES} rules")));
    }
    let drafts = inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            rules::draft(input).map_err(|err| match err {
                AppError::BadInput(message) => AppError::bad_input(format!("rules[{i}]: {message}")),
                other => other,
            })
        })
        .collect::<AppResult<Vec<_>>>()?;
    let source = Drafts {
        drafts,
        now,
        stored: Mutex::new(HashMap::new()),
    };
    let outcome = events::record_with(db, event, &source, Finish::RollBack, now).await?;
    let drafts = source
        .stored
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Ok(Simulation { outcome, drafts })
}

/// A draft set: written into the event's transaction (which is rolled back), so that the entries
/// it pays can name their rule, and evaluated instead of the published rules.
struct Drafts {
    drafts: Vec<Rule>,
    now: DateTime<Utc>,
    /// Filled in as the drafts are written: their ids in the transaction → their positions.
    stored: Mutex<HashMap<i64, usize>>,
}

impl RuleSource for Drafts {
    async fn rules(&self, txn: &DatabaseTransaction) -> AppResult<Vec<Rule>> {
        let mut rules = Vec::new();
        let mut ids = HashMap::new();
        for (position, draft) in self.drafts.iter().enumerate().filter(|(_, d)| d.enabled) {
            let stored = rules::stage(txn, draft.clone(), self.now).await?;
            ids.insert(stored.id, position);
            rules.push(stored);
        }
        *self.stored.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = ids;
        Ok(rules)
    }
}
