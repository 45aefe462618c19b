//! webhook-bench: webhook delivery figures (issue 12 §6). It prints figures; it asserts
//! nothing. Everything runs in this process on fresh databases: the stack (its dispute-core
//! replica serves the API only), worker replicas on the same database, and a receiver on
//! 127.0.0.1 answering 204.
//!
//! 1. latency: `--rate` CreateDispute calls per second (merchant chargebacks: 2 events
//!    each) for `--seconds`, with 3 worker replicas; p50/p99 from the call's answer (the
//!    commit) to the receiver's arrival of the `dispute.created` delivery.
//! 2. throughput: a backlog of `--backlog` disputes (2 deliveries each) made with no worker
//!    running, then drained by 1 replica, then (a new backlog) by 3; deliveries per second
//!    per replica.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use harness::figures::percentile;
use harness::webhook_receiver::Receiver;
use harness::{Bearer, Stack, StackOptions};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "webhook-bench",
    about = "webhook latency and deliveries per second"
)]
struct Args {
    /// Mutations (CreateDispute calls) per second in the latency phase.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Disputes of each throughput backlog.
    #[arg(long, default_value_t = 1000)]
    backlog: usize,
}

const TENANT: &str = "bench";

fn flags() -> dispute_core::config::WebhookFlags {
    dispute_core::config::WebhookFlags {
        webhook_time_scale: 1.0,
        ..harness::test_webhook_flags()
    }
}

async fn start_replica(
    stack: &Stack,
    shutdown: &CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let (_addr, handle) = stack
        .start_dispute_core_replica(flags(), &[], shutdown)
        .await?;
    Ok(handle)
}

fn dispute(i: usize, phase: &str) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        side: dpb::DisputeSide::Merchant.into(),
        stage: dpb::DisputeStage::Chargeback.into(),
        amount: 1_000,
        currency: "usd".to_owned(),
        charge: format!("ch_{phase}_{i}"),
        network: dpb::CardNetwork::Visa.into(),
        reason: dpb::DisputeReason::Fraudulent.into(),
        ..Default::default()
    }
}

async fn pending(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("select count(*) from webhook_deliveries where status = 'pending'")
            .fetch_one(pool)
            .await?,
    )
}

async fn drain(
    stack: &Stack,
    pool: &sqlx::PgPool,
    disputes: &harness::DisputesClient,
    backlog: usize,
    replicas: usize,
    phase: &str,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(0..backlog)
        .map(|i| {
            let mut client = disputes.clone();
            async move { client.create_dispute(dispute(i, phase)).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for result in results {
        result?;
    }
    let deliveries = pending(pool).await?;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..replicas {
        handles.push(start_replica(stack, &shutdown).await?);
    }
    while pending(pool).await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "throughput, {replicas} replica(s): {deliveries} deliveries in {took:.2} s = {:.0}/s in all, {:.0}/s per replica",
        deliveries as f64 / took,
        deliveries as f64 / took / replicas as f64
    );
    shutdown.cancel();
    for handle in handles {
        handle.await??;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::start(StackOptions {
        webhooks: dispute_core::config::WebhookFlags {
            webhook_worker: false,
            ..flags()
        },
        ..Default::default()
    })
    .await?;
    let token = stack.full_token(TENANT);
    let channel = harness::connect(stack.dispute_core_addr).await?;
    let disputes =
        DisputeServiceClient::with_interceptor(channel.clone(), Bearer::new(Some(&token))?);
    let mut events = EventServiceClient::with_interceptor(channel, Bearer::new(Some(&token))?);
    let receiver = Receiver::start(0).await;
    events
        .create_webhook_endpoint(dpb::CreateWebhookEndpointRequest {
            url: receiver.url(),
            ..Default::default()
        })
        .await?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.dispute_db_url)
        .await?;

    // 1. Latency at a fixed rate with 3 worker replicas.
    let shutdown = CancellationToken::new();
    let mut handles = Vec::new();
    for _ in 0..3 {
        handles.push(start_replica(&stack, &shutdown).await?);
    }
    let total = usize::try_from(args.rate * args.seconds)?;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let started = tokio::time::Instant::now();
    let mut calls = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until(started + interval * u32::try_from(i)?).await;
        let mut client = disputes.clone();
        calls.push(tokio::spawn(async move {
            let answer = client.create_dispute(dispute(i, "rate")).await;
            answer.map(|a| {
                (
                    a.into_inner().dispute.unwrap_or_default().id,
                    Instant::now(),
                )
            })
        }));
    }
    let mut committed: HashMap<String, Instant> = HashMap::new();
    for call in calls {
        let (id, at) = call.await??;
        committed.insert(id, at);
    }
    let offered = started.elapsed().as_secs_f64();
    let received = receiver.wait_until(|r| r.len() >= 2 * total).await;
    let mut latencies: Vec<Duration> = received
        .iter()
        .filter(|r| r.json()["type"] == "dispute.created")
        .filter_map(|r| {
            let id = r.json()["data"]["dispute"]["id"].as_str()?.to_owned();
            Some(r.at.saturating_duration_since(*committed.get(&id)?))
        })
        .collect();
    latencies.sort();
    println!(
        "latency: {total} mutations at {:.0}/s ({} events), 3 worker replicas: commit-to-receiver p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total as f64 / offered,
        received.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        percentile(&latencies, 1.0).as_secs_f64() * 1000.0,
    );
    shutdown.cancel();
    for handle in handles {
        handle.await??;
    }
    while pending(&pool).await? > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 2. Deliveries per second per replica, draining a backlog.
    drain(&stack, &pool, &disputes, args.backlog, 1, "one").await?;
    drain(&stack, &pool, &disputes, args.backlog, 3, "three").await?;
    pool.close().await;
    stack.stop().await;
    Ok(())
}
