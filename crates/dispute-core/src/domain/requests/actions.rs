//! CreateAction: a tenant action on a dispute, and what the network answered its filing.

use domain_kit::ids::DisputeId;
use domain_kit::violation::{Violation, nul_violations};

use super::shared::*;
use crate::domain::dispute::MAX_REFERENCE_CHARS;
use crate::domain::{ActionType, CloseReason, DisputeError, EnumInput, TenantAction};

/// CreateAction as it arrived.
#[derive(Debug, Clone)]
pub struct CreateActionDraft {
    pub dispute_id: String,
    pub request_id: String,
    pub action: EnumInput<ActionType>,
    /// 0 means "the disputed amount".
    pub amount: i64,
    pub message: String,
    pub document_ids: Vec<String>,
    pub expected_version: Option<i64>,
    /// CHARGEBACK, PRE_ARBITRATION, ARBITRATION: the network's case id; empty when not given.
    pub network_case_id: String,
    /// CHARGEBACK, PRE_ARBITRATION, ARBITRATION: the network's reference of the filing.
    pub network_reference: String,
    /// CLOSE (issuer side): why the dispute ends; unset for every other action.
    pub close_reason: Option<EnumInput<CloseReason>>,
}

/// A valid CreateAction.
#[derive(Debug, Clone)]
pub struct CreateAction {
    pub dispute_id: DisputeId,
    pub request_id: Option<String>,
    pub expected_version: Option<i64>,
    pub action: TenantAction,
    /// What the network answered when the case was filed (CHARGEBACK, PRE_ARBITRATION,
    /// ARBITRATION only).
    pub filing: NetworkFiling,
}

/// The network's identifiers of a filing the issuer made (issue 11, point 3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkFiling {
    /// Stored on the dispute: later network events for this case reach it.
    pub case_id: Option<String>,
    /// Kept in the action history.
    pub reference: Option<String>,
}

impl NetworkFiling {
    /// The text the action history keeps, if there is anything to keep.
    pub fn note(&self) -> Option<String> {
        let parts: Vec<String> = [
            self.case_id.as_ref().map(|id| format!("network case {id}")),
            self.reference
                .as_ref()
                .map(|reference| format!("network reference {reference}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// Actions that file something with the network and so may carry its identifiers.
fn files_with_network(action: ActionType) -> bool {
    matches!(
        action,
        ActionType::Chargeback | ActionType::PreArbitration | ActionType::Arbitration
    )
}

/// An optional network identifier: at most [`MAX_REFERENCE_CHARS`] printable characters.
fn network_identifier(field: &str, value: &str, violations: &mut Vec<Violation>) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.trim().is_empty()
        || value.chars().count() > MAX_REFERENCE_CHARS
        || value.chars().any(char::is_control)
    {
        violations.push(Violation::new(
            field,
            format!("must be at most {MAX_REFERENCE_CHARS} printable characters"),
        ));
        return None;
    }
    Some(value.to_owned())
}

/// Checks a CreateAction.
pub fn create_action(draft: CreateActionDraft) -> Result<CreateAction, DisputeError> {
    refuse_over_caps([("document_ids", draft.document_ids.len(), MAX_DOCUMENT_IDS)])?;
    let mut texts = vec![
        ("dispute_id".to_owned(), draft.dispute_id.as_str()),
        ("request_id".to_owned(), draft.request_id.as_str()),
        ("message".to_owned(), draft.message.as_str()),
    ];
    document_id_texts("document_ids", &draft.document_ids, &mut texts);
    let nul = nul_violations(texts);
    refuse_nul(nul, checked_create_action(draft))
}

fn checked_create_action(draft: CreateActionDraft) -> Result<CreateAction, DisputeError> {
    let mut violations = Vec::new();
    let dispute_id =
        DisputeId::parse("dispute_id", &draft.dispute_id).map_err(|v| violations.push(v));
    let request_id = request_id(&draft.request_id, &mut violations);
    let action = required("action", draft.action, &mut violations);
    let amount = optional_amount("amount", draft.amount, &mut violations);
    memo_text("message", &draft.message, &mut violations);
    document_ids("document_ids", &draft.document_ids, &mut violations);
    let filing = NetworkFiling {
        case_id: network_identifier("network_case_id", &draft.network_case_id, &mut violations),
        reference: network_identifier(
            "network_reference",
            &draft.network_reference,
            &mut violations,
        ),
    };
    let close_reason = optional("close_reason", draft.close_reason, &mut violations);
    if let Some(action) = action.filter(|&action| action != ActionType::Close)
        && close_reason.is_some()
    {
        violations.push(Violation::new(
            "close_reason",
            format!(
                "only CLOSE takes a close reason, not {}",
                action.as_str().to_uppercase()
            ),
        ));
    }
    if let Some(action) = action.filter(|&action| !files_with_network(action)) {
        for (field, given) in [
            ("network_case_id", &draft.network_case_id),
            ("network_reference", &draft.network_reference),
        ] {
            if !given.is_empty() {
                violations.push(Violation::new(
                    field,
                    format!(
                        "only CHARGEBACK, PRE_ARBITRATION and ARBITRATION file with the network; \
                         {} takes no network identifiers",
                        action.as_str().to_uppercase()
                    ),
                ));
            }
        }
    }
    match (dispute_id, action) {
        (Ok(dispute_id), Some(action)) if violations.is_empty() => Ok(CreateAction {
            dispute_id,
            request_id,
            expected_version: draft.expected_version,
            action: TenantAction {
                action,
                amount,
                message: draft.message,
                document_ids: draft.document_ids,
                close_reason,
            },
            filing,
        }),
        _ => Err(DisputeError::Validation(violations)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::dispute::MAX_MEMO_CHARS;
    use crate::domain::requests::shared::test_support::*;
    use domain_kit::ids::DocumentId;

    #[test]
    fn actions_name_every_bad_field() {
        let draft = CreateActionDraft {
            dispute_id: "nope".into(),
            request_id: "\u{1}".into(),
            action: EnumInput::Unknown(99),
            amount: -5,
            message: "m".repeat(MAX_MEMO_CHARS + 1),
            document_ids: vec!["doc-1".into(), DocumentId::generate().into_string()],
            expected_version: None,
            network_case_id: "c\u{0}".into(),
            network_reference: String::new(),
            close_reason: Some(EnumInput::Unknown(7)),
        };
        assert_eq!(
            fields(create_action(draft)),
            vec![
                "dispute_id",
                "request_id",
                "action",
                "amount",
                "message",
                "document_ids[0]",
                "network_case_id",
                "close_reason"
            ]
        );
    }

    #[test]
    fn only_close_takes_a_close_reason() {
        let draft = |action, reason| CreateActionDraft {
            dispute_id: DisputeId::generate().into_string(),
            request_id: String::new(),
            action: EnumInput::Known(action),
            amount: 0,
            message: String::new(),
            document_ids: Vec::new(),
            expected_version: None,
            network_case_id: String::new(),
            network_reference: String::new(),
            close_reason: Some(reason),
        };
        let withdrawn = EnumInput::Known(CloseReason::CardholderWithdrew);
        let close = create_action(draft(ActionType::Close, withdrawn)).unwrap();
        assert_eq!(
            close.action.close_reason,
            Some(CloseReason::CardholderWithdrew)
        );
        let unset = create_action(draft(ActionType::Close, EnumInput::Unspecified)).unwrap();
        assert_eq!(unset.action.close_reason, None);
        assert_eq!(
            fields(create_action(draft(ActionType::Deny, withdrawn))),
            vec!["close_reason"]
        );
    }

    #[test]
    fn only_filings_carry_network_identifiers() {
        let draft = |action, case_id: &str| CreateActionDraft {
            dispute_id: DisputeId::generate().into_string(),
            request_id: String::new(),
            action: EnumInput::Known(action),
            amount: 0,
            message: String::new(),
            document_ids: Vec::new(),
            expected_version: None,
            network_case_id: case_id.into(),
            network_reference: "ARN-1".into(),
            close_reason: None,
        };
        let filed = create_action(draft(ActionType::Chargeback, "VISA-9")).unwrap();
        assert_eq!(filed.filing.case_id.as_deref(), Some("VISA-9"));
        assert_eq!(
            filed.filing.note().as_deref(),
            Some("network case VISA-9, network reference ARN-1")
        );
        assert_eq!(
            fields(create_action(draft(ActionType::Deny, "VISA-9"))),
            vec!["network_case_id", "network_reference"]
        );
    }
}
