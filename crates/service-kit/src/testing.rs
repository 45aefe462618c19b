//! Helpers for the services' store tests (feature `test-support`, dev-dependencies only).

use std::time::Duration;

use sqlx::PgPool;

/// Waits until some session of this database is blocked on a lock, so a test can prove that
/// a second transaction waits for the first. Panics after about five seconds.
pub async fn wait_until_a_session_blocks(pool: &PgPool) {
    for _ in 0..200 {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity
              where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap_or_else(|error| panic!("read pg_stat_activity: {error}"));
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no session ever blocked on a lock");
}
