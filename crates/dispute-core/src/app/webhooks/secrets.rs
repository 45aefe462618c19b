//! Signing secrets at rest: sealing a secret for its row (with a random nonce), opening it
//! to answer or to sign, and the start-up job that seals plaintext rows and reseals rows
//! under a key that is no longer the active one.

use anyhow::Context;
use rand::RngCore;
use secrecy::SecretString;

use super::Webhooks;
use crate::domain::DisputeError;
use crate::domain::webhooks::{
    SECRET_NONCE_LEN, SealedSecret, SecretKeyring, SecretRow, SecretSlot, StoredSecret,
    WebhookEndpoint,
};
use crate::store::webhooks::{self as store, SealedSecrets};

/// Endpoints sealed per transaction by the start-up job.
const RESEAL_BATCH: i64 = 200;

/// What the start-up job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Endpoints whose secrets were sealed (plaintext) or resealed (another key).
    pub endpoints: u64,
}

/// Seals `secret` for one slot of one row under the keyring's active key.
pub(super) fn seal_for(
    keyring: &SecretKeyring,
    secret: &SecretString,
    row: SecretRow<'_>,
) -> anyhow::Result<SealedSecret> {
    let mut nonce = [0u8; SECRET_NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    keyring
        .seal(secret, row, nonce)
        .context("seal webhook secret")
}

/// Opens a stored secret of one slot of one row.
pub(super) fn open_for(
    keyring: &SecretKeyring,
    stored: &StoredSecret,
    row: SecretRow<'_>,
) -> anyhow::Result<SecretString> {
    keyring.open_stored(stored, row).with_context(|| {
        format!(
            "open the {:?} secret of webhook endpoint {}",
            row.slot, row.endpoint_id
        )
    })
}

impl Webhooks {
    pub(super) fn seal(
        &self,
        secret: &SecretString,
        tenant_id: &str,
        endpoint_id: &str,
        slot: SecretSlot,
    ) -> Result<SealedSecret, DisputeError> {
        Ok(seal_for(
            &self.settings.secret_keys,
            secret,
            SecretRow {
                tenant_id,
                endpoint_id,
                slot,
            },
        )?)
    }

    /// The endpoint's current secret in the clear.
    pub(super) fn open_current(
        &self,
        tenant_id: &str,
        endpoint: &WebhookEndpoint,
    ) -> Result<SecretString, DisputeError> {
        Ok(open_for(
            &self.settings.secret_keys,
            &endpoint.secret,
            SecretRow {
                tenant_id,
                endpoint_id: &endpoint.id,
                slot: SecretSlot::Current,
            },
        )?)
    }

    /// Seals every plaintext secret and reseals every secret under a key that is not the
    /// active one, a batch per transaction, before the service serves. Refuses (and so the
    /// service does not start) when some secret is sealed under a key id the keyring does
    /// not hold: its deliveries could not be signed.
    pub async fn reseal_secrets(&self) -> anyhow::Result<ResealReport> {
        let keys = &self.settings.secret_keys;
        let active = keys
            .active_key_id()
            .context("no webhook secret key is configured")?
            .to_owned();
        let mut conn = self.pool.acquire().await.context("acquire")?;
        let missing: Vec<String> = store::sealing_key_ids(&mut conn)
            .await?
            .into_iter()
            .filter(|id| !keys.holds(id))
            .collect();
        drop(conn);
        anyhow::ensure!(
            missing.is_empty(),
            "webhook secrets are sealed under key id(s) {missing:?}, which \
             --webhook-secret-keys (DISPUTE_CORE_WEBHOOK_SECRET_KEYS) does not hold: add \
             each back after the active key (`new_id:...,old_id:...`) until the start-up \
             job has resealed every secret under the active key"
        );
        let mut report = ResealReport::default();
        loop {
            let mut tx = service_kit::database::begin(&self.pool)
                .await
                .context("begin")?;
            let batch = store::lock_endpoints_to_reseal(&mut tx, &active, RESEAL_BATCH).await?;
            if batch.is_empty() {
                break;
            }
            for found in &batch {
                let tenant_id = found.tenant_id.as_str();
                let endpoint = &found.endpoint;
                let row = |slot| SecretRow {
                    tenant_id,
                    endpoint_id: &endpoint.id,
                    slot,
                };
                let current = open_for(keys, &endpoint.secret, row(SecretSlot::Current))?;
                let current = seal_for(keys, &current, row(SecretSlot::Current))?;
                let previous = match &endpoint.previous_secret {
                    Some(stored) => {
                        let previous = open_for(keys, stored, row(SecretSlot::Previous))?;
                        Some(seal_for(keys, &previous, row(SecretSlot::Previous))?)
                    }
                    None => None,
                };
                store::reseal_secrets(
                    &mut tx,
                    tenant_id,
                    &endpoint.id,
                    &SealedSecrets {
                        current: &current,
                        previous: previous.as_ref(),
                    },
                )
                .await?;
            }
            tx.commit().await.context("commit")?;
            report.endpoints += u64::try_from(batch.len()).unwrap_or(0);
        }
        Ok(report)
    }
}
