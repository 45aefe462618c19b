//! A TCP proxy that cuts connections on demand.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A TCP proxy that can cut every connection at once, like a client that crashes or loses
/// its network mid-call.
pub struct CuttableProxy {
    pub addr: SocketAddr,
    cut: CancellationToken,
}

impl CuttableProxy {
    pub async fn start(target: SocketAddr) -> anyhow::Result<CuttableProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = CancellationToken::new();
        let stop = cut.clone();
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(_) => return,
                    },
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                    // Both sockets drop here: the connection ends mid-stream.
                });
            }
        });
        Ok(CuttableProxy { addr, cut })
    }

    /// Drops every proxied connection.
    pub fn cut(&self) {
        self.cut.cancel();
    }
}
