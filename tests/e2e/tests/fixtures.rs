//! Shared test data and helpers.

use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use harness::{DocumentsClient, Stack, StackOptions};
use sha2::{Digest, Sha256};
use tonic::Code;
use tonic_types::StatusExt;

/// The whole stack with default options (see `stack_with`).
pub async fn stack() -> Stack {
    stack_with(StackOptions::default()).await
}

/// The whole stack on fresh databases, with test telemetry installed. End it with
/// `stack.stop().await`; a test that panics first still leaves no database behind.
pub async fn stack_with(options: StackOptions) -> Stack {
    harness::init_test_telemetry(None);
    Stack::start(options).await.unwrap()
}

/// document-store's upload pipeline on the stack's database and bucket, built in the test to
/// run its abandoned-upload cleaner on demand (tiny limits: it is not for uploads).
pub fn upload_cleaner(stack: &Stack, pool: sqlx::PgPool) -> document_store::app::Documents {
    document_store::app::Documents::new(
        pool,
        stack.object_store(),
        document_store::app::UploadSettings {
            max_bytes: 1024,
            part_size: document_store::config::MIN_PART_SIZE,
            max_parts_in_flight: 1,
            chunk_idle_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            upload_deadline: Duration::from_secs(60),
            max_concurrent_uploads: 1,
        },
    )
}

/// The ids of document-store's pending (not yet available) document rows.
pub async fn pending_document_ids(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar("select id from documents where state = 'pending' order by id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The fee withdrawn with every merchant-side chargeback: the one the stack configures
/// dispute-core with.
pub const FEE: i64 = harness::DEFAULT_DISPUTE_FEE;

/// The smallest file that sniffs as an accepted type: a JPEG start-of-image marker.
pub const SMALLEST_JPEG: [u8; 3] = [0xFF, 0xD8, 0xFF];
pub const MIB: usize = 1024 * 1024;

/// A deterministic PDF-looking file of exactly `size` bytes (`size` >= 5).
pub fn pdf_of_size(size: usize) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    bytes.truncate(size);
    let mut state: u32 = size as u32 ^ 0x9E37_79B9;
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes.push((state & 0xFF) as u8);
    }
    bytes
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn header(filename: &str, content_type: &str) -> pb::DocumentHeader {
    pb::DocumentHeader {
        filename: filename.to_owned(),
        content_type: content_type.to_owned(),
        ..Default::default()
    }
}

/// The messages of an upload: the header, then `bytes` in chunks of `chunk` bytes.
pub fn upload_messages(
    header: pb::DocumentHeader,
    bytes: &[u8],
    chunk: usize,
) -> Vec<pb::UploadDocumentRequest> {
    let mut messages = vec![pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Header(header)),
    }];
    for part in bytes.chunks(chunk) {
        messages.push(pb::UploadDocumentRequest {
            payload: Some(pb::upload_document_request::Payload::Chunk(
                bytes::Bytes::copy_from_slice(part),
            )),
        });
    }
    messages
}

pub async fn upload(
    client: &mut DocumentsClient,
    header: pb::DocumentHeader,
    bytes: &[u8],
) -> Result<pb::Document, tonic::Status> {
    let messages = upload_messages(header, bytes, MIB);
    client
        .upload_document(tokio_stream::iter(messages))
        .await
        .map(|r| r.into_inner().document.unwrap())
}

pub async fn download(
    client: &mut DocumentsClient,
    id: &str,
    offset: i64,
    length: i64,
) -> Result<(Option<pb::Document>, Vec<u8>), tonic::Status> {
    let mut stream = client
        .download_document(pb::DownloadDocumentRequest {
            id: id.to_owned(),
            offset,
            length,
        })
        .await?
        .into_inner();
    let mut document = None;
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await? {
        if message.document.is_some() {
            assert!(document.is_none(), "metadata only in the first message");
            document = message.document;
        }
        bytes.extend_from_slice(&message.chunk);
    }
    Ok((document, bytes))
}

/// Field paths of the BadRequest violations of an INVALID_ARGUMENT status.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// `violated_fields`, sorted: for requests with several bad fields.
pub fn sorted_violated_fields(status: &tonic::Status) -> Vec<String> {
    let mut fields = violated_fields(status);
    fields.sort();
    fields
}

pub fn error_reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|i| i.reason.clone())
        .unwrap_or_default()
}

/// Number of document rows of any state in document-store's database.
pub async fn document_rows(stack: &Stack) -> i64 {
    let pool = sqlx::PgPool::connect(&stack.document_db_url).await.unwrap();
    let count = sqlx::query_scalar("select count(*) from documents")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    count
}

/// Objects the S3 server lists in the bucket.
pub async fn listed_objects(stack: &Stack) -> Vec<String> {
    let client = stack
        .s3
        .client(document_store::store::s3::ChecksumMode::WhenRequired);
    let listed = client
        .list_objects_v2()
        .bucket(&stack.bucket)
        .send()
        .await
        .unwrap();
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Asserts that neither S3 (listing and files on disk: objects, parts, upload records) nor
/// the database holds anything beyond `baseline_files`; waits up to 10 s because cleanup of a
/// cancelled upload runs after the client is gone.
pub async fn assert_nothing_left(stack: &Stack, baseline_files: &[std::path::PathBuf]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let files = stack.s3.files();
        let objects = listed_objects(stack).await;
        let rows = document_rows(stack).await;
        if files == baseline_files && objects.is_empty() && rows == 0 {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "leftovers: files {:?} (baseline {:?}), objects {objects:?}, rows {rows}",
                files, baseline_files
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn merchant_dispute(request_id: &str, charge: &str) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        request_id: request_id.to_owned(),
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

pub fn issuer_dispute(transaction_id: &str) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        side: dpb::DisputeSide::Issuer.into(),
        amount: 4_200,
        currency: "USD".to_owned(),
        transaction_id: transaction_id.to_owned(),
        network: dpb::CardNetwork::Mastercard.into(),
        reason: dpb::DisputeReason::Fraudulent.into(),
        date_customer_reported: "2026-11-20".to_owned(),
        applicable_regulation: dpb::ApplicableRegulation::RegulationE.into(),
        memo: "cardholder does not recognise the charge".to_owned(),
        ..Default::default()
    }
}

/// Generates one test per aws-sdk-s3 checksum mode from `async fn name(mode)`.
#[macro_export]
macro_rules! in_both_checksum_modes {
    ($($name:ident),+ $(,)?) => {
        $(
            pub mod $name {
                use document_store::store::s3::ChecksumMode;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn when_supported() {
                    super::$name(ChecksumMode::WhenSupported).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn when_required() {
                    super::$name(ChecksumMode::WhenRequired).await;
                }
            }
        )+
    };
}

// ---------------------------------------------------------------------------------------------
// Lifecycle helpers: disputes, actions and network events

/// A protobuf timestamp of an instant.
pub use service_kit::time::timestamp;

/// Now plus `millis` (negative: in the past), as a protobuf timestamp.
pub fn in_millis(millis: i64) -> prost_types::Timestamp {
    timestamp(chrono::Utc::now() + chrono::Duration::milliseconds(millis))
}

/// Today (UTC) as "YYYY-MM-DD": issuer-side disputes reported today keep every Reg E window
/// open whatever day the tests run.
pub fn today() -> String {
    chrono::Utc::now()
        .date_naive()
        .format("%Y-%m-%d")
        .to_string()
}

pub async fn create(
    client: &mut harness::DisputesClient,
    request: dpb::CreateDisputeRequest,
) -> dpb::Dispute {
    client
        .create_dispute(request)
        .await
        .unwrap()
        .into_inner()
        .dispute
        .unwrap()
}

pub async fn get_dispute(client: &mut harness::DisputesClient, id: &str) -> dpb::Dispute {
    client
        .get_dispute(dpb::GetDisputeRequest { id: id.to_owned() })
        .await
        .unwrap()
        .into_inner()
        .dispute
        .unwrap()
}

pub fn action_request(
    dispute_id: &str,
    action: dpb::DisputeActionType,
) -> dpb::CreateActionRequest {
    dpb::CreateActionRequest {
        dispute_id: dispute_id.to_owned(),
        action: action.into(),
        ..Default::default()
    }
}

/// CreateAction: the dispute after the action.
pub async fn apply_action(
    client: &mut harness::DisputesClient,
    request: dpb::CreateActionRequest,
) -> Result<dpb::Dispute, tonic::Status> {
    client
        .create_action(request)
        .await
        .map(|r| r.into_inner().dispute.unwrap())
}

/// CreateAction with nothing but the action.
pub async fn act(
    client: &mut harness::DisputesClient,
    dispute_id: &str,
    action: dpb::DisputeActionType,
) -> Result<dpb::Dispute, tonic::Status> {
    apply_action(client, action_request(dispute_id, action)).await
}

/// UpdateDispute that only submits the staged evidence.
pub fn submit_request(dispute_id: &str) -> dpb::UpdateDisputeRequest {
    dpb::UpdateDisputeRequest {
        id: dispute_id.to_owned(),
        submit: true,
        ..Default::default()
    }
}

/// UpdateDispute that must succeed: the dispute after the update.
pub async fn update(
    client: &mut harness::DisputesClient,
    request: dpb::UpdateDisputeRequest,
) -> dpb::Dispute {
    client
        .update_dispute(request)
        .await
        .unwrap()
        .into_inner()
        .dispute
        .unwrap()
}

pub async fn submit(client: &mut harness::DisputesClient, dispute_id: &str) -> dpb::Dispute {
    update(client, submit_request(dispute_id)).await
}

/// A network event without a new case.
pub fn network_event(
    network: dpb::CardNetwork,
    case_id: &str,
    event_id: &str,
    kind: dpb::NetworkEventType,
) -> dpb::RecordNetworkEventRequest {
    dpb::RecordNetworkEventRequest {
        network: network.into(),
        network_case_id: case_id.to_owned(),
        event_id: event_id.to_owned(),
        r#type: kind.into(),
        ..Default::default()
    }
}

/// The dispute a network event opens for a new merchant-side case.
pub fn merchant_case(amount: i64, charge: &str) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        side: dpb::DisputeSide::Merchant.into(),
        amount,
        currency: "usd".to_owned(),
        charge: charge.to_owned(),
        reason: dpb::DisputeReason::Fraudulent.into(),
        ..Default::default()
    }
}

pub async fn record(
    client: &mut harness::DisputesClient,
    request: dpb::RecordNetworkEventRequest,
) -> Result<dpb::RecordNetworkEventResponse, tonic::Status> {
    client
        .record_network_event(request)
        .await
        .map(|r| r.into_inner())
}

/// The available actions, sorted.
pub fn available(dispute: &dpb::Dispute) -> Vec<dpb::DisputeActionType> {
    let mut actions: Vec<_> = dispute
        .available_actions
        .iter()
        .map(|a| a.action())
        .collect();
    actions.sort();
    actions
}

/// The balance transactions as (type, signed amount), oldest first.
pub fn ledger(dispute: &dpb::Dispute) -> Vec<(dpb::BalanceTransactionType, i64)> {
    dispute
        .balance_transactions
        .iter()
        .map(|t| (t.r#type(), t.amount))
        .collect()
}

/// Sum of the balance transactions' `net` (amount minus fees).
pub fn net(dispute: &dpb::Dispute) -> i64 {
    dispute.balance_transactions.iter().map(|t| t.net).sum()
}

/// Sum of the balance transactions' fees (charged minus refunded).
pub fn fee(dispute: &dpb::Dispute) -> i64 {
    dispute.balance_transactions.iter().map(|t| t.fee).sum()
}

/// The action history as (actor, what), oldest first.
pub fn history(dispute: &dpb::Dispute) -> Vec<(dpb::Actor, String)> {
    dispute
        .action_history
        .iter()
        .map(|a| (a.actor(), a.what.clone()))
        .collect()
}

/// Types of the events recorded for a dispute (dispute-core's `dispute_events`), in order.
pub async fn event_types(stack: &Stack, dispute_id: &str) -> Vec<String> {
    event_payloads(stack, dispute_id)
        .await
        .into_iter()
        .map(|(kind, _)| kind)
        .collect()
}

/// The events recorded for a dispute with their whole payloads (large evidence texts, stored
/// once in `evidence_texts`, spliced back in), in order.
pub async fn event_payloads(stack: &Stack, dispute_id: &str) -> Vec<(String, Vec<u8>)> {
    type Row = (String, Vec<u8>, Option<Vec<i32>>, Option<Vec<Vec<u8>>>);
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let rows: Vec<Row> = sqlx::query_as(
        "select e.type, e.payload, e.payload_text_offsets,
                (select array_agg(t.body order by r.n)
                   from unnest(e.payload_texts) with ordinality as r(sha256, n)
                   join evidence_texts t on t.tenant_id = e.tenant_id
                    and t.dispute_id = e.dispute_id and t.sha256 = r.sha256)
           from dispute_events e where e.dispute_id = $1 order by e.seq",
    )
    .bind(dispute_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.into_iter()
        .map(|(kind, stored, offsets, texts)| {
            let whole = dispute_core::store::evidence_texts::join_payload(
                stored,
                offsets.as_deref(),
                texts,
            )
            .unwrap();
            (kind, whole)
        })
        .collect()
}

/// An event payload: the dispute after the change, encoded as `disputes.v1.Dispute`.
pub fn payload_dispute(payload: &[u8]) -> dpb::Dispute {
    use prost::Message;
    dpb::Dispute::decode(payload).unwrap()
}

/// Polls GetDispute until the dispute has `status` (the sweeper acts within about a second).
pub async fn wait_for_status(
    client: &mut harness::DisputesClient,
    id: &str,
    status: dpb::DisputeStatus,
    within: Duration,
) -> dpb::Dispute {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let dispute = get_dispute(client, id).await;
        if dispute.status() == status {
            return dispute;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} did not become {status:?} within {within:?}: {:?} / {:?}",
            dispute.stage(),
            dispute.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The subject of the PreconditionFailure detail: what the refused condition is about.
pub fn precondition_subject(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .precondition_failure()
        .and_then(|p| p.violations.first().map(|v| v.subject.clone()))
        .unwrap_or_default()
}

/// dispute-core's development background credential on `stack`: no tenant,
/// `documents:lock` only, five minutes.
pub fn background_token(stack: &Stack) -> String {
    service_kit::auth::mint_background_token(
        &stack.jwt_secret,
        "dispute-core",
        &[service_kit::auth::Scope::DocumentsLock.as_str()],
        chrono::Duration::minutes(5),
    )
    .expect("mint a background token")
}

/// The reason of the PreconditionFailure detail of a FAILED_PRECONDITION status.
pub fn precondition_type(status: &tonic::Status) -> String {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    status
        .get_error_details()
        .precondition_failure()
        .and_then(|p| p.violations.first().map(|v| v.r#type.clone()))
        .unwrap_or_default()
}
