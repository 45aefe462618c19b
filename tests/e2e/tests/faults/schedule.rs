//! The faults, the order they come in, and how each is injected.

use std::time::Duration;

use harness::fault_proxy::FaultMode;
use harness::private_postgres::StopMode;

use super::ledger::Ledger;
use super::ms;
use super::platform::Platform;

#[derive(Debug, Clone, Copy)]
pub enum Link {
    CoreDb,
    DocsDb,
    DocsS3,
    CoreDocs,
}

#[derive(Debug, Clone, Copy)]
pub enum Service {
    Core,
    Docs,
}

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The proxy of a link in a fault mode for a while, then back to pass.
    Link(Link, FaultMode, Duration),
    /// The private PostgreSQL stopped, down for a while, then started again.
    PostgresDown(StopMode, Duration),
    /// `kill -9` of a service, then a restart on the same port.
    Kill(Service),
}

/// The fault schedule: 24 faults, one at a time.
pub fn schedule() -> Vec<Fault> {
    use FaultMode::{BlackHole, Delay, Reset};
    use Link::{CoreDb, CoreDocs, DocsDb, DocsS3};
    vec![
        Fault::Link(CoreDb, Reset, ms(300)),
        Fault::Link(DocsS3, Reset, ms(300)),
        Fault::Link(DocsDb, BlackHole, ms(1000)),
        Fault::Link(CoreDocs, Reset, ms(300)),
        Fault::Link(DocsS3, BlackHole, ms(1000)),
        Fault::Link(CoreDb, Delay(ms(30)), ms(1500)),
        Fault::PostgresDown(StopMode::Fast, ms(1000)),
        Fault::Kill(Service::Core),
        Fault::Link(DocsS3, Delay(ms(10)), ms(1500)),
        Fault::Link(DocsDb, Reset, ms(300)),
        Fault::Link(CoreDocs, BlackHole, ms(1000)),
        Fault::Kill(Service::Docs),
        Fault::Link(CoreDb, BlackHole, ms(1000)),
        Fault::PostgresDown(StopMode::Immediate, ms(1000)),
        Fault::Link(DocsS3, Reset, ms(300)),
        Fault::Link(DocsDb, Delay(ms(30)), ms(1500)),
        Fault::Link(CoreDocs, Delay(ms(50)), ms(1500)),
        Fault::Kill(Service::Core),
        Fault::Link(CoreDb, Reset, ms(300)),
        Fault::Link(DocsS3, BlackHole, ms(1000)),
        Fault::Kill(Service::Docs),
        Fault::Link(DocsDb, BlackHole, ms(1000)),
        Fault::PostgresDown(StopMode::Immediate, ms(1000)),
        Fault::Link(CoreDocs, Reset, ms(300)),
    ]
}

/// Injects `fault` and ends it (the dependency back, or the service restarted).
pub async fn inject(platform: &mut Platform, fault: Fault, ledger: &Ledger) {
    match fault {
        Fault::Link(link, mode, duration) => {
            let proxy = platform.proxy(link);
            proxy.set_mode(mode);
            tokio::time::sleep(duration).await;
            proxy.set_mode(FaultMode::Pass);
        }
        Fault::PostgresDown(mode, duration) => {
            platform.postgres.stop(mode).await.unwrap();
            tokio::time::sleep(duration).await;
            platform.postgres.start_again().await.unwrap();
        }
        Fault::Kill(service) => {
            let process = match service {
                Service::Core => &mut platform.core,
                Service::Docs => &mut platform.docs,
            };
            process.kill9().await.unwrap();
            if let Service::Docs = service {
                // Uploads this incarnation left pending are the abandoned-upload cleaner's.
                ledger.lock().unwrap().last_docs_kill = Some(chrono::Utc::now());
            }
            tokio::time::sleep(ms(200)).await;
            process.start_again().await.unwrap();
        }
    }
}
