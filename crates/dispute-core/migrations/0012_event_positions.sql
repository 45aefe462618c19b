-- A commit-ordered cursor for events (issue 12, point 1). `seq` is taken from a sequence
-- when the row is inserted, so a transaction that inserts first may commit last and a reader
-- paging by `seq` could pass its event before it becomes visible. `position` is a per-tenant
-- number given only to committed events, by a sequencer (dispute-core's `EventHub`): one
-- process at a time (an advisory lock) numbers the committed events that have none, in `seq`
-- order per tenant, continuing the tenant's counter in `event_positions`, and commits. The
-- numbers of one round become visible together, and rounds run one after another, so the
-- positions of a tenant are dense and become visible in order: a reader that reads
-- `position > last` never skips one. Writers never wait for each other.
create table event_positions (
    tenant_id text primary key,
    last_position bigint not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

alter table dispute_events add column position bigint;

update dispute_events e
   set position = numbered.position
  from (select tenant_id, id, row_number() over (partition by tenant_id order by seq) as position
          from dispute_events) numbered
 where e.tenant_id = numbered.tenant_id and e.id = numbered.id;

insert into event_positions (tenant_id, last_position)
select tenant_id, max(position) from dispute_events group by tenant_id;

create unique index dispute_events_by_position on dispute_events (tenant_id, position);
drop index dispute_events_by_tenant;
drop index dispute_events_by_dispute;
create index dispute_events_by_dispute on dispute_events (tenant_id, dispute_id, position);

-- Wakes the sequencer when the inserting transaction commits (NOTIFY is delivered at
-- commit, once per transaction).
create function notify_event_inserted() returns trigger
language plpgsql as $$
begin
    perform pg_notify('dispute_events_inserted', '');
    return null;
end;
$$;

create trigger dispute_events_notify_inserted after insert on dispute_events
    for each statement execute function notify_event_inserted();

-- What the sequencer has left to number.
create index dispute_events_unnumbered on dispute_events (seq) where position is null;

-- dispute.due_soon: the `due_time` the last one was sent for, so that it is sent once per
-- deadline and again when the deadline moves.
alter table disputes add column due_soon_sent_for timestamptz;
create index disputes_by_due_time on disputes (due_time) where due_time is not null;
