//! A Prometheus scrape endpoint for clusters without an OpenTelemetry Collector: `GET
//! /metrics` collects the OpenTelemetry metrics on demand and writes them in the Prometheus
//! text format (names with dots become underscores, `ms` histograms get `_milliseconds`,
//! `By` ones `_bytes`, monotonic sums `_total`).

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{SdkMeterProvider, Temporality};

/// Keeps the latest collection, as Prometheus text, for the endpoint to serve. It runs
/// under a `PeriodicReader` (every few seconds, and on each scrape through
/// `force_flush`), with cumulative temporality, so the latest collection holds the totals.
#[derive(Debug, Clone, Default)]
pub(crate) struct PrometheusExporter {
    pub(crate) latest: Arc<Mutex<String>>,
}

impl PushMetricExporter for PrometheusExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let text = encode(metrics);
        if let Ok(mut latest) = self.latest.lock() {
            *latest = text;
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// Binds `addr` and serves `/metrics` until aborted: each scrape collects first (through
/// `provider.force_flush`), then answers the exporter's latest text.
pub(crate) fn serve_prometheus(
    addr: SocketAddr,
    exporter: PrometheusExporter,
    provider: SdkMeterProvider,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("bind the metrics endpoint on {addr}"))?;
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    tracing::info!(metrics_addr = %addr, "serving metrics for Prometheus on /metrics");
    Ok(tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let exporter = exporter.clone();
            let provider = provider.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let exporter = exporter.clone();
                    let provider = provider.clone();
                    async move { Ok::<_, Infallible>(respond(&request, exporter, provider).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }))
}

async fn respond<B>(
    request: &http::Request<B>,
    exporter: PrometheusExporter,
    provider: SdkMeterProvider,
) -> http::Response<String> {
    if request.uri().path() != "/metrics" {
        let mut response = http::Response::new("not found\n".to_owned());
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        return response;
    }
    // The periodic reader collects on its own thread; wait for it off the runtime.
    let _ = tokio::task::spawn_blocking(move || provider.force_flush()).await;
    let text = exporter
        .latest
        .lock()
        .map(|latest| latest.clone())
        .unwrap_or_default();
    let mut response = http::Response::new(text);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn unit_suffix(unit: &str) -> &'static str {
    match unit {
        "ms" => "_milliseconds",
        "s" => "_seconds",
        "By" => "_bytes",
        _ => "",
    }
}

fn labels<'a>(
    attributes: impl Iterator<Item = &'a KeyValue>,
    extra: Option<(&str, String)>,
) -> String {
    let mut pairs: Vec<String> = attributes
        .map(|kv| {
            let value = kv.value.to_string();
            format!("{}=\"{}\"", sanitize(kv.key.as_str()), escape(&value))
        })
        .collect();
    if let Some((key, value)) = extra {
        pairs.push(format!("{key}=\"{value}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

trait Number: Copy {
    fn as_f64(self) -> f64;
}

impl Number for f64 {
    fn as_f64(self) -> f64 {
        self
    }
}

impl Number for u64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Number for i64 {
    fn as_f64(self) -> f64 {
        self as f64
    }
}

fn encode_data<T: Number>(out: &mut String, base: &str, help: &str, data: &MetricData<T>) {
    match data {
        MetricData::Gauge(gauge) => {
            let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} gauge");
            for point in gauge.data_points() {
                let _ = writeln!(
                    out,
                    "{base}{} {}",
                    labels(point.attributes(), None),
                    point.value().as_f64()
                );
            }
        }
        MetricData::Sum(sum) => {
            let (name, kind) = if sum.is_monotonic() {
                (format!("{base}_total"), "counter")
            } else {
                (base.to_owned(), "gauge")
            };
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for point in sum.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(point.attributes(), None),
                    point.value().as_f64()
                );
            }
        }
        MetricData::Histogram(histogram) => {
            let _ = writeln!(out, "# HELP {base} {help}\n# TYPE {base} histogram");
            for point in histogram.data_points() {
                let mut cumulative = 0u64;
                let bounds: Vec<f64> = point.bounds().collect();
                for (index, count) in point.bucket_counts().enumerate() {
                    cumulative += count;
                    let le = bounds
                        .get(index)
                        .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                    let _ = writeln!(
                        out,
                        "{base}_bucket{} {cumulative}",
                        labels(point.attributes(), Some(("le", le)))
                    );
                }
                let attributes = labels(point.attributes(), None);
                let _ = writeln!(out, "{base}_sum{attributes} {}", point.sum().as_f64());
                let _ = writeln!(out, "{base}_count{attributes} {}", point.count());
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

/// The Prometheus text exposition of `metrics`.
pub(crate) fn encode(metrics: &ResourceMetrics) -> String {
    let mut out = String::new();
    for scope in metrics.scope_metrics() {
        for metric in scope.metrics() {
            let base = format!("{}{}", sanitize(metric.name()), unit_suffix(metric.unit()));
            let help = escape(metric.description());
            match metric.data() {
                AggregatedMetrics::F64(data) => encode_data(&mut out, &base, &help, data),
                AggregatedMetrics::U64(data) => encode_data(&mut out, &base, &help, data),
                AggregatedMetrics::I64(data) => encode_data(&mut out, &base, &help, data),
            }
        }
    }
    out
}
