-- Retention (issue 23): idempotency keys, finished webhook deliveries (with their attempts)
-- and events are purged after configurable periods, in small batches (each its own short
-- transaction), by dispute-core's retention worker.

-- Per tenant, the highest event position purged so far (updated in the batch transaction
-- that deletes the events): a ListEvents page token or a StreamEvents resume point before
-- it is answered EVENTS_PURGED instead of silently starting over.
create table purged_event_positions (
    tenant_id text primary key,
    purged_through bigint not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create trigger purged_event_positions_set_updated_at before update on purged_event_positions
    for each row execute function set_updated_at();

-- The purge finds old rows by age without scanning the tables (idempotency_keys already has
-- idempotency_keys_by_age).
create index dispute_events_retention_by_age on dispute_events (created_at);
create index webhook_deliveries_finished_by_age on webhook_deliveries (created_at)
    where status <> 'pending';
