//! A self-hosted referral and rewards engine with a GraphQL API.
//! `main.rs`, the tests and the schema export all build the server through this library.

pub mod amount;
pub mod auth;
pub mod clock;
pub mod config;
pub mod db;
pub mod detach;
pub mod dispatcher;
pub mod error;
pub mod graphql;
pub mod http;
pub mod limits;
pub mod link;
pub mod logging;
pub mod service;
pub mod sqlite_writer;
pub mod state;
pub mod tasks;

pub use http::{build_app, serve};
pub use state::AppState;
