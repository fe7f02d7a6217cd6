//! The domain. Plain async functions over a connection or a transaction; they validate input,
//! do their work in one transaction, and return domain values. Nothing here knows GraphQL.

pub mod accounts;
pub mod adjustments;
pub mod affiliates;
pub mod audit;
pub mod batches;
pub mod catalog;
pub mod check;
pub mod clicks;
pub mod codes;
pub mod conversions;
pub mod credit;
pub mod events;
pub mod ledger;
pub mod marketing;
pub mod once;
pub mod outbox;
pub mod page;
pub mod payout_schedule;
pub mod presets;
pub mod referral_list;
pub mod referrals;
pub mod report;
pub mod rewards;
pub mod rules;
pub mod sandbox;
pub mod settings;
pub mod signup;
pub mod simulate;
pub mod store;
pub mod take_backs;
pub mod webhooks;
pub mod withdrawals;

use crate::error::AppError;

/// Trims a required text input and checks its length (in characters).
pub fn required_text(field: &str, value: &str, max: usize) -> Result<String, AppError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(AppError::bad_input(format!("{field} must not be empty")));
    }
    if value.chars().count() > max {
        return Err(AppError::bad_input(format!("{field} must be at most {max} characters")));
    }
    Ok(value.to_owned())
}

/// Like `required_text`, but an absent or blank value is `None`.
pub fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, AppError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(value) => required_text(field, value, max).map(Some),
    }
}

/// Keys (provider and product keys) are lower-case identifiers: `[a-z0-9][a-z0-9_.-]*`.
pub fn key_text(field: &str, value: &str) -> Result<String, AppError> {
    let value = required_text(field, value, 64)?.to_ascii_lowercase();
    let valid = value
        .chars()
        .enumerate()
        .all(|(i, c)| c.is_ascii_lowercase() || c.is_ascii_digit() || (i > 0 && matches!(c, '_' | '-' | '.')));
    if valid {
        Ok(value)
    } else {
        Err(AppError::bad_input(format!(
            "{field} may hold only letters, digits, '_', '-' and '.', and starts with a letter or digit"
        )))
    }
}

/// SHA-256 of a request's canonical form, to tell a replay from a conflicting reuse of an id.
pub fn request_hash(canonical: &serde_json::Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_lower_case_identifiers() {
        assert_eq!(key_text("key", " Proxy-1 ").ok(), Some("proxy-1".to_owned()));
        assert!(key_text("key", "-x").is_err());
        assert!(key_text("key", "a b").is_err());
        assert!(key_text("key", "").is_err());
        assert!(key_text("key", &"a".repeat(65)).is_err());
    }
}
