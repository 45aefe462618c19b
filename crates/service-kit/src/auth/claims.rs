//! Pure rules over a token's claims: where the tenant and the scopes are (identity providers
//! name them differently) and the time rules (`iat`, lifetime). No I/O, no clock: the
//! caller passes `now`.

use serde_json::Value;

use super::Scope;

/// Where a claim is: a top-level key taken literally (Auth0's namespaced
/// `https://example.com/tenant` included), or, when the name starts with `/`, a JSON
/// Pointer (RFC 6901) such as `/org/tenant_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimName {
    Key(String),
    Pointer(String),
}

impl ClaimName {
    /// `None` for an empty name.
    pub fn parse(name: &str) -> Option<ClaimName> {
        if name.is_empty() {
            None
        } else if name.starts_with('/') {
            Some(ClaimName::Pointer(name.to_owned()))
        } else {
            Some(ClaimName::Key(name.to_owned()))
        }
    }

    /// The claim's value in `claims` (the token's payload object).
    pub fn find<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        match self {
            ClaimName::Key(key) => claims.get(key),
            ClaimName::Pointer(pointer) => claims.pointer(pointer),
        }
        .filter(|value| !value.is_null())
    }
}

/// Our scopes in a scope claim: an array of strings (Okta `scp`, Auth0 `permissions`) or
/// one space-separated string (OAuth `scope`, Keycloak, Azure `scp`). Names that are not
/// ours (`openid`, `profile`, another API's) are ignored; so is anything else.
pub fn scopes_in(value: Option<&Value>) -> Vec<Scope> {
    let names: Vec<&str> = match value {
        Some(Value::String(list)) => list.split_whitespace().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut scopes = Vec::new();
    for scope in names.into_iter().filter_map(Scope::parse) {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

/// The time rules beyond `exp` and `nbf` (which the JWT library checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRules {
    /// `iat` must be present (identity-provider tokens always carry it).
    pub require_issued_at: bool,
    /// Clock skew allowed, in seconds.
    pub leeway_secs: u64,
    /// Longest accepted `exp - iat`, in seconds.
    pub max_lifetime_secs: u64,
}

/// Why [`TimeRules::check`] refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRefusal {
    MissingIssuedAt,
    IssuedInTheFuture,
    LifetimeTooLong,
}

impl TimeRules {
    /// Checks `iat` (seconds since the epoch, if the token has one) against `now`, and the
    /// token's lifetime `exp - iat` against the maximum; without `iat` the time it has left
    /// (`exp - now`) must be within the maximum instead.
    pub fn check(
        &self,
        issued_at: Option<i64>,
        expires_at: i64,
        now: i64,
    ) -> Result<(), TimeRefusal> {
        let leeway = i64::try_from(self.leeway_secs).unwrap_or(i64::MAX);
        let max_lifetime = i64::try_from(self.max_lifetime_secs).unwrap_or(i64::MAX);
        let lifetime = match issued_at {
            Some(iat) => {
                if iat > now.saturating_add(leeway) {
                    return Err(TimeRefusal::IssuedInTheFuture);
                }
                expires_at.saturating_sub(iat)
            }
            None if self.require_issued_at => return Err(TimeRefusal::MissingIssuedAt),
            None => expires_at.saturating_sub(now),
        };
        if lifetime > max_lifetime {
            return Err(TimeRefusal::LifetimeTooLong);
        }
        Ok(())
    }
}

/// A numeric date claim (`iat`, `exp`) as whole seconds; JWTs may carry fractions.
pub fn numeric_date(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Number(number) => number
            .as_i64()
            .or_else(|| number.as_f64().map(|f| f.floor() as i64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_plain_name_is_a_top_level_key_even_with_slashes_inside() {
        let claims = json!({
            "tenant": "acme",
            "https://example.com/tenant": "auth0-tenant",
            "org": {"tenant_id": "nested"},
        });
        let find = |name: &str| {
            ClaimName::parse(name)
                .and_then(|claim| claim.find(&claims).cloned())
                .and_then(|v| v.as_str().map(str::to_owned))
        };
        assert_eq!(find("tenant").as_deref(), Some("acme"));
        assert_eq!(
            find("https://example.com/tenant").as_deref(),
            Some("auth0-tenant")
        );
        assert_eq!(find("/org/tenant_id").as_deref(), Some("nested"));
        assert_eq!(find("/org/missing"), None);
        assert_eq!(find("org/tenant_id"), None);
        assert_eq!(ClaimName::parse(""), None);
    }

    #[test]
    fn json_pointer_escapes_are_honoured() {
        let claims = json!({"a/b": {"c~d": "x"}});
        let pointer = ClaimName::parse("/a~1b/c~0d").expect("name");
        assert_eq!(pointer.find(&claims), Some(&json!("x")));
    }

    #[test]
    fn a_null_claim_is_no_claim() {
        let claims = json!({"tenant": null});
        assert_eq!(ClaimName::Key("tenant".into()).find(&claims), None);
    }

    #[test]
    fn scopes_come_from_a_space_separated_string_or_an_array() {
        assert_eq!(
            scopes_in(Some(&json!(
                "openid disputes:read  documents:write profile"
            ))),
            vec![Scope::DisputesRead, Scope::DocumentsWrite]
        );
        assert_eq!(
            scopes_in(Some(&json!([
                "disputes:read",
                "other:api",
                7,
                "disputes:read"
            ]))),
            vec![Scope::DisputesRead]
        );
        assert_eq!(
            scopes_in(Some(&json!(["documents:lock"]))),
            vec![Scope::DocumentsLock]
        );
        assert!(scopes_in(Some(&json!({"disputes:read": true}))).is_empty());
        assert!(scopes_in(None).is_empty());
    }

    const RULES: TimeRules = TimeRules {
        require_issued_at: true,
        leeway_secs: 30,
        max_lifetime_secs: 3600,
    };

    #[test]
    fn issued_at_is_required_when_asked_and_never_in_the_future() {
        let now = 1_000_000;
        assert_eq!(RULES.check(Some(now), now + 60, now), Ok(()));
        // Within the leeway a slightly fast issuer clock is fine.
        assert_eq!(RULES.check(Some(now + 30), now + 60, now), Ok(()));
        assert_eq!(
            RULES.check(Some(now + 31), now + 60, now),
            Err(TimeRefusal::IssuedInTheFuture)
        );
        assert_eq!(
            RULES.check(None, now + 60, now),
            Err(TimeRefusal::MissingIssuedAt)
        );
        let optional = TimeRules {
            require_issued_at: false,
            ..RULES
        };
        assert_eq!(optional.check(None, now + 60, now), Ok(()));
    }

    #[test]
    fn the_lifetime_is_bounded() {
        let now = 1_000_000;
        assert_eq!(RULES.check(Some(now - 100), now + 3500, now), Ok(()));
        assert_eq!(
            RULES.check(Some(now - 100), now + 3501, now),
            Err(TimeRefusal::LifetimeTooLong)
        );
        // Without `iat`, what is left of the token counts.
        let optional = TimeRules {
            require_issued_at: false,
            ..RULES
        };
        assert_eq!(optional.check(None, now + 3600, now), Ok(()));
        assert_eq!(
            optional.check(None, now + 3601, now),
            Err(TimeRefusal::LifetimeTooLong)
        );
        // Extreme values neither overflow nor pass.
        assert_eq!(
            RULES.check(Some(i64::MIN), i64::MAX, now),
            Err(TimeRefusal::LifetimeTooLong)
        );
    }

    #[test]
    fn numeric_dates_accept_fractions() {
        assert_eq!(numeric_date(Some(&json!(12))), Some(12));
        assert_eq!(numeric_date(Some(&json!(12.9))), Some(12));
        assert_eq!(numeric_date(Some(&json!("12"))), None);
        assert_eq!(numeric_date(None), None);
    }
}
