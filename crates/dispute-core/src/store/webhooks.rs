//! Webhook endpoints, deliveries and attempts (`webhook_endpoints`, `webhook_deliveries`,
//! `webhook_attempts`), and the events they carry (read from `dispute_events`). Every query
//! filters by tenant except the worker's claim and release, which work across tenants.

use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain_kit::page_token::PageCursor;
use sqlx::PgConnection;

use crate::domain::webhooks::{
    BreakerState, DeliveryStatus, SealedSecret, StoredSecret, WebhookAttempt, WebhookDelivery,
    WebhookEndpoint,
};

/// An endpoint as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct EndpointRow {
    pub id: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub disabled_reason: String,
    /// Plaintext: only rows not sealed yet.
    pub secret: Option<String>,
    pub secret_key_id: Option<String>,
    pub secret_nonce: Option<Vec<u8>>,
    pub secret_ciphertext: Option<Vec<u8>>,
    pub previous_secret: Option<String>,
    pub previous_secret_key_id: Option<String>,
    pub previous_secret_nonce: Option<Vec<u8>>,
    pub previous_secret_ciphertext: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub secret_rotated_at: Option<DateTime<Utc>>,
    pub failing_since: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A new endpoint.
pub struct NewEndpoint<'a> {
    pub id: &'a str,
    pub url: &'a str,
    pub event_types: &'a [String],
    pub description: &'a str,
    pub secret: &'a SealedSecret,
    pub request_id: Option<&'a str>,
    /// The body's fingerprint, kept with the request id.
    pub request_fingerprint: &'a [u8],
}

const ENDPOINT_COLUMNS: &str = "tenant_id, id, url, event_types, description, enabled,
    disabled_reason, secret, secret_key_id, secret_nonce, secret_ciphertext, previous_secret,
    previous_secret_key_id, previous_secret_nonce, previous_secret_ciphertext,
    previous_secret_expires_at, secret_rotated_at, failing_since, deleted_at, created_at,
    updated_at";

/// What inserting an endpoint did.
#[derive(Debug)]
pub enum EndpointInsert {
    /// Made now.
    Made(Box<WebhookEndpoint>),
    /// Made before under the same request id (deleted or not), with the fingerprint of the
    /// body it was made with (`None` before fingerprints were kept): nothing was made now.
    Replayed {
        endpoint: Box<WebhookEndpoint>,
        fingerprint: Option<Vec<u8>>,
    },
    /// The tenant already has this many endpoints (not deleted): none was made.
    LimitReached(u64),
}

/// Inserts an endpoint unless the tenant's live endpoints are `limit_reached` (given their
/// count); with a request id already used, returns the endpoint made then (`Replayed`), at
/// the limit or not. Call it in a transaction: a lock per tenant, held until it ends, orders
/// concurrent creates so that two cannot both pass the count.
pub async fn insert_endpoint(
    conn: &mut PgConnection,
    tenant_id: &str,
    new: &NewEndpoint<'_>,
    limit_reached: impl Fn(u64) -> bool,
) -> anyhow::Result<EndpointInsert> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended('webhook_endpoints/' || $1, 0))")
        .bind(tenant_id)
        .execute(&mut *conn)
        .await
        .context("lock the tenant's webhook endpoints")?;
    if let Some(request_id) = new.request_id
        && let Some((endpoint, fingerprint)) =
            find_endpoint_by_request_id(conn, tenant_id, request_id).await?
    {
        return Ok(EndpointInsert::Replayed {
            endpoint: Box::new(endpoint),
            fingerprint,
        });
    }
    let live: i64 = sqlx::query_scalar(
        "select count(*) from webhook_endpoints where tenant_id = $1 and deleted_at is null",
    )
    .bind(tenant_id)
    .fetch_one(&mut *conn)
    .await
    .context("count webhook endpoints")?;
    let live = u64::try_from(live).unwrap_or(0);
    if limit_reached(live) {
        return Ok(EndpointInsert::LimitReached(live));
    }
    let inserted: EndpointRow = sqlx::query_as(&format!(
        "insert into webhook_endpoints (tenant_id, id, url, event_types, description,
            secret_key_id, secret_nonce, secret_ciphertext, request_id, request_fingerprint)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         returning {ENDPOINT_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(new.id)
    .bind(new.url)
    .bind(new.event_types)
    .bind(new.description)
    .bind(&new.secret.key_id)
    .bind(&new.secret.nonce)
    .bind(&new.secret.ciphertext)
    .bind(new.request_id)
    .bind(new.request_id.map(|_| new.request_fingerprint))
    .fetch_one(&mut *conn)
    .await
    .context("insert webhook endpoint")?;
    Ok(EndpointInsert::Made(Box::new(inserted.try_into()?)))
}

/// The endpoint made under `request_id`, deleted or not, and its body's fingerprint.
async fn find_endpoint_by_request_id(
    conn: &mut PgConnection,
    tenant_id: &str,
    request_id: &str,
) -> anyhow::Result<Option<(WebhookEndpoint, Option<Vec<u8>>)>> {
    #[derive(sqlx::FromRow)]
    struct Made {
        #[sqlx(flatten)]
        row: EndpointRow,
        request_fingerprint: Option<Vec<u8>>,
    }
    let made: Option<Made> = sqlx::query_as(&format!(
        "select {ENDPOINT_COLUMNS}, request_fingerprint from webhook_endpoints
          where tenant_id = $1 and request_id = $2"
    ))
    .bind(tenant_id)
    .bind(request_id)
    .fetch_optional(&mut *conn)
    .await
    .context("read webhook endpoint by request id")?;
    made.map(|made| Ok((made.row.try_into()?, made.request_fingerprint)))
        .transpose()
}

/// An endpoint that is not deleted.
pub async fn find_endpoint(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<WebhookEndpoint>> {
    let found: Option<EndpointRow> = sqlx::query_as(&format!(
        "select {ENDPOINT_COLUMNS} from webhook_endpoints
          where tenant_id = $1 and id = $2 and deleted_at is null"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("read webhook endpoint")?;
    found.map(WebhookEndpoint::try_from).transpose()
}

/// An endpoint, deleted or not (the worker reads it for each attempt).
pub async fn find_endpoint_any(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<WebhookEndpoint>> {
    let found: Option<EndpointRow> = sqlx::query_as(&format!(
        "select {ENDPOINT_COLUMNS} from webhook_endpoints where tenant_id = $1 and id = $2"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("read webhook endpoint")?;
    found.map(WebhookEndpoint::try_from).transpose()
}

/// ListWebhookEndpoints' statement, exposed so that a test can check its plans. Parameters:
/// tenant, the cursor's create time and id (`null`: from the newest), limit.
pub static LIST_ENDPOINTS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "select {ENDPOINT_COLUMNS} from webhook_endpoints
          where tenant_id = $1 and deleted_at is null
            and ($2::timestamptz is null or (created_at, id) < ($2, $3))
          order by created_at desc, id desc
          limit $4"
    )
});

/// Endpoints newest first, after `after`.
pub async fn list_endpoints(
    conn: &mut PgConnection,
    tenant_id: &str,
    after: Option<&PageCursor>,
    limit: i64,
) -> anyhow::Result<Vec<WebhookEndpoint>> {
    let found: Vec<EndpointRow> = sqlx::query_as(&LIST_ENDPOINTS_SQL)
        .bind(tenant_id)
        .bind(after.map(|c| c.create_time))
        .bind(after.map(|c| c.id.as_str()))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .context("list webhook endpoints")?;
    found.into_iter().map(WebhookEndpoint::try_from).collect()
}

/// What UpdateWebhookEndpoint changes (`None`: unchanged).
#[derive(Debug, Default)]
pub struct EndpointChanges<'a> {
    pub event_types: Option<&'a [String]>,
    pub description: Option<&'a str>,
    pub enabled: Option<bool>,
}

/// Applies `changes`; enabling clears the disabled reason, the failing time and closes the
/// breaker.
pub async fn update_endpoint(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    changes: &EndpointChanges<'_>,
) -> anyhow::Result<Option<WebhookEndpoint>> {
    let found: Option<EndpointRow> = sqlx::query_as(&format!(
        "update webhook_endpoints set
            event_types = coalesce($3, event_types),
            description = coalesce($4, description),
            enabled = coalesce($5, enabled),
            disabled_reason = case when $5 is null then disabled_reason else '' end,
            failing_since = case when $5 then null else failing_since end,
            consecutive_failures = case when $5 then 0 else consecutive_failures end,
            breaker_opened_times = case when $5 then 0 else breaker_opened_times end,
            breaker_open_until = case when $5 then null else breaker_open_until end
          where tenant_id = $1 and id = $2 and deleted_at is null
          returning {ENDPOINT_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(changes.event_types)
    .bind(changes.description)
    .bind(changes.enabled)
    .fetch_optional(&mut *conn)
    .await
    .context("update webhook endpoint")?;
    found.map(WebhookEndpoint::try_from).transpose()
}

/// Marks an endpoint deleted and fails its pending deliveries; false when there was none.
pub async fn delete_endpoint(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<bool> {
    let deleted = sqlx::query(
        "update webhook_endpoints set deleted_at = now(), enabled = false
          where tenant_id = $1 and id = $2 and deleted_at is null",
    )
    .bind(tenant_id)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context("delete webhook endpoint")?
    .rows_affected()
        > 0;
    if deleted {
        fail_pending_of_endpoint(conn, tenant_id, id).await?;
    }
    Ok(deleted)
}

/// Fails every pending delivery of an endpoint (deleted or disabled as failing).
pub async fn fail_pending_of_endpoint(
    conn: &mut PgConnection,
    tenant_id: &str,
    endpoint_id: &str,
) -> anyhow::Result<u64> {
    Ok(sqlx::query(
        "update webhook_deliveries
            set status = 'failed', next_attempt_at = null, lease_owner = null,
                lease_expires_at = null
          where tenant_id = $1 and endpoint_id = $2 and status = 'pending'",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .execute(&mut *conn)
    .await
    .context("fail pending deliveries")?
    .rows_affected())
}

/// An endpoint that is not deleted, its row locked until the transaction ends (a rotation
/// reads the current secret and writes both).
pub async fn lock_endpoint(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<WebhookEndpoint>> {
    let found: Option<EndpointRow> = sqlx::query_as(&format!(
        "select {ENDPOINT_COLUMNS} from webhook_endpoints
          where tenant_id = $1 and id = $2 and deleted_at is null
            for no key update"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("lock webhook endpoint")?;
    found.map(WebhookEndpoint::try_from).transpose()
}

/// An endpoint's two secrets, sealed.
pub struct SealedSecrets<'a> {
    pub current: &'a SealedSecret,
    /// `None` leaves none.
    pub previous: Option<&'a SealedSecret>,
}

/// Makes `secrets.current` current and `secrets.previous` the one signing alongside until
/// `previous_until`: a rotation (the endpoint locked by [`lock_endpoint`]).
pub async fn rotate_secret(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    secrets: &SealedSecrets<'_>,
    previous_until: DateTime<Utc>,
) -> anyhow::Result<Option<WebhookEndpoint>> {
    let previous = secrets.previous;
    let found: Option<EndpointRow> = sqlx::query_as(&format!(
        "update webhook_endpoints
            set secret = null, secret_key_id = $3, secret_nonce = $4, secret_ciphertext = $5,
                previous_secret = null, previous_secret_key_id = $6,
                previous_secret_nonce = $7, previous_secret_ciphertext = $8,
                previous_secret_expires_at = $9, secret_rotated_at = now()
          where tenant_id = $1 and id = $2 and deleted_at is null
          returning {ENDPOINT_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .bind(&secrets.current.key_id)
    .bind(&secrets.current.nonce)
    .bind(&secrets.current.ciphertext)
    .bind(previous.map(|p| &p.key_id))
    .bind(previous.map(|p| &p.nonce))
    .bind(previous.map(|p| &p.ciphertext))
    .bind(previous.map(|_| previous_until))
    .fetch_optional(&mut *conn)
    .await
    .context("rotate webhook secret")?;
    found.map(WebhookEndpoint::try_from).transpose()
}

/// Key ids that seal some endpoint's secret, current or previous (deleted endpoints too).
pub async fn sealing_key_ids(conn: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar(
        "select secret_key_id from webhook_endpoints where secret_key_id is not null
         union
         select previous_secret_key_id from webhook_endpoints
          where previous_secret_key_id is not null",
    )
    .fetch_all(&mut *conn)
    .await
    .context("read webhook secret key ids")
}

/// An endpoint whose secrets need sealing under the active key.
#[derive(Debug)]
pub struct EndpointToReseal {
    pub tenant_id: String,
    pub endpoint: WebhookEndpoint,
}

/// Up to `limit` endpoints (deleted ones too) with a plaintext secret or one sealed under
/// another key than `active_key_id`, locked until the transaction ends. A replica starting
/// at the same time waits for the rows another is sealing, then finds them done.
pub async fn lock_endpoints_to_reseal(
    conn: &mut PgConnection,
    active_key_id: &str,
    limit: i64,
) -> anyhow::Result<Vec<EndpointToReseal>> {
    #[derive(sqlx::FromRow)]
    struct ToReseal {
        tenant_id: String,
        #[sqlx(flatten)]
        row: EndpointRow,
    }
    let found: Vec<ToReseal> = sqlx::query_as(&format!(
        "select {ENDPOINT_COLUMNS} from webhook_endpoints
          where secret is not null or previous_secret is not null
             or secret_key_id <> $1 or previous_secret_key_id <> $1
          order by tenant_id, id
          limit $2
            for no key update"
    ))
    .bind(active_key_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .context("read webhook secrets to seal")?;
    found
        .into_iter()
        .map(|found| {
            Ok(EndpointToReseal {
                tenant_id: found.tenant_id,
                endpoint: found.row.try_into()?,
            })
        })
        .collect()
}

/// Stores an endpoint's secrets sealed anew, clearing any plaintext; the rotation time and
/// the previous secret's expiry stay.
pub async fn reseal_secrets(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
    secrets: &SealedSecrets<'_>,
) -> anyhow::Result<()> {
    let previous = secrets.previous;
    sqlx::query(
        "update webhook_endpoints
            set secret = null, secret_key_id = $3, secret_nonce = $4, secret_ciphertext = $5,
                previous_secret = null, previous_secret_key_id = $6,
                previous_secret_nonce = $7, previous_secret_ciphertext = $8
          where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(&secrets.current.key_id)
    .bind(&secrets.current.nonce)
    .bind(&secrets.current.ciphertext)
    .bind(previous.map(|p| &p.key_id))
    .bind(previous.map(|p| &p.nonce))
    .bind(previous.map(|p| &p.ciphertext))
    .execute(&mut *conn)
    .await
    .context("seal webhook secrets")?;
    Ok(())
}

/// A delivery as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct DeliveryRow {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: String,
    pub attempt_count: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const DELIVERY_COLUMNS: &str = "tenant_id, id, endpoint_id, event_id, event_type, status,
    attempt_count, next_attempt_at, created_at";

/// An attempt as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct AttemptRow {
    pub delivery_id: String,
    pub number: i32,
    pub started_at: DateTime<Utc>,
    pub response_status: i32,
    pub error: String,
    pub latency_us: i64,
    pub response_body_prefix: String,
    pub replica: String,
}

/// ListDeliveries' filters.
#[derive(Debug, Default)]
pub struct DeliveryFilter<'a> {
    pub endpoint_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub status: Option<DeliveryStatus>,
}

/// ListDeliveries' statement, exposed so that a test can check its plans. Parameters:
/// tenant, endpoint id, event id, status, the cursor's create time and id, limit (`null`: no
/// such filter). A pending delivery of an endpoint whose breaker is open is due when the
/// breaker lets a probe through, if that is later than its own next attempt.
pub const LIST_DELIVERIES_SQL: &str =
    "select d.tenant_id, d.id, d.endpoint_id, d.event_id, d.event_type, d.status,
            d.attempt_count, d.created_at,
            case when d.status = 'pending' and e.breaker_open_until > d.next_attempt_at
                 then e.breaker_open_until else d.next_attempt_at end as next_attempt_at
       from webhook_deliveries d
       join webhook_endpoints e on e.tenant_id = d.tenant_id and e.id = d.endpoint_id
      where d.tenant_id = $1
        and ($2::text is null or d.endpoint_id = $2)
        and ($3::text is null or d.event_id = $3)
        and ($4::text is null or d.status = $4)
        and ($5::timestamptz is null or (d.created_at, d.id) < ($5, $6))
      order by d.created_at desc, d.id desc
      limit $7";

/// Deliveries newest first, after `after`.
pub async fn list_deliveries(
    conn: &mut PgConnection,
    tenant_id: &str,
    filter: &DeliveryFilter<'_>,
    after: Option<&PageCursor>,
    limit: i64,
) -> anyhow::Result<Vec<WebhookDelivery>> {
    let found: Vec<DeliveryRow> = sqlx::query_as(LIST_DELIVERIES_SQL)
        .bind(tenant_id)
        .bind(filter.endpoint_id)
        .bind(filter.event_id)
        .bind(filter.status.map(DeliveryStatus::as_str))
        .bind(after.map(|c| c.create_time))
        .bind(after.map(|c| c.id.as_str()))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .context("list webhook deliveries")?;
    found.into_iter().map(WebhookDelivery::try_from).collect()
}

/// The attempts of these deliveries, oldest first.
pub async fn attempts_of(
    conn: &mut PgConnection,
    tenant_id: &str,
    delivery_ids: &[String],
) -> anyhow::Result<Vec<WebhookAttempt>> {
    let found: Vec<AttemptRow> = sqlx::query_as(
        "select delivery_id, number, started_at, response_status, error, latency_us,
                response_body_prefix, replica
           from webhook_attempts
          where tenant_id = $1 and delivery_id = any($2)
          order by delivery_id, number",
    )
    .bind(tenant_id)
    .bind(delivery_ids)
    .fetch_all(&mut *conn)
    .await
    .context("read webhook attempts")?;
    Ok(found.into_iter().map(WebhookAttempt::from).collect())
}

/// A delivery and how many times RetryDelivery scheduled it, its row locked until the
/// transaction ends; its endpoint's row is locked first, the order the worker and
/// DeleteWebhookEndpoint use.
pub async fn lock_delivery_for_retry(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<(WebhookDelivery, i32)>> {
    sqlx::query(
        "select 1 from webhook_endpoints e
           join webhook_deliveries d on e.tenant_id = d.tenant_id and e.id = d.endpoint_id
          where d.tenant_id = $1 and d.id = $2
            for no key update of e",
    )
    .bind(tenant_id)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context("lock the delivery's endpoint")?;
    #[derive(sqlx::FromRow)]
    struct Locked {
        #[sqlx(flatten)]
        row: DeliveryRow,
        manual_retry_count: i32,
    }
    let locked: Option<Locked> = sqlx::query_as(&format!(
        "select {DELIVERY_COLUMNS}, manual_retry_count from webhook_deliveries
          where tenant_id = $1 and id = $2
            for update"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("lock webhook delivery")?;
    locked
        .map(|locked| Ok((locked.row.try_into()?, locked.manual_retry_count)))
        .transpose()
}

/// Schedules a delivery's next attempt now and counts the manual retry; an open breaker of
/// its endpoint becomes half-open, so that one probe goes now. Call it after
/// [`lock_delivery_for_retry`] in the same transaction. It notifies nothing (writers never
/// do): the caller wakes its own worker, the others find it at their next poll.
pub async fn retry_delivery(
    conn: &mut PgConnection,
    tenant_id: &str,
    id: &str,
) -> anyhow::Result<Option<WebhookDelivery>> {
    sqlx::query(
        "update webhook_endpoints e set breaker_open_until = now()
           from webhook_deliveries d
          where d.tenant_id = $1 and d.id = $2
            and e.tenant_id = d.tenant_id and e.id = d.endpoint_id
            and e.breaker_open_until > now()",
    )
    .bind(tenant_id)
    .bind(id)
    .execute(&mut *conn)
    .await
    .context("half-open the endpoint's breaker")?;
    let row: Option<DeliveryRow> = sqlx::query_as(&format!(
        "update webhook_deliveries set status = 'pending', next_attempt_at = now(),
                manual_retry_count = manual_retry_count + 1
          where tenant_id = $1 and id = $2
          returning {DELIVERY_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .context("retry webhook delivery")?;
    row.map(WebhookDelivery::try_from).transpose()
}

/// A secret from its columns: plaintext when a replica of an older version wrote it last,
/// else sealed, else none.
fn stored_secret(
    plaintext: Option<String>,
    key_id: Option<String>,
    nonce: Option<Vec<u8>>,
    ciphertext: Option<Vec<u8>>,
) -> Option<StoredSecret> {
    if let Some(plaintext) = plaintext {
        return Some(StoredSecret::Plaintext(plaintext.into()));
    }
    Some(StoredSecret::Sealed(SealedSecret {
        key_id: key_id?,
        nonce: nonce?,
        ciphertext: ciphertext?,
    }))
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = anyhow::Error;

    /// A check constraint keeps a secret in every row.
    fn try_from(row: EndpointRow) -> anyhow::Result<Self> {
        let secret = stored_secret(
            row.secret,
            row.secret_key_id,
            row.secret_nonce,
            row.secret_ciphertext,
        )
        .with_context(|| format!("webhook endpoint {} has no secret", row.id))?;
        let previous_secret = stored_secret(
            row.previous_secret,
            row.previous_secret_key_id,
            row.previous_secret_nonce,
            row.previous_secret_ciphertext,
        );
        Ok(WebhookEndpoint {
            id: row.id,
            url: row.url,
            event_types: row.event_types,
            description: row.description,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            secret,
            previous_secret,
            previous_secret_expires_at: row.previous_secret_expires_at,
            secret_rotated_at: row.secret_rotated_at,
            failing_since: row.failing_since,
            deleted_at: row.deleted_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl TryFrom<DeliveryRow> for WebhookDelivery {
    type Error = anyhow::Error;

    /// The status column only holds the three names (a check constraint).
    fn try_from(row: DeliveryRow) -> anyhow::Result<Self> {
        let status = DeliveryStatus::from_name(&row.status)
            .with_context(|| format!("unknown webhook delivery status {:?}", row.status))?;
        Ok(WebhookDelivery {
            id: row.id,
            endpoint_id: row.endpoint_id,
            event_id: row.event_id,
            event_type: row.event_type,
            status,
            attempt_count: row.attempt_count,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
        })
    }
}

impl From<AttemptRow> for WebhookAttempt {
    fn from(row: AttemptRow) -> Self {
        WebhookAttempt {
            delivery_id: row.delivery_id,
            number: row.number,
            started_at: row.started_at,
            response_status: row.response_status,
            error: row.error,
            latency_us: row.latency_us,
            response_body_prefix: row.response_body_prefix,
            replica: row.replica,
        }
    }
}

/// A delivery a worker claimed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub tenant_id: String,
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub attempt_count: i32,
}

/// The caps a claim respects.
#[derive(Debug, Clone, Copy)]
pub struct ClaimCaps {
    /// Attempts in flight per endpoint, across replicas (live leases); 1 while its breaker
    /// is half-open.
    pub per_endpoint: i32,
    /// Attempts in flight per tenant on this replica (its live leases).
    pub per_tenant: i32,
}

/// Claims up to `limit` due deliveries for `owner` until `lease` from now, fairly: it walks
/// the endpoints with pending deliveries (a skip scan, one index probe per endpoint),
/// leaves out those disabled, deleted or with an open breaker, gives each at most its free
/// slots under `caps.per_endpoint` (oldest due first), and each tenant at most its free
/// slots under `caps.per_tenant`; then takes round-robin: every tenant's first pick (oldest
/// due first), then every tenant's second, where a tenant's picks go through its endpoints'
/// oldest due deliveries before their next ones. Rows another replica holds (locked now, or
/// leased and not expired) are skipped.
pub async fn claim_due(
    conn: &mut PgConnection,
    owner: &str,
    lease: std::time::Duration,
    limit: i64,
    caps: ClaimCaps,
) -> anyhow::Result<Vec<ClaimedDelivery>> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    sqlx::query_as(CLAIM_DUE)
        .bind(owner)
        .bind(lease_ms)
        .bind(limit)
        .bind(caps.per_endpoint)
        .bind(caps.per_tenant)
        .fetch_all(&mut *conn)
        .await
        .context("claim webhook deliveries")
}

/// `claim_due`'s statement: $1 owner, $2 lease in ms, $3 limit, $4 per-endpoint cap, $5
/// per-tenant cap.
const CLAIM_DUE: &str = include_str!("queries/claim_due_webhook_deliveries.sql");

/// When something next becomes claimable (for the worker's sleep): a retry falling due, a
/// breaker letting its probe through or a lease running out. Deliveries due now but held
/// back by a cap become claimable when an attempt ends, which wakes the worker itself (or
/// its next poll). Three index lookups, whatever the backlog.
pub async fn next_due(conn: &mut PgConnection) -> anyhow::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "select least(
                    (select min(next_attempt_at) from webhook_deliveries
                      where status = 'pending' and next_attempt_at > now()),
                    (select min(breaker_open_until) from webhook_endpoints
                      where breaker_open_until > now()),
                    (select min(lease_expires_at) from webhook_deliveries
                      where status = 'pending' and lease_owner is not null
                        and lease_expires_at > now()))",
    )
    .fetch_one(&mut *conn)
    .await
    .context("next due webhook delivery")
}

/// How many deliveries are pending in all (the backlog metric).
pub async fn pending_count(conn: &mut PgConnection) -> anyhow::Result<i64> {
    sqlx::query_scalar("select count(*) from webhook_deliveries where status = 'pending'")
        .fetch_one(&mut *conn)
        .await
        .context("count pending webhook deliveries")
}

/// Gives back every claim `owner` still holds (at shutdown).
pub async fn release(conn: &mut PgConnection, owner: &str) -> anyhow::Result<u64> {
    Ok(sqlx::query(
        "update webhook_deliveries set lease_owner = null, lease_expires_at = null
          where lease_owner = $1 and status = 'pending'",
    )
    .bind(owner)
    .execute(&mut *conn)
    .await
    .context("release webhook claims")?
    .rows_affected())
}

/// One attempt made.
pub struct NewAttempt<'a> {
    pub started_at: DateTime<Utc>,
    pub response_status: i32,
    pub error: &'a str,
    pub latency_us: i64,
    pub response_body_prefix: &'a str,
}

/// What follows an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AfterAttempt {
    Succeeded,
    RetryAt(DateTime<Utc>),
    Failed,
}

/// Records an attempt of a delivery `owner` claimed and sets what follows (when the claim
/// is still its own: a replica whose lease ran out records the attempt, but the delivery's
/// state is the new owner's to set). Returns the attempt's number.
pub async fn record_attempt(
    conn: &mut PgConnection,
    tenant_id: &str,
    delivery_id: &str,
    owner: &str,
    attempt: &NewAttempt<'_>,
    after: AfterAttempt,
) -> anyhow::Result<i32> {
    let (status, next) = match after {
        AfterAttempt::Succeeded => ("succeeded", None),
        AfterAttempt::RetryAt(at) => ("pending", Some(at)),
        AfterAttempt::Failed => ("failed", None),
    };
    let number: i32 = sqlx::query_scalar(
        "update webhook_deliveries set
            attempt_count = attempt_count + 1,
            status = case when lease_owner = $3 then $4 else status end,
            next_attempt_at = case when lease_owner = $3 then $5 else next_attempt_at end,
            lease_expires_at = case when lease_owner = $3 then null else lease_expires_at end,
            lease_owner = case when lease_owner = $3 then null else lease_owner end
          where tenant_id = $1 and id = $2
          returning attempt_count",
    )
    .bind(tenant_id)
    .bind(delivery_id)
    .bind(owner)
    .bind(status)
    .bind(next)
    .fetch_one(&mut *conn)
    .await
    .context("update webhook delivery")?;
    sqlx::query(
        "insert into webhook_attempts (tenant_id, delivery_id, number, started_at,
            response_status, error, latency_us, response_body_prefix, replica)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(tenant_id)
    .bind(delivery_id)
    .bind(number)
    .bind(attempt.started_at)
    .bind(attempt.response_status)
    .bind(attempt.error)
    .bind(attempt.latency_us)
    .bind(attempt.response_body_prefix)
    .bind(owner)
    .execute(&mut *conn)
    .await
    .context("insert webhook attempt")?;
    Ok(number)
}

/// Fails a claimed delivery without an attempt (its endpoint is gone or disabled).
pub async fn fail_claimed(
    conn: &mut PgConnection,
    tenant_id: &str,
    delivery_id: &str,
    owner: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "update webhook_deliveries
            set status = 'failed', next_attempt_at = null, lease_owner = null,
                lease_expires_at = null
          where tenant_id = $1 and id = $2 and lease_owner = $3",
    )
    .bind(tenant_id)
    .bind(delivery_id)
    .bind(owner)
    .execute(&mut *conn)
    .await
    .context("fail webhook delivery")?;
    Ok(())
}

/// The endpoint's breaker, its row locked until the transaction ends (attempts ending at
/// once update it one after the other); `None` when there is no such endpoint. The lock is
/// FOR NO KEY UPDATE: the fan-out's inserts of new deliveries take KEY SHARE on the
/// endpoint (their foreign key) and must not wait for it.
pub async fn lock_breaker(
    conn: &mut PgConnection,
    tenant_id: &str,
    endpoint_id: &str,
) -> anyhow::Result<Option<BreakerState>> {
    let row: Option<(i32, i32, Option<DateTime<Utc>>)> = sqlx::query_as(
        "select consecutive_failures, breaker_opened_times, breaker_open_until
           from webhook_endpoints where tenant_id = $1 and id = $2
            for no key update",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .fetch_optional(&mut *conn)
    .await
    .context("lock endpoint breaker")?;
    Ok(row.map(
        |(consecutive_failures, opened_times, open_until)| BreakerState {
            consecutive_failures: u32::try_from(consecutive_failures).unwrap_or(0),
            opened_times: u32::try_from(opened_times).unwrap_or(0),
            open_until,
        },
    ))
}

/// Closes the endpoint's breaker after an answer; touches (and locks) the row only when
/// the breaker is not closed already, so answered attempts of a healthy endpoint write
/// nothing.
pub async fn close_breaker(
    conn: &mut PgConnection,
    tenant_id: &str,
    endpoint_id: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "update webhook_endpoints
            set consecutive_failures = 0, breaker_opened_times = 0, breaker_open_until = null
          where tenant_id = $1 and id = $2
            and (consecutive_failures <> 0 or breaker_opened_times <> 0
                 or breaker_open_until is not null)",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .execute(&mut *conn)
    .await
    .context("close endpoint breaker")?;
    Ok(())
}

/// Stores the endpoint's breaker.
pub async fn save_breaker(
    conn: &mut PgConnection,
    tenant_id: &str,
    endpoint_id: &str,
    breaker: &BreakerState,
) -> anyhow::Result<()> {
    sqlx::query(
        "update webhook_endpoints
            set consecutive_failures = $3, breaker_opened_times = $4, breaker_open_until = $5
          where tenant_id = $1 and id = $2",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .bind(i32::try_from(breaker.consecutive_failures).unwrap_or(i32::MAX))
    .bind(i32::try_from(breaker.opened_times).unwrap_or(i32::MAX))
    .bind(breaker.open_until)
    .execute(&mut *conn)
    .await
    .context("save endpoint breaker")?;
    Ok(())
}

/// A successful attempt: the endpoint is no longer failing.
pub async fn endpoint_succeeded(
    conn: &mut PgConnection,
    tenant_id: &str,
    endpoint_id: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "update webhook_endpoints set failing_since = null
          where tenant_id = $1 and id = $2 and failing_since is not null",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .execute(&mut *conn)
    .await
    .context("clear endpoint failing_since")?;
    Ok(())
}

/// A failed attempt started at `at`: returns since when the endpoint has been failing.
pub async fn endpoint_failed(
    conn: &mut PgConnection,
    tenant_id: &str,
    endpoint_id: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar(
        "update webhook_endpoints set failing_since = coalesce(failing_since, $3)
          where tenant_id = $1 and id = $2
          returning failing_since",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await
    .map(Option::flatten)
    .context("set endpoint failing_since")
}

/// Disables a failing endpoint (reason `failing`); true when this call disabled it.
pub async fn disable_failing(
    conn: &mut PgConnection,
    tenant_id: &str,
    endpoint_id: &str,
) -> anyhow::Result<bool> {
    Ok(sqlx::query(
        "update webhook_endpoints set enabled = false, disabled_reason = 'failing'
          where tenant_id = $1 and id = $2 and enabled",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .execute(&mut *conn)
    .await
    .context("disable failing endpoint")?
    .rows_affected()
        > 0)
}
