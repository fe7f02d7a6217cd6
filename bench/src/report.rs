//! The figures of a run: printed as a Markdown table and written into BENCHMARKS.md between
//! the run's markers, leaving the prose around them alone.

use crate::measure::Measurement;
use crate::pgbench::PgbenchResult;
use serde::Serialize;

#[derive(Debug, Clone, Serialize, Default)]
pub struct ScenarioResult {
    pub scenario: String,
    pub operation: String,
    pub connections: u32,
    /// The server under wrk.
    pub server: Measurement,
    /// Lines of the server log that say "database is locked".
    pub locked_in_log: u64,
    pub statements: Option<usize>,
    /// What the server's rate is compared with (PostgreSQL runs only): the target reference of
    /// the reported round, then the server's own statements under pgbench.
    pub references: Vec<Reference>,
    /// Every round's rates; the reported figures are those of the median round.
    pub rounds: Vec<RoundFigures>,
    /// `claim-webhook`: its subscriber when the rounds ended.
    pub webhook: Option<WebhookFigures>,
}

/// The subscriber of `claim-webhook` when its rounds ended: what was delivered, and what was
/// still to deliver.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct WebhookFigures {
    /// Requests the harness's receiver answered, the warm-ups' deliveries included.
    pub received: u64,
    /// The endpoint's deliveries still PENDING (None: not counted).
    pub pending: Option<u64>,
    /// Events the sequencer had not ordered yet: each one more delivery to the endpoint.
    pub unsequenced: Option<u64>,
}

/// `claim-webhook` runs at this share of `claim`'s rate at least: delivery is off the request path.
const WEBHOOK_TARGET_PERCENT: f64 = 90.0;
/// The reference of `claim-webhook`.
const WEBHOOK_REFERENCE: &str = "`claim` (no webhook)";

/// Gives each `claim-webhook` result its target reference, the `claim` scenario of the same run
/// (median rounds both), or one not run when the run has no `claim`. The rounds of the two are
/// not paired (all of `claim`'s come first), so the ratio is taken once, of the medians.
pub fn refer_to_claim(results: &mut [ScenarioResult]) {
    let claim = results.iter().find(|s| s.scenario == "claim").map(|claim| Reference {
        name: WEBHOOK_REFERENCE.into(),
        times: false,
        ..Reference::server(String::new(), claim.connections, &claim.server, claim.statements)
    });
    for result in results.iter_mut().filter(|s| s.scenario == "claim-webhook") {
        let reference = claim.clone().unwrap_or_else(|| {
            Reference::not_run(
                WEBHOOK_REFERENCE.into(),
                true,
                false,
                result.connections,
                "no reference in this run".into(),
            )
        });
        result.references.insert(0, reference);
    }
}

/// One round of a scenario: the server's rate and its target reference's, run one after the other.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct RoundFigures {
    pub server_rate: f64,
    pub reference_rate: Option<f64>,
}

impl RoundFigures {
    /// The server's rate over the reference's, or the server's rate alone without a reference.
    fn key(&self) -> f64 {
        match self.reference_rate {
            Some(reference) if reference > 0.0 => self.server_rate / reference,
            _ => self.server_rate,
        }
    }
}

/// The round whose ratio (rate, without a reference) is the median; of an even number of
/// rounds, the lower of the two middle ones.
pub fn median_round(rounds: &[RoundFigures]) -> usize {
    let mut order: Vec<usize> = (0..rounds.len()).collect();
    order.sort_by(|a, b| rounds[*a].key().total_cmp(&rounds[*b].key()));
    order.get(rounds.len().saturating_sub(1) / 2).copied().unwrap_or(0)
}

/// Something the scenario's rate is compared with, in the same run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Reference {
    /// What ran: "PostGraphile 4.14.1", "pgbench claim_one.sql".
    pub name: String,
    /// The reference of the scenario's target ratio; the others show what PostgreSQL alone does
    /// with the server's own statements.
    pub target: bool,
    /// The ratio reads as a multiple ("1.52×", a reference to beat several times over) rather
    /// than a share ("52 %").
    pub times: bool,
    pub connections: u32,
    /// "req/s" or "tps".
    pub rate_unit: String,
    pub figures: Option<ReferenceFigures>,
    /// Why there are no figures.
    pub not_run: Option<String>,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ReferenceFigures {
    pub rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Error answers (wrk) or failed transactions (pgbench).
    pub errors: u64,
    pub statements: Option<usize>,
    /// A GraphQL server's (PostGraphile's) processes, measured as the referral server's are:
    /// CPU time per request (ms), peak RSS (MiB), and CPU in % of one core of them, of
    /// PostgreSQL and of everything else. None for pgbench.
    pub cpu_ms_per_request: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub cpu_percent: Option<[f64; 3]>,
}

impl Reference {
    pub fn pgbench(name: String, target: bool, result: &PgbenchResult) -> Reference {
        Reference {
            name,
            target,
            times: false,
            connections: result.clients,
            rate_unit: "tps".into(),
            figures: Some(ReferenceFigures {
                rate: result.tps,
                p50_ms: result.p50_ms,
                p99_ms: result.p99_ms,
                errors: result.failed,
                statements: Some(result.statements),
                cpu_ms_per_request: None,
                peak_rss_mib: None,
                cpu_percent: None,
            }),
            not_run: None,
        }
    }

    /// A GraphQL server measured like the referral server (PostGraphile).
    pub fn server(name: String, connections: u32, measured: &Measurement, statements: Option<usize>) -> Reference {
        Reference {
            name,
            target: true,
            times: true,
            connections,
            rate_unit: "req/s".into(),
            figures: Some(ReferenceFigures {
                rate: measured.wrk.rps,
                p50_ms: Some(measured.wrk.p50_us / 1000.0),
                p99_ms: Some(measured.wrk.p99_us / 1000.0),
                errors: measured.wrk.errors,
                statements,
                cpu_ms_per_request: Some(measured.cpu_ms_per_request),
                peak_rss_mib: Some(measured.peak_rss_mib),
                cpu_percent: Some([measured.cpu_server, measured.cpu_postgres, measured.cpu_other]),
            }),
            not_run: None,
        }
    }

    pub fn not_run(name: String, target: bool, times: bool, connections: u32, reason: String) -> Reference {
        Reference {
            name,
            target,
            times,
            connections,
            rate_unit: if times { "req/s" } else { "tps" }.into(),
            figures: None,
            not_run: Some(reason),
        }
    }

    /// The server's rate against this one: "1.52×" or "52 %".
    pub fn ratio(&self, server_rate: f64) -> String {
        match &self.figures {
            Some(f) if f.rate > 0.0 && self.times => format!("{:.2}×", server_rate / f.rate),
            Some(f) if f.rate > 0.0 => format!("{:.0} %", 100.0 * server_rate / f.rate),
            _ => "–".into(),
        }
    }

    pub fn rate(&self) -> String {
        match &self.figures {
            Some(f) => format!("{} {}", thousands(f.rate), self.rate_unit),
            None => "not run".into(),
        }
    }
}

/// `claim-webhook`'s rate over its reference's, against the target: ("97.2 %", "≥ 90 %: met"),
/// to a tenth, so that a share just under the target never reads as the target.
fn webhook_ratio(server_rate: f64, reference: Option<&Reference>) -> (String, String) {
    let target = format!("≥ {WEBHOOK_TARGET_PERCENT:.0} %");
    match reference.and_then(|r| r.figures.as_ref()) {
        Some(f) if f.rate > 0.0 => {
            let percent = 100.0 * server_rate / f.rate;
            let verdict = if percent >= WEBHOOK_TARGET_PERCENT {
                "met"
            } else {
                "missed"
            };
            (format!("{percent:.1} %"), format!("{target}: {verdict}"))
        }
        _ => ("no reference in this run".into(), target),
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct RunReport {
    pub key: String,
    pub title: String,
    pub command: String,
    pub date: String,
    pub machine: String,
    pub load_before: String,
    pub dataset: String,
    pub check: String,
    pub scenarios: Vec<ScenarioResult>,
    pub notes: Vec<String>,
}

fn ms(us: f64) -> String {
    let v = us / 1000.0;
    if v < 10.0 { format!("{v:.2}") } else { format!("{v:.1}") }
}

fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n);
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Every round's ratio to the target reference (its rate, without one), in the order run.
fn rounds(rounds: &[RoundFigures], target: Option<&Reference>) -> String {
    if rounds.len() < 2 {
        return rounds.len().to_string();
    }
    rounds
        .iter()
        .map(|round| match (round.reference_rate, target) {
            (Some(rate), Some(reference)) if rate > 0.0 && reference.times => {
                format!("{:.2}×", round.server_rate / rate)
            }
            (Some(rate), Some(_)) if rate > 0.0 => format!("{:.0} %", 100.0 * round.server_rate / rate),
            _ => thousands(round.server_rate),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn or_dash<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "–".to_owned(), show)
}

impl RunReport {
    /// One row per scenario: the server's figures, and its ratio to the target reference.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| scenario | conns | req/s | p50 ms | p99 ms | errors | rejected | SQL stmts/req | server CPU ms/req | \
             peak RSS MiB | CPU % server / pg / other | reference | reference rate | server / reference | rounds |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |\n",
        );
        for s in &self.scenarios {
            let m = &s.server;
            let mut errors = m.wrk.errors.to_string();
            if m.wrk.locked > 0 || s.locked_in_log > 0 {
                errors.push_str(&format!(" ({} locked)", m.wrk.locked.max(s.locked_in_log)));
            }
            let target = s.references.iter().find(|r| r.target);
            out.push_str(&format!(
                "| {} (`{}`) | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {:.0} / {:.0} / {:.0} | {} | {} | {} | {} |\n",
                s.scenario,
                s.operation,
                s.connections,
                thousands(m.wrk.rps),
                ms(m.wrk.p50_us),
                ms(m.wrk.p99_us),
                errors,
                m.wrk.rejected,
                or_dash(s.statements, |n| n.to_string()),
                m.cpu_ms_per_request,
                m.peak_rss_mib,
                m.cpu_server,
                m.cpu_postgres,
                m.cpu_other,
                or_dash(target, |r| r.name.clone()),
                or_dash(target, Reference::rate),
                or_dash(target, |r| r.ratio(m.wrk.rps)),
                rounds(&s.rounds, target),
            ));
        }
        out
    }

    /// One row per reference of every scenario, with the figures of the server's own columns.
    pub fn references_table(&self) -> Option<String> {
        if self.scenarios.iter().all(|s| s.references.is_empty()) {
            return None;
        }
        let mut out = String::from(
            "| scenario | reference | conns | rate | p50 ms | p99 ms | errors | SQL stmts/req | CPU ms/req | \
             peak RSS MiB | CPU % reference / pg / other | server / reference |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |\n",
        );
        for s in &self.scenarios {
            for r in &s.references {
                let Some(f) = &r.figures else {
                    out.push_str(&format!(
                        "| {} | {} | {} | not run | – | – | – | – | – | – | – | – |\n",
                        s.scenario, r.name, r.connections
                    ));
                    continue;
                };
                out.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                    s.scenario,
                    r.name,
                    r.connections,
                    r.rate(),
                    or_dash(f.p50_ms, |v| ms(v * 1000.0)),
                    or_dash(f.p99_ms, |v| ms(v * 1000.0)),
                    f.errors,
                    or_dash(f.statements, |n| n.to_string()),
                    or_dash(f.cpu_ms_per_request, |v| format!("{v:.2}")),
                    or_dash(f.peak_rss_mib, |v| format!("{v:.0}")),
                    or_dash(f.cpu_percent, |[own, pg, other]| format!(
                        "{own:.0} / {pg:.0} / {other:.0}"
                    )),
                    r.ratio(s.server.wrk.rps),
                ));
            }
        }
        Some(out)
    }

    /// One row per `claim-webhook` result: its rate with one endpoint subscribed to every event
    /// against `claim`'s without, and what the subscriber had when the rounds ended.
    pub fn webhook_table(&self) -> Option<String> {
        let mut out = String::from(
            "| scenario | req/s | p50 ms | p99 ms | `claim` req/s | `claim` p50 ms | `claim` p99 ms | \
             req/s / `claim`'s | target | receiver requests | pending deliveries | events not yet sequenced |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n",
        );
        let mut any = false;
        for s in &self.scenarios {
            let Some(hook) = s.webhook else { continue };
            any = true;
            let m = &s.server;
            let reference = s.references.iter().find(|r| r.target);
            let figures = reference.and_then(|r| r.figures.as_ref());
            let (ratio, target) = webhook_ratio(m.wrk.rps, reference);
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.scenario,
                thousands(m.wrk.rps),
                ms(m.wrk.p50_us),
                ms(m.wrk.p99_us),
                or_dash(figures, |f| thousands(f.rate)),
                or_dash(figures.and_then(|f| f.p50_ms), |v| ms(v * 1000.0)),
                or_dash(figures.and_then(|f| f.p99_ms), |v| ms(v * 1000.0)),
                ratio,
                target,
                thousands(hook.received as f64),
                or_dash(hook.pending, |n| thousands(n as f64)),
                or_dash(hook.unsequenced, |n| thousands(n as f64)),
            ));
        }
        any.then_some(out)
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "#### {}\n\n- command: `{}`\n- date: {}; machine: {}; load average before: {}\n- dataset: {}\n- `referral-server check`: {}\n\n",
            self.title, self.command, self.date, self.machine, self.load_before, self.dataset, self.check
        );
        out.push_str(&self.table());
        if let Some(references) = self.references_table() {
            out.push_str("\nReferences, in the same run:\n\n");
            out.push_str(&references);
        }
        if let Some(webhooks) = self.webhook_table() {
            out.push_str(
                "\nWebhooks, in the same run: `claim-webhook` is `claim` with one endpoint subscribed to every event \
                 type (a receiver in the harness answers 204 at once); its rate against `claim`'s (median rounds), the \
                 receiver's requests (the warm-ups' deliveries included), and what was still to deliver when its rounds \
                 ended:\n\n",
            );
            out.push_str(&webhooks);
        }
        for note in &self.notes {
            out.push_str(&format!("\n- {note}"));
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

/// Replaces the block between `<!-- bench:KEY -->` and `<!-- /bench:KEY -->` in `document`,
/// or appends one at the end.
pub fn splice(document: &str, key: &str, block: &str) -> String {
    let open = format!("<!-- bench:{key} -->");
    let close = format!("<!-- /bench:{key} -->");
    let fresh = format!("{open}\n{}\n{close}", block.trim_end());
    match (document.find(&open), document.find(&close)) {
        (Some(start), Some(end)) if end > start => {
            format!("{}{fresh}{}", &document[..start], &document[end + close.len()..])
        }
        _ => format!("{}\n\n{fresh}\n", document.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_a_run_into_its_markers_and_keeps_the_prose() {
        let doc = "# Benchmarks\n\nprose\n\n<!-- bench:pg-1 -->\nold\n<!-- /bench:pg-1 -->\n\nmore prose\n";
        let out = splice(doc, "pg-1", "new table\n");
        assert_eq!(
            out,
            "# Benchmarks\n\nprose\n\n<!-- bench:pg-1 -->\nnew table\n<!-- /bench:pg-1 -->\n\nmore prose\n"
        );
        let appended = splice("# B\n", "sqlite-1", "t");
        assert_eq!(
            appended,
            "# B\n\n<!-- bench:sqlite-1 -->\nt\n<!-- /bench:sqlite-1 -->\n"
        );
    }

    #[test]
    fn reports_each_scenario_against_its_target_reference() {
        let mut server = Measurement::default();
        server.wrk.rps = 900.0;
        server.wrk.p99_us = 50_000.0;
        server.cpu_ms_per_request = 1.234;
        let pgbench = PgbenchResult {
            tps: 1800.0,
            clients: 32,
            statements: 1,
            p99_ms: Some(12.5),
            ..Default::default()
        };
        let mut postgraphile = Measurement::default();
        postgraphile.wrk.rps = 300.0;
        let report = RunReport {
            scenarios: vec![
                ScenarioResult {
                    scenario: "dashboard".into(),
                    operation: "Dashboard".into(),
                    connections: 32,
                    server: server.clone(),
                    references: vec![Reference::server("PostGraphile".into(), 32, &postgraphile, Some(2))],
                    ..Default::default()
                },
                ScenarioResult {
                    scenario: "claim".into(),
                    operation: "ClaimReward".into(),
                    connections: 32,
                    server: server.clone(),
                    references: vec![
                        Reference::pgbench("pgbench `claim.sql`".into(), false, &pgbench),
                        Reference::pgbench("pgbench `claim_one.sql`".into(), true, &pgbench),
                    ],
                    ..Default::default()
                },
                ScenarioResult {
                    scenario: "purchase".into(),
                    operation: "RecordPurchase".into(),
                    connections: 32,
                    server,
                    references: vec![Reference::not_run(
                        "pgbench `purchase_one.sql`".into(),
                        true,
                        false,
                        32,
                        "no".into(),
                    )],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let table = report.table();
        assert!(table.contains("| 1.23 |"), "{table}");
        assert!(table.contains("| PostGraphile | 300 req/s | 3.00× |"), "{table}");
        assert!(
            table.contains("| pgbench `claim_one.sql` | 1,800 tps | 50 % |"),
            "{table}"
        );
        assert!(
            table.contains("| pgbench `purchase_one.sql` | not run | – |"),
            "{table}"
        );
        let references = report.references_table().unwrap_or_default();
        assert_eq!(references.lines().count(), 2 + 4, "{references}");
        assert!(
            references
                .contains("| claim | pgbench `claim_one.sql` | 32 | 1,800 tps | – | 12.5 | 0 | 1 | – | – | – | 50 % |"),
            "{references}"
        );
        assert!(RunReport::default().references_table().is_none());
    }

    #[test]
    fn reports_the_median_round_and_every_round_beside_it() {
        let round = |server_rate: f64, reference_rate: Option<f64>| RoundFigures {
            server_rate,
            reference_rate,
        };
        // Ratios 2.5, 3.5, 3.0: the third round is the median, though its rate is the lowest.
        let rounds = [
            round(2500.0, Some(1000.0)),
            round(2800.0, Some(800.0)),
            round(2400.0, Some(800.0)),
        ];
        assert_eq!(median_round(&rounds), 2);
        // Without a reference, by rate; of four, the lower middle one.
        let rates = [
            round(10.0, None),
            round(40.0, None),
            round(20.0, None),
            round(30.0, None),
        ];
        assert_eq!(median_round(&rates), 2);
        assert_eq!(median_round(&[]), 0);

        let mut server = Measurement::default();
        server.wrk.rps = 2400.0;
        let mut postgraphile = Measurement::default();
        postgraphile.wrk.rps = 800.0;
        let report = RunReport {
            scenarios: vec![
                ScenarioResult {
                    scenario: "dashboard".into(),
                    operation: "Dashboard".into(),
                    server: server.clone(),
                    references: vec![Reference::server("PostGraphile".into(), 32, &postgraphile, Some(2))],
                    rounds: rounds.to_vec(),
                    ..Default::default()
                },
                ScenarioResult {
                    scenario: "store".into(),
                    operation: "RewardStore".into(),
                    server,
                    rounds: vec![round(2400.0, None)],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let table = report.table();
        assert!(table.contains("| 800 req/s | 3.00× | 2.50×, 3.50×, 3.00× |"), "{table}");
        assert!(table.contains("| – | – | – | 1 |"), "{table}");
    }

    #[test]
    fn reports_claims_with_a_webhook_against_claims_without() {
        let scenario = |name: &str, rps: f64, webhook: Option<WebhookFigures>| {
            let mut server = Measurement::default();
            server.wrk.rps = rps;
            server.wrk.p50_us = 20_000.0;
            server.wrk.p99_us = 41_000.0;
            ScenarioResult {
                scenario: name.into(),
                operation: "ClaimReward".into(),
                connections: 32,
                server,
                statements: Some(1),
                rounds: vec![RoundFigures {
                    server_rate: rps,
                    reference_rate: None,
                }],
                webhook,
                ..Default::default()
            }
        };
        let hook = WebhookFigures {
            received: 12_345,
            pending: Some(2_000),
            unsequenced: None,
        };
        let mut results = vec![
            scenario("claim", 1_500.0, None),
            scenario("claim-webhook", 1_410.0, Some(hook)),
        ];
        refer_to_claim(&mut results);
        assert!(results[0].references.is_empty());
        let report = RunReport {
            scenarios: results,
            ..Default::default()
        };
        let table = report.table();
        assert!(
            table.contains("| `claim` (no webhook) | 1,500 req/s | 94 % | 1 |"),
            "{table}"
        );
        // `claim` itself is reported as before.
        assert!(table.contains("| claim (`ClaimReward`) | 32 | 1,500 |"), "{table}");
        assert!(table.contains("| – | – | – | 1 |"), "{table}");
        let webhooks = report.webhook_table().unwrap_or_default();
        assert!(
            webhooks.contains(
                "| claim-webhook | 1,410 | 20.0 | 41.0 | 1,500 | 20.0 | 41.0 | 94.0 % | ≥ 90 %: met | 12,345 | 2,000 | – |"
            ),
            "{webhooks}"
        );
        assert!(report.markdown().contains("Webhooks, in the same run"));

        // Without `claim` in the run, and below the target.
        let mut alone = vec![scenario("claim-webhook", 1_000.0, Some(hook))];
        refer_to_claim(&mut alone);
        let report = RunReport {
            scenarios: alone,
            ..Default::default()
        };
        assert!(
            report
                .webhook_table()
                .unwrap_or_default()
                .contains("| – | – | – | no reference in this run | ≥ 90 % | 12,345 |"),
            "{}",
            report.markdown()
        );
        assert_eq!(
            webhook_ratio(
                800.0,
                Some(&Reference::server(
                    "r".into(),
                    32,
                    &scenario("c", 1_000.0, None).server,
                    None
                ))
            )
            .1,
            "≥ 90 %: missed"
        );
        assert!(RunReport::default().webhook_table().is_none());
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(ms(1500.0), "1.50");
        assert_eq!(ms(45_000.0), "45.0");
    }
}
