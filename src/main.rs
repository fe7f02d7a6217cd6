//! The `referral-server` command: serve (the default), migrate, export-schema, token.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use referral_server::auth::{JwtKeys, Role};
use referral_server::config::{ConfigArgs, LOCAL_SECRET_FILE};
use referral_server::logging::{self, LogFormat};
use referral_server::service::{check, presets};
use referral_server::{AppState, build_app, db, dispatcher, graphql, serve, tasks};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

// A GraphQL request allocates many small, short-lived objects across threads; glibc's malloc
// spent a fifth of the server's CPU on them under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "referral-server",
    version,
    about = "A self-hosted referral and rewards engine with a GraphQL API"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    /// Log lines as text (coloured only on a terminal) or as one JSON object a line.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations and serve the API (the default).
    Serve,
    /// Apply migrations and exit.
    Migrate,
    /// Verify every ledger invariant on the database; exits non-zero on any violation.
    Check,
    /// Write the GraphQL schema (SDL), built without a database.
    ExportSchema {
        /// Where to write it; `-` for standard output.
        #[arg(long, default_value = "schema.graphql")]
        out: PathBuf,
    },
    /// Write the settings and rules of a program: points-store (program 3), cloud-credit
    /// (program 1), isp (program 2) or refer-a-friend (program 4). Applying one again changes
    /// nothing.
    Preset {
        #[arg(
            value_parser = clap::builder::PossibleValuesParser::new(presets::PRESETS),
            required_unless_present = "list"
        )]
        name: Option<String>,
        /// Say what each preset sets up, and change nothing (no database needed).
        #[arg(long, conflicts_with = "name")]
        list: bool,
    },
    /// Mint a JWT signed with the configured key, to try the API.
    Token {
        #[arg(long, value_enum)]
        role: Role,
        /// The subject: a customer's externalId, or a name for admins and services.
        #[arg(long)]
        sub: Option<String>,
        /// How long the token is valid, e.g. 1h, 30m, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("referral-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::ExportSchema { out } => {
            let sdl = graphql::schema_sdl();
            if out.as_os_str() == "-" {
                print!("{sdl}");
            } else {
                std::fs::write(&out, sdl).with_context(|| format!("writing {}", out.display()))?;
                eprintln!("wrote {}", out.display());
            }
            Ok(())
        }
        Command::Token { role, sub, ttl } => {
            let (config, _) = cli.config.into_config(true)?;
            let subject = match (role, sub) {
                (_, Some(sub)) => sub,
                (Role::Customer, None) => anyhow::bail!("a customer token needs --sub EXTERNAL_ID"),
                (Role::Admin, None) => "admin".to_owned(),
                (Role::Service, None) => "billing".to_owned(),
            };
            let token = JwtKeys::new(&config)
                .mint(role, &subject, ttl)
                .map_err(|e| anyhow::anyhow!(e.message()))?;
            println!("{token}");
            Ok(())
        }
        Command::Preset { list: true, .. } => {
            for line in presets::describe().map_err(|e| anyhow::anyhow!(e.message()))? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Preset { name: None, .. } => Err(anyhow::anyhow!("name a preset, or ask for --list")),
        Command::Preset { name: Some(name), .. } => {
            let (config, _) = cli.config.into_config(true)?;
            let state = AppState::connect(config).await.context("connecting to the database")?;
            let done = presets::apply(&state.db, &name, state.clock.now())
                .await
                .map_err(|e| anyhow::anyhow!(e.message()))?;
            for line in done {
                println!("{line}");
            }
            Ok(())
        }
        Command::Check => {
            let (config, _) = cli.config.into_config(true)?;
            let (connection, _) = db::connect(&config.database_url)
                .await
                .context("connecting to the database")?;
            let findings = check::run(&connection)
                .await
                .map_err(|e| anyhow::anyhow!(e.message()))?;
            println!("checking the ledger's invariants (amounts in millionths)");
            for finding in &findings {
                if finding.violations.is_empty() {
                    println!("ok    {}", finding.invariant);
                    continue;
                }
                println!("FAIL  {}", finding.invariant);
                for violation in finding.violations.iter().take(check::SHOWN) {
                    println!("      {violation}");
                }
                if finding.violations.len() > check::SHOWN {
                    println!("      … and more");
                }
            }
            if check::all_hold(&findings) {
                Ok(())
            } else {
                anyhow::bail!("invariants violated")
            }
        }
        Command::Migrate => {
            let (config, _) = cli.config.into_config(true)?;
            let (connection, _) = db::connect(&config.database_url)
                .await
                .context("connecting to the database")?;
            db::migrate(&connection).await.context("applying migrations")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => {
            let (config, generated_secret) = cli.config.into_config(true)?;
            if generated_secret {
                tracing::warn!(
                    "JWT_SECRET is not set: using a local key from ./{LOCAL_SECRET_FILE}. \
                     Fine for trying the server; in production set JWT_SECRET (32+ random bytes)."
                );
            }
            if config.sandbox {
                announce_sandbox();
            }
            let bind_addr = config.bind_addr;
            let state = AppState::connect(config).await.context("connecting to the database")?;
            let listener = tokio::net::TcpListener::bind(bind_addr)
                .await
                .with_context(|| format!("binding {bind_addr}"))?;
            // The bound address, not the configured one: port 0 picks a free port.
            let local = listener.local_addr().unwrap_or(bind_addr);
            tracing::info!(
                "serving on http://{local}: GraphiQL at http://{local}/graphql; \
                 a token: `referral-server token --role admin`"
            );
            let settler = tasks::spawn(state.clone());
            let dispatcher = dispatcher::spawn(state.clone());
            let served = serve(listener, build_app(state)).await;
            // After the requests in flight: the task ends its batch in progress, then stops.
            settler.stop().await;
            dispatcher.stop().await;
            served.context("serving")?;
            Ok(())
        }
    }
}

/// What a sandbox server says before anything else, to its log and to a person watching it
/// start: its clock is not the real time, and its numbers are not money.
fn announce_sandbox() {
    tracing::warn!("{SANDBOX_WARNING}");
    let rule = "=".repeat(SANDBOX_WARNING.len());
    eprintln!("{rule}\n{SANDBOX_WARNING}\n{rule}");
}

const SANDBOX_WARNING: &str = "SANDBOX: the clock can be moved forward by admins; never run a real program like this";
