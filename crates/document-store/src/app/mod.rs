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
mod receiving;
pub mod slots;
pub mod upload;

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::domain::{RateFloor, SlotLimits};
use crate::store::s3::ObjectStore;
use slots::SlotPool;

/// Default floor of an upload's data rate, after its grace period, over its window.
pub const DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_SEC: u64 = 16 * 1024;
pub const DEFAULT_UPLOAD_RATE_WINDOW: Duration = Duration::from_secs(10);
pub const DEFAULT_UPLOAD_RATE_GRACE: Duration = Duration::from_secs(10);
/// Default cap on DownloadDocument streams per replica.
pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 64;
/// Default time a download may wait for its client to take data.
pub const DEFAULT_DOWNLOAD_STALL_TIMEOUT: Duration = Duration::from_secs(30);

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

/// How a replica shares its long calls between tenants.
#[derive(Debug, Clone, Copy)]
pub struct FairnessSettings {
    /// Uploads in flight per replica (`UploadSettings::max_concurrent_uploads`) and per
    /// tenant.
    pub uploads: SlotLimits,
    /// The data rate an upload must keep up.
    pub upload_rate: RateFloor,
    /// DownloadDocument streams open per replica and per tenant.
    pub downloads: SlotLimits,
    /// A download whose client takes no data for this long is ended.
    pub download_stall_timeout: Duration,
}

impl FairnessSettings {
    /// The defaults, with `uploads.per_process` from `settings`.
    pub fn defaults_for(settings: &UploadSettings) -> Self {
        Self {
            uploads: SlotLimits::with_default_tenant_share(settings.max_concurrent_uploads, None),
            upload_rate: RateFloor {
                bytes_per_sec: DEFAULT_MIN_UPLOAD_RATE_BYTES_PER_SEC,
                window: DEFAULT_UPLOAD_RATE_WINDOW,
                grace: DEFAULT_UPLOAD_RATE_GRACE,
            },
            downloads: SlotLimits::with_default_tenant_share(
                DEFAULT_MAX_CONCURRENT_DOWNLOADS,
                None,
            ),
            download_stall_timeout: DEFAULT_DOWNLOAD_STALL_TIMEOUT,
        }
    }
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
    /// How uploads and downloads are shared between tenants.
    fairness: FairnessSettings,
    /// One slot per running upload, capped per replica and per tenant.
    upload_slots: SlotPool,
    /// One slot per open download stream, capped per replica and per tenant.
    download_slots: SlotPool,
    /// Upload sizes, durations and rejections.
    upload_metrics: metrics::UploadMetrics,
}

impl Documents {
    /// The service with the default [`FairnessSettings`] for `settings`.
    pub fn new(pool: sqlx::PgPool, objects: ObjectStore, settings: UploadSettings) -> Self {
        let fairness = FairnessSettings::defaults_for(&settings);
        Self {
            pool,
            objects,
            settings,
            abort: CancellationToken::new(),
            tasks: TaskTracker::new(),
            fairness,
            upload_slots: SlotPool::new(fairness.uploads),
            download_slots: SlotPool::new(fairness.downloads),
            upload_metrics: metrics::UploadMetrics::new(),
        }
    }

    /// The service with `fairness` instead of the defaults (before it serves anything).
    pub fn with_fairness(self, fairness: FairnessSettings) -> Self {
        Self {
            fairness,
            upload_slots: SlotPool::new(fairness.uploads),
            download_slots: SlotPool::new(fairness.downloads),
            ..self
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
