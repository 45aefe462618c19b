-- Events that do not serialize writers (issue 23, point 3). A transaction that has sent a
-- NOTIFY takes, at commit, a lock of the whole cluster held through its commit flush, so
-- every mutation that recorded an event waited for every other one of any tenant. Writers
-- now notify nothing: the replica that committed wakes its sequencer in process, the
-- sequencers of the others find the events by polling `dispute_events_unnumbered`, and
-- each sequencer round sends one notification on `dispute_events` naming the tenants and
-- whether webhook deliveries were made, which wakes the StreamEvents readers and webhook
-- workers of every replica.
drop trigger dispute_events_notify_inserted on dispute_events;
drop function notify_event_inserted();
drop trigger webhook_deliveries_notify on webhook_deliveries;
drop function notify_webhook_deliveries();
