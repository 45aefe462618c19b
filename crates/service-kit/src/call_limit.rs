//! Overload protection for unary calls: a per-process concurrency limit that sheds at once
//! (RESOURCE_EXHAUSTED with RetryInfo, no queue) and a per-call server timeout
//! (DEADLINE_EXCEEDED).
//!
//! Health and reflection are never limited, and a service can exempt its streaming methods:
//! a permit held for a whole upload would starve unary calls, and tonic's own
//! `Server::timeout` would cut a long upload (uploads have their own admission limit and
//! deadline).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::Code;
use tower::{Layer, Service};

use crate::errors::{retryable, status_with_reason};

/// RetryInfo delay sent with a shed call.
pub const OVERLOAD_RETRY_DELAY: Duration = Duration::from_millis(250);

/// Method paths never limited: health (probes must answer under load) and reflection.
const ALWAYS_EXEMPT_PREFIXES: [&str; 2] = ["/grpc.health.v1.Health/", "/grpc.reflection."];

/// How many unary calls may run at once and for how long.
#[derive(Debug, Clone)]
pub struct CallLimits {
    /// Calls beyond this many in flight are shed with RESOURCE_EXHAUSTED.
    pub max_concurrent_calls: usize,
    /// A call still running after this long answers DEADLINE_EXCEEDED.
    pub call_timeout: Duration,
    /// Full method paths (`/pkg.Service/Method`) neither counted nor timed: streaming RPCs
    /// with their own admission control.
    pub exempt_methods: Vec<&'static str>,
}

impl CallLimits {
    /// From the services' flags: at least one call in flight and a timeout of at least 1 ms.
    pub fn from_flags(
        max_concurrent_calls: usize,
        call_timeout_ms: u64,
        exempt_methods: Vec<&'static str>,
    ) -> Self {
        Self {
            max_concurrent_calls: max_concurrent_calls.max(1),
            call_timeout: Duration::from_millis(call_timeout_ms.max(1)),
            exempt_methods,
        }
    }
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 64,
            call_timeout: Duration::from_secs(30),
            exempt_methods: Vec::new(),
        }
    }
}

/// Tower layer applying [`CallLimits`]; ErrorInfo carries `domain`.
#[derive(Clone)]
pub struct CallLimitLayer {
    permits: Arc<Semaphore>,
    call_timeout: Duration,
    exempt_methods: Arc<[&'static str]>,
    domain: &'static str,
}

impl CallLimitLayer {
    pub fn new(limits: &CallLimits, domain: &'static str) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(limits.max_concurrent_calls.max(1))),
            call_timeout: limits.call_timeout,
            exempt_methods: limits.exempt_methods.clone().into(),
            domain,
        }
    }
}

impl<S> Layer<S> for CallLimitLayer {
    type Service = CallLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallLimit {
            inner,
            limits: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CallLimit<S> {
    inner: S,
    limits: CallLimitLayer,
}

impl<S> CallLimit<S> {
    fn is_exempt(&self, path: &str) -> bool {
        ALWAYS_EXEMPT_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
            || self.limits.exempt_methods.contains(&path)
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResBody> Service<http::Request<B>> for CallLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Send,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if self.is_exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let Ok(permit) = self.limits.permits.clone().try_acquire_owned() else {
            tracing::debug!(path = request.uri().path(), "call shed: too many in flight");
            let status = retryable(
                Code::ResourceExhausted,
                "too many calls in flight, retry later",
                "OVERLOADED",
                self.limits.domain,
                OVERLOAD_RETRY_DELAY,
            );
            return Box::pin(std::future::ready(Ok(status.into_http())));
        };
        let call_timeout = self.limits.call_timeout;
        let domain = self.limits.domain;
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = tokio::time::timeout(call_timeout, call).await;
            drop(permit);
            match result {
                Ok(response) => response,
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = call_timeout.as_millis() as u64,
                        "call timed out on the server"
                    );
                    Ok(status_with_reason(
                        Code::DeadlineExceeded,
                        "the call took longer than the server allows",
                        "CALL_TIMEOUT",
                        domain,
                    )
                    .into_http())
                }
            }
        })
    }
}
