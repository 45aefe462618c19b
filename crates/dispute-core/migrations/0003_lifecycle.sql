-- Lifecycle bookkeeping the state machine needs beyond the dispute's public fields.
alter table disputes
    -- merchant side after CHARGEBACK_REVERSED: when the dispute becomes WON (H1, option a)
    add column reversal_lapses_at timestamptz,
    -- issuer side: dispute.overdue was emitted (I14, once)
    add column overdue boolean not null default false,
    -- when the deadline sweeper must look at the dispute next; null when nothing can act
    add column next_deadline timestamptz;

create index disputes_next_deadline on disputes (next_deadline) where next_deadline is not null;
