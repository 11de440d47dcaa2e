//! PKI (§5): the CBOR certificate envelope, descriptors and documents.
//!
//! - [`cert`]: the certificate envelope (sign, verify with an injected clock).
//! - [`document`]: descriptor and document JSON, verification, signing.
//! - [`validate`]: descriptor well-formedness rules.

pub mod cert;
pub mod document;
mod json;
pub mod validate;
