-- Storage that grows with the work (issue 23): an event payload and a remembered response
-- used to hold the whole encoded dispute, evidence text included (up to 150,000
-- characters), once per change. Large evidence texts are now stored once per dispute and
-- content (`evidence_texts`), and a stored payload keeps its encoded bytes with those texts
-- cut out, plus where each text goes back and its digest (store/evidence_texts.rs).
-- Readers splice the texts back in, so what a client reads is byte for byte what was
-- encoded. Rows written before this migration have no cuts and are read as they are: no
-- row is rewritten.

create table evidence_texts (
    tenant_id text not null,
    dispute_id text not null,
    -- sha256 of `body`.
    sha256 bytea not null,
    -- The text's bytes exactly as they appear inside the encoded payload (UTF-8).
    body bytea not null,
    created_at timestamptz not null default now(),
    -- Raised (at most hourly) by every write that references the text; the retention purge
    -- only looks at texts unused for longer than events and request ids are kept.
    last_used_at timestamptz not null default now(),
    primary key (tenant_id, dispute_id, sha256),
    foreign key (tenant_id, dispute_id) references disputes (tenant_id, id)
);
create index evidence_texts_by_last_use on evidence_texts (last_used_at);

-- Null: the payload is whole (written before 0019, or it had no large text). Otherwise
-- `payload_texts[i]` is the sha256 of the text that goes back at byte offset
-- `payload_text_offsets[i]` of the whole payload (offsets ascending).
alter table dispute_events
    add column payload_texts bytea[],
    add column payload_text_offsets integer[];

-- The same for a remembered response, with the dispute whose texts it references.
alter table idempotency_keys
    add column response_dispute_id text,
    add column response_texts bytea[],
    add column response_text_offsets integer[];
-- The purge checks whether a remembered response still references a text.
create index idempotency_keys_by_response_dispute on idempotency_keys (tenant_id, response_dispute_id)
    where response_texts is not null;
