//! An OTLP/gRPC receiver that costs little: it accepts the services' exported spans and
//! metrics and throws them away, counting the spans (and metric export requests) so a
//! benchmark can show that traces really were exported while it measured.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Default)]
struct Counts {
    spans: AtomicU64,
    trace_exports: AtomicU64,
    metric_exports: AtomicU64,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.0.spans.fetch_add(spans as u64, Ordering::Relaxed);
        self.0.trace_exports.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        _request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.metric_exports.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

/// The sink, serving on 127.0.0.1 until dropped.
pub struct OtlpSink {
    addr: SocketAddr,
    counts: Arc<Counts>,
    server: tokio::task::JoinHandle<()>,
}

impl OtlpSink {
    /// Binds 127.0.0.1:0 and serves the OTLP trace and metrics services.
    pub async fn start() -> anyhow::Result<OtlpSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let receiver = Receiver::default();
        let counts = receiver.0.clone();
        let server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver.clone()))
                .add_service(MetricsServiceServer::new(receiver))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
            if let Err(error) = served {
                eprintln!("OTLP sink stopped: {error}");
            }
        });
        Ok(OtlpSink {
            addr,
            counts,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, the value of `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Spans received so far.
    pub fn spans(&self) -> u64 {
        self.counts.spans.load(Ordering::Relaxed)
    }

    /// Trace export requests received so far (batches of spans).
    pub fn trace_exports(&self) -> u64 {
        self.counts.trace_exports.load(Ordering::Relaxed)
    }

    /// Metric export requests received so far.
    pub fn metric_exports(&self) -> u64 {
        self.counts.metric_exports.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    use super::*;

    #[tokio::test]
    async fn counts_the_spans_it_receives() {
        let sink = OtlpSink::start().await.unwrap();
        let mut client = TraceServiceClient::connect(sink.endpoint()).await.unwrap();
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span::default(), Span::default(), Span::default()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        client.export(request.clone()).await.unwrap();
        client.export(request).await.unwrap();
        assert_eq!(sink.spans(), 6);
        assert_eq!(sink.trace_exports(), 2);
        assert_eq!(sink.metric_exports(), 0);
    }
}
