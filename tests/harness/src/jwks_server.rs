//! An identity provider's key endpoint for tests: a hyper HTTP/1 server on 127.0.0.1 that
//! serves a JWKS document the test can replace at run time (key rotation) and counts the
//! fetches.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `{"keys": [...]}` at `/jwks` until dropped.
pub struct JwksServer {
    addr: SocketAddr,
    keys: Arc<RwLock<serde_json::Value>>,
    fetches: Arc<AtomicUsize>,
    stop: CancellationToken,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl JwksServer {
    /// Starts serving `keys` (a JSON array of JWKs).
    pub async fn start(keys: serde_json::Value) -> anyhow::Result<JwksServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let keys = Arc::new(RwLock::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let (served, counted, stopped) = (keys.clone(), fetches.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let (served, counted) = (served.clone(), counted.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let response = answer(&served, &counted, request.uri().path());
                        async move { Ok::<_, hyper::Error>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(JwksServer {
            addr,
            keys,
            fetches,
            stop,
        })
    }

    /// `http://127.0.0.1:port/jwks`.
    pub fn url(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    /// Serves `keys` from now on (a rotation).
    pub fn set_keys(&self, keys: serde_json::Value) {
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }

    /// How many times the key set was fetched.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn answer(
    keys: &RwLock<serde_json::Value>,
    fetches: &AtomicUsize,
    path: &str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    if path != "/jwks" {
        *response.status_mut() = hyper::StatusCode::NOT_FOUND;
        return response;
    }
    fetches.fetch_add(1, Ordering::SeqCst);
    let keys = keys
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let body = serde_json::json!({ "keys": keys }).to_string();
    *response.body_mut() = Full::new(Bytes::from(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
