//! Overload: unary calls beyond the concurrency limit are shed at once with
//! RESOURCE_EXHAUSTED and RetryInfo (not queued), health still answers, a call past the
//! server's call timeout answers DEADLINE_EXCEEDED, and streaming uploads are neither
//! counted nor cut.

use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use harness::tonic_health_client::health_check_service;
use harness::{Stack, StackOptions};
use sqlx::{Connection, PgConnection};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic_types::StatusExt;

use crate::fixtures::{
    MIB, act, create, error_reason, get_dispute, header, merchant_dispute, pdf_of_size, stack_with,
};

const DISPUTES: &str = "disputes.v1.DisputeService";

/// Locks the dispute's row in a transaction of the test, so dispute-core's CreateAction
/// waits on it.
async fn lock_dispute_row(stack: &Stack, dispute_id: &str) -> PgConnection {
    let mut conn = PgConnection::connect(&stack.dispute_db_url).await.unwrap();
    sqlx::query("begin").execute(&mut conn).await.unwrap();
    sqlx::query("select id from disputes where id = $1 for update")
        .bind(dispute_id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn
}

/// Waits until a dispute-core session waits on a row lock: the held call is in flight.
async fn wait_for_lock_waiter(stack: &Stack) {
    let mut conn = PgConnection::connect(&stack.dispute_db_url).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where datname = current_database() and application_name = 'dispute-core'
               and wait_event_type = 'Lock'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no dispute-core call ever waited on the row lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_call_beyond_the_limit_is_shed_at_once_and_health_still_answers() {
    let mut options = StackOptions::default();
    options.dispute_core_resilience.max_concurrent_calls = 1;
    // The held call waits on the row lock for as long as the test holds it.
    options.dispute_core_resilience.db_lock_timeout_ms = 60_000;
    options.dispute_core_resilience.db_statement_timeout_ms = 60_000;
    let stack = stack_with(options).await;
    let mut client = stack.disputes_of("acct_overload").await;
    let dispute = create(&mut client, merchant_dispute("req-overload", "ch_overload")).await;

    let lock = lock_dispute_row(&stack, &dispute.id).await;
    let mut held_client = client.clone();
    let held_id = dispute.id.clone();
    let held = tokio::spawn(async move {
        act(&mut held_client, &held_id, dpb::DisputeActionType::Accept).await
    });
    wait_for_lock_waiter(&stack).await;

    let shed = client
        .get_dispute(dpb::GetDisputeRequest {
            id: dispute.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");
    assert_eq!(error_reason(&shed), "OVERLOADED");
    let retry = shed.get_error_details().retry_info().cloned();
    assert!(
        retry.is_some_and(|r| r.retry_delay.is_some_and(|d| !d.is_zero())),
        "RESOURCE_EXHAUSTED carries a RetryInfo delay: {shed:?}"
    );
    assert!(
        !held.is_finished(),
        "the second call was answered while the first still held the only slot"
    );
    // Health is never shed: the readiness and liveness checks still answer.
    assert!(
        health_check_service(stack.dispute_core_addr, DISPUTES)
            .await
            .unwrap()
    );
    assert!(
        health_check_service(stack.dispute_core_addr, "")
            .await
            .unwrap()
    );

    // Releasing the lock lets the held call finish; the slot is free again.
    lock.close().await.unwrap();
    let accepted = held.await.unwrap().unwrap();
    assert_eq!(accepted.status(), dpb::DisputeStatus::Lost);
    assert_eq!(
        get_dispute(&mut client, &dispute.id).await.status(),
        dpb::DisputeStatus::Lost
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_call_past_the_server_timeout_answers_deadline_exceeded_and_changes_nothing() {
    let mut options = StackOptions::default();
    options.dispute_core_resilience.call_timeout_ms = 300;
    options.dispute_core_resilience.db_lock_timeout_ms = 60_000;
    options.dispute_core_resilience.db_statement_timeout_ms = 60_000;
    let stack = stack_with(options).await;
    let mut client = stack.disputes_of("acct_call_timeout").await;
    let dispute = create(&mut client, merchant_dispute("req-timeout", "ch_timeout")).await;

    let lock = lock_dispute_row(&stack, &dispute.id).await;
    let status = act(&mut client, &dispute.id, dpb::DisputeActionType::Accept)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(error_reason(&status), "CALL_TIMEOUT");
    lock.close().await.unwrap();

    // The timed-out call was dropped before it committed: the dispute is unchanged, and the
    // same action now succeeds.
    assert_eq!(
        get_dispute(&mut client, &dispute.id).await.status(),
        dispute.status()
    );
    let accepted = act(&mut client, &dispute.id, dpb::DisputeActionType::Accept)
        .await
        .unwrap();
    assert_eq!(accepted.status(), dpb::DisputeStatus::Lost);
    stack.stop().await;
}

#[tokio::test]
async fn uploads_are_neither_counted_nor_cut_by_the_unary_limits() {
    let mut options = StackOptions::default();
    options
        .document_store_resilience
        .common
        .max_concurrent_calls = 1;
    options.document_store_resilience.common.call_timeout_ms = 200;
    let stack = stack_with(options).await;
    let mut documents = stack.documents_of("acct_upload_limits").await;

    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender
        .send(pb::UploadDocumentRequest {
            payload: Some(pb::upload_document_request::Payload::Header(header(
                "slow.pdf",
                "application/pdf",
            ))),
        })
        .await
        .unwrap();
    let mut upload_client = documents.clone();
    let upload = tokio::spawn(async move {
        upload_client
            .upload_document(ReceiverStream::new(receiver))
            .await
    });

    // While the upload is open, unary calls still get the only slot.
    for _ in 0..3 {
        let listed = documents
            .list_documents(pb::ListDocumentsRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(listed.documents.is_empty());
    }
    // The upload outlives the unary call timeout several times over, then completes.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let bytes = pdf_of_size(MIB + 7);
    for chunk in bytes.chunks(256 * 1024) {
        sender
            .send(pb::UploadDocumentRequest {
                payload: Some(pb::upload_document_request::Payload::Chunk(
                    bytes::Bytes::copy_from_slice(chunk),
                )),
            })
            .await
            .unwrap();
    }
    drop(sender);
    let document = upload
        .await
        .unwrap()
        .unwrap()
        .into_inner()
        .document
        .unwrap();
    assert_eq!(document.size_bytes, bytes.len() as i64);
    stack.stop().await;
}
