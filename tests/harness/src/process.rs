//! Services in child processes, so a test can `kill -9` one and start it again on the
//! same port.
//!
//! The child is the test binary itself, re-run with `--exact <entry test> --ignored` and
//! the service's settings in its environment: an ignored test of the binary (see
//! `tests/e2e/tests/faults.rs`) runs the service exactly as its `main.rs` does (config from
//! the environment, telemetry, `run` until SIGTERM). The service code is therefore always
//! the code this test binary was built from, and no other binary has to be built or found.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::clients::tonic_health_client::health_check;

/// Set in the child's environment: which service the entry test runs.
pub const SERVICE_PROCESS_ENV: &str = "E2E_SERVICE_PROCESS";

/// A service running in a child process.
pub struct ServiceProcess {
    pub name: String,
    pub addr: SocketAddr,
    entry_test: String,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
}

impl ServiceProcess {
    /// Starts `name` (passed to the child as `E2E_SERVICE_PROCESS`) by re-running this test
    /// binary's ignored test `entry_test` with `envs`; its output goes to `log`. Returns
    /// once the service's health check answers SERVING on `addr`.
    pub async fn start(
        name: &str,
        entry_test: &str,
        addr: SocketAddr,
        envs: Vec<(String, String)>,
        log: PathBuf,
    ) -> anyhow::Result<ServiceProcess> {
        let mut process = ServiceProcess {
            name: name.to_owned(),
            addr,
            entry_test: entry_test.to_owned(),
            envs,
            log,
            child: None,
            starts: 0,
        };
        process.start_again().await?;
        Ok(process)
    }

    /// Starts the (killed or stopped) service again on the same address.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "{} is still running", self.name);
        let exe = std::env::current_exe().context("locate the test binary")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("open {}", self.log.display()))?;
        let child = Command::new(exe)
            .args([
                "--exact",
                &self.entry_test,
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(SERVICE_PROCESS_ENV, &self.name)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawn {}", self.name))?;
        self.child = Some(child);
        self.starts += 1;
        self.wait_until_serving(Duration::from_secs(30)).await
    }

    async fn wait_until_serving(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                anyhow::bail!(
                    "{} exited during start-up ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let serving = tokio::time::timeout(Duration::from_secs(1), health_check(self.addr))
                .await
                .is_ok_and(|checked| checked.is_ok_and(|serving| serving));
            if serving {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} not serving on {} after {within:?}:\n{}",
                self.name,
                self.addr,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`: no drain, no cleanup, sockets closed by the kernel.
    pub async fn kill9(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("not running")?;
        // SIGKILL on Unix.
        child.start_kill()?;
        child.wait().await?;
        Ok(())
    }

    /// Whether the child is still alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The end of the service's output, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
