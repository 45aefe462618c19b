-- Disputes whose deadline the sweeper failed to apply: each failure is counted and the next
-- try pushed back, so one bad row never blocks the others (the claim skips it until then).
-- A successful sweep of the dispute deletes its row.
create table deadline_sweep_failures (
    tenant_id text not null,
    dispute_id text not null,
    attempts integer not null default 1,
    last_error text not null default '',
    retry_at timestamptz not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, dispute_id),
    foreign key (tenant_id, dispute_id) references disputes (tenant_id, id)
);
create trigger deadline_sweep_failures_set_updated_at before update on deadline_sweep_failures
    for each row execute function set_updated_at();
