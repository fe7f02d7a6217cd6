//! One error type for the whole server, with the stable codes of the contract. Internal causes
//! are logged here and never sent: the client sees "internal error" and the code `INTERNAL`.

use async_graphql::ErrorExtensions;
use sea_orm::DbErr;

/// Deliberately not `Display`: async-graphql converts anything `Display` into an error without
/// a code, so a `?` could lose it. The one conversion below always sets `extensions.code`.
#[derive(Debug)]
pub enum AppError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    BadInput(String),
    ProgramDisabled,
    InsufficientBalance(String),
    ClaimLimit(String),
    CodeTaken(String),
    IdempotencyConflict(String),
    RateLimited(String),
    BelowMinimumWithdrawal(String),
    NotAnAffiliate(String),
    Internal(anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated(_) => "UNAUTHENTICATED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::BadInput(_) => "BAD_USER_INPUT",
            AppError::ProgramDisabled => "PROGRAM_DISABLED",
            AppError::InsufficientBalance(_) => "INSUFFICIENT_BALANCE",
            AppError::ClaimLimit(_) => "CLAIM_LIMIT",
            AppError::CodeTaken(_) => "CODE_TAKEN",
            AppError::IdempotencyConflict(_) => "IDEMPOTENCY_CONFLICT",
            AppError::RateLimited(_) => "RATE_LIMITED",
            AppError::BelowMinimumWithdrawal(_) => "BELOW_MINIMUM_WITHDRAWAL",
            AppError::NotAnAffiliate(_) => "NOT_AN_AFFILIATE",
            AppError::Internal(_) => "INTERNAL",
        }
    }

    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            AppError::Unauthenticated(m)
            | AppError::Forbidden(m)
            | AppError::NotFound(m)
            | AppError::BadInput(m)
            | AppError::InsufficientBalance(m)
            | AppError::ClaimLimit(m)
            | AppError::CodeTaken(m)
            | AppError::IdempotencyConflict(m)
            | AppError::RateLimited(m)
            | AppError::BelowMinimumWithdrawal(m)
            | AppError::NotAnAffiliate(m) => m.clone(),
            AppError::ProgramDisabled => "the referral program is switched off".to_owned(),
            AppError::Internal(_) => "internal error".to_owned(),
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        AppError::BadInput(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AppError::NotFound(message.into())
    }

    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        AppError::Internal(cause.into())
    }
}

impl From<DbErr> for AppError {
    fn from(err: DbErr) -> Self {
        AppError::Internal(err.into())
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        if let AppError::Internal(cause) = &err {
            tracing::error!(error = ?cause, "internal error");
        }
        let code = err.code();
        async_graphql::Error::new(err.message()).extend_with(|_, ext| ext.set("code", code))
    }
}
