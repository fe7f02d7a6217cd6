//! The benchmark dataset: its shape (pure, deterministic from the seed) and the rows it makes.
//!
//! Accounts `u1..uN` form referral trees of 364 accounts each: a root and three friends per
//! account down to depth 5 (1 + 3 + 9 + 27 + 81 + 243). About 70 % of referred accounts have
//! made a first residential purchase: that purchase is an event, the referral is QUALIFIED and
//! the referrer holds a REWARD lot of product rate × GB. Every account also holds 2–8 points
//! adjustments (lots) and 0–8 claims, each paid by a CLAIM debit that consumed its lots in the
//! ledger's order, with the lot allocations that record it. Balances are the sums, so
//! `referral-server check` holds on the result. Account 1 is the hot account: one extra lot of
//! a billion points.
//!
//! Rows are produced one table at a time (a pass over all accounts per table); every pass
//! recomputes the same per-account plans and ids from the seed, so nothing large is kept in
//! memory.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Accounts per referral tree: depth 0..=5 with three friends each.
pub const TREE: u64 = 364;
pub const BRANCH: u64 = 3;
#[cfg(test)]
pub const MAX_DEPTH: u32 = 5;
/// Millionths per unit.
pub const MICROS: i64 = 1_000_000;
/// Points of the hot account's extra lot.
pub const HOT_LOT_POINTS: i64 = 1_000_000_000;

/// Providers: (key, name, redemption rate in points per GB).
pub const PROVIDERS: [(&str, &str, i64); 3] = [
    ("acme", "Acme Proxies", 100),
    ("globex", "Globex Data", 250),
    ("initech", "Initech Networks", 50),
];

/// Products: (key, provider index, name, category, product rate in points per GB). The first
/// three are residential (they earn referral points), the others are not.
pub const PRODUCTS: [(&str, usize, &str, &str, i64); 6] = [
    ("acme-res", 0, "Acme Residential", "residential", 15),
    ("globex-res", 1, "Globex Residential", "residential", 20),
    ("initech-res", 2, "Initech Residential", "residential", 10),
    ("acme-dc", 0, "Acme Datacenter", "datacenter", 5),
    ("globex-dc", 1, "Globex Datacenter", "datacenter", 8),
    ("initech-dc", 2, "Initech Datacenter", "datacenter", 3),
];

/// 2025-01-01T00:00:00Z, seconds since the epoch: the dataset's clock starts there.
const EPOCH: i64 = 1_735_689_600;

/// SplitMix64: a pure hash of (seed, n), for facts that must be known without a pass.
pub fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A referred account's first purchase: which residential product, how many GB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Purchase {
    pub product: usize,
    pub gb: i64,
}

impl Purchase {
    pub fn reward_micros(self) -> i64 {
        PRODUCTS[self.product].4 * self.gb * MICROS
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub accounts: u64,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LotSource {
    /// A referral reward for this referee's first purchase.
    Reward {
        referee: u64,
        purchase: Purchase,
    },
    Adjustment,
}

#[derive(Clone, Debug)]
pub struct Lot {
    pub source: LotSource,
    pub amount: i64,
    pub remaining: i64,
}

#[derive(Clone, Debug)]
pub struct ClaimPlan {
    pub provider: usize,
    pub cost: i64,
    pub completed: bool,
    /// (index into `lots`, amount taken)
    pub allocations: Vec<(usize, i64)>,
}

/// What one account holds in the ledger.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub lots: Vec<Lot>,
    pub claims: Vec<ClaimPlan>,
}

impl Plan {
    pub fn entries(&self) -> usize {
        self.lots.len() + self.claims.len()
    }

    pub fn available(&self) -> i64 {
        self.lots.iter().map(|l| l.remaining).sum()
    }

    pub fn lifetime_earned(&self) -> i64 {
        self.lots
            .iter()
            .filter(|l| matches!(l.source, LotSource::Reward { .. }))
            .map(|l| l.amount)
            .sum()
    }
}

impl Shape {
    fn position(&self, account: u64) -> u64 {
        (account - 1) % TREE
    }

    /// The account that referred this one (none for a tree's root).
    pub fn parent(&self, account: u64) -> Option<u64> {
        let p = self.position(account);
        (p > 0).then(|| account - p + (p - 1) / BRANCH)
    }

    pub fn children(&self, account: u64) -> impl Iterator<Item = u64> + use<> {
        let p = self.position(account);
        let base = account - p;
        let accounts = self.accounts;
        (1..=BRANCH)
            .map(move |k| (BRANCH * p + k, base + BRANCH * p + k))
            .filter_map(move |(pos, id)| (pos < TREE && id <= accounts).then_some(id))
    }

    pub fn depth(&self, account: u64) -> u32 {
        let mut depth = 0;
        let mut at = account;
        while let Some(parent) = self.parent(at) {
            depth += 1;
            at = parent;
        }
        depth
    }

    /// The referral row of a referred account: ids 1.. in account order, roots skipped.
    pub fn referral_id(&self, account: u64) -> Option<u64> {
        self.parent(account).map(|_| account - ((account - 1) / TREE + 1))
    }

    /// About 70 % of referred accounts made a first (residential) purchase.
    pub fn purchase(&self, account: u64) -> Option<Purchase> {
        self.parent(account)?;
        let h = mix(self.seed, account);
        (h % 10 < 7).then_some(Purchase {
            product: ((h >> 8) % 3) as usize,
            gb: 1 + ((h >> 16) % 50) as i64,
        })
    }

    /// The account's lots and claims, from its own seeded generator.
    pub fn plan(&self, account: u64) -> Plan {
        let mut rng = StdRng::seed_from_u64(mix(self.seed ^ 0xA5A5_A5A5, account));
        let mut lots = Vec::new();
        for referee in self.children(account) {
            if let Some(purchase) = self.purchase(referee) {
                let amount = purchase.reward_micros();
                lots.push(Lot {
                    source: LotSource::Reward { referee, purchase },
                    amount,
                    remaining: amount,
                });
            }
        }
        if account == 1 {
            let amount = HOT_LOT_POINTS * MICROS;
            lots.push(Lot {
                source: LotSource::Adjustment,
                amount,
                remaining: amount,
            });
        }
        for _ in 0..rng.random_range(2..=8) {
            let amount = rng.random_range(20_000..=100_000) * MICROS;
            lots.push(Lot {
                source: LotSource::Adjustment,
                amount,
                remaining: amount,
            });
        }
        let mut claims = Vec::new();
        for _ in 0..rng.random_range(0..=8) {
            let provider = rng.random_range(0..PROVIDERS.len());
            let cost = PROVIDERS[provider].2 * MICROS;
            let completed = rng.random_range(0..10) < 8;
            if lots.iter().map(|l| l.remaining).sum::<i64>() < cost {
                break;
            }
            // The ledger's order: soonest expiry first (none expire here), then oldest.
            let mut left = cost;
            let mut allocations = Vec::new();
            for (index, lot) in lots.iter_mut().enumerate() {
                if left == 0 {
                    break;
                }
                let take = lot.remaining.min(left);
                if take > 0 {
                    lot.remaining -= take;
                    left -= take;
                    allocations.push((index, take));
                }
            }
            claims.push(ClaimPlan {
                provider,
                cost,
                completed,
                allocations,
            });
        }
        Plan { lots, claims }
    }
}

/// A value of a generated row.
#[derive(Clone, Debug, PartialEq)]
pub enum V {
    I(i64),
    S(String),
    Null,
}

impl From<i64> for V {
    fn from(v: i64) -> Self {
        V::I(v)
    }
}

impl From<u64> for V {
    fn from(v: u64) -> Self {
        V::I(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<&str> for V {
    fn from(v: &str) -> Self {
        V::S(v.to_owned())
    }
}

impl From<String> for V {
    fn from(v: String) -> Self {
        V::S(v)
    }
}

impl<T: Into<V>> From<Option<T>> for V {
    fn from(v: Option<T>) -> Self {
        v.map_or(V::Null, Into::into)
    }
}

/// The tables the generator fills, in load order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Accounts,
    Referrals,
    Events,
    Claims,
    LedgerEntries,
    LotAllocations,
    Balances,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Accounts,
        Table::Referrals,
        Table::Events,
        Table::Claims,
        Table::LedgerEntries,
        Table::LotAllocations,
        Table::Balances,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Accounts => "accounts",
            Table::Referrals => "referrals",
            Table::Events => "events",
            Table::Claims => "claims",
            Table::LedgerEntries => "ledger_entries",
            Table::LotAllocations => "lot_allocations",
            Table::Balances => "balances",
        }
    }

    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Accounts => &[
                "id",
                "external_id",
                "display_name",
                "email",
                "account_group",
                "referral_code",
                "status",
                "first_purchase_at",
                "created_at",
                "billing_scheme",
                "top_up_total",
                "payment_method_verified_at",
            ],
            Table::Referrals => &[
                "id",
                "referee_id",
                "referrer_id",
                "status",
                "rejection_reason",
                "code_used",
                "source",
                "created_at",
                "qualified_at",
            ],
            Table::Events => &[
                "id",
                "event_id",
                "kind",
                "account_id",
                "request_hash",
                "payload",
                "decisions",
                "occurred_at",
                "created_at",
            ],
            Table::Claims => &[
                "id",
                "account_id",
                "provider_id",
                "gb",
                "points",
                "status",
                "idempotency_key",
                "request_hash",
                "created_at",
                "decided_at",
            ],
            Table::LedgerEntries => &[
                "id",
                "account_id",
                "unit",
                "amount",
                "remaining",
                "kind",
                "status",
                "description",
                "event_id",
                "referral_id",
                "rule_id",
                "occurrence",
                "claim_id",
                "available_at",
                "expires_at",
                "created_at",
                "rule_snapshot",
            ],
            Table::LotAllocations => &["id", "debit_entry_id", "lot_entry_id", "amount"],
            Table::Balances => &["account_id", "unit", "available", "pending", "lifetime_earned"],
        }
    }
}

/// RFC 3339 in UTC, as the server writes timestamps (`2025-01-01T00:00:00+00:00`).
pub fn timestamp(secs_since_epoch: i64) -> String {
    let days = secs_since_epoch.div_euclid(86_400);
    let secs = secs_since_epoch.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn account_time(account: u64) -> i64 {
    EPOCH + i64::try_from(account).unwrap_or(0) * 10
}

/// The referral code of an account: unique, upper-case.
pub fn referral_code(account: u64) -> String {
    format!("BN{account:08X}")
}

fn masked(account: u64) -> String {
    format!("Us*** {}.", account % 10)
}

/// Ids handed out while a pass runs; every pass computes the same ones.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub entries: u64,
    pub claims: u64,
    pub allocations: u64,
}

/// Runs a pass over `accounts` and hands each row of `table` to `emit`. `rule_id` is the
/// points-store rule that paid the rewards; `start` the ids handed out before the first of
/// these accounts. Returns the ids handed out after the last.
pub fn rows(
    shape: &Shape,
    table: Table,
    rule_id: i64,
    accounts: std::ops::RangeInclusive<u64>,
    start: Counters,
    mut emit: impl FnMut(Vec<V>),
) -> Counters {
    let mut next = start;
    for account in accounts {
        let created = account_time(account);
        let purchase = shape.purchase(account);
        let purchased_at = created + 3_600;
        match table {
            Table::Accounts => emit(vec![
                account.into(),
                format!("u{account}").into(),
                format!("User {account}").into(),
                V::Null,
                V::Null,
                referral_code(account).into(),
                "ACTIVE".into(),
                purchase.map(|_| timestamp(purchased_at)).into(),
                timestamp(created).into(),
                "POSTPAID".into(),
                0i64.into(),
                V::Null,
            ]),
            Table::Referrals => {
                if let (Some(parent), Some(id)) = (shape.parent(account), shape.referral_id(account)) {
                    emit(vec![
                        id.into(),
                        account.into(),
                        parent.into(),
                        if purchase.is_some() { "QUALIFIED" } else { "PENDING" }.into(),
                        V::Null,
                        referral_code(parent).into(),
                        "CODE".into(),
                        timestamp(created).into(),
                        purchase.map(|_| timestamp(purchased_at)).into(),
                    ]);
                }
            }
            Table::Events => {
                if let (Some(p), Some(id)) = (purchase, shape.referral_id(account)) {
                    let (key, ..) = PRODUCTS[p.product];
                    emit(vec![
                        id.into(),
                        format!("seed-purchase-{account}").into(),
                        "PURCHASE".into(),
                        account.into(),
                        format!("{:016x}{:016x}{:016x}{:016x}", mix(1, account), mix(2, account), mix(3, account), mix(4, account)).into(),
                        format!(
                            r#"{{"detail":{{"amount":null,"productKey":"{key}","quantityGb":{}}},"externalId":"u{account}","kind":"PURCHASE","occurredAt":null}}"#,
                            p.gb * MICROS
                        )
                        .into(),
                        format!(
                            r#"[{{"rule_id":{rule_id},"rule_name":"Points for a friend's first residential purchase","outcome":"REWARDED","reason":"first purchase"}}]"#
                        )
                        .into(),
                        timestamp(purchased_at).into(),
                        timestamp(purchased_at).into(),
                    ]);
                }
            }
            _ => {}
        }
        if matches!(
            table,
            Table::Claims | Table::LedgerEntries | Table::LotAllocations | Table::Balances
        ) {
            let plan = shape.plan(account);
            let first_entry = next.entries + 1;
            let first_claim = next.claims + 1;
            let first_debit = first_entry + plan.lots.len() as u64;
            match table {
                Table::Claims => {
                    for (k, c) in plan.claims.iter().enumerate() {
                        let at = created + 7_200 + 60 * k as i64;
                        emit(vec![
                            (first_claim + k as u64).into(),
                            account.into(),
                            (c.provider as u64 + 1).into(),
                            1i64.into(),
                            c.cost.into(),
                            if c.completed { "COMPLETED" } else { "PENDING" }.into(),
                            V::Null,
                            format!("{:016x}", mix(5, first_claim + k as u64)).into(),
                            timestamp(at).into(),
                            c.completed.then(|| timestamp(at + 600)).into(),
                        ]);
                    }
                }
                Table::LedgerEntries => {
                    for (k, lot) in plan.lots.iter().enumerate() {
                        let id = first_entry + k as u64;
                        let at = created + 3_600 + 60 * k as i64;
                        let row = match &lot.source {
                            LotSource::Reward { referee, purchase } => {
                                let (_, _, product, _, rate) = PRODUCTS[purchase.product];
                                let referral = shape.referral_id(*referee);
                                vec![
                                    id.into(),
                                    account.into(),
                                    "POINTS".into(),
                                    lot.amount.into(),
                                    lot.remaining.into(),
                                    "REWARD".into(),
                                    "POSTED".into(),
                                    format!(
                                        "Referral reward: {} made a first purchase ({} GB of {product})",
                                        masked(*referee),
                                        purchase.gb
                                    )
                                    .into(),
                                    referral.into(),
                                    referral.into(),
                                    rule_id.into(),
                                    1i64.into(),
                                    V::Null,
                                    timestamp(at).into(),
                                    V::Null,
                                    timestamp(at).into(),
                                    format!(r#"{{"id":{rule_id},"calculation":"PRODUCT_RATE","productRate":{rate}}}"#)
                                        .into(),
                                ]
                            }
                            LotSource::Adjustment => vec![
                                id.into(),
                                account.into(),
                                "POINTS".into(),
                                lot.amount.into(),
                                lot.remaining.into(),
                                "ADJUSTMENT".into(),
                                "POSTED".into(),
                                "Points adjustment: welcome bonus".into(),
                                V::Null,
                                V::Null,
                                V::Null,
                                V::Null,
                                V::Null,
                                timestamp(at).into(),
                                V::Null,
                                timestamp(at).into(),
                                V::Null,
                            ],
                        };
                        emit(row);
                    }
                    for (k, c) in plan.claims.iter().enumerate() {
                        let at = created + 7_200 + 60 * k as i64;
                        let (_, name, _) = PROVIDERS[c.provider];
                        emit(vec![
                            (first_debit + k as u64).into(),
                            account.into(),
                            "POINTS".into(),
                            (-c.cost).into(),
                            V::Null,
                            "CLAIM".into(),
                            "POSTED".into(),
                            format!("Reward claim: 1 GB of {name} data").into(),
                            V::Null,
                            V::Null,
                            V::Null,
                            V::Null,
                            (first_claim + k as u64).into(),
                            V::Null,
                            V::Null,
                            timestamp(at).into(),
                            V::Null,
                        ]);
                    }
                }
                Table::LotAllocations => {
                    let mut id = next.allocations;
                    for (k, c) in plan.claims.iter().enumerate() {
                        for (lot, amount) in &c.allocations {
                            id += 1;
                            emit(vec![
                                id.into(),
                                (first_debit + k as u64).into(),
                                (first_entry + *lot as u64).into(),
                                (*amount).into(),
                            ]);
                        }
                    }
                }
                Table::Balances => {
                    emit(vec![
                        account.into(),
                        "POINTS".into(),
                        plan.available().into(),
                        0i64.into(),
                        plan.lifetime_earned().into(),
                    ]);
                    for unit in ["CREDIT", "CASH"] {
                        emit(vec![account.into(), unit.into(), 0i64.into(), 0i64.into(), 0i64.into()]);
                    }
                }
                _ => {}
            }
            next.entries += plan.entries() as u64;
            next.claims += plan.claims.len() as u64;
            next.allocations += plan.claims.iter().map(|c| c.allocations.len() as u64).sum::<u64>();
        }
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_at_most_five_deep_and_parents_know_their_children() {
        let shape = Shape {
            accounts: 1_000,
            seed: 7,
        };
        let mut referred = 0;
        for account in 1..=shape.accounts {
            assert!(shape.depth(account) <= MAX_DEPTH);
            if let Some(parent) = shape.parent(account) {
                referred += 1;
                assert!(parent < account);
                assert!(shape.children(parent).any(|c| c == account));
            }
            for child in shape.children(account) {
                assert_eq!(shape.parent(child), Some(account));
            }
        }
        // 1000 accounts: trees rooted at 1, 365 and 729.
        assert_eq!(referred, 997);
        assert_eq!(shape.depth(TREE), MAX_DEPTH);
        assert_eq!(shape.referral_id(2), Some(1));
        assert_eq!(shape.referral_id(366), Some(364));
        assert_eq!(shape.referral_id(365), None);
    }

    #[test]
    fn plans_are_consistent_and_average_about_ten_entries() {
        let shape = Shape {
            accounts: 10_000,
            seed: 42,
        };
        let mut entries = 0;
        for account in 1..=shape.accounts {
            let plan = shape.plan(account);
            entries += plan.entries();
            let lots: i64 = plan.lots.iter().map(|l| l.amount).sum();
            let claimed: i64 = plan.claims.iter().map(|c| c.cost).sum();
            assert_eq!(plan.available(), lots - claimed);
            for claim in &plan.claims {
                assert_eq!(claim.allocations.iter().map(|(_, a)| a).sum::<i64>(), claim.cost);
            }
            assert!(plan.lots.iter().all(|l| l.remaining >= 0 && l.remaining <= l.amount));
            // Enough left for the benchmark's claims (250 points at most each).
            assert!(plan.available() >= 2_000 * MICROS);
        }
        let average = entries as f64 / shape.accounts as f64;
        assert!((9.0..=11.0).contains(&average), "average {average}");
        // The same seed gives the same plan.
        assert_eq!(shape.plan(77).entries(), shape.plan(77).entries());
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(EPOCH), "2025-01-01T00:00:00+00:00");
        assert_eq!(timestamp(EPOCH + 59 * 86_400 + 3_723), "2025-03-01T01:02:03+00:00");
        assert_eq!(timestamp(951_782_400), "2000-02-29T00:00:00+00:00");
    }
}
