//! PostgreSQL pool set-up shared by the services.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;

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
    /// Server-side `idle_in_transaction_session_timeout` of every pooled session: a session
    /// that sits inside a transaction without sending anything for this long (a frozen or
    /// partitioned process) is ended by the server, so its locks (the event sequencer's
    /// among them) are released within seconds rather than when TCP keepalive notices.
    pub idle_in_transaction_timeout: Duration,
}

impl DatabaseSettings {
    /// From the services' flags, in milliseconds.
    pub fn from_millis(
        max_connections: u32,
        acquire_timeout_ms: u64,
        statement_timeout_ms: u64,
        lock_timeout_ms: u64,
        idle_in_transaction_timeout_ms: u64,
    ) -> Self {
        Self {
            max_connections,
            acquire_timeout: Duration::from_millis(acquire_timeout_ms),
            statement_timeout: Duration::from_millis(statement_timeout_ms),
            lock_timeout: Duration::from_millis(lock_timeout_ms),
            idle_in_transaction_timeout: Duration::from_millis(idle_in_transaction_timeout_ms),
        }
    }

    /// Defaults: 5 s to acquire, 5 s per statement, 2 s per lock wait, 10 s idle inside a
    /// transaction.
    pub fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(2),
            idle_in_transaction_timeout: Duration::from_secs(10),
        }
    }
}

fn base_options(url: &str, application_name: &str) -> anyhow::Result<PgConnectOptions> {
    Ok(PgConnectOptions::from_str(url)
        .context("parse database url")?
        .application_name(application_name))
}

/// Sessions in UTC with the statement, lock and idle-in-transaction timeouts of
/// `settings` (startup parameters, so they hold from the first statement of every
/// connection, the pool's and the listener's).
fn session_options(
    url: &str,
    settings: &DatabaseSettings,
    application_name: &str,
) -> anyhow::Result<PgConnectOptions> {
    let statement_timeout = settings.statement_timeout.as_millis().to_string();
    let lock_timeout = settings.lock_timeout.as_millis().to_string();
    let idle_in_transaction_timeout = settings.idle_in_transaction_timeout.as_millis().to_string();
    Ok(base_options(url, application_name)?.options([
        ("timezone", "UTC"),
        ("statement_timeout", statement_timeout.as_str()),
        ("lock_timeout", lock_timeout.as_str()),
        (
            "idle_in_transaction_session_timeout",
            idle_in_transaction_timeout.as_str(),
        ),
    ]))
}

/// A pool whose sessions run in UTC with `statement_timeout`, `lock_timeout` and
/// `idle_in_transaction_session_timeout` set, and
/// name the service in `pg_stat_activity`; acquiring a connection gives up after
/// `acquire_timeout` rather than queueing a caller forever.
pub async fn connect_pool(
    url: &str,
    settings: &DatabaseSettings,
    application_name: &str,
) -> anyhow::Result<PgPool> {
    let options = session_options(url, settings, application_name)?;
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .context("connect to postgres")
}

/// Brings the schema up to date with the service's own migrations on a connection of its
/// own, without the pool's statement timeout (a migration, or waiting for another replica's
/// migration lock, may take longer). Safe with several replicas: sqlx takes an advisory lock.
pub async fn migrate(
    url: &str,
    settings: &DatabaseSettings,
    application_name: &str,
    migrations: &sqlx::migrate::Migrator,
) -> anyhow::Result<()> {
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
    migrated
}

/// [`migrate`], then opens the pool.
pub async fn connect_and_migrate(
    url: &str,
    settings: &DatabaseSettings,
    application_name: &str,
    migrations: &sqlx::migrate::Migrator,
) -> anyhow::Result<PgPool> {
    migrate(url, settings, application_name, migrations).await?;
    connect_pool(url, settings, application_name).await
}

/// Opens the pool for a replica that does not migrate at start-up (its database role may
/// lack DDL rights): the schema must already hold every migration this binary carries, or
/// the replica refuses to start rather than fail calls later.
pub async fn connect_migrated(
    url: &str,
    settings: &DatabaseSettings,
    application_name: &str,
    migrations: &sqlx::migrate::Migrator,
) -> anyhow::Result<PgPool> {
    let pool = connect_pool(url, settings, application_name).await?;
    let missing = missing_migrations(&pool, migrations).await?;
    if !missing.is_empty() {
        pool.close().await;
        anyhow::bail!(
            "the database schema lacks migrations {missing:?}: run `{application_name} migrate` \
             (or start with migrate-on-start enabled)"
        );
    }
    Ok(pool)
}

/// The serving pool: [`connect_and_migrate`] when `migrate_on_start`, else
/// [`connect_migrated`] (a `migrate` Job owns the schema).
pub async fn connect_for_serving(
    url: &str,
    settings: &DatabaseSettings,
    application_name: &str,
    migrations: &sqlx::migrate::Migrator,
    migrate_on_start: bool,
) -> anyhow::Result<PgPool> {
    let pool = if migrate_on_start {
        connect_and_migrate(url, settings, application_name, migrations).await
    } else {
        connect_migrated(url, settings, application_name, migrations).await
    }?;
    crate::metrics::observe_pool(&pool, application_name);
    Ok(pool)
}

/// The versions of `migrations` not (successfully) applied to the database.
pub async fn missing_migrations(
    pool: &PgPool,
    migrations: &sqlx::migrate::Migrator,
) -> anyhow::Result<Vec<i64>> {
    let table_exists: bool =
        sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
            .fetch_one(pool)
            .await
            .context("look for the migrations table")?;
    let applied: Vec<i64> = if table_exists {
        sqlx::query_scalar("select version from _sqlx_migrations where success")
            .fetch_all(pool)
            .await
            .context("read applied migrations")?
    } else {
        Vec::new()
    };
    Ok(migrations
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .filter(|version| !applied.contains(version))
        .collect())
}

/// The readiness check's own connection, outside the pool: a pool busy with calls (or
/// exhausted by overload) does not make the replica look unready, only an unreachable or
/// unanswering database does.
pub struct DatabaseProbe {
    options: PgConnectOptions,
    connection: Mutex<Option<PgConnection>>,
}

impl DatabaseProbe {
    pub fn new(
        url: &str,
        settings: &DatabaseSettings,
        application_name: &str,
    ) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            options: session_options(url, settings, application_name)?,
            connection: Mutex::new(None),
        }))
    }

    /// `select 1` on the probe's connection, (re)connecting first if needed. The
    /// connection is taken out while in use: a check that fails or is abandoned (timed out)
    /// drops it, so the next check starts on a fresh one.
    pub async fn check(&self) -> anyhow::Result<()> {
        let mut slot = self.connection.lock().await;
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => PgConnection::connect_with(&self.options)
                .await
                .context("connect to postgres")?,
        };
        sqlx::query("select 1")
            .execute(&mut connection)
            .await
            .context("ping database")?;
        *slot = Some(connection);
        Ok(())
    }
}

/// One round trip (`select 1`) through the pool.
pub async fn ping(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("select 1")
        .execute(pool)
        .await
        .context("ping database")?;
    Ok(())
}

/// `pool.begin()` in a task of its own. sqlx 0.8.6 counts a transaction as open only once
/// `BEGIN` has answered: a caller cancelled while it is in flight (a client gone, a
/// deadline) hands the connection back to the pool inside a transaction nothing will end,
/// and the next borrower's statements then run in it uncommitted and are lost when the
/// session ends (upstream transact-rs/sqlx#4393). In its own task the `BEGIN` always
/// completes; a transaction nobody receives is dropped there, which rolls it back.
pub async fn begin(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    use tracing::Instrument;
    let pool = pool.clone();
    match tokio::spawn(async move { pool.begin().await }.in_current_span()).await {
        Ok(begun) => begun,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // Only a runtime shutting down cancels the task.
        Err(_) => Err(sqlx::Error::PoolClosed),
    }
}
