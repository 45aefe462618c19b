//! Logs and metrics of the services as operators get them: both services run in child
//! processes exactly as their `main.rs` runs them (config from the environment, telemetry,
//! JSON logs on stdout), exporting over OTLP to a receiver in this test and serving a
//! Prometheus endpoint.
//!
//! - every log line inside a span (request, store code, worker run) carries `trace_id` and
//!   `span_id` at the top level;
//! - one access-log line per RPC with method, status, duration and tenant, on by default
//!   (dispute-core) and off with `DOCUMENT_STORE_ACCESS_LOG=false` (document-store);
//! - the OTLP metrics `rpc.server.duration`, `rpc.server.active_requests`, upload, worker
//!   and pool metrics arrive with their attributes; `/metrics` answers the same in the
//!   Prometheus text format.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use disputes_proto::disputes_v1 as dpb;
use harness::private_postgres::free_port;
use harness::process::{SERVICE_PROCESS_ENV, Service, ServiceCommand, ServiceProcess};
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
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use secrecy::SecretString;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::fixtures::*;

const ENTRY_TEST: &str = "observability::service_process";
const TENANT: &str = "obs";
const JWT_SECRET: &str = "observability-jwt-secret-long-enough-0123456789";
const BUCKET: &str = "obs-documents";

/// Runs a service in this process when started by `harness::process::ServiceProcess`; does
/// nothing otherwise. Same steps as the services' `main.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "entry point of the service child processes of the observability tests"]
async fn service_process() {
    let Ok(service) = std::env::var(SERVICE_PROCESS_ENV) else {
        return;
    };
    let shutdown = CancellationToken::new();
    service_kit::server::cancel_on_signal(shutdown.clone());
    let result = match service.as_str() {
        "dispute-core" => {
            let config = dispute_core::Config::try_parse_from(["dispute-core"]).unwrap();
            let telemetry = service_kit::telemetry::init(config.telemetry_options()).unwrap();
            let listener = tokio::net::TcpListener::bind(config.listen_addr)
                .await
                .unwrap();
            let result = dispute_core::run(config, listener, shutdown).await;
            telemetry.shutdown();
            result
        }
        "document-store" => {
            let config = document_store::Config::try_parse_from(["document-store"]).unwrap();
            let telemetry = service_kit::telemetry::init(config.telemetry_options()).unwrap();
            let listener = tokio::net::TcpListener::bind(config.listen_addr)
                .await
                .unwrap();
            let result = document_store::run(config, listener, shutdown).await;
            telemetry.shutdown();
            result
        }
        other => panic!("unknown service {other}"),
    };
    result.unwrap();
}

/// An OTLP receiver for spans and metrics.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<usize>>,
    metrics: Arc<Mutex<Vec<(String, Metric)>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let count: usize = request
            .into_inner()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        *self.spans.lock().unwrap() += count;
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.metrics.lock().unwrap();
        for resource in request.into_inner().resource_metrics {
            let service = resource
                .resource
                .as_ref()
                .and_then(|r| string_attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for scope in resource.scope_metrics {
                for metric in scope.metrics {
                    metrics.push((service.clone(), metric));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

fn string_attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    attributes.iter().find(|a| a.key == key).and_then(|a| {
        a.value.as_ref().and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            Some(Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        })
    })
}

/// The attribute sets of every data point of `metric`.
fn point_attributes(metric: &Metric) -> Vec<Vec<KeyValue>> {
    match &metric.data {
        Some(Data::Histogram(h)) => h.data_points.iter().map(|p| p.attributes.clone()).collect(),
        Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.attributes.clone()).collect(),
        Some(Data::Gauge(g)) => g.data_points.iter().map(|p| p.attributes.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The JSON lines of a service's log (other output, e.g. the test harness's, skipped).
fn json_lines(path: &Path) -> Vec<serde_json::Map<String, Value>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|value| match value {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .collect()
}

fn text<'a>(line: &'a serde_json::Map<String, Value>, key: &str) -> &'a str {
    line.get(key).and_then(Value::as_str).unwrap_or("")
}

fn is_hex_id(value: &str, len: usize) -> bool {
    value.len() == len && value.chars().all(|c| c.is_ascii_hexdigit()) && value != "0".repeat(len)
}

/// `GET /metrics` on `addr`: the body.
async fn scrape(addr: SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_trace_ids_access_log_and_metrics_arrive() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    let otlp_server = tokio::spawn({
        let receiver = receiver.clone();
        async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver.clone()))
                .add_service(MetricsServiceServer::new(receiver))
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        }
    });

    let work = tempfile::tempdir().unwrap();
    let admin = harness::admin_database_url();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (dispute_db, document_db) = (format!("obs_core_{suffix}"), format!("obs_docs_{suffix}"));
    let dispute_db_url = harness::ensure_database(&admin, &dispute_db).await.unwrap();
    let document_db_url = harness::ensure_database(&admin, &document_db)
        .await
        .unwrap();
    let s3 = harness::S3Server::start(&work.path().join("s3"), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let docs_addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let core_addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let telemetry = |command: ServiceCommand| {
        command
            .otlp_endpoint(&otlp)
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "300")
            // Store code's statements are logged at debug (sqlx).
            .log_filter("info,sqlx::query=debug")
            .jwt_secret(JWT_SECRET)
    };
    let docs_log = work.path().join("document-store.log");
    let mut docs = ServiceProcess::start(
        telemetry(
            ServiceCommand::test_entry(Service::DocumentStore, ENTRY_TEST)
                .listen_addr(docs_addr)
                .database_url(&document_db_url)
                .s3(&s3.endpoint, BUCKET)
                .env("DOCUMENT_STORE_ACCESS_LOG", "false")
                .env("DOCUMENT_STORE_METRICS_ADDR", metrics_addr.to_string()),
        ),
        docs_log.clone(),
    )
    .await
    .unwrap();
    let core_log = work.path().join("dispute-core.log");
    let mut core = ServiceProcess::start(
        telemetry(
            ServiceCommand::test_entry(Service::DisputeCore, ENTRY_TEST)
                .listen_addr(core_addr)
                .database_url(&dispute_db_url)
                .document_store_url(format!("http://{docs_addr}"))
                .env("DISPUTE_CORE_SWEEP_INTERVAL_SECS", "1"),
        ),
        core_log.clone(),
    )
    .await
    .unwrap();

    let token =
        harness::full_scope_token(&SecretString::from(JWT_SECRET), "e2e-observability", TENANT);
    let mut disputes = dpb::dispute_service_client::DisputeServiceClient::with_interceptor(
        harness::connect(core_addr).await.unwrap(),
        harness::Bearer::new(Some(&token)).unwrap(),
    );
    let mut documents = harness::documents_client(docs_addr, Some(&token))
        .await
        .unwrap();

    // A few calls: a create, a read that calls document-store, a NOT_FOUND, an upload and
    // one refused for its content.
    let dispute = create(&mut disputes, merchant_dispute("", "ch_obs")).await;
    get_dispute(&mut disputes, &dispute.id).await;
    let missing = disputes
        .get_dispute(dpb::GetDisputeRequest {
            id: domain_kit::ids::DisputeId::generate().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    upload(
        &mut documents,
        header("a.pdf", "application/pdf"),
        &pdf_of_size(3 * MIB),
    )
    .await
    .unwrap();
    let refused = upload(
        &mut documents,
        header("b.pdf", "application/pdf"),
        b"not a pdf at all",
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);

    // Metrics over OTLP: wait until each expected one has arrived in an export made after
    // the calls above (exports are cumulative, so that one holds all their points; an export
    // that raced the calls may lack some).
    let exported_before = receiver.metrics.lock().unwrap().len();
    let wanted = [
        ("dispute-core", "rpc.server.duration"),
        ("dispute-core", "rpc.server.active_requests"),
        ("dispute-core", "worker.runs"),
        ("dispute-core", "db.client.connections.usage"),
        ("document-store", "rpc.server.duration"),
        ("document-store", "documents.upload.size"),
        ("document-store", "documents.upload.duration"),
        ("document-store", "documents.upload.rejections"),
    ];
    let mut missing_metrics = Vec::new();
    for _ in 0..200 {
        let got: BTreeSet<(String, String)> = receiver
            .metrics
            .lock()
            .unwrap()
            .iter()
            .skip(exported_before)
            .map(|(service, metric)| (service.clone(), metric.name.clone()))
            .collect();
        missing_metrics = wanted
            .iter()
            .filter(|(s, m)| !got.contains(&((*s).to_owned(), (*m).to_owned())))
            .collect();
        if missing_metrics.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        missing_metrics.is_empty(),
        "not exported: {missing_metrics:?}"
    );
    {
        let metrics = receiver.metrics.lock().unwrap();
        let points = |service: &str, name: &str| -> Vec<Vec<KeyValue>> {
            metrics
                .iter()
                .filter(|(s, m)| s == service && m.name == name)
                .flat_map(|(_, m)| point_attributes(m))
                .collect()
        };
        let has_point = |service: &str, name: &str, attributes: &[(&str, &str)]| {
            points(service, name).iter().any(|point| {
                attributes
                    .iter()
                    .all(|(k, v)| string_attribute(point, k).as_deref() == Some(*v))
            })
        };
        let duration = metrics
            .iter()
            .find(|(s, m)| s == "dispute-core" && m.name == "rpc.server.duration")
            .map(|(_, m)| m.clone())
            .unwrap();
        assert_eq!(duration.unit, "ms");
        assert!(matches!(duration.data, Some(Data::Histogram(_))));
        for (method, code) in [
            ("CreateDispute", "0"),
            ("GetDispute", "0"),
            ("GetDispute", "5"),
        ] {
            assert!(
                has_point(
                    "dispute-core",
                    "rpc.server.duration",
                    &[
                        ("rpc.system", "grpc"),
                        ("rpc.service", "disputes.v1.DisputeService"),
                        ("rpc.method", method),
                        ("rpc.grpc.status_code", code),
                    ]
                ),
                "rpc.server.duration of {method} with code {code}"
            );
        }
        assert!(has_point(
            "document-store",
            "rpc.server.duration",
            &[
                ("rpc.service", "documents.v1.DocumentService"),
                ("rpc.method", "ListDocuments"),
                ("rpc.grpc.status_code", "0"),
            ]
        ));
        assert!(has_point(
            "dispute-core",
            "rpc.server.active_requests",
            &[("rpc.method", "CreateDispute")]
        ));
        assert!(has_point(
            "document-store",
            "documents.upload.rejections",
            &[("reason", "unsupported_content")]
        ));
        assert!(has_point(
            "document-store",
            "documents.upload.duration",
            &[("outcome", "stored")]
        ));
        assert!(has_point(
            "dispute-core",
            "worker.runs",
            &[("outcome", "ok")]
        ));
        assert!(has_point(
            "dispute-core",
            "db.client.connections.usage",
            &[("pool.name", "dispute-core"), ("state", "idle")]
        ));
    }

    // The same metrics for Prometheus.
    let scraped = scrape(metrics_addr).await;
    for expected in [
        "rpc_server_duration_milliseconds_bucket{",
        "rpc_method=\"UploadDocument\"",
        "documents_upload_size_bytes_count",
        "documents_upload_rejections_total{reason=\"unsupported_content\"} 1",
        "db_client_connections_usage{",
    ] {
        assert!(scraped.contains(expected), "{expected} in:\n{scraped}");
    }

    // Logs: a worker run has had time to log its statements (the sweeper runs every second).
    let mut core_lines = Vec::new();
    for _ in 0..100 {
        core_lines = json_lines(&core_log);
        if core_lines.iter().any(|l| {
            l.get("span")
                .and_then(|s| s.get("name"))
                .and_then(Value::as_str)
                == Some("worker.run")
        }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let docs_lines = json_lines(&docs_log);
    for (service, lines) in [
        ("dispute-core", &core_lines),
        ("document-store", &docs_lines),
    ] {
        assert!(!lines.is_empty(), "{service} logs JSON lines");
        for line in lines.iter().filter(|l| l.contains_key("span")) {
            assert!(
                is_hex_id(text(line, "trace_id"), 32) && is_hex_id(text(line, "span_id"), 16),
                "{service}: a line inside a span without trace_id/span_id: {line:?}"
            );
        }
    }

    // One access line per RPC in dispute-core, none in document-store (turned off).
    let access: Vec<_> = core_lines
        .iter()
        .filter(|l| text(l, "target") == "access")
        .collect();
    let create_line = access
        .iter()
        .find(|l| text(l, "method") == "disputes.v1.DisputeService/CreateDispute")
        .expect("an access line for CreateDispute");
    assert_eq!(create_line.get("code"), Some(&Value::from(0)));
    assert_eq!(text(create_line, "status"), "OK");
    assert_eq!(text(create_line, "tenant_id"), TENANT);
    assert!(create_line.get("duration_ms").is_some_and(Value::is_f64));
    let not_found = access
        .iter()
        .filter(|l| text(l, "method") == "disputes.v1.DisputeService/GetDispute")
        .map(|l| text(l, "status"))
        .collect::<Vec<_>>();
    assert_eq!(not_found.len(), 2, "one line per GetDispute call");
    assert!(not_found.contains(&"NOT_FOUND"));
    assert!(
        !access
            .iter()
            .any(|l| text(l, "method").starts_with("grpc.health")),
        "health checks are not logged"
    );
    assert!(
        !docs_lines.iter().any(|l| text(l, "target") == "access"),
        "DOCUMENT_STORE_ACCESS_LOG=false turns the access log off"
    );

    // Store code inside the request logs with the request's trace id.
    let create_trace = text(create_line, "trace_id");
    assert!(
        core_lines
            .iter()
            .any(|l| text(l, "target").starts_with("sqlx") && text(l, "trace_id") == create_trace),
        "a statement of CreateDispute is logged with its trace id"
    );
    // A worker run's lines carry the run's own trace id (its own root span).
    let worker_line = core_lines
        .iter()
        .find(|l| {
            l.get("span")
                .and_then(|s| s.get("name"))
                .and_then(Value::as_str)
                == Some("worker.run")
        })
        .expect("a line logged by a worker run");
    assert!(is_hex_id(text(worker_line, "trace_id"), 32));
    assert_ne!(text(worker_line, "trace_id"), create_trace);
    assert!(
        *receiver.spans.lock().unwrap() > 0,
        "spans were exported too"
    );

    core.kill9().await.unwrap();
    docs.kill9().await.unwrap();
    s3.stop().await;
    otlp_server.abort();
    let _ = harness::drop_database(&admin, &dispute_db).await;
    let _ = harness::drop_database(&admin, &document_db).await;
}
