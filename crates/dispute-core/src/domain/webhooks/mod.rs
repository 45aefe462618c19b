//! Pure rules of webhooks: what endpoints, deliveries and attempts are, which URLs and event
//! types an endpoint may have (`urls`, `endpoints`), the retry schedule and when a failing
//! endpoint is disabled (`deliveries`), an endpoint's circuit breaker (`breaker`), and the
//! Standard Webhooks signature (`signatures`), and how signing secrets are sealed at rest
//! (`secret_box`).
//! The event types themselves are [`DisputeEvent`](crate::domain::DisputeEvent)'s one list.
//! Checking the webhook RPCs' requests is in `requests::webhooks`.

mod breaker;
mod deliveries;
mod endpoints;
mod secret_box;
mod signatures;
mod urls;

pub use breaker::*;
pub use deliveries::*;
pub use endpoints::*;
pub use secret_box::*;
pub use signatures::*;
pub use urls::*;
