//! Consent: signed, purpose-bound, revocable consent tokens.

pub mod token;
