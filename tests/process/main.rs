//! Process-level reliability tests: they run the real `referral-server` binary (several
//! processes on one database, SIGKILL and restart, SIGTERM with requests in flight) and talk to
//! it over 127.0.0.1 only.
//!
//! Every test runs on SQLite (a file in a temporary directory, shared by the processes) unless
//! `TEST_DATABASE_URL` names a PostgreSQL server, in which case each test gets its own
//! `rs_test_<random>` database there (left in place: CI drops leftovers).
//!
//! They share only `tests/common` (a fresh database) with `tests/api`: the harness in
//! `harness.rs` starts processes, mints tokens with the binary's `token` command and runs
//! `referral-server check`.

// A failed expectation in a test is a panic with a message: that is what `expect` is for here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod cli;
#[path = "../common/mod.rs"]
mod common;
mod disconnects;
mod harness;
mod kill_replay;
mod logs;
mod sandbox;
mod sigterm;
mod two_servers;
mod webhooks;
