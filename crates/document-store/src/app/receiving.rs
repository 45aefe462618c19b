//! What arrives of an upload and when: the next chunk, or why the upload stops (caller
//! gone, shutdown, deadline, idle client, or a data rate below the floor).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Documents;
use crate::domain::{DocumentError, RateWindow};

/// Bytes of an upload's request as the transport receives them, shared with the transport.
#[derive(Clone, Debug, Default)]
pub struct ReceivedBytes(Arc<AtomicU64>);

impl ReceivedBytes {
    pub fn add(&self, bytes: u64) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn total(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The chunks of an upload, and what may end their arrival early.
pub(super) struct Receiving<'a, S> {
    pub(super) chunks: S,
    pub(super) deadline: Instant,
    pub(super) caller_gone: &'a CancellationToken,
    /// Bytes received over the last window, against the minimum data rate.
    pub(super) rate: RateWindow,
    /// Time spent waiting for the client so far: the rate's clock. Time spent on storage
    /// (parts in flight, completion) is not the client's and does not count.
    pub(super) waited: Duration,
    /// The transport's count of the request's bytes, if it keeps one; else whole chunks
    /// are counted as they arrive.
    pub(super) received: Option<ReceivedBytes>,
    /// How much of `received` the rate window has seen.
    pub(super) counted: u64,
}

/// What ended one wait inside [`Receiving::next_chunk`].
enum Wake<T> {
    Done(T),
    CheckRate,
}

impl<S> Receiving<'_, S>
where
    S: Stream<Item = Result<Bytes, DocumentError>> + Unpin,
{
    /// The next chunk, `None` at the end of the stream, or why the upload stops: the caller
    /// is gone, shutdown, the upload deadline passed, the client was idle too long, or it
    /// sends below the minimum data rate.
    pub(super) async fn next_chunk(
        &mut self,
        documents: &Documents,
        settings: super::UploadSettings,
    ) -> Result<Option<Bytes>, DocumentError> {
        let entered = Instant::now();
        let idle_at = entered + settings.chunk_idle_timeout;
        let check_interval = self.rate.check_interval();
        let next = loop {
            // Without a floor, the deadline (already a branch) stands in for the check.
            let check_at = check_interval.map_or(self.deadline, |every| Instant::now() + every);
            let wake = tokio::select! {
                biased;
                _ = self.caller_gone.cancelled() => Wake::Done(Err(DocumentError::Cancelled)),
                _ = documents.abort.cancelled() => Wake::Done(Err(DocumentError::ShuttingDown)),
                _ = tokio::time::sleep_until(self.deadline) => Wake::Done(Err(DocumentError::UploadDeadline {
                    secs: settings.upload_deadline.as_secs(),
                })),
                _ = tokio::time::sleep_until(idle_at) => Wake::Done(Err(DocumentError::IdleTimeout {
                    secs: settings.chunk_idle_timeout.as_secs(),
                })),
                _ = tokio::time::sleep_until(check_at) => Wake::CheckRate,
                next = self.chunks.next() => Wake::Done(next.transpose()),
            };
            match wake {
                Wake::Done(next) => break next,
                Wake::CheckRate => self.measure(self.waited + entered.elapsed(), 0)?,
            }
        };
        self.waited += entered.elapsed();
        if let Ok(Some(chunk)) = &next {
            self.measure(self.waited, chunk.len() as u64)?;
        }
        next
    }

    /// Records what arrived by `now` (on the rate's clock), `chunk_bytes` being a chunk just
    /// received, and checks the rate.
    fn measure(&mut self, now: Duration, chunk_bytes: u64) -> Result<(), DocumentError> {
        let arrived = match &self.received {
            Some(received) => {
                let total = received.total();
                let new = total.saturating_sub(self.counted);
                self.counted = total;
                new
            }
            None => chunk_bytes,
        };
        self.rate.record(now, arrived);
        self.rate.check(now)?;
        Ok(())
    }
}
