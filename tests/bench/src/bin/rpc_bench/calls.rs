//! The measured calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use disputes_proto::disputes_v1 as dpb;
use harness::DisputesClient;

use crate::Clients;
use crate::seed::{Seed, create, issuer_inquiry};

/// One measured call.
#[derive(Clone)]
pub enum Call {
    GetDispute(Arc<Seed>),
    ListDisputes,
    /// PROVISIONAL_CREDIT with a request id, each call on a dispute of its own.
    CreateAction,
    /// A CHARGEBACK that opens a case of its own.
    RecordNetworkEvent,
}

/// Counts runs, so each phase gets fresh request ids, cases and charges.
static RUN: AtomicUsize = AtomicUsize::new(0);

/// dispute-core's database, for refreshing its statistics after seeding.
pub static DISPUTES_URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Refreshes the planner's statistics after a burst of seeding. A database in service is
/// analyzed by autovacuum as it grows; this one grew from empty seconds ago, and plans cached
/// by the service's connections would otherwise be made for tables of a few rows.
pub async fn analyze_disputes_database() -> anyhow::Result<()> {
    let Some(url) = DISPUTES_URL.get() else {
        return Ok(());
    };
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url).await?;
    sqlx::query("analyze").execute(&mut conn).await?;
    Ok(())
}

impl Call {
    /// Whether every call opens a new dispute (and case), so the tables grow with the phase.
    pub fn opens_disputes(&self) -> bool {
        matches!(self, Call::RecordNetworkEvent)
    }

    /// What the phase's `calls` calls need: a fresh issuer dispute per call for
    /// CreateAction (made now, not timed), nothing for the others.
    pub async fn prepare(&self, core: &Clients, calls: usize) -> anyhow::Result<Arc<Vec<String>>> {
        let run = RUN.fetch_add(1, Ordering::Relaxed);
        match self {
            Call::CreateAction => {
                let next = Arc::new(AtomicUsize::new(0));
                let ids = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(calls)));
                let mut tasks = Vec::new();
                for worker in 0..16 {
                    let client = core.pool[worker % core.pool.len()].clone();
                    let (next, ids) = (next.clone(), ids.clone());
                    tasks.push(tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= calls {
                                return anyhow::Ok(());
                            }
                            let dispute =
                                create(&client, issuer_inquiry(&format!("txn_{run}_{i}"))).await?;
                            ids.lock().await.push(dispute.id);
                        }
                    }));
                }
                for task in tasks {
                    task.await??;
                }
                let ids = std::mem::take(&mut *ids.lock().await);
                analyze_disputes_database().await?;
                Ok(Arc::new(ids))
            }
            _ => Ok(Arc::new(vec![format!("{run}")])),
        }
    }

    /// Call number `i` of a phase prepared with `prepared`.
    pub async fn call(
        &self,
        client: &mut DisputesClient,
        prepared: &[String],
        i: usize,
    ) -> Result<(), tonic::Status> {
        match self {
            Call::GetDispute(seed) => {
                let got = client
                    .get_dispute(dpb::GetDisputeRequest {
                        id: seed.get_id.clone(),
                    })
                    .await?
                    .into_inner();
                check(
                    got.documents.len() == 2 && got.dispute.is_some(),
                    "GetDispute",
                )
            }
            Call::ListDisputes => {
                let listed = client
                    .list_disputes(dpb::ListDisputesRequest {
                        page_size: 20,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                check(listed.disputes.len() == 20, "ListDisputes")
            }
            Call::CreateAction => {
                let id = prepared
                    .get(i)
                    .ok_or_else(|| tonic::Status::out_of_range("no prepared dispute left"))?;
                let dispute = client
                    .create_action(dpb::CreateActionRequest {
                        dispute_id: id.clone(),
                        request_id: format!("bench-{id}"),
                        action: dpb::DisputeActionType::ProvisionalCredit.into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner()
                    .dispute;
                check(
                    dispute.is_some_and(|d| d.credit_status() == dpb::CreditStatus::Provisional),
                    "CreateAction",
                )
            }
            Call::RecordNetworkEvent => {
                let run = prepared.first().map_or("0", String::as_str);
                let outcome = client
                    .record_network_event(dpb::RecordNetworkEventRequest {
                        network: dpb::CardNetwork::Visa.into(),
                        network_case_id: format!("VISA-BENCH-{run}-{i}"),
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
                    })
                    .await?
                    .into_inner();
                check(outcome.created && outcome.applied, "RecordNetworkEvent")
            }
        }
    }
}

pub fn check(ok: bool, what: &str) -> Result<(), tonic::Status> {
    if ok {
        Ok(())
    } else {
        Err(tonic::Status::data_loss(format!(
            "{what}: unexpected answer"
        )))
    }
}
