//! Helpers every table module shares: reading stored enum names and recognising
//! constraint violations.

use std::collections::HashMap;

use anyhow::Context;

use crate::domain::Dispute;

/// Parses a stored enum name; a value we cannot read is a bug, not bad input.
pub(crate) fn stored<T>(
    column: &str,
    value: &str,
    parse: fn(&str) -> Option<T>,
) -> anyhow::Result<T> {
    parse(value).with_context(|| format!("unreadable {column} {value:?} in database"))
}

pub(crate) fn is_unique_violation_of(error: &sqlx::Error, constraint: &str) -> bool {
    error
        .as_database_error()
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(constraint))
}

/// The ids of `disputes` (to query their child rows with `= any($2)`) and where each sits.
pub(crate) fn dispute_positions(disputes: &[Dispute]) -> (Vec<String>, HashMap<String, usize>) {
    let ids: Vec<String> = disputes.iter().map(|d| d.id.clone()).collect();
    let positions = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i))
        .collect();
    (ids, positions)
}
