-- Issue 11 point 6: a balance transaction carries its fees (seed 004): `fee_details` (type,
-- amount, description; positive charged, negative refunded), their sum `fee`, `net` =
-- amount - fee, Stripe's `reporting_category` and `available_on` (the status, PENDING or
-- AVAILABLE, is computed from it when read).
alter table balance_transactions
    add column fee_details jsonb not null default '[]'
        constraint balance_transactions_fee_details_is_array
        check (jsonb_typeof(fee_details) = 'array'),
    add column fee bigint not null default 0,
    add column reporting_category text not null default 'dispute',
    add column available_on timestamptz;

-- A dispute fee used to be an entry whose amount was the fee (-fee charged, +fee refunded);
-- it becomes a fee-only DISPUTE_FEE entry: amount 0 and the fee in its details. Totals and
-- net are unchanged.
update balance_transactions
   set fee = -amount,
       fee_details = jsonb_build_array(jsonb_build_object(
           'type', 'dispute_fee', 'amount', -amount, 'description', description)),
       amount = 0
 where type = 'dispute_fee';

update balance_transactions b
   set reporting_category = case
           when b.type in ('dispute_fee', 'arbitration_fee') then 'fee'
           when d.side = 'issuer' then 'issuing_dispute'
           when b.type = 'reinstatement' then 'dispute_reversal'
           else 'dispute'
       end,
       available_on = (date_trunc('day', b.created_at at time zone 'UTC') + interval '7 days')
                      at time zone 'UTC'
  from disputes d
 where d.tenant_id = b.tenant_id and d.id = b.dispute_id;

-- dispute-core always writes these; the defaults (no fee, `dispute`, the default settlement
-- of 7 days) serve only rows written by hand.
alter table balance_transactions
    alter column available_on set not null,
    alter column available_on set default
        (date_trunc('day', now() at time zone 'UTC') + interval '7 days') at time zone 'UTC',
    add column net bigint generated always as (amount - fee) stored;
