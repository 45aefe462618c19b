//! The webhook delivery metrics, on the services' meter (`service_kit::metrics::meter`):
//!
//! | name | kind | unit | attributes |
//! | --- | --- | --- | --- |
//! | `webhooks.deliveries` | counter | {delivery} | outcome (`delivered`, `failed`, `gave_up`) |
//! | `webhooks.delivery.duration` | histogram | ms | outcome |
//! | `webhooks.backlog` | gauge | {delivery} | (none) |

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use service_kit::metrics::meter;

/// Webhook delivery metrics, for the delivery worker to call.
#[derive(Clone, Debug)]
pub struct WebhookMetrics {
    deliveries: Counter<u64>,
    duration: Histogram<f64>,
}

impl WebhookMetrics {
    pub fn new() -> Self {
        let meter = meter();
        Self {
            deliveries: meter
                .u64_counter("webhooks.deliveries")
                .with_unit("{delivery}")
                .with_description("Webhook delivery attempts, by outcome")
                .build(),
            duration: meter
                .f64_histogram("webhooks.delivery.duration")
                .with_unit("ms")
                .with_description("Latency of webhook delivery attempts")
                .build(),
        }
    }

    /// One delivery attempt that ended with `outcome` (e.g. `delivered`, `failed`,
    /// `gave_up`) after `elapsed`.
    pub fn attempt(&self, outcome: &'static str, elapsed: Duration) {
        let outcome = [KeyValue::new("outcome", outcome)];
        self.deliveries.add(1, &outcome);
        self.duration
            .record(elapsed.as_secs_f64() * 1000.0, &outcome);
    }

    /// Observes the backlog (deliveries waiting) with `backlog`, called at each collection;
    /// it must not block (e.g. read an atomic the worker updates).
    pub fn observe_backlog(backlog: impl Fn() -> u64 + Send + Sync + 'static) {
        meter()
            .u64_observable_gauge("webhooks.backlog")
            .with_unit("{delivery}")
            .with_description("Webhook deliveries waiting to be sent")
            .with_callback(move |observer| observer.observe(backlog(), &[]))
            .build();
    }
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        Self::new()
    }
}
