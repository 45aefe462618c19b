//! Large evidence texts, stored once per dispute and content (`evidence_texts`), and the
//! stored form of payloads that contain them (event payloads, remembered responses).
//!
//! A stored payload is the encoded dispute with each large text's bytes cut out, plus, for
//! each cut, the byte offset where it goes back and the text's sha256. Reading splices the
//! texts back in at those offsets, so the bytes read are exactly the bytes encoded, whatever
//! the encoding (no decode or re-encode; protobuf writes a string's bytes verbatim, and its
//! length prefix stays in the stored bytes). A payload without cuts (written before
//! migration 0019, or without a large text) is read as it is.
//!
//! Purging (docs/decisions.md, "Evidence texts stored once"): a text is deleted only when
//! it has not been used for longer than events and request ids are kept, and no event or
//! remembered response of its dispute references it. A write that uses a text locks its
//! row in the same statement that would insert it (`on conflict do update`), and updates
//! it whenever the purge could be looking at it, so a purge never deletes a text a
//! concurrent write is about to reference.

use std::borrow::Cow;
use std::collections::HashSet;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

/// Texts shorter than this stay inline: a shared row costs more than it saves.
pub const MIN_SHARED_TEXT_BYTES: usize = 1024;

/// A write refreshes a text's `last_used_at` when it is older than this (so most writes
/// only lock the row). The purge's cutoff must be older than this (it is a day or more).
const LAST_USE_REFRESH: &str = "1 hour";

/// How long a text may have been used after its recorded `last_used_at` (the refresh
/// interval), which the purge adds to its cutoff.
pub const LAST_USE_SLACK: chrono::Duration = chrono::Duration::hours(1);

/// A payload as stored: its bytes without the large texts, where each goes back, and the
/// texts (one per cut, in offset order; the same text may be cut more than once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPayload {
    pub bytes: Vec<u8>,
    /// Byte offsets in the whole payload, ascending.
    pub offsets: Vec<i32>,
    /// The sha256 of each cut text.
    pub digests: Vec<Vec<u8>>,
    /// The cut texts' bytes.
    pub texts: Vec<Vec<u8>>,
}

impl StoredPayload {
    /// Whether texts were cut out (the row then references `evidence_texts`).
    pub fn has_cuts(&self) -> bool {
        !self.offsets.is_empty()
    }

    /// `None` without cuts (the columns stay null, as in rows written before 0019).
    pub fn offsets_column(&self) -> Option<&[i32]> {
        self.has_cuts().then_some(self.offsets.as_slice())
    }

    pub fn digests_column(&self) -> Option<&[Vec<u8>]> {
        self.has_cuts().then_some(self.digests.as_slice())
    }

    /// The whole payload again (what [`join_payload`] gives after a read).
    pub fn whole(&self) -> anyhow::Result<Vec<u8>> {
        join_payload(
            self.bytes.clone(),
            Some(&self.offsets),
            Some(self.texts.clone()),
        )
    }
}

/// What the insert functions take as a payload: a [`StoredPayload`], or bytes stored whole
/// (no texts cut out, as rows written before migration 0019).
pub trait AsStoredPayload {
    fn as_stored(&self) -> Cow<'_, StoredPayload>;
}

impl AsStoredPayload for StoredPayload {
    fn as_stored(&self) -> Cow<'_, StoredPayload> {
        Cow::Borrowed(self)
    }
}

impl AsStoredPayload for [u8] {
    fn as_stored(&self) -> Cow<'_, StoredPayload> {
        Cow::Owned(StoredPayload {
            bytes: self.to_vec(),
            offsets: Vec::new(),
            digests: Vec::new(),
            texts: Vec::new(),
        })
    }
}

impl<const N: usize> AsStoredPayload for [u8; N] {
    fn as_stored(&self) -> Cow<'_, StoredPayload> {
        self.as_slice().as_stored()
    }
}

impl AsStoredPayload for Vec<u8> {
    fn as_stored(&self) -> Cow<'_, StoredPayload> {
        self.as_slice().as_stored()
    }
}

/// Cuts every occurrence of each of `texts` at least [`MIN_SHARED_TEXT_BYTES`] long out of
/// `whole`. Any non-overlapping set of cuts splices back to the same bytes, so where a
/// text is found does not matter for correctness.
pub fn split_payload(whole: Vec<u8>, texts: &[&str]) -> StoredPayload {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut seen = HashSet::new();
    for text in texts {
        let needle = text.as_bytes();
        if needle.len() < MIN_SHARED_TEXT_BYTES || !seen.insert(needle) {
            continue;
        }
        ranges.extend(
            memchr::memmem::find_iter(&whole, needle).map(|start| (start, start + needle.len())),
        );
    }
    // Earliest first, the longest of those starting together; then drop overlaps.
    ranges.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut kept: Vec<(usize, usize)> = Vec::new();
    for range in ranges {
        if kept.last().is_none_or(|last| range.0 >= last.1) {
            kept.push(range);
        }
    }
    // Offsets are stored as `integer`: a payload too large for that is stored whole.
    if kept
        .last()
        .is_some_and(|last| i32::try_from(last.1).is_err())
    {
        kept.clear();
    }
    let mut stored = StoredPayload {
        bytes: Vec::with_capacity(whole.len()),
        offsets: Vec::with_capacity(kept.len()),
        digests: Vec::with_capacity(kept.len()),
        texts: Vec::with_capacity(kept.len()),
    };
    let mut copied = 0;
    for (start, end) in kept {
        stored.bytes.extend_from_slice(&whole[copied..start]);
        let text = whole[start..end].to_vec();
        stored
            .offsets
            .push(i32::try_from(start).unwrap_or(i32::MAX));
        stored.digests.push(Sha256::digest(&text).to_vec());
        stored.texts.push(text);
        copied = end;
    }
    stored.bytes.extend_from_slice(&whole[copied..]);
    stored
}

/// The whole payload from its stored bytes, its cut offsets and the cut texts read back
/// (`None`, `None`: stored whole). A missing text is an error, never a shorter payload.
pub fn join_payload(
    stored: Vec<u8>,
    offsets: Option<&[i32]>,
    texts: Option<Vec<Vec<u8>>>,
) -> anyhow::Result<Vec<u8>> {
    let offsets = offsets.unwrap_or_default();
    if offsets.is_empty() {
        return Ok(stored);
    }
    let texts = texts.unwrap_or_default();
    if texts.len() != offsets.len() {
        bail!(
            "a stored payload references {} evidence texts, {} were found",
            offsets.len(),
            texts.len()
        );
    }
    let total = stored.len() + texts.iter().map(Vec::len).sum::<usize>();
    let mut whole = Vec::with_capacity(total);
    let mut copied = 0;
    for (offset, text) in offsets.iter().zip(texts) {
        let offset = usize::try_from(*offset).context("negative payload offset")?;
        let Some(gap) = offset.checked_sub(whole.len()) else {
            bail!("payload offsets overlap");
        };
        let part = stored
            .get(copied..copied + gap)
            .context("payload offset past the stored bytes")?;
        whole.extend_from_slice(part);
        copied += gap;
        whole.extend_from_slice(&text);
    }
    whole.extend_from_slice(&stored[copied..]);
    Ok(whole)
}

/// Stores the texts `payload` references for `dispute_id`, each once: a text already
/// stored is only locked (until the transaction ends) and, when its last use is older than
/// [`LAST_USE_REFRESH`], marked used now. Call it in the transaction that writes the row
/// referencing them.
pub async fn save_texts(
    conn: &mut PgConnection,
    tenant_id: &str,
    dispute_id: &str,
    payload: &StoredPayload,
) -> anyhow::Result<()> {
    if !payload.has_cuts() {
        return Ok(());
    }
    // One row per digest (`on conflict do update` may not touch a row twice), in digest
    // order, so two writers of the same texts lock them in the same order.
    let mut rows: Vec<(&[u8], &[u8])> = payload
        .digests
        .iter()
        .zip(&payload.texts)
        .map(|(digest, text)| (digest.as_slice(), text.as_slice()))
        .collect();
    rows.sort_unstable_by_key(|(digest, _)| *digest);
    rows.dedup_by_key(|(digest, _)| *digest);
    let (digests, texts): (Vec<&[u8]>, Vec<&[u8]>) = rows.into_iter().unzip();
    // `do update … where` locks the existing row even when it does not update it; it
    // updates it whenever the purge could be considering it (older than the refresh), so a
    // purge that read before this commit finds the row changed and re-checks its age.
    sqlx::query(&format!(
        "insert into evidence_texts as t (tenant_id, dispute_id, sha256, body)
         select $1, $2, s.sha256, s.body
           from unnest($3::bytea[], $4::bytea[]) as s(sha256, body)
         on conflict (tenant_id, dispute_id, sha256) do update
             set last_used_at = now()
           where t.last_used_at < now() - interval '{LAST_USE_REFRESH}'"
    ))
    .bind(tenant_id)
    .bind(dispute_id)
    .bind(&digests)
    .bind(&texts)
    .execute(&mut *conn)
    .await
    .context("save evidence texts")?;
    Ok(())
}

/// The SQL expression reading back, in order, the texts a row of `table` references
/// through its `digests` column (null when it references none).
pub(crate) fn texts_of(table: &str, dispute_column: &str, digests: &str) -> String {
    format!(
        "(select array_agg(t.body order by r.n)
            from unnest({table}.{digests}) with ordinality as r(sha256, n)
            join evidence_texts t
              on t.tenant_id = {table}.tenant_id
             and t.dispute_id = {table}.{dispute_column}
             and t.sha256 = r.sha256)"
    )
}

/// Deletes up to `limit` texts last used before `before` that no event and no remembered
/// response of their dispute references; returns how many it picked. `before` must be
/// older than the idempotency window and the event retention period minus
/// [`LAST_USE_SLACK`] (the purge derives it so).
pub async fn purge_unused_texts(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<u64> {
    let deleted = sqlx::query(
        "delete from evidence_texts
          where ctid = any(array(
                select t.ctid from evidence_texts t
                 where t.last_used_at < $1
                   and not exists (
                       select 1 from dispute_events e
                        where e.tenant_id = t.tenant_id and e.dispute_id = t.dispute_id
                          and t.sha256 = any(e.payload_texts))
                   and not exists (
                       select 1 from idempotency_keys k
                        where k.tenant_id = t.tenant_id
                          and k.response_dispute_id = t.dispute_id
                          and k.response_texts is not null
                          and t.sha256 = any(k.response_texts))
                 order by t.last_used_at
                 limit $2
                 for update of t skip locked))",
    )
    .bind(before)
    .bind(limit)
    .execute(&mut *conn)
    .await
    .context("purge unused evidence texts")?
    .rows_affected();
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn text(fill: char, len: usize) -> String {
        std::iter::repeat_n(fill, len).collect()
    }

    #[test]
    fn a_large_text_is_cut_out_and_spliced_back() {
        let big = text('x', 2000);
        let whole = [b"head".as_slice(), big.as_bytes(), b"tail"].concat();
        let stored = split_payload(whole.clone(), &[&big]);
        assert_eq!(stored.bytes, b"headtail");
        assert_eq!(stored.offsets, vec![4]);
        assert_eq!(
            stored.digests,
            vec![Sha256::digest(big.as_bytes()).to_vec()]
        );
        assert_eq!(stored.whole().unwrap(), whole);
    }

    #[test]
    fn small_texts_stay_inline() {
        let small = text('y', MIN_SHARED_TEXT_BYTES - 1);
        let whole = [b"a".as_slice(), small.as_bytes()].concat();
        let stored = split_payload(whole.clone(), &[&small]);
        assert!(!stored.has_cuts());
        assert_eq!(stored.bytes, whole);
        assert_eq!(stored.offsets_column(), None);
    }

    #[test]
    fn a_missing_text_is_an_error() {
        let big = text('z', 1500);
        let stored = split_payload([b"-", big.as_bytes()].concat(), &[&big]);
        let error = join_payload(stored.bytes, Some(&stored.offsets), None).unwrap_err();
        assert!(error.to_string().contains("1 evidence texts, 0 were found"));
    }

    #[test]
    fn a_payload_without_cuts_reads_as_stored() {
        assert_eq!(
            join_payload(b"old row".to_vec(), None, None).unwrap(),
            b"old row"
        );
    }

    proptest! {
        /// Whatever the texts and wherever (and however often) they occur, even overlapping
        /// one another, the stored form splices back to the same bytes.
        #[test]
        fn splitting_then_joining_gives_the_same_bytes(
            parts in proptest::collection::vec((0usize..3, proptest::collection::vec(any::<u8>(), 0..40)), 0..8),
            texts in proptest::collection::vec("[a-c]{1,4}", 1..4),
        ) {
            let texts: Vec<String> = texts.iter().map(|t| t.repeat(MIN_SHARED_TEXT_BYTES / t.len() + 1)).collect();
            let mut whole = Vec::new();
            for (which, noise) in &parts {
                whole.extend_from_slice(noise);
                whole.extend_from_slice(texts[which % texts.len()].as_bytes());
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let stored = split_payload(whole.clone(), &refs);
            prop_assert!(stored.offsets.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(stored.bytes.len() + stored.texts.iter().map(Vec::len).sum::<usize>(), whole.len());
            prop_assert_eq!(stored.whole().unwrap(), whole);
        }
    }
}
