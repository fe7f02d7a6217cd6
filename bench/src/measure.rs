//! One measured load run of a GraphQL server (the referral server, or PostGraphile): a warm-up,
//! then the measured wrk run, and what the server's processes took meanwhile: their CPU time,
//! PostgreSQL's, the rest of the machine's, and their peak RSS.

use crate::load_gen::{self, WrkResult, WrkRun};
use crate::server;
use anyhow::Result;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Measurement {
    pub wrk: WrkResult,
    /// Peak RSS over warm-up and run: the sum of each process's own peak (`VmHWM`), MiB.
    pub peak_rss_mib: f64,
    /// CPU during the measured run, in % of one core (200 % = the whole machine): the server's
    /// processes, every `postgres` process, everything else.
    pub cpu_server: f64,
    pub cpu_postgres: f64,
    pub cpu_other: f64,
    /// The server's CPU time over the measured run divided by its requests, ms.
    pub cpu_ms_per_request: f64,
    /// Whether the peak RSS could be reset first (else it is the processes' peak so far).
    pub peak_reset: bool,
}

/// Runs `run` for `warmup` seconds (not measured, tagged `<tag>-warm`), then as it says,
/// measuring the processes `pids`. PostgreSQL's CPU is counted apart when `postgres` says the
/// server runs on it (else it is part of "other").
pub fn measure(pids: &[u32], postgres: bool, run: WrkRun<'_>, warmup: u32) -> Result<Measurement> {
    let peak_reset = pids.iter().all(|pid| server::reset_peak_rss(*pid));
    if warmup > 0 {
        let warm_tag = format!("{}-warm", run.tag);
        load_gen::run_wrk(&WrkRun {
            seconds: warmup,
            tag: &warm_tag,
            ..run
        })?;
    }
    let ticks = || -> (u64, u64, (u64, u64)) {
        (
            pids.iter().map(|pid| server::cpu_ticks(*pid)).sum(),
            server::cpu_ticks_named("postgres"),
            server::machine_ticks(),
        )
    };
    let (server0, pg0, machine0) = ticks();
    let wrk = load_gen::run_wrk(&run)?;
    let (server1, pg1, machine1) = ticks();
    let peak_kb: u64 = pids.iter().filter_map(|pid| server::status_kb(*pid, "VmHWM")).sum();
    // Ticks are 1/100 s: ticks per second of run is % of one core.
    let run_seconds = wrk.duration_us / 1e6;
    let pct = |ticks: u64| ticks as f64 / run_seconds;
    let busy_cores = if machine1.1 > machine0.1 {
        (machine1.0 - machine0.0) as f64 / (machine1.1 - machine0.1) as f64 * num_cpus() * 100.0
    } else {
        0.0
    };
    let server_ticks = server1.saturating_sub(server0);
    let cpu_server = pct(server_ticks);
    let cpu_postgres = if postgres { pct(pg1.saturating_sub(pg0)) } else { 0.0 };
    Ok(Measurement {
        peak_rss_mib: peak_kb as f64 / 1024.0,
        cpu_server,
        cpu_postgres,
        cpu_other: (busy_cores - cpu_server - cpu_postgres).max(0.0),
        cpu_ms_per_request: if wrk.requests > 0 {
            server_ticks as f64 * 10.0 / wrk.requests as f64
        } else {
            0.0
        },
        peak_reset,
        wrk,
    })
}

fn num_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}
