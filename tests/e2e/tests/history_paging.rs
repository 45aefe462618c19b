//! The history does not grow quadratically: a dispute carries its newest history entries and
//! their count, ListDisputeHistory pages through all of them, and events and remembered
//! responses do not embed the whole history. The `point_11_` prefix of the test name is issue
//! 11's point 11.

use std::collections::HashSet;

use disputes_proto::disputes_v1 as dpb;
use futures::{StreamExt, stream};
use prost::Message;
use tonic::Code;

use crate::fixtures::*;

/// The newest entries a dispute carries (docs/api.md, "History").
const LATEST: usize = 20;
const REQUEST_PREFIX: &str = "p11-";
/// Updates in flight at once over the one channel (they queue on the dispute's lock).
const IN_FLIGHT: usize = 6;

/// UpdateDispute `n`: a metadata-only change under its own request id.
fn metadata_update(dispute_id: &str, n: usize) -> dpb::UpdateDisputeRequest {
    dpb::UpdateDisputeRequest {
        id: dispute_id.to_owned(),
        request_id: format!("{REQUEST_PREFIX}{n}"),
        metadata: [("n".to_owned(), n.to_string())].into(),
        ..Default::default()
    }
}

/// Sends updates `from..to` over one channel, a few in flight at once; each must succeed.
async fn send_updates(client: &harness::DisputesClient, dispute_id: &str, from: usize, to: usize) {
    stream::iter(from..to)
        .map(|n| {
            let mut client = client.clone();
            let request = metadata_update(dispute_id, n);
            async move { client.update_dispute(request).await }
        })
        .buffer_unordered(IN_FLIGHT)
        .for_each(async |reply| {
            reply.unwrap();
        })
        .await;
}

/// Bytes the dispute's events and the test's remembered responses take in PostgreSQL.
async fn stored_bytes(pool: &sqlx::PgPool, dispute_id: &str) -> (i64, i64) {
    let events: i64 = sqlx::query_scalar(
        "select coalesce(sum(pg_column_size(e.*)), 0)::bigint
           from dispute_events e where dispute_id = $1",
    )
    .bind(dispute_id)
    .fetch_one(pool)
    .await
    .unwrap();
    let responses: i64 = sqlx::query_scalar(
        "select coalesce(sum(pg_column_size(k.*)), 0)::bigint
           from idempotency_keys k where operation = 'UpdateDispute' and request_id like $1",
    )
    .bind(format!("{REQUEST_PREFIX}%"))
    .fetch_one(pool)
    .await
    .unwrap();
    (events, responses)
}

/// Every entry of the history through ListDisputeHistory, `page_size` at a time; `between`
/// runs after the first page (to append entries while paging).
async fn page_through(
    client: &mut harness::DisputesClient,
    dispute_id: &str,
    page_size: i32,
    mut between: impl AsyncFnMut(&mut harness::DisputesClient),
) -> (Vec<dpb::ActionRecord>, i32) {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_dispute_history(dpb::ListDisputeHistoryRequest {
                dispute_id: dispute_id.to_owned(),
                page_size,
                page_token: page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.action_history.len() <= page_size as usize);
        entries.extend(page.action_history);
        pages += 1;
        if pages == 1 {
            between(client).await;
        }
        if page.next_page_token.is_empty() {
            return (entries, page.total_size);
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_11_history_is_paged_and_storage_stays_linear() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let dispute = create(&mut disputes, merchant_dispute("", "ch_history")).await;
    assert_eq!(dispute.action_history_count, 1);

    let started = std::time::Instant::now();
    send_updates(&disputes, &dispute.id, 1, 1_001).await;
    let (events_1k, responses_1k) = stored_bytes(&pool, &dispute.id).await;
    eprintln!("1,000 updates in {:?}", started.elapsed());
    send_updates(&disputes, &dispute.id, 1_001, 3_000).await;
    // The last one alone, so that its reply shows the final state.
    let last_request = metadata_update(&dispute.id, 3_000);
    let first_reply = update(&mut disputes, last_request.clone()).await;
    let (events_3k, responses_3k) = stored_bytes(&pool, &dispute.id).await;
    eprintln!(
        "3,000 updates in {:?}; events {events_1k} -> {events_3k} bytes, responses \
         {responses_1k} -> {responses_3k} bytes",
        started.elapsed()
    );
    // Linear: three times the updates take about three times the bytes (quadratic: ~9x).
    for (what, at_1k, at_3k) in [
        ("events", events_1k, events_3k),
        ("remembered responses", responses_1k, responses_3k),
        ("both", events_1k + responses_1k, events_3k + responses_3k),
    ] {
        assert!(
            at_1k > 0 && (at_3k as f64) < 3.6 * at_1k as f64,
            "{what}: {at_1k} bytes after 1,000 updates, {at_3k} after 3,000"
        );
    }

    // GetDispute: the newest entries and the count, far below a client's 4 MiB limit.
    let got = get_dispute(&mut disputes, &dispute.id).await;
    assert!(
        got.encoded_len() < 1 << 20,
        "GetDispute is {} bytes",
        got.encoded_len()
    );
    assert_eq!(got.action_history_count, 3_001);
    assert_eq!(got.action_history.len(), LATEST);
    assert_eq!(got.metadata.get("n").map(String::as_str), Some("3000"));
    assert_eq!(got.version, dispute.version + 3_000);
    assert!(
        got.action_history
            .iter()
            .all(|entry| entry.what == "metadata_updated")
    );
    // The mutation's reply shows what GetDispute shows, and its replay is the first reply.
    assert_eq!(first_reply.action_history, got.action_history);
    assert_eq!(first_reply.action_history_count, 3_001);
    let replayed = update(&mut disputes, last_request).await;
    assert_eq!(replayed, first_reply);
    assert_eq!(
        get_dispute(&mut disputes, &dispute.id)
            .await
            .action_history_count,
        3_001,
        "the replay appended nothing"
    );

    // An event holds the dispute with only the entry that caused it.
    let events = event_payloads(&stack, &dispute.id).await;
    assert_eq!(
        events.len(),
        2 + 3_000,
        "created, funds_withdrawn, one per update"
    );
    let (kind, payload) = events.last().unwrap();
    assert_eq!(kind, "dispute.updated");
    let payload = payload_dispute(payload);
    assert_eq!(payload.action_history.len(), 1);
    assert_eq!(
        payload.action_history[0],
        *got.action_history.last().unwrap()
    );
    assert_eq!(payload.action_history_count, 3_001);
    assert_eq!(payload.version, got.version);

    // Paging returns every entry exactly once, oldest first, including one appended while
    // paging (at the end).
    let appended = std::cell::OnceCell::new();
    let (entries, total) = page_through(&mut disputes, &dispute.id, 100, async |client| {
        let reply = update(client, metadata_update(&dispute.id, 3_001)).await;
        let _ = appended.set(reply.action_history.last().unwrap().id.clone());
    })
    .await;
    assert_eq!(total, 3_002);
    assert_eq!(entries.len(), 3_002);
    let unique: HashSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(unique.len(), entries.len(), "no entry twice");
    assert_eq!(entries[0].what, "created");
    assert!(entries[1..].iter().all(|e| e.what == "metadata_updated"));
    // Oldest first: in the order the changes were made (the updates raced for the lock; the
    // order they won it in is the stored one), the one appended while paging last.
    assert_eq!(entries.last().map(|e| &e.id), appended.get());
    assert_eq!(entries[3_001 - LATEST..3_001], got.action_history[..]);
    let stored: Vec<String> =
        sqlx::query_scalar("select id from dispute_actions where dispute_id = $1 order by ordinal")
            .bind(&dispute.id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        stored
    );

    // The default page is 20 entries; a token works only for its own dispute; another
    // tenant's dispute is NOT_FOUND.
    let other = create(&mut disputes, merchant_dispute("", "ch_history_2")).await;
    let first = disputes
        .list_dispute_history(dpb::ListDisputeHistoryRequest {
            dispute_id: dispute.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.action_history[..], entries[..20]);
    let misused = disputes
        .list_dispute_history(dpb::ListDisputeHistoryRequest {
            dispute_id: other.id.clone(),
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&misused), vec!["page_token"]);
    let mut stranger = stack.disputes_of("globex").await;
    let hidden = stranger
        .list_dispute_history(dpb::ListDisputeHistoryRequest {
            dispute_id: dispute.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    pool.close().await;
    stack.stop().await;
}
