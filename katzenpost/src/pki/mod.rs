//! PKI (§5): the CBOR certificate envelope, descriptors and documents.
//!
//! - [`cert`]: the certificate envelope (sign, verify with an injected clock).
//! - [`document`]: descriptor and document JSON, verification, signing.
//! - [`validate`]: descriptor well-formedness rules.
//! - [`voting`]: multi-signed consensus of voting authorities (threshold rule).

pub mod cert;
pub mod document;
pub(crate) mod json;
pub mod validate;
pub mod voting;

/// The Ed25519 key types the PKI API takes (re-exported so callers use the same crate version).
pub use ed25519_dalek::{SigningKey, VerifyingKey};
