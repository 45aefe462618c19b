//! Authentication and overload protection for unary calls: a per-process concurrency limit
//! shared fairly between tenants ([`crate::fair_share`]) that sheds at once
//! (RESOURCE_EXHAUSTED with RetryInfo, no queue) and a per-call server timeout
//! (DEADLINE_EXCEEDED).
//!
//! The layer verifies the bearer token of every call but health and reflection (with the
//! verifier [`CallLimits::per_tenant`] gives it; verification may fetch the identity
//! provider's keys) and hands the [`Caller`] on in the request's extensions, where
//! [`crate::auth::AuthInterceptor`] takes it. A call without a valid token takes no slot:
//! it is refused UNAUTHENTICATED here.
//!
//! Health and reflection are never limited, and a service can exempt its streaming methods
//! from admission and the timeout (they are still verified): a permit held for a whole
//! upload would starve unary calls, and tonic's own `Server::timeout` would cut a long
//! upload (uploads have their own admission limit and deadline).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::Code;
use tower::{Layer, Service};

use crate::auth::{Caller, TokenVerifier};
use crate::errors::{retryable, status_with_reason};
use crate::fair_share::{ShareLimits, TenantLedger};
use crate::propagation::CallTenant;

/// RetryInfo delay sent with a shed call.
pub const OVERLOAD_RETRY_DELAY: Duration = Duration::from_millis(250);

/// Method paths never limited: health (probes must answer under load) and reflection.
const ALWAYS_EXEMPT_PREFIXES: [&str; 2] = ["/grpc.health.v1.Health/", "/grpc.reflection."];

/// How many unary calls may run at once and for how long.
#[derive(Debug, Clone)]
pub struct CallLimits {
    /// Calls beyond this many in flight are shed with RESOURCE_EXHAUSTED, except those of
    /// a tenant within its fair share (up to twice this many).
    pub max_concurrent_calls: usize,
    /// Most calls one tenant may have in flight; `None`: `max_concurrent_calls`.
    pub max_concurrent_calls_per_tenant: Option<usize>,
    /// Most calls of one tenant running at once (the others wait in the tenant's own
    /// queue); `None`: no such bound.
    pub running_calls_per_tenant: Option<usize>,
    /// Verifies each call's bearer token before admission, so the limit knows its tenant;
    /// `None`: every caller counts as one tenant.
    pub verifier: Option<TokenVerifier>,
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
            ..Self::default()
        }
    }

    /// Shares the limit fairly between tenants: each call's token is verified with
    /// `verifier` before admission, and at most half of the database pool's
    /// `pool_connections` (at least 1) calls of one tenant run at once, so one tenant's
    /// calls cannot fill the pool's queue ahead of everyone else's.
    pub fn per_tenant(self, verifier: TokenVerifier, pool_connections: u32) -> Self {
        let pool_connections = usize::try_from(pool_connections).unwrap_or(usize::MAX);
        Self {
            verifier: Some(verifier),
            running_calls_per_tenant: Some((pool_connections / 2).max(1)),
            ..self
        }
    }
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 64,
            max_concurrent_calls_per_tenant: None,
            running_calls_per_tenant: None,
            verifier: None,
            call_timeout: Duration::from_secs(30),
            exempt_methods: Vec::new(),
        }
    }
}

/// Tower layer applying [`CallLimits`]; ErrorInfo carries `domain`.
#[derive(Clone)]
pub struct CallLimitLayer {
    ledger: Arc<TenantLedger>,
    verifier: Option<TokenVerifier>,
    call_timeout: Duration,
    exempt_methods: Arc<[&'static str]>,
    domain: &'static str,
}

impl CallLimitLayer {
    pub fn new(limits: &CallLimits, domain: &'static str) -> Self {
        Self {
            ledger: Arc::new(TenantLedger::new(
                ShareLimits::new(
                    limits.max_concurrent_calls,
                    limits.max_concurrent_calls_per_tenant,
                ),
                limits.running_calls_per_tenant.unwrap_or(usize::MAX),
            )),
            verifier: limits.verifier.clone(),
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
    fn is_always_exempt(path: &str) -> bool {
        ALWAYS_EXEMPT_PREFIXES
            .iter()
            .any(|prefix| path.starts_with(prefix))
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, ResBody> Service<http::Request<B>> for CallLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if Self::is_always_exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        // The service that was polled ready runs this call; a clone takes its place
        // (verification may wait for the identity provider's keys).
        let ready = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, ready);
        let limits = self.limits.clone();
        Box::pin(limit_call(inner, limits, request))
    }
}

/// Verifies the call's token, then (unless the method is exempt) admits it within the
/// tenant's share and runs it under the call timeout.
async fn limit_call<S, B, ResBody>(
    mut inner: S,
    limits: CallLimitLayer,
    mut request: http::Request<B>,
) -> Result<S::Response, S::Error>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    ResBody: Default,
{
    let caller = match &limits.verifier {
        Some(verifier) => match verifier.verify(request.headers()).await {
            Ok(caller) => Some(caller),
            Err(status) => return Ok(status.into_http()),
        },
        None => None,
    };
    if limits.exempt_methods.contains(&request.uri().path()) {
        // Streams: verified, but neither counted nor timed.
        if let Some(caller) = caller {
            request.extensions_mut().insert::<Caller>(caller);
        }
        return inner.call(request).await;
    }
    let tenant = caller
        .as_ref()
        .map_or("", |caller| caller.tenant_id.as_str());
    let admitted = match limits.ledger.try_admit(tenant) {
        Ok(admitted) => admitted,
        Err(reason) => {
            // The access log names the tenant that was shed.
            if let Some(call_tenant) = request.extensions().get::<CallTenant>()
                && !tenant.is_empty()
            {
                call_tenant.set(tenant);
            }
            tracing::debug!(
                path = request.uri().path(),
                tenant_id = tenant,
                reason = reason.as_str(),
                "call shed"
            );
            crate::metrics::call_shed(reason.as_str());
            let status = retryable(
                Code::ResourceExhausted,
                reason.message(),
                reason.as_str(),
                limits.domain,
                OVERLOAD_RETRY_DELAY,
            );
            return Ok(status.into_http());
        }
    };
    if let Some(caller) = caller {
        request.extensions_mut().insert::<Caller>(caller);
    }
    let call_timeout = limits.call_timeout;
    let call = inner.call(request);
    // The wait for a running slot counts against the call's timeout too.
    let result = tokio::time::timeout(call_timeout, async {
        let _running = admitted.running_slot().await;
        call.await
    })
    .await;
    drop(admitted);
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
                limits.domain,
            )
            .into_http())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use secrecy::SecretString;
    use tower::ServiceExt;

    use super::*;
    use crate::auth::mint_token;

    const SECRET: &str = "a-test-secret-that-is-long-enough-0123456789";
    const METHOD: &str = "/disputes.v1.DisputeService/GetDispute";
    const STREAM_METHOD: &str = "/documents.v1.DocumentService/UploadDocument";

    /// The limit in front of a service that records the tenant of the `Caller` it was
    /// handed.
    fn limited(
        seen: Arc<Mutex<Vec<Option<String>>>>,
    ) -> impl Service<http::Request<()>, Response = http::Response<String>, Error = Infallible> + Clone
    {
        let verifier = TokenVerifier::new(&SecretString::from(SECRET)).expect("key");
        let limits = CallLimits::from_flags(1, 1_000, vec![STREAM_METHOD]).per_tenant(verifier, 10);
        CallLimitLayer::new(&limits, "disputes.v1").layer(tower::service_fn(
            move |request: http::Request<()>| {
                let tenant = request
                    .extensions()
                    .get::<Caller>()
                    .map(|caller| caller.tenant_id.clone());
                seen.lock().expect("lock").push(tenant);
                std::future::ready(Ok::<_, Infallible>(http::Response::new(String::new())))
            },
        ))
    }

    fn request(path: &str, authorization: Option<String>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri(path);
        if let Some(value) = authorization {
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        builder.body(()).expect("request")
    }

    fn grpc_status(response: &http::Response<String>) -> Option<&str> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|value| value.to_str().ok())
    }

    #[tokio::test]
    async fn the_verified_caller_is_handed_on_and_a_bad_token_never_reaches_the_service() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let service = limited(seen.clone());
        let token = mint_token(
            &SecretString::from(SECRET),
            "tester",
            "acme",
            &["disputes:read"],
            chrono::Duration::seconds(60),
        )
        .expect("token");

        let refused = service
            .clone()
            .oneshot(request(METHOD, Some("Bearer not.a.jwt".to_owned())))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&refused), Some("16"), "UNAUTHENTICATED");
        let missing = service
            .clone()
            .oneshot(request(METHOD, None))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&missing), Some("16"));

        // A valid call runs with its verified caller.
        let served = service
            .clone()
            .oneshot(request(METHOD, Some(format!("Bearer {token}"))))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&served), None);
        // Health is neither verified nor counted.
        let health = service
            .oneshot(request("/grpc.health.v1.Health/Check", None))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&health), None);
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![Some("acme".to_owned()), None]
        );
    }

    #[tokio::test]
    async fn exempt_streams_are_verified_too() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let service = limited(seen.clone());
        let token = mint_token(
            &SecretString::from(SECRET),
            "tester",
            "acme",
            &["documents:write"],
            chrono::Duration::seconds(60),
        )
        .expect("token");
        let refused = service
            .clone()
            .oneshot(request(STREAM_METHOD, None))
            .await
            .expect("answer");
        assert_eq!(grpc_status(&refused), Some("16"), "UNAUTHENTICATED");
        // A valid stream call runs with its verified caller.
        for _ in 0..2 {
            let served = service
                .clone()
                .oneshot(request(STREAM_METHOD, Some(format!("Bearer {token}"))))
                .await
                .expect("answer");
            assert_eq!(grpc_status(&served), None);
        }
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![Some("acme".to_owned()), Some("acme".to_owned())]
        );
    }
}
