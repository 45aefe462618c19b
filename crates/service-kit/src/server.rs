//! Server bootstrap shared by both services: reflection (v1 and v1alpha, for grpcurl),
//! health (liveness on `""`, readiness on the service name), overload shedding and call
//! timeouts, HTTP/2 keepalive, SIGTERM handling and a bounded drain.

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::call_limit::{CallLimitLayer, CallLimits};
use crate::readiness::{HealthGate, ReadinessProbe, run_readiness_probe};

/// How [`serve`] runs one service.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The fully qualified gRPC service, e.g. `disputes.v1.DisputeService`.
    pub service_name: &'static str,
    /// Further services served beside `service_name`, advertised by reflection; health
    /// reports the process under `service_name` (and `""`) only.
    pub other_service_names: &'static [&'static str],
    /// Encoded `FileDescriptorSet` holding these services (e.g. the product's proto crate's
    /// `FILE_DESCRIPTOR_SET`), for reflection.
    pub file_descriptor_set: &'static [u8],
    /// How long in-flight calls may run after shutdown starts.
    pub drain: Duration,
    /// HTTP/2 flow-control windows; `None` keeps tonic's defaults.
    pub initial_stream_window_size: Option<u32>,
    pub initial_connection_window_size: Option<u32>,
    /// Concurrency limit and timeout of unary calls.
    pub call_limits: CallLimits,
    /// HTTP/2 PING interval on idle connections, and how long to wait for the ack before
    /// closing the connection (dead peers free their calls).
    pub http2_keepalive_interval: Option<Duration>,
    pub http2_keepalive_timeout: Option<Duration>,
    /// Dependency check driving the service name's health status; `None`: always SERVING
    /// until shutdown.
    pub readiness: Option<ReadinessProbe>,
    /// One info log line per RPC (target `access`: method, status, duration, tenant).
    pub access_log: bool,
    /// Serve gRPC over TLS with this identity ([`crate::tls::server_config`]); `None`:
    /// plaintext HTTP/2.
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

impl ServeSettings {
    pub fn new(
        service_name: &'static str,
        file_descriptor_set: &'static [u8],
        drain: Duration,
    ) -> Self {
        Self {
            service_name,
            other_service_names: &[],
            file_descriptor_set,
            drain,
            initial_stream_window_size: None,
            initial_connection_window_size: None,
            call_limits: CallLimits::default(),
            http2_keepalive_interval: Some(Duration::from_secs(30)),
            http2_keepalive_timeout: Some(Duration::from_secs(10)),
            readiness: None,
            access_log: true,
            tls: None,
        }
    }

    /// The ErrorInfo domain: the service's package, e.g. `disputes.v1`.
    fn error_domain(&self) -> &'static str {
        self.service_name
            .rsplit_once('.')
            .map_or(self.service_name, |(package, _)| package)
    }
}

/// (interval, timeout) of HTTP/2 keepalive from the services' flags; `None` when the
/// interval is 0.
pub fn http2_keepalive(
    interval_secs: u64,
    timeout_secs: u64,
) -> (Option<Duration>, Option<Duration>) {
    match interval_secs {
        0 => (None, None),
        secs => (
            Some(Duration::from_secs(secs)),
            Some(Duration::from_secs(timeout_secs.max(1))),
        ),
    }
}

/// Serves `service` on `listener` together with grpc.health.v1 and reflection, behind the
/// trace layer and the unary call limit, until `shutdown` is cancelled. While it runs,
/// `settings.readiness` drives the service name's health. On shutdown health turns
/// NOT_SERVING (whatever the probe says), in-flight calls get `settings.drain` to finish,
/// and `shutdown` stays cancelled so workers stop too.
pub async fn serve(
    service: tonic::service::Routes,
    listener: TcpListener,
    settings: ServeSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status(settings.service_name, ServingStatus::Serving)
        .await;
    let (reflection_v1, reflection_v1alpha) = reflection_services(
        settings.file_descriptor_set,
        settings.service_name,
        settings.other_service_names,
    )?;
    let routes = service
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let gate = HealthGate::new(health_reporter, shutdown.clone());
    let probe = settings.readiness.clone().map(|probe| {
        tokio::spawn(run_readiness_probe(
            probe,
            gate.clone(),
            settings.service_name,
        ))
    });
    let service_name = settings.service_name;
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = settings.tls.clone() {
        builder = builder.tls_config(tls).context("server TLS")?;
    }
    let server = builder
        .initial_stream_window_size(settings.initial_stream_window_size)
        .initial_connection_window_size(settings.initial_connection_window_size)
        .http2_keepalive_interval(settings.http2_keepalive_interval)
        .http2_keepalive_timeout(settings.http2_keepalive_timeout)
        .layer(crate::propagation::GrpcServerTraceLayer::new(
            settings.access_log,
            Some(crate::metrics::RpcMetrics::new()),
        ))
        .layer(CallLimitLayer::new(
            &settings.call_limits,
            settings.error_domain(),
        ))
        .add_routes(routes)
        .serve_with_incoming_shutdown(accept_incoming(listener), async move {
            gate.not_serving_on_shutdown(service_name).await
        });
    let served = tokio::select! {
        result = server => result.context("grpc server"),
        _ = drain_deadline(shutdown.clone(), settings.drain) => Ok(()),
    };
    shutdown.cancel();
    if let Some(probe) = probe {
        let _ = probe.await;
    }
    served
}

/// The connections [`serve`] accepts on `listener`, each with TCP_NODELAY set. tonic sets
/// it only on listeners it binds itself; without it a reply written in several pieces
/// (headers, data, trailers) waits for the peer's delayed ACK: about 40 ms per call at low
/// concurrency (issue 13). `tests/nodelay.rs` checks the option on an accepted socket.
pub fn accept_incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The reflection services (v1 and v1alpha) advertising `service_name`, `other_service_names`
/// and health, with `file_descriptor_set` (the services' protos) plus health's and the
/// google.rpc error details' registered.
pub fn reflection_services(
    file_descriptor_set: &'static [u8],
    service_name: &'static str,
    other_service_names: &'static [&'static str],
) -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(file_descriptor_set)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // google.rpc error details, so grpcurl can print BadRequest and ErrorInfo.
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            // Only what this server serves; the descriptor set may hold more services.
            .with_service_name(service_name)
            .with_service_name("grpc.health.v1.Health");
        other_service_names
            .iter()
            .fold(builder, |builder, name| builder.with_service_name(*name))
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// Cancels `token` on SIGTERM or ctrl-c.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(error) => {
                        tracing::error!(%error, "cannot listen for SIGTERM");
                        let _ = ctrl_c.await;
                        token.cancel();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("shutdown signal received");
        token.cancel();
    });
}

/// Resolves `drain` after shutdown starts: in-flight calls still running then are dropped.
pub async fn drain_deadline(token: CancellationToken, drain: Duration) {
    token.cancelled().await;
    tokio::time::sleep(drain).await;
    tracing::warn!(
        drain_secs = drain.as_secs(),
        "drain timeout reached, dropping in-flight calls"
    );
}
