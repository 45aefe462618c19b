//! PostgreSQL pool set-up shared by the services.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// A pool whose sessions run in UTC and name the service in `pg_stat_activity`; acquiring a
/// connection gives up after 5 s rather than queueing a caller forever.
pub async fn connect_pool(
    url: &str,
    max_connections: u32,
    application_name: &str,
) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)
        .context("parse database url")?
        .application_name(application_name)
        .options([("timezone", "UTC")]);
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .context("connect to postgres")
}

/// [`connect_pool`], then brings the schema up to date with the service's own migrations.
pub async fn connect_and_migrate(
    url: &str,
    max_connections: u32,
    application_name: &str,
    migrations: &sqlx::migrate::Migrator,
) -> anyhow::Result<PgPool> {
    let pool = connect_pool(url, max_connections, application_name).await?;
    migrations.run(&pool).await.context("apply migrations")?;
    Ok(pool)
}
