//! RecordNetworkEvent: an event of the card network, and the case it may open.

use chrono::{DateTime, Utc};
use domain_kit::violation::{Violation, nul_violations};

use super::disputes::{DisputeDraft, new_dispute};
use super::shared::*;
use crate::domain::dispute::{
    MAX_METADATA_KEYS, MAX_NETWORK_REASON_CODE_CHARS, MAX_REFERENCE_CHARS,
};
use crate::domain::{DisputeError, EnumInput, Network, NetworkEvent, NetworkEventKind, NewDispute};

/// How far ahead of our clock a network event's `occur_time` may be (the network's clock
/// may run a little ahead); later is INVALID_ARGUMENT.
pub const MAX_OCCUR_TIME_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// RecordNetworkEvent as it arrived.
#[derive(Debug, Clone)]
pub struct NetworkEventDraft {
    pub network: EnumInput<Network>,
    pub network_case_id: String,
    pub event_id: String,
    pub kind: EnumInput<NetworkEventKind>,
    pub due_time: Option<Decoded<DateTime<Utc>>>,
    /// When the network says the event happened; unset means now.
    pub occur_time: Option<Decoded<DateTime<Utc>>>,
    /// The reason code the event carries; empty when none.
    pub network_reason_code: String,
    pub amount: i64,
    pub amount_won: i64,
    pub amount_lost: i64,
    /// Unset means a response is allowed.
    pub response_allowed: Option<bool>,
    pub message: String,
    pub document_ids: Vec<String>,
    /// The dispute to open when the case is new to us.
    pub new_case: Option<DisputeDraft>,
}

/// A valid RecordNetworkEvent.
#[derive(Debug, Clone)]
pub struct RecordNetworkEvent {
    pub network: Network,
    pub network_case_id: String,
    pub event_id: String,
    pub event: NetworkEvent,
    /// The dispute to open when the case is new.
    pub new_case: Option<NewDispute>,
}

/// Checks a RecordNetworkEvent and its new case (whose fields are named `new_case.…`).
pub fn record_network_event(
    draft: NetworkEventDraft,
    now: DateTime<Utc>,
) -> Result<RecordNetworkEvent, DisputeError> {
    refuse_over_caps([
        ("document_ids", draft.document_ids.len(), MAX_DOCUMENT_IDS),
        (
            "new_case.metadata",
            draft
                .new_case
                .as_ref()
                .map_or(0, |case| case.fields.metadata.len()),
            MAX_METADATA_KEYS,
        ),
    ])?;
    let mut texts = vec![
        ("network_case_id".to_owned(), draft.network_case_id.as_str()),
        ("event_id".to_owned(), draft.event_id.as_str()),
        ("message".to_owned(), draft.message.as_str()),
    ];
    document_id_texts("document_ids", &draft.document_ids, &mut texts);
    if let Some(case) = &draft.new_case {
        new_dispute_texts("new_case.", &case.fields, &mut texts);
    }
    let nul = nul_violations(texts);
    refuse_nul(nul, checked_record_network_event(draft, now))
}

fn checked_record_network_event(
    draft: NetworkEventDraft,
    now: DateTime<Utc>,
) -> Result<RecordNetworkEvent, DisputeError> {
    let mut violations = Vec::new();
    let network = required("network", draft.network, &mut violations);
    let kind = required("type", draft.kind, &mut violations);
    for (field, value) in [
        ("network_case_id", &draft.network_case_id),
        ("event_id", &draft.event_id),
    ] {
        if value.trim().is_empty() {
            violations.push(Violation::new(field, "is required"));
        } else if value.chars().count() > MAX_REFERENCE_CHARS || value.chars().any(char::is_control)
        {
            violations.push(Violation::new(
                field,
                format!("must be at most {MAX_REFERENCE_CHARS} printable characters"),
            ));
        }
    }
    let due_time = decoded(draft.due_time, &mut violations);
    let occur_time = decoded(draft.occur_time, &mut violations);
    if occur_time.is_some_and(|occurred| occurred > now + MAX_OCCUR_TIME_SKEW) {
        violations.push(Violation::new(
            "occur_time",
            format!(
                "must not be in the future (at most {} minutes of clock skew are allowed)",
                MAX_OCCUR_TIME_SKEW.num_minutes()
            ),
        ));
    }
    let network_reason_code = match draft.network_reason_code.as_str() {
        "" => None,
        code if code.trim().is_empty()
            || code.chars().count() > MAX_NETWORK_REASON_CODE_CHARS
            || code.chars().any(char::is_control) =>
        {
            violations.push(Violation::new(
                "network_reason_code",
                format!("must be at most {MAX_NETWORK_REASON_CODE_CHARS} printable characters"),
            ));
            None
        }
        code => Some(code.to_owned()),
    };
    let amount = optional_amount("amount", draft.amount, &mut violations);
    let amount_won = optional_amount("amount_won", draft.amount_won, &mut violations);
    let amount_lost = optional_amount("amount_lost", draft.amount_lost, &mut violations);
    memo_text("message", &draft.message, &mut violations);
    document_ids("document_ids", &draft.document_ids, &mut violations);
    let new_case = match draft.new_case {
        None => None,
        Some(mut case) => {
            // The case's network and id come from the event itself.
            case.fields.network = Some(draft.network);
            case.fields.network_case_id = draft.network_case_id.clone();
            let mut found = Vec::new();
            let due_time = decoded(case.due_time, &mut found);
            match new_dispute(case.fields, due_time, now, found) {
                Ok(new) => Some(new),
                Err(DisputeError::Validation(found)) => {
                    violations.extend(found.into_iter().map(|mut v| {
                        v.field = format!("new_case.{}", v.field);
                        v
                    }));
                    None
                }
                Err(other) => return Err(other),
            }
        }
    };
    match (network, kind) {
        (Some(network), Some(kind)) if violations.is_empty() => Ok(RecordNetworkEvent {
            network,
            network_case_id: draft.network_case_id,
            event_id: draft.event_id,
            event: NetworkEvent {
                kind,
                due_time,
                amount,
                response_allowed: draft.response_allowed.unwrap_or(true),
                amount_won,
                amount_lost,
                message: draft.message,
                document_ids: draft.document_ids,
                occur_time,
                network_reason_code,
            },
            new_case,
        }),
        _ => Err(DisputeError::Validation(violations)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::requests::shared::test_support::*;
    use crate::domain::{NewDisputeDraft, Side};

    #[test]
    fn a_new_case_is_named_with_its_prefix_and_takes_the_events_case() {
        let draft = NetworkEventDraft {
            network: EnumInput::Known(Network::Visa),
            network_case_id: "VISA-1".into(),
            event_id: "e1".into(),
            kind: EnumInput::Known(NetworkEventKind::Chargeback),
            due_time: None,
            occur_time: None,
            network_reason_code: String::new(),
            amount: 0,
            amount_won: 0,
            amount_lost: 0,
            response_allowed: None,
            message: String::new(),
            document_ids: Vec::new(),
            new_case: Some(DisputeDraft {
                fields: NewDisputeDraft {
                    side: Some(EnumInput::Known(Side::Merchant)),
                    amount: 1_000,
                    currency: "usd".into(),
                    reason: Some(EnumInput::Known(crate::domain::Reason::Fraudulent)),
                    ..Default::default()
                },
                due_time: None,
            }),
        };
        let now = Utc::now();
        let event = record_network_event(draft.clone(), now).unwrap();
        let case = event.new_case.unwrap();
        assert_eq!(case.network, Network::Visa);
        assert_eq!(case.network_case_id.as_deref(), Some("VISA-1"));
        assert!(event.event.response_allowed);

        let mut bad = draft;
        if let Some(case) = bad.new_case.as_mut() {
            case.due_time = bad_time("due_by");
        }
        assert_eq!(
            fields(record_network_event(bad, now)),
            vec!["new_case.due_by"]
        );
    }

    #[test]
    fn an_event_occurs_at_most_a_little_ahead_and_carries_a_short_reason_code() {
        let now = Utc::now();
        let draft = |ahead: chrono::Duration, code: &str| NetworkEventDraft {
            network: EnumInput::Known(Network::Mastercard),
            network_case_id: "MC-1".into(),
            event_id: "e1".into(),
            kind: EnumInput::Known(NetworkEventKind::Representment),
            due_time: None,
            occur_time: Some(Ok(now + ahead)),
            network_reason_code: code.into(),
            amount: 0,
            amount_won: 0,
            amount_lost: 0,
            response_allowed: None,
            message: String::new(),
            document_ids: Vec::new(),
            new_case: None,
        };
        let skewed = record_network_event(draft(chrono::Duration::minutes(4), "4853"), now)
            .unwrap()
            .event;
        assert_eq!(skewed.occur_time, Some(now + chrono::Duration::minutes(4)));
        assert_eq!(skewed.window_start(now), now, "skew ahead counts as now");
        assert_eq!(skewed.network_reason_code.as_deref(), Some("4853"));
        let past = chrono::Duration::days(-40);
        assert_eq!(
            record_network_event(draft(past, ""), now)
                .unwrap()
                .event
                .window_start(now),
            now + past
        );
        assert_eq!(
            fields(record_network_event(
                draft(chrono::Duration::minutes(6), &"9".repeat(17)),
                now
            )),
            vec!["occur_time", "network_reason_code"]
        );
    }
}
