//! The hub that wakes the StreamEvents streams and the webhook worker of this process: one
//! LISTEN connection to the sequencer rounds' announcements (of every replica), fanned out.
//! A notification only makes a stream read again after its last position, or the worker
//! claim; it never carries the events.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::store::events;
use crate::store::round_notice::RoundNotice;

/// How long the listener waits before connecting again after a failure.
const LISTENER_RETRY: Duration = Duration::from_secs(1);

/// Why streams should read again.
#[derive(Debug, Clone)]
enum Wake {
    /// Events of these tenants were numbered.
    Tenants(Arc<[String]>),
    /// The listener (re)connected: notifications may have been missed.
    All,
}

/// Wakes the streams and the webhook worker of this process: one LISTEN connection, fanned
/// out.
#[derive(Clone)]
pub struct EventHub {
    wakes: broadcast::Sender<Wake>,
    /// Rounds announced webhook deliveries (or announcements may have been lost).
    deliveries: Arc<Notify>,
}

impl EventHub {
    /// A hub no stream waits on yet; its listener is started by `start_event_workers`.
    pub(super) fn new() -> EventHub {
        let (wakes, _) = broadcast::channel(1024);
        EventHub {
            wakes,
            deliveries: Arc::new(Notify::new()),
        }
    }

    /// What wakes this process's webhook worker: a sequencer round (of any replica) that
    /// made webhook deliveries, or the listener reconnecting.
    pub fn deliveries_announced(&self) -> Arc<Notify> {
        self.deliveries.clone()
    }

    /// The wake-ups of a stream that starts now.
    pub(super) fn subscribe(&self) -> Wakes {
        Wakes(self.wakes.subscribe())
    }

    /// Forwards the sequencer rounds' announcements to the streams until shutdown,
    /// reconnecting when the connection drops (and then waking every stream, since
    /// announcements may have been lost).
    pub(super) async fn listen(&self, pool: PgPool, shutdown: CancellationToken) {
        let wakes = &self.wakes;
        while !shutdown.is_cancelled() {
            let listener = tokio::select! {
                () = shutdown.cancelled() => return,
                listener = events::listen_for_events(&pool) => listener,
            };
            let mut listener = match listener {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(error = ?error, "event listener cannot connect; streams fall back to their heartbeat reads");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(LISTENER_RETRY) => continue,
                    }
                }
            };
            let _ = wakes.send(Wake::All);
            self.deliveries.notify_one();
            loop {
                let received = tokio::select! {
                    () = shutdown.cancelled() => return,
                    received = listener.try_recv() => received,
                };
                match received {
                    Ok(Some(notification)) => {
                        let notice = RoundNotice::decode(notification.payload());
                        if notice.deliveries {
                            self.deliveries.notify_one();
                        }
                        let wake = match notice.tenants {
                            Some(tenants) => Wake::Tenants(tenants.into()),
                            None => Wake::All,
                        };
                        let _ = wakes.send(wake);
                    }
                    Ok(None) => {
                        tracing::warn!("event listener connection lost; reconnecting");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(error = ?error, "event listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

/// A stream's wake-ups.
pub(super) struct Wakes(broadcast::Receiver<Wake>);

impl Wakes {
    /// Waits for a wake-up that concerns `tenant_id` (a lagging receiver counts as one: it may
    /// have missed one). The hub holds the sender, so the channel never closes while a stream
    /// runs; if it did, only the heartbeat reads would wake the stream.
    pub(super) async fn next_for(&mut self, tenant_id: &str) {
        loop {
            match self.0.recv().await {
                Ok(Wake::Tenants(tenants)) if !tenants.iter().any(|t| t == tenant_id) => continue,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
            }
        }
    }
}
