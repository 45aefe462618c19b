//! PostgreSQL databases for tests and the local stack: create, check, drop.

use anyhow::Context;
use sqlx::Connection;

/// The PostgreSQL server tests and the local stack use (`DATABASE_ADMIN_URL`, default the
/// local trust-auth server).
pub fn admin_database_url() -> String {
    std::env::var("DATABASE_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Replaces the database name of a URL.
pub fn database_url_for(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let base = match base.rsplit_once('/') {
        Some((server, _))
            if server.contains("://") && server.len() > server.find("://").unwrap() + 3 =>
        {
            server
        }
        _ => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// Creates `database` unless it exists; returns its URL.
pub async fn ensure_database(admin_url: &str, database: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        database
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        "database names are [A-Za-z0-9_]"
    );
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .with_context(|| "connect to PostgreSQL (is it running? see README)".to_string())?;
    if !database_exists_on(&mut conn, database).await? {
        sqlx::query(&format!("create database \"{database}\""))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(database_url_for(admin_url, database))
}

/// Whether the server of `admin_url` has a database named `database`.
pub async fn database_exists(admin_url: &str, database: &str) -> anyhow::Result<bool> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let exists = database_exists_on(&mut conn, database).await?;
    conn.close().await?;
    Ok(exists)
}

async fn database_exists_on(conn: &mut sqlx::PgConnection, database: &str) -> anyhow::Result<bool> {
    Ok(
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(database)
            .fetch_one(conn)
            .await?,
    )
}

/// Drops `database` if it exists, ending the sessions still connected to it.
pub async fn drop_database(admin_url: &str, database: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!(
        "drop database if exists \"{database}\" with (force)"
    ))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

/// `drop_database` for each of `databases`, from synchronous code that may run inside a tokio
/// runtime (a `Drop` during a panic, in a current-thread or multi-thread test): the work runs
/// on a thread of its own with its own small runtime, and this call waits for it.
pub fn drop_databases_blocking(admin_url: &str, databases: &[String]) -> anyhow::Result<()> {
    let admin_url = admin_url.to_owned();
    let databases = databases.to_vec();
    std::thread::spawn(move || -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            for database in &databases {
                drop_database(&admin_url, database)
                    .await
                    .with_context(|| format!("drop database {database}"))?;
            }
            Ok(())
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread dropping the databases panicked"))?
}

/// The databases a stack created for itself. They are dropped by `Stack::stop`, or else when
/// this is dropped, so a panicking test leaves none behind.
pub(crate) struct OwnedDatabases {
    pub(crate) admin_url: String,
    /// Empty once dropped, and for databases the stack was given.
    pub(crate) names: Vec<String>,
}

impl OwnedDatabases {
    pub(crate) async fn drop_now(&mut self) {
        for name in std::mem::take(&mut self.names) {
            if let Err(error) = drop_database(&self.admin_url, &name).await {
                eprintln!("warning: could not drop test database {name}: {error:#}");
            }
        }
    }
}

impl Drop for OwnedDatabases {
    fn drop(&mut self) {
        if self.names.is_empty() {
            return;
        }
        // Never panic here: this may run while a failing test unwinds.
        if let Err(error) = drop_databases_blocking(&self.admin_url, &self.names) {
            eprintln!(
                "warning: could not drop test databases {:?}: {error:#}",
                self.names
            );
        }
    }
}
