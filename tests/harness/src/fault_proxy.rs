//! A TCP fault proxy whose behaviour can be switched while connections run: pass, delay,
//! black-hole and reset, with counters of the faults it injected.
//!
//! - `Pass` forwards bytes both ways.
//! - `Delay(d)` waits `d` before forwarding each chunk it read (up to 64 KiB), both ways.
//! - `BlackHole` accepts new connections, reads and discards what they send, and never
//!   connects them upstream or answers (they stay that way until the client gives up).
//!   Connections that were already open stall: nothing is read or forwarded until the mode
//!   changes again, then they resume without losing a byte, like a network partition that
//!   heals before TCP gives up.
//! - `Reset` resets every open connection (RST: `SO_LINGER` 0, then close) and every new
//!   one as soon as it is accepted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does to the bytes and connections it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    Pass,
    /// Added latency per forwarded chunk.
    Delay(Duration),
    BlackHole,
    Reset,
}

/// How many faults a proxy injected (a snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Connections accepted, whatever happened to them.
    pub connections: u64,
    /// Connections reset: open ones when `Reset` was set, and new ones accepted during it.
    pub resets: u64,
    /// New connections swallowed by `BlackHole`.
    pub black_holed: u64,
    /// Open connection directions stalled by `BlackHole`.
    pub stalls: u64,
    /// Chunks forwarded late under `Delay`.
    pub delayed_chunks: u64,
    /// Connections reset because the upstream refused them (e.g. PostgreSQL stopped).
    pub upstream_refused: u64,
}

impl FaultCounts {
    /// Faults that reached a connection: resets, black-holed connections, stalls and delays.
    pub fn total(&self) -> u64 {
        self.resets + self.black_holed + self.stalls + self.delayed_chunks
    }
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    resets: AtomicU64,
    black_holed: AtomicU64,
    stalls: AtomicU64,
    delayed_chunks: AtomicU64,
    upstream_refused: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A TCP proxy on `127.0.0.1:<free port>` in front of `target`. Dropping it closes the
/// listener and resets every connection.
pub struct FaultProxy {
    pub addr: SocketAddr,
    pub target: SocketAddr,
    mode: watch::Sender<FaultMode>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
}

impl FaultProxy {
    /// Starts a proxy in `Pass` mode.
    pub async fn start(target: SocketAddr) -> anyhow::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(FaultMode::Pass);
        let counters = Arc::new(Counters::default());
        let shutdown = CancellationToken::new();
        let proxy = FaultProxy {
            addr,
            target,
            mode,
            counters: counters.clone(),
            shutdown: shutdown.clone(),
        };
        let modes = proxy.mode.clone();
        tokio::spawn(async move {
            loop {
                let inbound = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((inbound, _)) => inbound,
                        Err(_) => continue,
                    },
                };
                Counters::bump(&counters.connections);
                tokio::spawn(proxy_connection(
                    inbound,
                    target,
                    modes.subscribe(),
                    counters.clone(),
                    shutdown.clone(),
                ));
            }
        });
        Ok(proxy)
    }

    /// Switches the mode; open connections follow at once.
    pub fn set_mode(&self, mode: FaultMode) {
        self.mode.send_replace(mode);
    }

    pub fn mode(&self) -> FaultMode {
        *self.mode.borrow()
    }

    pub fn counts(&self) -> FaultCounts {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FaultCounts {
            connections: load(&c.connections),
            resets: load(&c.resets),
            black_holed: load(&c.black_holed),
            stalls: load(&c.stalls),
            delayed_chunks: load(&c.delayed_chunks),
            upstream_refused: load(&c.upstream_refused),
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Closes `stream` with RST instead of FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Why a direction of a connection stopped.
enum Cut {
    /// `Reset` mode, or the proxy shut down.
    Reset,
    /// A peer closed or reset its side.
    Broken,
}

async fn proxy_connection(
    inbound: TcpStream,
    target: SocketAddr,
    mut mode: watch::Receiver<FaultMode>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let current = *mode.borrow_and_update();
    match current {
        FaultMode::Reset => {
            Counters::bump(&counters.resets);
            reset(inbound);
            return;
        }
        FaultMode::BlackHole => {
            Counters::bump(&counters.black_holed);
            swallow(inbound, shutdown).await;
            return;
        }
        FaultMode::Pass | FaultMode::Delay(_) => {}
    }
    let mut inbound = inbound;
    let mut outbound = match TcpStream::connect(target).await {
        Ok(outbound) => outbound,
        Err(_) => {
            Counters::bump(&counters.upstream_refused);
            reset(inbound);
            return;
        }
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let outcome = {
        let (inbound_read, inbound_write) = inbound.split();
        let (outbound_read, outbound_write) = outbound.split();
        let up = pump(inbound_read, outbound_write, mode.clone(), &counters);
        let down = pump(outbound_read, inbound_write, mode.clone(), &counters);
        tokio::select! {
            _ = shutdown.cancelled() => Err(Cut::Reset),
            both = async { tokio::try_join!(up, down) } => both.map(|_| ()),
        }
    };
    match outcome {
        // Both sides closed cleanly: the sockets drop with FIN.
        Ok(()) => {}
        Err(Cut::Reset) => {
            Counters::bump(&counters.resets);
            reset(inbound);
            reset(outbound);
        }
        Err(Cut::Broken) => {
            reset(inbound);
            reset(outbound);
        }
    }
}

/// Reads and discards everything until the client closes or the proxy stops.
async fn swallow(mut inbound: TcpStream, shutdown: CancellationToken) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                reset(inbound);
                return;
            }
            read = inbound.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

/// Forwards one direction until end of stream (then half-closes the other side), a broken
/// peer, or `Reset`.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    mut mode: watch::Receiver<FaultMode>,
    counters: &Counters,
) -> Result<(), Cut> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Stall while black-holed; stop on reset.
        let mut stalled = false;
        loop {
            let current = *mode.borrow_and_update();
            match current {
                FaultMode::Reset => return Err(Cut::Reset),
                FaultMode::BlackHole => {
                    if !stalled {
                        stalled = true;
                        Counters::bump(&counters.stalls);
                    }
                    if mode.changed().await.is_err() {
                        return Err(Cut::Reset);
                    }
                }
                FaultMode::Pass | FaultMode::Delay(_) => break,
            }
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            changed = mode.changed() => {
                if changed.is_err() {
                    return Err(Cut::Reset);
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) => {
                let _ = to.shutdown().await;
                return Ok(());
            }
            Ok(n) => n,
            Err(_) => return Err(Cut::Broken),
        };
        let current = *mode.borrow_and_update();
        if let FaultMode::Delay(delay) = current {
            Counters::bump(&counters.delayed_chunks);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = wait_for_reset(&mut mode) => return Err(Cut::Reset),
            }
        }
        tokio::select! {
            written = to.write_all(&buf[..n]) => {
                if written.is_err() {
                    return Err(Cut::Broken);
                }
            }
            _ = wait_for_reset(&mut mode) => return Err(Cut::Reset),
        }
    }
}

/// Resolves once the mode is `Reset` (or the proxy is gone).
async fn wait_for_reset(mode: &mut watch::Receiver<FaultMode>) {
    loop {
        if *mode.borrow_and_update() == FaultMode::Reset {
            return;
        }
        if mode.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server: writes back everything it reads.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(message).await?;
        let mut answer = vec![0u8; message.len()];
        stream.read_exact(&mut answer).await?;
        Ok(answer)
    }

    const SHORT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn pass_forwards_both_ways() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut client, b"hello").await.unwrap(), b"hello");
        assert_eq!(proxy.counts().connections, 1);
        assert_eq!(proxy.counts().total(), 0);
    }

    #[tokio::test]
    async fn delay_counts_late_chunks_and_still_delivers() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        proxy.set_mode(FaultMode::Delay(Duration::from_millis(20)));
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut client, b"slow").await.unwrap(), b"slow");
        // One chunk each way.
        assert!(proxy.counts().delayed_chunks >= 2, "{:?}", proxy.counts());
    }

    #[tokio::test]
    async fn black_hole_swallows_new_connections_and_stalls_open_ones_losslessly() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut open, b"before").await.unwrap(), b"before");

        proxy.set_mode(FaultMode::BlackHole);
        // A new connection is accepted but never answered.
        let mut swallowed = TcpStream::connect(proxy.addr).await.unwrap();
        let unanswered = tokio::time::timeout(SHORT, round_trip(&mut swallowed, b"anyone?")).await;
        assert!(
            unanswered.is_err(),
            "a black-holed connection got an answer"
        );
        // The open connection stalls...
        open.write_all(b"during").await.unwrap();
        let mut answer = [0u8; 6];
        let stalled = tokio::time::timeout(SHORT, open.read_exact(&mut answer)).await;
        assert!(stalled.is_err(), "a stalled connection got an answer");
        // ...and resumes without loss once the partition heals.
        proxy.set_mode(FaultMode::Pass);
        open.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"during");
        let counts = proxy.counts();
        assert_eq!(counts.black_holed, 1, "{counts:?}");
        assert!(counts.stalls >= 1, "{counts:?}");
    }

    #[tokio::test]
    async fn reset_cuts_open_and_new_connections_with_rst() {
        let proxy = FaultProxy::start(echo_server().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut open, b"x").await.unwrap(), b"x");

        proxy.set_mode(FaultMode::Reset);
        let mut buf = [0u8; 1];
        // RST shows as ECONNRESET (not a clean end of stream) on the next read.
        let read = open.read(&mut buf).await;
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset)
        );
        let mut new = TcpStream::connect(proxy.addr).await.unwrap();
        let read = new.read(&mut buf).await;
        assert_eq!(
            read.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::ConnectionReset)
        );
        assert_eq!(proxy.counts().resets, 2, "{:?}", proxy.counts());

        // Back to pass: new connections work again.
        proxy.set_mode(FaultMode::Pass);
        let mut again = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(round_trip(&mut again, b"ok").await.unwrap(), b"ok");
    }

    #[tokio::test]
    async fn refused_upstream_resets_the_client() {
        // A port with nothing listening.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let proxy = FaultProxy::start(closed).await.unwrap();
        let mut client = TcpStream::connect(proxy.addr).await.unwrap();
        let mut buf = [0u8; 1];
        let read = client.read(&mut buf).await;
        assert!(!matches!(read, Ok(n) if n > 0), "{read:?}");
        assert_eq!(proxy.counts().upstream_refused, 1);
    }
}
