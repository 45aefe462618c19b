//! The services' OpenTelemetry metrics: instruments and the few calls that record them.
//!
//! Instruments come from the global meter provider that [`crate::telemetry::init`] installs
//! (OTLP and/or a Prometheus scrape endpoint); without one they record nothing. Create them
//! after telemetry is set up (a service's `run` does). Names follow the OpenTelemetry
//! semantic conventions where one exists (`rpc.*`, `db.client.connections.*`). A service's
//! own metrics live with it (dispute-core's `webhooks.*` in `app/webhooks/metrics.rs`) and
//! use [`meter`].
//!
//! A service's own instruments live in that service, on [`meter`]: document-store's
//! `documents.upload.*` in `document_store::app::metrics`.
//!
//! | name | kind | unit | attributes |
//! | --- | --- | --- | --- |
//! | `rpc.server.duration` | histogram | ms | rpc.system, rpc.service, rpc.method, rpc.grpc.status_code |
//! | `rpc.server.active_requests` | up-down counter | {request} | rpc.system, rpc.service, rpc.method |
//! | `rpc.server.calls.shed` | counter | {call} | reason (`OVERLOADED`, `TENANT_OVER_SHARE`) |
//! | `worker.runs` | counter | {run} | worker, outcome (`ok`, `error`) |
//! | `worker.items.handled` | counter | {item} | worker (the deadline sweeper: disputes applied) |
//! | `worker.items.failed` | counter | {item} | worker |
//! | `db.client.connections.usage` | gauge | {connection} | pool.name, state (`used`, `idle`) |
//! | `db.client.connections.max` | gauge | {connection} | pool.name |
//! | `db.client.connections.timeouts` | counter | {timeout} | (none) |

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::global;
use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};

/// The meter every instrument here belongs to.
pub fn meter() -> Meter {
    global::meter("disputes")
}

/// Per-RPC metrics of a server (the trace layer records them).
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

/// Counts one call as in flight until dropped.
#[derive(Debug)]
pub struct InFlight {
    active: UpDownCounter<i64>,
    attributes: [KeyValue; 3],
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.active.add(-1, &self.attributes);
    }
}

fn rpc_attributes(service: &str, method: &str) -> [KeyValue; 3] {
    [
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service.to_owned()),
        KeyValue::new("rpc.method", method.to_owned()),
    ]
}

impl RpcMetrics {
    pub fn new() -> Self {
        let meter = meter();
        Self {
            duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("ms")
                .with_description("Duration of inbound RPCs, until the response has been sent")
                .with_boundaries(vec![
                    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
                    5000.0, 10000.0, 30000.0,
                ])
                .build(),
            active: meter
                .i64_up_down_counter("rpc.server.active_requests")
                .with_unit("{request}")
                .with_description("Inbound RPCs in flight")
                .build(),
        }
    }

    /// Counts a call in flight until the returned guard is dropped.
    pub fn call_started(&self, service: &str, method: &str) -> InFlight {
        let attributes = rpc_attributes(service, method);
        self.active.add(1, &attributes);
        InFlight {
            active: self.active.clone(),
            attributes,
        }
    }

    /// Records a finished call with its gRPC status code.
    pub fn call_ended(&self, service: &str, method: &str, code: i32, elapsed: Duration) {
        let [system, service, method] = rpc_attributes(service, method);
        self.duration.record(
            elapsed.as_secs_f64() * 1000.0,
            &[
                system,
                service,
                method,
                KeyValue::new("rpc.grpc.status_code", i64::from(code)),
            ],
        );
    }
}

impl Default for RpcMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Periodic workers' metrics (the deadline sweeper, purgers, cleaners).
#[derive(Clone, Debug)]
pub struct WorkerMetrics {
    runs: Counter<u64>,
    handled: Counter<u64>,
    failed: Counter<u64>,
}

impl WorkerMetrics {
    pub fn new() -> Self {
        let meter = meter();
        Self {
            runs: meter
                .u64_counter("worker.runs")
                .with_unit("{run}")
                .with_description("Runs of a periodic worker, by outcome")
                .build(),
            handled: meter
                .u64_counter("worker.items.handled")
                .with_unit("{item}")
                .with_description("Items a worker handled (the deadline sweeper: disputes applied)")
                .build(),
            failed: meter
                .u64_counter("worker.items.failed")
                .with_unit("{item}")
                .with_description("Items a worker failed on and skipped")
                .build(),
        }
    }

    /// One run of `worker`: `Some((handled, failed))` when it ran, `None` when it failed.
    pub fn run(&self, worker: &'static str, report: Option<(u64, u64)>) {
        let name = KeyValue::new("worker", worker);
        let outcome = if report.is_some() { "ok" } else { "error" };
        self.runs
            .add(1, &[name.clone(), KeyValue::new("outcome", outcome)]);
        if let Some((handled, failed)) = report {
            if handled > 0 {
                self.handled.add(handled, std::slice::from_ref(&name));
            }
            if failed > 0 {
                self.failed.add(failed, &[name]);
            }
        }
    }
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Observes a PostgreSQL pool: connections in use and idle, and its size limit, as long as
/// the meter provider lives; `name` (`pool.name`) tells pools apart.
pub fn observe_pool(pool: &sqlx::PgPool, name: &str) {
    let meter = meter();
    let observed = pool.clone();
    let pool_name = KeyValue::new("pool.name", name.to_owned());
    let attributes = pool_name.clone();
    meter
        .i64_observable_gauge("db.client.connections.usage")
        .with_unit("{connection}")
        .with_description("Connections of the pool, by state (used, idle)")
        .with_callback(move |observer| {
            let size = i64::from(observed.size());
            let idle = i64::try_from(observed.num_idle()).unwrap_or(i64::MAX);
            observer.observe(
                (size - idle).max(0),
                &[attributes.clone(), KeyValue::new("state", "used")],
            );
            observer.observe(idle, &[attributes.clone(), KeyValue::new("state", "idle")]);
        })
        .build();
    let observed = pool.clone();
    meter
        .i64_observable_gauge("db.client.connections.max")
        .with_unit("{connection}")
        .with_description("Most connections the pool opens")
        .with_callback(move |observer| {
            observer.observe(
                i64::from(observed.options().get_max_connections()),
                std::slice::from_ref(&pool_name),
            );
        })
        .build();
}

/// Counts a call that gave up waiting for a pooled connection (its answer is UNAVAILABLE):
/// `db.client.connections.timeouts`.
pub fn pool_acquire_timed_out() {
    meter()
        .u64_counter("db.client.connections.timeouts")
        .with_unit("{timeout}")
        .with_description("Calls that gave up waiting for a pooled database connection")
        .build()
        .add(1, &[]);
}

/// Counts a unary call the call limit shed, by reason (`rpc.server.calls.shed`).
pub fn call_shed(reason: &'static str) {
    // Made once, at the first shed (after telemetry is set up): sheds come in floods.
    static SHED: OnceLock<Counter<u64>> = OnceLock::new();
    SHED.get_or_init(|| {
        meter()
            .u64_counter("rpc.server.calls.shed")
            .with_unit("{call}")
            .with_description("Unary calls shed by the call limit, by reason")
            .build()
    })
    .add(1, &[KeyValue::new("reason", reason)]);
}
