//! Peer authentication (§4.5, §4.7): the AuthenticateMessage payload, the
//! authenticator hook, ready-made checkers, and the Ed25519 → X25519 key
//! conversions.

use std::collections::{HashMap, HashSet};

use subtle::ConstantTimeEq;

use crate::pki::document::MixDescriptor;

/// Length of an AuthenticateMessage: `ad_len ‖ AD (padded to 255) ‖ unix_time u32be`.
pub const AUTH_MESSAGE_LEN: usize = 1 + MAX_ADDITIONAL_DATA_LEN + 4;
/// The largest additional data a peer can send.
pub const MAX_ADDITIONAL_DATA_LEN: usize = 255;

/// The decoded handshake payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticateMessage {
    /// The peer's additional data (user name, identity key, or empty).
    pub additional_data: Vec<u8>,
    /// The sender's Unix time (the initiator sends 0).
    pub unix_time: u32,
}

impl AuthenticateMessage {
    /// Encodes to the fixed 260 bytes. `additional_data` must be ≤ 255 bytes
    /// (checked when a handshake is configured).
    pub fn encode(&self) -> [u8; AUTH_MESSAGE_LEN] {
        let mut out = [0u8; AUTH_MESSAGE_LEN];
        let n = self.additional_data.len().min(MAX_ADDITIONAL_DATA_LEN);
        out[0] = n as u8;
        out[1..1 + n].copy_from_slice(&self.additional_data[..n]);
        out[AUTH_MESSAGE_LEN - 4..].copy_from_slice(&self.unix_time.to_be_bytes());
        out
    }

    /// Decodes 260 bytes; the padding is not checked (as the reference).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != AUTH_MESSAGE_LEN {
            return None;
        }
        let n = bytes[0] as usize;
        let t = bytes[AUTH_MESSAGE_LEN - 4..].try_into().ok()?;
        Some(AuthenticateMessage {
            additional_data: bytes[1..1 + n].to_vec(),
            unix_time: u32::from_be_bytes(t),
        })
    }
}

/// What the handshake learned about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer's additional data from its AuthenticateMessage.
    pub additional_data: Vec<u8>,
    /// The peer's Noise static X25519 public key.
    pub static_key: [u8; 32],
}

/// Why a peer was rejected. Names the failed check; carries no key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The peer's additional data is not the expected identity key.
    #[error("peer identity key (additional data) does not match the expected key")]
    WrongIdentityKey,
    /// The peer's identity key differs from the configured ProviderKeyPin.
    #[error("peer identity key does not match the ProviderKeyPin")]
    PinMismatch,
    /// The peer's Noise static key is not the expected link key.
    #[error("peer link key (Noise static key) does not match the expected key")]
    WrongLinkKey,
    /// The peer's additional data names nobody this side accepts.
    #[error("peer is not known (additional data names no accepted peer)")]
    UnknownPeer,
    /// The additional data has the wrong length or form.
    #[error("peer additional data is malformed")]
    MalformedAdditionalData,
    /// A policy of the caller rejected the peer.
    #[error("peer rejected: {0}")]
    Rejected(String),
}

/// Decides whether a peer may complete the handshake, from its additional
/// data and its static key. Implemented for closures, so daemon and testnet
/// can plug in their own policy.
pub trait PeerAuthenticator: Send + Sync {
    /// Accepts or rejects the peer.
    fn authenticate(&self, peer: &PeerCredentials) -> Result<(), AuthError>;
}

impl<F> PeerAuthenticator for F
where
    F: Fn(&PeerCredentials) -> Result<(), AuthError> + Send + Sync,
{
    fn authenticate(&self, peer: &PeerCredentials) -> Result<(), AuthError> {
        self(peer)
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Expects one specific peer: AD = its identity key, static key = its link
/// key, and optionally identity key = a pinned key. Use it for client →
/// provider (from the provider's descriptor and the ProviderKeyPin), node →
/// node, and, with [`ExpectPeer::authority`], node or client → authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectPeer {
    /// Expected additional data (the peer's Ed25519 identity key).
    pub identity_key: [u8; 32],
    /// Expected Noise static key (the peer's X25519 link key).
    pub link_key: [u8; 32],
    /// If set, the identity key must also equal this pin.
    pub pin: Option<[u8; 32]>,
}

impl ExpectPeer {
    /// Expect this identity key and link key.
    pub fn new(identity_key: [u8; 32], link_key: [u8; 32]) -> Self {
        ExpectPeer {
            identity_key,
            link_key,
            pin: None,
        }
    }

    /// Expect the node that `descriptor` describes.
    pub fn from_descriptor(descriptor: &MixDescriptor) -> Self {
        Self::new(descriptor.identity_key, descriptor.link_key)
    }

    /// Also require the identity key to equal `pin` (mailproxy's ProviderKeyPin).
    pub fn with_pin(mut self, pin: Option<[u8; 32]>) -> Self {
        self.pin = pin;
        self
    }

    /// Expect a nonvoting authority with this Ed25519 public key: AD = the key,
    /// static key = its Montgomery form.
    pub fn authority(ed25519_public: &[u8; 32]) -> Result<Self, KeyConversionError> {
        Ok(Self::new(
            *ed25519_public,
            ed25519_public_to_x25519(ed25519_public)?,
        ))
    }
}

impl PeerAuthenticator for ExpectPeer {
    fn authenticate(&self, peer: &PeerCredentials) -> Result<(), AuthError> {
        if let Some(pin) = &self.pin {
            if !ct_eq(&peer.additional_data, pin) {
                return Err(AuthError::PinMismatch);
            }
        }
        if !ct_eq(&peer.additional_data, &self.identity_key) {
            return Err(AuthError::WrongIdentityKey);
        }
        if !ct_eq(&peer.static_key, &self.link_key) {
            return Err(AuthError::WrongLinkKey);
        }
        Ok(())
    }
}

/// Accepts any of a set of peers: AD must be one of the identity keys, and the
/// static key its link key (node → node links of a layer, a provider's set of
/// accepted mixes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownPeers {
    /// Identity key → link key.
    pub peers: HashMap<[u8; 32], [u8; 32]>,
}

impl KnownPeers {
    /// From (identity key, link key) pairs.
    pub fn new(pairs: impl IntoIterator<Item = ([u8; 32], [u8; 32])>) -> Self {
        KnownPeers {
            peers: pairs.into_iter().collect(),
        }
    }

    /// From descriptors.
    pub fn from_descriptors<'a>(descs: impl IntoIterator<Item = &'a MixDescriptor>) -> Self {
        Self::new(descs.into_iter().map(|d| (d.identity_key, d.link_key)))
    }
}

impl PeerAuthenticator for KnownPeers {
    fn authenticate(&self, peer: &PeerCredentials) -> Result<(), AuthError> {
        let id: [u8; 32] = peer
            .additional_data
            .as_slice()
            .try_into()
            .map_err(|_| AuthError::MalformedAdditionalData)?;
        let link = self.peers.get(&id).ok_or(AuthError::UnknownPeer)?;
        if !ct_eq(link, &peer.static_key) {
            return Err(AuthError::WrongLinkKey);
        }
        Ok(())
    }
}

/// The nonvoting authority's policy: an empty AD is an anonymous client (any
/// static key); otherwise the AD must be a whitelisted 32-byte Ed25519 node
/// identity key and the static key its Montgomery form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityPolicy {
    /// Identity keys of the nodes allowed to post descriptors.
    pub nodes: HashSet<[u8; 32]>,
}

impl PeerAuthenticator for AuthorityPolicy {
    fn authenticate(&self, peer: &PeerCredentials) -> Result<(), AuthError> {
        if peer.additional_data.is_empty() {
            return Ok(());
        }
        let id: [u8; 32] = peer
            .additional_data
            .as_slice()
            .try_into()
            .map_err(|_| AuthError::MalformedAdditionalData)?;
        if !self.nodes.contains(&id) {
            return Err(AuthError::UnknownPeer);
        }
        let link = ed25519_public_to_x25519(&id).map_err(|_| AuthError::MalformedAdditionalData)?;
        if !ct_eq(&link, &peer.static_key) {
            return Err(AuthError::WrongLinkKey);
        }
        Ok(())
    }
}

/// Accepts every peer (tests, and the authority side of anonymous fetches).
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAny;

impl PeerAuthenticator for AcceptAny {
    fn authenticate(&self, _peer: &PeerCredentials) -> Result<(), AuthError> {
        Ok(())
    }
}

/// An Ed25519 public key that is not a valid curve point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid Ed25519 public key")]
pub struct KeyConversionError;

/// Ed25519 public key → X25519 public key (u = (1 + y)/(1 − y)).
pub fn ed25519_public_to_x25519(public: &[u8; 32]) -> Result<[u8; 32], KeyConversionError> {
    let vk = ed25519_dalek::VerifyingKey::from_bytes(public).map_err(|_| KeyConversionError)?;
    Ok(vk.to_montgomery().to_bytes())
}

/// Ed25519 secret seed → X25519 private key (SHA-512(seed)[0..32); X25519
/// clamps it).
pub fn ed25519_secret_to_x25519(seed: &[u8; 32]) -> zeroize::Zeroizing<[u8; 32]> {
    let sk = ed25519_dalek::SigningKey::from_bytes(seed);
    zeroize::Zeroizing::new(sk.to_scalar_bytes())
}

/// The X25519 public key of a private key.
pub fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    // Fixed-base multiplication (precomputed table): several times faster
    // than the ladder, same result as x25519(private, 9).
    let secret = x25519_dalek::StaticSecret::from(*private);
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_message_round_trip() {
        let m = AuthenticateMessage {
            additional_data: b"alice".to_vec(),
            unix_time: 0x01020304,
        };
        let enc = m.encode();
        assert_eq!(enc.len(), 260);
        assert_eq!(enc[0], 5);
        assert_eq!(&enc[1..6], b"alice");
        assert!(enc[6..256].iter().all(|&b| b == 0));
        assert_eq!(&enc[256..], &[1, 2, 3, 4]);
        assert_eq!(AuthenticateMessage::decode(&enc), Some(m));
        assert_eq!(AuthenticateMessage::decode(&enc[..259]), None);
        let full = AuthenticateMessage {
            additional_data: vec![9; 255],
            unix_time: 1,
        };
        assert_eq!(AuthenticateMessage::decode(&full.encode()), Some(full));
    }

    #[test]
    fn fixed_base_public_key_matches_ladder() {
        for k in [[0u8; 32], [1; 32], [0xff; 32], [0x5a; 32]] {
            assert_eq!(
                x25519_public(&k),
                x25519_dalek::x25519(k, x25519_dalek::X25519_BASEPOINT_BYTES)
            );
        }
    }

    #[test]
    fn ed25519_conversion_agrees_on_both_sides() {
        let seed = [42u8; 32];
        let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
        let public = sk.verifying_key().to_bytes();
        let x_priv = ed25519_secret_to_x25519(&seed);
        assert_eq!(
            x25519_public(&x_priv),
            ed25519_public_to_x25519(&public).unwrap()
        );
    }

    #[test]
    fn expect_peer_names_failed_check() {
        let chk = ExpectPeer::new([1; 32], [2; 32]);
        let ok = PeerCredentials {
            additional_data: vec![1; 32],
            static_key: [2; 32],
        };
        assert_eq!(chk.authenticate(&ok), Ok(()));
        let bad_id = PeerCredentials {
            additional_data: vec![3; 32],
            static_key: [2; 32],
        };
        assert_eq!(chk.authenticate(&bad_id), Err(AuthError::WrongIdentityKey));
        let bad_link = PeerCredentials {
            additional_data: vec![1; 32],
            static_key: [3; 32],
        };
        assert_eq!(chk.authenticate(&bad_link), Err(AuthError::WrongLinkKey));
        let pinned = chk.clone().with_pin(Some([9; 32]));
        assert_eq!(pinned.authenticate(&ok), Err(AuthError::PinMismatch));
        assert_eq!(chk.with_pin(Some([1; 32])).authenticate(&ok), Ok(()));
    }

    #[test]
    fn known_peers_and_authority_policy() {
        let kp = KnownPeers::new([([1; 32], [2; 32])]);
        let ok = PeerCredentials {
            additional_data: vec![1; 32],
            static_key: [2; 32],
        };
        assert_eq!(kp.authenticate(&ok), Ok(()));
        let short = PeerCredentials {
            additional_data: vec![1; 31],
            static_key: [2; 32],
        };
        assert_eq!(
            kp.authenticate(&short),
            Err(AuthError::MalformedAdditionalData)
        );
        let unknown = PeerCredentials {
            additional_data: vec![5; 32],
            static_key: [2; 32],
        };
        assert_eq!(kp.authenticate(&unknown), Err(AuthError::UnknownPeer));

        let sk = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let id = sk.verifying_key().to_bytes();
        let policy = AuthorityPolicy {
            nodes: [id].into_iter().collect(),
        };
        let anon = PeerCredentials {
            additional_data: vec![],
            static_key: [4; 32],
        };
        assert_eq!(policy.authenticate(&anon), Ok(()));
        let node = PeerCredentials {
            additional_data: id.to_vec(),
            static_key: x25519_public(&ed25519_secret_to_x25519(&[7; 32])),
        };
        assert_eq!(policy.authenticate(&node), Ok(()));
        let wrong = PeerCredentials {
            additional_data: id.to_vec(),
            static_key: [4; 32],
        };
        assert_eq!(policy.authenticate(&wrong), Err(AuthError::WrongLinkKey));
        let stranger = PeerCredentials {
            additional_data: vec![8; 32],
            static_key: [4; 32],
        };
        assert_eq!(policy.authenticate(&stranger), Err(AuthError::UnknownPeer));
    }
}
