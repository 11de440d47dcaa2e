//! The network description `testnet up` writes into its directory
//! (`network.toml`) and every role reads: parameters, the authority, the
//! nodes with their roles and addresses. Private keys live in files beside
//! it (`<name>/identity.private`, `<name>/link.private`, 0600).

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use katzenpost::pki::document::Parameters;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

/// Errors reading or writing the network description.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The document's parameters plus the testnet's own knobs.
///
/// The document's parameters are `[params]` keys of their own (`mu`,
/// `lambda_p`, ..., `send_rate_per_minute`: packets per minute a provider
/// accepts from one client, 0 = unlimited), from the one list in
/// [`Parameters`]. (serde cannot deny unknown keys next to a flattened
/// struct, so a misspelt key here is ignored.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// Epoch period in seconds (3 hours in the real profile).
    pub epoch_period_secs: u64,
    /// What the documents carry.
    #[serde(flatten)]
    pub document: Parameters,
    /// Token-bucket capacity of the provider's rate limiter (at least 1).
    pub send_burst: u32,
    /// Mix layers.
    pub layers: usize,
    /// Providers also advertise this `(transport, "host:port")` in their
    /// descriptors, to test clients' transport preference against real
    /// connections; `None` normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_extra_transport: Option<(String, String)>,
}

impl Params {
    /// Fast parameters for the demo and tests: tens of milliseconds per hop,
    /// a few packets per second, epochs of minutes.
    pub fn demo() -> Self {
        Self {
            epoch_period_secs: 600,
            document: Parameters {
                mu: 1.0 / 20.0,
                mu_max_delay: 100,
                lambda_p: 1.0 / 250.0,
                lambda_p_max_delay: 1_000,
                lambda_l: 1.0 / 1_000.0,
                lambda_l_max_delay: 5_000,
                lambda_d: 1.0 / 1_000.0,
                lambda_d_max_delay: 5_000,
                lambda_m: 1.0 / 1_000.0,
                lambda_m_max_delay: 5_000,
                send_rate_per_minute: 6_000,
            },
            send_burst: 100,
            layers: 3,
            provider_extra_transport: None,
        }
    }
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Mix,
    Provider,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    pub name: String,
    pub role: Role,
    pub address: SocketAddr,
    /// Ed25519 identity public key, hex.
    pub identity_public: String,
    /// A provider's HTTP registration endpoint (`POST /registration`), if
    /// it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<SocketAddr>,
}

/// The authority.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthoritySpec {
    pub address: SocketAddr,
    /// Ed25519 public key, hex.
    pub identity_public: String,
}

/// One voting authority peer (`auth1`, `auth2`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VotingPeerSpec {
    pub name: String,
    pub address: SocketAddr,
    /// Ed25519 identity public key, hex.
    pub identity_public: String,
    /// X25519 link public key, hex.
    pub link_public: String,
}

/// A node outside the testnet (another implementation's mix or provider)
/// that the authorities admit: `[[external]]` in `network.toml`. It posts
/// its own descriptor; the testnet only whitelists its identity key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalNodeSpec {
    /// A provider's name (its descriptor must carry it); a label for a mix.
    pub name: String,
    pub role: Role,
    /// Ed25519 identity public key, hex.
    pub identity_public: String,
}

impl ExternalNodeSpec {
    /// The identity key.
    pub fn identity(&self) -> Result<[u8; 32], String> {
        hex::decode(&self.identity_public)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| {
                format!(
                    "external node {:?}: identity_public must be 64 hex digits",
                    self.name
                )
            })
    }
}

/// Fewest voting authority peers a voting network runs.
pub const MIN_VOTING_PEERS: usize = 3;

/// `network.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    pub params: Params,
    /// The nonvoting authority (unused when `voting` is set).
    pub authority: AuthoritySpec,
    /// Voting authority peers; empty for a nonvoting network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voting: Vec<VotingPeerSpec>,
    #[serde(rename = "node")]
    pub nodes: Vec<NodeSpec>,
    /// Nodes run elsewhere that the authorities admit by identity key.
    #[serde(default, rename = "external", skip_serializing_if = "Vec::is_empty")]
    pub external: Vec<ExternalNodeSpec>,
}

impl NetworkSpec {
    /// Reads `network.toml` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = dir.join("network.toml");
        let text = fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        let spec: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        spec.validate()
            .map_err(|reason| ConfigError::Invalid { path, reason })?;
        Ok(spec)
    }

    /// Writes `network.toml` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = dir.join("network.toml");
        let text = toml::to_string_pretty(self).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&path, text).map_err(|source| ConfigError::Io { path, source })
    }

    fn validate(&self) -> Result<(), String> {
        if self.params.layers == 0 {
            return Err("params.layers must be at least 1".into());
        }
        if self.params.epoch_period_secs < 10 {
            return Err("params.epoch_period_secs must be at least 10".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for n in &self.nodes {
            if n.name.is_empty() || n.name.len() > 32 || !names.insert(n.name.as_str()) {
                return Err(format!(
                    "node name {:?} is empty, longer than 32 bytes or repeated",
                    n.name
                ));
            }
        }
        for x in &self.external {
            x.identity()?;
            if x.name.is_empty() || x.name.len() > 32 || !names.insert(x.name.as_str()) {
                return Err(format!(
                    "external node name {:?} is empty, longer than 32 bytes or repeated",
                    x.name
                ));
            }
        }
        if !self.nodes.iter().any(|n| n.role == Role::Provider) {
            return Err("at least one provider is needed".into());
        }
        if !self.voting.is_empty() && self.voting.len() < MIN_VOTING_PEERS {
            return Err(format!(
                "{} voting authorities: at least {MIN_VOTING_PEERS} are needed",
                self.voting.len()
            ));
        }
        let mixes = self.nodes.iter().filter(|n| n.role == Role::Mix).count();
        if mixes < self.params.layers {
            return Err(format!(
                "{mixes} mixes cannot fill {} layers",
                self.params.layers
            ));
        }
        Ok(())
    }

    /// Whether the network runs voting authorities.
    pub fn is_voting(&self) -> bool {
        !self.voting.is_empty()
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|n| n.name == name)
    }
}

/// mailproxyd's authority section for the network in `spec`, named `name`:
/// `[NonvotingAuthority.<name>]`, or for a voting network
/// `[VotingAuthority.<name>]` with one `Peers` entry per peer. Accounts name
/// it with `Authority = "<name>"` (or `VotingAuthority = "<name>"`).
pub fn authority_block(spec: &NetworkSpec, name: &str) -> String {
    if !spec.is_voting() {
        return format!(
            "[NonvotingAuthority.{name}]\n  Address = \"{}\"\n  PublicKey = \"{}\"\n",
            spec.authority.address, spec.authority.identity_public
        );
    }
    let mut s = format!("[VotingAuthority.{name}]\n  Peers = [\n");
    for p in &spec.voting {
        s += &format!(
            "    {{ IdentityPublicKey = \"{}\", LinkPublicKey = \"{}\", Addresses = [ \"{}\" ] }},\n",
            p.identity_public, p.link_public, p.address
        );
    }
    s += "  ]\n";
    s
}

/// Writes a 32-byte private key file with mode 0600 (refusing to overwrite).
pub fn write_private_key(path: &Path, key: &[u8; 32]) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(hex::encode(key).as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Reads a private key file written by [`write_private_key`].
pub fn read_private_key(path: &Path) -> Result<[u8; 32], ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    hex::decode(text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| ConfigError::Invalid {
            path: path.to_path_buf(),
            reason: "not a hex 32-byte key".into(),
        })
}

/// Reads the key at `path`, or generates and writes one.
pub fn load_or_generate_key<R: RngCore + CryptoRng>(
    rng: &mut R,
    path: &Path,
) -> Result<[u8; 32], ConfigError> {
    if path.exists() {
        return read_private_key(path);
    }
    let mut k = [0u8; 32];
    rng.fill_bytes(&mut k);
    write_private_key(path, &k)?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> NetworkSpec {
        let node = |name: &str, role, port| NodeSpec {
            name: name.into(),
            role,
            address: format!("127.0.0.1:{port}").parse().unwrap(),
            identity_public: "00".repeat(32),
            registration: None,
        };
        NetworkSpec {
            params: Params::demo(),
            authority: AuthoritySpec {
                address: "127.0.0.1:1".parse().unwrap(),
                identity_public: "11".repeat(32),
            },
            nodes: vec![
                node("mix1", Role::Mix, 2),
                node("mix2", Role::Mix, 3),
                node("mix3", Role::Mix, 4),
                node("provider1", Role::Provider, 5),
            ],
            voting: Vec::new(),
            external: Vec::new(),
        }
    }

    #[test]
    fn external_nodes_round_trip_and_need_a_key() {
        let d = tempfile::tempdir().unwrap();
        let mut s = spec();
        s.external.push(ExternalNodeSpec {
            name: "gomix".into(),
            role: Role::Mix,
            identity_public: "ab".repeat(32),
        });
        s.save(d.path()).unwrap();
        let text = std::fs::read_to_string(d.path().join("network.toml")).unwrap();
        assert!(text.contains("[[external]]"), "{text}");
        let back = NetworkSpec::load(d.path()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.external[0].identity(), Ok([0xab; 32]));
        for bad_key in ["ab", "zz".repeat(32).as_str()] {
            let mut bad = s.clone();
            bad.external[0].identity_public = bad_key.into();
            bad.save(d.path()).unwrap();
            assert!(NetworkSpec::load(d.path()).is_err(), "{bad_key}");
        }
        let mut clash = s;
        clash.external[0].name = "mix1".into();
        clash.save(d.path()).unwrap();
        assert!(NetworkSpec::load(d.path()).is_err());
    }

    #[test]
    fn network_spec_round_trips_and_validates() {
        let d = tempfile::tempdir().unwrap();
        let s = spec();
        s.save(d.path()).unwrap();
        assert_eq!(NetworkSpec::load(d.path()).unwrap(), s);
        let mut bad = s.clone();
        bad.nodes.retain(|n| n.role == Role::Mix);
        bad.save(d.path()).unwrap();
        assert!(matches!(
            NetworkSpec::load(d.path()),
            Err(ConfigError::Invalid { .. })
        ));
        let mut dup = s;
        dup.nodes[1].name = "mix1".into();
        dup.save(d.path()).unwrap();
        assert!(NetworkSpec::load(d.path())
            .unwrap_err()
            .to_string()
            .contains("repeated"));
    }

    #[test]
    fn voting_peers_round_trip_and_need_three() {
        let d = tempfile::tempdir().unwrap();
        let peer = |i: u8| VotingPeerSpec {
            name: format!("auth{i}"),
            address: format!("127.0.0.1:{}", 10 + u16::from(i)).parse().unwrap(),
            identity_public: hex::encode([i; 32]),
            link_public: hex::encode([i + 100; 32]),
        };
        let mut s = spec();
        s.voting = (1..=3).map(peer).collect();
        s.save(d.path()).unwrap();
        let loaded = NetworkSpec::load(d.path()).unwrap();
        assert!(loaded.is_voting());
        assert_eq!(loaded, s);
        let block = authority_block(&loaded, "v");
        assert_eq!(block.matches("IdentityPublicKey").count(), 3);
        assert!(block.contains(&hex::encode([101u8; 32])), "{block}");
        s.voting.pop();
        s.save(d.path()).unwrap();
        let e = NetworkSpec::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("at least 3"), "{e}");
        // A nonvoting network's file has no voting entries at all.
        let nonvoting = spec();
        nonvoting.save(d.path()).unwrap();
        let text = std::fs::read_to_string(d.path().join("network.toml")).unwrap();
        assert!(!text.contains("voting"), "{text}");
        assert!(authority_block(&nonvoting, "t").starts_with("[NonvotingAuthority.t]\n"));
    }

    #[test]
    fn keys_are_written_0600_once() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("n/identity.private");
        let k = load_or_generate_key(&mut rand::rngs::OsRng, &p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_generate_key(&mut rand::rngs::OsRng, &p).unwrap(), k);
        fs::write(&p, "xyz").unwrap();
        assert!(read_private_key(&p).is_err());
    }
}
