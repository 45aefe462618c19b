//! Issue 13: every connection the services accept has TCP_NODELAY set (checked on the
//! socket, not by timing), through the same function `serve` uses.

use std::time::Duration;

use service_kit::server::accept_incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::StreamExt;

#[tokio::test]
async fn accepted_connections_have_tcp_nodelay() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let mut incoming = accept_incoming(listener);
    let clients = [
        TcpStream::connect(addr).await.expect("connect"),
        TcpStream::connect(addr).await.expect("connect again"),
    ];
    // The clients keep the kernel default (Nagle on): only the server's setting counts.
    assert!(!clients[0].nodelay().expect("client TCP_NODELAY"));
    for _ in &clients {
        let accepted = tokio::time::timeout(Duration::from_secs(5), incoming.next())
            .await
            .expect("a connection within 5 s")
            .expect("the listener stream does not end")
            .expect("accept");
        assert!(
            accepted.nodelay().expect("read TCP_NODELAY"),
            "an accepted socket lacks TCP_NODELAY: small replies would wait for delayed ACKs"
        );
    }
}
