//! Building and signing a node's descriptor (§5.3) for an epoch.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ed25519_dalek::SigningKey;
use katzenpost::epoch::EpochClock;
use katzenpost::kaetzchen::{CAPABILITY_KEYSERVER, CAPABILITY_LOOP, ENDPOINT_PARAMETER};
use katzenpost::pki::document::{expiration_for, sign_descriptor, DescriptorError, MixDescriptor};
use katzenpost::pki::validate::descriptor_well_formed;

use crate::config::Role;

/// The Kaetzchen endpoints our providers run.
pub const KEYSERVER_ENDPOINT: &str = "+keyserver";
/// The loop service endpoint.
pub const LOOP_ENDPOINT: &str = "+loop";

/// The expiration of a certificate signed at `now_unix`: 3 periods + 10
/// minutes, as the real servers do, and never less than the profile's
/// 3-hour periods give.
pub fn cert_expiration(now_unix: u64, period_secs: u64) -> i64 {
    let secs = now_unix
        .saturating_add(period_secs.saturating_mul(3))
        .saturating_add(600);
    expiration_for(now_unix).max(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// What a descriptor says about its node, besides the mix keys.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub role: Role,
    pub link_public: [u8; 32],
    pub address: SocketAddr,
    /// A provider's extra `(transport, address)` (see
    /// [`crate::config::Params::provider_extra_transport`]).
    pub extra_transport: Option<(&'a str, &'a str)>,
}

/// The descriptor a node posts for `epoch`: signed as of the epoch's start
/// and checked well formed, so that it is the same bytes whenever, and
/// however often, it is signed with the same keys (every voting peer, every
/// retry and every restart get the same).
pub fn epoch_descriptor(
    node: NodeFacts<'_>,
    identity: &SigningKey,
    mix_keys: BTreeMap<u64, [u8; 32]>,
    clock: &EpochClock,
    epoch: u64,
) -> Result<MixDescriptor, DescriptorError> {
    let d = signed_descriptor(
        node,
        identity,
        mix_keys,
        clock.start_of(epoch).as_secs(),
        clock.period().as_secs(),
    )?;
    descriptor_well_formed(&d, epoch)?;
    Ok(d)
}

/// A node's descriptor for the mix keys given, signed by its identity key
/// with the real servers' lifetime (3 periods + 10 minutes).
pub fn signed_descriptor(
    node: NodeFacts<'_>,
    identity: &SigningKey,
    mix_keys: BTreeMap<u64, [u8; 32]>,
    now_unix: u64,
    period_secs: u64,
) -> Result<MixDescriptor, DescriptorError> {
    let NodeFacts {
        name,
        role,
        link_public,
        address,
        extra_transport,
    } = node;
    let mut kaetzchen = BTreeMap::new();
    if role == Role::Provider {
        for (cap, endpoint) in [
            (CAPABILITY_KEYSERVER, KEYSERVER_ENDPOINT),
            (CAPABILITY_LOOP, LOOP_ENDPOINT),
        ] {
            let mut params = BTreeMap::new();
            params.insert(
                ENDPOINT_PARAMETER.to_string(),
                serde_json::Value::String(endpoint.to_string()),
            );
            kaetzchen.insert(cap.to_string(), params);
        }
    }
    let mut addresses = BTreeMap::new();
    addresses.insert("tcp4".to_string(), vec![address.to_string()]);
    if let (Role::Provider, Some((transport, extra))) = (role, extra_transport) {
        addresses
            .entry(transport.to_string())
            .or_default()
            .push(extra.to_string());
    }
    let mut desc = MixDescriptor {
        name: name.to_string(),
        identity_key: identity.verifying_key().to_bytes(),
        link_key: link_public,
        mix_keys,
        addresses,
        kaetzchen,
        layer: if role == Role::Provider { 255 } else { 0 },
        load_weight: 0,
        signed: Vec::new(),
    };
    desc.signed = sign_descriptor(&desc, identity, cert_expiration(now_unix, period_secs))?;
    Ok(desc)
}
