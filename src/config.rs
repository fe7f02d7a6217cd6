//! One typed configuration, read from flags and environment variables, validated once at start.

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use std::{net::SocketAddr, path::PathBuf};

/// Where a generated secret is kept for local use, in the working directory.
pub const LOCAL_SECRET_FILE: &str = ".jwt-secret";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://referral-server.db?mode=rwc";

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Database URL: sqlite://FILE?mode=rwc or postgres://USER@HOST/DB.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
    /// Address the HTTP server listens on.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080", global = true)]
    pub bind_addr: SocketAddr,
    /// HS256 key for JWTs, at least 32 bytes. Without it a local key is generated into
    /// ./.jwt-secret (for trying the server out only).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
    /// Expected `iss` claim.
    #[arg(long, env = "JWT_ISSUER", default_value = "referral-server", global = true)]
    pub jwt_issuer: String,
    /// Expected `aud` claim.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "referral-api", global = true)]
    pub jwt_audience: String,
    /// Base URL of referral links (`{publicUrl}` in the link template).
    #[arg(long, env = "PUBLIC_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub public_url: String,
    /// Referral-code lookups one client may make per minute (a guessing guard).
    #[arg(long, env = "CODE_LOOKUPS_PER_MINUTE", default_value_t = 600, global = true)]
    pub code_lookups_per_minute: u32,
    /// Answer introspection queries (turn off in production if the schema is private).
    #[arg(long, env = "INTROSPECTION", default_value_t = true, global = true,
          action = clap::ArgAction::Set)]
    pub introspection: bool,
    /// How long a request may take before the client is answered 408 (e.g. 30s, 500ms). A write
    /// it started still runs to its commit or rollback.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration,
          global = true)]
    pub request_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub bind_addr: SocketAddr,
    pub jwt_secret: SecretString,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub public_url: String,
    pub introspection: bool,
    pub code_lookups_per_minute: u32,
    pub request_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("JWT_SECRET must be at least 32 bytes long")]
    ShortSecret,
    #[error("DATABASE_URL must start with sqlite: or postgres:// (got {0:?})")]
    DatabaseUrl(String),
    #[error("PUBLIC_URL must be an http(s) URL (got {0:?})")]
    PublicUrl(String),
    #[error("CODE_LOOKUPS_PER_MINUTE must be at least 1")]
    ZeroRate,
    #[error("REQUEST_TIMEOUT must be longer than zero")]
    ZeroTimeout,
    #[error("JWT_ISSUER and JWT_AUDIENCE must not be empty")]
    EmptyClaim,
    #[error("could not read or write {path}: {source}")]
    SecretFile { path: PathBuf, source: std::io::Error },
}

impl ConfigArgs {
    /// Validates the arguments. `allow_local_secret` lets a missing JWT_SECRET be generated
    /// (or read back) from ./.jwt-secret; the returned flag says whether that happened.
    pub fn into_config(self, allow_local_secret: bool) -> Result<(Config, bool), ConfigError> {
        let (secret, generated) = match self.jwt_secret {
            Some(secret) => (secret, false),
            None if allow_local_secret => (load_or_create_local_secret()?, true),
            None => return Err(ConfigError::ShortSecret),
        };
        let config = Config {
            database_url: self.database_url,
            bind_addr: self.bind_addr,
            jwt_secret: SecretString::from(secret),
            jwt_issuer: self.jwt_issuer,
            jwt_audience: self.jwt_audience,
            public_url: self.public_url.trim_end_matches('/').to_owned(),
            introspection: self.introspection,
            code_lookups_per_minute: self.code_lookups_per_minute,
            request_timeout: self.request_timeout,
        };
        config.validate()?;
        Ok((config, generated))
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.jwt_secret.expose_secret().len() < 32 {
            return Err(ConfigError::ShortSecret);
        }
        let url = &self.database_url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::DatabaseUrl(url.clone()));
        }
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            return Err(ConfigError::PublicUrl(self.public_url.clone()));
        }
        if self.code_lookups_per_minute == 0 {
            return Err(ConfigError::ZeroRate);
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.jwt_issuer.is_empty() || self.jwt_audience.is_empty() {
            return Err(ConfigError::EmptyClaim);
        }
        Ok(())
    }
}

fn load_or_create_local_secret() -> Result<String, ConfigError> {
    let path = PathBuf::from(LOCAL_SECRET_FILE);
    let io_err = |source| ConfigError::SecretFile {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing.trim().len() >= 32 => return Ok(existing.trim().to_owned()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_err(err)),
    }
    let secret = crate::auth::random_secret();
    std::fs::write(&path, &secret).map_err(io_err)?;
    Ok(secret)
}
