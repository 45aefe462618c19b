//! A webhook receiver on 127.0.0.1 for tests and benchmarks: a hyper HTTP/1 server that
//! records every POST (headers, body, arrival time) and answers 500 to the first
//! `fail_first` attempts of each `webhook-id` (or to all while `fail_all` is set), 204
//! otherwise.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// One POST received.
#[derive(Debug, Clone)]
pub struct Received {
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Bytes,
    pub at: Instant,
    /// What the receiver answered.
    pub status: u16,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    fail_first: u32,
    fail_all: bool,
    /// Answer 500 to every n-th POST overall (0: never).
    fail_every: u32,
    /// Record POSTs (status 0) but answer only when released (then 503).
    hold: bool,
    seen: HashMap<String, u32>,
}

/// The receiver; it stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    released: Arc<Notify>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    /// Starts a receiver answering 500 to the first `fail_first` attempts of each delivery.
    pub async fn start(fail_first: u32) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            fail_first,
            ..State::default()
        }));
        let arrived = Arc::new(Notify::new());
        let released = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let (s, a, r, st) = (
            state.clone(),
            arrived.clone(),
            released.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = st.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let (s, a, r) = (s.clone(), a.clone(), r.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let (s, a, r) = (s.clone(), a.clone(), r.clone());
                        async move { Ok::<_, hyper::Error>(handle(&s, &a, &r, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            state,
            arrived,
            released,
            stop,
        }
    }

    /// `http://127.0.0.1:port/hooks`.
    pub fn url(&self) -> String {
        format!("http://{}/hooks", self.addr)
    }

    /// Answer 500 to everything (or stop doing so).
    pub fn set_fail_all(&self, fail: bool) {
        self.state.lock().unwrap().fail_all = fail;
    }

    /// Answer 500 to every `n`-th POST overall (0: never).
    pub fn set_fail_every(&self, n: u32) {
        self.state.lock().unwrap().fail_every = n;
    }

    /// Hold every POST unanswered (recorded with status 0) until released; held ones are
    /// then answered 503.
    pub fn set_hold(&self, hold: bool) {
        self.state.lock().unwrap().hold = hold;
        if !hold {
            self.released.notify_waiters();
        }
    }

    /// Every POST so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until `done` holds for what was received (checked at each arrival).
    pub async fn wait_until(&self, mut done: impl FnMut(&[Received]) -> bool) -> Vec<Received> {
        loop {
            let notified = self.arrived.notified();
            {
                let state = self.state.lock().unwrap();
                if done(&state.received) {
                    return state.received.clone();
                }
            }
            // A periodic re-check too, in case a notification raced.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(200), notified).await;
        }
    }
}

async fn handle(
    state: &Mutex<State>,
    arrived: &Notify,
    released: &Notify,
    request: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (webhook_id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let (status, held) = {
        let mut state = state.lock().unwrap();
        let seen = state.seen.entry(webhook_id.clone()).or_insert(0);
        *seen += 1;
        let attempt = *seen;
        let nth = u32::try_from(state.received.len()).unwrap_or(u32::MAX) + 1;
        let status = if state.hold {
            0
        } else if state.fail_all
            || attempt <= state.fail_first
            || (state.fail_every > 0 && nth.is_multiple_of(state.fail_every))
        {
            500
        } else {
            204
        };
        state.received.push(Received {
            webhook_id,
            timestamp,
            signature,
            body,
            at: Instant::now(),
            status,
        });
        (if status == 0 { 503 } else { status }, status == 0)
    };
    arrived.notify_waiters();
    if held {
        loop {
            let notified = released.notified();
            if !state.lock().unwrap().hold {
                break;
            }
            notified.await;
        }
    }
    let mut response = Response::new(Full::new(if status >= 500 {
        Bytes::from_static(b"receiver says no")
    } else {
        Bytes::new()
    }));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
}
