-- Documents staged as evidence are held in document-store (a lock holder
-- `staged.<dispute_id>.<field>.<nonce>` that keeps them from being deleted without locking
-- them). One row per evidence field that names a document: the holder holding it. The row
-- is written in the transaction that stages the field (consuming the hold's lock intent);
-- replacing or clearing the field deletes it and writes a lock intent for the old holder,
-- which is then released like any unused lock (docs/decisions.md).
create table staged_document_holds (
    tenant_id text not null,
    dispute_id text not null,
    field text not null,
    document_id text not null,
    holder text not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, dispute_id, field)
);
