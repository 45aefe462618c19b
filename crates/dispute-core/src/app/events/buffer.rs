//! What a StreamEvents stream buffers between its follower (which reads the feed) and its
//! client: a queue bounded in bytes, not items. An item takes as many bytes of the budget
//! as its encoded size (an item larger than the whole budget takes the whole budget, so at
//! least one event always fits); the bytes come back when the client takes the item. Every
//! stream also draws on one per-process budget, so that many streams cannot together
//! buffer more than it.
//!
//! The queue remembers since when its oldest item has waited for the client (reset each
//! time the client takes one): the follower ends a stream whose client takes nothing for
//! too long. An ending is put in front of the queue (what was buffered is dropped), except
//! a failure, which comes after what was buffered.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::FeedItem;
use crate::domain::DisputeError;

/// Bytes counted for a heartbeat and for an event's fields besides its payload.
const MESSAGE_OVERHEAD_BYTES: usize = 64;

/// Why a stream ends before its client or the service leaves.
#[derive(Debug)]
pub enum StreamEnd {
    /// The client took nothing of what was buffered for too long.
    SlowConsumer,
    /// The caller's token expired.
    TokenExpired,
    /// Reading the feed failed.
    Failed(DisputeError),
}

/// What the client side of a stream gets next.
#[derive(Debug)]
pub enum Next {
    Item(FeedItem),
    /// The follower ended the stream; nothing follows.
    Ended(StreamEnd),
    /// The follower is gone (shutdown) after everything buffered was taken.
    Closed,
}

/// The bytes an item takes of a stream's budget: its encoded size, as stored.
pub fn item_bytes(item: &FeedItem) -> usize {
    match item {
        FeedItem::Event(event) => {
            event.payload.len()
                + event.id.len()
                + event.event_type.len()
                + event.dispute_id.len()
                + MESSAGE_OVERHEAD_BYTES
        }
        FeedItem::Heartbeat { .. } => MESSAGE_OVERHEAD_BYTES,
    }
}

/// Makes the two ends of a stream's buffer: at most `stream_bytes` of items (one item
/// always fits), drawn also from `process_bytes`, shared by every stream of the process.
pub fn stream_buffer(
    stream_bytes: u32,
    process_bytes: Arc<Semaphore>,
) -> (BufferSender, BufferReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State::default()),
        stream_bytes: Semaphore::new(stream_bytes.max(1) as usize),
        stream_limit: stream_bytes.max(1),
        process_bytes,
        ready: Notify::new(),
        receiver_gone: CancellationToken::new(),
    });
    (
        BufferSender {
            shared: shared.clone(),
        },
        BufferReceiver { shared },
    )
}

struct Shared {
    state: Mutex<State>,
    stream_bytes: Semaphore,
    stream_limit: u32,
    process_bytes: Arc<Semaphore>,
    /// Wakes the receiver: an item, an ending or the sender leaving.
    ready: Notify,
    receiver_gone: CancellationToken,
}

#[derive(Default)]
struct State {
    /// Items with the bytes each took.
    items: VecDeque<(FeedItem, u32)>,
    /// Since when the client has taken nothing while something was buffered.
    waiting_since: Option<Instant>,
    ending: Option<StreamEnd>,
    sender_gone: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queue half-changed.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn give_back(&self, bytes: u32) {
        self.stream_bytes.add_permits(bytes as usize);
        self.process_bytes.add_permits(bytes as usize);
    }
}

/// The follower's end.
pub struct BufferSender {
    shared: Arc<Shared>,
}

/// The receiver is gone: the client left.
#[derive(Debug, PartialEq, Eq)]
pub struct ReceiverGone;

impl BufferSender {
    /// Waits until the item fits (in this stream's budget and the process's), then queues
    /// it. Fails when the client side is gone. Cancel-safe: dropped while waiting, it takes
    /// nothing.
    pub async fn send(&self, item: FeedItem) -> Result<(), ReceiverGone> {
        let bytes = u32::try_from(item_bytes(&item))
            .unwrap_or(u32::MAX)
            .min(self.shared.stream_limit);
        let gone = || ReceiverGone;
        // Cancel-safe: the permits go back if this future is dropped while waiting. Once
        // both are held they are forgotten, and given back by the receiver when it takes
        // the item (or drops it).
        let of_stream = self
            .shared
            .stream_bytes
            .acquire_many(bytes)
            .await
            .map_err(|_| gone())?;
        let of_process = tokio::select! {
            acquired = self.shared.process_bytes.acquire_many(bytes) => acquired.map_err(|_| gone())?,
            () = self.shared.receiver_gone.cancelled() => return Err(gone()),
        };
        of_stream.forget();
        of_process.forget();
        let mut state = self.shared.state();
        if self.shared.receiver_gone.is_cancelled() {
            drop(state);
            self.shared.give_back(bytes);
            return Err(gone());
        }
        if state.items.is_empty() {
            state.waiting_since = Some(Instant::now());
        }
        state.items.push_back((item, bytes));
        drop(state);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Since when the client has taken nothing while something was buffered; `None` when
    /// nothing is buffered.
    pub fn waiting_since(&self) -> Option<Instant> {
        self.shared.state().waiting_since
    }

    /// Bytes free for this stream now: the smaller of its own budget's and the process's.
    pub fn free_bytes(&self) -> usize {
        self.shared
            .stream_bytes
            .available_permits()
            .min(self.shared.process_bytes.available_permits())
    }

    /// Waits until an item of `bytes` would fit (in this stream's budget and the
    /// process's) without taking the room; the follower reads only then, so rows read are
    /// not left waiting for room. Fails when the client side is gone. Cancel-safe.
    pub async fn room_for(&self, bytes: usize) -> Result<(), ReceiverGone> {
        let bytes = u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.shared.stream_limit);
        let _of_stream = self
            .shared
            .stream_bytes
            .acquire_many(bytes)
            .await
            .map_err(|_| ReceiverGone)?;
        tokio::select! {
            acquired = self.shared.process_bytes.acquire_many(bytes) => acquired.map(drop).map_err(|_| ReceiverGone),
            () = self.shared.receiver_gone.cancelled() => Err(ReceiverGone),
        }
    }

    /// Whether the client side is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.receiver_gone.is_cancelled()
    }

    /// Resolves when the client side is gone.
    pub async fn closed(&self) {
        self.shared.receiver_gone.cancelled().await;
    }

    /// Ends the stream: a slow consumer or an expired token first (what was buffered is
    /// dropped), a failure after what was buffered.
    pub fn end(self, end: StreamEnd) {
        let mut state = self.shared.state();
        if !matches!(end, StreamEnd::Failed(_)) {
            let dropped: u32 = state.items.drain(..).map(|(_, bytes)| bytes).sum();
            state.waiting_since = None;
            self.shared.give_back(dropped);
        }
        state.ending = Some(end);
        // `Drop` below marks the sender gone and wakes the receiver.
    }
}

impl Drop for BufferSender {
    fn drop(&mut self) {
        self.shared.state().sender_gone = true;
        self.shared.ready.notify_one();
    }
}

/// The client's end.
pub struct BufferReceiver {
    shared: Arc<Shared>,
}

impl BufferReceiver {
    /// The next item (its bytes given back), else the ending, else `Closed` once the
    /// sender is gone.
    pub async fn next(&mut self) -> Next {
        loop {
            {
                let mut state = self.shared.state();
                if let Some((item, bytes)) = state.items.pop_front() {
                    state.waiting_since = if state.items.is_empty() {
                        None
                    } else {
                        Some(Instant::now())
                    };
                    drop(state);
                    self.shared.give_back(bytes);
                    return Next::Item(item);
                }
                if let Some(end) = state.ending.take() {
                    return Next::Ended(end);
                }
                if state.sender_gone {
                    return Next::Closed;
                }
            }
            // `notify_one` keeps a permit when nobody waits: a wake-up between the check
            // above and this wait is not lost.
            self.shared.ready.notified().await;
        }
    }
}

impl Drop for BufferReceiver {
    fn drop(&mut self) {
        self.shared.receiver_gone.cancel();
        self.shared.stream_bytes.close();
        let mut state = self.shared.state();
        let dropped: u32 = state.items.drain(..).map(|(_, bytes)| bytes).sum();
        drop(state);
        self.shared.process_bytes.add_permits(dropped as usize);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::app::events::StoredEvent;

    fn event(position: i64, payload_bytes: usize) -> FeedItem {
        FeedItem::Event(StoredEvent {
            id: format!("evt_{position}"),
            event_type: "dispute.created".to_owned(),
            dispute_id: "dsp_1".to_owned(),
            create_time: Utc::now(),
            position,
            payload: vec![0; payload_bytes],
        })
    }

    fn position(next: Next) -> i64 {
        match next {
            Next::Item(FeedItem::Event(event)) => event.position,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn items_wait_for_bytes_and_come_out_in_order() {
        let process = Arc::new(Semaphore::new(1 << 20));
        let (sender, mut receiver) = stream_buffer(1000, process.clone());
        sender.send(event(1, 500)).await.unwrap();
        // A second 500-byte event does not fit until the first is taken.
        let blocked = tokio::time::timeout(Duration::from_millis(50), sender.send(event(2, 500)));
        assert!(blocked.await.is_err());
        assert_eq!(position(receiver.next().await), 1);
        sender.send(event(2, 500)).await.unwrap();
        assert_eq!(position(receiver.next().await), 2);
        drop(sender);
        assert!(matches!(receiver.next().await, Next::Closed));
        assert_eq!(process.available_permits(), 1 << 20);
    }

    #[tokio::test]
    async fn room_is_awaited_without_being_taken() {
        let process = Arc::new(Semaphore::new(1 << 20));
        let (sender, mut receiver) = stream_buffer(1000, process);
        sender.room_for(600).await.unwrap();
        assert_eq!(sender.free_bytes(), 1000);
        sender.send(event(1, 600)).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(50), sender.room_for(600));
        assert!(waiting.await.is_err());
        // Larger than the whole budget: room for it is an empty buffer.
        receiver.next().await;
        sender.room_for(150_000).await.unwrap();
        assert_eq!(sender.free_bytes(), 1000);
    }

    #[tokio::test]
    async fn an_event_larger_than_the_budget_still_fits_alone() {
        let process = Arc::new(Semaphore::new(1 << 20));
        let (sender, mut receiver) = stream_buffer(1000, process);
        sender.send(event(1, 150_000)).await.unwrap();
        assert_eq!(position(receiver.next().await), 1);
    }

    #[tokio::test]
    async fn the_process_budget_bounds_every_stream_together() {
        let process = Arc::new(Semaphore::new(1500));
        let (first, mut first_receiver) = stream_buffer(1000, process.clone());
        let (second, _second_receiver) = stream_buffer(1000, process.clone());
        first.send(event(1, 900)).await.unwrap();
        let blocked = tokio::time::timeout(Duration::from_millis(50), second.send(event(1, 900)));
        assert!(blocked.await.is_err());
        assert_eq!(position(first_receiver.next().await), 1);
        second.send(event(1, 900)).await.unwrap();
    }

    #[tokio::test]
    async fn waiting_since_tracks_the_oldest_item_not_taken() {
        let process = Arc::new(Semaphore::new(1 << 20));
        let (sender, mut receiver) = stream_buffer(10_000, process);
        assert_eq!(sender.waiting_since(), None);
        sender.send(event(1, 10)).await.unwrap();
        let first = sender.waiting_since().unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        sender.send(event(2, 10)).await.unwrap();
        assert_eq!(sender.waiting_since(), Some(first));
        receiver.next().await;
        let taken_at = sender.waiting_since().unwrap();
        assert!(taken_at > first);
        receiver.next().await;
        assert_eq!(sender.waiting_since(), None);
    }

    #[tokio::test]
    async fn a_slow_consumer_ending_drops_what_was_buffered_and_a_failure_does_not() {
        let process = Arc::new(Semaphore::new(1 << 20));
        let (sender, mut receiver) = stream_buffer(10_000, process.clone());
        sender.send(event(1, 10)).await.unwrap();
        sender.end(StreamEnd::SlowConsumer);
        assert!(matches!(
            receiver.next().await,
            Next::Ended(StreamEnd::SlowConsumer)
        ));
        assert!(matches!(receiver.next().await, Next::Closed));
        assert_eq!(process.available_permits(), 1 << 20);

        let (sender, mut receiver) = stream_buffer(10_000, process);
        sender.send(event(1, 10)).await.unwrap();
        sender.end(StreamEnd::Failed(DisputeError::Internal(anyhow::anyhow!(
            "database down"
        ))));
        assert_eq!(position(receiver.next().await), 1);
        assert!(matches!(
            receiver.next().await,
            Next::Ended(StreamEnd::Failed(_))
        ));
    }

    #[tokio::test]
    async fn a_receiver_gone_fails_the_sender_and_gives_the_bytes_back() {
        let process = Arc::new(Semaphore::new(1 << 20));
        let (sender, receiver) = stream_buffer(1000, process.clone());
        sender.send(event(1, 900)).await.unwrap();
        let waiting = tokio::spawn(async move {
            let result = sender.send(event(2, 900)).await;
            (result, sender.is_closed())
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(receiver);
        let (result, closed) = waiting.await.unwrap();
        assert_eq!(result, Err(ReceiverGone));
        assert!(closed);
        assert_eq!(process.available_permits(), 1 << 20);
    }
}
