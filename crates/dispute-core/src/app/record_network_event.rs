//! RecordNetworkEvent: applies what the card network reports, idempotently on
//! (network, case id, event id); a case new to us opens its dispute.

use anyhow::Context;
use chrono::Utc;
use domain_kit::violation::Violation;
use service_kit::auth::Caller;

use super::evidence_documents::SubmissionLock;
use super::persist::{Claim, case_facts, check_disputed_total, load_for_update, reload};
use super::{App, DisputeView, NetworkEventOutcome};
use crate::domain::lifecycle::{self, Opening};
use crate::domain::requests::RecordNetworkEvent;
use crate::domain::{DisputeError, Trigger};
use crate::store::network;

impl App {
    /// Applies a network event; opens the dispute for a new case. Says whether the dispute
    /// was created and whether the event changed anything.
    pub async fn record_network_event(
        &self,
        caller: &Caller,
        event: RecordNetworkEvent,
    ) -> Result<NetworkEventOutcome, DisputeError> {
        // Documents that come with an event (a representment's) belong to the same tenant,
        // and are locked like submitted evidence (docs/decisions.md, "Locking evidence
        // documents"): before the transaction, consumed if the event is applied.
        self.check_action_documents(caller, &event.event.document_ids)
            .await?;
        let lock = if event.event.document_ids.is_empty() {
            None
        } else {
            let dispute_id = {
                let mut conn = self.pool.acquire().await.context("acquire")?;
                network::find_dispute_id_by_case(
                    &mut conn,
                    caller.tenant_id.as_str(),
                    event.network,
                    event.network_case_id.as_str(),
                )
                .await?
            };
            self.lock_filed_documents(
                caller,
                dispute_id.as_deref().unwrap_or(""),
                0,
                event.event.document_ids.clone(),
            )
            .await?
        };
        let outcome = self
            .record_network_event_locked(caller, event, lock.as_ref())
            .await;
        self.release_unused_lock(caller, lock).await;
        outcome
    }

    async fn record_network_event_locked(
        &self,
        caller: &Caller,
        event: RecordNetworkEvent,
        lock: Option<&SubmissionLock>,
    ) -> Result<NetworkEventOutcome, DisputeError> {
        let tenant_id = caller.tenant_id.as_str();
        let case_id = event.network_case_id.as_str();
        let mut tx = service_kit::database::begin(&self.pool)
            .await
            .context("begin")?;
        network::lock_network_case(&mut tx, tenant_id, event.network, case_id).await?;
        let seen = network::find_network_event(
            &mut tx,
            tenant_id,
            event.network,
            case_id,
            &event.event_id,
        )
        .await?;
        if let Some((dispute_id, _)) = seen {
            // Seen before: nothing to write, the transaction just ends.
            let dispute = reload(&mut tx, tenant_id, &dispute_id).await?;
            return Ok(NetworkEventOutcome {
                view: DisputeView::at(dispute, Utc::now()),
                created: false,
                applied: false,
            });
        }
        let existing =
            network::find_dispute_id_by_case(&mut tx, tenant_id, event.network, case_id).await?;
        // The clock is read once the dispute (or its charge) is locked.
        let (dispute, created, applied, now) = match existing {
            Some(dispute_id) => {
                let dispute = load_for_update(&mut tx, tenant_id, &dispute_id).await?;
                let now = Utc::now();
                let decision = lifecycle::decide(
                    &dispute.lifecycle_state(),
                    &Trigger::Network(event.event.clone()),
                    &self.policy,
                    now,
                )?;
                match decision.transition() {
                    Some(mut transition) => {
                        if let Some(lock) = lock {
                            self.consume_lock(&mut tx, tenant_id, lock, "filed", &mut transition)
                                .await?;
                        }
                        let updated = self
                            .persist_transition(&mut tx, &dispute, &transition, now)
                            .await?;
                        (updated, false, true, now)
                    }
                    None => (dispute, false, false, now),
                }
            }
            None => {
                let Some(mut new) = event.new_case else {
                    return Err(DisputeError::Validation(vec![Violation::new(
                        "new_case",
                        "is required: the case is new to us, so the dispute must be opened",
                    )]));
                };
                new.network = event.network;
                new.network_case_id = Some(event.network_case_id.clone());
                if let Some(code) = &event.event.network_reason_code {
                    // the event's reason code is the case's
                    new.network_reason_code = Some(code.clone());
                }
                check_disputed_total(&mut tx, tenant_id, &Claim::of_new(&new)).await?;
                let now = Utc::now();
                let mut opened = lifecycle::open_dispute(
                    case_facts(&new),
                    new.amount,
                    &Opening::Network(event.event.clone()),
                    &self.policy,
                    now,
                )?;
                if let Some(lock) = lock {
                    self.consume_lock(&mut tx, tenant_id, lock, "filed", &mut opened)
                        .await?;
                }
                let dispute = self
                    .insert_opened_dispute(&mut tx, tenant_id, &new, &opened, now)
                    .await?;
                (dispute, true, true, now)
            }
        };
        network::insert_network_event(
            &mut tx,
            tenant_id,
            event.network,
            case_id,
            &event.event_id,
            &dispute.id,
            event.event.kind.as_str(),
            applied,
        )
        .await?;
        tx.commit().await.context("commit")?;
        self.recorded.recorded();
        Ok(NetworkEventOutcome {
            view: DisputeView::at(dispute, now),
            created,
            applied,
        })
    }
}
