//! What the benchmarks share to measure and run: percentiles of timed samples, the service
//! binary beside the running program, and a scratch database dropped afterwards.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};

/// The `percentile` (0–100) of `samples` in milliseconds, nearest rank; NaN when empty.
pub fn percentile_ms(samples: &[Duration], percentile: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((percentile / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// The quantile `p` (0–1) of `sorted`, nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// `explicit`, or the binary `name` next to the running program; an error says how to build
/// it when it is not there.
pub fn service_binary(explicit: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    let binary = match explicit {
        Some(path) => path.to_owned(),
        None => std::env::current_exe()
            .context("locate this program")?
            .with_file_name(name),
    };
    ensure!(
        binary.is_file(),
        "no {name} binary at {} (cargo build --release -p {name})",
        binary.display()
    );
    Ok(binary)
}

/// Runs `body` with the URL of a new database `<prefix>_<uuid>`, and drops the database
/// afterwards, also when the run fails or is interrupted with Ctrl-C.
pub async fn with_scratch_database<T, Run>(
    prefix: &str,
    body: impl FnOnce(String) -> Run,
) -> anyhow::Result<T>
where
    Run: Future<Output = anyhow::Result<T>>,
{
    let admin_url = crate::admin_database_url();
    let database = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let database_url = crate::ensure_database(&admin_url, &database).await?;
    let result = tokio::select! {
        result = body(database_url) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Err(error) = crate::drop_database(&admin_url, &database).await {
        eprintln!("could not drop database {database}: {error:#}");
    }
    result
}
