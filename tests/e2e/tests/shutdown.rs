//! Graceful shutdown: an upload in flight when shutdown starts still completes within the
//! drain bound, and new connections are refused afterwards.

use std::time::Duration;

use harness::StackOptions;

use crate::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_upload_drains_on_shutdown() {
    let stack = stack_with(StackOptions {
        drain_timeout_secs: 10,
        ..Default::default()
    })
    .await;
    let bytes = pdf_of_size(3 * MIB);
    let messages = upload_messages(header("slow.pdf", "application/pdf"), &bytes, MIB);

    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut client = stack.documents_of("acme").await;
    let call = tokio::spawn(async move {
        client
            .upload_document(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let mut messages = messages.into_iter();
    for message in messages.by_ref().take(2) {
        tx.send(message).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stack.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for message in messages {
        tx.send(message).await.unwrap();
    }
    drop(tx);
    let document = call.await.unwrap().unwrap().into_inner().document.unwrap();
    assert_eq!(document.size_bytes, bytes.len() as i64);
    assert_eq!(document.sha256, sha256_hex(&bytes));

    // New connections are refused once shutdown started.
    let refused =
        tonic::transport::Endpoint::from_shared(format!("http://{}", stack.document_store_addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await;
    let health = match refused {
        Err(_) => false,
        Ok(channel) => {
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
            client
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok_and(|r| r.into_inner().status == 1)
        }
    };
    assert!(
        !health,
        "a stopping server must not report SERVING to new callers"
    );
    stack.stop().await;
}
