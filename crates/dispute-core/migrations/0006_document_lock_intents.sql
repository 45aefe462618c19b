-- Evidence submissions whose documents are being locked in document-store. A row is written
-- (and committed) before the LockDocuments call, under a fresh lock_id, and deleted in the
-- transaction that records the submission; a row still here afterwards means the
-- submission did not happen, so its lock is released (UnlockDocuments with the lock_id),
-- by the request itself or, after a crash, by the repair worker. `releasing` is set by
-- the repair worker before it releases: the submission can then no longer take the row.
create table document_lock_intents (
    tenant_id text not null,
    lock_id text not null,
    dispute_id text not null,
    document_ids text[] not null,
    releasing boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, lock_id)
);
create index document_lock_intents_by_age on document_lock_intents (created_at);
create trigger document_lock_intents_set_updated_at before update on document_lock_intents
    for each row execute function set_updated_at();
