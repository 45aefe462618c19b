-- Evidence documents. Bytes live in object storage under a key built from tenant and
-- document ids only; this table holds metadata and the upload state.
create or replace function set_updated_at() returns trigger as $$
begin
    new.updated_at = now();
    return new;
end;
$$ language plpgsql;

create table documents (
    tenant_id text not null,
    id text not null,
    dispute_id text,
    filename text not null,
    declared_content_type text not null,
    -- detected from the bytes; set when the upload completes
    content_type text,
    size_bytes bigint,
    sha256 text,
    -- 'pending' while bytes stream in, 'available' once stored; pending rows are invisible
    state text not null check (state in ('pending', 'available')),
    object_key text not null,
    -- multipart upload id while one is open, so a sweeper can abort it after a crash
    upload_id text,
    -- set once the document was submitted as evidence: it can no longer be deleted
    lock_time timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (tenant_id, id)
);

create index documents_by_tenant_created on documents (tenant_id, created_at desc, id desc)
    where state = 'available';
create index documents_by_dispute_created on documents (tenant_id, dispute_id, created_at desc, id desc)
    where state = 'available';
create index documents_pending_by_age on documents (created_at) where state = 'pending';

create trigger documents_set_updated_at before update on documents
    for each row execute function set_updated_at();
