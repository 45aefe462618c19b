-- Every mutation runs the webhook fan-out INSERT ... SELECT, which inserts nothing when the
-- tenant has no endpoint; the statement trigger still sent a NOTIFY, so each worker woke and
-- ran its claim queries for every mutation. Wake the workers only when deliveries were made.
create or replace function notify_webhook_deliveries() returns trigger
language plpgsql as $$
begin
    if exists (select 1 from inserted_deliveries) then
        perform pg_notify('webhook_deliveries', '');
    end if;
    return null;
end
$$;

drop trigger webhook_deliveries_notify on webhook_deliveries;
create trigger webhook_deliveries_notify after insert on webhook_deliveries
    referencing new table as inserted_deliveries
    for each statement execute function notify_webhook_deliveries();
