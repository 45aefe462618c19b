//! What the bench creates before measuring.

use std::net::SocketAddr;

use anyhow::{Context, ensure};
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as docpb;
use harness::DisputesClient;

use crate::{Clients, LISTED_DISPUTES};

/// What the bench created before measuring.
pub struct Seed {
    /// The dispute GetDispute reads.
    pub get_id: String,
    pub history: usize,
    pub ledger: usize,
    /// The 20 disputes ListDisputes answers (for pgbench).
    pub listed_ids: Vec<String>,
    /// An issuer dispute in INQUIRY (pgbench copies it for its CreateAction transaction).
    pub issuer_template_id: String,
    /// Bytes of an encoded dispute (the size of the event payload and remembered response).
    pub snapshot_bytes: usize,
}

fn merchant_chargeback(charge: &str) -> dpb::CreateDisputeRequest {
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
        date_customer_reported: chrono::Utc::now()
            .date_naive()
            .format("%Y-%m-%d")
            .to_string(),
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

pub async fn seed(core: &Clients, documents_addr: SocketAddr, token: &str) -> anyhow::Result<Seed> {
    let client = &core.single;
    for i in 0..LISTED_DISPUTES {
        create(client, merchant_chargeback(&format!("ch_list_{i}"))).await?;
    }
    let issuer = create(client, issuer_inquiry("txn_template")).await?;
    let dispute = create(client, merchant_chargeback("ch_get")).await?;
    // A second history entry: staged evidence.
    client
        .clone()
        .update_dispute(dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                shipping_tracking_number: Some("1Z999AA10123456784".to_owned()),
                shipping_carrier: Some("UPS".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .context("UpdateDispute")?;
    let mut documents = harness::documents_client(documents_addr, Some(token)).await?;
    for name in ["receipt.pdf", "tracking.pdf"] {
        let messages = vec![
            docpb::UploadDocumentRequest {
                payload: Some(docpb::upload_document_request::Payload::Header(
                    docpb::DocumentHeader {
                        filename: name.to_owned(),
                        content_type: "application/pdf".to_owned(),
                        dispute_id: dispute.id.clone(),
                        ..Default::default()
                    },
                )),
            },
            docpb::UploadDocumentRequest {
                payload: Some(docpb::upload_document_request::Payload::Chunk(
                    bytes::Bytes::from_static(b"%PDF-1.7\n%%EOF\n"),
                )),
            },
        ];
        documents
            .upload_document(tokio_stream::iter(messages))
            .await
            .with_context(|| format!("upload {name}"))?;
    }
    let got = client
        .clone()
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await?
        .into_inner();
    ensure!(
        got.documents.len() == 2,
        "GetDispute shows {} documents",
        got.documents.len()
    );
    let shown = got.dispute.context("no dispute")?;
    let listed = client
        .clone()
        .list_disputes(dpb::ListDisputesRequest {
            page_size: 20,
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(listed.disputes.len() == 20);
    Ok(Seed {
        get_id: dispute.id,
        history: shown.action_history.len(),
        ledger: shown.balance_transactions.len(),
        listed_ids: listed.disputes.iter().map(|d| d.id.clone()).collect(),
        issuer_template_id: issuer.id,
        snapshot_bytes: prost::Message::encoded_len(&shown),
    })
}
