//! The use cases of document-store, one file each, as methods of [`Documents`]. They take
//! validated domain values (typed ids, parsed headers and queries), run the transactions and
//! object-store calls, and return domain values or a [`DocumentError`](crate::domain::DocumentError);
//! mapping to and from gRPC is the transport's job.

pub mod cleanup;
pub mod delete;
pub mod download;
pub mod lock;
pub mod metrics;
pub mod queries;
pub mod upload;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::s3::ObjectStore;

/// Tunables of the upload pipeline.
#[derive(Debug, Clone, Copy)]
pub struct UploadSettings {
    pub max_bytes: u64,
    /// Size of each multipart part (S3 needs at least 5 MiB but for the last one).
    pub part_size: usize,
    pub max_parts_in_flight: usize,
    /// A client that sends nothing for this long is cut off.
    pub chunk_idle_timeout: Duration,
    /// The header message must arrive within this long of the call being admitted.
    pub header_timeout: Duration,
    /// Total time an upload may take to send its bytes, from admission to the last chunk.
    pub upload_deadline: Duration,
    /// Uploads this replica runs at once; more are refused with RESOURCE_EXHAUSTED.
    pub max_concurrent_uploads: usize,
}

/// The document service: metadata in PostgreSQL, bytes in the object store.
#[derive(Clone)]
pub struct Documents {
    pool: sqlx::PgPool,
    objects: ObjectStore,
    settings: UploadSettings,
    /// Cancelled when the drain time after SIGTERM is over: uploads still open then abort
    /// cleanly instead of being cut off half-way.
    abort: CancellationToken,
    /// Upload tasks, so shutdown can wait for their cleanup.
    tasks: TaskTracker,
    /// One permit per running upload (`UploadSettings::max_concurrent_uploads`).
    upload_slots: Arc<Semaphore>,
    /// Upload sizes, durations and rejections.
    upload_metrics: metrics::UploadMetrics,
}

impl Documents {
    pub fn new(pool: sqlx::PgPool, objects: ObjectStore, settings: UploadSettings) -> Self {
        Self {
            pool,
            objects,
            settings,
            abort: CancellationToken::new(),
            tasks: TaskTracker::new(),
            upload_slots: Arc::new(Semaphore::new(settings.max_concurrent_uploads)),
            upload_metrics: metrics::UploadMetrics::new(),
        }
    }

    /// Aborts the uploads still running (they remove what they created) and waits up to
    /// `wait` for them to finish; false if some were still cleaning up then.
    pub async fn abort_uploads(&self, wait: Duration) -> bool {
        self.abort.cancel();
        self.tasks.close();
        tokio::time::timeout(wait, self.tasks.wait()).await.is_ok()
    }
}
