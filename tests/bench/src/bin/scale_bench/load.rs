//! The measured calls on a seeded database: closed loops of `concurrency` calls in flight
//! over a few connections, each call on a tenant of a sample and a row picked at random
//! (so the reads spread over the whole table, not one hot row), and StreamEvents replays.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use disputes_proto::disputes_v1 as dpb;
use dpb::dispute_service_client::DisputeServiceClient;
use dpb::event_service_client::EventServiceClient;
use futures::future::BoxFuture;
use harness::DisputesClient;
use tonic::transport::Channel;

use crate::seed::{self, Size, TEMPLATE_TENANT};

pub fn merchant_chargeback(charge: &str) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        side: dpb::DisputeSide::Merchant.into(),
        stage: dpb::DisputeStage::Chargeback.into(),
        amount: 12_500,
        currency: "usd".to_owned(),
        charge: charge.to_owned(),
        network: dpb::CardNetwork::Visa.into(),
        reason: dpb::DisputeReason::ProductNotReceived.into(),
        network_reason_code: "13.1".to_owned(),
        ..Default::default()
    }
}

pub fn issuer_inquiry(transaction_id: &str) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        side: dpb::DisputeSide::Issuer.into(),
        amount: 4_200,
        currency: "USD".to_owned(),
        transaction_id: transaction_id.to_owned(),
        network: dpb::CardNetwork::Mastercard.into(),
        reason: dpb::DisputeReason::Fraudulent.into(),
        date_customer_reported: Utc::now().date_naive().format("%Y-%m-%d").to_string(),
        applicable_regulation: dpb::ApplicableRegulation::RegulationE.into(),
        memo: "cardholder does not recognise the charge".to_owned(),
        ..Default::default()
    }
}

pub async fn create(
    client: &DisputesClient,
    request: dpb::CreateDisputeRequest,
) -> anyhow::Result<dpb::Dispute> {
    client
        .clone()
        .create_dispute(request)
        .await
        .context("CreateDispute")?
        .into_inner()
        .dispute
        .context("no dispute")
}

/// Latencies of one closed loop.
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

    pub fn p(&self, percentile: f64) -> f64 {
        harness::figures::percentile_ms(&self.latencies, percentile)
    }
}

/// What a call needs: connections, a token per sampled tenant and what the seed holds.
pub struct Target {
    pub size: Size,
    pub base: DateTime<Utc>,
    channels: Vec<Channel>,
    /// (tenant number, `authorization` value).
    tenants: Vec<(u64, tonic::metadata::MetadataValue<tonic::metadata::Ascii>)>,
    /// Per template (the seed's numbering): side, stage, status and which references it has.
    templates: Vec<dpb::Dispute>,
    /// The template event type seeded least often (the `types` filter).
    pub rare_type: String,
    /// Seeded issuer disputes no action was taken on yet (CreateAction's targets).
    action_targets: Vec<(u64, String)>,
}

/// splitmix64: a cheap, well-spread pseudo-random number from a counter.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn with_auth<T>(
    message: T,
    auth: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", auth.clone());
    request
}

/// Sets an `Option<Timestamp>` field of a generated request to `at` (a macro: the
/// Timestamp type is reached through the field, the bench does not depend on prost-types).
macro_rules! set_time {
    ($slot:expr, $at:expr) => {{
        let at: DateTime<Utc> = $at;
        let ts = $slot.get_or_insert_with(Default::default);
        ts.seconds = at.timestamp();
        ts.nanos = at.timestamp_subsec_nanos() as i32;
    }};
}

/// ListDisputes filters (each one the API offers).
#[derive(Debug, Clone, Copy)]
pub enum ListFilter {
    None,
    Charge,
    PaymentIntent,
    TransactionId,
    Status,
    Stage,
    Side,
    Created,
    DueBefore,
}

/// ListEvents reads.
#[derive(Debug, Clone, Copy)]
pub enum EventsRead {
    /// A page after a position at 90–100 % of the tenant's feed.
    Deep,
    /// `types` = one type, after a position at 50–90 % of the feed.
    TypeDeep,
    /// `dispute_id` of one dispute.
    Dispute,
    /// `created_after` / `created_before`: one day in the middle of the seeded span.
    CreatedDay,
}

#[derive(Debug, Clone, Copy)]
pub enum Call {
    GetDispute,
    ListDisputes(ListFilter),
    /// PROVISIONAL_CREDIT with a request id on a seeded issuer dispute of its own.
    CreateAction,
    /// A CHARGEBACK that opens a case of its own.
    RecordNetworkEvent,
    ListEvents(EventsRead),
}

impl Call {
    pub fn name(&self) -> String {
        match self {
            Call::GetDispute => "GetDispute".to_owned(),
            Call::ListDisputes(filter) => format!("ListDisputes {filter:?}"),
            Call::CreateAction => "CreateAction".to_owned(),
            Call::RecordNetworkEvent => "RecordNetworkEvent".to_owned(),
            Call::ListEvents(read) => format!("ListEvents {read:?}"),
        }
    }
}

const SAMPLED_TENANTS: u64 = 64;
const PAGE: i32 = 20;

impl Target {
    pub async fn new(
        stack: &harness::Stack,
        size: Size,
        base: DateTime<Utc>,
        connections: usize,
        action_targets: usize,
    ) -> anyhow::Result<Target> {
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            channels.push(harness::connect(stack.dispute_core_addr).await?);
        }
        let auth = |tenant: &str| -> anyhow::Result<_> {
            let token = service_kit::auth::mint_token(
                &stack.jwt_secret,
                "scale-bench",
                tenant,
                &[
                    "disputes:read",
                    "disputes:write",
                    "disputes:network",
                    "documents:read",
                    "events:read",
                ],
                chrono::Duration::hours(4),
            )?;
            Ok(format!("Bearer {token}").parse::<tonic::metadata::MetadataValue<_>>()?)
        };
        let sampled = SAMPLED_TENANTS.min(size.tenants);
        let mut tenants = Vec::new();
        for i in 0..sampled {
            let t = i * size.tenants / sampled;
            tenants.push((t, auth(&seed::tenant(t))?));
        }

        let mut db =
            <sqlx::PgConnection as sqlx::Connection>::connect(&stack.dispute_db_url).await?;
        let template_ids: Vec<String> = sqlx::query_scalar(
            "select id from disputes where tenant_id = $1 order by created_at, id",
        )
        .bind(TEMPLATE_TENANT)
        .fetch_all(&mut db)
        .await?;
        let template_auth = auth(TEMPLATE_TENANT)?;
        let mut client = DisputeServiceClient::new(channels[0].clone());
        let mut templates = Vec::new();
        for id in template_ids.iter().take(3) {
            let got = client
                .get_dispute(with_auth(
                    dpb::GetDisputeRequest { id: id.clone() },
                    &template_auth,
                ))
                .await
                .context("GetDispute of a template")?
                .into_inner();
            templates.push(got.dispute.context("no dispute")?);
        }
        anyhow::ensure!(
            templates.len() == 3,
            "the seed's three templates are not there"
        );
        let rare_type: String = sqlx::query_scalar(
            "select type from dispute_events where tenant_id = $1
              group by type order by count(*), type limit 1",
        )
        .bind(TEMPLATE_TENANT)
        .fetch_one(&mut db)
        .await?;
        // Seeded issuer disputes still without a provisional credit (a kept database may
        // have been used by an earlier run), picked at random over the sampled tenants.
        let sampled_names: Vec<String> = tenants.iter().map(|(t, _)| seed::tenant(*t)).collect();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "select tenant_id, id from disputes
              where tenant_id = any($1) and side = 'issuer' and id like 'dsp\\_0%'
                and credit_status = (select credit_status from disputes
                                      where tenant_id = $2 and side = 'issuer' limit 1)
              order by md5(id || $3) limit $4",
        )
        .bind(&sampled_names)
        .bind(TEMPLATE_TENANT)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(action_targets as i64)
        .fetch_all(&mut db)
        .await?;
        let action_targets = rows
            .into_iter()
            .filter_map(|(tenant, id)| {
                let index = sampled_names.iter().position(|name| *name == tenant)?;
                Some((index as u64, id))
            })
            .collect();
        Ok(Target {
            size,
            base,
            channels,
            tenants,
            templates,
            rare_type,
            action_targets,
        })
    }

    fn span(&self) -> chrono::Duration {
        chrono::Duration::days(self.size.days as i64)
    }

    /// A sampled tenant for call `i` and a random number for it.
    fn pick(&self, i: usize, salt: u64) -> (usize, u64, u64) {
        let index = i % self.tenants.len();
        (index, self.tenants[index].0, mix((i as u64) << 8 ^ salt))
    }

    /// A random seeded dispute of tenant `t` made from template `tpl`.
    fn dispute_of(&self, t: u64, random: u64, tpl: usize) -> u64 {
        let per_tenant = self.size.per_tenant();
        let groups = (per_tenant / 3).max(1);
        let j = (random % groups) * 3 + tpl as u64;
        j.min(per_tenant - 1) * self.size.tenants + t
    }

    /// A random seeded dispute of tenant `t` from the newer half of the span, made from
    /// template 0.
    fn newer_dispute_of(&self, t: u64, random: u64) -> u64 {
        let per_tenant = self.size.per_tenant();
        let groups = (per_tenant / 3).max(1);
        let j = (groups / 2 + random % (groups - groups / 2).max(1)) * 3;
        j.min(per_tenant - 1) * self.size.tenants + t
    }

    /// Template with a non-empty value of `field`.
    fn template_with(&self, field: impl Fn(&dpb::Dispute) -> bool) -> usize {
        self.templates.iter().position(field).unwrap_or(0)
    }

    /// The id of the event at `position` (1-based) of tenant `t`.
    fn event_at(&self, t: u64, position: u64) -> String {
        let k = self.size.events_per_dispute;
        let (j, jj) = ((position - 1) / k, (position - 1) % k);
        let d = j * self.size.tenants + t;
        seed::event_id(d * k + jj)
    }

    fn events_token(&self, types: &[String], event_id: String) -> String {
        let canonical = format!(
            "events types={:?};dispute={:?};after={:?};before={:?}",
            types, None::<&str>, None::<i64>, None::<i64>
        );
        domain_kit::page_token::encode_page_token(
            &domain_kit::page_token::PageCursor {
                create_time: Utc::now(),
                id: event_id,
            },
            &dispute_core::domain::requests::fingerprint(canonical.as_bytes()),
        )
    }

    pub fn action_targets(&self) -> usize {
        self.action_targets.len()
    }

    /// Call number `i` of a phase (`run` makes the writes' ids unique per phase).
    pub fn call(
        self: &Arc<Self>,
        call: Call,
        i: usize,
        run: &str,
    ) -> BoxFuture<'static, Result<(), String>> {
        let target = self.clone();
        let run = run.to_owned();
        Box::pin(async move {
            target
                .call_inner(call, i, &run)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }

    async fn call_inner(&self, call: Call, i: usize, run: &str) -> anyhow::Result<()> {
        let channel = self.channels[i % self.channels.len()].clone();
        let mut disputes = DisputeServiceClient::new(channel.clone());
        let salt = match call {
            Call::ListDisputes(filter) => filter as u64 + 1,
            Call::ListEvents(read) => read as u64 + 100,
            _ => 1000,
        };
        let (index, t, random) = self.pick(i, salt);
        let auth = &self.tenants[index].1;
        match call {
            Call::GetDispute => {
                let d = self.dispute_of(t, random, 0);
                let got = disputes
                    .get_dispute(with_auth(
                        dpb::GetDisputeRequest {
                            id: seed::dispute_id(d),
                        },
                        auth,
                    ))
                    .await?
                    .into_inner();
                anyhow::ensure!(
                    got.dispute.is_some() && got.documents.len() == 1,
                    "GetDispute: unexpected answer"
                );
            }
            Call::ListDisputes(filter) => {
                let mut request = dpb::ListDisputesRequest {
                    page_size: PAGE,
                    ..Default::default()
                };
                let mut exactly_one = false;
                match filter {
                    ListFilter::None => {}
                    ListFilter::Charge => {
                        let tpl = self.template_with(|d| !d.charge.is_empty());
                        request.charge = format!("ch_{}", self.dispute_of(t, random, tpl));
                        exactly_one = true;
                    }
                    ListFilter::PaymentIntent => {
                        let tpl = self.template_with(|d| !d.payment_intent.is_empty());
                        request.payment_intent = format!("pi_{}", self.dispute_of(t, random, tpl));
                        exactly_one = true;
                    }
                    ListFilter::TransactionId => {
                        let tpl = self.template_with(|d| !d.transaction_id.is_empty());
                        request.transaction_id = format!("itx_{}", self.dispute_of(t, random, tpl));
                        exactly_one = true;
                    }
                    ListFilter::Status => {
                        let tpl = self.template_with(|d| d.side() == dpb::DisputeSide::Issuer);
                        request.status = self.templates[tpl].status;
                    }
                    ListFilter::Stage => {
                        let tpl = self.template_with(|d| d.stage() == dpb::DisputeStage::Inquiry);
                        request.stage = self.templates[tpl].stage;
                    }
                    ListFilter::Side => request.side = dpb::DisputeSide::Issuer.into(),
                    ListFilter::Created => {
                        let from = self.base + self.span() * 2 / 5;
                        set_time!(request.created_after, from);
                        set_time!(request.created_before, from + self.span() / 5);
                    }
                    ListFilter::DueBefore => {
                        // Responses are due about a month after a dispute opens: this is
                        // the older half of the seeded span.
                        set_time!(request.due_before, self.base + self.span() * 3 / 2);
                    }
                }
                let listed = disputes
                    .list_disputes(with_auth(request, auth))
                    .await?
                    .into_inner();
                let expected = if exactly_one { 1 } else { PAGE as usize };
                anyhow::ensure!(
                    listed.disputes.len() == expected,
                    "ListDisputes {filter:?}: {} disputes",
                    listed.disputes.len()
                );
            }
            Call::CreateAction => {
                anyhow::ensure!(
                    !self.action_targets.is_empty(),
                    "no dispute left for CreateAction"
                );
                let (index, id) = &self.action_targets[i % self.action_targets.len()];
                let dispute = disputes
                    .create_action(with_auth(
                        dpb::CreateActionRequest {
                            dispute_id: id.clone(),
                            request_id: format!("scale-{run}-{id}"),
                            action: dpb::DisputeActionType::ProvisionalCredit.into(),
                            ..Default::default()
                        },
                        &self.tenants[*index as usize].1,
                    ))
                    .await?
                    .into_inner()
                    .dispute;
                anyhow::ensure!(
                    dispute.is_some_and(|d| d.credit_status() == dpb::CreditStatus::Provisional),
                    "CreateAction: unexpected answer"
                );
            }
            Call::RecordNetworkEvent => {
                let outcome = disputes
                    .record_network_event(with_auth(
                        dpb::RecordNetworkEventRequest {
                            network: dpb::CardNetwork::Visa.into(),
                            network_case_id: format!("VISA-SCALE-{run}-{i}"),
                            event_id: "evt-1".to_owned(),
                            r#type: dpb::NetworkEventType::Chargeback.into(),
                            new_case: Some(dpb::CreateDisputeRequest {
                                side: dpb::DisputeSide::Merchant.into(),
                                amount: 5_000,
                                currency: "EUR".to_owned(),
                                reason: dpb::DisputeReason::Fraudulent.into(),
                                charge: format!("ch_net_{run}_{i}"),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        auth,
                    ))
                    .await?
                    .into_inner();
                anyhow::ensure!(
                    outcome.created && outcome.applied,
                    "RecordNetworkEvent: unexpected answer"
                );
            }
            Call::ListEvents(read) => {
                let mut events = EventServiceClient::new(channel);
                let feed = self.size.per_tenant() * self.size.events_per_dispute;
                let mut request = dpb::ListEventsRequest {
                    page_size: PAGE,
                    ..Default::default()
                };
                let at = |from: f64, to: f64| {
                    let (lo, hi) = ((feed as f64 * from) as u64, (feed as f64 * to) as u64);
                    (lo + random % (hi - lo).max(1))
                        .clamp(1, feed.saturating_sub(PAGE as u64).max(1))
                };
                let mut at_least = PAGE as usize;
                match read {
                    EventsRead::Deep => {
                        request.page_token = self.events_token(&[], self.event_at(t, at(0.9, 1.0)));
                    }
                    EventsRead::TypeDeep => {
                        request.types = vec![self.rare_type.clone()];
                        request.page_token =
                            self.events_token(&request.types, self.event_at(t, at(0.5, 0.9)));
                        at_least = 1;
                    }
                    EventsRead::Dispute => {
                        // A dispute of the newer half: the purge at the end of each run
                        // removes the oldest day of events (a kept database keeps losing
                        // its oldest days).
                        request.dispute_id = seed::dispute_id(self.newer_dispute_of(t, random));
                        at_least = 1;
                    }
                    EventsRead::CreatedDay => {
                        let from = self.base + self.span() / 2;
                        set_time!(request.created_after, from);
                        set_time!(request.created_before, from + chrono::Duration::days(1));
                    }
                }
                let listed = events
                    .list_events(with_auth(request, auth))
                    .await?
                    .into_inner();
                anyhow::ensure!(
                    listed.events.len() >= at_least.min(PAGE as usize),
                    "ListEvents {read:?}: {} events",
                    listed.events.len()
                );
            }
        }
        Ok(())
    }

    /// `calls` calls of `call` with `concurrency` in flight (after a short warm-up).
    pub async fn closed_loop(
        self: &Arc<Self>,
        call: Call,
        calls: usize,
        concurrency: usize,
    ) -> anyhow::Result<Phase> {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let warm = calls.min(50);
        for i in 0..warm {
            self.call(call, calls + i, &run)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {e}", call.name()))?;
        }
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (target, next, run) = (self.clone(), next.clone(), run.clone());
            tasks.push(tokio::spawn(async move {
                let mut phase = Phase::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= calls {
                        return phase;
                    }
                    let sent = Instant::now();
                    let result = target.call(call, i, &run).await;
                    phase.calls += 1;
                    match result {
                        Ok(()) => phase.latencies.push(sent.elapsed()),
                        Err(error) => {
                            phase.errors += 1;
                            phase.first_error.get_or_insert(error);
                        }
                    }
                }
            }));
        }
        let mut phase = Phase::default();
        for task in tasks {
            let part = task.await?;
            phase.calls += part.calls;
            phase.errors += part.errors;
            phase.first_error = phase.first_error.take().or(part.first_error);
            phase.latencies.extend(part.latencies);
        }
        phase.seconds = started.elapsed().as_secs_f64();
        Ok(phase)
    }

    /// StreamEvents from the beginning on `streams` sampled tenants at once, each read
    /// until it has replayed its tenant's whole feed: (events, seconds).
    pub async fn replay(
        self: &Arc<Self>,
        db_url: &str,
        streams: usize,
    ) -> anyhow::Result<(u64, f64)> {
        let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(db_url).await?;
        let mut expected = Vec::new();
        for index in 0..streams.min(self.tenants.len()) {
            // Spread over the sample, and away from the tenants the writes touched first.
            let index = (index * self.tenants.len() / streams.max(1) + self.tenants.len() / 2)
                % self.tenants.len();
            let count: i64 = sqlx::query_scalar(
                "select count(*) from dispute_events where tenant_id = $1 and position is not null",
            )
            .bind(seed::tenant(self.tenants[index].0))
            .fetch_one(&mut db)
            .await?;
            expected.push((index, count as u64));
        }
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (n, (index, count)) in expected.into_iter().enumerate() {
            let mut events =
                EventServiceClient::new(self.channels[n % self.channels.len()].clone());
            let auth = self.tenants[index].1.clone();
            tasks.push(tokio::spawn(async move {
                let mut stream = events
                    .stream_events(with_auth(
                        dpb::StreamEventsRequest {
                            from_beginning: true,
                            ..Default::default()
                        },
                        &auth,
                    ))
                    .await?
                    .into_inner();
                let mut got = 0u64;
                while got < count {
                    let message = tokio::time::timeout(Duration::from_secs(60), stream.message())
                        .await
                        .context("StreamEvents stalled")??
                        .context("StreamEvents ended")?;
                    if matches!(
                        message.kind,
                        Some(dpb::stream_events_response::Kind::Event(_))
                    ) {
                        got += 1;
                    }
                }
                anyhow::Ok(got)
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await??;
        }
        Ok((total, started.elapsed().as_secs_f64()))
    }
}
