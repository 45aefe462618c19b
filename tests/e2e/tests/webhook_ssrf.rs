//! Webhook SSRF guards end to end: every special-purpose address range is refused as an
//! endpoint URL, a delivery never reaches a refused address however the stored URL names
//! it, and the error an attempt records (ListDeliveries) is a fixed phrase without internal
//! detail (no resolver text, no address, no OS error string).

use std::time::Duration;

use disputes_proto::disputes_v1 as pb;
use harness::webhook_receiver::Receiver;
use harness::{Stack, StackOptions};
use tonic::Code;

use crate::fixtures::{create, merchant_dispute, stack_with, violated_fields};
use crate::webhooks::{EventsClient, create_endpoint, deliveries, events_of};

/// Stored URLs are read back by the worker at each attempt: this sets one as an endpoint
/// registered before the address rule was tightened would have it.
async fn set_stored_url(stack: &Stack, endpoint_id: &str, url: &str) {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&stack.dispute_db_url)
        .await
        .unwrap();
    let updated = sqlx::query("update webhook_endpoints set url = $1 where id = $2")
        .bind(url)
        .bind(endpoint_id)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(updated, 1);
    pool.close().await;
}

/// The first attempt's error of each endpoint's delivery, once every one has an attempt.
async fn first_errors(events: &mut EventsClient, endpoints: &[String]) -> Vec<(i32, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listed = deliveries(events, pb::ListDeliveriesRequest::default()).await;
        let firsts: Vec<Option<(i32, String)>> = endpoints
            .iter()
            .map(|id| {
                listed
                    .iter()
                    .find(|d| &d.endpoint_id == id)
                    .and_then(|d| d.attempts.iter().find(|a| a.number == 1))
                    .map(|a| (a.response_status_code, a.error.clone()))
            })
            .collect();
        if firsts.iter().all(Option::is_some) {
            return firsts.into_iter().map(Option::unwrap).collect();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no first attempt for every endpoint: {listed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nothing a tenant must not learn: addresses, names, resolver or OS wording.
fn assert_no_detail(error: &str) {
    for leak in [
        "127.",
        "::",
        "localhost",
        ".invalid",
        "os error",
        "dns",
        "lookup",
        "failed to",
        "error trying",
        "tcp",
    ] {
        assert!(
            !error.to_lowercase().contains(leak),
            "{error:?} contains {leak:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_purpose_addresses_are_refused_as_endpoint_urls() {
    let stack = stack_with(StackOptions {
        // The production defaults, with the test keyring.
        webhooks: dispute_core::config::WebhookFlags {
            webhook_secret_keys: harness::test_webhook_flags().webhook_secret_keys,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut events = events_of(&stack, "acme").await;
    let refused = [
        "https://[64:ff9b::a00:1]/in",      // NAT64 well-known prefix
        "https://[64:ff9b:1::a00:1]/in",    // NAT64 local-use prefix
        "https://[::a00:1]/in",             // IPv4-compatible
        "https://[::ffff:a9fe:a9fe]/in",    // IPv4-mapped link-local (metadata)
        "https://[2002:a00:1::1]/in",       // 6to4
        "https://[2001:0:4136:e378::1]/in", // Teredo
        "https://[2001:db8::1]/in",         // documentation
        "https://[3fff::1]/in",             // documentation
        "https://[5f00::1]/in",             // SRv6 SIDs
        "https://[fec0::1]/in",             // site-local
        "https://[fd00::1]/in",             // unique-local
        "https://[ff02::1]/in",             // multicast
        "https://[100::1]/in",              // discard-only
        "https://192.0.0.170/in",           // IETF protocol assignments
        "https://100.64.0.1/in",            // CGNAT
        "https://198.18.0.1/in",            // benchmarking
        "https://192.88.99.1/in",           // 6to4 relay anycast
        "https://240.0.0.1/in",             // reserved
        "https://169.254.169.254/latest",   // link-local (metadata)
    ];
    for url in refused {
        let status = events
            .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
                url: url.to_owned(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{url}");
        assert_eq!(violated_fields(&status), ["url"], "{url}");
    }
    for url in ["https://[2606:4700::1111]/in", "https://1.1.1.1/in"] {
        create_endpoint(&mut events, url, &["dispute.created"]).await;
    }
    println!("special-purpose endpoint URLs refused: {}", refused.len());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_never_reaches_a_refused_address_and_says_only_why() {
    // Private addresses refused (the production rule); http allowed so a receiver on
    // 127.0.0.1 could answer if anything reached it.
    let stack = stack_with(StackOptions {
        webhooks: dispute_core::config::WebhookFlags {
            webhook_allow_private_addresses: false,
            ..harness::test_webhook_flags()
        },
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start(0).await;
    let port = receiver
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let mut events = events_of(&stack, "acme").await;
    // (stored URL, the error the tenant sees)
    let cases = [
        (format!("http://127.0.0.1:{port}/in"), "address not allowed"),
        (
            format!("http://[::ffff:127.0.0.1]:{port}/in"),
            "address not allowed",
        ),
        (
            format!("http://[64:ff9b::7f00:1]:{port}/in"),
            "address not allowed",
        ),
        // A name that resolves only to loopback: refused by the resolver, at connect time.
        (format!("http://localhost:{port}/in"), "address not allowed"),
        // RFC 6761: never resolves.
        (
            "http://no-such-receiver.invalid/in".to_owned(),
            "could not resolve host",
        ),
    ];
    let mut endpoints = Vec::new();
    for (url, _) in &cases {
        let created = create_endpoint(
            &mut events,
            "http://hooks.example.com/in",
            &["dispute.created"],
        )
        .await;
        let id = created.endpoint.unwrap().id;
        set_stored_url(&stack, &id, url).await;
        endpoints.push(id);
    }
    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_ssrf")).await;

    let errors = first_errors(&mut events, &endpoints).await;
    for ((url, expected), (status, error)) in cases.iter().zip(&errors) {
        assert_eq!((*status, error.as_str()), (0, *expected), "{url}");
        assert_no_detail(error);
    }
    assert!(
        receiver.received().is_empty(),
        "a refused address was reached"
    );
    println!(
        "refused deliveries with a fixed error phrase: {}",
        errors.len()
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_recorded_without_detail() {
    // The test setting: private addresses allowed, so 127.0.0.1 is dialled.
    let stack = stack_with(StackOptions::default()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut events = events_of(&stack, "acme").await;
    let created = create_endpoint(
        &mut events,
        &format!("http://127.0.0.1:{closed}/in"),
        &["dispute.created"],
    )
    .await;
    let id = created.endpoint.unwrap().id;
    let mut disputes = stack.disputes_of("acme").await;
    create(&mut disputes, merchant_dispute("", "ch_refused")).await;

    let errors = first_errors(&mut events, std::slice::from_ref(&id)).await;
    assert_eq!(errors, [(0, "connection refused".to_owned())]);
    assert_no_detail(&errors[0].1);
    println!(
        "refused connections recorded as a fixed phrase: {}",
        errors.len()
    );
    stack.stop().await;
}
