//! Readiness: a periodic probe of the service's dependencies drives the grpc.health.v1
//! status of the service name (SERVING while they answer, NOT_SERVING while they do not),
//! so Kubernetes readiness takes a replica out of rotation and puts it back without a
//! restart. The overall `""` status is liveness and does not follow dependencies.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

type Check =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync>;

/// A dependency check run every `interval`; a check that fails or takes longer than
/// `timeout` marks the service NOT_SERVING until one succeeds.
#[derive(Clone)]
pub struct ReadinessProbe {
    pub interval: Duration,
    pub timeout: Duration,
    check: Check,
}

impl std::fmt::Debug for ReadinessProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadinessProbe")
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ReadinessProbe {
    pub fn new<F, Fut>(interval: Duration, timeout: Duration, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        Self {
            interval,
            timeout,
            check: Arc::new(move || Box::pin(check())),
        }
    }

    async fn check_once(&self) -> anyhow::Result<()> {
        match tokio::time::timeout(self.timeout, (self.check)()).await {
            Ok(result) => result,
            Err(_) => anyhow::bail!(
                "dependency check took longer than {} ms",
                self.timeout.as_millis()
            ),
        }
    }
}

/// Serialises health writes so shutdown's NOT_SERVING always wins: the probe writes only
/// while holding the gate and only if shutdown has not started; shutdown takes the gate
/// after the token is cancelled.
#[derive(Clone)]
pub(crate) struct HealthGate {
    reporter: HealthReporter,
    lock: Arc<Mutex<()>>,
    shutdown: CancellationToken,
}

impl HealthGate {
    pub(crate) fn new(reporter: HealthReporter, shutdown: CancellationToken) -> Self {
        Self {
            reporter,
            lock: Arc::new(Mutex::new(())),
            shutdown,
        }
    }

    async fn set_ready(&self, service_name: &'static str, status: ServingStatus) {
        let _guard = self.lock.lock().await;
        if self.shutdown.is_cancelled() {
            return;
        }
        self.reporter.set_service_status(service_name, status).await;
    }

    /// Waits for shutdown, then sets `""` and `service_name` NOT_SERVING for good.
    pub(crate) async fn not_serving_on_shutdown(&self, service_name: &'static str) {
        self.shutdown.cancelled().await;
        let _guard = self.lock.lock().await;
        self.reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.reporter
            .set_service_status(service_name, ServingStatus::NotServing)
            .await;
        tracing::info!("health set to not serving, draining in-flight calls");
    }
}

/// Runs `probe` until shutdown, reporting `service_name` SERVING or NOT_SERVING; logs each
/// change once.
pub(crate) async fn run_readiness_probe(
    probe: ReadinessProbe,
    gate: HealthGate,
    service_name: &'static str,
) {
    let shutdown = gate.shutdown.clone();
    let mut ready = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(probe.interval) => {}
        }
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            result = probe.check_once() => result,
        };
        match (&result, ready) {
            (Err(error), true) => {
                tracing::warn!(error = ?error, "dependency check failed, not ready");
            }
            (Ok(()), false) => tracing::info!("dependencies answer again, ready"),
            _ => {}
        }
        ready = result.is_ok();
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        gate.set_ready(service_name, status).await;
    }
}
