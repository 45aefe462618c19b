//! Telling a failing dependency (PostgreSQL, object storage) apart from a bug, so the
//! client gets a retryable UNAVAILABLE instead of INTERNAL.
//!
//! Errors travel as `anyhow::Error` from the store up to `grpc/status.rs`;
//! [`unavailable_dependency`] looks through the chain once there. sqlx errors are recognised
//! by kind and SQLSTATE; other stores (S3) mark their transient failures with
//! [`DependencyUnavailable`] where they call the SDK, since only they know its error types.

use std::fmt;

/// A backing service a call depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Storage,
}

impl Dependency {
    /// The ErrorInfo reason a client sees, e.g. `DATABASE_UNAVAILABLE`.
    pub fn reason(self) -> &'static str {
        match self {
            Dependency::Database => "DATABASE_UNAVAILABLE",
            Dependency::Storage => "STORAGE_UNAVAILABLE",
        }
    }

    /// The message a client sees: names the dependency, never its internals.
    pub fn message(self) -> &'static str {
        match self {
            Dependency::Database => "the database is unavailable, retry later",
            Dependency::Storage => "object storage is unavailable, retry later",
        }
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dependency::Database => "database",
            Dependency::Storage => "object storage",
        })
    }
}

/// A transient failure of `dependency` (timeout, refused connection, 5xx), with its cause.
#[derive(Debug, thiserror::Error)]
#[error("{dependency} unavailable")]
pub struct DependencyUnavailable {
    pub dependency: Dependency,
    #[source]
    pub source: anyhow::Error,
}

impl DependencyUnavailable {
    pub fn new(dependency: Dependency, source: impl Into<anyhow::Error>) -> Self {
        Self {
            dependency,
            source: source.into(),
        }
    }
}

/// SQLSTATEs that mean "the database cannot serve this now", not "this request is wrong":
/// class 08 (connection exception), 53 (insufficient resources), 57014 (query_canceled, i.e.
/// statement_timeout), 55P03 (lock_not_available, i.e. lock_timeout), 57P01..57P05
/// (admin/crash shutdown, cannot connect now, idle session timeout).
fn is_transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57014" | "55P03" | "57P01" | "57P02" | "57P03" | "57P05"
        )
}

/// Whether a sqlx error means the database is unreachable, exhausted or timed out.
pub fn is_database_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    }
}

/// The dependency whose transient failure caused `error`, if any.
pub fn unavailable_dependency(error: &anyhow::Error) -> Option<Dependency> {
    if let Some(marked) = error.downcast_ref::<DependencyUnavailable>() {
        return Some(marked.dependency);
    }
    if error
        .downcast_ref::<sqlx::Error>()
        .is_some_and(is_database_unavailable)
    {
        return Some(Dependency::Database);
    }
    error.chain().find_map(|cause| {
        if let Some(marked) = cause.downcast_ref::<DependencyUnavailable>() {
            return Some(marked.dependency);
        }
        cause
            .downcast_ref::<sqlx::Error>()
            .filter(|e| is_database_unavailable(e))
            .map(|_| Dependency::Database)
    })
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn pool_timeout_under_context_is_the_database() {
        let error = Err::<(), _>(sqlx::Error::PoolTimedOut)
            .context("load dispute")
            .context("create action")
            .unwrap_err();
        assert_eq!(unavailable_dependency(&error), Some(Dependency::Database));
    }

    #[test]
    fn refused_connection_is_the_database() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let error = anyhow::Error::from(sqlx::Error::Io(io)).context("begin");
        assert_eq!(unavailable_dependency(&error), Some(Dependency::Database));
    }

    #[test]
    fn a_marked_storage_failure_is_found_under_context() {
        let error = anyhow::Error::new(DependencyUnavailable::new(
            Dependency::Storage,
            anyhow::anyhow!("503 slow down"),
        ))
        .context("upload part 3");
        assert_eq!(unavailable_dependency(&error), Some(Dependency::Storage));
    }

    #[test]
    fn a_bug_is_not_a_dependency_failure() {
        let error = anyhow::Error::from(sqlx::Error::RowNotFound).context("load");
        assert_eq!(unavailable_dependency(&error), None);
        assert_eq!(unavailable_dependency(&anyhow::anyhow!("oops")), None);
    }

    #[test]
    fn statement_and_lock_timeouts_are_transient() {
        assert!(is_transient_sqlstate("57014"));
        assert!(is_transient_sqlstate("55P03"));
        assert!(is_transient_sqlstate("08006"));
        assert!(!is_transient_sqlstate("23505"));
        assert!(!is_transient_sqlstate("40001"));
    }
}
