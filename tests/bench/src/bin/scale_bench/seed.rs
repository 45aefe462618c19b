//! Seeding in SQL: a few template disputes are made through the API (so every row and event
//! payload is one the services wrote), then copied set-based (`insert … select` over
//! `generate_series`) into `disputes` disputes across `tenants` tenants, each with the
//! template's history and ledger, one document in document-store, and `events_per_dispute`
//! events spread over `days` days in the past.
//!
//! Ids are the type prefix, `0` and hexadecimal digits (valid lower-case ULIDs), derived
//! from the row's number, so the measuring side can name any row without asking:
//! dispute `d` (0-based) belongs to tenant `d % tenants` and is that tenant's dispute
//! number `d / tenants`; its events are numbers `d * k .. d * k + k` and take the tenant's
//! positions `(d / tenants) * k + 1 ..`, in time order.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};
use disputes_proto::disputes_v1 as dpb;
use harness::{Stack, StackOptions};
use sqlx::{Connection, PgConnection};

/// The tenant the templates are made in (left in the database, a few rows).
pub const TEMPLATE_TENANT: &str = "scale_template";

/// Rows of a seeded database, as the measuring side needs them.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub disputes: u64,
    pub tenants: u64,
    pub events_per_dispute: u64,
    pub days: u64,
}

impl Size {
    pub fn per_tenant(&self) -> u64 {
        self.disputes / self.tenants
    }

    pub fn events(&self) -> u64 {
        self.disputes * self.events_per_dispute
    }

    /// The database names of this size: the same on every run with `--keep-db` (to find
    /// them again), with a random part otherwise (runs at once do not collide).
    pub fn database_names(&self, keep: bool) -> (String, String) {
        let mut stem = format!(
            "scale_bench_{}d_{}t_{}k_{}days",
            self.disputes, self.tenants, self.events_per_dispute, self.days
        );
        if !keep {
            let random = uuid::Uuid::new_v4().simple().to_string();
            stem = format!("{stem}_{}", &random[..8]);
        }
        (format!("{stem}_disputes"), format!("{stem}_documents"))
    }
}

pub fn tenant(t: u64) -> String {
    format!("tenant_{t:05}")
}

pub fn dispute_id(d: u64) -> String {
    format!("dsp_0{:025x}", d + 1)
}

pub fn event_id(e: u64) -> String {
    format!("evt_0{:025x}", e + 1)
}

/// SQL twins of the functions above (`d`, `e`: bigint expressions).
fn tenant_sql(d: &str, tenants: u64) -> String {
    format!("('tenant_' || lpad(({d} % {tenants})::text, 5, '0'))")
}

fn dispute_id_sql(d: &str) -> String {
    format!("('dsp_0' || lpad(to_hex({d} + 1), 25, '0'))")
}

/// What `--keep-db` finds again: the seed's start time, written as the database comment.
pub struct SeedInfo {
    pub base: DateTime<Utc>,
    pub seconds: f64,
}

const COMMENT_PREFIX: &str = "scale-bench seed v1";

pub async fn read_seed_info(admin_url: &str, database: &str) -> anyhow::Result<Option<SeedInfo>> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let comment: Option<String> = sqlx::query_scalar(
        "select shobj_description(oid, 'pg_database') from pg_database where datname = $1",
    )
    .bind(database)
    .fetch_optional(&mut conn)
    .await?
    .flatten();
    conn.close().await?;
    let Some(rest) = comment
        .as_deref()
        .and_then(|c| c.strip_prefix(COMMENT_PREFIX))
    else {
        return Ok(None);
    };
    let mut fields = HashMap::new();
    for pair in rest.split_whitespace() {
        if let Some((key, value)) = pair.split_once('=') {
            fields.insert(key, value);
        }
    }
    let base = fields
        .get("base_us")
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_micros);
    let seconds = fields
        .get("seconds")
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    Ok(base.map(|base| SeedInfo { base, seconds }))
}

/// Seeds the two (new, empty) databases. The services run once to migrate them and to make
/// the templates, then stop; the copying is plain SQL.
pub async fn seed(
    size: Size,
    admin_url: &str,
    names: &(String, String),
) -> anyhow::Result<SeedInfo> {
    let started = Instant::now();
    let stack = Stack::start(StackOptions {
        databases: Some(names.clone()),
        ..Default::default()
    })
    .await
    .context("start the services to migrate and make templates")?;
    let made = make_templates(&stack).await;
    let (disputes_url, documents_url) =
        (stack.dispute_db_url.clone(), stack.document_db_url.clone());
    stack.stop().await;
    made?;

    let base = Utc::now() - chrono::Duration::days(size.days as i64);
    let mut core = PgConnection::connect(&disputes_url).await?;
    let mut docs = PgConnection::connect(&documents_url).await?;
    for conn in [&mut core, &mut docs] {
        // Bulk load: no commit flush per statement; foreign keys and triggers are not
        // checked row by row (the copies reference rows of the same batch, inserted first).
        sqlx::query("set synchronous_commit = off")
            .execute(&mut *conn)
            .await?;
        sqlx::query("set session_replication_role = replica")
            .execute(&mut *conn)
            .await?;
    }
    let templates = prepare_templates(&mut core, size.events_per_dispute).await?;
    let copies = CopySql::new(&mut core, size, templates).await?;

    let batch = (1_000_000 / size.events_per_dispute.max(1)).clamp(1, 100_000);
    let mut lo = 0;
    while lo < size.disputes {
        let hi = (lo + batch).min(size.disputes);
        copies.batch(&mut core, &mut docs, base, lo, hi).await?;
        lo = hi;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!(
            "  seeded {hi} / {} disputes, {} events ({seconds:.0} s, {:.0} events/s)",
            size.disputes,
            hi * size.events_per_dispute,
            hi as f64 * size.events_per_dispute as f64 / seconds
        );
    }
    copies.finish(&mut core).await?;
    eprintln!("  vacuum analyze ...");
    for conn in [&mut core, &mut docs] {
        // A database in service has been vacuumed and analyzed by autovacuum.
        sqlx::query("vacuum analyze").execute(&mut *conn).await?;
    }
    core.close().await?;
    docs.close().await?;

    let seconds = started.elapsed().as_secs_f64();
    let mut admin = PgConnection::connect(admin_url).await?;
    for name in [&names.0, &names.1] {
        sqlx::query(&format!(
            "comment on database \"{name}\" is '{COMMENT_PREFIX} base_us={} seconds={seconds:.1}'",
            base.timestamp_micros()
        ))
        .execute(&mut admin)
        .await?;
    }
    admin.close().await?;
    Ok(SeedInfo { base, seconds })
}

/// The templates, through the API: a merchant chargeback with staged evidence (two history
/// entries and the withdrawal with its fee), an issuer inquiry and a merchant inquiry.
async fn make_templates(stack: &Stack) -> anyhow::Result<()> {
    let client = stack.disputes_of(TEMPLATE_TENANT).await;
    let chargeback =
        crate::load::create(&client, crate::load::merchant_chargeback("ch_tpl")).await?;
    client
        .clone()
        .update_dispute(dpb::UpdateDisputeRequest {
            id: chargeback.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                shipping_tracking_number: Some("1Z999AA10123456784".to_owned()),
                shipping_carrier: Some("UPS".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .context("UpdateDispute")?;
    crate::load::create(&client, crate::load::issuer_inquiry("txn_tpl")).await?;
    let mut inquiry = crate::load::merchant_chargeback("ch_tpl_inquiry");
    inquiry.stage = dpb::DisputeStage::Inquiry.into();
    inquiry.payment_intent = "pi_tpl".to_owned();
    crate::load::create(&client, inquiry).await?;
    Ok(())
}

/// Temporary tables of the templates' rows, numbered: `tpl_d` (disputes), `tpl_a`
/// (history, with its age relative to the dispute), `tpl_b` (ledger, numbered `lno`),
/// `tpl_e` (`k` events per template, cycling over its own events, numbered `j`).
async fn prepare_templates(conn: &mut PgConnection, k: u64) -> anyhow::Result<u64> {
    let statements = [
        format!(
            "create temp table tpl_d as
             select (row_number() over (order by created_at, id) - 1)::bigint as tpl_no, *
               from disputes where tenant_id = '{TEMPLATE_TENANT}'"
        ),
        "create temp table tpl_a as
         select d.tpl_no, a.*, a.created_at - d.created_at as age
           from dispute_actions a join tpl_d d on a.tenant_id = d.tenant_id and a.dispute_id = d.id"
            .to_owned(),
        "create temp table tpl_b as
         select d.tpl_no, b.*, b.created_at - d.created_at as age,
                row_number() over (partition by d.tpl_no order by b.created_at, b.id) as lno
           from balance_transactions b
           join tpl_d d on b.tenant_id = d.tenant_id and b.dispute_id = d.id"
            .to_owned(),
        "create temp table tpl_ev as
         select d.tpl_no, e.*,
                row_number() over (partition by d.tpl_no order by e.position) - 1 as ev_no,
                count(*) over (partition by d.tpl_no) as ev_count
           from dispute_events e join tpl_d d on e.tenant_id = d.tenant_id and e.dispute_id = d.id"
            .to_owned(),
        format!(
            "create temp table tpl_e as
             select t.*, j::bigint as j
               from tpl_ev t join generate_series(0, {k} - 1) j on t.ev_no = j % t.ev_count"
        ),
    ];
    for statement in &statements {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    let templates: i64 = sqlx::query_scalar("select count(*) from tpl_d")
        .fetch_one(&mut *conn)
        .await?;
    let covered: i64 = sqlx::query_scalar("select count(distinct tpl_no) from tpl_e")
        .fetch_one(&mut *conn)
        .await?;
    ensure!(
        templates == 3 && covered == templates,
        "templates: {templates} disputes, {covered} with events"
    );
    Ok(templates as u64)
}

/// The copy statements, built from each table's columns (so a column added by a migration
/// is copied from the template as it is).
struct CopySql {
    disputes: String,
    actions: String,
    ledger: String,
    events: String,
    documents: String,
    size: Size,
    seq_offset: i64,
}

async fn columns(conn: &mut PgConnection, table: &str) -> anyhow::Result<Vec<String>> {
    let columns: Vec<String> = sqlx::query_scalar(
        "select column_name::text from information_schema.columns
          where table_schema = 'public' and table_name = $1 and is_generated = 'NEVER'
          order by ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    ensure!(!columns.is_empty(), "no table {table}");
    Ok(columns)
}

/// `insert into table (columns) select <override or t.column> <from>`.
fn copy_statement(
    table: &str,
    columns: &[String],
    overrides: &[(&str, String)],
    from: &str,
) -> String {
    let overrides: HashMap<&str, &String> = overrides.iter().map(|(c, e)| (*c, e)).collect();
    let exprs: Vec<String> = columns
        .iter()
        .map(|c| match overrides.get(c.as_str()) {
            Some(expr) => (*expr).clone(),
            None => format!("t.{c}"),
        })
        .collect();
    format!(
        "insert into {table} ({}) select {} {from}",
        columns.join(", "),
        exprs.join(", ")
    )
}

impl CopySql {
    async fn new(conn: &mut PgConnection, size: Size, templates: u64) -> anyhow::Result<CopySql> {
        let t = size.tenants;
        let k = size.events_per_dispute;
        // $1 base time, $2 seconds between disputes, $3 seconds between events, $4/$5 the
        // batch's disputes [lo, hi).
        let created = "($1::timestamptz + make_interval(secs => g.d * $2::float8))";
        let tenant = tenant_sql("g.d", t);
        let dispute = dispute_id_sql("g.d");
        let from_disputes = |tpl: &str| {
            format!(
                "from generate_series($4::bigint, $5::bigint - 1) g(d)
                 join {tpl} t on t.tpl_no = (g.d / {t}) % {templates}"
            )
        };
        let shifted = |column: &str| {
            format!(
                "case when t.{column} is null then null else {created} + (t.{column} - t.created_at) end"
            )
        };
        let disputes = copy_statement(
            "disputes",
            &columns(conn, "disputes").await?,
            &[
                ("tenant_id", tenant.clone()),
                ("id", dispute.clone()),
                ("created_at", created.to_owned()),
                ("updated_at", created.to_owned()),
                (
                    "charge",
                    "case when t.charge is null then null else 'ch_' || g.d end".to_owned(),
                ),
                (
                    "payment_intent",
                    "case when t.payment_intent is null then null else 'pi_' || g.d end".to_owned(),
                ),
                (
                    "transaction_id",
                    "case when t.transaction_id is null then null else 'itx_' || g.d end"
                        .to_owned(),
                ),
                ("network_case_id", "null".to_owned()),
                ("due_time", shifted("due_time")),
                // Nothing for the deadline sweeper to do: the seeded past is settled.
                ("next_deadline", "null".to_owned()),
                ("reversal_lapses_at", "null".to_owned()),
                ("due_soon_sent_for", "null".to_owned()),
            ],
            &from_disputes("tpl_d"),
        );
        let actions = copy_statement(
            "dispute_actions",
            &columns(conn, "dispute_actions").await?,
            &[
                ("tenant_id", tenant.clone()),
                (
                    "id",
                    "('act_0' || lpad(to_hex(g.d + 1), 19, '0') || lpad(to_hex(t.ordinal), 6, '0'))"
                        .to_owned(),
                ),
                ("dispute_id", dispute.clone()),
                ("created_at", format!("{created} + t.age")),
                ("updated_at", format!("{created} + t.age")),
            ],
            &from_disputes("tpl_a"),
        );
        let ledger = copy_statement(
            "balance_transactions",
            &columns(conn, "balance_transactions").await?,
            &[
                ("tenant_id", tenant.clone()),
                (
                    "id",
                    "('txn_0' || lpad(to_hex(g.d + 1), 19, '0') || lpad(to_hex(t.lno), 6, '0'))"
                        .to_owned(),
                ),
                ("dispute_id", dispute.clone()),
                ("created_at", format!("{created} + t.age")),
                ("updated_at", format!("{created} + t.age")),
                ("available_on", shifted("available_on")),
            ],
            &from_disputes("tpl_b"),
        );
        let seq_offset: i64 =
            sqlx::query_scalar("select coalesce(max(seq), 0) from dispute_events")
                .fetch_one(&mut *conn)
                .await?;
        let event_no = format!("(g.d * {k} + t.j)");
        let event_created =
            format!("($1::timestamptz + make_interval(secs => {event_no} * $3::float8))");
        let events = copy_statement(
            "dispute_events",
            &columns(conn, "dispute_events").await?,
            &[
                ("seq", format!("{seq_offset} + {event_no} + 1")),
                ("tenant_id", tenant.clone()),
                (
                    "id",
                    format!("('evt_0' || lpad(to_hex({event_no} + 1), 25, '0'))"),
                ),
                ("dispute_id", dispute.clone()),
                ("created_at", event_created.clone()),
                ("updated_at", event_created),
                ("position", format!("(g.d / {t}) * {k} + t.j + 1")),
            ],
            &format!("{} order by 1", from_disputes("tpl_e")),
        );
        // Bound with the same five parameters as the others ($3 unused).
        let documents = format!(
            "insert into documents (tenant_id, id, dispute_id, filename, declared_content_type,
                                    content_type, size_bytes, sha256, state, object_key,
                                    created_at, updated_at)
             select {tenant}, doc, {dispute}, 'receipt.pdf', 'application/pdf',
                    'application/pdf', 15, repeat('ab', 32), 'available',
                    {tenant} || '/' || doc, {created}, {created}
               from generate_series($4::bigint, $5::bigint - 1) g(d),
                    lateral (select 'doc_0' || lpad(to_hex(g.d + 1), 25, '0') as doc) n"
        );
        Ok(CopySql {
            disputes,
            actions,
            ledger,
            events,
            documents,
            size,
            seq_offset,
        })
    }

    async fn batch(
        &self,
        core: &mut PgConnection,
        docs: &mut PgConnection,
        base: DateTime<Utc>,
        lo: u64,
        hi: u64,
    ) -> anyhow::Result<()> {
        let span = (self.size.days * 86_400) as f64;
        let per_dispute = span / self.size.disputes as f64;
        let per_event = span / self.size.events() as f64;
        for (what, sql) in [
            ("disputes", &self.disputes),
            ("history", &self.actions),
            ("ledger", &self.ledger),
            ("events", &self.events),
        ] {
            sqlx::query(sql)
                .bind(base)
                .bind(per_dispute)
                .bind(per_event)
                .bind(lo as i64)
                .bind(hi as i64)
                .execute(&mut *core)
                .await
                .with_context(|| format!("seed {what}: {sql}"))?;
        }
        sqlx::query(&self.documents)
            .bind(base)
            .bind(per_dispute)
            .bind(per_event)
            .bind(lo as i64)
            .bind(hi as i64)
            .execute(&mut *docs)
            .await
            .context("seed documents")?;
        Ok(())
    }

    /// The counters the sequencer continues: each tenant's last position, and the `seq`
    /// sequence past the copied events.
    async fn finish(&self, core: &mut PgConnection) -> anyhow::Result<()> {
        let (t, per_tenant_events) = (
            self.size.tenants,
            self.size.per_tenant() * self.size.events_per_dispute,
        );
        sqlx::query(&format!(
            "insert into event_positions (tenant_id, last_position)
             select {}, {per_tenant_events} from generate_series(0, {t} - 1) g(d)",
            tenant_sql("g.d", t)
        ))
        .execute(&mut *core)
        .await
        .context("seed event positions")?;
        sqlx::query("select setval(pg_get_serial_sequence('dispute_events', 'seq'), $1)")
            .bind(self.seq_offset + self.size.events() as i64 + 1)
            .execute(&mut *core)
            .await
            .context("advance the event sequence")?;
        Ok(())
    }
}
