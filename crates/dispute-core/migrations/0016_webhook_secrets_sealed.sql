-- Webhook signing secrets encrypted at rest (issue 22): each secret is stored as the id of
-- the key that sealed it (AES-256-GCM, keys from dispute-core's configuration), its 96-bit
-- nonce and the ciphertext with its tag. dispute-core seals the plaintext rows at start-up
-- and sets the plaintext columns to NULL; a replica of the previous version may still write
-- plaintext during a rollout, which the next start-up seals.
alter table webhook_endpoints
    alter column secret drop not null,
    add column secret_key_id text,
    add column secret_nonce bytea,
    add column secret_ciphertext bytea,
    add column previous_secret_key_id text,
    add column previous_secret_nonce bytea,
    add column previous_secret_ciphertext bytea,
    -- When the secret was last rotated: a CreateWebhookEndpoint replay no longer shows it.
    add column secret_rotated_at timestamptz,
    -- SHA-256 of the CreateWebhookEndpoint body made under `request_id` (null before this
    -- migration: the endpoint's fields stand in).
    add column request_fingerprint bytea,
    add constraint webhook_endpoints_secret_present
        check (secret is not null or secret_ciphertext is not null),
    add constraint webhook_endpoints_secret_sealed_whole
        check ((secret_key_id is null) = (secret_ciphertext is null)
               and (secret_nonce is null) = (secret_ciphertext is null)),
    add constraint webhook_endpoints_previous_secret_sealed_whole
        check ((previous_secret_key_id is null) = (previous_secret_ciphertext is null)
               and (previous_secret_nonce is null) = (previous_secret_ciphertext is null));

-- Endpoints rotated before this migration: a replay must not show their secret either.
update webhook_endpoints set secret_rotated_at = updated_at
 where previous_secret_expires_at is not null;

-- RetryDelivery calls made for each delivery (they are bounded).
alter table webhook_deliveries
    add column manual_retry_count integer not null default 0;
