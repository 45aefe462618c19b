//! ListDisputeHistory: a dispute's history, page by page.

use domain_kit::ids::DisputeId;
use domain_kit::page_token::PageRequest;
use domain_kit::violation::nul_violations;

use super::shared::*;
use crate::domain::DisputeError;

/// A valid ListDisputeHistory: the dispute and the page asked for.
#[derive(Debug, Clone)]
pub struct ListDisputeHistory {
    pub dispute_id: DisputeId,
    pub page: PageRequest,
}

/// Checks ListDisputeHistory: a dispute id and paging; a page token is valid only for the
/// dispute it was issued for.
pub fn list_dispute_history(
    dispute_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<ListDisputeHistory, DisputeError> {
    let nul = nul_violations([("dispute_id", dispute_id), ("page_token", page_token)]);
    refuse_nul(
        nul,
        checked_list_dispute_history(dispute_id, page_size, page_token),
    )
}

fn checked_list_dispute_history(
    dispute_id: &str,
    page_size: i32,
    page_token: &str,
) -> Result<ListDisputeHistory, DisputeError> {
    let mut violations = Vec::new();
    let id = DisputeId::parse("dispute_id", dispute_id)
        .map_err(|violation| violations.push(violation))
        .ok();
    let page = PageRequest::parse(
        page_size,
        page_token,
        fingerprint(format!("history of {dispute_id}").as_bytes()),
        &mut violations,
    );
    match id {
        Some(dispute_id) if violations.is_empty() => Ok(ListDisputeHistory { dispute_id, page }),
        _ => Err(DisputeError::Validation(violations)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::requests::shared::test_support::*;
    use chrono::DateTime;

    #[test]
    fn history_page_tokens_belong_to_their_dispute() {
        let one = DisputeId::generate().into_string();
        let other = DisputeId::generate().into_string();
        let first = list_dispute_history(&one, 0, "").unwrap();
        assert_eq!((first.page.size, first.page.after.clone()), (20, None));
        let (_, token) = first.page.cut((1..=21).collect(), |n: &i64| {
            domain_kit::page_token::PageCursor {
                create_time: DateTime::from_timestamp(*n, 0).unwrap(),
                id: format!("act_{n}"),
            }
        });
        let next = list_dispute_history(&one, 0, &token).unwrap();
        assert_eq!(next.page.after.map(|c| c.id), Some("act_20".to_owned()));
        assert_eq!(
            fields(list_dispute_history(&other, 0, &token)),
            vec!["page_token"]
        );
        assert_eq!(
            fields(list_dispute_history("dsp\0", -1, "")),
            vec!["dispute_id", "page_size"]
        );
    }
}
