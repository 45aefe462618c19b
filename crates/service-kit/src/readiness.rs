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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_server::Health;
    use tonic_health::server::HealthService;

    use super::*;

    const NAME: &str = "test.v1.TestService";

    async fn status(service: &HealthService, name: &str) -> i32 {
        service
            .check(tonic::Request::new(HealthCheckRequest {
                service: name.to_owned(),
            }))
            .await
            .map(|r| r.into_inner().status)
            .unwrap_or(-1)
    }

    async fn wait_for(service: &HealthService, name: &str, wanted: ServingStatus) {
        for _ in 0..500 {
            if status(service, name).await == wanted as i32 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{name} never became {wanted:?}");
    }

    #[tokio::test]
    async fn readiness_follows_the_check_and_shutdown_wins() {
        let reporter = HealthReporter::new();
        reporter
            .set_service_status(NAME, ServingStatus::Serving)
            .await;
        let service = HealthService::from_health_reporter(reporter.clone());
        let healthy = Arc::new(AtomicBool::new(true));
        let check_healthy = healthy.clone();
        let probe = ReadinessProbe::new(
            Duration::from_millis(5),
            Duration::from_secs(1),
            move || {
                let healthy = check_healthy.load(Ordering::SeqCst);
                async move {
                    anyhow::ensure!(healthy, "down");
                    Ok(())
                }
            },
        );
        let shutdown = CancellationToken::new();
        let gate = HealthGate::new(reporter, shutdown.clone());
        let probing = tokio::spawn(run_readiness_probe(probe, gate.clone(), NAME));

        healthy.store(false, Ordering::SeqCst);
        wait_for(&service, NAME, ServingStatus::NotServing).await;
        assert_eq!(status(&service, "").await, ServingStatus::Serving as i32);
        healthy.store(true, Ordering::SeqCst);
        wait_for(&service, NAME, ServingStatus::Serving).await;

        // Shutdown while the check passes: NOT_SERVING stays.
        shutdown.cancel();
        gate.not_serving_on_shutdown(NAME).await;
        probing.await.unwrap();
        assert_eq!(
            status(&service, NAME).await,
            ServingStatus::NotServing as i32
        );
        assert_eq!(status(&service, "").await, ServingStatus::NotServing as i32);
    }

    #[tokio::test]
    async fn a_check_slower_than_its_timeout_fails() {
        let probe =
            ReadinessProbe::new(Duration::from_millis(5), Duration::from_millis(10), || {
                std::future::pending::<anyhow::Result<()>>()
            });
        assert!(probe.check_once().await.is_err());
    }
}
