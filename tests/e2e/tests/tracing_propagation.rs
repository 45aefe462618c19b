//! Spans as an OTLP receiver running in the test sees them: one trace id across
//! dispute-core (server and client spans) and document-store for a GetDispute call; a
//! streamed download's span lasting until the stream ends, with an error sent in the
//! trailers recorded as one; status codes per the RPC conventions; the upload span's
//! document id.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio_stream::wrappers::TcpListenerStream;

use crate::fixtures::*;

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Starts a receiver on a free port; returns it with its endpoint URL.
async fn start_receiver() -> (Receiver, String, tokio::task::JoinHandle<()>) {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn({
        let receiver = receiver.clone();
        async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        }
    });
    (receiver, endpoint, server)
}

/// Flushes until a span named `name` matching `pred` was exported.
async fn wait_for_span(
    receiver: &Receiver,
    telemetry: &service_kit::telemetry::TelemetryGuard,
    name: &str,
    pred: impl Fn(&Span) -> bool,
) -> Span {
    for _ in 0..200 {
        telemetry.flush();
        if let Some(span) = receiver
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.name == name && pred(s))
        {
            return span.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no span {name} exported");
}

fn exported(receiver: &Receiver, name: &str) -> usize {
    receiver
        .spans
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.name == name)
        .count()
}

/// OTLP span status code ERROR.
const STATUS_ERROR: i32 = 2;
/// OTLP span kinds.
const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;

fn status_code(span: &Span) -> i32 {
    span.status.as_ref().map_or(0, |s| s.code)
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        a.value.as_ref().and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_both_services_for_get_dispute() {
    let (receiver, endpoint, server) = start_receiver().await;
    let telemetry = harness::init_test_telemetry(Some(endpoint)).expect("telemetry installs once");

    // After the telemetry above: the fixture's own installation is then a no-op.
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(&mut disputes, merchant_dispute("", "ch_trace")).await;

    // The caller's own trace context is honoured, too.
    let caller_trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(dpb::GetDisputeRequest { id: dispute.id });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{caller_trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    disputes.get_dispute(request).await.unwrap();

    let mut get_span = None;
    let mut list_span = None;
    for _ in 0..100 {
        telemetry.flush();
        let spans = receiver.spans.lock().unwrap().clone();
        get_span = spans
            .iter()
            .find(|s| s.name == "disputes.v1.DisputeService/GetDispute")
            .cloned();
        list_span = spans
            .iter()
            .find(|s| {
                s.name == "documents.v1.DocumentService/ListDocuments" && s.kind == KIND_SERVER
            })
            .cloned();
        if get_span.is_some() && list_span.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let get_span = get_span.expect("dispute-core exported its GetDispute span");
    let list_span = list_span.expect("document-store exported its ListDocuments span");
    let client_span = wait_for_span(
        &receiver,
        &telemetry,
        "documents.v1.DocumentService/ListDocuments",
        |s| s.kind == KIND_CLIENT,
    )
    .await;

    assert_eq!(hex::encode(&get_span.trace_id), caller_trace_id);
    assert_eq!(
        list_span.trace_id, get_span.trace_id,
        "document-store's span is in dispute-core's trace"
    );
    assert_eq!(list_span.kind, KIND_SERVER);
    assert_eq!(
        client_span.parent_span_id, get_span.span_id,
        "dispute-core's client span is a child of its GetDispute span"
    );
    assert_eq!(
        list_span.parent_span_id, client_span.span_id,
        "document-store's server span is a child of dispute-core's client span"
    );
    assert_eq!(
        attribute(&client_span, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(
        attribute(&list_span, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_eq!(
        attribute(&client_span, "rpc.method").as_deref(),
        Some("ListDocuments")
    );
    assert_eq!(attribute(&get_span, "tenant_id").as_deref(), Some("acme"));
    assert_eq!(attribute(&list_span, "tenant_id").as_deref(), Some("acme"));
    assert_eq!(attribute(&get_span, "rpc.system").as_deref(), Some("grpc"));

    stack.stop().await;
    telemetry.shutdown();
    server.abort();
}

/// A download large enough that the server cannot send it all before the client reads:
/// bigger than the client's HTTP/2 window and every socket buffer on the way from S3.
const BIG: usize = 40 * MIB;

/// A documents client whose HTTP/2 stream window is small: the server's stream waits for
/// this client to read.
async fn slow_reader(addr: std::net::SocketAddr, token: &str) -> harness::DocumentsClient {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .initial_stream_window_size(Some(64 * 1024))
        .initial_connection_window_size(Some(64 * 1024))
        .connect()
        .await
        .unwrap();
    disputes_proto::documents_v1::document_service_client::DocumentServiceClient::with_interceptor(
        channel,
        harness::Bearer::new(Some(token)).unwrap(),
    )
    .max_decoding_message_size(8 * MIB)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_spans_last_until_the_end_and_carry_the_real_status() {
    use disputes_proto::documents_v1 as pb;

    let (receiver, endpoint, server) = start_receiver().await;
    let telemetry = harness::init_test_telemetry(Some(endpoint)).expect("telemetry installs once");
    // document-store reaches S3 through a proxy the test can cut mid-download.
    let s3_port = harness::private_postgres::free_port().unwrap();
    let s3_addr: std::net::SocketAddr = format!("127.0.0.1:{s3_port}").parse().unwrap();
    let s3_proxy = harness::CuttableProxy::start(s3_addr).await.unwrap();
    let stack = stack_with(harness::StackOptions {
        s3_addr: Some(s3_addr),
        document_store_s3_endpoint: Some(format!("http://{}", s3_proxy.addr)),
        max_upload_bytes: 64 * MIB as u64,
        ..Default::default()
    })
    .await;
    let mut documents = stack.documents_of("acme").await;

    // The upload span declares document_id, so the id recorded on it is exported.
    let bytes = pdf_of_size(BIG);
    let document = upload(&mut documents, header("big.pdf", "application/pdf"), &bytes)
        .await
        .unwrap();
    let upload_span = wait_for_span(&receiver, &telemetry, "documents.upload", |_| true).await;
    assert_eq!(
        attribute(&upload_span, "document_id").as_deref(),
        Some(document.id.as_str())
    );
    assert_eq!(
        attribute(&upload_span, "tenant_id").as_deref(),
        Some("acme")
    );

    // NOT_FOUND is the caller's problem: the code is recorded, the server span is no error.
    let missing = documents
        .get_document(pb::GetDocumentRequest {
            id: domain_kit::ids::DocumentId::generate().to_string(),
        })
        .await
        .unwrap_err();
    let get_span = wait_for_span(
        &receiver,
        &telemetry,
        "documents.v1.DocumentService/GetDocument",
        |_| true,
    )
    .await;
    assert_eq!(
        attribute(&get_span, "rpc.grpc.status_code"),
        Some((missing.code() as i32).to_string())
    );
    assert_ne!(status_code(&get_span), STATUS_ERROR);

    // A download's span stays open while its stream is being sent.
    let download = "documents.v1.DocumentService/DownloadDocument";
    let token = stack.full_token("acme");
    let mut reader = slow_reader(stack.document_store_addr, &token).await;
    let mut stream = reader
        .download_document(pb::DownloadDocumentRequest {
            id: document.id.clone(),
            offset: 0,
            length: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().expect("a first message");
    assert!(first.document.is_some());
    telemetry.flush();
    assert_eq!(
        exported(&receiver, download),
        0,
        "the download span ended before its stream was sent"
    );
    let mut received = first.chunk.len();
    while let Some(message) = stream.message().await.unwrap() {
        received += message.chunk.len();
    }
    assert_eq!(received, BIG);
    let ok_span = wait_for_span(&receiver, &telemetry, download, |_| true).await;
    assert_eq!(
        attribute(&ok_span, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    assert_ne!(status_code(&ok_span), STATUS_ERROR);

    // An error sent in the stream's trailers (S3 cut off mid-download) is an error.
    let mut stream = reader
        .download_document(pb::DownloadDocumentRequest {
            id: document.id.clone(),
            offset: 0,
            length: 0,
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().expect("a first message");
    s3_proxy.cut();
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the download cannot complete once S3 is cut off"),
            Err(status) => break status,
        }
    };
    let failed_span = wait_for_span(&receiver, &telemetry, download, |s| {
        attribute(s, "rpc.grpc.status_code").as_deref() != Some("0")
    })
    .await;
    assert_eq!(
        attribute(&failed_span, "rpc.grpc.status_code"),
        Some((status.code() as i32).to_string()),
        "the span has the code the client got ({status:?})"
    );
    assert_eq!(status_code(&failed_span), STATUS_ERROR, "{status:?}");

    stack.stop().await;
    telemetry.shutdown();
    server.abort();
}
