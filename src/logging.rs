//! Where the log goes and in what shape: human-readable text (coloured only on a terminal, so a
//! file or a pipe gets no escape codes) or one JSON object a line for log shippers, each with
//! the spans it happened in — among them the HTTP request's span with its request id.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people; colour when standard error is a terminal and NO_COLOR is unset.
    #[default]
    Text,
    /// One JSON object a line: timestamp, level, target, fields, and the current spans.
    Json,
}

/// Installs the global subscriber. The filter is `RUST_LOG` (`info` when unset or invalid).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.with_ansi(colour_wanted()).try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .flatten_event(true)
            .try_init(),
    };
    // Only a second install fails (tests install their own); the first one stands.
    drop(result);
}

/// https://no-color.org: a set, non-empty NO_COLOR turns colour off even on a terminal.
fn colour_wanted() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    std::io::stderr().is_terminal() && !no_color
}
