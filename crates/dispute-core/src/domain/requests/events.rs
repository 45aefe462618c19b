//! ListEvents, GetEvent and StreamEvents: which events a reader wants, and where a stream
//! starts.

use chrono::{DateTime, Utc};
use domain_kit::ids::{DisputeId, EventId};
use domain_kit::page_token::PageRequest;
use domain_kit::violation::{Violation, nul_violations};

use super::shared::*;
use crate::domain::{DisputeError, DisputeEvent};

/// The filters of ListEvents and StreamEvents as they arrived.
#[derive(Debug, Clone, Default)]
pub struct EventFilterDraft {
    pub types: Vec<String>,
    pub dispute_id: String,
    pub created_after: Option<Decoded<DateTime<Utc>>>,
    pub created_before: Option<Decoded<DateTime<Utc>>>,
}

/// Which events a reader wants; every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Empty means every type.
    pub types: Vec<DisputeEvent>,
    pub dispute_id: Option<DisputeId>,
    /// Inclusive.
    pub created_after: Option<DateTime<Utc>>,
    /// Exclusive.
    pub created_before: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// The type names to match, empty for all.
    pub fn type_names(&self) -> Vec<String> {
        self.types.iter().map(|t| t.as_str().to_owned()).collect()
    }

    /// Whether an event of `event_type` about `dispute_id`, created at `create_time`, passes.
    pub fn matches(&self, event_type: &str, dispute_id: &str, create_time: DateTime<Utc>) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t.as_str() == event_type))
            && self
                .dispute_id
                .as_ref()
                .is_none_or(|id| id.as_str() == dispute_id)
            && self.created_after.is_none_or(|after| create_time >= after)
            && self
                .created_before
                .is_none_or(|before| create_time < before)
    }

    /// A stable text of the filters (the page-token fingerprint).
    fn canonical(&self) -> String {
        format!(
            "events types={:?};dispute={:?};after={:?};before={:?}",
            self.type_names(),
            self.dispute_id.as_ref().map(DisputeId::as_str),
            self.created_after.map(|t| t.timestamp_micros()),
            self.created_before.map(|t| t.timestamp_micros()),
        )
    }
}

/// ListEvents as it arrived.
#[derive(Debug, Clone, Default)]
pub struct ListEventsDraft {
    pub filter: EventFilterDraft,
    pub page_size: i32,
    pub page_token: String,
}

/// A valid ListEvents: filters and the page asked for (the cursor's id is the last event
/// of the previous page).
#[derive(Debug, Clone)]
pub struct ListEvents {
    pub filter: EventFilter,
    pub page: PageRequest,
}

/// Where a stream of events starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStart {
    /// After the newest event committed when the stream starts.
    Now,
    /// With the oldest stored event.
    Beginning,
    /// Right after this event (the last one a previous stream delivered).
    After(EventId),
}

/// StreamEvents as it arrived.
#[derive(Debug, Clone, Default)]
pub struct StreamEventsDraft {
    pub types: Vec<String>,
    pub dispute_id: String,
    pub after_event_id: String,
    pub from_beginning: bool,
}

/// A valid StreamEvents.
#[derive(Debug, Clone)]
pub struct StreamEvents {
    pub filter: EventFilter,
    pub start: StreamStart,
}

/// An event id, or INVALID_ARGUMENT naming `field`.
pub fn event_id(field: &str, value: &str) -> Result<EventId, DisputeError> {
    checked_id(field, value, EventId::parse)
}

/// Checks ListEvents: known types, a `dsp_` id, a time range in order and paging.
pub fn list_events(draft: ListEventsDraft) -> Result<ListEvents, DisputeError> {
    refuse_over_caps([("types", draft.filter.types.len(), MAX_TYPE_FILTERS)])?;
    let mut nul = event_filter_nul(&draft.filter.types, &draft.filter.dispute_id);
    nul.extend(nul_violations([("page_token", draft.page_token.as_str())]));
    refuse_nul(nul, checked_list_events(draft))
}

fn checked_list_events(draft: ListEventsDraft) -> Result<ListEvents, DisputeError> {
    let mut violations = Vec::new();
    let filter = event_filter(draft.filter, &mut violations);
    let page = PageRequest::parse(
        draft.page_size,
        &draft.page_token,
        fingerprint(filter.canonical().as_bytes()),
        &mut violations,
    );
    if violations.is_empty() {
        Ok(ListEvents { filter, page })
    } else {
        Err(DisputeError::Validation(violations))
    }
}

/// Checks StreamEvents: filters as ListEvents, and an `evt_` id to continue after.
pub fn stream_events(draft: StreamEventsDraft) -> Result<StreamEvents, DisputeError> {
    refuse_over_caps([("types", draft.types.len(), MAX_TYPE_FILTERS)])?;
    let mut nul = event_filter_nul(&draft.types, &draft.dispute_id);
    nul.extend(nul_violations([(
        "after_event_id",
        draft.after_event_id.as_str(),
    )]));
    refuse_nul(nul, checked_stream_events(draft))
}

fn checked_stream_events(draft: StreamEventsDraft) -> Result<StreamEvents, DisputeError> {
    let mut violations = Vec::new();
    let filter = event_filter(
        EventFilterDraft {
            types: draft.types,
            dispute_id: draft.dispute_id,
            created_after: None,
            created_before: None,
        },
        &mut violations,
    );
    let start = if draft.after_event_id.is_empty() {
        if draft.from_beginning {
            StreamStart::Beginning
        } else {
            StreamStart::Now
        }
    } else {
        match EventId::parse("after_event_id", &draft.after_event_id) {
            Ok(id) if !draft.from_beginning => StreamStart::After(id),
            Ok(_) => {
                violations.push(Violation::new(
                    "from_beginning",
                    "must not be set together with after_event_id",
                ));
                StreamStart::Now
            }
            Err(violation) => {
                violations.push(violation);
                StreamStart::Now
            }
        }
    };
    if violations.is_empty() {
        Ok(StreamEvents { filter, start })
    } else {
        Err(DisputeError::Validation(violations))
    }
}

fn event_filter_nul<'a>(types: &'a [String], dispute_id: &'a str) -> Vec<Violation> {
    let mut texts: Texts<'a> = types
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("types[{i}]"), t.as_str()))
        .collect();
    texts.push(("dispute_id".to_owned(), dispute_id));
    nul_violations(texts)
}

fn event_filter(draft: EventFilterDraft, violations: &mut Vec<Violation>) -> EventFilter {
    let mut types = Vec::new();
    for (i, name) in draft.types.iter().enumerate() {
        match DisputeEvent::from_name(name) {
            Some(event) if !types.contains(&event) => types.push(event),
            Some(_) => {}
            None => violations.push(Violation::new(
                format!("types[{i}]"),
                "must be an event type listed in docs/api.md (e.g. dispute.created)",
            )),
        }
    }
    // A stable order, so that the same set of types always gives the same page tokens.
    types.sort_by_key(|t| t.as_str());
    let dispute_id = if draft.dispute_id.is_empty() {
        None
    } else {
        DisputeId::parse("dispute_id", &draft.dispute_id)
            .map_err(|violation| violations.push(violation))
            .ok()
    };
    let created_after = decoded(draft.created_after, violations);
    let created_before = decoded(draft.created_before, violations);
    if let (Some(after), Some(before)) = (created_after, created_before)
        && after >= before
    {
        violations.push(Violation::new(
            "created_before",
            "must be later than created_after",
        ));
    }
    EventFilter {
        types,
        dispute_id,
        created_after,
        created_before,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::requests::shared::test_support::*;

    #[test]
    fn event_filters_name_unknown_types_and_tokens_follow_the_set_of_types() {
        let draft = |types: &[&str]| ListEventsDraft {
            filter: EventFilterDraft {
                types: types.iter().map(|t| (*t).to_owned()).collect(),
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            fields(list_events(draft(&["dispute.won", "dispute.nope", "x\0"]))),
            vec!["types[2]", "types[1]"]
        );
        // The same set of types in another order (or repeated) is the same filter.
        let a = list_events(draft(&["dispute.won", "dispute.lost"])).unwrap();
        let b = list_events(draft(&["dispute.lost", "dispute.won", "dispute.lost"])).unwrap();
        assert_eq!(a.filter, b.filter);
        assert_eq!(a.filter.types, vec![DisputeEvent::Lost, DisputeEvent::Won]);
        let stream = stream_events(StreamEventsDraft {
            after_event_id: "evt_01jd3s9v8m6q0n2c5x7r4t1k9e".into(),
            from_beginning: true,
            ..Default::default()
        });
        assert_eq!(fields(stream), vec!["from_beginning"]);
        assert_eq!(
            stream_events(StreamEventsDraft::default()).unwrap().start,
            StreamStart::Now
        );
    }

    #[test]
    fn a_types_filter_over_its_cap_is_one_violation_whatever_its_items() {
        let types = vec!["\0".to_owned(); 128_000];
        let listed = list_events(ListEventsDraft {
            filter: EventFilterDraft {
                types: types.clone(),
                ..Default::default()
            },
            page_token: "\0".into(),
            ..Default::default()
        });
        assert_eq!(fields(listed), vec!["types"]);
        let streamed = stream_events(StreamEventsDraft {
            types,
            ..Default::default()
        });
        assert_eq!(fields(streamed), vec!["types"]);
        let at_cap = vec!["dispute.won".to_owned(); MAX_TYPE_FILTERS];
        let listed = list_events(ListEventsDraft {
            filter: EventFilterDraft {
                types: at_cap,
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(listed.unwrap().filter.types, vec![DisputeEvent::Won]);
    }
}
