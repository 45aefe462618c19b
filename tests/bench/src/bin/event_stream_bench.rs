//! event-stream-bench: commit-to-StreamEvents latency (issue 12 §6). It prints figures; it
//! asserts nothing.
//!
//! Starts the stack in-process on fresh databases, opens one StreamEvents stream ("from
//! now"), then offers `--rate` metadata updates per second (open loop, spread over
//! `--disputes` disputes) for `--seconds`. Each update writes a unique metadata value, which
//! the stream's event carries back. The commit happens between the call being sent and its
//! answer, so the true commit-to-stream latency lies between the two figures printed:
//! "answer → event" (a lower bound; negative when the event arrives first) and "send →
//! event" (an upper bound).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use harness::{Bearer, Stack, StackOptions};
use tokio::sync::Mutex;

const TENANT: &str = "bench_events";

#[derive(Debug, Parser)]
#[command(
    name = "event-stream-bench",
    about = "commit-to-StreamEvents latency p50/p99"
)]
struct Args {
    /// Mutations offered per second.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Disputes the mutations are spread over.
    #[arg(long, default_value_t = 16)]
    disputes: usize,
}

#[derive(Default)]
struct Times {
    sent: HashMap<String, Instant>,
    answered: HashMap<String, Instant>,
    streamed: HashMap<String, Instant>,
    failed: BTreeMap<String, u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::start(StackOptions::default()).await?;
    let result = run(&stack, &args).await;
    stack.stop().await;
    result
}

async fn run(stack: &Stack, args: &Args) -> anyhow::Result<()> {
    let token = stack.full_token(TENANT);
    let mut disputes = stack.disputes(Some(&token)).await;
    let mut ids = Vec::new();
    for i in 0..args.disputes {
        let created = disputes
            .create_dispute(dpb::CreateDisputeRequest {
                side: dpb::DisputeSide::Merchant.into(),
                amount: 1_000,
                currency: "usd".into(),
                charge: format!("ch_bench_{i}"),
                network: dpb::CardNetwork::Visa.into(),
                reason: dpb::DisputeReason::Fraudulent.into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .dispute
            .context("dispute")?;
        ids.push(created.id);
    }
    let times = Arc::new(Mutex::new(Times::default()));

    let mut events = EventServiceClient::with_interceptor(
        harness::connect(stack.dispute_core_addr).await?,
        Bearer::new(Some(&token))?,
    );
    let mut stream = events
        .stream_events(dpb::StreamEventsRequest::default())
        .await?
        .into_inner();
    let reader_times = times.clone();
    let total = args.rate * args.seconds;
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < total {
            let Ok(Some(message)) = stream.message().await else {
                break;
            };
            let at = Instant::now();
            if let Some(dpb::stream_events_response::Kind::Event(event)) = message.kind {
                // Events of the set-up (created disputes) carry no bench value.
                if let Some(value) = event.dispute.and_then(|d| d.metadata.get("bench").cloned()) {
                    reader_times.lock().await.streamed.insert(value, at);
                    seen += 1;
                }
            }
        }
    });

    // Open loop: each mutation starts on schedule over a few shared connections.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(stack.disputes(Some(&token)).await);
    }
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let start = Instant::now();
    let mut calls = Vec::new();
    for n in 0..total {
        let due = start + interval.mul_f64(n as f64);
        tokio::time::sleep_until(due.into()).await;
        let mut client = clients[(n as usize) % clients.len()].clone();
        let id = ids[(n as usize) % ids.len()].clone();
        let times = times.clone();
        calls.push(tokio::spawn(async move {
            let value = format!("m{n}");
            let sent = Instant::now();
            let answer = client
                .update_dispute(dpb::UpdateDisputeRequest {
                    id,
                    metadata: BTreeMap::from([("bench".to_owned(), value.clone())]),
                    ..Default::default()
                })
                .await;
            let answered = Instant::now();
            let mut times = times.lock().await;
            times.sent.insert(value.clone(), sent);
            match answer {
                Ok(_) => {
                    times.answered.insert(value, answered);
                }
                Err(status) => {
                    *times
                        .failed
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                }
            }
        }));
    }
    for call in calls {
        call.await?;
    }
    let offered_for = start.elapsed();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader).await;

    let times = times.lock().await;
    let mut lower = Vec::new();
    let mut upper = Vec::new();
    for (value, answered) in &times.answered {
        if let (Some(streamed), Some(sent)) = (times.streamed.get(value), times.sent.get(value)) {
            lower.push(signed_ms(*streamed, *answered));
            upper.push(streamed.duration_since(*sent).as_secs_f64() * 1000.0);
        }
    }
    println!(
        "offered {} mutations at {}/s over {:.1} s; succeeded {}, failed {:?}, streamed {}, missing {}",
        total,
        args.rate,
        offered_for.as_secs_f64(),
        times.answered.len(),
        times.failed,
        times.streamed.len(),
        times.answered.len() - lower.len()
    );
    println!(
        "answer -> event ms (lower bound): p50 {:.1} p99 {:.1}",
        percentile(&mut lower, 0.50),
        percentile(&mut lower, 0.99)
    );
    println!(
        "send -> event ms (upper bound):   p50 {:.1} p99 {:.1}",
        percentile(&mut upper, 0.50),
        percentile(&mut upper, 0.99)
    );
    Ok(())
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier.duration_since(later).as_secs_f64() * 1000.0),
    }
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[rank.min(values.len() - 1)]
}
