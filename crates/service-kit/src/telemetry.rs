//! Telemetry setup: JSON log lines that carry the trace and span ids, OpenTelemetry spans and
//! metrics exported over OTLP when the standard `OTEL_EXPORTER_OTLP_*` variables ask for it,
//! and optionally a Prometheus scrape endpoint for the metrics.

use std::net::SocketAddr;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::prometheus::{PrometheusExporter, serve_prometheus};

/// The log filter of a process without `RUST_LOG` (the deployed default).
pub const DEFAULT_LOG_FILTER: &str = "info";

/// How to set up telemetry for one process.
#[derive(Debug, Clone)]
pub struct TelemetryOptions {
    /// `service.name` unless `OTEL_SERVICE_NAME` is set.
    pub service_name: String,
    /// Write JSON log lines to stdout (off in tests unless `TEST_LOG=1`).
    pub json_logs: bool,
    /// OTLP/gRPC endpoint of spans and metrics; `None` reads `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// (and `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `..._METRICS_ENDPOINT`); no endpoint
    /// means nothing is exported over OTLP.
    pub otlp_endpoint: Option<String>,
    /// Serve the metrics in the Prometheus text format on `http://ADDR/metrics`.
    pub prometheus_addr: Option<SocketAddr>,
}

impl TelemetryOptions {
    pub fn for_service(service_name: &str) -> Self {
        Self {
            service_name: service_name.to_owned(),
            json_logs: true,
            otlp_endpoint: None,
            prometheus_addr: None,
        }
    }
}

/// Flushes spans and metrics on shutdown.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    meters: Option<SdkMeterProvider>,
    prometheus: Option<tokio::task::JoinHandle<()>>,
}

impl TelemetryGuard {
    /// Flushes buffered spans and metrics to the exporters.
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
        if let Some(meters) = &self.meters {
            let _ = meters.force_flush();
        }
    }

    pub fn shutdown(self) {
        let _ = self.provider.shutdown();
        if let Some(meters) = &self.meters {
            let _ = meters.shutdown();
        }
        if let Some(prometheus) = self.prometheus {
            prometheus.abort();
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn env_endpoint_configured(signal: &str) -> bool {
    let disabled = std::env::var(format!("OTEL_{signal}_EXPORTER")).is_ok_and(|v| v == "none");
    !disabled
        && (env_set("OTEL_EXPORTER_OTLP_ENDPOINT")
            || env_set(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")))
}

/// Installs the global subscriber, tracer and meter providers and the W3C propagator. Must
/// run inside a tokio runtime (the OTLP exporters use tonic; the Prometheus endpoint is a
/// task). Fails if a subscriber is already set.
/// TLS for an `https://` OTLP endpoint (the option, else `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`,
/// else `OTEL_EXPORTER_OTLP_ENDPOINT`): the system roots plus the PEM bundle named by
/// `OTEL_EXPORTER_OTLP_<SIGNAL>_CERTIFICATE` or `OTEL_EXPORTER_OTLP_CERTIFICATE`.
fn otlp_tls(
    endpoint: Option<&str>,
    signal: &str,
) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    let from_env = |name: String| std::env::var(name).ok().filter(|v| !v.is_empty());
    let endpoint = endpoint
        .map(str::to_owned)
        .or_else(|| from_env(format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")))
        .or_else(|| from_env("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned()));
    if !endpoint.is_some_and(|e| e.starts_with("https://")) {
        return Ok(None);
    }
    let ca = crate::tls::env_path(&format!("OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE"))
        .or_else(|| crate::tls::env_path("OTEL_EXPORTER_OTLP_CERTIFICATE"));
    Ok(Some(crate::tls::client_config(ca.as_deref())?))
}

/// The trace sampler `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` ask for, with the
/// OpenTelemetry defaults: unset or empty means `parentbased_always_on`; a ratio sampler
/// without an argument samples everything (ratio 1.0).
#[derive(Debug, Clone, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

impl SamplerChoice {
    /// Parses the two variables' values. Unlike the SDK, which logs an unknown name or a bad
    /// ratio and falls back to sampling everything, this refuses them: a typo in a
    /// production sampler would otherwise silently export every trace.
    pub fn parse(sampler: Option<&str>, arg: Option<&str>) -> anyhow::Result<SamplerChoice> {
        let sampler = sampler.map(str::trim).filter(|s| !s.is_empty());
        let arg = arg.map(str::trim).filter(|a| !a.is_empty());
        let ratio = || -> anyhow::Result<f64> {
            let Some(arg) = arg else {
                return Ok(1.0);
            };
            match arg.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => anyhow::bail!(
                    "OTEL_TRACES_SAMPLER_ARG={arg:?}: expected a sampling ratio from 0.0 to 1.0"
                ),
            }
        };
        Ok(match sampler.unwrap_or("parentbased_always_on") {
            "always_on" => SamplerChoice::AlwaysOn,
            "always_off" => SamplerChoice::AlwaysOff,
            "traceidratio" => SamplerChoice::TraceIdRatio(ratio()?),
            "parentbased_always_on" => SamplerChoice::ParentBasedAlwaysOn,
            "parentbased_always_off" => SamplerChoice::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => SamplerChoice::ParentBasedTraceIdRatio(ratio()?),
            other => anyhow::bail!(
                "OTEL_TRACES_SAMPLER={other:?} is not supported; use always_on, always_off, \
                 traceidratio, parentbased_always_on, parentbased_always_off or \
                 parentbased_traceidratio"
            ),
        })
    }

    /// From the process environment.
    pub fn from_env() -> anyhow::Result<SamplerChoice> {
        let var = |name| std::env::var(name).ok();
        SamplerChoice::parse(
            var("OTEL_TRACES_SAMPLER").as_deref(),
            var("OTEL_TRACES_SAMPLER_ARG").as_deref(),
        )
    }

    fn sampler(&self) -> Sampler {
        match *self {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::TraceIdRatio(r) => Sampler::TraceIdRatioBased(r),
            SamplerChoice::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
            SamplerChoice::ParentBasedAlwaysOff => {
                Sampler::ParentBased(Box::new(Sampler::AlwaysOff))
            }
            SamplerChoice::ParentBasedTraceIdRatio(r) => {
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(r)))
            }
        }
    }
}

pub fn init(options: TelemetryOptions) -> anyhow::Result<TelemetryGuard> {
    use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};

    // Checked first, so a bad sampler fails start-up before anything is installed.
    let sampler = SamplerChoice::from_env()?;
    global::set_text_map_propagator(TraceContextPropagator::new());

    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| options.service_name.clone());
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let mut provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_sampler(sampler.sampler());
    let exporter = if options.otlp_endpoint.is_some() || env_endpoint_configured("TRACES") {
        let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
        if let Some(endpoint) = &options.otlp_endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(tls) = otlp_tls(options.otlp_endpoint.as_deref(), "TRACES")? {
            builder = builder.with_tls_config(tls);
        }
        Some(builder.build()?)
    } else {
        None
    };
    if let Some(exporter) = exporter {
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(options.service_name.clone());

    // Metrics: over OTLP like the spans (every OTEL_METRIC_EXPORT_INTERVAL ms, 60 s unless
    // set), and/or pulled by Prometheus.
    let metric_exporter = if options.otlp_endpoint.is_some() || env_endpoint_configured("METRICS") {
        let mut builder = opentelemetry_otlp::MetricExporter::builder().with_tonic();
        if let Some(endpoint) = &options.otlp_endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        if let Some(tls) = otlp_tls(options.otlp_endpoint.as_deref(), "METRICS")? {
            builder = builder.with_tls_config(tls);
        }
        Some(builder.build()?)
    } else {
        None
    };
    let prometheus_exporter = options
        .prometheus_addr
        .map(|_| PrometheusExporter::default());
    let meters = (metric_exporter.is_some() || prometheus_exporter.is_some()).then(|| {
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        if let Some(exporter) = metric_exporter {
            builder = builder.with_reader(PeriodicReader::builder(exporter).build());
        }
        if let Some(exporter) = &prometheus_exporter {
            builder = builder.with_reader(
                PeriodicReader::builder(exporter.clone())
                    .with_interval(std::time::Duration::from_secs(5))
                    .build(),
            );
        }
        builder.build()
    });
    if let Some(meters) = &meters {
        global::set_meter_provider(meters.clone());
    }
    let prometheus = match (options.prometheus_addr, prometheus_exporter, &meters) {
        (Some(addr), Some(exporter), Some(meters)) => {
            Some(serve_prometheus(addr, exporter, meters.clone())?)
        }
        _ => None,
    };

    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let logs = options.json_logs.then(|| {
        tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(TraceJson)
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
    Ok(TelemetryGuard {
        provider,
        meters,
        prometheus,
    })
}

/// One JSON object per line: `timestamp`, `level`, `target`, the event's fields (`message`
/// included) at the top level, `trace_id` and `span_id` of the innermost exported span
/// around the event (so a line can be found from a trace and back), and `span` (the
/// current span's name and fields).
struct TraceJson;

impl<S, N> FormatEvent<S, N> for TraceJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let metadata = event.metadata();
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".to_owned(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".to_owned(), metadata.level().as_str().into());
        line.insert("target".to_owned(), metadata.target().into());
        event.record(&mut JsonVisitor(&mut line));
        if let Some(scope) = ctx.event_scope() {
            let mut current = true;
            let mut ids_found = false;
            for span in scope {
                let extensions = span.extensions();
                if current {
                    current = false;
                    let mut fields = extensions
                        .get::<FormattedFields<N>>()
                        .and_then(|f| serde_json::from_str::<serde_json::Map<_, _>>(&f.fields).ok())
                        .unwrap_or_default();
                    fields.insert("name".to_owned(), span.name().into());
                    line.insert("span".to_owned(), fields.into());
                }
                if let Some(otel) = extensions.get::<tracing_opentelemetry::OtelData>()
                    && let (Some(trace_id), Some(span_id)) = (otel.trace_id(), otel.span_id())
                    && trace_id != opentelemetry::TraceId::INVALID
                {
                    line.insert("trace_id".to_owned(), trace_id.to_string().into());
                    line.insert("span_id".to_owned(), span_id.to_string().into());
                    ids_found = true;
                }
                if ids_found {
                    break;
                }
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// An event's fields into a JSON object.
struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.into());
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.0
            .insert(field.name().to_owned(), value.to_string().into());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::SamplerChoice::{self, *};

    fn parse(sampler: Option<&str>, arg: Option<&str>) -> anyhow::Result<SamplerChoice> {
        SamplerChoice::parse(sampler, arg)
    }

    #[test]
    fn unset_or_empty_is_parent_based_always_on() {
        assert_eq!(parse(None, None).unwrap(), ParentBasedAlwaysOn);
        assert_eq!(parse(Some(" "), Some("0.5")).unwrap(), ParentBasedAlwaysOn);
    }

    #[test]
    fn every_named_sampler_parses() {
        assert_eq!(parse(Some("always_on"), None).unwrap(), AlwaysOn);
        assert_eq!(parse(Some("always_off"), None).unwrap(), AlwaysOff);
        assert_eq!(
            parse(Some("parentbased_always_off"), None).unwrap(),
            ParentBasedAlwaysOff
        );
        assert_eq!(
            parse(Some("traceidratio"), Some("0.25")).unwrap(),
            TraceIdRatio(0.25)
        );
        assert_eq!(
            parse(Some("parentbased_traceidratio"), Some(" 0.1 ")).unwrap(),
            ParentBasedTraceIdRatio(0.1)
        );
    }

    #[test]
    fn a_ratio_sampler_without_an_argument_samples_everything() {
        assert_eq!(
            parse(Some("parentbased_traceidratio"), None).unwrap(),
            ParentBasedTraceIdRatio(1.0)
        );
        assert_eq!(
            parse(Some("traceidratio"), Some("")).unwrap(),
            TraceIdRatio(1.0)
        );
    }

    #[test]
    fn unknown_samplers_and_bad_ratios_are_refused_with_the_variable_named() {
        let error = parse(Some("parentbased_ratio"), None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("OTEL_TRACES_SAMPLER=\"parentbased_ratio\""),
            "{error}"
        );
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            let error = parse(Some("traceidratio"), Some(bad))
                .unwrap_err()
                .to_string();
            assert!(error.contains("OTEL_TRACES_SAMPLER_ARG"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_argument_of_a_sampler_without_a_ratio_is_ignored() {
        assert_eq!(
            parse(Some("always_on"), Some("nonsense")).unwrap(),
            AlwaysOn
        );
    }
}
