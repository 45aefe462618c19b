//! The SQL of each measured call, through pgbench (`/usr/bin/pgbench`, prepared statements,
//! the same PostgreSQL and databases): the database's own limit for that work.
//!
//! The statements are dispute-core's (crates/dispute-core/src/store/) and document-store's
//! (store/postgres.rs), in the order the calls run them; values the services bind are
//! pgbench variables, except filters the call leaves empty (literal nulls) and the
//! lifecycle columns (literals of the same types). Keep them in step with the store code.
//! (A `:` inside a literal would read as a pgbench variable: it is written `chr(58)`.)

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, bail};

use crate::Args;
use crate::seed::Seed;

/// Copies of the issuer dispute the CreateAction transaction picks from at random.
const ACTION_COPIES: u32 = 2_000;

const DISPUTE_COLUMNS: &str = "tenant_id, id, version, side, stage, status, amount, currency, charge, \
    payment_intent, transaction_id, merchant_id, network, payment_method_type, reason, \
    network_reason_code, network_case_id, memo, date_customer_reported, applicable_regulation, \
    credit_status, evidence, due_time, has_evidence, submission_count, is_charge_refundable, \
    metadata, livemode, original_amount, amount_won, amount_lost, created_at, updated_at, \
    reversal_lapses_at, transaction_date, new_account, pos_or_foreign, \
    billing_cycle_closing_day, three_ds_authenticated, digital_wallet_token, transaction_posted, \
    deadline_breaches, close_reason";

const ACTION_COLUMNS: &str = "a.dispute_id, a.id, a.actor, a.what, a.message, a.document_ids, \
    a.stage, a.status, a.amount, a.created_at, a.ordinal";

const LEDGER_COLUMNS: &str = "dispute_id, id, type, amount, currency, description, created_at, \
    fee_details, reporting_category, available_on, available_on <= now() as available";

/// One pgbench run.
pub struct Figure {
    pub name: &'static str,
    pub clients: u32,
    pub tps: f64,
    pub latency_ms: f64,
}

/// The history (newest 20) and ledger of dispute `id` (SQL) as JSON, as `select_dispute`
/// reads them.
fn children_json(id: &str) -> String {
    format!(
        "(select coalesce(json_agg(h order by h.ordinal), '[]'::json)
    from (select {ACTION_COLUMNS} from dispute_actions a
           where a.tenant_id = :tenant and a.dispute_id = {id}
           order by a.ordinal desc limit 20) h) as history,
  (select coalesce(json_agg(l order by l.created_at, l.id), '[]'::json)
    from (select {LEDGER_COLUMNS} from balance_transactions
           where tenant_id = :tenant and dispute_id = {id}) l) as ledger"
    )
}

/// A dispute with its history and ledger, as `select_dispute` reads it; `id` is SQL:
/// unlocked in one statement, locked (`for update`) in two.
fn read_dispute(id: &str, locking: &str) -> String {
    let children = children_json(id);
    if locking.is_empty() {
        format!(
            "select {DISPUTE_COLUMNS}, {children}
  from disputes where tenant_id = :tenant and id = {id};
"
        )
    } else {
        format!(
            "select {DISPUTE_COLUMNS} from disputes where tenant_id = :tenant and id = {id} {locking};
select {children};
"
        )
    }
}

fn get_dispute() -> String {
    read_dispute(":id", "")
}

/// ListDisputes' page query (no filter, first page: 21 rows) with history and ledger.
fn list_disputes() -> String {
    format!(
        "select {DISPUTE_COLUMNS} from disputes
  where tenant_id = :tenant
    and (null::text is null or charge = null)
    and (null::text is null or payment_intent = null)
    and (null::text is null or transaction_id = null)
    and (null::text is null or status = null)
    and (null::text is null or stage = null)
    and (null::text is null or side = null)
    and (null::timestamptz is null or created_at >= null)
    and (null::timestamptz is null or created_at < null)
    and (null::timestamptz is null or due_time < null)
    and (null::timestamptz is null or (created_at, id) < (null, null))
  order by created_at desc, id desc
  limit 21;
select {ACTION_COLUMNS}
  from unnest(:ids::text[]) as d(id)
  cross join lateral (
      select * from dispute_actions
       where tenant_id = :tenant and dispute_id = d.id
       order by ordinal desc
       limit 20) a;
select b.dispute_id, b.id, b.type, b.amount, b.currency, b.description, b.created_at,
       b.fee_details, b.reporting_category, b.available_on, b.available_on <= now() as available
  from unnest(:ids::text[]) as d(id)
  cross join lateral (
      select * from balance_transactions
       where tenant_id = :tenant and dispute_id = d.id) b
 order by b.created_at, b.id;
"
    )
}

/// document-store's ListDocuments query for one dispute (page size 100).
fn list_documents() -> String {
    "select id, tenant_id, dispute_id, filename, content_type, size_bytes, sha256, created_at, lock_time
   from documents
  where tenant_id = :tenant and state = 'available'
    and (:id::text is null or dispute_id = :id)
    and (null::timestamptz is null or (created_at, id) < (null, null))
  order by created_at desc, id desc
  limit 101;
"
    .to_owned()
}

/// The events of a change and their webhook deliveries, as `insert_events_with_deliveries`
/// writes them; `events` are (id, type) SQL pairs.
fn record_events(dispute: &str, events: &[(&str, &str)]) -> String {
    let ids: Vec<&str> = events.iter().map(|(id, _)| *id).collect();
    let types: Vec<&str> = events.iter().map(|(_, kind)| *kind).collect();
    format!(
        "with recorded as (
     insert into dispute_events (tenant_id, id, dispute_id, type, payload)
     select :tenant, e.id, {dispute}, e.type, convert_to(repeat('x', :payload), 'UTF8')
       from unnest(array[{ids}]::text[], array[{types}]::text[]) with ordinality as e(id, type, n)
      order by e.n
     returning id, type)
 insert into webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type, next_attempt_at)
 select w.tenant_id, new_prefixed_id('whd'), w.id, recorded.id, recorded.type, now()
   from recorded
   join webhook_endpoints w
     on w.tenant_id = :tenant and w.enabled and w.deleted_at is null
    and (cardinality(w.event_types) = 0 or recorded.type = any(w.event_types));
",
        ids = ids.join(", "),
        types = types.join(", "),
    )
}

/// CreateAction PROVISIONAL_CREDIT with a request id (mutation.rs, persist.rs): claim the
/// key, savepoint, lock and read the dispute, update it, ledger entry, history entry (each
/// write returning its row, so nothing is read back), one event with its deliveries,
/// remember the answer, commit.
fn create_action() -> String {
    let dispute = "('pgb_' || :n::text)";
    format!(
        "\\set n random(1, {ACTION_COPIES})
\\set r random(1, 1000000000)
\\set key :client_id * 1000000000 + :r
begin;
insert into idempotency_keys (tenant_id, operation, request_id, request_fingerprint, response)
 values (:tenant, 'CreateAction', :key::text, 'fingerprint', '')
 on conflict do nothing;
savepoint idempotent_change;
{lock}update disputes
   set stage = 'inquiry', status = 'needs_response', credit_status = 'provisional', amount = 4200,
       due_time = now() + interval '10 days', amount_won = 0, amount_lost = 0,
       submission_count = 0, reversal_lapses_at = null, overdue = false,
       next_deadline = now() + interval '10 days', evidence = '{{}}'::jsonb, has_evidence = false,
       metadata = '{{}}'::jsonb, network_reason_code = null, deadline_breaches = '[]'::jsonb,
       close_reason = null, version = version + 1
 where tenant_id = :tenant and id = {dispute}
 returning {DISPUTE_COLUMNS};
insert into balance_transactions (tenant_id, id, dispute_id, type, amount, currency, description,
    fee, fee_details, reporting_category, available_on)
 values (:tenant, 'txn_pgb_' || :key::text, {dispute}, 'provisional_credit', 4200, 'USD',
         'provisional credit to the cardholder', 0, '[]'::jsonb, 'dispute', now() + interval '7 days')
 returning {LEDGER_COLUMNS};
insert into dispute_actions as a (tenant_id, id, dispute_id, actor, what, message, document_ids,
    stage, status, amount, ordinal)
 select :tenant, 'act_pgb_' || :key::text, {dispute}, 'tenant', 'provisional_credit', '',
         '{{}}'::text[], 'inquiry', 'needs_response', 4200, coalesce(max(ordinal), 0) + 1
   from dispute_actions where tenant_id = :tenant and dispute_id = {dispute}
 returning {ACTION_COLUMNS};
{events}update idempotency_keys set response = convert_to(repeat('x', :payload), 'UTF8')
 where tenant_id = :tenant and operation = 'CreateAction' and request_id = :key::text;
commit;
",
        lock = read_dispute(dispute, "for update"),
        events = record_events(dispute, &[("'evt_pgb_' || :key::text", "'dispute.updated'")]),
    )
}

/// RecordNetworkEvent CHARGEBACK for a new case (record_network_event.rs): lock the case,
/// look for the event and the case, lock and sum the charge's disputes, insert the dispute,
/// withdrawal and fee, history entry (each write returning its row), two events with their
/// deliveries, the network event, commit.
fn record_network_event() -> String {
    let dispute = "('dsp_pgb_' || :key::text)";
    let case = "('PGB-' || :key::text)";
    let charge = "('ch_pgb_' || :key::text)";
    format!(
        "\\set r random(1, 1000000000)
\\set key :client_id * 1000000000 + :r
begin;
select pg_advisory_xact_lock(hashtextextended('case/' || :tenant || '/' || 'visa' || '/' || {case}, 0));
select dispute_id, applied from network_events
 where tenant_id = :tenant and network = 'visa' and network_case_id = {case} and event_id = 'evt-1';
select id from disputes where tenant_id = :tenant and network = 'visa' and network_case_id = {case};
select pg_advisory_xact_lock(hashtextextended(:tenant || '/' || 'charge' || '/' || {charge}, 0));
select coalesce(sum(amount), 0)::bigint, max(original_amount) from disputes
 where tenant_id = :tenant and charge = {charge} and status <> 'closed'
   and (null::text is null or id <> null);
insert into disputes (tenant_id, id, side, stage, status, amount, currency, charge,
    payment_intent, transaction_id, merchant_id, network, payment_method_type, reason,
    network_reason_code, network_case_id, memo, date_customer_reported,
    applicable_regulation, credit_status, due_time, is_charge_refundable, metadata,
    livemode, original_amount, reversal_lapses_at, overdue, next_deadline, amount_won,
    amount_lost, transaction_date, new_account, pos_or_foreign, billing_cycle_closing_day,
    three_ds_authenticated, digital_wallet_token, transaction_posted)
 values (:tenant, {dispute}, 'merchant', 'chargeback', 'needs_response', 5000, 'EUR', {charge},
    null, null, null, 'visa', 'card', 'fraudulent', null, {case}, null, null, 'none', 'none',
    now() + interval '20 days', false, '{{}}'::jsonb, false, null, null, false,
    now() + interval '20 days', 0, 0, null, false, false, null, false, false, true)
 returning {DISPUTE_COLUMNS};
insert into balance_transactions (tenant_id, id, dispute_id, type, amount, currency, description,
    fee, fee_details, reporting_category)
 values (:tenant, 'txn_pgb_w' || :key::text, {dispute}, 'withdrawal', -5000, 'EUR', 'withdrawal',
    1500, jsonb_build_array(jsonb_build_object('type', 'dispute_fee', 'amount', 1500,
    'description', 'dispute fee')),
    'dispute')
 returning {LEDGER_COLUMNS};
insert into dispute_actions as a (tenant_id, id, dispute_id, actor, what, message, document_ids, stage,
    status, amount, ordinal)
 select :tenant, 'act_pgb_' || :key::text, {dispute}, 'network', 'network' || chr(58) || 'CHARGEBACK', '',
         '{{}}'::text[], 'chargeback', 'needs_response', 5000, coalesce(max(ordinal), 0) + 1
   from dispute_actions where tenant_id = :tenant and dispute_id = {dispute}
 returning {ACTION_COLUMNS};
{events}insert into network_events (tenant_id, network, network_case_id, event_id, dispute_id, type, applied)
 values (:tenant, 'visa', {case}, 'evt-1', {dispute}, 'chargeback', true);
commit;
",
        events = record_events(
            dispute,
            &[
                ("'evt_pgb_c' || :key::text", "'dispute.created'"),
                ("'evt_pgb_w' || :key::text", "'dispute.funds_withdrawn'"),
            ]
        ),
    )
}

/// A script: its name, database URL, SQL and variables (`-D name=value`).
type Script<'a> = (&'static str, &'a str, String, Vec<(&'a str, &'a str)>);

/// The reads' scripts (`reads`) or the writes' scripts, each at 1 client and at
/// `--pgbench-clients`.
pub async fn run_all(
    args: &Args,
    disputes_url: &str,
    documents_url: &str,
    seed: &Seed,
    tenant: &str,
    reads: bool,
) -> anyhow::Result<Vec<Figure>> {
    let pgbench = which_pgbench()?;
    if !reads && args.wants("action") {
        copy_issuer_dispute(disputes_url, tenant, &seed.issuer_template_id).await?;
    }
    let work = tempfile::tempdir()?;
    let ids = format!("{{{}}}", seed.listed_ids.join(","));
    let payload = seed.snapshot_bytes.to_string();
    let scripts: Vec<Script<'_>> = vec![
        (
            "get_dispute",
            disputes_url,
            get_dispute(),
            vec![("id", seed.get_id.as_str())],
        ),
        (
            "list_documents",
            documents_url,
            list_documents(),
            vec![("id", seed.get_id.as_str())],
        ),
        (
            "list_disputes",
            disputes_url,
            list_disputes(),
            vec![("ids", ids.as_str())],
        ),
        (
            "create_action",
            disputes_url,
            create_action(),
            vec![("payload", payload.as_str())],
        ),
        (
            "record_network_event",
            disputes_url,
            record_network_event(),
            vec![("payload", payload.as_str())],
        ),
    ];
    let mut figures = Vec::new();
    for (name, url, script, vars) in scripts {
        let wanted = match name {
            "get_dispute" | "list_documents" => reads && args.wants("get"),
            "list_disputes" => reads && args.wants("list"),
            "create_action" => !reads && args.wants("action"),
            _ => !reads && args.wants("network"),
        };
        if !wanted {
            continue;
        }
        let file = work.path().join(format!("{name}.sql"));
        std::fs::write(&file, script)?;
        for clients in [1, args.pgbench_clients] {
            eprintln!("pgbench {name}, {clients} clients ...");
            let (tps, latency_ms) = run_pgbench(
                &pgbench,
                url,
                &file,
                clients,
                args.pgbench_seconds,
                tenant,
                &vars,
            )
            .await
            .with_context(|| format!("pgbench {name}"))?;
            figures.push(Figure {
                name,
                clients,
                tps,
                latency_ms,
            });
        }
    }
    Ok(figures)
}

fn which_pgbench() -> anyhow::Result<std::path::PathBuf> {
    for candidate in ["/usr/bin/pgbench", "/usr/lib/postgresql/15/bin/pgbench"] {
        if Path::new(candidate).is_file() {
            return Ok(candidate.into());
        }
    }
    bail!("pgbench not found (apt-get install -y postgresql-contrib or postgresql-client)")
}

/// `ACTION_COPIES` copies of the issuer dispute, ids `pgb_1`…, for the CreateAction script.
async fn copy_issuer_dispute(url: &str, tenant: &str, template: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::query(
        "insert into disputes
         select (jsonb_populate_record(null::disputes,
                   to_jsonb(d) || jsonb_build_object('id', 'pgb_' || g))).*
           from disputes d, generate_series(1, $3::int) g
          where d.tenant_id = $1 and d.id = $2",
    )
    .bind(tenant)
    .bind(template)
    .bind(ACTION_COPIES as i32)
    .execute(&pool)
    .await
    .context("copy the issuer dispute for pgbench")?;
    pool.close().await;
    Ok(())
}

async fn run_pgbench(
    pgbench: &Path,
    url: &str,
    script: &Path,
    clients: u32,
    seconds: u64,
    tenant: &str,
    vars: &[(&str, &str)],
) -> anyhow::Result<(f64, f64)> {
    let mut command = tokio::process::Command::new(pgbench);
    command
        .args(["-n", "-M", "prepared"])
        .arg(format!("-c{clients}"))
        .arg(format!("-j{}", clients.min(2)))
        .arg(format!("-T{seconds}"))
        .arg("-f")
        .arg(script)
        .arg("-D")
        .arg(format!("tenant={tenant}"));
    for (name, value) in vars {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    let output = command
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .await
        .context("run pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {}\n{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let number_after = |prefix: &str| -> anyhow::Result<f64> {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .with_context(|| format!("no {prefix:?} in pgbench output:\n{stdout}"))?;
        line.split('=')
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("unreadable {line:?}"))
    };
    let failed = stdout
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
        .unwrap_or_default();
    if !failed.is_empty() && !failed.contains(": 0 ") {
        eprintln!("pgbench: {failed}");
    }
    Ok((number_after("tps")?, number_after("latency average")?))
}
