//! W3C trace context over gRPC, and one span per call on both sides.
//!
//! [`GrpcServerTraceLayer`] opens a server span per RPC with the caller's `traceparent` as
//! parent; [`GrpcClientTraceLayer`] opens a client span per outgoing call and sends its
//! context. Both keep the span open until the response body has been sent or received (a
//! streamed download included) and take the gRPC status from the trailers, or from the
//! headers of a trailers-only answer, so an error sent at the end of a stream is recorded
//! as one. The status follows the OpenTelemetry RPC conventions: `rpc.grpc.status_code` on
//! every span; span status ERROR on a server span for UNKNOWN, DEADLINE_EXCEEDED,
//! UNIMPLEMENTED, INTERNAL, UNAVAILABLE and DATA_LOSS, and on a client span for every code
//! but OK. The server layer also writes the access log (one line per RPC) and the RPC
//! metrics.
//!
//! tower-http's `TraceLayer` with its gRPC classifier was considered: it keeps the span for
//! the body and reads trailers, but it cannot join the caller's trace, record the tenant
//! the auth interceptor finds, or classify per the RPC conventions without a callback for
//! each of these; the layer below does the whole job in one place.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{InFlight, RpcMetrics};

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Writes the current span's trace context into outgoing request metadata.
pub fn inject_current_context(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut MetadataInjector(metadata));
    });
}

/// Client interceptor that carries the current trace context to the callee (without a
/// client span: prefer [`GrpcClientTraceLayer`]).
#[derive(Clone, Copy, Default)]
pub struct TraceContextInterceptor;

impl tonic::service::Interceptor for TraceContextInterceptor {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        inject_current_context(request.metadata_mut());
        Ok(request)
    }
}

/// The tenant of the call, set by the auth interceptor once it knows it; the server layer
/// puts one in every request's extensions and writes it to the access log and the span.
#[derive(Clone, Default, Debug)]
pub struct CallTenant(Arc<OnceLock<String>>);

impl CallTenant {
    /// Records `tenant_id` as the call's tenant (the first one set wins).
    pub fn set(&self, tenant_id: &str) {
        let _ = self.0.set(tenant_id.to_owned());
    }

    pub fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

/// Whether a server span with this gRPC code is an error (OpenTelemetry RPC conventions).
pub fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

/// The canonical name of a gRPC status code, as in the access log.
pub fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
}

/// `/pkg.Service/Method` → (`pkg.Service/Method`, `pkg.Service`, `Method`).
fn split_path(path: &str) -> (String, String, String) {
    let method = path.trim_start_matches('/');
    let (service, rpc) = method.split_once('/').unwrap_or((method, ""));
    (method.to_owned(), service.to_owned(), rpc.to_owned())
}

/// Health checks and reflection would only add noise to traces, logs and metrics.
fn is_untraced(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

/// Which side of the call a span is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// What happens when a call ends: the span gets its status, the server writes its access
/// log line and metrics. Runs once, when the trailers arrive, the body ends, or the body is
/// dropped (a trailers-only answer, or a call cut off).
struct CallEnd {
    side: Side,
    span: tracing::Span,
    started: Instant,
    method: String,
    service: String,
    rpc: String,
    /// grpc-status of a trailers-only answer.
    header_code: Option<i32>,
    tenant: CallTenant,
    access_log: bool,
    metrics: Option<RpcMetrics>,
    /// Counts the call in flight until it ends.
    in_flight: Option<InFlight>,
    done: bool,
}

impl Drop for CallEnd {
    /// A call dropped before its status arrived was cut off (client gone, connection lost).
    fn drop(&mut self) {
        self.finish(None, true);
    }
}

impl CallEnd {
    fn finish(&mut self, trailer_code: Option<i32>, cut_off: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.in_flight = None;
        // A body that ends without a status was cut off: the peer went away (CANCELLED).
        let code = trailer_code
            .or(self.header_code)
            .unwrap_or(if cut_off { 1 } else { 2 });
        let elapsed = self.started.elapsed();
        self.span.record("rpc.grpc.status_code", code);
        let error = match self.side {
            Side::Server => is_server_error(code),
            Side::Client => code != 0,
        };
        if error {
            self.span.record("otel.status_code", "ERROR");
            self.span.record("otel.status_message", code_name(code));
        }
        if self.side == Side::Client {
            return;
        }
        let tenant = self.tenant.get().unwrap_or("");
        if let Some(tenant) = self.tenant.get() {
            self.span.record("tenant_id", tenant);
        }
        if let Some(metrics) = &self.metrics {
            metrics.call_ended(&self.service, &self.rpc, code, elapsed);
        }
        if self.access_log {
            let _entered = self.span.enter();
            tracing::info!(
                target: "access",
                method = %self.method,
                code = code,
                status = code_name(code),
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                tenant_id = tenant,
                "rpc"
            );
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its call's span when the body ends, taking the status
    /// from the trailers.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        span: tracing::Span,
        end: Option<CallEnd>,
    }

}

impl<B> TracedBody<B> {
    fn new(inner: B, end: Option<CallEnd>) -> Self {
        let span = end
            .as_ref()
            .map_or_else(tracing::Span::none, |end| end.span.clone());
        Self { inner, span, end }
    }
}

impl<B: Body> Body for TracedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        // The body's own work (a download reading storage) happens inside the call's span.
        let frame = {
            let _entered = this.span.enter();
            ready!(this.inner.poll_frame(cx))
        };
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut end) = this.end.take()
                {
                    end.finish(grpc_status(trailers), false);
                    *this.span = tracing::Span::none();
                }
            }
            Some(Err(_)) => {
                if let Some(mut end) = this.end.take() {
                    // The stream broke: the status will never arrive.
                    end.finish(None, true);
                    *this.span = tracing::Span::none();
                }
            }
            None => {
                if let Some(mut end) = this.end.take() {
                    end.finish(None, false);
                    *this.span = tracing::Span::none();
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Server layer: one span per RPC named after the method, child of the caller's trace, open
/// until the response has been sent; plus the access log and RPC metrics.
#[derive(Clone, Default)]
pub struct GrpcServerTraceLayer {
    access_log: bool,
    metrics: Option<RpcMetrics>,
}

impl GrpcServerTraceLayer {
    /// `access_log`: one info line per RPC (target `access`); `metrics`: where the RPC
    /// metrics go.
    pub fn new(access_log: bool, metrics: Option<RpcMetrics>) -> Self {
        Self {
            access_log,
            metrics,
        }
    }
}

impl<S> Layer<S> for GrpcServerTraceLayer {
    type Service = GrpcServerTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServerTrace {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcServerTrace<S> {
    inner: S,
    layer: GrpcServerTraceLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResBody> Service<http::Request<B>> for GrpcServerTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        if is_untraced(&path) {
            let future = self.inner.call(request);
            return Box::pin(
                async move { Ok(future.await?.map(|body| TracedBody::new(body, None))) },
            );
        }
        let started = Instant::now();
        let (method, service, rpc) = split_path(&path);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %method,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %rpc,
            rpc.grpc.status_code = tracing::field::Empty,
            tenant_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        let parent = global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(request.headers()))
        });
        // An invalid or absent traceparent simply starts a new trace.
        let _ = span.set_parent(parent);
        let trace_id = span.context().span().span_context().trace_id();
        span.record("trace_id", tracing::field::display(trace_id));

        let tenant = CallTenant::default();
        request.extensions_mut().insert(tenant.clone());
        let in_flight = self
            .layer
            .metrics
            .as_ref()
            .map(|metrics| metrics.call_started(&service, &rpc));
        // Dropped with the future if the call is cut off before it answers.
        let mut end = CallEnd {
            side: Side::Server,
            span: span.clone(),
            started,
            method,
            service,
            rpc,
            header_code: None,
            tenant,
            access_log: self.layer.access_log,
            metrics: self.layer.metrics.clone(),
            in_flight,
            done: false,
        };
        // Enter the span while the inner service is called so the auth interceptor can
        // record the tenant on it.
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                match future.await {
                    Ok(response) => {
                        end.header_code = grpc_status(response.headers());
                        Ok(response.map(|body| TracedBody::new(body, Some(end))))
                    }
                    Err(error) => {
                        end.finish(Some(2), false);
                        Err(error)
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// Client layer for a channel: one client span per call (child of the current span), whose
/// context goes to the callee in `traceparent`, open until the response body has been read.
#[derive(Clone, Copy, Default)]
pub struct GrpcClientTraceLayer;

impl<S> Layer<S> for GrpcClientTraceLayer {
    type Service = GrpcClientTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClientTrace { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcClientTrace<S> {
    inner: S,
}

impl<S> GrpcClientTrace<S> {
    /// `inner` (e.g. a tonic `Channel`) with a client span per call.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S, B, ResBody> Service<http::Request<B>> for GrpcClientTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let (method, service, rpc) = split_path(request.uri().path());
        let span = tracing::info_span!(
            "grpc.client",
            otel.name = %method,
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            otel.status_message = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %rpc,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let context = span.context();
        global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut HeaderInjector(request.headers_mut()));
        });
        let mut end = CallEnd {
            side: Side::Client,
            span: span.clone(),
            started: Instant::now(),
            method,
            service,
            rpc,
            header_code: None,
            tenant: CallTenant::default(),
            access_log: false,
            metrics: None,
            in_flight: None,
            done: false,
        };
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                match future.await {
                    Ok(response) => {
                        end.header_code = grpc_status(response.headers());
                        Ok(response.map(|body| TracedBody::new(body, Some(end))))
                    }
                    Err(error) => {
                        // No answer at all: the transport failed.
                        end.finish(Some(14), false);
                        Err(error)
                    }
                }
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_follow_the_rpc_conventions() {
        let errors: Vec<i32> = (0..17).filter(|c| is_server_error(*c)).collect();
        assert_eq!(errors, vec![2, 4, 12, 13, 14, 15]);
        assert_eq!(code_name(5), "NOT_FOUND");
        assert_eq!(
            split_path("/documents.v1.DocumentService/DownloadDocument"),
            (
                "documents.v1.DocumentService/DownloadDocument".to_owned(),
                "documents.v1.DocumentService".to_owned(),
                "DownloadDocument".to_owned()
            )
        );
    }
}
