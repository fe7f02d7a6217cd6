//! SeaORM entities, one module per table. Plain data: no GraphQL, no business rules.
//! Amounts (points, credit, cash, rates) are stored as integers in millionths
//! (see `referral_server::amount`), which keeps the ledger exact on SQLite and PostgreSQL alike.

pub mod account;
pub mod adjustment;
pub mod audit_log;
pub mod balance;
pub mod claim;
pub mod click;
pub mod commission_conversion;
pub mod credit_application;
pub mod enums;
pub mod event;
pub mod ledger_entry;
pub mod lot_allocation;
pub mod lot_limit;
pub mod marketing_material;
pub mod outbox_event;
pub mod payment_fingerprint;
pub mod product;
pub mod program_settings;
pub mod provider;
pub mod referral;
pub mod reward_rule;
pub mod take_back;
pub mod webhook_delivery;
pub mod webhook_endpoint;
pub mod withdrawal;
