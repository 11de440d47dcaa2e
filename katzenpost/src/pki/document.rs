//! Documents and descriptors (§5.3, §5.4): the parsed forms.

use std::collections::BTreeMap;

/// A node's descriptor, parsed (§5.3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MixDescriptor {
    pub name: String,
    /// Ed25519 identity public key; also the Sphinx node id.
    pub identity_key: [u8; 32],
    /// X25519 link (wire handshake) public key.
    pub link_key: [u8; 32],
    /// X25519 Sphinx mix keys by epoch.
    pub mix_keys: BTreeMap<u64, [u8; 32]>,
    /// Transport name to `host:port` list.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// Kaetzchen capability to parameters (with `endpoint`).
    pub kaetzchen: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// 0 for mixes (their real layer is their index in the topology), 255 for providers.
    pub layer: u8,
    pub load_weight: u8,
}

/// A network consensus document, parsed (§5.3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document {
    pub epoch: u64,
    pub send_rate_per_minute: u64,
    pub mu: f64,
    pub mu_max_delay: u64,
    pub lambda_p: f64,
    pub lambda_p_max_delay: u64,
    pub lambda_l: f64,
    pub lambda_l_max_delay: u64,
    pub lambda_d: f64,
    pub lambda_d_max_delay: u64,
    pub lambda_m: f64,
    pub lambda_m_max_delay: u64,
    /// One entry per mix layer, layer 0 first.
    pub topology: Vec<Vec<MixDescriptor>>,
    pub providers: Vec<MixDescriptor>,
    pub shared_random_commit: Vec<u8>,
    pub shared_random_value: Vec<u8>,
}
