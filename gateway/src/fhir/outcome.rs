//! `OperationOutcome`: every error the gateway answers, with an issue code
//! (FHIR R4 `IssueType`) and a message that says what to fix. Messages
//! carry resource types, entry positions, section names and ids only,
//! never a clinical value (they are built from the core's errors, which
//! follow the same rule).

use serde_json::{json, Value};

/// One error: the HTTP status, the FHIR issue code, the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl Outcome {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not-found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(422, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "exception", message)
    }

    /// `"422 Unprocessable Entity"`, as `Bundle.entry.response.status`.
    pub fn status_line(&self) -> String {
        status_line(self.status)
    }

    /// The `OperationOutcome` resource.
    pub fn resource(&self) -> Value {
        json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": if self.status >= 500 { "fatal" } else { "error" },
                "code": self.code,
                "diagnostics": self.message,
            }]
        })
    }
}

/// An HTTP status with its reason phrase.
pub fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    format!("{status} {reason}").trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_an_operation_outcome_with_a_code() {
        let o = Outcome::unprocessable("processing", "entry 2: no record shared");
        let r = o.resource();
        assert_eq!(r["resourceType"], "OperationOutcome");
        assert_eq!(r["issue"][0]["code"], "processing");
        assert_eq!(r["issue"][0]["severity"], "error");
        assert_eq!(o.status_line(), "422 Unprocessable Entity");
    }
}
