//! The identity provider's signing keys, from its JWKS URL: cached, refreshed when older
//! than the refresh interval and when a token names an unknown `kid` (at most once per
//! minimum refetch interval; concurrent callers share one fetch). A refresh replaces the
//! whole set, so a key the provider removed is refused from then on. A failed fetch keeps
//! the keys we have.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// Algorithms accepted from an identity provider: asymmetric only, so no shared secret.
pub const JWKS_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// Longest a JWKS fetch may take; a token waiting for keys waits no longer.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A key that verifies tokens of exactly one algorithm.
pub struct VerifyingKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

/// The usable keys of one JWKS document, by `kid`.
#[derive(Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerifyingKey>>,
    /// Keys without a `kid`: only a token without one may use them, and only when there is
    /// exactly one.
    unnamed: Vec<Arc<VerifyingKey>>,
}

#[derive(Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

impl KeySet {
    /// The signing keys of a JWKS document. Keys we cannot use (encryption keys, other
    /// algorithms or curves, malformed entries) are skipped, not fatal: providers publish
    /// such keys next to their signing keys.
    pub fn from_json(document: &[u8]) -> Result<KeySet, serde_json::Error> {
        let raw: RawJwkSet = serde_json::from_slice(document)?;
        let mut set = KeySet::default();
        for entry in raw.keys {
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry) else {
                continue;
            };
            let Some(key) = verifying_key(&jwk) else {
                continue;
            };
            let key = Arc::new(key);
            match jwk.common.key_id {
                Some(kid) => {
                    set.by_kid.insert(kid, key);
                }
                None => set.unnamed.push(key),
            }
        }
        Ok(set)
    }

    /// The key for a token's `kid` (or, without one, the only unnamed key).
    pub fn find(&self, kid: Option<&str>) -> Option<Arc<VerifyingKey>> {
        match kid {
            Some(kid) => self.by_kid.get(kid).cloned(),
            None => match self.unnamed.as_slice() {
                [only] => Some(only.clone()),
                _ => None,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key and its one algorithm: the JWK's `alg` when it names one of ours, else its key
/// type and curve (RSA: RS256, EC P-256: ES256, OKP Ed25519: EdDSA). `None` for anything
/// else, encryption keys included.
pub fn verifying_key(jwk: &Jwk) -> Option<VerifyingKey> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let algorithm = match jwk.common.key_algorithm {
        None => by_type,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(_) => return None,
    };
    // An `alg` that contradicts the key type (e.g. RS256 on an EC key) is unusable.
    if algorithm != by_type {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey { algorithm, key })
}

/// How the key cache behaves.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    pub url: String,
    /// Keys older than this are fetched again before use.
    pub refresh: Duration,
    /// At most one fetch for an unknown `kid` (or after a failure) per this interval.
    pub min_refetch: Duration,
    /// Longest one fetch may take.
    pub fetch_timeout: Duration,
}

/// Why no key verifies a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUnavailable {
    /// The keys were fetched, none has the token's `kid`.
    UnknownKid,
    /// We have no keys at all: the JWKS could not be fetched yet.
    NoKeys,
}

/// The cached key set of one JWKS URL; cheap to share (`Arc`).
pub struct JwksCache {
    settings: JwksSettings,
    client: reqwest::Client,
    current: RwLock<Fetched>,
    /// Held while fetching: concurrent callers wait for the one fetch and then see its
    /// result instead of fetching again.
    fetch_gate: tokio::sync::Mutex<FetchAttempts>,
}

#[derive(Default)]
struct Fetched {
    keys: Arc<KeySet>,
    /// When the keys were fetched; `None`: never.
    at: Option<Instant>,
    /// Bumped by every successful fetch.
    generation: u64,
}

#[derive(Default)]
struct FetchAttempts {
    last: Option<Instant>,
}

impl JwksCache {
    pub fn new(settings: JwksSettings) -> Result<JwksCache, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.fetch_timeout)
            .connect_timeout(settings.fetch_timeout)
            .build()?;
        Ok(JwksCache {
            settings,
            client,
            current: RwLock::new(Fetched::default()),
            fetch_gate: tokio::sync::Mutex::new(FetchAttempts::default()),
        })
    }

    /// The key for a token's `kid`, fetching the key set first when it is stale or lacks
    /// that `kid` (within the rate limit).
    pub async fn key_for(&self, kid: Option<&str>) -> Result<Arc<VerifyingKey>, KeyUnavailable> {
        let (keys, generation, fresh) = self.snapshot();
        let known = keys.find(kid);
        match known {
            Some(key) if fresh => return Ok(key),
            // Another call is refreshing the stale set: the key we have still verifies
            // until the provider says otherwise.
            Some(key) if self.fetch_gate.try_lock().is_err() => return Ok(key),
            _ => self.refresh(generation).await,
        }
        let (keys, generation, _) = self.snapshot();
        if let Some(key) = keys.find(kid) {
            return Ok(key);
        }
        // An unknown `kid`: the provider may have rotated its keys since we fetched.
        self.refresh(generation).await;
        let (keys, _, _) = self.snapshot();
        match keys.find(kid) {
            Some(key) => Ok(key),
            None if keys.is_empty() => Err(KeyUnavailable::NoKeys),
            None => Err(KeyUnavailable::UnknownKid),
        }
    }

    fn snapshot(&self) -> (Arc<KeySet>, u64, bool) {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = current
            .at
            .is_some_and(|at| at.elapsed() < self.settings.refresh);
        (current.keys.clone(), current.generation, fresh)
    }

    /// Fetches the key set unless another caller fetched it since we saw `seen_generation`
    /// or a fetch was tried less than the minimum refetch interval ago.
    async fn refresh(&self, seen_generation: u64) {
        let mut attempts = self.fetch_gate.lock().await;
        if self.snapshot().1 != seen_generation {
            return;
        }
        if attempts
            .last
            .is_some_and(|last| last.elapsed() < self.settings.min_refetch)
        {
            return;
        }
        attempts.last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "signing keys fetched");
                let mut current = self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                current.keys = Arc::new(keys);
                current.at = Some(Instant::now());
                current.generation += 1;
            }
            Err(error) => {
                let had_keys = !self.snapshot().0.is_empty();
                tracing::warn!(
                    error = %error,
                    jwks_url = %self.settings.url,
                    keeping_previous_keys = had_keys,
                    "could not fetch signing keys"
                );
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<KeySet> {
        let response = self
            .client
            .get(&self.settings.url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await?
            .error_for_status()?;
        let body = response.bytes().await?;
        Ok(KeySet::from_json(&body)?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    // RFC 7517 appendix A.1 keys (public): an EC P-256 key and an RSA key.
    const EC_X: &str = "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4";
    const EC_Y: &str = "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM";
    const RSA_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    const OKP_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn set(keys: serde_json::Value) -> KeySet {
        KeySet::from_json(json!({ "keys": keys }).to_string().as_bytes()).expect("json")
    }

    #[test]
    fn the_algorithm_comes_from_the_key_type_or_its_alg() {
        let keys = set(json!([
            {"kty": "RSA", "kid": "rsa", "n": RSA_N, "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": EC_X, "y": EC_Y},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": OKP_X, "alg": "EdDSA"},
        ]));
        let algorithm = |kid| keys.find(Some(kid)).map(|key| key.algorithm);
        assert_eq!(algorithm("rsa"), Some(Algorithm::RS256));
        assert_eq!(algorithm("ec"), Some(Algorithm::ES256));
        assert_eq!(algorithm("ed"), Some(Algorithm::EdDSA));
        assert_eq!(algorithm("other"), None);
    }

    #[test]
    fn keys_we_cannot_use_are_skipped_not_fatal() {
        let keys = set(json!([
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": RSA_N, "e": "AQAB"},
            {"kty": "EC", "kid": "mismatch", "alg": "RS256", "crv": "P-256", "x": EC_X, "y": EC_Y},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": EC_X, "y": EC_Y},
            {"kty": "RSA", "kid": "broken"},
            {"kty": "RSA", "kid": "sig", "use": "sig", "alg": "RS256", "n": RSA_N, "e": "AQAB"},
        ]));
        assert_eq!(keys.len(), 1);
        assert!(keys.find(Some("sig")).is_some());
        assert!(KeySet::from_json(b"not json").is_err());
    }

    #[test]
    fn a_token_without_kid_uses_the_only_unnamed_key() {
        let one = set(json!([{"kty": "RSA", "n": RSA_N, "e": "AQAB"}]));
        assert!(one.find(None).is_some());
        let two = set(json!([
            {"kty": "RSA", "n": RSA_N, "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "x": EC_X, "y": EC_Y},
        ]));
        assert!(two.find(None).is_none());
        let named = set(json!([{"kty": "RSA", "kid": "a", "n": RSA_N, "e": "AQAB"}]));
        assert!(named.find(None).is_none());
    }

    /// A JWKS endpoint answering each request with the current `body` (or 503 when
    /// `None`), counting requests, each answer after `delay`.
    struct KeyEndpoint {
        url: String,
        body: Arc<std::sync::Mutex<Option<String>>>,
        requests: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl KeyEndpoint {
        async fn start(body: serde_json::Value, delay: Duration) -> KeyEndpoint {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
            let body = Arc::new(std::sync::Mutex::new(Some(body.to_string())));
            let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (served, counted) = (body.clone(), requests.clone());
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let (served, counted) = (served.clone(), counted.clone());
                    tokio::spawn(async move {
                        let mut request = [0u8; 2048];
                        let _ = socket.read(&mut request).await;
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        let current = served.lock().map(|b| b.clone()).unwrap_or_default();
                        let response = match current {
                            Some(body) => format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            ),
                            None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\
                                     connection: close\r\n\r\n"
                                .to_owned(),
                        };
                        let _ = socket.write_all(response.as_bytes()).await;
                    });
                }
            });
            KeyEndpoint {
                url,
                body,
                requests,
            }
        }

        fn serve(&self, body: Option<serde_json::Value>) {
            if let Ok(mut current) = self.body.lock() {
                *current = body.map(|b| b.to_string());
            }
        }

        fn requests(&self) -> usize {
            self.requests.load(std::sync::atomic::Ordering::SeqCst)
        }

        fn cache(&self, refresh: Duration, min_refetch: Duration) -> Arc<JwksCache> {
            Arc::new(
                JwksCache::new(JwksSettings {
                    url: self.url.clone(),
                    refresh,
                    min_refetch,
                    fetch_timeout: Duration::from_secs(2),
                })
                .expect("client"),
            )
        }
    }

    fn rsa(kid: &str) -> serde_json::Value {
        json!({"keys": [{"kty": "RSA", "kid": kid, "n": RSA_N, "e": "AQAB"}]})
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let endpoint = KeyEndpoint::start(rsa("a"), Duration::from_millis(100)).await;
        let cache = endpoint.cache(Duration::from_secs(300), Duration::from_secs(10));
        let lookups: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.key_for(Some("a")).await.is_ok() })
            })
            .collect();
        for lookup in lookups {
            assert!(lookup.await.expect("task"));
        }
        assert_eq!(endpoint.requests(), 1);
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_within_the_rate_limit_and_replaces_the_set() {
        let endpoint = KeyEndpoint::start(rsa("a"), Duration::ZERO).await;
        let cache = endpoint.cache(Duration::from_secs(300), Duration::from_millis(200));
        assert!(cache.key_for(Some("a")).await.is_ok());
        endpoint.serve(Some(rsa("b")));
        // Too soon after the last fetch: no new fetch, "b" is unknown.
        assert_eq!(
            cache.key_for(Some("b")).await.err(),
            Some(KeyUnavailable::UnknownKid)
        );
        assert_eq!(endpoint.requests(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(cache.key_for(Some("b")).await.is_ok());
        assert_eq!(endpoint.requests(), 2);
        // The set was replaced: "a" is gone (and asking again is rate limited).
        assert_eq!(
            cache.key_for(Some("a")).await.err(),
            Some(KeyUnavailable::UnknownKid)
        );
        assert_eq!(endpoint.requests(), 2);
    }

    #[tokio::test]
    async fn stale_keys_are_refreshed_and_kept_when_the_refresh_fails() {
        let endpoint = KeyEndpoint::start(rsa("a"), Duration::ZERO).await;
        let cache = endpoint.cache(Duration::from_millis(100), Duration::ZERO);
        assert!(cache.key_for(Some("a")).await.is_ok());
        endpoint.serve(None);
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The refresh fails; the keys we had still verify.
        assert!(cache.key_for(Some("a")).await.is_ok());
        assert_eq!(endpoint.requests(), 2);
        endpoint.serve(Some(rsa("b")));
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The periodic refresh replaces the set without an unknown kid asking for it.
        assert!(cache.key_for(Some("b")).await.is_ok());
        assert_eq!(
            cache.key_for(Some("a")).await.err(),
            Some(KeyUnavailable::UnknownKid)
        );
    }

    #[tokio::test]
    async fn an_unreachable_jwks_refuses_quickly_and_is_not_refetched_at_once() {
        // A port nothing listens on: connection refused.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        drop(listener);
        let cache = JwksCache::new(JwksSettings {
            url,
            refresh: Duration::from_secs(300),
            min_refetch: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(2),
        })
        .expect("client");
        let started = Instant::now();
        assert!(matches!(
            cache.key_for(Some("k")).await,
            Err(KeyUnavailable::NoKeys)
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        let again = Instant::now();
        assert!(matches!(
            cache.key_for(Some("k")).await,
            Err(KeyUnavailable::NoKeys)
        ));
        assert!(again.elapsed() < Duration::from_millis(100), "rate limited");
    }
}
