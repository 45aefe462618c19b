//! Webhook signing secrets at rest and their replay rules: no column of an endpoint row
//! holds a secret in any form while deliveries still verify (independent verifier); a new
//! active key reseals old rows (plaintext ones included) at start-up and a key no longer
//! configured stops the start; a ciphertext moved to another row sends nothing;
//! CreateWebhookEndpoint's request_id replays show the secret only while nothing changed;
//! RetryDelivery is bounded.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use disputes_proto::disputes_v1 as pb;
use harness::StackOptions;
use harness::webhook_receiver::{Received, Receiver};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::fixtures::{
    create, error_reason, merchant_dispute, precondition_subject, stack, stack_with,
};
use crate::webhooks::{EventsClient, create_endpoint, deliveries, events_of, verify};

const SECOND_KEY: &str = "k2:c2Vjb25kLXRlc3Qtd2ViaG9vay1zZWNyZXQta2V5ISE=";
const THIRD_KEY: &str = "k3:dGhpcmQtdGVzdC13ZWJob29rLXNlY3JldC1rZXkhISE=";

fn verify_received(secret: &str, received: &Received) -> String {
    verify(
        secret,
        &received.body,
        &received.webhook_id,
        &received.timestamp,
        &received.signature,
    )
}

/// Every form a secret could be stored in: as given, its base64 key, its key bytes.
fn forms_of(secret: &str) -> Vec<Vec<u8>> {
    let base64 = secret.strip_prefix("whsec_").unwrap();
    let key = STANDARD.decode(base64).unwrap();
    vec![
        secret.as_bytes().to_vec(),
        base64.as_bytes().to_vec(),
        key.clone(),
        hex::encode(&key).into_bytes(),
    ]
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every endpoint row: each column as text (bytea as hex) and every bytea column's bytes.
async fn endpoint_row_contents(pool: &sqlx::PgPool) -> Vec<Vec<u8>> {
    let rows = sqlx::query(
        "select row_to_json(e)::text as text, secret_ciphertext, previous_secret_ciphertext,
                secret_nonce, previous_secret_nonce, request_fingerprint
           from webhook_endpoints e",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut contents = Vec::new();
    for row in rows {
        contents.push(row.get::<String, _>("text").into_bytes());
        for column in [
            "secret_ciphertext",
            "previous_secret_ciphertext",
            "secret_nonce",
            "previous_secret_nonce",
            "request_fingerprint",
        ] {
            if let Some(bytes) = row.get::<Option<Vec<u8>>, _>(column) {
                contents.push(bytes);
            }
        }
    }
    contents
}

fn assert_nowhere(contents: &[Vec<u8>], secrets: &[&str]) {
    for secret in secrets {
        for form in forms_of(secret) {
            for content in contents {
                assert!(
                    !contains(content, &form),
                    "a form of a secret is stored: {}",
                    String::from_utf8_lossy(content)
                );
            }
        }
    }
}

/// (id, secret key id, previous secret key id, plaintext columns null) of every endpoint.
async fn sealing(pool: &sqlx::PgPool) -> Vec<(String, Option<String>, Option<String>, bool)> {
    let mut rows: Vec<_> = sqlx::query_as(
        "select id, secret_key_id, previous_secret_key_id,
                secret is null and previous_secret is null
           from webhook_endpoints",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.sort();
    rows
}

async fn rotate(events: &mut EventsClient, id: &str) -> String {
    events
        .rotate_webhook_secret(pb::RotateWebhookSecretRequest {
            id: id.to_owned(),
            overlap: None,
        })
        .await
        .unwrap()
        .into_inner()
        .secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_unreadable_in_the_database_and_deliveries_still_verify() {
    let stack = stack().await;
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let receiver = Receiver::start(0).await;
    let mut events = events_of(&stack, "acme").await;
    let created = events
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: receiver.url(),
            description: "sealed".to_owned(),
            request_id: "req-sealed".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.endpoint.unwrap().id;
    let first = created.secret;
    // Rotated: the row holds two secrets, both signing during the overlap.
    let second = rotate(&mut events, &id).await;

    let contents = endpoint_row_contents(&pool).await;
    assert!(!contents.is_empty());
    assert_nowhere(&contents, &[&first, &second]);
    assert_eq!(
        sealing(&pool).await,
        [(
            id.clone(),
            Some("test".to_owned()),
            Some("test".to_owned()),
            true
        )]
    );
    let nonces: (Vec<u8>, Vec<u8>) =
        sqlx::query_as("select secret_nonce, previous_secret_nonce from webhook_endpoints")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((nonces.0.len(), nonces.1.len()), (12, 12));
    assert_ne!(nonces.0, nonces.1);

    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_sealed")).await;
    let received = receiver.wait_until(|r| r.len() >= 2).await;
    for delivery in &received {
        assert_eq!(delivery.signature.split(' ').count(), 2);
        assert_eq!(verify_received(&second, delivery), "ok");
        assert_eq!(verify_received(&first, delivery), "ok");
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_moved_to_another_row_signs_nothing() {
    let stack = stack().await;
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let receiver = Receiver::start(0).await;
    let mut acme = events_of(&stack, "acme").await;
    let mut globex = events_of(&stack, "globex").await;
    create_endpoint(&mut acme, &receiver.url(), &[]).await;
    let victim = create_endpoint(&mut globex, &receiver.url(), &[]).await;
    let victim_id = victim.endpoint.unwrap().id;
    // acme's sealed secret copied over globex's: the same key, another row.
    sqlx::query(
        "update webhook_endpoints g
            set secret_key_id = a.secret_key_id, secret_nonce = a.secret_nonce,
                secret_ciphertext = a.secret_ciphertext
           from webhook_endpoints a
          where g.tenant_id = 'globex' and a.tenant_id = 'acme'",
    )
    .execute(&pool)
    .await
    .unwrap();

    let mut disputes = stack.disputes_of("globex").await;
    create(&mut disputes, merchant_dispute("", "ch_moved")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(receiver.received().is_empty(), "a delivery was sent");
    let pending = deliveries(
        &mut globex,
        pb::ListDeliveriesRequest {
            endpoint_id: victim_id,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(pending.len(), 2);
    for delivery in pending {
        assert_eq!(delivery.status(), pb::WebhookDeliveryStatus::Pending);
        assert_eq!(delivery.attempt_count, 0);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_active_key_reseals_every_secret_and_a_missing_key_stops_the_start() {
    // The stack's own instance only serves the API (old key); replicas deliver.
    let stack = stack_with(StackOptions {
        webhooks: dispute_core::config::WebhookFlags {
            webhook_worker: false,
            ..harness::test_webhook_flags()
        },
        ..Default::default()
    })
    .await;
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let current = Receiver::start(0).await;
    let legacy = Receiver::start(0).await;
    let mut events = events_of(&stack, "acme").await;
    let created = create_endpoint(&mut events, &current.url(), &[]).await;
    let id = created.endpoint.unwrap().id;
    let rotated = rotate(&mut events, &id).await;
    // A row as written before secrets were sealed: plaintext.
    let legacy_secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let legacy_id: String = sqlx::query_scalar(
        "insert into webhook_endpoints (tenant_id, id, url, secret)
         values ('acme', new_prefixed_id('whe'), $1, $2) returning id",
    )
    .bind(legacy.url())
    .bind(legacy_secret)
    .fetch_one(&pool)
    .await
    .unwrap();

    // A replica with a new active key and the old one: every secret resealed under k2.
    let shutdown = CancellationToken::new();
    let rotated_keys = format!(
        "{SECOND_KEY},{}",
        harness::process::TEST_WEBHOOK_SECRET_KEYS
    );
    let (_addr, replica) = stack
        .start_dispute_core_replica(
            dispute_core::config::WebhookFlags {
                webhook_secret_keys: rotated_keys.parse().unwrap(),
                ..harness::test_webhook_flags()
            },
            &[],
            &shutdown,
        )
        .await
        .unwrap();
    let mut expected = vec![
        (
            id.clone(),
            Some("k2".to_owned()),
            Some("k2".to_owned()),
            true,
        ),
        (legacy_id.clone(), Some("k2".to_owned()), None, true),
    ];
    expected.sort();
    assert_eq!(sealing(&pool).await, expected);
    assert_nowhere(
        &endpoint_row_contents(&pool).await,
        &[&created.secret, &rotated, legacy_secret],
    );

    // Old endpoints still sign, with the same secrets.
    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_rekeyed")).await;
    for delivery in current.wait_until(|r| r.len() >= 2).await {
        assert_eq!(verify_received(&rotated, &delivery), "ok");
        assert_eq!(verify_received(&created.secret, &delivery), "ok");
    }
    for delivery in legacy.wait_until(|r| r.len() >= 2).await {
        assert_eq!(verify_received(legacy_secret, &delivery), "ok");
    }
    shutdown.cancel();
    replica.await.unwrap().unwrap();

    // Only a key the rows are not sealed under: refused at start-up, naming the key id.
    let refused = start_alone(&stack, Some(THIRD_KEY)).await;
    assert!(refused.contains("\"k2\""), "{refused}");
    assert!(refused.contains("--webhook-secret-keys"), "{refused}");
    assert!(!refused.contains("dGhpcmQ"), "{refused}");
    // No key at all: refused, saying how to make one.
    let refused = start_alone(&stack, None).await;
    assert!(refused.contains("--webhook-secret-keys"), "{refused}");
    assert!(refused.contains("openssl rand -base64 32"), "{refused}");
    // The rows are untouched by the refused starts.
    assert_eq!(sealing(&pool).await, expected);
    stack.stop().await;
}

/// Runs a dispute-core on the stack's database with `keys` and returns its start-up error.
async fn start_alone(stack: &harness::Stack, keys: Option<&str>) -> String {
    use clap::Parser;
    use secrecy::ExposeSecret;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut args = vec![
        "dispute-core".to_owned(),
        "--database-url".to_owned(),
        stack.dispute_db_url.clone(),
        "--jwt-secret".to_owned(),
        stack.jwt_secret.expose_secret().to_owned(),
    ];
    if let Some(keys) = keys {
        args.extend(["--webhook-secret-keys".to_owned(), keys.to_owned()]);
    }
    let config = dispute_core::Config::try_parse_from(args).unwrap();
    let shutdown = CancellationToken::new();
    let run = dispute_core::run(config, listener, shutdown.clone());
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("a refused start ends at once");
    shutdown.cancel();
    format!("{:#}", result.expect_err("the start is refused"))
}

async fn create_with_request_id(
    events: &mut EventsClient,
    url: &str,
    description: &str,
    request_id: &str,
) -> Result<pb::CreateWebhookEndpointResponse, tonic::Status> {
    events
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: url.to_owned(),
            event_types: vec!["dispute.created".to_owned()],
            description: description.to_owned(),
            request_id: request_id.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

fn assert_no_longer_available(status: &tonic::Status, why: &str, secret: &str) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(error_reason(status), "SECRET_NO_LONGER_AVAILABLE");
    assert_eq!(precondition_subject(status), "webhook_endpoint");
    assert!(status.message().contains(why), "{}", status.message());
    assert!(!status.message().contains(secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_replay_shows_the_secret_only_while_nothing_changed() {
    let stack = stack().await;
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let mut events = events_of(&stack, "acme").await;
    let url = "http://127.0.0.1:9/hooks";

    // Same body: the same endpoint and secret.
    let first = create_with_request_id(&mut events, url, "a", "req-1")
        .await
        .unwrap();
    let again = create_with_request_id(&mut events, url, "a", "req-1")
        .await
        .unwrap();
    assert_eq!(again.secret, first.secret);
    assert_eq!(again.endpoint, first.endpoint);
    // Another tenant's request id of the same name is its own.
    let mut globex = events_of(&stack, "globex").await;
    let other = create_with_request_id(&mut globex, url, "a", "req-1")
        .await
        .unwrap();
    assert_ne!(other.secret, first.secret);

    // Changed body: IDEMPOTENCY_KEY_REUSED, as every other RPC answers.
    let changed = create_with_request_id(&mut events, url, "b", "req-1")
        .await
        .unwrap_err();
    assert_eq!(changed.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&changed), "IDEMPOTENCY_KEY_REUSED");
    let changed_url = create_with_request_id(&mut events, "http://127.0.0.1:9/x", "a", "req-1")
        .await
        .unwrap_err();
    assert_eq!(error_reason(&changed_url), "IDEMPOTENCY_KEY_REUSED");

    // After a rotation: never the secret, old or new.
    let id = first.endpoint.clone().unwrap().id;
    let rotated = rotate(&mut events, &id).await;
    let replay = create_with_request_id(&mut events, url, "a", "req-1")
        .await
        .unwrap_err();
    assert_no_longer_available(&replay, "rotated", &rotated);
    assert!(replay.message().contains("RotateWebhookSecret"));
    // A changed body is still named as such.
    let changed = create_with_request_id(&mut events, url, "b", "req-1")
        .await
        .unwrap_err();
    assert_eq!(error_reason(&changed), "IDEMPOTENCY_KEY_REUSED");

    // After deletion.
    let doomed = create_with_request_id(&mut events, url, "c", "req-2")
        .await
        .unwrap();
    events
        .delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest {
            id: doomed.endpoint.unwrap().id,
        })
        .await
        .unwrap();
    let replay = create_with_request_id(&mut events, url, "c", "req-2")
        .await
        .unwrap_err();
    assert_no_longer_available(&replay, "deleted", &doomed.secret);

    // After the 24-hour window (the first request made a day ago).
    let old = create_with_request_id(&mut events, url, "d", "req-3")
        .await
        .unwrap();
    let inside = create_with_request_id(&mut events, url, "d", "req-3")
        .await
        .unwrap();
    assert_eq!(inside.secret, old.secret);
    sqlx::query(
        "update webhook_endpoints set created_at = now() - interval '24 hours 1 second'
          where tenant_id = 'acme' and request_id = 'req-3'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let replay = create_with_request_id(&mut events, url, "d", "req-3")
        .await
        .unwrap_err();
    assert_no_longer_available(&replay, "24 hours", &old.secret);
    stack.stop().await;
}

/// Polls the delivery until `done` holds.
async fn delivery_until(
    events: &mut EventsClient,
    id: &str,
    done: impl Fn(&pb::WebhookDelivery) -> bool,
) -> pb::WebhookDelivery {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let found = deliveries(events, pb::ListDeliveriesRequest::default())
            .await
            .into_iter()
            .find(|d| d.id == id)
            .unwrap();
        if done(&found) {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{found:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn retry(events: &mut EventsClient, id: &str) -> Result<pb::WebhookDelivery, tonic::Status> {
    events
        .retry_delivery(pb::RetryDeliveryRequest { id: id.to_owned() })
        .await
        .map(|r| r.into_inner().delivery.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_delivery_waits_for_the_attempt_and_stops_at_the_limit() {
    let stack = stack().await;
    let receiver = Receiver::start(0).await;
    let mut events = events_of(&stack, "acme").await;
    create_endpoint(&mut events, &receiver.url(), &["dispute.created"]).await;
    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_retry_limit")).await;
    receiver.wait_until(|r| !r.is_empty()).await;
    let listed = deliveries(&mut events, pb::ListDeliveriesRequest::default()).await;
    let id = listed[0].id.clone();
    let succeeded = |d: &pb::WebhookDelivery| d.status() == pb::WebhookDeliveryStatus::Succeeded;
    delivery_until(&mut events, &id, succeeded).await;

    // While an attempt is in flight (the receiver holds it), no second retry.
    receiver.set_hold(true);
    let retried = retry(&mut events, &id).await.unwrap();
    assert_eq!(retried.status(), pb::WebhookDeliveryStatus::Pending);
    receiver.wait_until(|r| r.len() >= 2).await;
    let refused = retry(&mut events, &id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "RETRY_ALREADY_PENDING");
    assert_eq!(precondition_subject(&refused), "webhook_delivery");
    assert!(refused.message().contains(&id), "{}", refused.message());
    receiver.set_hold(false);
    delivery_until(&mut events, &id, succeeded).await;

    // Four more: five in all, then the limit.
    for _ in 0..4 {
        retry(&mut events, &id).await.unwrap();
        delivery_until(&mut events, &id, succeeded).await;
    }
    let refused = retry(&mut events, &id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&refused), "RETRY_LIMIT_REACHED");
    assert_eq!(precondition_subject(&refused), "webhook_delivery");
    assert!(refused.message().contains('5'), "{}", refused.message());
    let after = delivery_until(&mut events, &id, succeeded).await;
    assert_eq!(after.status(), pb::WebhookDeliveryStatus::Succeeded);

    // Unknown deliveries are still NOT_FOUND.
    let missing = retry(&mut events, "whd_01hzzzzzzzzzzzzzzzzzzzzzzz")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    stack.stop().await;
}
