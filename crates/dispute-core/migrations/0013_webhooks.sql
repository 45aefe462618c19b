-- Webhooks (issue 12): endpoints of a tenant, one delivery per (endpoint, event) and every
-- HTTP attempt of it. Deliveries are made in the transaction that records the event
-- (INSERT ... SELECT over the tenant's enabled endpoints), then claimed by any replica's
-- worker with FOR UPDATE SKIP LOCKED and a lease.

-- A new opaque id `<prefix>_<lower-case ULID>` made in SQL, so that fan-out stays one
-- INSERT ... SELECT: 48 bits of milliseconds, then 80 random bits.
create function new_prefixed_id(prefix text) returns text
language plpgsql volatile as $$
declare
    alphabet constant text := '0123456789abcdefghjkmnpqrstvwxyz';
    bits bit varying;
    out text := '';
begin
    bits := B'00'
        || ((extract(epoch from clock_timestamp()) * 1000)::bigint)::bit(48)
        || substring(('x' || encode(uuid_send(gen_random_uuid()), 'hex'))::bit(128) from 1 for 40)
        || substring(('x' || encode(uuid_send(gen_random_uuid()), 'hex'))::bit(128) from 1 for 40);
    for i in 0..25 loop
        out := out || substr(alphabet, substring(bits from i * 5 + 1 for 5)::int + 1, 1);
    end loop;
    return prefix || '_' || out;
end
$$;

create table webhook_endpoints (
    tenant_id text not null,
    id text not null,
    url text not null,
    -- empty: every type
    event_types text[] not null default '{}',
    description text not null default '',
    enabled boolean not null default true,
    -- `failing` when the worker disabled it; empty otherwise
    disabled_reason text not null default '',
    -- `whsec_` + base64 of the signing key
    secret text not null,
    previous_secret text,
    previous_secret_expires_at timestamptz,
    -- since when every attempt has failed
    failing_since timestamptz,
    -- CreateWebhookEndpoint's optional idempotency key
    request_id text,
    deleted_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, request_id)
);
create index webhook_endpoints_enabled on webhook_endpoints (tenant_id)
    where enabled and deleted_at is null;
create trigger webhook_endpoints_set_updated_at before update on webhook_endpoints
    for each row execute function set_updated_at();

create table webhook_deliveries (
    tenant_id text not null,
    id text not null,
    endpoint_id text not null,
    event_id text not null,
    event_type text not null,
    status text not null default 'pending'
        check (status in ('pending', 'succeeded', 'failed')),
    attempt_count integer not null default 0,
    -- when the next attempt is due; null unless pending
    next_attempt_at timestamptz,
    -- the replica working on it and until when (another replica takes it after that)
    lease_owner text,
    lease_expires_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, id),
    unique (tenant_id, endpoint_id, event_id),
    foreign key (tenant_id, endpoint_id) references webhook_endpoints (tenant_id, id)
);
create index webhook_deliveries_due on webhook_deliveries (next_attempt_at)
    where status = 'pending';
create index webhook_deliveries_by_tenant on webhook_deliveries (tenant_id, created_at desc, id desc);
create index webhook_deliveries_by_event on webhook_deliveries (tenant_id, event_id);
create trigger webhook_deliveries_set_updated_at before update on webhook_deliveries
    for each row execute function set_updated_at();

-- Workers LISTEN on this channel: new deliveries wake them at once.
create function notify_webhook_deliveries() returns trigger
language plpgsql as $$
begin
    perform pg_notify('webhook_deliveries', '');
    return null;
end
$$;
create trigger webhook_deliveries_notify after insert on webhook_deliveries
    for each statement execute function notify_webhook_deliveries();

create table webhook_attempts (
    tenant_id text not null,
    delivery_id text not null,
    number integer not null,
    started_at timestamptz not null,
    -- 0 when no response came
    response_status integer not null,
    error text not null default '',
    latency_us bigint not null,
    response_body_prefix text not null default '',
    -- the replica that made it
    replica text not null,
    primary key (tenant_id, delivery_id, number),
    foreign key (tenant_id, delivery_id) references webhook_deliveries (tenant_id, id)
);
