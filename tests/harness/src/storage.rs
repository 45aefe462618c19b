//! What a dispute costs in storage: a full merchant lifecycle with the whole evidence text
//! budget used by incompressible text, and the bytes its rows take per table. The
//! end-to-end test (`storage_growth.rs`) bounds the figure; `scripts/bench-storage` prints
//! it.

use std::collections::BTreeMap;

use anyhow::Context;
use disputes_proto::disputes_v1 as dpb;
use dpb::NetworkEventType as Net;

use crate::DisputesClient;

/// Characters of evidence text the lifecycle stores: the whole budget.
pub const EVIDENCE_CHARS: usize = 150_000;

/// The customer name the lifecycle's late evidence update sets (counts in the budget).
const CUSTOMER_NAME: &str = "Jane Quincy Doe-Smith";

/// `chars` random printable ASCII characters (one byte each): text no compression shrinks
/// much (about 6.5 bits of entropy per byte). The same `seed` gives the same text.
pub fn incompressible_text(chars: usize, seed: u64) -> String {
    // xorshift64*: enough for text that does not compress; no dependency needed.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..chars)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let value = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33;
            char::from(b' ' + (value % 95) as u8)
        })
        .collect()
}

/// A merchant dispute taken through its lifecycle: what was sent, for replays and checks.
pub struct Lifecycle {
    pub dispute_id: String,
    pub network_case_id: String,
    /// The evidence text fields set, by field.
    pub texts: BTreeMap<&'static str, String>,
    /// Every UpdateDispute sent (each with a request id), with the response it got.
    pub updates: Vec<(dpb::UpdateDisputeRequest, dpb::Dispute)>,
    /// The dispute after the last change.
    pub last: dpb::Dispute,
}

impl Lifecycle {
    /// Request ids of the remembered responses.
    pub fn request_ids(&self) -> Vec<String> {
        self.updates
            .iter()
            .map(|(request, _)| request.request_id.clone())
            .collect()
    }
}

async fn update(
    client: &mut DisputesClient,
    request: dpb::UpdateDisputeRequest,
) -> anyhow::Result<dpb::Dispute> {
    client
        .update_dispute(request)
        .await
        .context("UpdateDispute")?
        .into_inner()
        .dispute
        .context("UpdateDispute answered no dispute")
}

async fn record(
    client: &mut DisputesClient,
    case: &str,
    event_id: &str,
    kind: Net,
    new_case: Option<dpb::CreateDisputeRequest>,
) -> anyhow::Result<dpb::Dispute> {
    client
        .record_network_event(dpb::RecordNetworkEventRequest {
            network: dpb::CardNetwork::Visa.into(),
            network_case_id: case.to_owned(),
            event_id: event_id.to_owned(),
            r#type: kind.into(),
            new_case,
            ..Default::default()
        })
        .await
        .context("RecordNetworkEvent")?
        .into_inner()
        .dispute
        .context("RecordNetworkEvent answered no dispute")
}

/// Opens a merchant chargeback through the network (`case`), then makes ten changes: the
/// evidence staged ([`EVIDENCE_CHARS`] characters of incompressible text in two fields,
/// less the customer name set later), six metadata updates, an evidence update (the
/// customer name), the submission, and the network's outcome (won). Every UpdateDispute
/// carries a request id, so each response is remembered.
pub async fn merchant_lifecycle(
    client: &mut DisputesClient,
    case: &str,
    seed: u64,
) -> anyhow::Result<Lifecycle> {
    let opened = record(
        client,
        case,
        &format!("{case}-cb"),
        Net::Chargeback,
        Some(dpb::CreateDisputeRequest {
            side: dpb::DisputeSide::Merchant.into(),
            amount: 12_500,
            currency: "usd".to_owned(),
            charge: format!("ch_{case}"),
            reason: dpb::DisputeReason::ProductNotReceived.into(),
            ..Default::default()
        }),
    )
    .await?;
    let id = opened.id.clone();
    let explanation_chars = 15_000;
    let texts = BTreeMap::from([
        (
            "uncategorized_text",
            incompressible_text(
                EVIDENCE_CHARS - explanation_chars - CUSTOMER_NAME.len(),
                seed,
            ),
        ),
        (
            "refund_refusal_explanation",
            incompressible_text(explanation_chars, seed + 1),
        ),
        ("customer_name", CUSTOMER_NAME.to_owned()),
    ]);
    let request = |n: usize| dpb::UpdateDisputeRequest {
        id: id.clone(),
        request_id: format!("{case}-update-{n}"),
        ..Default::default()
    };
    let mut requests = vec![dpb::UpdateDisputeRequest {
        evidence: Some(dpb::EvidenceUpdate {
            uncategorized_text: Some(texts["uncategorized_text"].clone()),
            refund_refusal_explanation: Some(texts["refund_refusal_explanation"].clone()),
            ..Default::default()
        }),
        ..request(1)
    }];
    for n in 2..=7 {
        requests.push(dpb::UpdateDisputeRequest {
            metadata: BTreeMap::from([(format!("note_{n}"), format!("change {n}"))]),
            ..request(n)
        });
    }
    requests.push(dpb::UpdateDisputeRequest {
        evidence: Some(dpb::EvidenceUpdate {
            customer_name: Some(CUSTOMER_NAME.to_owned()),
            ..Default::default()
        }),
        ..request(8)
    });
    requests.push(dpb::UpdateDisputeRequest {
        submit: true,
        ..request(9)
    });
    let mut updates = Vec::new();
    for request in requests {
        let answer = update(client, request.clone()).await?;
        updates.push((request, answer));
    }
    let last = record(client, case, &format!("{case}-won"), Net::Won, None).await?;
    Ok(Lifecycle {
        dispute_id: id,
        network_case_id: case.to_owned(),
        texts,
        updates,
        last,
    })
}

/// Bytes one dispute's rows take in one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableBytes {
    pub table: &'static str,
    pub rows: i64,
    /// `pg_column_size` of each whole row, TOASTed values included (as stored: compressed
    /// where PostgreSQL compressed them).
    pub bytes: i64,
}

/// The bytes the rows of one dispute take, per table: the dispute, its history, ledger,
/// events, remembered responses (`request_ids`) and evidence texts. Dead row versions not
/// yet vacuumed are not counted (they are reclaimed).
pub async fn dispute_bytes(
    pool: &sqlx::PgPool,
    tenant_id: &str,
    dispute_id: &str,
    request_ids: &[String],
) -> anyhow::Result<Vec<TableBytes>> {
    let tables: [(&'static str, &str); 6] = [
        ("disputes", "tenant_id = $1 and id = $2"),
        ("dispute_actions", "tenant_id = $1 and dispute_id = $2"),
        ("balance_transactions", "tenant_id = $1 and dispute_id = $2"),
        ("dispute_events", "tenant_id = $1 and dispute_id = $2"),
        (
            "idempotency_keys",
            "tenant_id = $1 and ($2 <> '') and request_id = any($3)",
        ),
        ("evidence_texts", "tenant_id = $1 and dispute_id = $2"),
    ];
    let mut sizes = Vec::new();
    for (table, filter) in tables {
        let (rows, bytes): (i64, i64) = sqlx::query_as(&format!(
            "select count(*), coalesce(sum(pg_column_size(t.*)), 0)::bigint
               from {table} t where {filter}"
        ))
        .bind(tenant_id)
        .bind(dispute_id)
        .bind(request_ids)
        .fetch_one(pool)
        .await
        .with_context(|| format!("measure {table}"))?;
        sizes.push(TableBytes { table, rows, bytes });
    }
    Ok(sizes)
}

/// The total of `sizes`.
pub fn total_bytes(sizes: &[TableBytes]) -> i64 {
    sizes.iter().map(|size| size.bytes).sum()
}
