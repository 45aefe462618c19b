//! PostgreSQL pool set-up shared by the services.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Pool size and the timeouts that keep a stalled database from holding calls.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    /// How long a call waits for a pooled connection (then: UNAVAILABLE).
    pub acquire_timeout: Duration,
    /// Server-side `statement_timeout` of every pooled session (SQLSTATE 57014).
    pub statement_timeout: Duration,
    /// Server-side `lock_timeout` of every pooled session (SQLSTATE 55P03).
    pub lock_timeout: Duration,
}

impl DatabaseSettings {
    /// Defaults: 5 s to acquire, 5 s per statement, 2 s per lock wait.
    pub fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(2),
        }
    }
}

fn base_options(url: &str, application_name: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .context("parse database url")?
        .application_name(application_name))
}

/// A pool whose sessions run in UTC with `statement_timeout` and `lock_timeout` set, and
/// name the service in `pg_stat_activity`; acquiring a connection gives up after
/// `acquire_timeout` rather than queueing a caller forever.
pub async fn connect_pool(
    url: &str,
    settings: &DatabaseSettings,
    application_name: &str,
) -> anyhow::Result<PgPool> {
    let statement_timeout = settings.statement_timeout.as_millis().to_string();
    let lock_timeout = settings.lock_timeout.as_millis().to_string();
    let options = base_options(url, application_name)?.options([
        ("timezone", "UTC"),
        ("statement_timeout", statement_timeout.as_str()),
        ("lock_timeout", lock_timeout.as_str()),
    ]);
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .context("connect to postgres")
}

/// Brings the schema up to date with the service's own migrations on a connection of its
/// own, without the pool's statement timeout (a migration, or waiting for another replica's
/// migration lock, may take longer), then opens the pool.
pub async fn connect_and_migrate(
    url: &str,
    settings: &DatabaseSettings,
    application_name: &str,
    migrations: &sqlx::migrate::Migrator,
) -> anyhow::Result<PgPool> {
    // A one-connection pool: `Migrator::run(&mut PgConnection)` makes the future !Send.
    let migration_pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(base_options(url, application_name)?.options([("timezone", "UTC")]))
        .await
        .context("connect to postgres for migrations")?;
    let migrated = migrations
        .run(&migration_pool)
        .await
        .context("apply migrations");
    migration_pool.close().await;
    migrated?;
    connect_pool(url, settings, application_name).await
}

/// One round trip (`select 1`) through the pool: the readiness check.
pub async fn ping(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("select 1")
        .execute(pool)
        .await
        .context("ping database")?;
    Ok(())
}
