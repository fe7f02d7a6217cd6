//! One typed configuration, read from flags and environment variables, validated once at start.

use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Base URL of referral links (`{publicUrl}` in the link template) and of the built-in
    /// landing page. Default: what BIND_ADDR serves, `http://127.0.0.1:PORT`.
    #[arg(long, env = "PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Referral-code lookups one client may make per minute (a guessing guard).
    #[arg(long, env = "CODE_LOOKUPS_PER_MINUTE", default_value_t = 600, global = true)]
    pub code_lookups_per_minute: u32,
    /// Origins of browser apps allowed to call the API from another origin, comma-separated
    /// (`https://app.example.com,https://admin.example.com`). Empty: same-origin only.
    #[arg(long, env = "CORS_ORIGINS", default_value = "", global = true)]
    pub cors_origins: String,
    /// Requests to referral links (`/r/{code}`) one client address may make per minute.
    #[arg(long, env = "LINK_CLICKS_PER_MINUTE", default_value_t = 120, global = true)]
    pub link_clicks_per_minute: u32,
    /// Take the client address of referral-link visits from the last `X-Forwarded-For` entry
    /// (set it only behind a reverse proxy that appends it; anyone can send the header).
    #[arg(long, env = "TRUST_FORWARDED_FOR", default_value_t = false, global = true,
          action = clap::ArgAction::Set)]
    pub trust_forwarded_for: bool,
    /// Answer introspection queries (turn off in production if the schema is private).
    #[arg(long, env = "INTROSPECTION", default_value_t = true, global = true,
          action = clap::ArgAction::Set)]
    pub introspection: bool,
    /// How long a request may take before the client is answered 408 (e.g. 30s, 500ms). A write
    /// it started still runs to its commit or rollback.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration,
          global = true)]
    pub request_timeout: Duration,
    /// How often the background task matures holds and expires credit (e.g. 60s, 5m). Reads
    /// and spends never wait for it: they settle what is due of their account themselves.
    #[arg(long, env = "SETTLE_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration,
          global = true)]
    pub settle_interval: Duration,
    /// Run as a sandbox for integrators: admins may move the server's clock forward
    /// (`advanceClock`) to watch holds mature and credit expire. Never for a real program.
    /// `--sandbox` alone means true.
    #[arg(long, env = "SANDBOX", default_value_t = false, global = true, action = clap::ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub sandbox: bool,
    /// How long a webhook endpoint has to answer one delivery (e.g. 10s) before the attempt
    /// counts as failed and is retried later.
    #[arg(long, env = "WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration,
          global = true)]
    pub webhook_timeout: Duration,
    /// How often each instance looks for events to order and deliveries that are due (e.g. 1s).
    #[arg(long, env = "WEBHOOK_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration,
          global = true)]
    pub webhook_poll_interval: Duration,
    /// Allow webhook endpoints on private, loopback and link-local addresses (a receiver on the
    /// same host or network). Off by default: an admin's URL must not reach internal services.
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE_TARGETS", default_value_t = false, global = true,
          action = clap::ArgAction::Set)]
    pub webhook_allow_private_targets: bool,
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
    /// Origins allowed cross-origin (scheme://host[:port], no trailing slash); empty: none.
    pub cors_origins: Vec<String>,
    pub link_clicks_per_minute: u32,
    pub trust_forwarded_for: bool,
    pub request_timeout: Duration,
    /// Between two passes of the background task (`SETTLE_INTERVAL`).
    pub settle_interval: Duration,
    /// `SANDBOX=true`: admins may move the clock forward; announced at start.
    pub sandbox: bool,
    /// One webhook attempt's limit (`WEBHOOK_TIMEOUT`).
    pub webhook_timeout: Duration,
    /// Between two passes of the webhook dispatcher when nothing wakes it sooner.
    pub webhook_poll_interval: Duration,
    /// `WEBHOOK_ALLOW_PRIVATE_TARGETS=true`: endpoints may be on private or loopback addresses.
    pub webhook_allow_private_targets: bool,
}

/// A webhook attempt gets at least 100ms (a local receiver in a test) and at most a minute:
/// longer only holds a delivery slot that other events wait for.
pub const WEBHOOK_TIMEOUTS: std::ops::RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_secs(60);
/// The dispatcher looks between every 10ms (tests) and every minute.
pub const WEBHOOK_POLL_INTERVALS: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(10)..=Duration::from_secs(60);

/// The shortest and longest `SETTLE_INTERVAL`: more often than every second only loads the
/// database; less often than daily leaves day-long holds visibly late in reports.
pub const SETTLE_INTERVALS: std::ops::RangeInclusive<Duration> = Duration::from_secs(1)..=Duration::from_secs(86_400);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("JWT_SECRET must be at least 32 bytes long")]
    ShortSecret,
    #[error("DATABASE_URL must start with sqlite: or postgres:// (got {0:?})")]
    DatabaseUrl(String),
    #[error("PUBLIC_URL must be an http(s) URL (got {0:?})")]
    PublicUrl(String),
    #[error("CODE_LOOKUPS_PER_MINUTE and LINK_CLICKS_PER_MINUTE must be at least 1")]
    ZeroRate,
    #[error("CORS_ORIGINS must list origins such as https://app.example.com (got {0:?})")]
    CorsOrigin(String),
    #[error("REQUEST_TIMEOUT must be longer than zero")]
    ZeroTimeout,
    #[error("SETTLE_INTERVAL must be between 1s and 1day (got {0:?})")]
    SettleInterval(Duration),
    #[error("WEBHOOK_TIMEOUT must be between 100ms and 60s (got {0:?})")]
    WebhookTimeout(Duration),
    #[error("WEBHOOK_POLL_INTERVAL must be between 10ms and 60s (got {0:?})")]
    WebhookPollInterval(Duration),
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
            public_url: self
                .public_url
                .unwrap_or_else(|| served_url(self.bind_addr))
                .trim_end_matches('/')
                .to_owned(),
            introspection: self.introspection,
            code_lookups_per_minute: self.code_lookups_per_minute,
            cors_origins: parse_origins(&self.cors_origins)?,
            link_clicks_per_minute: self.link_clicks_per_minute,
            trust_forwarded_for: self.trust_forwarded_for,
            request_timeout: self.request_timeout,
            settle_interval: self.settle_interval,
            sandbox: self.sandbox,
            webhook_timeout: self.webhook_timeout,
            webhook_poll_interval: self.webhook_poll_interval,
            webhook_allow_private_targets: self.webhook_allow_private_targets,
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
        if self.code_lookups_per_minute == 0 || self.link_clicks_per_minute == 0 {
            return Err(ConfigError::ZeroRate);
        }
        if let Some(bad) = self.cors_origins.iter().find(|o| !is_origin(o)) {
            return Err(ConfigError::CorsOrigin(bad.clone()));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.jwt_issuer.is_empty() || self.jwt_audience.is_empty() {
            return Err(ConfigError::EmptyClaim);
        }
        if !SETTLE_INTERVALS.contains(&self.settle_interval) {
            return Err(ConfigError::SettleInterval(self.settle_interval));
        }
        if !WEBHOOK_TIMEOUTS.contains(&self.webhook_timeout) {
            return Err(ConfigError::WebhookTimeout(self.webhook_timeout));
        }
        if !WEBHOOK_POLL_INTERVALS.contains(&self.webhook_poll_interval) {
            return Err(ConfigError::WebhookPollInterval(self.webhook_poll_interval));
        }
        Ok(())
    }
}

/// `a, b,` → `[a, b]`; each one must be an origin (checked by `validate`).
fn parse_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    let origins: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| o.trim_end_matches('/').to_owned())
        .collect();
    match origins.iter().find(|o| !is_origin(o)) {
        Some(bad) => Err(ConfigError::CorsOrigin(bad.clone())),
        None => Ok(origins),
    }
}

/// An origin as browsers send it: `http(s)://host[:port]`, nothing after the authority. `*` is
/// not accepted: an API that takes bearer tokens names the apps it trusts.
fn is_origin(origin: &str) -> bool {
    let Some(authority) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        && axum::http::HeaderValue::from_str(origin).is_ok()
}

/// The URL a browser on this machine reaches the server at when it listens on `bind`: an
/// address that means "every interface" is reached through loopback.
fn served_url(bind: SocketAddr) -> String {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, bind.port()))
}

/// A random secret for local use when JWT_SECRET is not set.
fn random_secret() -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(48)
        .map(char::from)
        .collect()
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
    let secret = random_secret();
    std::fs::write(&path, &secret).map_err(io_err)?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cors_origins_are_a_comma_list_of_origins() {
        assert_eq!(parse_origins("").ok(), Some(vec![]));
        assert_eq!(
            parse_origins(" https://app.example.com, http://localhost:5173/ ,").ok(),
            Some(vec![
                "https://app.example.com".to_owned(),
                "http://localhost:5173".to_owned()
            ])
        );
        for bad in [
            "*",
            "app.example.com",
            "https://app.example.com/path",
            "https://",
            "ftp://x.org",
        ] {
            assert!(parse_origins(bad).is_err(), "{bad} accepted");
        }
    }

    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    fn config(args: &[&str]) -> Config {
        let mut argv = vec!["test", "--jwt-secret", "0123456789abcdef0123456789abcdef"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{e}"));
        cli.config.into_config(false).unwrap_or_else(|e| panic!("{e}")).0
    }

    #[test]
    fn the_served_url_is_reached_through_loopback_for_any_interface() {
        let url = |bind: &str| served_url(bind.parse().unwrap_or_else(|e| panic!("{bind}: {e}")));
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080");
        assert_eq!(url("0.0.0.0:9000"), "http://127.0.0.1:9000");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000");
        assert_eq!(url("10.1.2.3:81"), "http://10.1.2.3:81");
    }

    #[test]
    fn the_public_url_follows_the_bind_address_unless_set() {
        let set = config(&["--bind-addr", "0.0.0.0:9000", "--public-url", "https://r.example.com/"]);
        assert_eq!(set.public_url, "https://r.example.com");
        // The default applies only when the environment of the test run does not set it.
        if std::env::var_os("PUBLIC_URL").is_none() {
            assert_eq!(
                config(&["--bind-addr", "0.0.0.0:9000"]).public_url,
                "http://127.0.0.1:9000"
            );
        }
    }
}

#[cfg(test)]
mod sandbox_tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(subcommand)]
        command: Option<Command>,
    }

    #[derive(clap::Subcommand, PartialEq, Debug)]
    enum Command {
        Serve,
    }

    fn parse(args: &[&str]) -> Result<(Config, Option<Command>), String> {
        let mut argv = vec!["test", "--jwt-secret", "0123456789abcdef0123456789abcdef"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let (config, _) = cli.config.into_config(false).map_err(|e| e.to_string())?;
        Ok((config, cli.command))
    }

    #[test]
    fn sandbox_is_a_flag_that_takes_an_optional_value() {
        let sandbox = |args: &[&str]| parse(args).map(|(c, _)| c.sandbox);
        assert_eq!(sandbox(&["--sandbox"]), Ok(true));
        assert_eq!(sandbox(&["--sandbox=true"]), Ok(true));
        assert_eq!(sandbox(&["--sandbox=false"]), Ok(false));
        assert!(sandbox(&["--sandbox=maybe"]).is_err());
        // A bare flag before the subcommand does not swallow it.
        assert_eq!(
            parse(&["--sandbox", "serve"]).map(|(c, cmd)| (c.sandbox, cmd)),
            Ok((true, Some(Command::Serve)))
        );
        if std::env::var_os("SANDBOX").is_none() {
            assert_eq!(sandbox(&[]), Ok(false), "off unless asked for");
        }
    }

    #[test]
    fn the_settle_interval_is_a_duration_within_bounds() {
        let interval = |args: &[&str]| parse(args).map(|(c, _)| c.settle_interval);
        if std::env::var_os("SETTLE_INTERVAL").is_none() {
            assert_eq!(interval(&[]), Ok(Duration::from_secs(60)));
        }
        assert_eq!(interval(&["--settle-interval", "5m"]), Ok(Duration::from_secs(300)));
        assert_eq!(interval(&["--settle-interval", "1s"]), Ok(Duration::from_secs(1)));
        for bad in ["0s", "500ms", "2days", "soon"] {
            assert!(interval(&["--settle-interval", bad]).is_err(), "{bad} accepted");
        }
    }
}
