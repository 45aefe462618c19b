-- Issuer-side facts that set Regulation E windows and chargeback rights (I1, I2).
alter table disputes
    add column transaction_date date,
    add column new_account boolean not null default false,
    add column pos_or_foreign boolean not null default false,
    add column billing_cycle_closing_day integer check (billing_cycle_closing_day between 1 and 31),
    add column three_ds_authenticated boolean not null default false,
    add column digital_wallet_token boolean not null default false,
    add column transaction_posted boolean not null default true;
