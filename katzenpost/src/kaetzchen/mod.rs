//! Kaetzchen, the provider services (§7).
//!
//! A request is a forward packet whose Recipient is the service's endpoint
//! (NUL-padded, byte-exact) with a SURB attached; its user payload is the
//! plaintext request zero-padded to 50,642 bytes (build it with
//! [`crate::block::ForwardBody`]). The reply, `01 00 ‖ response` zero-padded to
//! 51,200 bytes, comes back through the SURB.
//!
//! - [`keyserver`]: the `keyserver` JSON request/response, both sides;
//! - [`reply`]: reply framing and telling SURB-ACKs from Kaetzchen replies;
//! - this module: endpoints, and [`handle_request`] for a provider.

pub mod keyserver;
pub mod reply;

use crate::block::ForwardBody;
use crate::geometry::RECIPIENT_ID_LENGTH;
use crate::pki::document::MixDescriptor;

pub use keyserver::{
    keyserver_respond, KeyserverRequest, KeyserverResponse, KeyserverStatus, KEYSERVER_VERSION,
};
pub use reply::{ack_body, classify_surb_payload, reply_body, SurbPayload};

/// Capability name of the key server.
pub const CAPABILITY_KEYSERVER: &str = "keyserver";
/// Capability name of the loop service.
pub const CAPABILITY_LOOP: &str = "loop";
/// Descriptor parameter naming a capability's endpoint.
pub const ENDPOINT_PARAMETER: &str = "endpoint";

/// Errors of the Kaetzchen layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KaetzchenError {
    /// An endpoint must be 1 to 64 bytes.
    #[error("endpoint of {len} bytes is not 1..=64")]
    BadEndpoint { len: usize },
    /// A response does not fit in one reply (at most 51,198 bytes).
    #[error("response of {len} bytes does not fit in a reply")]
    ResponseTooLong { len: usize },
    /// A decrypted SURB payload must be 51,200 bytes.
    #[error("SURB payload is {len} bytes, expected 51200")]
    BadSurbPayloadLength { len: usize },
    /// A SURB-ACK must be all zero.
    #[error("SURB-ACK payload is not all zero")]
    NonZeroAck,
    /// A Kaetzchen reply's second byte must be zero.
    #[error("Kaetzchen reply reserved byte 0x{0:02x}")]
    BadReplyReserved(u8),
    /// The first byte is neither 0x00 (ACK) nor 0x01 (Kaetzchen reply).
    #[error("unknown SURB payload kind 0x{0:02x}")]
    UnknownReplyKind(u8),
    /// The keyserver response is not valid JSON of the expected shape.
    #[error("keyserver response is malformed")]
    MalformedResponse,
    /// The keyserver answered with a version other than 0.
    #[error("keyserver response version {0}")]
    BadVersion(i64),
    /// The keyserver answered with a non-zero status.
    #[error("keyserver status {0}")]
    Status(i64),
    /// The response names a different user than the one asked for.
    #[error("keyserver response is for a different user")]
    UserMismatch,
    /// The response's public key is not base64 of 32 bytes.
    #[error("keyserver response public key is invalid")]
    BadPublicKey,
    /// A request that needs a reply came without a SURB.
    #[error("Kaetzchen request without a SURB")]
    NoSurb,
}

/// The services a provider may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Identity key look-up (§7.2).
    Keyserver,
    /// Loop: an empty reply (§7.3).
    Loop,
}

impl Service {
    /// The service for a capability name, if we know it.
    pub fn from_capability(capability: &str) -> Option<Service> {
        match capability {
            CAPABILITY_KEYSERVER => Some(Service::Keyserver),
            CAPABILITY_LOOP => Some(Service::Loop),
            _ => None,
        }
    }

    /// The capability name.
    pub fn capability(self) -> &'static str {
        match self {
            Service::Keyserver => CAPABILITY_KEYSERVER,
            Service::Loop => CAPABILITY_LOOP,
        }
    }
}

/// The endpoint a provider's descriptor advertises for `capability`
/// (`"Kaetzchen":{"keyserver":{"endpoint":"+keyserver"}}`), if any.
pub fn endpoint_of<'a>(desc: &'a MixDescriptor, capability: &str) -> Option<&'a str> {
    desc.kaetzchen
        .get(capability)?
        .get(ENDPOINT_PARAMETER)?
        .as_str()
}

/// The 64-byte RecipientID of an endpoint: the name NUL-padded.
pub fn endpoint_recipient(endpoint: &str) -> Result<[u8; RECIPIENT_ID_LENGTH], KaetzchenError> {
    let b = endpoint.as_bytes();
    if b.is_empty() || b.len() > RECIPIENT_ID_LENGTH {
        return Err(KaetzchenError::BadEndpoint { len: b.len() });
    }
    let mut r = [0u8; RECIPIENT_ID_LENGTH];
    r[..b.len()].copy_from_slice(b);
    Ok(r)
}

/// Whether a packet's RecipientID addresses `endpoint`: byte-exact after
/// NUL padding, before any user-name normalisation (§2.7).
pub fn recipient_is_endpoint(recipient: &[u8; RECIPIENT_ID_LENGTH], endpoint: &str) -> bool {
    endpoint_recipient(endpoint).is_ok_and(|e| &e == recipient)
}

/// Provider side: handles a request for `service` carried in `body` and returns
/// the 51,200-byte reply body to send through the request's SURB.
/// Without a SURB no reply is due: [`KaetzchenError::NoSurb`].
/// `lookup` maps a user name, exactly as sent, to its identity key.
pub fn handle_request<F>(
    service: Service,
    body: &ForwardBody<'_>,
    lookup: F,
) -> Result<Vec<u8>, KaetzchenError>
where
    F: FnOnce(&str) -> Option<[u8; 32]>,
{
    if body.surb.is_none() {
        return Err(KaetzchenError::NoSurb);
    }
    let response = match service {
        Service::Keyserver => keyserver_respond(body.user_payload, lookup),
        Service::Loop => Vec::new(),
    };
    reply_body(&response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn endpoints() {
        let mut desc = MixDescriptor::default();
        let mut params = BTreeMap::new();
        params.insert(
            "endpoint".to_string(),
            serde_json::Value::String("+keyserver".into()),
        );
        desc.kaetzchen.insert("keyserver".into(), params);
        assert_eq!(endpoint_of(&desc, "keyserver"), Some("+keyserver"));
        assert_eq!(endpoint_of(&desc, "loop"), None);

        let r = endpoint_recipient("+keyserver").unwrap();
        assert_eq!(&r[..10], b"+keyserver");
        assert!(r[10..].iter().all(|&b| b == 0));
        assert!(recipient_is_endpoint(&r, "+keyserver"));
        assert!(!recipient_is_endpoint(&r, "+Keyserver"));
        assert!(!recipient_is_endpoint(&r, "+keyserve"));
        assert_eq!(
            endpoint_recipient(""),
            Err(KaetzchenError::BadEndpoint { len: 0 })
        );
        assert_eq!(
            endpoint_recipient(&"x".repeat(65)),
            Err(KaetzchenError::BadEndpoint { len: 65 })
        );
        assert!(endpoint_recipient(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn services() {
        assert_eq!(
            Service::from_capability("keyserver"),
            Some(Service::Keyserver)
        );
        assert_eq!(Service::from_capability("loop"), Some(Service::Loop));
        assert_eq!(Service::from_capability("Loop"), None);
        assert_eq!(Service::Loop.capability(), "loop");
    }
}
