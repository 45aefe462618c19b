//! CreateDispute: opens a dispute on the tenant's side.

use chrono::Utc;

use super::mutation::Start;
use super::persist::{Claim, case_facts, check_disputed_total};
use super::{App, DisputeView, IdempotencyKey, Outcome};
use crate::domain::lifecycle::{self, Opening};
use crate::domain::{DisputeError, NewDispute};

const CREATE_DISPUTE: &str = "CreateDispute";

impl App {
    /// Opens a dispute. A retry with the same `request_id` gets the first answer back.
    pub async fn create_dispute(
        &self,
        tenant_id: &str,
        new: NewDispute,
        idempotency: Option<IdempotencyKey>,
    ) -> Result<Outcome<DisputeView>, DisputeError> {
        let mut mutation = match self
            .begin_mutation(tenant_id, CREATE_DISPUTE, idempotency)
            .await?
        {
            Start::Fresh(mutation) => mutation,
            Start::Replay(response) => return Ok(Outcome::Replayed(response)),
        };
        let now = Utc::now();
        let result = async {
            check_disputed_total(mutation.conn(), tenant_id, &Claim::of_new(&new)).await?;
            let opening = Opening::Tenant {
                stage: new.stage,
                due_time: new.due_time,
            };
            let opened =
                lifecycle::open_dispute(case_facts(&new), new.amount, &opening, &self.policy, now)?;
            self.insert_opened_dispute(mutation.conn(), tenant_id, &new, &opened, now)
                .await
        }
        .await;
        let outcome = mutation.settle(result, now).await?;
        if let Outcome::Done(view) = &outcome {
            let dispute = &view.dispute;
            tracing::info!(dispute_id = %dispute.id, side = %dispute.side, stage = %dispute.stage, "dispute created");
        }
        Ok(outcome)
    }
}
