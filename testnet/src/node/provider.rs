//! A provider's own state: users, spools, the Kaetzchen endpoints it runs,
//! the client sessions open (one per credentials), and its management
//! socket (`<dir>/management_sock`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use katzenpost::kaetzchen::{self, Service};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use super::Node;
use crate::descriptor::{KEYSERVER_ENDPOINT, LOOP_ENDPOINT};
use crate::mgmt::{parse_line, MgmtCommand, BANNER_SUFFIX, FAILED, OK};
use crate::process::ProviderContext;
use crate::spool::{Spool, SpoolEntry, SpoolError};
use crate::users::{normalize_user, UserDb, UserDbError};

/// Errors opening a provider's state.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error(transparent)]
    Users(#[from] UserDbError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// A provider's users, spools and sessions.
pub struct ProviderState {
    dir: PathBuf,
    pub(crate) users: Mutex<UserDb>,
    spools: Mutex<HashMap<String, Spool>>,
    pub(crate) sessions: Mutex<HashSet<String>>,
    /// Rate limiter overrides from SEND_RATE / SEND_BURST (0 = not set).
    pub(crate) send_rate: AtomicU64,
    pub(crate) send_burst: AtomicU64,
    /// The addresses authenticated client sessions came from, by user
    /// (bounded: [`MAX_PEER_USERS`] users, [`MAX_PEERS_PER_USER`] each).
    client_peers: Mutex<BTreeMap<String, BTreeSet<IpAddr>>>,
}

/// Why a registration was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The name is already registered.
    #[error("the user name '{0}' is taken")]
    Taken(String),
    /// The name is not a valid user name.
    #[error("bad request: {0}")]
    Invalid(String),
    /// The user database failed.
    #[error("the provider could not store the user: {0}")]
    Store(#[from] UserDbError),
}

/// Most users whose client addresses are recorded.
const MAX_PEER_USERS: usize = 4096;
/// Most addresses recorded per user.
const MAX_PEERS_PER_USER: usize = 64;

impl ProviderState {
    /// Opens the user database and spools under `dir`.
    pub fn open(dir: &Path) -> Result<Self, ProviderError> {
        std::fs::create_dir_all(dir).map_err(|source| SpoolError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            users: Mutex::new(UserDb::open(&dir.join("users.json"))?),
            spools: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashSet::new()),
            send_rate: AtomicU64::new(0),
            send_burst: AtomicU64::new(0),
            client_peers: Mutex::new(BTreeMap::new()),
        })
    }

    /// Records that `user` authenticated a session from `ip`.
    pub(crate) fn record_client_peer(&self, user: &str, ip: IpAddr) {
        let mut peers = self.client_peers.lock().expect("lock");
        if !peers.contains_key(user) && peers.len() >= MAX_PEER_USERS {
            return;
        }
        let set = peers.entry(user.to_owned()).or_default();
        if set.len() < MAX_PEERS_PER_USER {
            set.insert(ip);
        }
    }

    /// The addresses each user's client sessions came from (an observation
    /// hook: tests check that clients behind a proxy arrive from its
    /// outgoing address only).
    pub fn client_peers(&self) -> BTreeMap<String, BTreeSet<IpAddr>> {
        self.client_peers.lock().expect("lock").clone()
    }

    /// Runs `f` on `user`'s spool (opened on first use).
    pub fn with_spool<T>(
        &self,
        user: &str,
        f: impl FnOnce(&mut Spool) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let mut spools = self.spools.lock().expect("lock");
        if !spools.contains_key(user) {
            let s = Spool::open(&self.dir.join("spool").join(user))?;
            spools.insert(user.to_string(), s);
        }
        f(spools.get_mut(user).expect("just inserted"))
    }

    /// Appends an entry to `user`'s spool durably.
    pub fn spool(&self, user: &str, entry: &SpoolEntry) -> Result<(), SpoolError> {
        self.with_spool(user, |s| s.push(entry))
    }

    /// Entries waiting in `user`'s spool.
    pub fn spool_len(&self, user: &str) -> Result<usize, SpoolError> {
        self.with_spool(user, |s| s.len())
    }

    /// The registered user `name`, if any.
    pub fn user(&self, name: &str) -> Option<crate::users::User> {
        self.users.lock().expect("lock").get(name).cloned()
    }

    /// Registers a new user with both keys (HTTP registration): as ADD_USER
    /// then SET_USER_IDENTITY, refused if the name is taken.
    pub fn register(
        &self,
        user: &str,
        link_key: [u8; 32],
        identity_key: [u8; 32],
    ) -> Result<(), RegisterError> {
        let name = normalize_user(user).map_err(|e| RegisterError::Invalid(e.to_string()))?;
        let mut db = self.users.lock().expect("lock");
        if db.get(&name).is_some() {
            return Err(RegisterError::Taken(name));
        }
        db.set_link_key(&name, link_key)?;
        db.set_identity_key(&name, Some(identity_key))?;
        Ok(())
    }

    /// Adds or updates a user.
    pub fn add_user(
        &self,
        user: &str,
        link_key: [u8; 32],
        identity_key: Option<[u8; 32]>,
    ) -> Result<(), UserDbError> {
        let mut db = self.users.lock().expect("lock");
        db.set_link_key(user, link_key)?;
        if identity_key.is_some() {
            db.set_identity_key(user, identity_key)?;
        }
        Ok(())
    }
}

impl ProviderContext for ProviderState {
    fn service_for(&self, recipient: &[u8; 64]) -> Option<Service> {
        if kaetzchen::recipient_is_endpoint(recipient, KEYSERVER_ENDPOINT) {
            Some(Service::Keyserver)
        } else if kaetzchen::recipient_is_endpoint(recipient, LOOP_ENDPOINT) {
            Some(Service::Loop)
        } else {
            None
        }
    }

    fn user_exists(&self, user: &str) -> bool {
        self.users.lock().expect("lock").get(user).is_some()
    }

    fn identity_key(&self, user: &str) -> Option<[u8; 32]> {
        // The keyserver looks the name up exactly as sent.
        if normalize_user(user).ok().as_deref() != Some(user) {
            return None;
        }
        self.users
            .lock()
            .expect("lock")
            .get(user)
            .and_then(|u| u.identity_key)
    }
}

/// Serves the management socket until the node stops.
pub(super) async fn management_loop(node: Arc<Node>) {
    let path = node.config.dir.join("management_sock");
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(node = %node.config.name, error = %e, "management socket");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let node = node.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut lines = BufReader::new(r.take(1024 * 1024)).lines();
            if w.write_all(format!("220 {} {BANNER_SUFFIX}\r\n", node.config.name).as_bytes())
                .await
                .is_err()
            {
                return;
            }
            while let Ok(Some(line)) = lines.next_line().await {
                let (reply, quit) = match parse_line(line.trim().as_bytes()) {
                    Ok(cmd) => execute(&node, cmd),
                    Err(e) => (e.reply().to_string(), false),
                };
                if w.write_all(format!("{reply}\r\n").as_bytes())
                    .await
                    .is_err()
                    || quit
                {
                    break;
                }
            }
        });
    }
}

fn execute(node: &Node, cmd: MgmtCommand) -> (String, bool) {
    let Some(p) = &node.provider else {
        return (FAILED.into(), false);
    };
    let b64 = |k: &[u8; 32]| base64::engine::general_purpose::STANDARD.encode(k);
    let ok = |r: Result<(), UserDbError>| {
        if r.is_ok() {
            OK.to_string()
        } else {
            FAILED.to_string()
        }
    };
    let mut db = p.users.lock().expect("lock");
    let reply = match cmd {
        MgmtCommand::AddUser { user, link_key } => {
            if db.get(&user).is_some() {
                FAILED.into()
            } else {
                ok(db.set_link_key(&user, link_key))
            }
        }
        MgmtCommand::UpdateUser { user, link_key } => ok(db.set_link_key(&user, link_key)),
        MgmtCommand::RemoveUser { user } => {
            let r = db.remove(&user);
            if r.is_ok() {
                if let Ok(n) = normalize_user(&user) {
                    p.spools.lock().expect("lock").remove(&n);
                    let _ = std::fs::remove_dir_all(p.dir.join("spool").join(n));
                }
            }
            ok(r)
        }
        MgmtCommand::SetUserIdentity { user, identity_key } => {
            ok(db.set_identity_key(&user, identity_key))
        }
        MgmtCommand::RemoveUserIdentity { user } => ok(db.set_identity_key(&user, None)),
        MgmtCommand::UserLink { user } => match db.get(&user) {
            Some(u) => format!("250 {}", b64(&u.link_key)),
            None => FAILED.into(),
        },
        MgmtCommand::UserIdentity { user } => match db.get(&user).and_then(|u| u.identity_key) {
            Some(k) => format!("250 {}", b64(&k)),
            None => FAILED.into(),
        },
        MgmtCommand::SendRate(n) => {
            p.send_rate.store(n, Ordering::Relaxed);
            format!("250 {n}")
        }
        MgmtCommand::SendBurst(n) => {
            p.send_burst.store(n, Ordering::Relaxed);
            format!("250 {n}")
        }
        MgmtCommand::Quit => return (OK.into(), true),
    };
    (reply, false)
}
