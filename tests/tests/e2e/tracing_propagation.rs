//! One trace id spans dispute-core's and document-store's spans for a GetDispute call,
//! checked with an OTLP receiver running in the test.

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
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let telemetry = e2e::init_test_telemetry(Some(endpoint)).expect("telemetry installs once");

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
            .find(|s| s.name == "documents.v1.DocumentService/ListDocuments")
            .cloned();
        if get_span.is_some() && list_span.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let get_span = get_span.expect("dispute-core exported its GetDispute span");
    let list_span = list_span.expect("document-store exported its ListDocuments span");

    assert_eq!(hex::encode(&get_span.trace_id), caller_trace_id);
    assert_eq!(
        list_span.trace_id, get_span.trace_id,
        "document-store's span is in dispute-core's trace"
    );
    assert!(!list_span.parent_span_id.is_empty());
    assert_eq!(attribute(&get_span, "tenant_id").as_deref(), Some("acme"));
    assert_eq!(attribute(&list_span, "tenant_id").as_deref(), Some("acme"));
    assert_eq!(attribute(&get_span, "rpc.system").as_deref(), Some("grpc"));

    stack.stop().await;
    telemetry.shutdown();
    server.abort();
}
