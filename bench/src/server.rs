//! The release server as a child process, a bare HTTP/1.1 client for the few requests the
//! harness sends itself, and what `/proc` tells about processes and the machine.

use anyhow::{Context as _, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The configuration every server process and every token of the harness share.
#[derive(Clone, Debug)]
pub struct Env {
    pub binary: PathBuf,
    pub database_url: String,
    pub port: u16,
    pub secret: String,
    pub issuer: String,
    pub audience: String,
    pub workdir: PathBuf,
}

impl Env {
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(&self.workdir)
            .env("DATABASE_URL", &self.database_url)
            .env("BIND_ADDR", format!("127.0.0.1:{}", self.port))
            .env("JWT_SECRET", &self.secret)
            .env("JWT_ISSUER", &self.issuer)
            .env("JWT_AUDIENCE", &self.audience)
            .env("PUBLIC_URL", format!("http://127.0.0.1:{}", self.port));
        command
    }

    /// Runs a one-shot command (`migrate`, `preset points-store`, `check`); returns its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let output = self
            .command()
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .with_context(|| format!("running {} {}", self.binary.display(), args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "`referral-server {}` failed: {}\n{stdout}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(stdout)
    }

    /// Starts `serve` with its log in `log`, and waits until /healthz answers.
    pub async fn start(&self, log: &Path) -> Result<Server> {
        let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = self
            .command()
            .arg("serve")
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "info".into()),
            )
            // `claim-webhook`'s receiver is on 127.0.0.1; without an endpoint (every other
            // scenario) the setting changes nothing.
            .env("WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("starting the server")?;
        let server = Server { child, port: self.port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http(self.port, "GET", "/healthz", None, None).await {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("the server did not answer /healthz within 60 s; see {}", log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub struct Server {
    child: Child,
    pub port: u16,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server (SIGTERM through `kill`, then SIGKILL after 10 s).
    pub fn stop(mut self) -> Result<()> {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().context("killing the server")?;
        self.child.wait()?;
        Ok(())
    }
}

/// One request on a fresh connection: (status, body).
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// A field of /proc/<pid>/status in kB (`VmHWM`, `VmRSS`).
pub fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Resets the peak RSS (`VmHWM`) of a process we own, so the next reading is this scenario's.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .map_or(0, |stat| parse_stat_ticks(&stat))
}

fn parse_stat_ticks(stat: &str) -> u64 {
    // The command name may hold spaces: fields start after the last ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is the state (field 3); utime and stime are fields 14 and 15.
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// `pid` and every live process descended from it (a cluster's workers).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
                .filter_map(|child| {
                    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
                    Some((child, parse_stat_parent(&stat)?))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut tree = vec![pid];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(child, _)| *child));
        index += 1;
    }
    tree
}

fn parse_stat_parent(stat: &str) -> Option<u32> {
    // rest[0] is the state (field 3), rest[1] the parent's pid (field 4).
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// CPU ticks of every process whose name is `name` (all PostgreSQL backends, for example).
pub fn cpu_ticks_named(name: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
        .map(cpu_ticks)
        .sum()
}

/// (busy, total) ticks of the whole machine, from /proc/stat.
pub fn machine_ticks() -> (u64, u64) {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = stat.lines().next() else {
        return (0, 0);
    };
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_from_a_stat_line() {
        let stat = "1234 (referral server) S 1 1234 1234 0 -1 4194560 500 0 0 0 170 30 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_ticks(stat), 200);
        assert_eq!(parse_stat_parent(stat), Some(1));
    }
}
