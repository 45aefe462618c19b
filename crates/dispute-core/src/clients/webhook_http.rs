//! The HTTP client of webhook deliveries: rustls, no redirects, no proxy, and a resolver
//! that keeps only addresses the URL policy allows, so a name that points to a private
//! address is refused at delivery time too (literal IPs are checked before the POST).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::domain::webhooks::{RESPONSE_BODY_PREFIX_BYTES, UrlPolicy, body_prefix};

/// Resolves receiver names and keeps only addresses the policy allows.
struct CheckedResolver {
    policy: UrlPolicy,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| policy.address_allowed(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no allowed (public) address").into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
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
    /// Why no answer came; empty when one came.
    pub error: String,
    /// The first bytes of the answer's body.
    pub body_prefix: String,
}

impl PostResponse {
    /// A 2xx answer.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }

    fn failed(error: impl Into<String>) -> Self {
        PostResponse {
            status: 0,
            error: error.into(),
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
            Err(error) => return PostResponse::failed(format!("invalid URL: {error}")),
        };
        let literal: Option<IpAddr> = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.policy.address_allowed(ip)
        {
            return PostResponse::failed(format!("{ip} is not an allowed (public) address"));
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
            Err(error) => return PostResponse::failed(describe(&error)),
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

/// A short reason for a failed request.
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "request"
    };
    let mut text = format!("{kind}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}
