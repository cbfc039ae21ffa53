//! Shared by the fuzz entry points of `satchel-core` and the relay
//! (hidden from the documentation: test infrastructure, not API).

/// What a decoder did with an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Decoded (and, where the target goes further, verified or applied).
    Accepted,
    /// Refused with an error.
    Refused,
}

impl Outcome {
    /// Accepted if `r` is `Ok`, refused otherwise.
    pub fn of<T, E>(r: &Result<T, E>) -> Self {
        if r.is_ok() {
            Outcome::Accepted
        } else {
            Outcome::Refused
        }
    }
}
