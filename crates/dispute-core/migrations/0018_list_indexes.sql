-- An index for every filter and order of the list RPCs whose existing indexes left the
-- planner to walk a tenant's whole table (tests/store/query_plans.rs checks the plans).
--
-- sqlx runs each migration in a transaction, so these are plain `create index`, which
-- blocks writes to the table while it builds. On a large installation an operator may
-- prefer to run the same statements with `create index concurrently` (outside a
-- transaction) before upgrading: `if not exists` then makes this migration a no-op.

-- ListEvents `types`: the events of some types in position order, after a position.
create index if not exists dispute_events_by_type
    on dispute_events (tenant_id, type, position);

-- ListEvents `created_after` / `created_before`: the events of a time range.
create index if not exists dispute_events_by_created
    on dispute_events (tenant_id, created_at, position);

-- ListDisputes `status` and `stage`, newest first (a rare status, e.g. every dispute still
-- needing a response, must not read all of a tenant's closed ones). `side` has no index of
-- its own: it has two values, so the newest-first index with a filter reads at most about
-- twice the rows it returns.
create index if not exists disputes_by_status
    on disputes (tenant_id, status, created_at desc, id desc);
create index if not exists disputes_by_stage
    on disputes (tenant_id, stage, created_at desc, id desc);

-- ListDeliveries `endpoint_id` and `status`, newest first (the existing endpoint index holds
-- pending deliveries only; failed ones are the rare ones an operator looks for).
create index if not exists webhook_deliveries_by_endpoint
    on webhook_deliveries (tenant_id, endpoint_id, created_at desc, id desc);
create index if not exists webhook_deliveries_by_status
    on webhook_deliveries (tenant_id, status, created_at desc, id desc);
