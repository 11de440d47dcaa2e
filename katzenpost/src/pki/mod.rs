//! PKI (§5): the CBOR certificate envelope, descriptors and documents.

pub mod cert;
pub mod document;
