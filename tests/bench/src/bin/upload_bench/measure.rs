//! What the bench reads of a process: CPU time and memory, from `/proc`.

use std::time::Duration;

use anyhow::Context;

/// The kernel reports process CPU times in USER_HZ ticks, 100 per second on Linux.
const TICKS_PER_SECOND: f64 = 100.0;

/// VmRSS of `pid` every 50 ms until `stop`.
pub async fn sample_rss(pid: u32, stop: tokio_util::sync::CancellationToken) -> Vec<u64> {
    let mut samples = Vec::new();
    let mut every = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return samples,
            _ = every.tick() => {
                if let Ok(kib) = proc_status_kib(pid, "VmRSS") {
                    samples.push(kib);
                }
            }
        }
    }
}

pub fn median_kib(mut samples: Vec<u64>) -> Option<u64> {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied()
}

/// A `kB` line of `/proc/<pid>/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    line.trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .with_context(|| format!("parse {field}: {line}"))
}

/// User plus system CPU seconds of a process, all threads.
pub fn child_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    cpu_seconds(&format!("/proc/{pid}/stat"))
}

pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds("/proc/self/stat")
}

fn cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    // The command name may contain spaces; the fields after it are fixed (utime is the
    // 14th field of the line, the 12th after the name).
    let after_name = stat
        .rsplit_once(')')
        .with_context(|| format!("parse {path}"))?
        .1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .with_context(|| format!("parse {path}"))?
            .parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SECOND)
}
