//! Start-up, the running daemon, and shutdown.
//!
//! [`prepare`] does everything synchronous (DataDir, lock, keys, recipients);
//! [`run`] starts the services and waits for the shutdown future, a
//! `SHUTDOWN` command or a fatal service error. Signals: SIGHUP rescans the
//! recipient directory; the binary passes SIGINT/SIGTERM as the shutdown future.
//!
//! Services are tasks in one `JoinSet`, each watching the same [`Shutdown`];
//! adding the SMTP/POP3 servers and the per-account network engine means
//! spawning them next to the management server in [`run`].

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailproxy_proto::AccountInfo;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{AccountConfig, Authentication, AuthorityKind, Config};
use crate::control::{ControlAccount, DaemonControl, EngineHandle, EngineOf};
use crate::directory::{DaemonDirectory, LoginPassword};
use crate::engine::{
    AuthorityConfig as EngineAuthority, Engine, EngineConfig, PartialLimits, Pki, Timings,
    Upstream, VotingPeer,
};
use crate::events::EventBus;
use crate::keys::{ensure_private_dir, AccountKeys, KeyError};
use crate::lock::{DataDirLock, LockError};
use crate::mgmt::{self, MgmtContext, MgmtError};
use crate::recipients::{RecipientError, Recipients};
use crate::store::Directory;
use crate::totals::Counted;
use crate::{imap, pop3, smtp};

/// How long services get to finish after shutdown is triggered.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Fatal daemon errors (the binary exits non-zero).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The data directory (or the recipient directory) is unusable.
    #[error("directory '{path}': {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another daemon holds the DataDir.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Key files.
    #[error("account {account}: {source}")]
    Keys {
        /// The account id.
        account: String,
        /// Why.
        source: KeyError,
    },
    /// The recipient directory could not be read.
    #[error(transparent)]
    Recipients(#[from] RecipientError),
    /// The management socket.
    #[error(transparent)]
    Management(#[from] MgmtError),
    /// Signal handling could not be set up.
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
    /// An account's store or generated password could not be opened.
    #[error(transparent)]
    Store(#[from] crate::directory::OpenError),
    /// An SMTP or POP3 listener could not be bound.
    #[error("{0}")]
    Bind(String),
    /// A service stopped on its own.
    #[error("service '{0}' stopped unexpectedly")]
    ServiceExited(&'static str),
    /// A service panicked or was cancelled.
    #[error("service task failed: {0}")]
    Task(String),
}

/// A shutdown flag every service can wait on; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A new, untriggered flag.
    pub fn new() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// Triggers shutdown (idempotent).
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// A receiver that turns true when shutdown is triggered.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Whether shutdown was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once shutdown is triggered.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // The sender lives as long as any Shutdown clone, so this cannot fail
        // while we hold self.
        let _ = rx.wait_for(|triggered| *triggered).await;
    }
}

/// An account ready to run: its config and keys.
#[derive(Debug)]
pub struct Account {
    /// The account's settings.
    pub config: AccountConfig,
    /// Its key pairs.
    pub keys: AccountKeys,
    /// Its directory, `<DataDir>/<id>`.
    pub dir: PathBuf,
}

impl Account {
    /// The public view (`ACCOUNTS`, registration).
    pub fn info(&self) -> AccountInfo {
        AccountInfo {
            account: self.config.id.clone(),
            link_key: self.keys.link_public(),
            identity_key: self.keys.identity_public(),
        }
    }
}

/// Everything [`prepare`] set up; holds the DataDir lock.
#[derive(Debug)]
pub struct Prepared {
    /// The configuration.
    pub config: Config,
    /// The DataDir lock, held until this is dropped.
    pub lock: DataDirLock,
    /// The accounts, in config order.
    pub accounts: Vec<Account>,
    /// The recipient table (scanned once).
    pub recipients: Recipients,
}

/// Checks or creates DataDir (0700), takes the lock, loads or generates
/// every account's keys, creates RecipientDir and scans it.
pub fn prepare(config: Config) -> Result<Prepared, DaemonError> {
    let data_dir = config.proxy.data_dir.clone();
    ensure_private_dir(&data_dir).map_err(|source| DaemonError::Directory {
        path: data_dir.clone(),
        source,
    })?;
    let lock = DataDirLock::acquire(&data_dir)?;
    let mut accounts = Vec::with_capacity(config.accounts.len());
    for account in &config.accounts {
        let dir = data_dir.join(&account.id);
        let (keys, generated) =
            AccountKeys::load_or_generate(&dir).map_err(|source| DaemonError::Keys {
                account: account.id.clone(),
                source,
            })?;
        if generated {
            tracing::warn!(account = %account.id, "new keys generated: register them with the provider (mailproxyctl accounts)");
        }
        accounts.push(Account {
            config: account.clone(),
            keys,
            dir,
        });
    }
    let recipient_dir = config.proxy.recipient_dir.clone();
    ensure_private_dir(&recipient_dir).map_err(|source| DaemonError::Directory {
        path: recipient_dir.clone(),
        source,
    })?;
    let recipients = Recipients::new(
        recipient_dir,
        config.recipients.clone(),
        config.debug.case_sensitive_user_identifiers,
    );
    recipients.rescan()?;
    Ok(Prepared {
        config,
        lock,
        accounts,
        recipients,
    })
}

/// The running network engines (one per account whose authority is
/// configured) and the daemon's event bus they emit on.
pub struct Engines {
    engines: Vec<(String, Arc<Engine>)>,
    events: EventBus,
}

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field(
                "accounts",
                &self.engines.iter().map(|(a, _)| a).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Engines {
    /// No engines yet, emitting on `events`.
    pub fn new(events: EventBus) -> Engines {
        Engines {
            engines: Vec::new(),
            events,
        }
    }

    /// Adds the engine of `account` (`user@provider`, as in the config).
    pub fn insert(&mut self, account: String, engine: Arc<Engine>) {
        self.engines.push((account, engine));
    }

    /// The engine of `account` (`user@provider`), if it runs.
    pub fn get(&self, account: &str) -> Option<&Engine> {
        self.engines
            .iter()
            .find(|(a, _)| a == account)
            .map(|(_, e)| e.as_ref())
    }

    /// Every running engine with its account id, in config order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Engine)> {
        self.engines.iter().map(|(a, e)| (a.as_str(), e.as_ref()))
    }

    /// The event bus every engine emits on (subscribe for `EVENTS`).
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Stops every engine and waits until each has released its store.
    pub async fn stop_all(&self) {
        for (_, e) in &self.engines {
            e.stop().await;
        }
    }
}

/// The account's PKI, from the config; `None` if its authority is not defined.
fn engine_pki(config: &Config, a: &AccountConfig) -> Option<Pki> {
    Some(match a.authority_kind {
        AuthorityKind::Nonvoting => {
            let authority = config.authorities.get(&a.authority)?;
            Pki::Nonvoting(EngineAuthority {
                address: authority.address.clone(),
                public_key: authority.public_key,
            })
        }
        AuthorityKind::Voting => Pki::Voting(
            config
                .voting_authorities
                .get(&a.authority)?
                .peers
                .iter()
                .map(|p| VotingPeer {
                    identity_key: p.identity_public_key,
                    link_key: p.link_public_key,
                    addresses: p.addresses.clone(),
                })
                .collect(),
        ),
    })
}

/// The engine settings of one account, from the config; `None` if its
/// authority is not defined.
fn engine_config(
    config: &Config,
    account: &Account,
    recipients: &Recipients,
    events: &EventBus,
    upstream: &Arc<Upstream>,
) -> Option<EngineConfig> {
    let a = &account.config;
    let authority = engine_pki(config, a)?;
    let (recipients, stored) = (recipients.clone(), recipients.clone());
    let max_blocks =
        config.proxy.max_message_size / katzenpost::geometry::BLOCK_PAYLOAD_LENGTH as u64 + 1;
    Some(EngineConfig {
        user: a.user.clone(),
        provider: a.provider.clone(),
        link_private: account.keys.link.to_bytes(),
        identity_private: account.keys.identity.to_bytes(),
        authority,
        upstream: upstream.clone(),
        provider_key_pin: a.provider_key_pin,
        send_decoy_traffic: config.debug.send_decoy_traffic,
        max_incoming_blocks: u16::try_from(max_blocks).unwrap_or(u16::MAX),
        partial_limits: PartialLimits {
            messages: usize::try_from(config.limits.partial_messages).unwrap_or(usize::MAX),
            bytes: config.limits.partial_bytes,
            messages_per_sender: usize::try_from(config.limits.partial_messages_per_sender)
                .unwrap_or(usize::MAX),
            bytes_per_sender: config.limits.partial_bytes_per_sender,
        },
        recipient_keys: Arc::new(move |addr| recipients.get(addr).ok().flatten()),
        key_discovery: a.insecure_key_discovery,
        // As SET_RECIPIENT: writes <RecipientDir>/<address>.pem.
        store_key: Arc::new(move |addr, key| {
            stored.set(addr, key).map(|_| ()).map_err(|e| e.to_string())
        }),
        timings: Timings::from_config(&config.debug),
        events: events.clone(),
    })
}

/// Runs the daemon until `shutdown` completes, a `SHUTDOWN` command arrives
/// or a service fails. Returns `Ok` after a clean shutdown (listeners closed,
/// socket removed), `Err` on a fatal error.
pub async fn run<F>(config: Config, shutdown: F) -> Result<(), DaemonError>
where
    F: Future<Output = ()> + Send,
{
    let prepared = tokio::task::spawn_blocking(move || prepare(config))
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))??;
    run_prepared(prepared, shutdown).await
}

/// [`run`] after [`prepare`].
pub async fn run_prepared<F>(prepared: Prepared, shutdown: F) -> Result<(), DaemonError>
where
    F: Future<Output = ()> + Send,
{
    let Prepared {
        config,
        lock,
        accounts,
        recipients,
    } = prepared;
    for account in &accounts {
        let info = account.info();
        tracing::info!(
            account = %info.account,
            link_key = %mailproxy_proto::encode_key(&info.link_key),
            identity_key = %mailproxy_proto::encode_key(&info.identity_key),
            "account ready"
        );
    }
    if accounts.is_empty() {
        tracing::warn!("no [[Account]] configured");
    }
    if config.proxy.authentication == Authentication::None {
        tracing::warn!("[Proxy] Authentication = \"none\": SMTP and POP3 take any password for accounts without a PasswordHash, so any local user can read their mail and send as them");
    }
    if !config.proxy.no_launch_listeners {
        for (name, addr) in [
            ("SMTP", config.proxy.smtp_address),
            ("POP3", config.proxy.pop3_address),
            ("IMAP", config.proxy.imap_address),
        ] {
            if !addr.ip().is_loopback() {
                tracing::warn!(%addr, "{name} will listen on a non-loopback address (AllowNonLoopback = true): anyone who can reach it can try to use the accounts");
            }
        }
    }

    let stop = Shutdown::new();
    // Logged-in IMAP sessions (for status).
    let imap_sessions = imap::ImapSessions::default();
    // Engines emit here; the management socket's EVENTS subscribes.
    let events = EventBus::new(1024);
    let mut services: JoinSet<(&'static str, Result<(), DaemonError>)> = JoinSet::new();

    // Install the HUP handler before anything can tell the world we are up.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(DaemonError::Signal)?;

    // The management socket is bound now (a live one is a fatal error before
    // anything else starts) and served once the engines run.
    let management = if config.management.enable {
        let path = config.management.path.clone();
        Some((mgmt::bind(&path)?, path))
    } else {
        None
    };
    // The mail front: every account's store, then SMTP and POP3 over them.
    let directory = {
        let (config, recipients) = (config.clone(), recipients.clone());
        tokio::task::spawn_blocking(move || DaemonDirectory::open(&config, recipients))
            .await
            .map_err(|e| DaemonError::Task(e.to_string()))??
    };
    if !config.proxy.no_launch_listeners {
        let allow = config.proxy.allow_non_loopback;
        let smtp_listener = smtp::bind(config.proxy.smtp_address, allow)
            .await
            .map_err(|e| DaemonError::Bind(format!("SMTP: {e}")))?;
        let pop3_listener = smtp::bind(config.proxy.pop3_address, allow)
            .await
            .map_err(|e| DaemonError::Bind(format!("POP3: {e}")))?;
        let imap_listener = smtp::bind(config.proxy.imap_address, allow)
            .await
            .map_err(|e| DaemonError::Bind(format!("IMAP: {e}")))?;
        let smtp_settings = smtp::SmtpSettings {
            max_message_size: usize::try_from(config.proxy.max_message_size).unwrap_or(usize::MAX),
            bounce_lifetime: config.debug.bounce_queue_lifetime.as_secs(),
            login_required: config.proxy.authentication == Authentication::Password,
            ..smtp::SmtpSettings::default()
        };
        let (dir, s) = (directory.clone() as Arc<dyn Directory>, stop.clone());
        services.spawn(async move {
            smtp::serve(smtp_listener, dir, smtp_settings, s.wait()).await;
            ("SMTP", Ok(()))
        });
        let (dir, s) = (directory.clone() as Arc<dyn Directory>, stop.clone());
        services.spawn(async move {
            pop3::serve(pop3_listener, dir, pop3::Pop3Settings::default(), s.wait()).await;
            ("POP3", Ok(()))
        });
        let (dir, s) = (directory.clone() as Arc<dyn Directory>, stop.clone());
        let imap_settings = imap::ImapSettings {
            sessions: imap_sessions.clone(),
            ..imap::ImapSettings::default()
        };
        let imap_bound = imap_listener.local_addr().ok();
        services.spawn(async move {
            imap::serve(imap_listener, dir, imap_settings, s.wait()).await;
            ("IMAP", Ok(()))
        });
        tracing::info!(smtp = %config.proxy.smtp_address, pop3 = %config.proxy.pop3_address, imap = ?imap_bound, "mail front listening");
    }
    // The IMAP Sent mailbox follows the engines' delivery events.
    {
        let (d, s) = (directory.clone() as Arc<dyn Directory>, stop.clone());
        let ids: Vec<String> = accounts.iter().map(|a| a.config.id.clone()).collect();
        tokio::spawn(imap::sent::follow(events.subscribe(), d, ids, async move {
            s.wait().await
        }));
    }
    // Each store's failures and recoveries, as events.
    for account in &accounts {
        if let Some(store) = directory.store(&account.config.id) {
            let (events, id, s) = (events.clone(), account.config.id.clone(), stop.clone());
            tokio::spawn(crate::events::follow_store_health(
                events,
                id,
                store.health_watch(),
                async move { s.wait().await },
            ));
        }
    }
    // The network engine: one per account, over its store.
    let mut engines = Engines::new(events.clone());
    // One per process: its tor+socks5 isolation tag is the process's.
    let upstream = Arc::new(Upstream::new(
        config.upstream_proxy.clone(),
        config.prefered_transports.clone(),
    ));
    for account in &accounts {
        let Some(engine_config) = engine_config(&config, account, &recipients, &events, &upstream)
        else {
            tracing::error!(account = %account.config.id, "no authority for this account: its mail stays queued");
            continue;
        };
        let Some(store) = directory.store(&account.config.id) else {
            continue;
        };
        let engine = Arc::new(Engine::start(store, engine_config));
        let weak = Arc::downgrade(&engine);
        directory.on_queued(&account.config.id, move || {
            if let Some(engine) = weak.upgrade() {
                engine.wake();
            }
        });
        engines.insert(account.config.id.clone(), engine);
    }
    let engines = Arc::new(engines);
    // Each engine's status counters, with the totals of earlier runs.
    let counted: std::collections::HashMap<String, Arc<Counted>> = {
        let list: Vec<(String, crate::store::Store)> = accounts
            .iter()
            .map(|a| a.config.id.clone())
            .filter(|id| engines.get(id).is_some())
            .filter_map(|id| Some((id.clone(), directory.store(&id)?)))
            .collect();
        let engines = engines.clone();
        tokio::task::spawn_blocking(move || {
            list.into_iter()
                .map(|(id, store)| {
                    let handle = Arc::new(EngineOf::new(engines.clone(), id.clone()));
                    (id, Arc::new(Counted::new(handle, store)))
                })
                .collect()
        })
        .await
        .map_err(|e| DaemonError::Task(e.to_string()))?
    };
    {
        let (engines, s) = (engines.clone(), stop.clone());
        let counted: Vec<Arc<Counted>> = counted.values().cloned().collect();
        services.spawn(async move {
            crate::totals::keep_saving(counted.clone(), s.wait()).await;
            engines.stop_all().await;
            crate::totals::save_all(&counted).await;
            ("engine", Ok(()))
        });
    }

    if let Some((listener, path)) = management {
        let mut infos: Vec<AccountInfo> = accounts.iter().map(Account::info).collect();
        infos.sort_by(|a, b| a.account.cmp(&b.account));
        let control_accounts = accounts
            .iter()
            .filter_map(|a| {
                let id = a.config.id.clone();
                let engine = counted.get(&id).map(|c| c.clone() as Arc<dyn EngineHandle>);
                Some(ControlAccount {
                    store: directory.store(&id)?,
                    id,
                    engine,
                })
            })
            .collect();
        let control = DaemonControl::new(
            control_accounts,
            recipients.clone(),
            engines.events().clone(),
        )
        .with_imap_sessions(imap_sessions.clone());
        let ctx = MgmtContext {
            recipients: recipients.clone(),
            accounts: infos,
            shutdown: stop.clone(),
            control: Arc::new(control),
            logs: crate::logging::bus(),
            directory: directory.clone(),
        };
        services.spawn(async move {
            (
                "management",
                mgmt::serve(listener, path, ctx)
                    .await
                    .map_err(DaemonError::from),
            )
        });
    }

    tracing::info!(
        accounts = accounts.len(),
        recipients = recipients.len(),
        "mailproxyd started"
    );

    tokio::pin!(shutdown);
    let mut result = Ok(());
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutdown signal received");
                break;
            }
            _ = stop.wait() => break,
            Some(()) = hup.recv() => {
                tracing::info!("SIGHUP: rescanning the recipient directory");
                let r = recipients.clone();
                match tokio::task::spawn_blocking(move || r.rescan()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "recipient rescan failed"),
                    Err(e) => tracing::error!(error = %e, "recipient rescan task failed"),
                }
            }
            Some(joined) = services.join_next() => {
                if stop.is_triggered() {
                    // Stopping because of SHUTDOWN: the service ended on the flag.
                    if let Ok((_, Err(e))) = joined {
                        tracing::error!(error = %e, "service failed while stopping");
                    }
                    break;
                }
                result = Err(match joined {
                    Ok((_, Err(e))) => e,
                    Ok((name, Ok(()))) => DaemonError::ServiceExited(name),
                    Err(e) => DaemonError::Task(e.to_string()),
                });
                break;
            }
        }
    }
    if let Err(e) = &result {
        tracing::error!(error = %e, "fatal error, shutting down");
    }
    stop.trigger();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(joined) = services.join_next().await {
            match joined {
                Ok((name, Err(e))) => {
                    tracing::error!(service = name, error = %e, "service failed while stopping")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "service task failed while stopping"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("services did not stop within {SHUTDOWN_GRACE:?}; aborting them");
        services.shutdown().await;
    }
    drop(lock);
    tracing::info!("mailproxyd stopped");
    result
}

/// `mailproxyd -g`: prepares DataDir, every account's keys and generated
/// password, then returns the public keys with the logins (the lock is
/// released on return).
pub fn generate_keys(config: Config) -> Result<Vec<(AccountInfo, LoginPassword)>, DaemonError> {
    let prepared = prepare(config)?;
    prepared
        .accounts
        .iter()
        .map(|a| {
            let login = crate::directory::login_password(&prepared.config, &a.config)?;
            Ok((a.info(), login))
        })
        .collect()
}

/// What a provider operator needs to register an account, and the
/// account's SMTP and POP3 login, as text.
pub fn registration_text(
    account: &AccountConfig,
    info: &AccountInfo,
    login: &LoginPassword,
) -> String {
    let password = match login {
        LoginPassword::Generated(p) => p.as_str(),
        LoginPassword::InConfig => "(the one hashed in PasswordHash)",
        LoginPassword::NotRequired => "(none: Authentication = \"none\")",
    };
    format!(
        "account {id}\n  link key (authenticates to the provider):     {link}\n  identity key (end-to-end, for other users):   {identity}\n  password (SMTP AUTH and POP3, user {id}):  {password}\n  on the provider's management socket:\n    ADD_USER {user} {link_hex}\n    SET_USER_IDENTITY {user} {identity_hex}\n",
        id = info.account,
        user = account.user,
        link = mailproxy_proto::encode_key(&info.link_key),
        identity = mailproxy_proto::encode_key(&info.identity_key),
        link_hex = hex::encode(info.link_key),
        identity_hex = hex::encode(info.identity_key),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_flag_wakes_waiters() {
        let s = Shutdown::new();
        assert!(!s.is_triggered());
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.wait().await })
        };
        s.trigger();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
        assert!(s.is_triggered());
        // Waiting after the trigger returns at once.
        tokio::time::timeout(Duration::from_secs(5), s.wait())
            .await
            .unwrap();
    }
    #[test]
    fn nonvoting_and_voting_accounts_each_get_their_own_pki() {
        let id = "50cd35ea60945cce23567959945a270e0f6ad127cfe03141aed686d1e5d0bf62";
        let link = "90c604af91ede9f0de1c0f8894e1ef503db13fbaa3d872d3b08dd110a75d9b27";
        let text = format!(
            "[Proxy]\nDataDir = \"/tmp/x\"\n\
             [NonvotingAuthority.Old]\nAddress = \"127.0.0.1:1\"\nPublicKey = \"{id}\"\n\
             [VotingAuthority.New]\nPeers = [{{ IdentityPublicKey = \"{id}\", LinkPublicKey = \"{link}\", Addresses = [\"127.0.0.1:2\", \"127.0.0.1:3\"] }}]\n\
             [[Account]]\nUser = \"a\"\nProvider = \"p\"\nNonvotingAuthority = \"Old\"\n\
             [[Account]]\nUser = \"b\"\nProvider = \"p\"\nVotingAuthority = \"New\"\n"
        );
        let config = Config::parse(&text).unwrap();
        let key: [u8; 32] = hex::decode(id).unwrap().try_into().unwrap();
        match engine_pki(&config, &config.accounts[0]) {
            Some(Pki::Nonvoting(a)) => {
                assert_eq!((a.address.as_str(), a.public_key), ("127.0.0.1:1", key));
            }
            other => panic!("{other:?}"),
        }
        match engine_pki(&config, &config.accounts[1]) {
            Some(Pki::Voting(peers)) => assert_eq!(
                peers,
                vec![VotingPeer {
                    identity_key: key,
                    link_key: hex::decode(link).unwrap().try_into().unwrap(),
                    addresses: vec!["127.0.0.1:2".into(), "127.0.0.1:3".into()],
                }]
            ),
            other => panic!("{other:?}"),
        }
    }
}
