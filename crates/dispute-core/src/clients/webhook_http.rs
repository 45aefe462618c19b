//! The HTTP client of webhook deliveries: rustls, no redirects, no proxy, and a resolver
//! that keeps only addresses the URL policy allows, so a name that points to a private
//! address is refused at delivery time too (literal IPs are checked before the POST).
//!
//! The error an attempt records is shown to the tenant (ListDeliveries), so it is one of a
//! few fixed phrases ([`AttemptError`]) and never carries resolver text, addresses or OS
//! error strings; the full cause is logged here, once per failed attempt.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::domain::webhooks::{
    RESPONSE_BODY_PREFIX_BYTES, UrlPolicy, body_prefix, literal_ip, special_range,
};

/// Resolves receiver names and keeps only addresses the policy allows.
struct CheckedResolver {
    policy: UrlPolicy,
}

/// The name did not resolve (found again in the error chain to pick the phrase).
#[derive(Debug, thiserror::Error)]
#[error("resolving {host}: {source}")]
struct ResolveFailed {
    host: String,
    source: std::io::Error,
}

/// The name resolved only to addresses the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to refused addresses ({ranges})")]
struct AddressRefused {
    host: String,
    ranges: String,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let looked_up = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map(|found| found.collect::<Vec<SocketAddr>>());
            let all = match looked_up {
                Ok(all) => all,
                Err(source) => return Err(Box::new(ResolveFailed { host, source }) as _),
            };
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = all
                .into_iter()
                .partition(|addr| policy.address_allowed(addr.ip()));
            if allowed.is_empty() {
                if refused.is_empty() {
                    let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
                    return Err(Box::new(ResolveFailed { host, source }) as _);
                }
                let ranges = refused
                    .iter()
                    .map(|addr| {
                        let range = special_range(addr.ip()).unwrap_or("refused");
                        format!("{} in {range}", addr.ip())
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(AddressRefused { host, ranges }) as _);
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// POSTs signed webhook bodies. Cheap to clone.
#[derive(Clone)]
pub struct WebhookHttpClient {
    client: reqwest::Client,
    policy: UrlPolicy,
}

/// What one POST gave.
#[derive(Debug, Clone)]
pub struct PostResponse {
    /// The receiver's HTTP status; 0 when none came.
    pub status: u16,
    /// Why no answer came, one of [`AttemptError`]'s phrases; empty when one came.
    pub error: String,
    /// The first bytes of the answer's body.
    pub body_prefix: String,
}

impl PostResponse {
    /// A 2xx answer.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn failed(error: AttemptError) -> Self {
        PostResponse {
            status: 0,
            error: error.phrase().to_owned(),
            body_prefix: String::new(),
        }
    }
}

impl WebhookHttpClient {
    /// A client for receivers `policy` allows; `attempt_timeout` bounds each POST,
    /// connection included.
    pub fn new(policy: UrlPolicy, attempt_timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent("dispute-core-webhooks/1")
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(attempt_timeout)
            .connect_timeout(attempt_timeout)
            .dns_resolver(Arc::new(CheckedResolver { policy }))
            .build()
            .context("build webhook HTTP client")?;
        Ok(Self { client, policy })
    }

    /// POSTs `body` with the Standard Webhooks headers; a private address is refused unless
    /// allowed (literal IPs here, names by the resolver). Only a prefix of the answer's
    /// body is read.
    pub async fn post(
        &self,
        url: &str,
        id: &str,
        timestamp: i64,
        signature: &str,
        body: Vec<u8>,
    ) -> PostResponse {
        let parsed = match url::Url::parse(url) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(delivery_id = id, error = %error, "webhook attempt: invalid URL");
                return PostResponse::failed(AttemptError::InvalidUrl);
            }
        };
        if let Some(ip) = literal_ip(&parsed)
            && !self.policy.address_allowed(ip)
        {
            tracing::warn!(
                delivery_id = id,
                address = %ip,
                range = special_range(ip).unwrap_or("refused"),
                "webhook attempt: address not allowed"
            );
            return PostResponse::failed(AttemptError::AddressNotAllowed);
        }
        let sent = self
            .client
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let kind = AttemptError::of(&error);
                tracing::warn!(
                    delivery_id = id,
                    error = %full_cause(&error),
                    phrase = kind.phrase(),
                    "webhook attempt failed"
                );
                return PostResponse::failed(kind);
            }
        };
        let status = response.status().as_u16();
        let mut prefix = Vec::new();
        while prefix.len() < RESPONSE_BODY_PREFIX_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => prefix.extend_from_slice(&chunk),
                _ => break,
            }
        }
        PostResponse {
            status,
            error: String::new(),
            body_prefix: body_prefix(&prefix),
        }
    }
}

/// Why an attempt got no answer, as recorded for the tenant: a fixed phrase each, with no
/// internal detail (docs/api.md, "Webhooks").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptError {
    /// The URL no longer parses.
    InvalidUrl,
    /// The name did not resolve (or resolved to no address).
    CouldNotResolve,
    /// The address, or every address the name resolved to, is refused by the URL policy.
    AddressNotAllowed,
    /// The receiver refused the TCP connection.
    ConnectionRefused,
    /// No route to the receiver.
    Unreachable,
    /// Connecting, the TLS handshake or the answer took longer than the attempt timeout.
    TimedOut,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The connection was closed or reset before an answer.
    ConnectionClosed,
    /// Any other failure to connect.
    ConnectFailed,
    /// Any other failure.
    RequestFailed,
}

impl AttemptError {
    /// The phrase recorded as the attempt's error.
    pub fn phrase(self) -> &'static str {
        match self {
            AttemptError::InvalidUrl => "invalid URL",
            AttemptError::CouldNotResolve => "could not resolve host",
            AttemptError::AddressNotAllowed => "address not allowed",
            AttemptError::ConnectionRefused => "connection refused",
            AttemptError::Unreachable => "host unreachable",
            AttemptError::TimedOut => "timed out",
            AttemptError::Tls => "TLS error",
            AttemptError::ConnectionClosed => "connection closed",
            AttemptError::ConnectFailed => "could not connect",
            AttemptError::RequestFailed => "request failed",
        }
    }

    /// Classifies a failed request by its error chain.
    fn of(error: &reqwest::Error) -> Self {
        use std::io::ErrorKind;
        if error.is_timeout() {
            return AttemptError::TimedOut;
        }
        let mut found = None;
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            if cause.is::<AddressRefused>() {
                return AttemptError::AddressNotAllowed;
            }
            if cause.is::<ResolveFailed>() {
                return AttemptError::CouldNotResolve;
            }
            // An io::Error's source() skips the error it wraps: walk those by get_ref().
            let mut io = cause.downcast_ref::<std::io::Error>();
            while let Some(error) = io {
                let kind = match error.kind() {
                    ErrorKind::TimedOut => Some(AttemptError::TimedOut),
                    ErrorKind::ConnectionRefused => Some(AttemptError::ConnectionRefused),
                    ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => {
                        Some(AttemptError::Unreachable)
                    }
                    // rustls reports handshake and certificate failures as InvalidData.
                    ErrorKind::InvalidData => Some(AttemptError::Tls),
                    ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof => Some(AttemptError::ConnectionClosed),
                    _ => None,
                };
                found = found.or(kind);
                io = error
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<std::io::Error>());
            }
            source = cause.source();
        }
        match found {
            Some(kind) => kind,
            None if error.is_connect() => AttemptError::ConnectFailed,
            None => AttemptError::RequestFailed,
        }
    }
}

/// The whole error chain, for the log (never for the tenant).
fn full_cause(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const ALL: UrlPolicy = UrlPolicy {
        allow_http: true,
        allow_private_addresses: true,
    };

    const PHRASES: &[&str] = &[
        "invalid URL",
        "could not resolve host",
        "address not allowed",
        "connection refused",
        "host unreachable",
        "timed out",
        "TLS error",
        "connection closed",
        "could not connect",
        "request failed",
    ];

    async fn post(policy: UrlPolicy, timeout_ms: u64, url: &str) -> PostResponse {
        service_kit::tls::install_crypto_provider();
        let client = WebhookHttpClient::new(policy, Duration::from_millis(timeout_ms)).unwrap();
        let response = client
            .post(url, "whd_test", 0, "v1,x", b"{}".to_vec())
            .await;
        assert_eq!(response.status, 0, "{url}");
        assert!(
            PHRASES.contains(&response.error.as_str()),
            "{url}: {}",
            response.error
        );
        response
    }

    /// A port nothing listens on.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// A server that accepts and runs `serve` on each connection.
    async fn server<F, Fut>(serve: F) -> u16
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        });
        port
    }

    #[tokio::test]
    async fn a_refused_connection_says_only_connection_refused() {
        let port = closed_port().await;
        let response = post(ALL, 2_000, &format!("http://127.0.0.1:{port}/in")).await;
        assert_eq!(response.error, "connection refused");
    }

    #[tokio::test]
    async fn a_refused_address_says_only_address_not_allowed() {
        let strict = UrlPolicy::default();
        for url in [
            "https://127.0.0.1/in",
            "https://[64:ff9b::a00:1]/in",
            "https://[::ffff:10.0.0.1]/in",
            // A name, refused by the resolver: the answer does not say where it points.
            "https://localhost:9/in",
        ] {
            let response = post(strict, 2_000, url).await;
            assert_eq!(response.error, "address not allowed", "{url}");
        }
    }

    #[tokio::test]
    async fn an_unknown_name_says_only_could_not_resolve_host() {
        let response = post(ALL, 5_000, "https://no-such-host.invalid/in").await;
        assert_eq!(response.error, "could not resolve host");
    }

    #[tokio::test]
    async fn a_silent_receiver_says_only_timed_out() {
        let port = server(|mut stream| async move {
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        let response = post(ALL, 300, &format!("http://127.0.0.1:{port}/in")).await;
        assert_eq!(response.error, "timed out");
    }

    #[tokio::test]
    async fn a_receiver_that_does_not_speak_tls_says_only_tls_error() {
        let port = server(|mut stream| async move {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
            let mut buf = [0u8; 1024];
            while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        let response = post(ALL, 2_000, &format!("https://127.0.0.1:{port}/in")).await;
        assert_eq!(response.error, "TLS error");
    }

    #[tokio::test]
    async fn an_answer_has_no_error() {
        let port = server(|mut stream| async move {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy")
                .await;
        })
        .await;
        service_kit::tls::install_crypto_provider();
        let client = WebhookHttpClient::new(ALL, Duration::from_secs(2)).unwrap();
        let response = client
            .post(
                &format!("http://127.0.0.1:{port}/in"),
                "whd_test",
                0,
                "v1,x",
                b"{}".to_vec(),
            )
            .await;
        assert_eq!(response.status, 503);
        assert_eq!(response.error, "");
        assert_eq!(response.body_prefix, "busy");
    }
}
