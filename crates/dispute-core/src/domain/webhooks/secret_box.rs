//! Webhook signing secrets at rest: AES-256-GCM under a keyring from configuration.
//!
//! Each stored secret carries the id of the key that sealed it, its own 96-bit nonce and
//! the ciphertext (with the GCM tag). The associated data binds it to its row: the tenant,
//! the endpoint and the slot (current or previous), so a ciphertext copied to another row
//! or slot does not open. The first key of the keyring seals; the others only open, so a
//! key can be rotated: add the new key first, restart (rows are resealed under it), then
//! drop the old one.
//!
//! Pure: the caller brings the nonce (random in `app`), nothing here reads a clock or does
//! I/O.

use std::fmt;
use std::str::FromStr;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};

/// Bytes of a keyring key (AES-256).
pub const SECRET_KEY_LEN: usize = 32;
/// Bytes of a nonce (96 bits, the size GCM is made for).
pub const SECRET_NONCE_LEN: usize = 12;
/// Longest key id accepted.
const MAX_KEY_ID_LEN: usize = 32;
/// Versions the associated data, should its layout ever change.
const AAD_CONTEXT: &[u8] = b"disputes.webhook-secret.v1";

/// One key of the keyring. Its Debug output names only the id.
#[derive(Clone)]
struct KeyringKey {
    id: String,
    cipher: Aes256Gcm,
}

/// The keys that seal and open webhook secrets: the first seals, all open. Parsed from
/// `key_id:base64(32 bytes)` entries separated by commas; empty is an empty keyring (fine
/// for `migrate`, refused when serving). Debug output shows the key ids, never the keys.
#[derive(Clone, Default)]
pub struct SecretKeyring {
    keys: Vec<KeyringKey>,
}

/// Which of an endpoint's two secrets a ciphertext holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSlot {
    Current,
    Previous,
}

impl SecretSlot {
    fn as_str(self) -> &'static str {
        match self {
            SecretSlot::Current => "current",
            SecretSlot::Previous => "previous",
        }
    }
}

/// The row a secret belongs to: part of the associated data.
#[derive(Debug, Clone, Copy)]
pub struct SecretRow<'a> {
    pub tenant_id: &'a str,
    pub endpoint_id: &'a str,
    pub slot: SecretSlot,
}

/// A secret as stored: the key id, the nonce and the ciphertext with its tag.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub key_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// A secret as read from a row: sealed, or still in plaintext (a row written before
/// secrets were encrypted, or by a replica of an older version during a rollout, until the
/// start-up job seals it).
#[derive(Debug, Clone)]
pub enum StoredSecret {
    Sealed(SealedSecret),
    Plaintext(SecretString),
}

/// Why a keyring could not be read or a secret not sealed or opened. No variant carries
/// key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretBoxError {
    #[error(
        "entry {index} of the webhook secret keys is not `key_id:base64`; \
         make a key with `openssl rand -base64 32`"
    )]
    Malformed { index: usize },
    #[error("key id {key_id:?} must be 1 to 32 characters of letters, digits, `-`, `_` or `.`")]
    BadKeyId { key_id: String },
    #[error("key {key_id:?} is not base64 of 32 bytes; make one with `openssl rand -base64 32`")]
    BadKey { key_id: String },
    #[error("key id {key_id:?} is listed twice")]
    DuplicateKeyId { key_id: String },
    #[error("no webhook secret key is configured")]
    NoKeys,
    #[error("a webhook secret could not be sealed")]
    SealFailed,
    #[error(
        "a webhook secret is sealed under key id {key_id:?}, which the configured keys do \
         not hold; add that key back (after the active one) to open it"
    )]
    UnknownKeyId { key_id: String },
    #[error(
        "a webhook secret sealed under key id {key_id:?} does not open: wrong key material \
         for that id, or the stored value was altered or belongs to another row"
    )]
    NotAuthentic { key_id: String },
}

impl SecretKeyring {
    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The id of the key that seals, if any.
    pub fn active_key_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// Whether a key with this id is configured.
    pub fn holds(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id == key_id)
    }

    /// Seals `secret` for `row` under the active key with `nonce` (fresh and random for
    /// every seal: GCM must never see a nonce twice under one key).
    pub fn seal(
        &self,
        secret: &SecretString,
        row: SecretRow<'_>,
        nonce: [u8; SECRET_NONCE_LEN],
    ) -> Result<SealedSecret, SecretBoxError> {
        let key = self.keys.first().ok_or(SecretBoxError::NoKeys)?;
        let aad = associated_data(row);
        let ciphertext = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: &aad,
                },
            )
            // Only for inputs beyond GCM's size limit (64 GiB); a secret is 50 bytes.
            .map_err(|_| SecretBoxError::SealFailed)?;
        Ok(SealedSecret {
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    /// Opens a sealed secret of `row`.
    pub fn open(
        &self,
        sealed: &SealedSecret,
        row: SecretRow<'_>,
    ) -> Result<SecretString, SecretBoxError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| SecretBoxError::UnknownKeyId {
                key_id: sealed.key_id.clone(),
            })?;
        let not_authentic = || SecretBoxError::NotAuthentic {
            key_id: sealed.key_id.clone(),
        };
        if sealed.nonce.len() != SECRET_NONCE_LEN {
            return Err(not_authentic());
        }
        let aad = associated_data(row);
        let plaintext = key
            .cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| not_authentic())?;
        let text = String::from_utf8(plaintext).map_err(|_| not_authentic())?;
        Ok(SecretString::from(text))
    }

    /// Opens a stored secret: sealed ones with their key, plaintext ones as they are.
    pub fn open_stored(
        &self,
        stored: &StoredSecret,
        row: SecretRow<'_>,
    ) -> Result<SecretString, SecretBoxError> {
        match stored {
            StoredSecret::Sealed(sealed) => self.open(sealed, row),
            StoredSecret::Plaintext(secret) => Ok(secret.clone()),
        }
    }

    /// Whether a stored secret must be (re)sealed: it is plaintext, or sealed under a key
    /// that is not the active one.
    pub fn needs_resealing(&self, stored: &StoredSecret) -> bool {
        match stored {
            StoredSecret::Sealed(sealed) => self.active_key_id() != Some(sealed.key_id.as_str()),
            StoredSecret::Plaintext(_) => true,
        }
    }
}

/// Length-prefixed fields, so that no two different rows give the same bytes.
fn associated_data(row: SecretRow<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    for field in [
        AAD_CONTEXT,
        row.tenant_id.as_bytes(),
        row.endpoint_id.as_bytes(),
        row.slot.as_str().as_bytes(),
    ] {
        aad.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        aad.extend_from_slice(field);
    }
    aad
}

fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl FromStr for SecretKeyring {
    type Err = SecretBoxError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut keys: Vec<KeyringKey> = Vec::new();
        let entries = text.split(',').map(str::trim).filter(|e| !e.is_empty());
        for (index, entry) in entries.enumerate() {
            let (id, material) = entry
                .split_once(':')
                .ok_or(SecretBoxError::Malformed { index })?;
            let id = id.trim();
            if !valid_key_id(id) {
                return Err(SecretBoxError::BadKeyId {
                    key_id: id.to_owned(),
                });
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(SecretBoxError::DuplicateKeyId {
                    key_id: id.to_owned(),
                });
            }
            let bad_key = || SecretBoxError::BadKey {
                key_id: id.to_owned(),
            };
            let bytes = STANDARD.decode(material.trim()).map_err(|_| bad_key())?;
            if bytes.len() != SECRET_KEY_LEN {
                return Err(bad_key());
            }
            let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| bad_key())?;
            keys.push(KeyringKey {
                id: id.to_owned(),
                cipher,
            });
        }
        Ok(SecretKeyring { keys })
    }
}

impl fmt::Debug for SecretKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn keyring(text: &str) -> SecretKeyring {
        text.parse().unwrap()
    }

    fn row(slot: SecretSlot) -> SecretRow<'static> {
        SecretRow {
            tenant_id: "acme",
            endpoint_id: "whe_01",
            slot,
        }
    }

    fn secret() -> SecretString {
        SecretString::from(SECRET)
    }

    #[test]
    fn a_sealed_secret_opens_to_itself_and_hides_it() {
        let keys = keyring(&format!("k1:{KEY_A}"));
        let sealed = keys
            .seal(&secret(), row(SecretSlot::Current), [7; 12])
            .unwrap();
        assert_eq!(sealed.key_id, "k1");
        assert_eq!(sealed.nonce, [7; 12]);
        // The plaintext, its key and its base64 appear nowhere in the ciphertext.
        let text = String::from_utf8_lossy(&sealed.ciphertext);
        assert!(!text.contains("whsec_") && !text.contains("MfKQ9r8G"));
        let opened = keys.open(&sealed, row(SecretSlot::Current)).unwrap();
        assert_eq!(opened.expose_secret(), SECRET);
        // A fresh nonce gives another ciphertext.
        let again = keys
            .seal(&secret(), row(SecretSlot::Current), [8; 12])
            .unwrap();
        assert_ne!(again.ciphertext, sealed.ciphertext);
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let old = keyring(&format!("k1:{KEY_A}"));
        let sealed_old = old
            .seal(&secret(), row(SecretSlot::Current), [1; 12])
            .unwrap();
        let rotated = keyring(&format!("k2:{KEY_B}, k1:{KEY_A}"));
        assert_eq!(rotated.active_key_id(), Some("k2"));
        assert!(rotated.needs_resealing(&StoredSecret::Sealed(sealed_old.clone())));
        let opened = rotated.open(&sealed_old, row(SecretSlot::Current)).unwrap();
        let sealed_new = rotated
            .seal(&opened, row(SecretSlot::Current), [2; 12])
            .unwrap();
        assert_eq!(sealed_new.key_id, "k2");
        assert!(!rotated.needs_resealing(&StoredSecret::Sealed(sealed_new.clone())));
        assert!(rotated.needs_resealing(&StoredSecret::Plaintext(secret())));
        // Without the old key, the old ciphertext names the key id it needs.
        let new_only = keyring(&format!("k2:{KEY_B}"));
        assert_eq!(
            new_only
                .open(&sealed_old, row(SecretSlot::Current))
                .unwrap_err(),
            SecretBoxError::UnknownKeyId {
                key_id: "k1".to_owned()
            }
        );
    }

    #[test]
    fn other_key_material_under_the_same_id_does_not_open() {
        let sealed = keyring(&format!("k1:{KEY_A}"))
            .seal(&secret(), row(SecretSlot::Current), [1; 12])
            .unwrap();
        let impostor = keyring(&format!("k1:{KEY_B}"));
        assert!(matches!(
            impostor.open(&sealed, row(SecretSlot::Current)),
            Err(SecretBoxError::NotAuthentic { .. })
        ));
    }

    #[test]
    fn a_tampered_ciphertext_or_nonce_does_not_open() {
        let keys = keyring(&format!("k1:{KEY_A}"));
        let sealed = keys
            .seal(&secret(), row(SecretSlot::Current), [1; 12])
            .unwrap();
        for i in 0..sealed.ciphertext.len() {
            let mut tampered = sealed.clone();
            tampered.ciphertext[i] ^= 0x01;
            assert!(keys.open(&tampered, row(SecretSlot::Current)).is_err());
        }
        let mut tampered = sealed.clone();
        tampered.nonce[0] ^= 0x01;
        assert!(keys.open(&tampered, row(SecretSlot::Current)).is_err());
        let mut short = sealed;
        short.nonce.pop();
        assert!(keys.open(&short, row(SecretSlot::Current)).is_err());
    }

    #[test]
    fn a_ciphertext_opens_only_in_its_own_row_and_slot() {
        let keys = keyring(&format!("k1:{KEY_A}"));
        let sealed = keys
            .seal(&secret(), row(SecretSlot::Current), [1; 12])
            .unwrap();
        let elsewhere = [
            SecretRow {
                tenant_id: "other",
                ..row(SecretSlot::Current)
            },
            SecretRow {
                endpoint_id: "whe_02",
                ..row(SecretSlot::Current)
            },
            row(SecretSlot::Previous),
            // Field boundaries count: "acme"+"whe_01" is not "acm"+"ewhe_01".
            SecretRow {
                tenant_id: "acm",
                endpoint_id: "ewhe_01",
                slot: SecretSlot::Current,
            },
        ];
        for other in elsewhere {
            assert!(
                matches!(
                    keys.open(&sealed, other),
                    Err(SecretBoxError::NotAuthentic { .. })
                ),
                "{other:?}"
            );
        }
    }

    #[test]
    fn keyrings_parse_strictly_and_never_show_their_keys() {
        let empty = keyring("");
        assert!(empty.is_empty());
        assert_eq!(
            empty.seal(&secret(), row(SecretSlot::Current), [0; 12]),
            Err(SecretBoxError::NoKeys)
        );
        for (text, expected) in [
            ("k1", SecretBoxError::Malformed { index: 0 }),
            (
                &format!(":{KEY_A}"),
                SecretBoxError::BadKeyId {
                    key_id: String::new(),
                },
            ),
            (
                &format!("k 1:{KEY_A}"),
                SecretBoxError::BadKeyId {
                    key_id: "k 1".to_owned(),
                },
            ),
            (
                "k1:c2hvcnQ=",
                SecretBoxError::BadKey {
                    key_id: "k1".to_owned(),
                },
            ),
            (
                "k1:not base64!",
                SecretBoxError::BadKey {
                    key_id: "k1".to_owned(),
                },
            ),
            (
                &format!("k1:{KEY_A},k1:{KEY_B}"),
                SecretBoxError::DuplicateKeyId {
                    key_id: "k1".to_owned(),
                },
            ),
        ] {
            assert_eq!(
                text.parse::<SecretKeyring>().unwrap_err(),
                expected,
                "{text}"
            );
        }
        let keys = keyring(&format!("k2:{KEY_B},k1:{KEY_A}"));
        let shown = format!("{keys:?}");
        assert!(shown.contains("k2") && shown.contains("k1"), "{shown}");
        assert!(!shown.contains(KEY_A) && !shown.contains(KEY_B), "{shown}");
        assert!(
            !shown.contains("ICEi") && !shown.contains("AAEC"),
            "{shown}"
        );
    }
}
