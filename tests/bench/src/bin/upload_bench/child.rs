//! A document-store child process, wired by `harness::process::ServiceCommand`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::ValueEnum;
use harness::process::{Observability, Service, ServiceCommand};

use crate::measure::proc_status_kib;
use crate::{Args, BUCKET, Bench, JWT_SECRET, MIB};

/// The allocator settings document-store is deployed with (deploy/Dockerfile and the base
/// ConfigMap): mimalloc reads them at process start. `--child-env` can override them.
const DEPLOYED_ALLOCATOR_ENV: [(&str, &str); 2] = [
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// A document-store child process; killed when dropped, so errors and Ctrl-C leave none.
pub struct ChildService {
    process: tokio::process::Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub idle_rss_kib: u64,
}

impl ChildService {
    pub async fn start(
        bench: &Bench,
        args: &Args,
        // `None`: document-store's default upload settings.
        size_mib: Option<u64>,
        mode: Observability,
        log: &Path,
    ) -> anyhow::Result<ChildService> {
        // The child binds the port itself; a just-freed port is a small, acceptable race.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log_file = std::fs::File::create(log).context("create child log")?;
        let checksum_mode = args
            .checksum_mode
            .to_possible_value()
            .context("checksum mode name")?;
        let mut service = ServiceCommand::binary(Service::DocumentStore, &bench.binary);
        if let Some(size_mib) = size_mib {
            service = service
                .env(
                    "DOCUMENT_STORE_MAX_UPLOAD_BYTES",
                    ((size_mib + 1) * MIB).to_string(),
                )
                .env(
                    "DOCUMENT_STORE_PART_SIZE_BYTES",
                    (args.part_size_mib * MIB).to_string(),
                )
                .env(
                    "DOCUMENT_STORE_MAX_PARTS_IN_FLIGHT",
                    args.parts_in_flight.to_string(),
                );
        }
        let process = service
            .listen_addr(addr)
            .database_url(&bench.database_url)
            .s3(&bench.s3.endpoint, BUCKET)
            .env("DOCUMENT_STORE_S3_CHECKSUM_MODE", checksum_mode.get_name())
            .jwt_secret(JWT_SECRET)
            .observability(mode, Some(&bench.sink.endpoint()))?
            .envs(DEPLOYED_ALLOCATOR_ENV)
            .envs(args.child_env.iter().cloned())
            .command()?
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start {}", bench.binary.display()))?;
        let pid = process.id().context("child has no pid")?;
        let mut child = ChildService {
            process,
            pid,
            addr,
            idle_rss_kib: 0,
        };

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.process.try_wait()? {
                bail!(
                    "document-store exited at start-up ({status}); see {}",
                    tail(log)
                );
            }
            if harness::tonic_health_client::health_check(addr)
                .await
                .unwrap_or(false)
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "document-store not serving after 30 s; see {}",
                tail(log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.idle_rss_kib = proc_status_kib(pid, "VmRSS")?;
        Ok(child)
    }

    /// SIGTERM and up to 10 s for a clean exit (its last spans are flushed to the sink on
    /// the way out), killed after that.
    pub async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.process.wait())
            .await
            .is_err()
        {
            let _ = self.process.kill().await;
        }
    }
}

/// The last lines of a child's log, for error messages.
pub fn tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(10);
            format!(
                "the end of {}:\n{}",
                log.display(),
                lines[start..].join("\n")
            )
        }
        Err(_) => format!("{} (unreadable)", log.display()),
    }
}
