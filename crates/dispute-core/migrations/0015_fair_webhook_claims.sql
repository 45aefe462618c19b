-- Fair webhook delivery (issue 21): each endpoint has a circuit breaker, and workers claim
-- round-robin across endpoints and tenants with caps on attempts in flight.

-- The breaker: failures in a row (timeouts, refused connections, 5xx, 429), how many times
-- in a row it opened (its backoff grows with that), and until when it is open. Null: closed;
-- in the past: half-open (one probe attempt at a time).
alter table webhook_endpoints
    add column consecutive_failures integer not null default 0,
    add column breaker_opened_times integer not null default 0,
    add column breaker_open_until timestamptz;

-- The claim walks the endpoints that have pending deliveries (a skip scan over this index)
-- and takes each endpoint's oldest due deliveries from it.
create index webhook_deliveries_pending_by_endpoint
    on webhook_deliveries (tenant_id, endpoint_id, next_attempt_at)
    where status = 'pending';

-- Attempts in flight (live leases), counted per endpoint and per tenant at every claim: a
-- small set whatever the backlog.
create index webhook_deliveries_leased
    on webhook_deliveries (tenant_id, endpoint_id, lease_owner)
    where status = 'pending' and lease_owner is not null;

-- Open breakers, for the worker's "when is the next delivery due".
create index webhook_endpoints_breaker_open
    on webhook_endpoints (breaker_open_until)
    where breaker_open_until is not null;
