//! Tracing setup: JSON logs with trace ids, and OpenTelemetry spans exported over OTLP when
//! the standard `OTEL_EXPORTER_OTLP_*` variables ask for it.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How to set up telemetry for one process.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// `service.name` unless `OTEL_SERVICE_NAME` is set.
    pub service_name: String,
    /// Write JSON log lines to stdout (off in tests unless `TEST_LOG=1`).
    pub json_logs: bool,
    /// OTLP/gRPC endpoint; `None` reads `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (and `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); no endpoint means spans are not exported.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryOptions {
    pub fn for_service(service_name: &str) -> Self {
        Self {
            service_name: service_name.to_owned(),
            json_logs: true,
            otlp_endpoint: None,
        }
    }
}

/// Flushes spans on shutdown.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Flushes buffered spans to the exporter.
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }

    pub fn shutdown(self) {
        let _ = self.provider.shutdown();
    }
}

fn env_endpoint_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v == "none");
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// Installs the global subscriber, tracer provider and W3C propagator. Must run inside a
/// tokio runtime (the OTLP exporter uses tonic). Fails if a subscriber is already set.
pub fn init(options: TelemetryOptions) -> anyhow::Result<TelemetryGuard> {
    use opentelemetry_otlp::WithExportConfig;

    global::set_text_map_propagator(TraceContextPropagator::new());

    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| options.service_name.clone());
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    let exporter = match &options.otlp_endpoint {
        Some(endpoint) => Some(
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()?,
        ),
        None if env_endpoint_configured() => Some(
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?,
        ),
        None => None,
    };
    if let Some(exporter) = exporter {
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(options.service_name.clone());

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = options.json_logs.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .with_filter(filter)
    });
    // Spans go to OpenTelemetry whatever RUST_LOG says about log lines.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init()?;
    Ok(TelemetryGuard { provider })
}
