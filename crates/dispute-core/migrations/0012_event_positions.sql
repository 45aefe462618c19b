-- A commit-ordered cursor for events (issue 12, point 1). `seq` is taken from a sequence
-- when the row is inserted, so a transaction that inserts first may commit last and a reader
-- paging by `seq` could pass its event before it becomes visible. `position` is a per-tenant
-- counter instead, taken under the row lock of the tenant's `event_positions` row: the lock
-- is held until commit, so the next event of that tenant can only get its position once the
-- previous one committed (or rolled back, giving the position back). Positions of a tenant
-- are therefore dense and become visible in order: a reader that reads `position > last`
-- never skips one. Events are inserted at the end of each change's transaction, so the lock
-- is held briefly. A trigger assigns it, so that every insert (tools included) takes part.
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

alter table dispute_events alter column position set not null;

create unique index dispute_events_by_position on dispute_events (tenant_id, position);
drop index dispute_events_by_tenant;
drop index dispute_events_by_dispute;
create index dispute_events_by_dispute on dispute_events (tenant_id, dispute_id, position);

-- Takes the tenant's next position (locking its counter row until commit) and wakes the
-- readers of StreamEvents when the transaction commits (NOTIFY is delivered at commit, and
-- sent once per tenant and transaction).
create function assign_event_position() returns trigger
language plpgsql as $$
begin
    insert into event_positions as p (tenant_id, last_position)
    values (new.tenant_id, 1)
    on conflict (tenant_id) do update
        set last_position = p.last_position + 1, updated_at = now()
    returning last_position into new.position;
    perform pg_notify('dispute_events', new.tenant_id);
    return new;
end;
$$;

create trigger dispute_events_assign_position before insert on dispute_events
    for each row execute function assign_event_position();

-- dispute.due_soon: the `due_time` the last one was sent for, so that it is sent once per
-- deadline and again when the deadline moves.
alter table disputes add column due_soon_sent_for timestamptz;
create index disputes_by_due_time on disputes (due_time) where due_time is not null;
