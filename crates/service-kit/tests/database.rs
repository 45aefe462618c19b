//! The pool's server-side timeouts against real PostgreSQL (`DATABASE_URL`): a statement past
//! `statement_timeout` and a lock wait past `lock_timeout` fail fast, and both count as the
//! database being unavailable (UNAVAILABLE with RetryInfo), not as a bug.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use service_kit::database::{DatabaseSettings, connect_pool, ping};
use service_kit::dependency::{Dependency, unavailable_dependency};
use sqlx::{Connection, PgConnection};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn short_timeouts() -> DatabaseSettings {
    DatabaseSettings {
        statement_timeout: Duration::from_millis(200),
        lock_timeout: Duration::from_millis(200),
        idle_in_transaction_timeout: Duration::from_millis(1_500),
        ..DatabaseSettings::new(2)
    }
}

#[tokio::test]
async fn pooled_sessions_carry_the_timeouts() {
    let pool = connect_pool(&database_url(), &short_timeouts(), "service-kit-test")
        .await
        .unwrap();
    ping(&pool).await.unwrap();
    let statement: String = sqlx::query_scalar("show statement_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    let lock: String = sqlx::query_scalar("show lock_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    let idle: String = sqlx::query_scalar("show idle_in_transaction_session_timeout")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(idle, "1500ms");
    let zone: String = sqlx::query_scalar("show timezone")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((statement.as_str(), lock.as_str()), ("200ms", "200ms"));
    assert_eq!(zone, "UTC");
    pool.close().await;
}

#[tokio::test]
async fn a_slow_statement_is_cancelled_and_means_the_database_is_unavailable() {
    let pool = connect_pool(&database_url(), &short_timeouts(), "service-kit-test")
        .await
        .unwrap();
    let error = sqlx::query("select pg_sleep(5)")
        .execute(&pool)
        .await
        .unwrap_err();
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("57014"), "{error:?}");
    let error = anyhow::Error::from(error).context("load dispute");
    assert_eq!(unavailable_dependency(&error), Some(Dependency::Database));
    pool.close().await;
}

#[tokio::test]
async fn a_lock_wait_gives_up_and_means_the_database_is_unavailable() {
    let key: i64 = 0x005E_5111_37CE;
    let mut holder = PgConnection::connect(&database_url()).await.unwrap();
    sqlx::query("select pg_advisory_lock($1)")
        .bind(key)
        .execute(&mut holder)
        .await
        .unwrap();
    // The lock wait must end first, so the statement gets longer than the lock.
    let settings = DatabaseSettings {
        statement_timeout: Duration::from_secs(5),
        lock_timeout: Duration::from_millis(100),
        ..DatabaseSettings::new(2)
    };
    let pool = connect_pool(&database_url(), &settings, "service-kit-test")
        .await
        .unwrap();
    let error = sqlx::query("select pg_advisory_lock($1)")
        .bind(key)
        .execute(&pool)
        .await
        .unwrap_err();
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("55P03"), "{error:?}");
    assert_eq!(
        unavailable_dependency(&anyhow::Error::from(error)),
        Some(Dependency::Database)
    );
    holder.close().await.unwrap();
    pool.close().await;
}

/// A transaction begun with `database::begin` whose caller is dropped while `BEGIN` is in
/// flight leaves no transaction open on the pooled connection: the next borrower's
/// autocommit insert is committed at once, visible to another session. (A bare
/// `pool.begin()` on sqlx 0.8.6 fails this: the insert runs inside the abandoned
/// transaction.)
#[tokio::test]
async fn a_begin_whose_caller_is_gone_leaves_no_transaction_behind() {
    use futures::FutureExt;
    // One connection, handed out without a ping, so that one poll reaches `BEGIN`.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&database_url())
        .await
        .unwrap();
    let table = format!("begin_cancel_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("create table {table} (attempt int not null)"))
        .execute(&pool)
        .await
        .unwrap();
    let mut other = PgConnection::connect(&database_url()).await.unwrap();
    for attempt in 0..20 {
        // Polled once, then dropped: the caller is gone with `BEGIN` on its way.
        let _ = service_kit::database::begin(&pool).now_or_never();
        sqlx::query(&format!("insert into {table} values ($1)"))
            .bind(attempt)
            .execute(&pool)
            .await
            .unwrap();
        let seen: i64 =
            sqlx::query_scalar(&format!("select count(*) from {table} where attempt = $1"))
                .bind(attempt)
                .fetch_one(&mut other)
                .await
                .unwrap();
        assert_eq!(seen, 1, "attempt {attempt}: the insert was not committed");
    }
    sqlx::query(&format!("drop table {table}"))
        .execute(&mut other)
        .await
        .unwrap();
    pool.close().await;
}
