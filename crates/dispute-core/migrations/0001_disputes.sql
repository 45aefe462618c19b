-- Disputes, their action history, their money movements and idempotency keys.
create or replace function set_updated_at() returns trigger as $$
begin
    new.updated_at = now();
    return new;
end;
$$ language plpgsql;

create table disputes (
    tenant_id text not null,
    id text not null,
    version bigint not null default 1,
    side text not null,
    stage text not null,
    status text not null,
    amount bigint not null check (amount > 0),
    currency text not null check (currency ~ '^[A-Z]{3}$'),
    charge text,
    payment_intent text,
    transaction_id text,
    merchant_id text,
    network text not null,
    payment_method_type text not null,
    reason text not null,
    network_reason_code text,
    network_case_id text,
    memo text,
    date_customer_reported date,
    applicable_regulation text not null,
    credit_status text not null,
    evidence jsonb not null default '{}',
    due_time timestamptz,
    has_evidence boolean not null default false,
    submission_count integer not null default 0,
    is_charge_refundable boolean not null default false,
    metadata jsonb not null default '{}',
    livemode boolean not null default false,
    original_amount bigint check (original_amount is null or original_amount >= amount),
    amount_won bigint not null default 0,
    amount_lost bigint not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, id)
);

-- newest first listing, and the common filters (H7: every dispute of one charge)
create index disputes_by_created on disputes (tenant_id, created_at desc, id desc);
create index disputes_by_charge on disputes (tenant_id, charge, created_at desc) where charge is not null;
create index disputes_by_payment_intent on disputes (tenant_id, payment_intent, created_at desc) where payment_intent is not null;
create index disputes_by_transaction on disputes (tenant_id, transaction_id, created_at desc) where transaction_id is not null;
create index disputes_by_due on disputes (tenant_id, due_time) where due_time is not null;
-- one dispute per network case: network events find their dispute by it
create unique index disputes_network_case_key on disputes (tenant_id, network, network_case_id)
    where network_case_id is not null;

create trigger disputes_set_updated_at before update on disputes
    for each row execute function set_updated_at();

create table dispute_actions (
    tenant_id text not null,
    id text not null,
    dispute_id text not null,
    actor text not null,
    what text not null,
    message text not null default '',
    document_ids text[] not null default '{}',
    stage text not null,
    status text not null,
    amount bigint not null default 0,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, id),
    foreign key (tenant_id, dispute_id) references disputes (tenant_id, id)
);
create index dispute_actions_by_dispute on dispute_actions (tenant_id, dispute_id, created_at, id);
create trigger dispute_actions_set_updated_at before update on dispute_actions
    for each row execute function set_updated_at();

create table balance_transactions (
    tenant_id text not null,
    id text not null,
    dispute_id text not null,
    type text not null,
    amount bigint not null,
    currency text not null,
    description text not null default '',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, id),
    foreign key (tenant_id, dispute_id) references disputes (tenant_id, id)
);
create index balance_transactions_by_dispute on balance_transactions (tenant_id, dispute_id, created_at, id);
create trigger balance_transactions_set_updated_at before update on balance_transactions
    for each row execute function set_updated_at();

-- request_id idempotency: the row is inserted in the same transaction as the effect, so a
-- concurrent retry blocks on it until the first commits (then replays) or rolls back.
create table idempotency_keys (
    tenant_id text not null,
    operation text not null,
    request_id text not null,
    request_fingerprint text not null,
    response bytea not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, operation, request_id)
);
create index idempotency_keys_by_age on idempotency_keys (created_at);
create trigger idempotency_keys_set_updated_at before update on idempotency_keys
    for each row execute function set_updated_at();
