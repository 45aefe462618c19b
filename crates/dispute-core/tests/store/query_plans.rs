//! The plans of the list queries on large tables (issue 23, point 4): every filter and order
//! that ListDisputes, ListDisputeHistory, ListEvents, ListWebhookEndpoints and ListDeliveries
//! offer reads through an index, never by a sequential scan of a large table.
//!
//! The tables are seeded in SQL (one INSERT ... SELECT each, 100,000 disputes across 100
//! tenants, 300,000 history entries, 200,000 events and deliveries) and analyzed. Each case
//! runs `EXPLAIN (FORMAT JSON)` on the very statement the store issues, with its parameters
//! bound as the store binds them, so its plan is the one a call with these filters gets.

use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use dispute_core::store::disputes::LIST_DISPUTES_SQL;
use dispute_core::store::events::LIST_EVENTS_SQL;
use dispute_core::store::history::LIST_HISTORY_PAGE_SQL;
use dispute_core::store::webhooks::{LIST_DELIVERIES_SQL, LIST_ENDPOINTS_SQL};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};

/// Spelled `% 100` in the seeding statements.
const TENANTS: i64 = 100;
const DISPUTES: i64 = 100_000;
const EVENTS_PER_DISPUTE: i64 = 2;
const ACTIONS_PER_DISPUTE: i64 = 3;
const ENDPOINTS_PER_TENANT: i64 = 100;

/// Tables that grow with the work in production: a sequential scan of one fails a case.
const LARGE_TABLES: &[&str] = &[
    "disputes",
    "dispute_actions",
    "dispute_events",
    "webhook_deliveries",
    "webhook_endpoints",
];

/// The index a case's custom plan must read: the filter's own, so that dropping it or a
/// change to the statement that keeps it from being used fails the case.
const EXPECTED_INDEXES: &[(&str, &str)] = &[
    ("ListDisputes, no filter", "disputes_by_created_due"),
    ("ListDisputes, charge", "disputes_by_charge"),
    ("ListDisputes, payment_intent", "disputes_by_payment_intent"),
    ("ListDisputes, transaction_id", "disputes_by_transaction"),
    ("ListDisputes, status", "disputes_by_status"),
    ("ListDisputes, stage", "disputes_by_stage"),
    (
        "ListDisputes, created_after and created_before",
        "disputes_by_created_due",
    ),
    ("ListDisputes, due_before", "disputes_by_due"),
    ("ListEvents, one type", "dispute_events_by_type"),
    ("ListEvents, dispute_id", "dispute_events_by_dispute"),
    (
        "ListEvents, created_after and created_before",
        "dispute_events_by_created",
    ),
    (
        "ListDisputeHistory, first page",
        "dispute_actions_by_ordinal",
    ),
    (
        "ListDeliveries, endpoint_id after a cursor",
        "webhook_deliveries_by_endpoint",
    ),
    ("ListDeliveries, event_id", "webhook_deliveries_by_event"),
    ("ListDeliveries, status", "webhook_deliveries_by_status"),
];

/// The time the seeded rows start at; dispute `g` is created `5 g` minutes after it.
fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// One bound parameter, in the Rust type the store binds.
enum Param {
    Text(Option<&'static str>),
    Time(Option<DateTime<Utc>>),
    Texts(Vec<String>),
    Int(i64),
}

use Param::{Int, Text, Texts, Time};

struct Case {
    name: &'static str,
    sql: &'static str,
    params: Vec<Param>,
}

/// Seeds every table the list queries read, one statement per table, and analyzes them.
/// Triggers and foreign-key checks are off while seeding (`session_replication_role`):
/// the rows are consistent by construction, and the insert triggers only notify.
async fn seed(conn: &mut PgConnection) {
    let per_dispute = |n: i64| vec![DISPUTES, n];
    let statements: Vec<(&str, Vec<i64>)> = vec![
        ("set session_replication_role = replica", vec![]),
        (
            // Tenant `g % 100`; `r = g / 100` is the dispute's rank in its tenant. Tenants
            // 0, 10, 20, ... serve issuers. Statuses and stages are skewed as in service: most
            // disputes are closed, few need a response or reach arbitration.
            "insert into disputes (tenant_id, id, side, stage, status, amount, currency, charge,
             payment_intent, transaction_id, network, payment_method_type, reason,
             applicable_regulation, credit_status, due_time, next_deadline, created_at,
             updated_at)
         select 'ten_' || (g % 100), 'dsp_' || lpad(g::text, 8, '0'),
                case when g % 10 = 0 then 'issuer' else 'merchant' end,
                case when r % 200 = 7 then 'arbitration'
                     when r % 50 = 3 then 'pre_arbitration'
                     when r % 10 = 1 then 'inquiry'
                     else 'chargeback' end,
                case when r % 40 = 0 then 'needs_response'
                     when r % 40 = 1 then 'under_review'
                     when r % 3 = 0 then 'lost'
                     else 'won' end,
                1000 + g % 5000, 'USD', 'ch_' || g, 'pi_' || g,
                case when g % 10 = 0 then 'ipi_' || g end,
                'visa', 'card', 'fraudulent', 'none', 'none',
                case when r % 40 = 0 then created + interval '7 days' end,
                case when r % 40 = 0 then created + interval '7 days' end,
                created, created
           from generate_series(0, $1 - 1) g
           cross join lateral (select g / 100 as r,
               timestamptz '2026-01-01 00:00:00+00' + g * interval '5 minutes' as created) d",
            vec![DISPUTES],
        ),
        (
            "insert into dispute_actions (tenant_id, id, dispute_id, actor, what, stage, status,
             amount, created_at, ordinal)
         select 'ten_' || (d % 100), 'act_' || lpad(g::text, 9, '0'),
                'dsp_' || lpad(d::text, 8, '0'), 'merchant', 'updated', 'chargeback', 'won',
                1000, timestamptz '2026-01-01 00:00:00+00' + d * interval '5 minutes'
                    + (g % $2) * interval '1 minute',
                g % $2 + 1
           from generate_series(0, $1 * $2 - 1) g
           cross join lateral (select g / $2 as d) x",
            per_dispute(ACTIONS_PER_DISPUTE),
        ),
        // Event `g` belongs to dispute `g / 2`; its position in its tenant follows its time.
        (
            "insert into dispute_events (tenant_id, id, dispute_id, type, payload, created_at,
             position)
         select 'ten_' || (d % 100), 'evt_' || lpad(g::text, 9, '0'),
                'dsp_' || lpad(d::text, 8, '0'),
                case when k = 0 then 'dispute.created'
                     else (array['dispute.updated', 'dispute.funds_withdrawn',
                                 'dispute.funds_reinstated', 'dispute.won', 'dispute.lost',
                                 'dispute.closed', 'dispute.due_soon'])[1 + (d / 100) % 7]
                end,
                '\\x00'::bytea,
                timestamptz '2026-01-01 00:00:00+00' + d * interval '5 minutes'
                    + k * interval '1 minute',
                (d / 100) * $2 + k + 1
           from generate_series(0, $1 * $2 - 1) g
           cross join lateral (select g / $2 as d, g % $2 as k) x",
            per_dispute(EVENTS_PER_DISPUTE),
        ),
        (
            "insert into event_positions (tenant_id, last_position)
             select tenant_id, max(position) from dispute_events group by tenant_id",
            vec![],
        ),
        // Endpoint `g` belongs to tenant `g % 100`; one in ten is deleted.
        (
            "insert into webhook_endpoints (tenant_id, id, url, secret, deleted_at, created_at)
         select 'ten_' || (g % 100), 'we_' || lpad(g::text, 6, '0'),
                'https://hooks.example.com/' || g, 'whsec_seed',
                case when g / 100 % 10 = 9 then timestamptz '2026-06-01 00:00:00+00' end,
                timestamptz '2026-01-01 00:00:00+00' + g * interval '1 hour'
           from generate_series(0, $1 - 1) g",
            vec![TENANTS * ENDPOINTS_PER_TENANT],
        ),
        // One delivery per event, to one of the tenant's first two endpoints; a few
        // pending, fewer failed.
        (
            "insert into webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type,
             status, attempt_count, next_attempt_at, created_at)
         select e.tenant_id, 'whd_' || lpad(e.seq::text, 9, '0'),
                'we_' || lpad(((e.seq % 2) * 100 + substr(e.tenant_id, 5)::int)::text, 6, '0'),
                e.id, e.type,
                case when e.seq % 97 = 0 then 'failed'
                     when e.seq % 53 = 0 then 'pending'
                     else 'succeeded' end,
                1, case when e.seq % 53 = 0 then e.created_at + interval '1 minute' end,
                e.created_at
           from dispute_events e",
            vec![],
        ),
        ("set session_replication_role = origin", vec![]),
        (
            "analyze disputes, dispute_actions, dispute_events, webhook_endpoints,
                 webhook_deliveries, event_positions",
            vec![],
        ),
    ];
    for (statement, params) in statements {
        let mut query = sqlx::query(statement);
        for param in params {
            query = query.bind(param);
        }
        query
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|error| panic!("seeding failed: {error}\n{statement}"));
    }
}

/// `EXPLAIN (FORMAT JSON)` of a case's statement with its parameters bound.
async fn plan_of(conn: &mut PgConnection, case: &Case) -> Value {
    let text = format!("explain (format json) {}", case.sql);
    // Not kept as a prepared statement: each case is planned for its own values, as the
    // first calls on a connection are (see docs/performance.md, "Indexes").
    let mut query = sqlx::query(&text).persistent(false);
    for param in &case.params {
        query = match param {
            Text(value) => query.bind(*value),
            Time(value) => query.bind(*value),
            Texts(value) => query.bind(value.clone()),
            Int(value) => query.bind(*value),
        };
    }
    let row = query
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|error| panic!("{}: explain failed: {error}", case.name));
    let plan: Json<Value> = row.get(0);
    plan.0
}

/// The plan PostgreSQL's plan cache may switch a prepared statement to after its first five
/// executions (a generic plan, made without the parameters' values), when it does not cost
/// more than the custom plans made so far: `EXPLAIN EXECUTE` of the statement prepared
/// under `plan_cache_mode = force_generic_plan`.
async fn generic_plan_of(conn: &mut PgConnection, n: usize, case: &Case) -> Value {
    let literals: Vec<String> = case
        .params
        .iter()
        .map(|param| match param {
            Text(Some(value)) => literal(value),
            Time(Some(value)) => literal(&value.to_rfc3339()),
            Text(None) | Time(None) => "null".to_owned(),
            Texts(values) => format!(
                "array[{}]::text[]",
                values
                    .iter()
                    .map(|v| literal(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Int(value) => value.to_string(),
        })
        .collect();
    let script = format!(
        "set plan_cache_mode = force_generic_plan;
         prepare generic_{n} as {};
         explain (format json) execute generic_{n}({});
         deallocate generic_{n};
         reset plan_cache_mode;",
        case.sql,
        literals.join(", ")
    );
    let rows = sqlx::raw_sql(&script)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|error| panic!("{}: explain execute failed: {error}", case.name));
    let plan: Json<Value> = rows[0].get(0);
    plan.0
}

fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The large tables a plan node (or any node under it) reads by a sequential scan, and a
/// one-line description of every scan, for the failure message.
fn scans(node: &Value, seq_scanned: &mut Vec<String>, described: &mut Vec<String>) {
    let node_type = node["Node Type"].as_str().unwrap_or_default();
    let relation = node["Relation Name"].as_str();
    let index = node["Index Name"].as_str();
    if relation.is_some() || index.is_some() {
        let using = index.map(|i| format!(" using {i}")).unwrap_or_default();
        let on = relation.map(|r| format!(" on {r}")).unwrap_or_default();
        described.push(format!("{node_type}{using}{on}"));
    }
    if let Some(relation) = relation
        && node_type == "Seq Scan"
        && LARGE_TABLES.contains(&relation)
    {
        seq_scanned.push(relation.to_owned());
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        scans(child, seq_scanned, described);
    }
}

/// ListDisputes' filters (`None`: not given).
#[derive(Default, Clone, Copy)]
struct DisputeFilters {
    charge: Option<&'static str>,
    payment_intent: Option<&'static str>,
    transaction_id: Option<&'static str>,
    status: Option<&'static str>,
    stage: Option<&'static str>,
    side: Option<&'static str>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    due_before: Option<DateTime<Utc>>,
    after: Option<(DateTime<Utc>, &'static str)>,
}

fn dispute_cases(at: impl Fn(i64) -> Option<DateTime<Utc>>) -> Vec<Case> {
    // Bound in the order `list_disputes` binds them.
    let list = |name, f: DisputeFilters| Case {
        name,
        sql: LIST_DISPUTES_SQL.as_str(),
        params: vec![
            Text(Some("ten_7")),
            Text(f.charge),
            Text(f.payment_intent),
            Text(f.transaction_id),
            Text(f.status),
            Text(f.stage),
            Text(f.side),
            Time(f.created_after),
            Time(f.created_before),
            Time(f.due_before),
            Time(f.after.map(|(time, _)| time)),
            Text(f.after.map(|(_, id)| id)),
            Int(21),
        ],
    };
    let none = DisputeFilters::default();
    let cursor = at(50_007).map(|time| (time, "dsp_00050007"));
    vec![
        list("ListDisputes, no filter", none),
        list(
            "ListDisputes, page after a cursor",
            DisputeFilters {
                after: cursor,
                ..none
            },
        ),
        list(
            "ListDisputes, charge",
            DisputeFilters {
                charge: Some("ch_50007"),
                ..none
            },
        ),
        list(
            "ListDisputes, payment_intent",
            DisputeFilters {
                payment_intent: Some("pi_50007"),
                ..none
            },
        ),
        list(
            "ListDisputes, transaction_id",
            DisputeFilters {
                transaction_id: Some("ipi_50010"),
                ..none
            },
        ),
        list(
            "ListDisputes, status",
            DisputeFilters {
                status: Some("needs_response"),
                ..none
            },
        ),
        list(
            "ListDisputes, stage",
            DisputeFilters {
                stage: Some("arbitration"),
                ..none
            },
        ),
        list(
            "ListDisputes, side",
            DisputeFilters {
                side: Some("issuer"),
                ..none
            },
        ),
        list(
            "ListDisputes, created_after and created_before",
            DisputeFilters {
                created_after: at(30_000),
                created_before: at(31_000),
                ..none
            },
        ),
        list(
            "ListDisputes, created_before",
            DisputeFilters {
                created_before: at(1_000),
                ..none
            },
        ),
        list(
            "ListDisputes, due_before",
            DisputeFilters {
                due_before: at(20_000),
                ..none
            },
        ),
        list(
            "ListDisputes, charge and due_before (H7)",
            DisputeFilters {
                charge: Some("ch_50007"),
                due_before: at(60_000),
                ..none
            },
        ),
        list(
            "ListDisputes, status and stage after a cursor",
            DisputeFilters {
                status: Some("under_review"),
                stage: Some("inquiry"),
                after: cursor,
                ..none
            },
        ),
    ]
}

fn event_cases(at: impl Fn(i64) -> Option<DateTime<Utc>>) -> Vec<Case> {
    let sql: &'static str = LIST_EVENTS_SQL.as_str();
    // tenant, after position (0: from the start), types, dispute id, created after, created
    // before, limit
    let list = |name, after: i64, types: &[&str], filters: [Param; 3]| {
        let mut params = vec![
            Text(Some("ten_7")),
            Int(after),
            Texts(types.iter().map(|t| (*t).to_owned()).collect()),
        ];
        params.extend(filters);
        params.push(Int(101));
        Case { name, sql, params }
    };
    // The position of evt_000100014 (dispute 50007, its first event), deep in ten_7's feed.
    let deep = 1001;
    vec![
        list(
            "ListEvents, from the start",
            0,
            &[],
            [Text(None), Time(None), Time(None)],
        ),
        list(
            "ListEvents, deep in the feed",
            deep,
            &[],
            [Text(None), Time(None), Time(None)],
        ),
        list(
            "ListEvents, one type",
            0,
            &["dispute.lost"],
            [Text(None), Time(None), Time(None)],
        ),
        list(
            "ListEvents, two types deep in the feed",
            deep,
            &["dispute.lost", "dispute.due_soon"],
            [Text(None), Time(None), Time(None)],
        ),
        list(
            "ListEvents, dispute_id",
            0,
            &[],
            [Text(Some("dsp_00050007")), Time(None), Time(None)],
        ),
        list(
            "ListEvents, created_after",
            0,
            &[],
            [Text(None), Time(at(90_000)), Time(None)],
        ),
        list(
            "ListEvents, created_after and created_before",
            0,
            &[],
            [Text(None), Time(at(40_000)), Time(at(41_000))],
        ),
        list(
            "ListEvents, created_before",
            0,
            &[],
            [Text(None), Time(None), Time(at(2_000))],
        ),
        list(
            "ListEvents, one type in a time range",
            0,
            &["dispute.won"],
            [Text(None), Time(at(60_000)), Time(at(70_000))],
        ),
    ]
}

fn other_cases(at: impl Fn(i64) -> Option<DateTime<Utc>>) -> Vec<Case> {
    let history: &'static str = LIST_HISTORY_PAGE_SQL.as_str();
    let endpoints: &'static str = LIST_ENDPOINTS_SQL.as_str();
    let deliveries = LIST_DELIVERIES_SQL;
    let tenant = || Text(Some("ten_7"));
    vec![
        Case {
            name: "ListDisputeHistory, first page",
            sql: history,
            params: vec![tenant(), Text(Some("dsp_00050007")), Text(None), Int(21)],
        },
        Case {
            name: "ListDisputeHistory, after an entry",
            sql: history,
            params: vec![
                tenant(),
                Text(Some("dsp_00050007")),
                Text(Some("act_000150021")),
                Int(21),
            ],
        },
        Case {
            name: "ListWebhookEndpoints, first page",
            sql: endpoints,
            params: vec![tenant(), Time(None), Text(None), Int(21)],
        },
        Case {
            name: "ListWebhookEndpoints, after a cursor",
            sql: endpoints,
            params: vec![
                tenant(),
                Time(Some(base_time() + Duration::hours(7_207))),
                Text(Some("we_007207")),
                Int(21),
            ],
        },
        Case {
            name: "ListDeliveries, no filter",
            sql: deliveries,
            params: vec![
                tenant(),
                Text(None),
                Text(None),
                Text(None),
                Time(None),
                Text(None),
                Int(21),
            ],
        },
        Case {
            name: "ListDeliveries, endpoint_id after a cursor",
            sql: deliveries,
            params: vec![
                tenant(),
                Text(Some("we_000107")),
                Text(None),
                Text(None),
                Time(at(50_007)),
                Text(Some("whd_000100014")),
                Int(21),
            ],
        },
        Case {
            name: "ListDeliveries, event_id",
            sql: deliveries,
            params: vec![
                tenant(),
                Text(None),
                Text(Some("evt_000100014")),
                Text(None),
                Time(None),
                Text(None),
                Int(21),
            ],
        },
        Case {
            name: "ListDeliveries, status",
            sql: deliveries,
            params: vec![
                tenant(),
                Text(None),
                Text(None),
                Text(Some("failed")),
                Time(None),
                Text(None),
                Int(21),
            ],
        },
    ]
}

#[sqlx::test(migrations = "./migrations")]
async fn every_list_filter_and_order_reads_through_an_index_on_large_tables(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let started = Instant::now();
    seed(&mut conn).await;
    let seeded = started.elapsed();

    // The creation time of dispute `g` (events and deliveries of it follow within minutes).
    let at = |g: i64| Some(base_time() + Duration::minutes(5 * g));
    let names: Vec<&str> = EXPECTED_INDEXES.iter().map(|(name, _)| *name).collect();
    let cases: Vec<Case> = dispute_cases(at)
        .into_iter()
        .chain(event_cases(at))
        .chain(other_cases(at))
        .collect();

    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        for (kind, plan) in [
            ("custom plan", plan_of(&mut conn, case).await),
            ("generic plan", generic_plan_of(&mut conn, n, case).await),
        ] {
            let mut seq_scanned = Vec::new();
            let mut described = Vec::new();
            scans(&plan[0]["Plan"], &mut seq_scanned, &mut described);
            println!("{} ({kind}): {}", case.name, described.join(", "));
            let expected = EXPECTED_INDEXES
                .iter()
                .find(|(name, _)| *name == case.name)
                .map(|(_, index)| *index);
            if let Some(index) = expected
                && kind == "custom plan"
                && !described
                    .iter()
                    .any(|scan| scan.split(' ').any(|word| word == index))
            {
                failures.push(format!(
                    "{} ({kind}) does not read {index}: {}",
                    case.name,
                    described.join(", ")
                ));
            }
            if !seq_scanned.is_empty() {
                failures.push(format!(
                    "{} ({kind}) reads {} by a sequential scan:\n{:#}",
                    case.name,
                    seq_scanned.join(", "),
                    plan
                ));
            }
        }
    }
    println!(
        "seeded in {seeded:?}, {} plans checked in {:?}",
        cases.len(),
        started.elapsed() - seeded
    );
    for name in names {
        assert!(
            cases.iter().any(|case| case.name == name),
            "no case named {name}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
