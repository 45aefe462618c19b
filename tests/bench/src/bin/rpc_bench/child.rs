//! The services and the minimal server, each a child process serving gRPC.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// A child process serving gRPC, killed when dropped.
pub struct Child {
    pub name: &'static str,
    process: tokio::process::Child,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl Child {
    pub async fn start(
        name: &'static str,
        mut command: tokio::process::Command,
        addr: SocketAddr,
        log: PathBuf,
    ) -> anyhow::Result<Child> {
        let file = std::fs::File::create(&log)?;
        // The log filter is the caller's (the services' observability mode).
        let process = command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {name}"))?;
        let mut child = Child {
            name,
            process,
            addr,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.process.try_wait()? {
                bail!(
                    "{name} exited at start-up ({status}):\n{}",
                    child.log_tail()
                );
            }
            if harness::tonic_health_client::health_check(addr)
                .await
                .unwrap_or(false)
            {
                return Ok(child);
            }
            ensure!(
                Instant::now() < deadline,
                "{name} not serving after 60 s:\n{}",
                child.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then up to 10 s for a clean exit (the services flush their spans on the
    /// way out); killed after that.
    pub async fn terminate(mut self) {
        if let Some(pid) = self.process.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(Duration::from_secs(10), self.process.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.process.kill().await;
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.id()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

pub fn free_addr() -> anyhow::Result<SocketAddr> {
    // The child binds it itself; a just-freed port is a small, acceptable race.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}
