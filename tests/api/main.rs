//! The integration tests: one binary, every test through HTTP against its own fresh database
//! (SQLite by default; PostgreSQL when `TEST_DATABASE_URL` is set), sending the contract's
//! operations by name.

// A failed expectation in a test is a panic with a message: that is what `expect` is for here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod abuse;
mod admin;
mod admin_tools;
mod affiliate_terms;
mod affiliates;
mod authz;

mod client_cache;
mod cloud_credit;
#[path = "../common/mod.rs"]
mod common;
mod concurrency;
mod conversions;
mod cors;
mod credit;
mod event_feed;
mod fingerprints;
mod helpers;
mod idempotency;
mod integrity;
mod invariants;
mod invoices;
mod link;
mod marketing;
mod payout_schedules;
mod points_store;
mod pool;
mod presets;
mod queries;
mod read_batches;
mod referred_friends;
mod referrer_invoices;
mod refunds;
mod reorder;
mod round_trips;
mod rules;
mod sandbox;
mod schema;
mod settings_cache;
mod simulate;
mod spend_limits;
mod time;
mod validation;
mod webhooks;
mod write_statements;
