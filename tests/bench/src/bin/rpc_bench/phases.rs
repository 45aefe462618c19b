//! The phases: 1 × 1, closed loop at the peak and a fixed rate, and their latencies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use disputes_proto::documents_v1 as docpb;

use crate::calls::{Call, analyze_disputes_database};
use crate::{Args, Clients};

/// Latencies of one phase.
#[derive(Debug, Default, Clone)]
pub struct Phase {
    pub calls: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub latencies: Vec<Duration>,
}

impl Phase {
    pub fn rate(&self) -> f64 {
        (self.calls - self.errors) as f64 / self.seconds
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1e3
    }

    pub fn mean_ms(&self) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies
            .iter()
            .map(Duration::as_secs_f64)
            .sum::<f64>()
            * 1e3
            / self.latencies.len() as f64
    }

    fn add(&mut self, result: Result<(), tonic::Status>, latency: Duration) {
        self.calls += 1;
        match result {
            Ok(()) => self.latencies.push(latency),
            Err(status) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{:?}: {}", status.code(), status.message()));
                }
            }
        }
    }

    fn merge(&mut self, other: Phase) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.latencies.extend(other.latencies);
    }
}

/// The three phases of one call on one server.
pub struct Row {
    pub call: &'static str,
    pub server: &'static str,
    pub single: Phase,
    pub peak: Phase,
    pub half: Phase,
    pub half_offered: f64,
}

pub async fn measure(
    args: &Args,
    call_name: &'static str,
    server: &'static str,
    clients: &Clients,
    call: &Call,
) -> anyhow::Result<Row> {
    eprintln!("{call_name} on {server} ...");
    // Warm-up: connections, pools and prepared statements.
    let warm = call.prepare(clients, 20).await?;
    let mut client = clients.single.clone();
    for i in 0..20 {
        call.call(&mut client, &warm, i).await.map_err(|s| {
            anyhow::anyhow!("{call_name} on {server}: {:?} {}", s.code(), s.message())
        })?;
    }
    if call.opens_disputes() {
        // A database in service holds rows and autovacuum has analyzed them. Measured from
        // a few rows, pooled connections keep the plans made for tiny tables (sequential
        // scans, foreign-key checks included) while each call adds a dispute, and the phase
        // slows down until autovacuum's next analyze (docs/decisions.md).
        closed_loop(
            clients,
            call,
            args.calls_peak.min(2_000),
            args.in_flight,
            false,
        )
        .await?;
        analyze_disputes_database().await?;
    }
    let single = closed_loop(clients, call, args.calls_1x1, 1, true).await?;
    let peak = closed_loop(clients, call, args.calls_peak, args.in_flight, false).await?;
    let offered = (peak.rate() / 2.0).max(1.0);
    let half = fixed_rate(clients, call, offered, args.half_seconds).await?;
    Ok(Row {
        call: call_name,
        server,
        single,
        peak,
        half,
        half_offered: offered,
    })
}

/// document-store's ListDocuments of one dispute, `calls` calls one at a time on one
/// connection (after 20 warm-up calls).
pub async fn list_documents_1x1(
    documents_addr: SocketAddr,
    token: &str,
    dispute_id: &str,
    calls: usize,
) -> anyhow::Result<Phase> {
    eprintln!("ListDocuments on document-store ...");
    let mut client = harness::documents_client(documents_addr, Some(token)).await?;
    let mut call = async || -> Result<(), tonic::Status> {
        let listed = client
            .list_documents(docpb::ListDocumentsRequest {
                dispute_id: dispute_id.to_owned(),
                ..Default::default()
            })
            .await?
            .into_inner();
        if listed.documents.len() == 2 {
            Ok(())
        } else {
            Err(tonic::Status::internal(
                "ListDocuments: expected 2 documents",
            ))
        }
    };
    for _ in 0..20 {
        call().await?;
    }
    let mut phase = Phase::default();
    let started = Instant::now();
    for _ in 0..calls {
        let sent = Instant::now();
        let result = call().await;
        phase.add(result, sent.elapsed());
    }
    phase.seconds = started.elapsed().as_secs_f64();
    Ok(phase)
}

/// `calls` calls by `workers` clients each waiting for its answer before the next call;
/// `single`: all on the one-connection client.
async fn closed_loop(
    clients: &Clients,
    call: &Call,
    calls: usize,
    workers: usize,
    single: bool,
) -> anyhow::Result<Phase> {
    let prepared = call.prepare(clients, calls).await?;
    let call = Arc::new(call.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let mut client = if single {
            clients.single.clone()
        } else {
            clients.pool[worker % clients.pool.len()].clone()
        };
        let (next, prepared, call) = (next.clone(), prepared.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut phase = Phase::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= calls {
                    return phase;
                }
                let sent = Instant::now();
                let result = call.call(&mut client, &prepared, i).await;
                phase.add(result, sent.elapsed());
            }
        }));
    }
    let mut phase = Phase::default();
    for task in tasks {
        phase.merge(task.await?);
    }
    phase.seconds = started.elapsed().as_secs_f64();
    Ok(phase)
}

/// Calls sent at `rate` per second for `seconds`, each at its scheduled time whether or not
/// earlier ones answered; latency counts from the scheduled time.
async fn fixed_rate(
    clients: &Clients,
    call: &Call,
    rate: f64,
    seconds: f64,
) -> anyhow::Result<Phase> {
    let calls = ((rate * seconds).round() as usize).max(1);
    let prepared = call.prepare(clients, calls).await?;
    let call = Arc::new(call.clone());
    let interval = Duration::from_secs_f64(1.0 / rate);
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let start = tokio::time::Instant::now();
    for i in 0..calls {
        let scheduled = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(scheduled).await;
        let mut client = clients.pool[i % clients.pool.len()].clone();
        let (sender, prepared, call) = (sender.clone(), prepared.clone(), call.clone());
        tokio::spawn(async move {
            let result = call.call(&mut client, &prepared, i).await;
            let _ = sender.send((result, scheduled.elapsed()));
        });
    }
    drop(sender);
    let mut phase = Phase::default();
    while let Some((result, latency)) = receiver.recv().await {
        phase.add(result, latency);
    }
    phase.seconds = start.elapsed().as_secs_f64();
    Ok(phase)
}
