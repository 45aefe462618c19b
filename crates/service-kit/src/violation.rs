//! Invalid request fields as a plain value. Pure: no tonic here, so the services' domain
//! code can report violations without compiling against transport code. `errors` turns
//! them into a google.rpc BadRequest at the gRPC edge.

/// One invalid request field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path as in the request, e.g. `currency` or `metadata["k"]`.
    pub field: String,
    /// Why it is invalid, in lower case.
    pub description: String,
}

impl Violation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}
