//! A whole network in one process: `init` writes keys and `network.toml`
//! into a directory; [`Network::start`] runs the authority (or the voting
//! authority peers and their committee) and every node from it; nodes can
//! be stopped and restarted (fault injection).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rand::rngs::OsRng;
use tokio::task::JoinHandle;

use crate::authority::AuthorityState;
use crate::authority_server::Authority;
use crate::config::{
    load_or_generate_key, AuthoritySpec, ConfigError, NetworkSpec, NodeSpec, Params, Role,
    VotingPeerSpec, MIN_VOTING_PEERS,
};
use crate::node::{AuthorityEndpoint, Node, NodeConfig, NodeError, NodeHandle};
use crate::unix_now;
use crate::voting_server::Committee;

/// Errors of the launcher.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{0}")]
    Other(String),
}

/// The shape of a network to create.
#[derive(Debug, Clone)]
pub struct Shape {
    pub params: Params,
    pub mixes_per_layer: usize,
    pub providers: Vec<String>,
    /// Voting authority peers to run (0: one nonvoting authority; else at
    /// least [`MIN_VOTING_PEERS`]).
    pub voting_authorities: usize,
    /// Providers serve HTTP registration (`POST /registration`).
    pub registration: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            params: Params::demo(),
            mixes_per_layer: 2,
            providers: vec!["provider1".into(), "provider2".into()],
            voting_authorities: 0,
            registration: false,
        }
    }
}

fn free_port() -> Result<SocketAddr, NetworkError> {
    crate::ports::reserve().map_err(|e| NetworkError::Other(format!("no free port: {e}")))
}

fn signing_key(dir: &Path, name: &str) -> Result<SigningKey, NetworkError> {
    Ok(SigningKey::from_bytes(&load_or_generate_key(
        &mut OsRng,
        &dir.join(name).join("identity.private"),
    )?))
}

/// How long to wait before starting a network with epochs of `period` so
/// that it does not start in the last 90 seconds of an epoch (`None`: start
/// now). A network started just before a boundary can publish the next
/// epoch's document before every node has uploaded its descriptor for it, and
/// that epoch then runs without the node. Test harnesses sleep for this first.
/// Networks with epochs under three minutes (tests of epoch changes) get no
/// wait: every moment of theirs is near a boundary.
pub fn wait_before_start(period: std::time::Duration) -> Option<std::time::Duration> {
    use std::time::Duration;
    if period < Duration::from_secs(180) {
        return None;
    }
    let till = katzenpost::epoch::EpochClock::new(period).now().till;
    (till < Duration::from_secs(90)).then(|| till + Duration::from_secs(2))
}

/// Writes a new network into `dir` (keys and `network.toml`), or returns the
/// one already there.
pub fn init(dir: &Path, shape: &Shape) -> Result<NetworkSpec, NetworkError> {
    if dir.join("network.toml").exists() {
        return Ok(NetworkSpec::load(dir)?);
    }
    if shape.voting_authorities != 0 && shape.voting_authorities < MIN_VOTING_PEERS {
        return Err(NetworkError::Other(format!(
            "{} voting authorities: at least {MIN_VOTING_PEERS} are needed",
            shape.voting_authorities
        )));
    }
    std::fs::create_dir_all(dir).map_err(|source| ConfigError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let auth = signing_key(dir, "authority")?;
    let mut nodes = Vec::new();
    let mut add = |name: String, role| -> Result<(), NetworkError> {
        let key = signing_key(dir, &name)?;
        load_or_generate_key(&mut OsRng, &dir.join(&name).join("link.private"))?;
        nodes.push(NodeSpec {
            name,
            role,
            address: free_port()?,
            identity_public: hex::encode(key.verifying_key().to_bytes()),
            registration: match role {
                Role::Provider if shape.registration => Some(free_port()?),
                _ => None,
            },
        });
        Ok(())
    };
    for l in 0..shape.params.layers {
        for i in 0..shape.mixes_per_layer {
            add(
                format!("mix{}", l * shape.mixes_per_layer + i + 1),
                Role::Mix,
            )?;
        }
    }
    for p in &shape.providers {
        add(p.clone(), Role::Provider)?;
    }
    let mut voting = Vec::new();
    for i in 1..=shape.voting_authorities {
        let name = format!("auth{i}");
        let key = signing_key(dir, &name)?;
        let link = load_or_generate_key(&mut OsRng, &dir.join(&name).join("link.private"))?;
        voting.push(VotingPeerSpec {
            name,
            address: free_port()?,
            identity_public: hex::encode(key.verifying_key().to_bytes()),
            link_public: hex::encode(katzenpost::sphinx::public_key(&link)),
        });
    }
    let spec = NetworkSpec {
        params: shape.params.clone(),
        authority: AuthoritySpec {
            address: free_port()?,
            identity_public: hex::encode(auth.verifying_key().to_bytes()),
        },
        voting,
        nodes,
        external: Vec::new(),
    };
    spec.save(dir)?;
    if shape.registration {
        crate::registration::ensure_tls(dir).map_err(NetworkError::Other)?;
    }
    std::fs::write(
        dir.join("authority.public"),
        format!("{}\n", spec.authority.identity_public),
    )
    .map_err(|source| ConfigError::Io {
        path: dir.join("authority.public"),
        source,
    })?;
    Ok(spec)
}

/// A running network.
pub struct Network {
    pub dir: PathBuf,
    pub spec: NetworkSpec,
    /// The nonvoting authority, or the first voting peer.
    pub authority: Arc<Authority>,
    /// Every authority server: the nonvoting one, or each voting peer in
    /// `spec.voting` order.
    pub authorities: Vec<Arc<Authority>>,
    authority_tasks: Vec<JoinHandle<()>>,
    authority_stop: tokio::sync::watch::Sender<bool>,
    pub nodes: BTreeMap<String, NodeHandle>,
    pub rate_limit: bool,
}

fn parse_key(hex_key: &str, what: &str) -> Result<[u8; 32], NetworkError> {
    hex::decode(hex_key)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| NetworkError::Other(format!("bad {what} key in network.toml")))
}

/// Binds an authority's listener.
async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, NetworkError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| NetworkError::Other(format!("authority listen on {addr}: {e}")))
}

impl Network {
    /// The way tests and harnesses bring a network up: waits out the end of
    /// an epoch ([`wait_before_start`]), writes a network of `shape` into
    /// `dir` (or reuses the one there), starts it and waits up to `ready`
    /// until every node holds the current document.
    pub async fn launch(
        dir: &Path,
        shape: &Shape,
        rate_limit: bool,
        ready: std::time::Duration,
    ) -> Result<Network, NetworkError> {
        let period = std::time::Duration::from_secs(shape.params.epoch_period_secs);
        if let Some(d) = wait_before_start(period) {
            tokio::time::sleep(d).await;
        }
        init(dir, shape)?;
        let net = Network::start(dir, rate_limit).await?;
        net.wait_ready(ready).await?;
        Ok(net)
    }

    /// Starts the authority and every node described in `dir`.
    pub async fn start(dir: &Path, rate_limit: bool) -> Result<Network, NetworkError> {
        let spec = NetworkSpec::load(dir)?;
        let auth_key = signing_key(dir, "authority")?;
        let mut mixes = BTreeSet::new();
        let mut providers = BTreeMap::new();
        for n in &spec.nodes {
            let id = signing_key(dir, &n.name)?.verifying_key().to_bytes();
            match n.role {
                Role::Mix => {
                    mixes.insert(id);
                }
                Role::Provider => {
                    providers.insert(id, n.name.clone());
                }
            }
        }
        let mut external_mixes = BTreeSet::new();
        let mut external_providers = BTreeMap::new();
        for x in &spec.external {
            let id = x.identity().map_err(NetworkError::Other)?;
            match x.role {
                Role::Mix => {
                    external_mixes.insert(id);
                }
                Role::Provider => {
                    external_providers.insert(id, x.name.clone());
                }
            }
        }
        let whitelist: HashSet<[u8; 32]> = mixes
            .iter()
            .chain(providers.keys())
            .chain(external_mixes.iter())
            .chain(external_providers.keys())
            .copied()
            .collect();
        let now = unix_now();
        let state = |key: &SigningKey| {
            let mut s = AuthorityState::new(
                key.clone(),
                spec.params.clone(),
                mixes.clone(),
                providers.clone(),
                now,
            );
            s.admit_external(external_mixes.clone(), external_providers.clone());
            s
        };
        let (authority_stop, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut authorities = Vec::new();
        let mut authority_tasks = Vec::new();
        if spec.is_voting() {
            for peer in &spec.voting {
                let key = signing_key(dir, &peer.name)?;
                let link =
                    crate::config::read_private_key(&dir.join(&peer.name).join("link.private"))?;
                let a = Authority::voting_peer(key.clone(), link, state(&key), whitelist.clone());
                let listener = listen(peer.address).await?;
                authority_tasks.push(tokio::spawn(a.clone().serve(listener, stopped())));
                authorities.push(a);
            }
            let committee = Committee::new(authorities.clone());
            authority_tasks.push(tokio::spawn(committee.run(stopped())));
        } else {
            let a = Authority::new(auth_key.clone(), state(&auth_key), whitelist);
            let listener = listen(spec.authority.address).await?;
            authority_tasks.push(tokio::spawn(a.clone().serve(listener, stopped())));
            authorities.push(a);
        }
        let mut net = Network {
            dir: dir.to_path_buf(),
            spec,
            authority: authorities[0].clone(),
            authorities,
            authority_tasks,
            authority_stop,
            nodes: BTreeMap::new(),
            rate_limit,
        };
        let names: Vec<String> = net.spec.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            net.start_node(&name).await?;
        }
        Ok(net)
    }

    /// The configuration of node `name`.
    pub fn node_config(&self, name: &str) -> Result<NodeConfig, NetworkError> {
        let n = self
            .spec
            .node(name)
            .ok_or_else(|| NetworkError::Other(format!("no node {name}")))?;
        let authorities = self.authority_endpoints()?;
        Ok(NodeConfig {
            name: n.name.clone(),
            role: n.role,
            identity: signing_key(&self.dir, name)?,
            link_private: crate::config::read_private_key(
                &self.dir.join(name).join("link.private"),
            )?,
            address: n.address,
            registration: n.registration,
            dir: self.dir.join(name),
            params: self.spec.params.clone(),
            authorities,
            rate_limit: self.rate_limit,
        })
    }

    /// Where the authorities listen and the keys they prove: the nonvoting
    /// authority, or every voting peer.
    pub fn authority_endpoints(&self) -> Result<Vec<AuthorityEndpoint>, NetworkError> {
        if self.spec.is_voting() {
            return self
                .spec
                .voting
                .iter()
                .map(|p| {
                    Ok(AuthorityEndpoint {
                        address: p.address,
                        identity_key: parse_key(&p.identity_public, "voting peer identity")?,
                        link_key: parse_key(&p.link_public, "voting peer link")?,
                    })
                })
                .collect();
        }
        let identity_key = parse_key(&self.spec.authority.identity_public, "authority")?;
        let link_key = katzenpost::wire::handshake::ed25519_public_to_x25519(&identity_key)
            .map_err(|_| NetworkError::Other("bad authority key in network.toml".into()))?;
        Ok(vec![AuthorityEndpoint {
            address: self.spec.authority.address,
            identity_key,
            link_key,
        }])
    }

    /// Starts (or restarts) node `name`.
    pub async fn start_node(&mut self, name: &str) -> Result<(), NetworkError> {
        if self.nodes.contains_key(name) {
            return Ok(());
        }
        let handle = Node::spawn(self.node_config(name)?).await?;
        self.nodes.insert(name.to_string(), handle);
        Ok(())
    }

    /// Stops node `name` (its spool, users and keys stay on disk).
    pub async fn stop_node(&mut self, name: &str) {
        if let Some(h) = self.nodes.remove(name) {
            h.stop().await;
        }
    }

    /// The running node `name`.
    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        self.nodes.get(name).map(|h| &h.node)
    }

    /// Waits until every running node holds the current epoch's document.
    pub async fn wait_ready(&self, timeout: std::time::Duration) -> Result<(), NetworkError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let ready = self
                .nodes
                .values()
                .all(|h| h.node.document(h.node.clock.now().epoch).is_some());
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(NetworkError::Other(
                    "network did not publish a document in time".into(),
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Stops everything.
    pub async fn shutdown(mut self) {
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.stop_node(&n).await;
        }
        let _ = self.authority_stop.send(true);
        for t in self.authority_tasks {
            let _ = t.await;
        }
    }
}
