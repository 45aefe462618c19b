//! Storage grows with the work (issue 23): a merchant dispute with 150,000 characters of
//! incompressible evidence and ten changes stores its evidence text about twice (the
//! dispute's row and one shared copy), not once per event and remembered response, while
//! ListEvents, StreamEvents and idempotent replays still carry the whole evidence.

use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::disputes_v1::event_service_client::EventServiceClient;
use harness::Bearer;
use harness::storage::{EVIDENCE_CHARS, Lifecycle, dispute_bytes, merchant_lifecycle, total_bytes};
use prost::Message;

use crate::fixtures::stack;

/// A guard against a hang, never an assertion on speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// The evidence text fields of a dispute as the API shows them.
fn texts_of(dispute: &dpb::Dispute) -> [String; 3] {
    let evidence = dispute.evidence.clone().unwrap_or_default();
    [
        evidence.customer_name,
        evidence.refund_refusal_explanation,
        evidence.uncategorized_text,
    ]
}

fn expected_texts(lifecycle: &Lifecycle) -> [String; 3] {
    [
        lifecycle.texts["customer_name"].clone(),
        lifecycle.texts["refund_refusal_explanation"].clone(),
        lifecycle.texts["uncategorized_text"].clone(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disputes_evidence_is_stored_about_twice_and_read_back_whole() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let lifecycle = merchant_lifecycle(&mut disputes, "VISA-STORAGE", 23)
        .await
        .unwrap();
    let id = lifecycle.dispute_id.clone();
    assert_eq!(lifecycle.last.status(), dpb::DisputeStatus::Won);
    assert_eq!(texts_of(&lifecycle.last), expected_texts(&lifecycle));

    // Idempotent replays answer exactly the first response (the same bytes).
    for (request, first) in &lifecycle.updates {
        let replayed = disputes
            .update_dispute(request.clone())
            .await
            .unwrap()
            .into_inner()
            .dispute
            .unwrap();
        assert_eq!(replayed.encode_to_vec(), first.encode_to_vec());
    }
    let staged = &lifecycle.updates[0].1;
    assert_eq!(
        staged.evidence.as_ref().unwrap().uncategorized_text,
        lifecycle.texts["uncategorized_text"]
    );

    // Every event holds the dispute after its change, whole: ListEvents and a StreamEvents
    // replay give the same events, and from the staging on each carries the evidence.
    let mut events = EventServiceClient::with_interceptor(
        harness::connect(stack.dispute_core_addr).await.unwrap(),
        Bearer::new(Some(&stack.full_token("acme"))).unwrap(),
    );
    let listed = tokio::time::timeout(PATIENCE, async {
        loop {
            let page = events
                .list_events(dpb::ListEventsRequest {
                    dispute_id: id.clone(),
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            // Opened, staged, six metadata changes, evidence, submitted, won: at least 11.
            if page.events.len() >= 11
                && page
                    .events
                    .last()
                    .is_some_and(|e| e.dispute.as_ref().unwrap().version == lifecycle.last.version)
            {
                return page.events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("events not numbered");
    let mut stream = events
        .stream_events(dpb::StreamEventsRequest {
            from_beginning: true,
            dispute_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while streamed.len() < listed.len() {
        let message = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("stream stalled")
            .unwrap()
            .expect("stream ended");
        if let Some(dpb::stream_events_response::Kind::Event(event)) = message.kind {
            streamed.push(event);
        }
    }
    assert_eq!(
        streamed
            .iter()
            .map(Message::encode_to_vec)
            .collect::<Vec<_>>(),
        listed
            .iter()
            .map(Message::encode_to_vec)
            .collect::<Vec<_>>()
    );
    let with_evidence: Vec<&dpb::Event> = listed
        .iter()
        .filter(|e| e.dispute.as_ref().unwrap().version >= staged.version)
        .collect();
    assert!(with_evidence.len() >= 10, "{} events", with_evidence.len());
    for event in &with_evidence {
        let dispute = event.dispute.as_ref().unwrap();
        let texts = texts_of(dispute);
        assert_eq!(
            texts[1..],
            expected_texts(&lifecycle)[1..],
            "{}",
            event.r#type
        );
    }
    // The last event is the outcome, with the dispute exactly as the outcome answered it
    // (but for the history, of which an event holds only the entry that caused it).
    let mut won = listed.last().unwrap().dispute.clone().unwrap();
    let mut answered = lifecycle.last.clone();
    won.action_history.clear();
    answered.action_history.clear();
    assert_eq!(won.evidence, answered.evidence);
    assert_eq!(won.version, answered.version);

    // What it all takes: the evidence text about twice (the dispute row and the shared
    // copy), far from once per event and remembered response. Bytes stored are
    // deterministic, not a timing.
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let sizes = dispute_bytes(&pool, "acme", &id, &lifecycle.request_ids())
        .await
        .unwrap();
    let total = total_bytes(&sizes);
    let evidence = EVIDENCE_CHARS as i64;
    assert!(
        total * 10 < evidence * 25,
        "{total} bytes stored for {evidence} bytes of evidence: {sizes:?}"
    );
    let texts = sizes.iter().find(|s| s.table == "evidence_texts").unwrap();
    assert_eq!(texts.rows, 2, "each large text once: {sizes:?}");
    pool.close().await;
    stack.stop().await;
}

/// Once retention has purged the events and remembered responses that used a dispute's
/// evidence texts, the purge removes the texts too; the dispute keeps its evidence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_texts_go_with_the_last_event_and_response_that_used_them() {
    use dispute_core::app::retention::{Retention, RetentionSettings};
    use dispute_core::domain::retention::RetentionPolicy;

    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let lifecycle = merchant_lifecycle(&mut disputes, "VISA-PURGE", 7)
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let count = |table: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(&format!("select count(*) from {table}"))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    // Every event numbered (the purge takes numbered events only).
    tokio::time::timeout(PATIENCE, async {
        while sqlx::query_scalar::<_, i64>(
            "select count(*) from dispute_events where position is null",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
            > 0
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("events not numbered");
    assert_eq!(count("evidence_texts").await, 2);

    let purge = |event_days: u32| {
        Retention::new(
            pool.clone(),
            RetentionSettings {
                policy: RetentionPolicy {
                    event_days,
                    ..RetentionPolicy::default()
                },
                interval: Duration::from_secs(300),
                batch_size: 2,
            },
        )
    };
    // Events kept forever: the texts stay (the events that wrote them still use them),
    // even once the remembered responses are gone.
    let later = chrono::Utc::now() + chrono::Duration::days(40);
    let stop = tokio_util::sync::CancellationToken::new();
    let report = purge(0).purge_at(later, &stop).await.unwrap();
    assert_eq!(report.idempotency_keys, lifecycle.updates.len() as u64);
    assert_eq!((report.events, report.evidence_texts), (0, 0));
    assert_eq!(count("evidence_texts").await, 2);

    // Events kept 30 days, 40 days on: events go, and the texts with them.
    let report = purge(30).purge_at(later, &stop).await.unwrap();
    assert!(report.events >= 11, "{report:?}");
    assert_eq!(report.evidence_texts, 2, "{report:?}");
    assert_eq!(count("evidence_texts").await, 0);
    assert_eq!(count("dispute_events").await, 0);

    let dispute = disputes
        .get_dispute(dpb::GetDisputeRequest {
            id: lifecycle.dispute_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .dispute
        .unwrap();
    assert_eq!(texts_of(&dispute), expected_texts(&lifecycle));
    pool.close().await;
    stack.stop().await;
}
