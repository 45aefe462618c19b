//! webhook-fairness-bench: does a tenant whose endpoints are all black-holed delay another
//! tenant's webhooks (issue 21)? It prints figures; it asserts nothing. Everything runs in
//! this process on fresh databases, with production delivery settings (time scale 1, 10 s
//! attempt timeout, 16 slots, the default caps and breaker); only http and loopback
//! addresses are allowed.
//!
//! Tenant A registers the most endpoints a tenant may have, all on a listener that accepts
//! TCP and never answers, and makes `--a-events` events (merchant chargebacks: 2 each) over
//! `--seconds`; tenant B, in the same seconds, makes `--b-deliveries` disputes whose
//! `dispute.created` goes to a receiver answering 204. Printed: B's latency from the
//! CreateDispute answer (the commit) to the receiver's arrival, p50/p99/max; A's attempts
//! and breakers then, and again once every breaker of A opened (at most `--observe-secs`
//! later); and the claim statement's time on the backlog A leaves.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::dispute_service_client::DisputeServiceClient;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use harness::figures::percentile;
use harness::webhook_receiver::Receiver;
use harness::{Bearer, Stack, StackOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "webhook-fairness-bench",
    about = "another tenant's webhook latency while one tenant's endpoints are black-holed"
)]
struct Args {
    /// Tenant A's events (2 per dispute).
    #[arg(long, default_value_t = 1000)]
    a_events: usize,
    /// Tenant B's deliveries (one per dispute).
    #[arg(long, default_value_t = 200)]
    b_deliveries: usize,
    /// Seconds over which both tenants make their events.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Then, seconds to wait at most for every one of A's breakers to open (0: skip).
    #[arg(long, default_value_t = 90)]
    observe_secs: u64,
}

fn dispute(charge: String) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        side: dpb::DisputeSide::Merchant.into(),
        stage: dpb::DisputeStage::Chargeback.into(),
        amount: 1_000,
        currency: "usd".to_owned(),
        charge,
        network: dpb::CardNetwork::Visa.into(),
        reason: dpb::DisputeReason::Fraudulent.into(),
        ..Default::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A listener that accepts and never answers; it holds every connection until `stop`.
async fn black_hole(stop: CancellationToken) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        held.push(stream);
                    }
                }
            }
        }
    });
    Ok(format!("http://{addr}/hooks"))
}

/// Makes `count` disputes evenly over `seconds`; returns each dispute id with when its
/// CreateDispute answered.
async fn make_disputes(
    client: harness::DisputesClient,
    count: usize,
    seconds: u64,
    prefix: &'static str,
) -> anyhow::Result<HashMap<String, Instant>> {
    let interval = Duration::from_secs_f64(seconds as f64 / count.max(1) as f64);
    let started = tokio::time::Instant::now();
    let mut calls = Vec::with_capacity(count);
    for i in 0..count {
        tokio::time::sleep_until(started + interval * u32::try_from(i)?).await;
        let mut client = client.clone();
        calls.push(tokio::spawn(async move {
            let answer = client
                .create_dispute(dispute(format!("ch_{prefix}_{i}")))
                .await;
            answer.map(|a| {
                (
                    a.into_inner().dispute.unwrap_or_default().id,
                    Instant::now(),
                )
            })
        }));
    }
    let mut committed = HashMap::new();
    for call in calls {
        let (id, at) = call.await??;
        committed.insert(id, at);
    }
    Ok(committed)
}

async fn open_breakers(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "select count(*) from webhook_endpoints
          where tenant_id = 'tenant-a' and breaker_open_until > now()",
    )
    .fetch_one(pool)
    .await?)
}

/// Prints tenant A's deliveries, attempts and breakers; returns how many are pending.
async fn report_tenant_a(
    pool: &sqlx::PgPool,
    started: Instant,
    endpoints: u32,
) -> anyhow::Result<i64> {
    let (deliveries, attempted, attempts, pending): (i64, i64, i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where attempt_count > 0),
                coalesce(sum(attempt_count), 0)::bigint,
                count(*) filter (where status = 'pending')
           from webhook_deliveries where tenant_id = 'tenant-a'",
    )
    .fetch_one(pool)
    .await?;
    let (open, max_per_endpoint): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where breaker_open_until > now()),
                coalesce(max((select count(*) from webhook_attempts a
                               join webhook_deliveries d
                                 on d.tenant_id = a.tenant_id and d.id = a.delivery_id
                              where d.tenant_id = e.tenant_id and d.endpoint_id = e.id)), 0)
           from webhook_endpoints e where e.tenant_id = 'tenant-a'",
    )
    .fetch_one(pool)
    .await?;
    println!(
        "tenant A after {:.1} s: {deliveries} deliveries, {attempts} attempts on {attempted} of \
         them (at most {max_per_endpoint} per endpoint), {pending} pending; {open} of {} \
         breakers open",
        started.elapsed().as_secs_f64(),
        endpoints,
    );
    Ok(pending)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let flags = dispute_core::config::WebhookFlags {
        webhook_allow_http: true,
        webhook_allow_private_addresses: true,
        ..Default::default()
    };
    let settings = flags.settings();
    let stack = Stack::start(StackOptions {
        webhooks: flags,
        ..Default::default()
    })
    .await?;
    let channel = harness::connect(stack.dispute_core_addr).await?;
    let client_of = |tenant: &str| -> anyhow::Result<_> {
        let bearer = Bearer::new(Some(&stack.full_token(tenant)))?;
        Ok((
            DisputeServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            EventServiceClient::with_interceptor(channel.clone(), bearer),
        ))
    };
    let (disputes_a, mut events_a) = client_of("tenant-a")?;
    let (disputes_b, mut events_b) = client_of("tenant-b")?;

    let stop = CancellationToken::new();
    let hole = black_hole(stop.clone()).await?;
    for _ in 0..settings.max_endpoints_per_tenant {
        events_a
            .create_webhook_endpoint(dpb::CreateWebhookEndpointRequest {
                url: hole.clone(),
                ..Default::default()
            })
            .await?;
    }
    let receiver = Receiver::start(0).await;
    events_b
        .create_webhook_endpoint(dpb::CreateWebhookEndpointRequest {
            url: receiver.url(),
            event_types: vec!["dispute.created".to_owned()],
            ..Default::default()
        })
        .await?;
    println!(
        "settings: {} slots per replica, {} per tenant, {} per endpoint, attempt timeout {:?}, \
         breaker after {} failures for {:?} (doubling up to {:?}); tenant A: {} black-holed \
         endpoints, {} events = {} deliveries; tenant B: {} deliveries; over {} s",
        settings.concurrency,
        settings.tenant_concurrency,
        settings.endpoint_concurrency,
        settings.attempt_timeout,
        settings.breaker.threshold,
        settings.breaker.base_backoff,
        settings.breaker.max_backoff,
        settings.max_endpoints_per_tenant,
        args.a_events,
        args.a_events * settings.max_endpoints_per_tenant as usize,
        args.b_deliveries,
        args.seconds,
    );

    let started = Instant::now();
    let (_a, b) = tokio::try_join!(
        make_disputes(disputes_a, args.a_events.div_ceil(2), args.seconds, "a"),
        make_disputes(disputes_b, args.b_deliveries, args.seconds, "b"),
    )?;
    let wait = tokio::time::timeout(
        Duration::from_secs(120),
        receiver.wait_until(|r| r.len() >= args.b_deliveries),
    )
    .await;
    let received = receiver.received();
    let mut latencies: Vec<Duration> = received
        .iter()
        .filter_map(|r| {
            let id = r.json()["data"]["dispute"]["id"].as_str()?.to_owned();
            Some(r.at.saturating_duration_since(*b.get(&id)?))
        })
        .collect();
    latencies.sort();
    println!(
        "tenant B: {} of {} deliveries arrived{}; commit-to-receiver p50 {:.1} ms, p99 {:.1} ms, \
         max {:.1} ms",
        latencies.len(),
        args.b_deliveries,
        if wait.is_err() {
            " (gave up after 120 s)"
        } else {
            ""
        },
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
    );

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&stack.dispute_db_url)
        .await?;
    let pending = report_tenant_a(&pool, started, settings.max_endpoints_per_tenant).await?;
    let observing = Instant::now();
    if args.observe_secs > 0 {
        let all_open = i64::from(settings.max_endpoints_per_tenant);
        while open_breakers(&pool).await? < all_open
            && observing.elapsed() < Duration::from_secs(args.observe_secs)
        {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        report_tenant_a(&pool, started, settings.max_endpoints_per_tenant).await?;
    }

    // The claim statement on the backlog A leaves, in a transaction rolled back each time.
    let caps = dispute_core::store::webhooks::ClaimCaps {
        per_endpoint: i32::try_from(settings.endpoint_concurrency)?,
        per_tenant: i32::try_from(settings.tenant_concurrency)?,
    };
    let mut timings = Vec::new();
    for _ in 0..50 {
        let mut tx = pool.begin().await?;
        let clock = Instant::now();
        dispute_core::store::webhooks::claim_due(
            &mut tx,
            "bench-probe",
            Duration::from_secs(60),
            16,
            caps,
        )
        .await?;
        timings.push(clock.elapsed());
        tx.rollback().await?;
    }
    timings.sort();
    println!(
        "claim statement on a backlog of {pending} pending deliveries: p50 {:.2} ms, max {:.2} ms \
         (50 runs)",
        ms(percentile(&timings, 0.50)),
        ms(percentile(&timings, 1.0)),
    );
    stop.cancel();
    pool.close().await;
    stack.stop().await;
    Ok(())
}
