//! The plans of ListDocuments on a large table (issue 23, point 4): newest first, of one
//! dispute or not, from the start or after a cursor, it reads through an index, never by a
//! sequential scan of `documents`. The table is seeded in SQL (one INSERT ... SELECT:
//! 200,000 documents across 100 tenants) and analyzed; each case runs `EXPLAIN (FORMAT JSON)`
//! on the statement the store issues with its parameters bound as the store binds them
//! (the custom plan), and on the same statement prepared without them (the generic plan
//! PostgreSQL may switch a prepared statement to after five executions).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use document_store::store::postgres::LIST_AVAILABLE_DOCUMENTS_SQL;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};

const DOCUMENTS: i64 = 200_000;

/// Seeds `documents`: document `g` belongs to tenant `g % 100`, is created `g` minutes after
/// the start, belongs to dispute `g / 4` (one in ten to none) and one in a hundred is still
/// pending.
async fn seed(conn: &mut PgConnection) {
    sqlx::query(
        "insert into documents (tenant_id, id, dispute_id, filename, declared_content_type,
             content_type, size_bytes, sha256, state, object_key, created_at, updated_at)
         select 'ten_' || (g % 100), 'doc_' || lpad(g::text, 9, '0'),
                case when g % 10 <> 9 then 'dsp_' || lpad((g / 4)::text, 8, '0') end,
                'receipt.pdf', 'application/pdf', 'application/pdf', 2048, repeat('0', 64),
                case when g % 100 = 42 then 'pending' else 'available' end,
                'ten_' || (g % 100) || '/doc_' || lpad(g::text, 9, '0'),
                timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
                timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute'
           from generate_series(0, $1 - 1) g",
    )
    .bind(DOCUMENTS)
    .execute(&mut *conn)
    .await
    .unwrap();
    sqlx::query("analyze documents")
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// The parameters of one ListDocuments call: tenant, dispute id, cursor time and id, limit.
struct Case {
    name: &'static str,
    dispute_id: Option<&'static str>,
    after: Option<(DateTime<Utc>, &'static str)>,
    /// The index its custom plan must read.
    uses: &'static str,
}

async fn custom_plan_of(conn: &mut PgConnection, case: &Case) -> Value {
    let text = format!(
        "explain (format json) {}",
        LIST_AVAILABLE_DOCUMENTS_SQL.as_str()
    );
    let row = sqlx::query(&text)
        .persistent(false)
        .bind("ten_7")
        .bind(case.dispute_id)
        .bind(case.after.map(|(time, _)| time))
        .bind(case.after.map(|(_, id)| id))
        .bind(21_i64)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let plan: Json<Value> = row.get(0);
    plan.0
}

async fn generic_plan_of(conn: &mut PgConnection, case: &Case) -> Value {
    let literal = |text: Option<String>| text.map_or("null".to_owned(), |t| format!("'{t}'"));
    let script = format!(
        "set plan_cache_mode = force_generic_plan;
         prepare list_documents as {};
         explain (format json) execute list_documents('ten_7', {}, {}, {}, 21);
         deallocate list_documents;
         reset plan_cache_mode;",
        LIST_AVAILABLE_DOCUMENTS_SQL.as_str(),
        literal(case.dispute_id.map(str::to_owned)),
        literal(case.after.map(|(time, _)| time.to_rfc3339())),
        literal(case.after.map(|(_, id)| id.to_owned())),
    );
    let rows = sqlx::raw_sql(&script).fetch_all(&mut *conn).await.unwrap();
    let plan: Json<Value> = rows[0].get(0);
    plan.0
}

/// Whether a plan node, or any under it, reads `documents` by a sequential scan; collects a
/// description of every scan for the report.
fn seq_scans_documents(node: &Value, described: &mut Vec<String>) -> bool {
    let node_type = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str();
    let index = node["Index Name"].as_str();
    if relation.is_some() || index.is_some() {
        let using = index.map(|i| format!(" using {i}")).unwrap_or_default();
        let on = relation.map(|r| format!(" on {r}")).unwrap_or_default();
        described.push(format!("{node_type}{using}{on}"));
    }
    let here = node_type == "Seq Scan" && relation == Some("documents");
    let mut below = false;
    for child in node["Plans"].as_array().into_iter().flatten() {
        below |= seq_scans_documents(child, described);
    }
    here || below
}

#[sqlx::test(migrations = "./migrations")]
async fn list_documents_reads_through_an_index_on_a_large_table(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let started = Instant::now();
    seed(&mut conn).await;
    let seeded = started.elapsed();
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let cursor = (start + Duration::minutes(100_007), "doc_000100007");
    let cases = [
        Case {
            name: "ListDocuments, first page",
            dispute_id: None,
            after: None,
            uses: "documents_by_tenant_created",
        },
        Case {
            name: "ListDocuments, after a cursor",
            dispute_id: None,
            after: Some(cursor),
            uses: "documents_by_tenant_created",
        },
        Case {
            name: "ListDocuments, dispute_id",
            dispute_id: Some("dsp_00025001"),
            after: None,
            uses: "documents_by_dispute_created",
        },
        Case {
            name: "ListDocuments, dispute_id after a cursor",
            dispute_id: Some("dsp_00025001"),
            after: Some(cursor),
            uses: "documents_by_dispute_created",
        },
    ];

    let mut failures = Vec::new();
    for case in &cases {
        for (kind, plan) in [
            ("custom plan", custom_plan_of(&mut conn, case).await),
            ("generic plan", generic_plan_of(&mut conn, case).await),
        ] {
            let mut described = Vec::new();
            let seq_scan = seq_scans_documents(&plan[0]["Plan"], &mut described);
            println!("{} ({kind}): {}", case.name, described.join(", "));
            let reads_it = described
                .iter()
                .any(|scan| scan.split(' ').any(|word| word == case.uses));
            if kind == "custom plan" && !reads_it {
                failures.push(format!(
                    "{} ({kind}) does not read {}: {}",
                    case.name,
                    case.uses,
                    described.join(", ")
                ));
            }
            if seq_scan {
                failures.push(format!(
                    "{} ({kind}) reads documents by a sequential scan:\n{plan:#}",
                    case.name
                ));
            }
        }
    }
    println!(
        "seeded in {seeded:?}, {} plans checked in {:?}",
        cases.len() * 2,
        started.elapsed() - seeded
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
