-- Events recorded in the same transaction as every change (the outbox for ListEvents,
-- StreamEvents and webhooks). `seq` gives one global order for cursors and streams.
create table dispute_events (
    seq bigserial primary key,
    tenant_id text not null,
    id text not null,
    dispute_id text not null,
    type text not null,
    -- the dispute after the change, encoded as disputes.v1.Dispute
    payload bytea not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (tenant_id, id),
    foreign key (tenant_id, dispute_id) references disputes (tenant_id, id)
);
create index dispute_events_by_tenant on dispute_events (tenant_id, seq);
create index dispute_events_by_dispute on dispute_events (tenant_id, dispute_id, seq);
create trigger dispute_events_set_updated_at before update on dispute_events
    for each row execute function set_updated_at();

-- Network events already applied: RecordNetworkEvent is idempotent on
-- (network, network_case_id, event_id) per tenant.
create table network_events (
    tenant_id text not null,
    network text not null,
    network_case_id text not null,
    event_id text not null,
    dispute_id text not null,
    type text not null,
    applied boolean not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, network, network_case_id, event_id),
    foreign key (tenant_id, dispute_id) references disputes (tenant_id, id)
);
create trigger network_events_set_updated_at before update on network_events
    for each row execute function set_updated_at();
