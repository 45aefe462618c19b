//! The reads: GetDispute, ListDisputes, ListDisputeHistory and GetEvidenceRequirements.

use anyhow::Context;
use chrono::Utc;
use domain_kit::ids::DisputeId;
use domain_kit::page_token::PageCursor;
use service_kit::auth::{Caller, Scope};

use super::persist::dispute_not_found;
use super::{App, DisputeDetails, DisputeHistoryPage, DisputePage, DisputeView};
use crate::domain::evidence::{self, EvidenceGuidance};
use crate::domain::requests::{ListDisputeHistory, ListDisputes};
use crate::domain::{Dispute, DisputeError};
use crate::store::{disputes, history};

impl App {
    /// A dispute of the caller's tenant and its documents (read from document-store on the
    /// caller's behalf); without `documents:read` the dispute alone, marked as such.
    pub async fn get_dispute(
        &self,
        caller: &Caller,
        id: &DisputeId,
    ) -> Result<DisputeDetails, DisputeError> {
        let documents_omitted = !caller.has(Scope::DocumentsRead);
        // The two reads overlap: the document-store hop no longer waits for the database.
        // document-store scopes its answer to the caller's tenant, so asking before the
        // dispute is known to be the tenant's reveals nothing; the dispute's answer (NOT_FOUND
        // first) decides.
        let documents = async {
            if documents_omitted {
                Ok(Vec::new())
            } else {
                self.documents.list_dispute_documents(caller, id).await
            }
        };
        let (dispute, documents) =
            tokio::join!(self.find_dispute(&caller.tenant_id, id), documents);
        let dispute = dispute?;
        let documents = documents?;
        Ok(DisputeDetails {
            view: DisputeView::at(dispute, Utc::now()),
            documents,
            documents_omitted,
        })
    }

    /// One page of the tenant's disputes, newest first.
    pub async fn list_disputes(
        &self,
        tenant_id: &str,
        request: &ListDisputes,
    ) -> Result<DisputePage, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let page = &request.page;
        let rows = disputes::list_disputes(
            &mut conn,
            tenant_id,
            &request.filter,
            page.after.as_ref(),
            page.fetch_limit(),
        )
        .await?;
        let (rows, next_page_token) = page.cut(rows, |last| PageCursor {
            create_time: last.create_time,
            id: last.id.clone(),
        });
        let now = Utc::now();
        Ok(DisputePage {
            disputes: rows
                .into_iter()
                .map(|dispute| DisputeView::at(dispute, now))
                .collect(),
            next_page_token,
        })
    }

    /// One page of a dispute's history, oldest first, with the history's length. Pages
    /// continue after the last entry returned, so entries appended meanwhile show up at the
    /// end and none is skipped or repeated.
    pub async fn list_dispute_history(
        &self,
        tenant_id: &str,
        request: &ListDisputeHistory,
    ) -> Result<DisputeHistoryPage, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let id = request.dispute_id.as_str();
        let total = history::count_history(&mut conn, tenant_id, id)
            .await?
            .ok_or_else(|| dispute_not_found(id))?;
        let page = &request.page;
        let rows = history::list_history_page(
            &mut conn,
            tenant_id,
            id,
            page.after.as_ref().map(|cursor| cursor.id.as_str()),
            page.fetch_limit(),
        )
        .await?;
        let (entries, next_page_token) = page.cut(rows, |last| PageCursor {
            create_time: last.create_time,
            id: last.id.clone(),
        });
        Ok(DisputeHistoryPage {
            entries,
            total,
            next_page_token,
        })
    }

    /// The evidence guidance for a dispute and when its response is due.
    pub async fn evidence_requirements(
        &self,
        tenant_id: &str,
        id: &DisputeId,
    ) -> Result<(EvidenceGuidance, Option<chrono::DateTime<Utc>>), DisputeError> {
        let dispute = self.find_dispute(tenant_id, id).await?;
        let guidance = evidence::guidance(dispute.reason, dispute.network, &dispute.evidence);
        Ok((guidance, dispute.due_time))
    }

    async fn find_dispute(&self, tenant_id: &str, id: &DisputeId) -> Result<Dispute, DisputeError> {
        let mut conn = self.pool.acquire().await.context("acquire")?;
        disputes::find_dispute(&mut conn, tenant_id, id.as_str())
            .await?
            .ok_or_else(|| dispute_not_found(id.as_str()))
    }
}
