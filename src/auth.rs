//! Bearer JWTs → a `Viewer`. HS256 only (the algorithm is pinned, so `alg: none` and
//! HS/RS confusion are refused), `exp`, `iss` and `aud` are required and checked. Tokens
//! that passed are remembered by their text until they expire (`VERIFIED_TOKENS`).

use crate::config::Config;
use crate::error::AppError;
use async_graphql::{Context, Guard};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Tokens remembered once verified. A client sends the same token with every request until it
/// expires, and checking one (its HMAC, its JSON) cost about 3 % of a Dashboard's server
/// instructions (callgrind). An entry holds a token's text, its viewer and its `exp`: well
/// under a kilobyte, so at most a few megabytes in all.
const VERIFIED_TOKENS: usize = 4_096;
/// Seconds a token is still taken after its `exp` (clocks of issuers and servers differ).
const LEEWAY_SECONDS: u64 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An end customer; `sub` is its account's externalId.
    Customer,
    /// The admin console.
    Admin,
    /// The billing system, server to server.
    Service,
}

/// Who is asking. `Anonymous` when no token was sent; `Rejected` when one was sent that is not
/// valid (expired, malformed, signed by another key): it is not anonymous, and every field that
/// needs a viewer answers `UNAUTHENTICATED` with the reason, as for a missing token, so a client
/// handles the three the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    Anonymous,
    Rejected { reason: String },
    Customer { external_id: String },
    Admin { subject: String },
    Service { subject: String },
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        matches!(self, Viewer::Admin { .. })
    }

    /// Admins and the billing system see every account in full.
    pub fn is_staff(&self) -> bool {
        matches!(self, Viewer::Admin { .. } | Viewer::Service { .. })
    }

    /// The name written to the audit log.
    pub fn actor(&self) -> String {
        match self {
            Viewer::Anonymous | Viewer::Rejected { .. } => "anonymous".to_owned(),
            Viewer::Customer { external_id } => format!("customer:{external_id}"),
            Viewer::Admin { subject } => format!("admin:{subject}"),
            Viewer::Service { subject } => format!("service:{subject}"),
        }
    }

    pub fn customer_external_id(&self) -> Result<&str, AppError> {
        match self {
            Viewer::Customer { external_id } => Ok(external_id),
            Viewer::Anonymous => Err(AppError::Unauthenticated("a customer token is required".into())),
            Viewer::Rejected { reason } => Err(AppError::Unauthenticated(reason.clone())),
            _ => Err(AppError::Forbidden("this operation is for customers".into())),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iss: String,
    aud: String,
    exp: u64,
    iat: u64,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    /// Tokens that passed every check, with their viewer, until their `exp` (and the leeway):
    /// the same text, signed by the same key, passes again until then. Refused tokens are not
    /// kept: each is checked again.
    verified: Mutex<lru::LruCache<String, Verified>>,
}

#[derive(Clone)]
struct Verified {
    viewer: Viewer,
    expires: u64,
}

impl JwtKeys {
    pub fn new(config: &Config) -> Self {
        let secret = config.jwt_secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&config.jwt_issuer]);
        validation.set_audience(&[&config.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            verified: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(VERIFIED_TOKENS).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }

    pub fn mint(&self, role: Role, subject: &str, ttl: Duration) -> Result<String, AppError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(AppError::internal)
    }

    /// The viewer of a request: anonymous without a header, `Rejected` (never anonymous) with
    /// one that is not a valid bearer token of ours.
    pub fn viewer_of_request(&self, header: Option<&str>) -> Viewer {
        self.viewer_from_header(header)
            .unwrap_or_else(|err| Viewer::Rejected { reason: err.message() })
    }

    /// Reads an `Authorization` header value. No header: anonymous. A header that is not a
    /// valid bearer token of ours is an error rather than anonymous.
    pub fn viewer_from_header(&self, header: Option<&str>) -> Result<Viewer, AppError> {
        let Some(header) = header else {
            return Ok(Viewer::Anonymous);
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| AppError::Unauthenticated("Authorization must be `Bearer <JWT>`".into()))?;
        let token = token.trim();
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(viewer) = self.remembered(token, now) {
            return Ok(viewer);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|err| AppError::Unauthenticated(format!("invalid token: {err}")))?;
        let Claims { sub, role, exp, .. } = data.claims;
        if sub.is_empty() {
            return Err(AppError::Unauthenticated("invalid token: empty subject".into()));
        }
        let viewer = match role {
            Role::Customer => Viewer::Customer { external_id: sub },
            Role::Admin => Viewer::Admin { subject: sub },
            Role::Service => Viewer::Service { subject: sub },
        };
        self.remember(token, &viewer, exp);
        Ok(viewer)
    }

    /// The viewer of a token verified before, while it has not expired at `now`.
    fn remembered(&self, token: &str, now: u64) -> Option<Viewer> {
        let mut verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        match verified.get(token) {
            Some(entry) if now <= entry.expires.saturating_add(LEEWAY_SECONDS) => Some(entry.viewer.clone()),
            Some(_) => {
                verified.pop(token);
                None
            }
            None => None,
        }
    }

    fn remember(&self, token: &str, viewer: &Viewer, expires: u64) {
        let entry = Verified {
            viewer: viewer.clone(),
            expires,
        };
        self.verified
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .put(token.to_owned(), entry);
    }
}

/// Lets a field through only for the listed kinds of viewer. Admins may do everything the
/// billing system may do.
pub struct RoleGuard {
    customer: bool,
    admin: bool,
    service: bool,
}

impl RoleGuard {
    pub const CUSTOMER: RoleGuard = RoleGuard {
        customer: true,
        admin: false,
        service: false,
    };
    pub const ADMIN: RoleGuard = RoleGuard {
        customer: false,
        admin: true,
        service: false,
    };
    pub const SERVICE: RoleGuard = RoleGuard {
        customer: false,
        admin: true,
        service: true,
    };
    pub const STAFF: RoleGuard = RoleGuard {
        customer: false,
        admin: true,
        service: true,
    };
    pub const ANY: RoleGuard = RoleGuard {
        customer: true,
        admin: true,
        service: true,
    };
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let allowed = match ctx.data::<Viewer>()? {
            Viewer::Anonymous => {
                return Err(AppError::Unauthenticated("a bearer token is required".into()).into());
            }
            Viewer::Rejected { reason } => return Err(AppError::Unauthenticated(reason.clone()).into()),
            Viewer::Customer { .. } => self.customer,
            Viewer::Admin { .. } => self.admin,
            Viewer::Service { .. } => self.service,
        };
        if allowed {
            Ok(())
        } else {
            Err(AppError::Forbidden("your role may not use this field".into()).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn config(secret: &str) -> Config {
        Config {
            database_url: "sqlite::memory:".into(),
            bind_addr: ([127, 0, 0, 1], 0).into(),
            jwt_secret: SecretString::from(secret.to_owned()),
            jwt_issuer: "iss".into(),
            jwt_audience: "aud".into(),
            public_url: "http://localhost".into(),
            introspection: true,
            code_lookups_per_minute: 60,
            cors_origins: Vec::new(),
            link_clicks_per_minute: 60,
            trust_forwarded_for: false,
            request_timeout: Duration::from_secs(30),
            settle_interval: Duration::from_secs(60),
            sandbox: false,
            webhook_timeout: Duration::from_secs(5),
            webhook_poll_interval: Duration::from_millis(100),
            webhook_allow_private_targets: true,
        }
    }

    #[test]
    fn round_trips_and_refuses_foreign_keys() {
        let keys = JwtKeys::new(&config("0123456789abcdef0123456789abcdef"));
        let token = keys.mint(Role::Customer, "cust-1", Duration::from_secs(60)).ok();
        let header = token.map(|t| format!("Bearer {t}"));
        assert_eq!(
            keys.viewer_from_header(header.as_deref()).ok(),
            Some(Viewer::Customer {
                external_id: "cust-1".into()
            })
        );
        let other = JwtKeys::new(&config("ffffffffffffffffffffffffffffffff"));
        assert!(other.viewer_from_header(header.as_deref()).is_err());
        assert_eq!(keys.viewer_from_header(None).ok(), Some(Viewer::Anonymous));
        assert!(keys.viewer_from_header(Some("Basic abc")).is_err());
        assert!(matches!(
            keys.viewer_of_request(Some("Bearer not-a-jwt")),
            Viewer::Rejected { .. }
        ));
        assert_eq!(keys.viewer_of_request(None), Viewer::Anonymous);
    }

    /// A token signed by the key but expired: what a remembered token becomes.
    fn expired_token(keys: &JwtKeys, subject: &str) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            role: Role::Customer,
            iss: "iss".into(),
            aud: "aud".into(),
            iat: now - 3_600,
            exp: now - 600,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap_or_default()
    }

    #[test]
    fn a_remembered_token_serves_until_it_expires_and_not_after() {
        let keys = JwtKeys::new(&config("0123456789abcdef0123456789abcdef"));
        let now = jsonwebtoken::get_current_timestamp();
        let customer = Viewer::Customer {
            external_id: "cust-1".into(),
        };
        // Verified once, then served from memory: the same viewer again.
        let token = keys
            .mint(Role::Customer, "cust-1", Duration::from_secs(60))
            .unwrap_or_default();
        let header = format!("Bearer {token}");
        assert_eq!(keys.viewer_from_header(Some(&header)).ok(), Some(customer.clone()));
        assert_eq!(keys.remembered(&token, now), Some(customer.clone()));
        assert_eq!(keys.viewer_from_header(Some(&header)).ok(), Some(customer.clone()));
        // Past its exp and the leeway, it is no longer served, and is forgotten.
        assert_eq!(keys.remembered(&token, now + 60 + LEEWAY_SECONDS + 1), None);
        assert_eq!(keys.remembered(&token, now), None);
        // An expired token is refused even when an entry for it is still there: the entry
        // carries the token's own exp, so a wrong one cannot outlive it.
        let expired = expired_token(&keys, "cust-2");
        keys.remember(&expired, &customer, now - 600);
        assert!(keys.viewer_from_header(Some(&format!("Bearer {expired}"))).is_err());
        // Refusals are not remembered; each is checked again.
        assert_eq!(keys.remembered(&expired, now), None);
        // The cache is per key: another key's server refuses what this one remembered.
        let other = JwtKeys::new(&config("ffffffffffffffffffffffffffffffff"));
        assert!(other.viewer_from_header(Some(&header)).is_err());
    }
}
