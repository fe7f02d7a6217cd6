//! Referral links followed: which code a link names, where it lands, and the clicks counted on
//! it (one per visitor, per account, per UTC day), and the counts shown on dashboards.
//!
//! A visitor is a SHA-256 of its address and user agent, salted with a key derived from the
//! server's JWT secret and the day: raw addresses are never stored, and the same person cannot
//! be followed from one day to the next through the table.

use crate::db::inserted;
use crate::error::AppResult;
use crate::service::accounts;
use crate::service::codes::ReferralCode;
use chrono::{DateTime, NaiveDate, Utc};
use entity::enums::ReferralStatus;
use entity::{click, program_settings, referral};
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, Set};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use url::Url;

/// Parts of user agents that announce a robot: search crawlers (`bot`, `crawler`, `spider`,
/// Yahoo's `slurp`), the link previews of chat and social apps (`facebookexternalhit`,
/// `preview`, `whatsapp`, and `bot` again for Slack, Discord, Telegram, Twitter, LinkedIn),
/// headless browsers, and command-line clients (`curl`, `wget`), which a person testing a
/// link uses, not a friend about to sign up. A visit without a user agent is not counted
/// either: every browser sends one.
pub const ROBOT_MARKERS: &[&str] = &[
    "bot",
    "crawler",
    "spider",
    "slurp",
    "facebookexternalhit",
    "preview",
    "whatsapp",
    "headless",
    "curl",
    "wget",
];

/// Whether a visit with this user agent is left uncounted as a robot's.
pub fn is_robot(user_agent: Option<&str>) -> bool {
    match user_agent.map(str::trim) {
        None | Some("") => true,
        Some(agent) => {
            let agent = agent.to_ascii_lowercase();
            ROBOT_MARKERS.iter().any(|marker| agent.contains(marker))
        }
    }
}

/// A visit that may count as a click.
pub struct Visit<'a> {
    /// The server's JWT secret, from which the visitor hash's salt is derived.
    pub secret: &'a str,
    pub address: IpAddr,
    pub user_agent: &'a str,
}

/// The visitor of a day: hex SHA-256 over a salt derived from the secret, the day, the
/// address and the user agent (length-prefixed, so no two inputs run into one another).
pub fn visitor_hash(secret: &str, day: NaiveDate, address: IpAddr, user_agent: &str) -> String {
    let salt = Sha256::new()
        .chain_update(b"referral-link-visitor\0")
        .chain_update(secret.as_bytes())
        .finalize();
    let address = address.to_canonical().to_string();
    let day = day.format("%Y-%m-%d").to_string();
    let mut hasher = Sha256::new().chain_update(salt);
    for part in [day.as_str(), address.as_str(), user_agent] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Where a followed link goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Followed {
    /// The canonical code, when the link named an account that may refer now; `None` for an
    /// unknown or malformed code, or while the program is switched off (a sign-up would be
    /// rejected then, so nothing is carried and nothing counted).
    pub code: Option<String>,
    /// The program's landing page; `None` until an admin sets one.
    pub landing_url: Option<String>,
    pub cookie_days: i32,
    /// Whether this visit was a new click.
    pub counted: bool,
}

/// Follows the link of `raw_code` (any case): finds its account and, for a `visit` that may
/// count, records the visitor's click of the day unless it is already there. `settings` are the
/// program's as the instance holds them (its settings cache): a visit reads no settings row.
#[tracing::instrument(skip(db, settings, visit))]
pub async fn follow(
    db: &impl ConnectionTrait,
    settings: &program_settings::Model,
    raw_code: &str,
    visit: Option<Visit<'_>>,
    now: DateTime<Utc>,
) -> AppResult<Followed> {
    let account = match ReferralCode::parse(raw_code) {
        // A disqualified account can no longer refer: its link leads nowhere, like an unknown code.
        Ok(code) if settings.enabled => accounts::find_by_code(db, &code)
            .await?
            .filter(|account| account.disqualified_at.is_none()),
        _ => None,
    };
    let counted = match (&account, visit) {
        (Some(account), Some(visit)) => {
            let day = now.date_naive();
            let row = click::ActiveModel {
                account_id: Set(account.id),
                visitor_hash: Set(visitor_hash(visit.secret, day, visit.address, visit.user_agent)),
                day: Set(day),
                code: Set(account.referral_code.clone()),
                created_at: Set(now),
                ..Default::default()
            };
            // The unique (account, visitor, day) index decides, also between concurrent visits.
            let insert = click::Entity::insert(row)
                .on_conflict(OnConflict::new().do_nothing().to_owned())
                .try_insert()
                .exec_with_returning(db)
                .await;
            inserted(insert)?.is_some()
        }
        _ => false,
    };
    Ok(Followed {
        code: account.map(|a| a.referral_code),
        landing_url: settings.landing_url.clone(),
        cookie_days: settings.cookie_days,
        counted,
    })
}

/// `landing` with `ref=CODE` added to its query: the other parameters are kept, and a `ref`
/// the page already had is replaced. No code: `landing` as it is.
pub fn landing_location(landing: &Url, code: Option<&str>) -> Url {
    let mut url = landing.clone();
    let Some(code) = code else { return url };
    if url.query_pairs().any(|(name, _)| name == "ref") {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, _)| name != "ref")
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url.query_pairs_mut().append_pair("ref", code);
    url
}

/// What a dashboard shows about an account's referring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReferralStats {
    /// Clicks counted on its referral link.
    pub clicks: i64,
    /// Friends whose referral was accepted (pending or qualified).
    pub signups: i64,
    /// Of those, the ones that qualified.
    pub qualified: i64,
}

/// The referral stats of many accounts in two grouped queries, whatever their number.
pub async fn stats_of(db: &impl ConnectionTrait, account_ids: &[i64]) -> AppResult<HashMap<i64, ReferralStats>> {
    let clicks: Vec<(i64, i64)> = click::Entity::find()
        .select_only()
        .column(click::Column::AccountId)
        .column_as(Expr::from(Func::cast_as(Func::count(Expr::val(1)), "BIGINT")), "clicks")
        .filter(click::Column::AccountId.is_in(account_ids.iter().copied()))
        .group_by(click::Column::AccountId)
        .into_tuple()
        .all(db)
        .await?;
    let qualified = Expr::case(referral::Column::Status.eq(ReferralStatus::Qualified), 1).finally(0);
    let referrals: Vec<(i64, i64, i64)> = referral::Entity::find()
        .select_only()
        .column(referral::Column::ReferrerId)
        .column_as(
            Expr::from(Func::cast_as(Func::count(Expr::val(1)), "BIGINT")),
            "signups",
        )
        .column_as(
            Expr::from(Func::cast_as(Func::sum(Into::<Expr>::into(qualified)), "BIGINT")),
            "qualified",
        )
        .filter(referral::Column::ReferrerId.is_in(account_ids.iter().copied()))
        .filter(referral::Column::Status.ne(ReferralStatus::Rejected))
        .group_by(referral::Column::ReferrerId)
        .into_tuple()
        .all(db)
        .await?;
    let mut stats: HashMap<i64, ReferralStats> = HashMap::new();
    for (account_id, count) in clicks {
        stats.entry(account_id).or_default().clicks = count;
    }
    for (account_id, signups, qualified) in referrals {
        let entry = stats.entry(account_id).or_default();
        entry.signups = signups;
        entry.qualified = qualified;
    }
    Ok(stats)
}

/// An affiliate's statement for a period: clicks counted on its link, sign-ups (referrals
/// accepted, pending or qualified) and conversions (referrals that qualified), each counted
/// when it happened within [from, to); an open end is unbounded. Two statements.
pub async fn stats_between(
    db: &impl ConnectionTrait,
    account_id: i64,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> AppResult<ReferralStats> {
    let within = |column: Expr| {
        let mut condition = sea_orm::Condition::all();
        if let Some(from) = from {
            condition = condition.add(column.clone().gte(from));
        }
        if let Some(to) = to {
            condition = condition.add(column.lt(to));
        }
        condition
    };
    let clicks: Option<i64> = click::Entity::find()
        .select_only()
        .column_as(Expr::from(Func::cast_as(Func::count(Expr::val(1)), "BIGINT")), "clicks")
        .filter(click::Column::AccountId.eq(account_id))
        .filter(within(Expr::col(click::Column::CreatedAt)))
        .into_tuple()
        .one(db)
        .await?;
    let signed_up = Expr::case(within(Expr::col(referral::Column::CreatedAt)), 1).finally(0);
    let qualified = Expr::case(
        within(Expr::col(referral::Column::QualifiedAt)).add(referral::Column::Status.eq(ReferralStatus::Qualified)),
        1,
    )
    .finally(0);
    let referrals: Option<(Option<i64>, Option<i64>)> = referral::Entity::find()
        .select_only()
        .column_as(
            Expr::from(Func::cast_as(Func::sum(Into::<Expr>::into(signed_up)), "BIGINT")),
            "signups",
        )
        .column_as(
            Expr::from(Func::cast_as(Func::sum(Into::<Expr>::into(qualified)), "BIGINT")),
            "qualified",
        )
        .filter(referral::Column::ReferrerId.eq(account_id))
        .filter(referral::Column::Status.ne(ReferralStatus::Rejected))
        .into_tuple()
        .one(db)
        .await?;
    let (signups, qualified) = referrals.unwrap_or_default();
    Ok(ReferralStats {
        clicks: clicks.unwrap_or(0),
        signups: signups.unwrap_or(0),
        qualified: qualified.unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robots_and_agentless_visits_are_recognised() {
        for agent in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "facebookexternalhit/1.1",
            "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
            "Mozilla/5.0 (compatible; Yahoo! Slurp)",
            "WhatsApp/2.23.20.0",
            "Mozilla/5.0 HeadlessChrome/120.0",
            "curl/8.5.0",
            "",
        ] {
            assert!(is_robot(Some(agent)), "{agent}");
        }
        assert!(is_robot(None));
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert!(!is_robot(Some(firefox)));
    }

    #[test]
    fn a_visitor_is_the_same_within_a_day_and_hides_its_address() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default();
        let next = day.succ_opt().unwrap_or_default();
        let ip = IpAddr::from([203, 0, 113, 7]);
        let hash = visitor_hash("secret", day, ip, "Firefox");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, visitor_hash("secret", day, ip, "Firefox"));
        // The same address as an IPv4-mapped IPv6 address is the same visitor.
        assert_eq!(
            hash,
            visitor_hash("secret", day, "::ffff:203.0.113.7".parse().unwrap_or(ip), "Firefox")
        );
        assert_ne!(hash, visitor_hash("secret", day, ip, "Chrome"));
        assert_ne!(
            hash,
            visitor_hash("secret", day, IpAddr::from([203, 0, 113, 8]), "Firefox")
        );
        assert_ne!(hash, visitor_hash("secret", next, ip, "Firefox"));
        assert_ne!(hash, visitor_hash("other secret", day, ip, "Firefox"));
        assert!(!hash.contains("203"));
    }

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn the_code_is_added_to_the_landing_page_as_ref() {
        let landing = url("https://shop.example.com/signup?plan=pro&utm_source=x%20y#form");
        assert_eq!(
            landing_location(&landing, Some("CLOUD21")).as_str(),
            "https://shop.example.com/signup?plan=pro&utm_source=x%20y&ref=CLOUD21#form"
        );
        assert_eq!(
            landing_location(&url("https://shop.example.com/"), Some("CLOUD21")).as_str(),
            "https://shop.example.com/?ref=CLOUD21"
        );
        // A ref the page already had is replaced, not doubled.
        let with_ref = url("https://shop.example.com/signup?ref=OLD&plan=pro");
        assert_eq!(
            landing_location(&with_ref, Some("CLOUD21")).as_str(),
            "https://shop.example.com/signup?plan=pro&ref=CLOUD21"
        );
        assert_eq!(landing_location(&landing, None), landing);
    }
}
