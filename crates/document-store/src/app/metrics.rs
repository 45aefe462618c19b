//! document-store's upload metrics, on the kit's meter ([`service_kit::metrics::meter`]).
//!
//! | name | kind | unit | attributes |
//! | --- | --- | --- | --- |
//! | `documents.upload.size` | histogram | By | (stored uploads) |
//! | `documents.upload.duration` | histogram | ms | outcome (`stored`, `rejected`) |
//! | `documents.upload.rejections` | counter | {upload} | reason |

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use service_kit::metrics::meter;

/// Upload sizes, durations and rejections.
#[derive(Clone, Debug)]
pub struct UploadMetrics {
    size: Histogram<u64>,
    duration: Histogram<f64>,
    rejections: Counter<u64>,
}

impl UploadMetrics {
    pub fn new() -> Self {
        let meter = meter();
        Self {
            size: meter
                .u64_histogram("documents.upload.size")
                .with_unit("By")
                .with_description("Size of stored uploads")
                .with_boundaries(vec![
                    1024.0,
                    16_384.0,
                    131_072.0,
                    1_048_576.0,
                    5_242_880.0,
                    10_485_760.0,
                    26_214_400.0,
                    104_857_600.0,
                ])
                .build(),
            duration: meter
                .f64_histogram("documents.upload.duration")
                .with_unit("ms")
                .with_description("Duration of uploads, from admission to the answer")
                .build(),
            rejections: meter
                .u64_counter("documents.upload.rejections")
                .with_unit("{upload}")
                .with_description("Uploads refused or failed, by reason")
                .build(),
        }
    }

    /// A stored upload of `bytes` bytes that took `elapsed`.
    pub fn stored(&self, bytes: u64, elapsed: Duration) {
        self.size.record(bytes, &[]);
        self.duration.record(
            elapsed.as_secs_f64() * 1000.0,
            &[KeyValue::new("outcome", "stored")],
        );
    }

    /// An upload refused or failed for `reason` (e.g. `TOO_LARGE`, `CAPACITY`).
    pub fn rejected(&self, reason: &'static str, elapsed: Option<Duration>) {
        self.rejections.add(1, &[KeyValue::new("reason", reason)]);
        if let Some(elapsed) = elapsed {
            self.duration.record(
                elapsed.as_secs_f64() * 1000.0,
                &[KeyValue::new("outcome", "rejected")],
            );
        }
    }
}

impl Default for UploadMetrics {
    fn default() -> Self {
        Self::new()
    }
}
