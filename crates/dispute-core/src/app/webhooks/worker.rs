//! The webhook delivery worker, one per replica. It claims due deliveries with
//! `FOR UPDATE SKIP LOCKED` and a lease (owner = this replica's id), fairly (round-robin
//! across tenants and endpoints, with caps on attempts in flight per endpoint and per
//! tenant, skipping endpoints whose breaker is open), POSTs each with a per-attempt timeout,
//! records the attempt and schedules the next one (or ends the delivery), then updates the
//! endpoint's breaker. New deliveries wake it soon after they commit: the sequencer round
//! that numbers their events announces them (the event hub's LISTEN on `dispute_events`
//! hears the rounds of every replica; writers notify nothing), and a manual retry on this
//! replica wakes it in process. Scheduled retries, and anything a lost notification hid,
//! are found by polling. It claims only as many deliveries as it has free slots, each
//! attempted at once, so no claim waits unstarted. On shutdown it stops claiming, lets
//! attempts in flight finish (for the stop grace, half the worker stop timeout), cuts off
//! the rest and gives back every claim it still holds; the claims of a replica that died
//! are taken by another once their lease ran out.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use rand::Rng;
use secrecy::ExposeSecret;
use service_kit::worker::Workers;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Webhooks, secrets};
use crate::domain::webhooks::{
    BreakerOutcome, SecretRow, SecretSlot, retry_delay, scaled, should_disable, signature_header,
};
use crate::store::events;
use crate::store::webhooks::{self as store, AfterAttempt, ClaimCaps, ClaimedDelivery, NewAttempt};

impl Webhooks {
    /// Starts this replica's delivery worker among `workers`, woken by `announced` (the
    /// event hub's: sequencer rounds that made deliveries); it stops with them.
    pub fn start_worker(&self, workers: &mut Workers, announced: Arc<Notify>) {
        let worker = self.clone();
        let replica = domain_kit::ids::new_id("rpl");
        workers.spawn("webhook worker", move |shutdown| async move {
            worker.run_worker(&replica, &announced, shutdown).await
        });
    }

    async fn run_worker(&self, replica: &str, announced: &Notify, shutdown: CancellationToken) {
        tracing::info!(replica, "webhook worker started");
        let concurrency = self.settings.concurrency.max(1);
        // Each claimed delivery is attempted at once in its own task; the worker claims only
        // as many as it has free slots, so a slow receiver never holds up the others and
        // nothing claimed waits unstarted.
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut backlog_counted = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            while in_flight.try_join_next().is_some() {}
            let free = concurrency.saturating_sub(in_flight.len());
            let mut claimed_all_free = false;
            if free > 0 {
                let limit = i64::try_from(free).unwrap_or(1);
                match self.claim(replica, limit).await {
                    Ok(claimed) => {
                        claimed_all_free = claimed.len() == free;
                        for delivery in claimed {
                            let worker = self.clone();
                            let replica = replica.to_owned();
                            in_flight.spawn(async move {
                                if let Err(error) = worker.deliver(&replica, &delivery).await {
                                    tracing::warn!(
                                        delivery_id = %delivery.id,
                                        error = ?error,
                                        "webhook attempt not recorded; retried after the lease"
                                    );
                                }
                            });
                        }
                    }
                    Err(error) => tracing::warn!(error = ?error, "webhook claim failed"),
                }
            }
            if claimed_all_free {
                // Maybe more are due: claim again as soon as a slot frees.
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = in_flight.join_next() => {},
                }
                continue;
            }
            let wait = self.until_next_due(&mut backlog_counted).await;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(wait) => {},
                _ = async { in_flight.join_next().await }, if !in_flight.is_empty() => {},
                () = self.retried.notified() => {},
                () = announced.notified() => {},
            }
        }
        // Attempts in flight may finish and be recorded within the stop grace; the rest are
        // cut off, and every claim this replica still holds goes back now rather than when
        // its lease runs out (another replica sends those again: at least once).
        let finished = tokio::time::timeout(self.settings.stop_grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::info!(
                replica,
                cut_off = in_flight.len(),
                "webhook attempts cut off at shutdown"
            );
            in_flight.shutdown().await;
        }
        match self.release(replica).await {
            Ok(released) if released > 0 => {
                tracing::info!(replica, released, "webhook claims released at shutdown")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(error = ?error, "releasing webhook claims failed"),
        }
        tracing::info!(replica, "webhook worker stopped");
    }

    async fn claim(&self, replica: &str, batch: i64) -> anyhow::Result<Vec<ClaimedDelivery>> {
        let caps = ClaimCaps {
            per_endpoint: i32::try_from(self.settings.endpoint_concurrency).unwrap_or(i32::MAX),
            per_tenant: i32::try_from(self.settings.tenant_concurrency).unwrap_or(i32::MAX),
        };
        let mut conn = self.pool.acquire().await.context("acquire")?;
        store::claim_due(&mut conn, replica, self.settings.lease, batch, caps).await
    }

    async fn release(&self, replica: &str) -> anyhow::Result<u64> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        store::release(&mut conn, replica).await
    }

    /// How long to sleep: until the next delivery is due, at most the poll interval.
    async fn until_next_due(&self, backlog_counted: &mut Option<Instant>) -> Duration {
        let poll = self.settings.poll_interval;
        // The backlog metric counts every pending delivery: at most once per poll interval,
        // not at each wake-up (a backlog held back by the caps would make every new
        // delivery's wake-up count it).
        let count_backlog = backlog_counted.is_none_or(|at| at.elapsed() >= poll);
        let next = async {
            let mut conn = self.pool.acquire().await.context("acquire")?;
            if count_backlog {
                let pending = store::pending_count(&mut conn).await?;
                self.backlog
                    .store(u64::try_from(pending).unwrap_or(0), Ordering::Relaxed);
                *backlog_counted = Some(Instant::now());
            }
            store::next_due(&mut conn).await
        };
        match next.await {
            Ok(Some(due)) => (due - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .clamp(Duration::from_millis(5), poll),
            _ => poll,
        }
    }

    /// One attempt of one delivery, recorded.
    async fn deliver(&self, replica: &str, delivery: &ClaimedDelivery) -> anyhow::Result<()> {
        let tenant_id = delivery.tenant_id.as_str();
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let endpoint =
            store::find_endpoint_any(&mut conn, tenant_id, &delivery.endpoint_id).await?;
        let event = events::find_event(&mut conn, tenant_id, &delivery.event_id).await?;
        let (Some(endpoint), Some(event)) = (endpoint, event) else {
            return store::fail_claimed(&mut conn, tenant_id, &delivery.id, replica).await;
        };
        if !endpoint.enabled || endpoint.deleted_at.is_some() {
            return store::fail_claimed(&mut conn, tenant_id, &delivery.id, replica).await;
        }
        // No connection is held during the POST.
        drop(conn);

        let body = (self.render)(
            &event.id,
            &event.event_type,
            &event.payload,
            event.create_time,
        )?;
        let started_at = Utc::now();
        let timestamp = started_at.timestamp();
        // A secret that does not open (its key is gone, the row was altered) sends nothing:
        // the attempt is not recorded and the claim runs out, as for any other error here.
        let row = |slot| SecretRow {
            tenant_id,
            endpoint_id: &endpoint.id,
            slot,
        };
        let keys = &self.settings.secret_keys;
        let secret = secrets::open_for(keys, &endpoint.secret, row(SecretSlot::Current))?;
        let previous = match endpoint.previous_secret_at(started_at) {
            Some(stored) => Some(secrets::open_for(keys, stored, row(SecretSlot::Previous))?),
            None => None,
        };
        let signature = signature_header(
            secret.expose_secret(),
            previous.as_ref().map(ExposeSecret::expose_secret),
            &delivery.id,
            timestamp,
            &body,
        )
        .context("endpoint secret is not valid base64")?;
        let clock = Instant::now();
        let response = self
            .client
            .post(&endpoint.url, &delivery.id, timestamp, &signature, body)
            .await;
        let latency = clock.elapsed();

        let number = u32::try_from(delivery.attempt_count).unwrap_or(0) + 1;
        let after = if response.succeeded() {
            AfterAttempt::Succeeded
        } else {
            let jitter: f64 = rand::rng().random();
            match retry_delay(number, self.settings.time_scale, jitter) {
                Some(delay) => AfterAttempt::RetryAt(
                    Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
                ),
                None => AfterAttempt::Failed,
            }
        };
        self.metrics.attempt(
            match after {
                AfterAttempt::Succeeded => "delivered",
                AfterAttempt::RetryAt(_) => "failed",
                AfterAttempt::Failed => "gave_up",
            },
            latency,
        );
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .context("begin")?;
        store::record_attempt(
            &mut tx,
            tenant_id,
            &delivery.id,
            replica,
            &NewAttempt {
                started_at,
                response_status: i32::from(response.status),
                error: &response.error,
                latency_us: i64::try_from(latency.as_micros()).unwrap_or(i64::MAX),
                response_body_prefix: &response.body_prefix,
            },
            after,
        )
        .await?;
        tx.commit().await.context("commit")?;
        // The endpoint's bookkeeping in a transaction of its own: locks are taken endpoint
        // first, then deliveries, as DeleteWebhookEndpoint takes them (no deadlock).
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .context("begin")?;
        match BreakerOutcome::of_status(response.status) {
            // An answer closes the breaker (`BreakerState::after_attempt`), a write only when
            // it was not closed.
            BreakerOutcome::Answered => {
                store::close_breaker(&mut tx, tenant_id, &endpoint.id).await?;
            }
            BreakerOutcome::Failed => {
                if let Some(breaker) = store::lock_breaker(&mut tx, tenant_id, &endpoint.id).await?
                {
                    let after = breaker.after_attempt(
                        BreakerOutcome::Failed,
                        Utc::now(),
                        &self.settings.breaker,
                        self.settings.time_scale,
                    );
                    store::save_breaker(&mut tx, tenant_id, &endpoint.id, &after).await?;
                    if let Some(until) = after.open_until
                        && after.opened_times > breaker.opened_times
                    {
                        tracing::info!(
                            tenant_id,
                            endpoint_id = %endpoint.id,
                            consecutive_failures = after.consecutive_failures,
                            openings_in_a_row = after.opened_times,
                            open_until = %until,
                            "webhook endpoint breaker opened"
                        );
                    }
                }
            }
        }
        if response.succeeded() {
            store::endpoint_succeeded(&mut tx, tenant_id, &endpoint.id).await?;
        } else if let Some(since) =
            store::endpoint_failed(&mut tx, tenant_id, &endpoint.id, started_at).await?
        {
            let failing_for = (Utc::now() - since).to_std().unwrap_or_default();
            let disable_after = scaled(self.settings.disable_after, self.settings.time_scale);
            if should_disable(failing_for, disable_after)
                && store::disable_failing(&mut tx, tenant_id, &endpoint.id).await?
            {
                let failed =
                    store::fail_pending_of_endpoint(&mut tx, tenant_id, &endpoint.id).await?;
                // dispute_events rows belong to a dispute, so this is a log line, not an
                // event (docs/api.md, "Webhooks").
                tracing::warn!(
                    tenant_id,
                    endpoint_id = %endpoint.id,
                    failing_since = %since,
                    pending_deliveries_failed = failed,
                    "webhook endpoint disabled: failing"
                );
            }
        }
        tx.commit().await.context("commit")?;
        tracing::debug!(
            delivery_id = %delivery.id,
            attempt = number,
            status = response.status,
            latency_ms = latency.as_millis() as u64,
            "webhook attempt"
        );
        Ok(())
    }
}
