//! The deadline sweeper against real PostgreSQL: a backlog drains in one call (and in one
//! worker interval), and a dispute that fails is counted, skipped and retried later
//! without blocking the others (issue 10 §5).

use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use dispute_core::app::deadline_sweep::SweepReport;
use dispute_core::app::{App, Disputes};
use dispute_core::clients::documents::DocumentsClient;
use dispute_core::domain::MoneyPolicy;
use dispute_core::store::deadlines::find_sweep_failure;
use service_kit::worker::Workers;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::{OTHER_TENANT, TENANT, insert_plain};

/// The app over `pool`. No test here reaches document-store: the client is never used.
fn app(pool: &PgPool) -> App {
    Disputes {
        pool: pool.clone(),
        documents: DocumentsClient::connect_lazy("http://127.0.0.1:9").unwrap(),
        policy: MoneyPolicy::default(),
    }
    .with_snapshots(
        dispute_core::grpc::encode_dispute,
        dispute_core::grpc::status::encode_refusal,
    )
}

/// Inserts `count` merchant chargebacks whose response was due an hour ago, spread over two
/// tenants, and returns their ids; `dsp_sweep_0` has the earliest deadline.
async fn insert_overdue(conn: &mut PgConnection, count: usize) -> Vec<(String, String)> {
    let due = Utc::now() - TimeDelta::hours(1);
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let tenant = if i % 2 == 0 { TENANT } else { OTHER_TENANT };
        let id = format!("dsp_sweep_{i}");
        insert_plain(conn, tenant, &id).await;
        ids.push((tenant.to_owned(), id));
    }
    sqlx::query(
        "update disputes
            set stage = 'chargeback', status = 'needs_response',
                due_time = $1 + make_interval(secs => substr(id, 11)::int),
                next_deadline = $1 + make_interval(secs => substr(id, 11)::int)
          where id like 'dsp_sweep_%'",
    )
    .bind(due)
    .execute(&mut *conn)
    .await
    .unwrap();
    ids
}

async fn count_where(pool: &PgPool, condition: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from disputes where {condition}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn count_due(pool: &PgPool, now: DateTime<Utc>) -> i64 {
    sqlx::query_scalar("select count(*) from disputes where next_deadline <= $1")
        .bind(now)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn one_sweep_drains_a_backlog_of_600_due_disputes(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_overdue(&mut conn, 600).await;
    let now = Utc::now();
    assert_eq!(count_due(&pool, now).await, 600);

    let report = app(&pool).sweep_deadlines_once(now).await.unwrap();

    assert_eq!(
        report,
        SweepReport {
            applied: 600,
            unchanged: 0,
            failed: 0,
            more: false
        }
    );
    assert_eq!(count_due(&pool, now).await, 0);
    // M14: an unanswered chargeback is lost, with one system history entry each
    assert_eq!(count_where(&pool, "status = 'lost'").await, 600);
    let system_entries: i64 =
        sqlx::query_scalar("select count(*) from dispute_actions where actor = 'system'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(system_entries, 600);
}

#[sqlx::test(migrations = "./migrations")]
async fn the_sweeper_worker_drains_a_backlog_within_one_interval(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_overdue(&mut conn, 600).await;
    let shutdown = CancellationToken::new();
    // An hour between runs: only the "more remains" path can drain 600 disputes (6 batches).
    let mut workers = Workers::new(&shutdown);
    app(&pool).start_workers(&mut workers, Duration::from_secs(3600));

    let drained = tokio::time::timeout(Duration::from_secs(120), async {
        while count_due(&pool, Utc::now()).await > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    shutdown.cancel();
    assert!(
        workers.stop(Duration::from_secs(60)).await,
        "the workers stop on shutdown"
    );
    assert!(
        drained.is_ok(),
        "the backlog is still due after the first interval began"
    );
    assert_eq!(count_where(&pool, "status = 'lost'").await, 600);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_failing_dispute_is_counted_skipped_and_retried_with_backoff(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    // 250 disputes: more than two batches. The bad one has the earliest deadline, so it
    // would come first every time if it blocked the others.
    let ids = insert_overdue(&mut conn, 250).await;
    let (bad_tenant, bad_id) = ids[0].clone();
    sqlx::query(
        "create function refuse_sweep() returns trigger as $$
         begin
             if new.id = 'dsp_sweep_0' then
                 raise exception 'row made inconsistent on purpose';
             end if;
             return new;
         end;
         $$ language plpgsql",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query(
        "create trigger refuse_sweep before update on disputes
             for each row execute function refuse_sweep()",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    let app = app(&pool);
    // PostgreSQL keeps microseconds: compare retry times at that precision.
    let now = Utc::now().trunc_subsecs(6);

    let first = app.sweep_deadlines_once(now).await.unwrap();
    assert_eq!((first.applied, first.failed), (249, 1), "{first:?}");
    assert_eq!(count_due(&pool, now).await, 1);
    assert_eq!(count_where(&pool, "status = 'lost'").await, 249);
    let (attempts, retry_at) = find_sweep_failure(&mut conn, &bad_tenant, &bad_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempts, 1);
    assert_eq!(retry_at, now + TimeDelta::seconds(60));

    // Before its retry time the bad dispute is left alone; after it, it is tried again and
    // its backoff doubles.
    let waiting = app.sweep_deadlines_once(now).await.unwrap();
    assert_eq!(waiting, SweepReport::default());
    let later = now + TimeDelta::seconds(61);
    let second = app.sweep_deadlines_once(later).await.unwrap();
    assert_eq!((second.applied, second.failed), (0, 1), "{second:?}");
    let (attempts, retry_at) = find_sweep_failure(&mut conn, &bad_tenant, &bad_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(retry_at, later + TimeDelta::seconds(120));

    // Once the row is fixed, the next try applies it and forgets the failures.
    sqlx::query("drop trigger refuse_sweep on disputes")
        .execute(&mut *conn)
        .await
        .unwrap();
    let fixed = app
        .sweep_deadlines_once(later + TimeDelta::seconds(121))
        .await
        .unwrap();
    assert_eq!((fixed.applied, fixed.failed), (1, 0), "{fixed:?}");
    assert_eq!(count_where(&pool, "status = 'lost'").await, 250);
    assert!(
        find_sweep_failure(&mut conn, &bad_tenant, &bad_id)
            .await
            .unwrap()
            .is_none()
    );
}
