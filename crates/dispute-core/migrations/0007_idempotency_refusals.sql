-- Idempotency remembers decisions (issue 11): a mutation refused by a business rule
-- (FAILED_PRECONDITION, NOT_FOUND) stores its refusal under the request id, in the
-- transaction that claimed the key, so a retry gets the same answer. The gRPC status as first
-- answered: its code, message and encoded google.rpc.Status details. Null: the key holds a
-- success (`response`).
alter table idempotency_keys
    add column refusal_code integer,
    add column refusal_message text,
    add column refusal_details bytea;
