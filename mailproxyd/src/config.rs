//! The configuration file (TOML): strict loading, validation and defaults.
//!
//! Every error is one line naming the section, the field and what is wrong:
//! `config: [Proxy] SMTPAddress: not a literal IP:port address ("localhost:25")`.
//! Key names match case-insensitively, as in the original daemon; unknown
//! keys and sections are errors. See the README's configuration reference and
//! `mailproxyd.sample.toml`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailproxy_proto::key::{decode_key, KEY_LEN};
use toml::{Table, Value};

use crate::recipients::{normalize_address, normalize_provider, normalize_user};

/// Default POP3 listener.
pub const DEFAULT_POP3_ADDRESS: &str = "127.0.0.1:2524";
/// Default IMAP listener.
pub const DEFAULT_IMAP_ADDRESS: &str = "127.0.0.1:2143";
/// Default SMTP listener.
pub const DEFAULT_SMTP_ADDRESS: &str = "127.0.0.1:2525";
/// Default maximum message size (25 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 25 * 1024 * 1024;
/// Largest config file read (a config is a few KiB).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A configuration error: one line, naming section and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config: cannot read '{path}': {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config: line {line}: {message}")]
    Syntax {
        /// 1-based line of the error.
        line: usize,
        /// The parser's message.
        message: String,
    },
    /// A section or field is invalid.
    #[error("config: [{section}]{} {problem}", field_part(.field))]
    Invalid {
        /// The section, e.g. `Proxy`, `Account #2`, `NonvotingAuthority.Test`.
        section: String,
        /// The field; empty for problems with the section itself.
        field: String,
        /// What is wrong.
        problem: String,
    },
}

fn field_part(field: &str) -> String {
    if field.is_empty() {
        ":".to_owned()
    } else {
        format!(" {field}:")
    }
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[Proxy]`.
    pub proxy: ProxyConfig,
    /// `[Logging]`.
    pub logging: LoggingConfig,
    /// `[NonvotingAuthority.<Name>]`, by name.
    pub authorities: BTreeMap<String, AuthorityConfig>,
    /// `[VotingAuthority.<Name>]`, by name (no name is in both maps).
    pub voting_authorities: BTreeMap<String, VotingAuthorityConfig>,
    /// `[[Account]]`, in file order, ids unique.
    pub accounts: Vec<AccountConfig>,
    /// `[Management]`.
    pub management: ManagementConfig,
    /// `[Debug]`.
    pub debug: DebugConfig,
    /// `[Recipients]`: normalised address to X25519 public key.
    pub recipients: BTreeMap<String, [u8; KEY_LEN]>,
    /// `[Storage]`.
    pub storage: StorageConfig,
    /// `[Limits]`.
    pub limits: LimitsConfig,
    /// `[UpstreamProxy]`; `None` with `Type = "none"` or no section.
    pub upstream_proxy: Option<UpstreamProxyConfig>,
    /// `[UpstreamProxy] PreferedTransports`: descriptor transports to dial,
    /// in order (default `tcp`, `tcp4`, `tcp6`), proxy or not.
    pub prefered_transports: Vec<String>,
}

/// `[Proxy]`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// POP3 listener address.
    pub pop3_address: SocketAddr,
    /// SMTP listener address.
    pub smtp_address: SocketAddr,
    /// IMAP listener address.
    pub imap_address: SocketAddr,
    /// The data directory (absolute).
    pub data_dir: PathBuf,
    /// Recipient key files (absolute; default `<DataDir>/recipients`).
    pub recipient_dir: PathBuf,
    /// Do not start the SMTP and POP3 listeners.
    pub no_launch_listeners: bool,
    /// Largest message accepted by SMTP, in bytes.
    pub max_message_size: u64,
    /// Whether SMTP/POP3 may listen on non-loopback addresses.
    pub allow_non_loopback: bool,
    /// Whether SMTP and POP3 require each account's password.
    pub authentication: Authentication,
}

/// `[Proxy] Authentication`: whether the mail front requires passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Authentication {
    /// `"password"` (the default): POP3 and SMTP require the account's
    /// password, its `PasswordHash` or else a generated one.
    #[default]
    Password,
    /// `"none"`: the original daemon's behaviour, any local process may use
    /// any account without a `PasswordHash` (a warning at every start).
    None,
}

/// `[Logging]`.
#[derive(Debug, Clone)]
pub struct LoggingConfig {
    /// No logging at all.
    pub disable: bool,
    /// Log file (absolute); `None` logs to stdout.
    pub file: Option<PathBuf>,
    /// The level.
    pub level: mailproxy_proto::Level,
}

/// `[NonvotingAuthority.<Name>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityConfig {
    /// The entry's name.
    pub name: String,
    /// `host:port` (not resolved here; may be an onion address).
    pub address: String,
    /// The authority's Ed25519 public key.
    pub public_key: [u8; KEY_LEN],
}

/// `[VotingAuthority.<Name>]`: a set of voting authority peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VotingAuthorityConfig {
    /// The entry's name.
    pub name: String,
    /// `Peers`, in file order, identity keys distinct, at least one.
    pub peers: Vec<VotingPeerConfig>,
}

/// One entry of `[VotingAuthority.<Name>] Peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VotingPeerConfig {
    /// `IdentityPublicKey`: Ed25519; signs documents, and is the handshake AD.
    pub identity_public_key: [u8; KEY_LEN],
    /// `LinkPublicKey`: the peer's X25519 link (handshake static) key.
    pub link_public_key: [u8; KEY_LEN],
    /// `Addresses`: `host:port` (not resolved here), at least one.
    pub addresses: Vec<String>,
}

/// Which kind of authority an account's `authority` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorityKind {
    /// A `[NonvotingAuthority.<Name>]`.
    Nonvoting,
    /// A `[VotingAuthority.<Name>]`.
    Voting,
}

/// `[[Account]]`.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Normalised user name.
    pub user: String,
    /// Normalised provider name.
    pub provider: String,
    /// `user@provider`.
    pub id: String,
    /// The provider's Ed25519 identity key, when pinned.
    pub provider_key_pin: Option<[u8; KEY_LEN]>,
    /// Name of the authority entry.
    pub authority: String,
    /// Which map `authority` is in.
    pub authority_kind: AuthorityKind,
    /// Ask the recipient's provider for unknown recipient keys.
    pub insecure_key_discovery: bool,
    /// Argon2id PHC string; when set, POP3 and SMTP AUTH require the password.
    pub password_hash: Option<String>,
}

/// `[Management]`.
#[derive(Debug, Clone)]
pub struct ManagementConfig {
    /// Whether the socket is served.
    pub enable: bool,
    /// Socket path (absolute; default `<DataDir>/management_sock`).
    pub path: PathBuf,
}

/// `[Debug]` tuning knobs (values <= 0 replaced by the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugConfig {
    /// Drop a partial message after this long without a new fragment; `None` never.
    pub receive_timeout: Option<Duration>,
    /// Bounce an unacknowledged message after this long (default 5 days).
    pub bounce_queue_lifetime: Duration,
    /// Lifetime of key lookups and mail waiting for them (default 1 h).
    pub urgent_queue_lifetime: Duration,
    /// Interval between retrievals (default 30 s).
    pub polling_interval: Duration,
    /// Slack added to an ACK's ETA before retransmitting (default 300 s).
    pub retransmit_slack: Duration,
    /// Keep the case of user names and recipient local parts.
    pub case_sensitive_user_identifiers: bool,
    /// Send loop decoys when nothing is queued.
    pub send_decoy_traffic: bool,
    /// Generate keys and exit (as `-g`).
    pub generate_only: bool,
    /// The network's epoch length (default 10800 s). Only for test networks
    /// with shorter epochs: the katzenpost-2019 profile fixes 3 hours.
    pub epoch_period: Duration,
}

impl Default for DebugConfig {
    fn default() -> Self {
        DebugConfig {
            receive_timeout: None,
            bounce_queue_lifetime: Duration::from_secs(432_000),
            urgent_queue_lifetime: Duration::from_secs(3_600),
            polling_interval: Duration::from_secs(30),
            retransmit_slack: Duration::from_secs(300),
            case_sensitive_user_identifiers: false,
            send_decoy_traffic: false,
            generate_only: false,
            epoch_period: Duration::from_secs(10_800),
        }
    }
}

/// `[Limits]`: bounds on what peers can make an account hold. Incomplete
/// incoming messages can be started by anyone who knows the account's
/// identity key (the keyserver hands it out); past these bounds the oldest are
/// dropped, with one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Most incomplete incoming messages held (`PartialMessages`).
    pub partial_messages: u64,
    /// Most bytes of incomplete incoming messages held (`PartialBytes`).
    pub partial_bytes: u64,
    /// Most incomplete incoming messages held from one sender
    /// (`PartialMessagesPerSender`).
    pub partial_messages_per_sender: u64,
    /// Most bytes of incomplete incoming messages held from one sender
    /// (`PartialBytesPerSender`).
    pub partial_bytes_per_sender: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            partial_messages: 1000,
            partial_bytes: 256 << 20,
            partial_messages_per_sender: 16,
            partial_bytes_per_sender: 64 << 20,
        }
    }
}

/// The default `[UpstreamProxy] PreferedTransports`.
pub const DEFAULT_TRANSPORTS: [&str; 3] = ["tcp", "tcp4", "tcp6"];

/// `[UpstreamProxy]` with a `Type` other than `none`.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamProxyConfig {
    /// `Type`: plain SOCKS5, or Tor's SOCKS5 port (stream isolation).
    pub kind: UpstreamProxyKind,
    /// `Network` and `Address`.
    pub address: UpstreamProxyAddress,
    /// `User`/`Password` (only with `socks5`).
    pub credentials: Option<(String, String)>,
}

impl std::fmt::Debug for UpstreamProxyConfig {
    // Never print the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamProxyConfig")
            .field("kind", &self.kind)
            .field("address", &self.address)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

/// `[UpstreamProxy] Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProxyKind {
    /// `socks5`.
    Socks5,
    /// `tor+socks5`: streams isolated by SOCKS user name.
    TorSocks5,
}

/// Where the SOCKS5 server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamProxyAddress {
    /// `Network = "tcp"`: a literal `IP:port`.
    Tcp(SocketAddr),
    /// `Network = "unix"`: a socket path (absolute, existing at load time).
    Unix(PathBuf),
}

impl std::fmt::Display for UpstreamProxyAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamProxyAddress::Tcp(a) => write!(f, "{a}"),
            UpstreamProxyAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `[Storage]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageConfig {
    /// Where the store passphrase comes from; `None`: a 0600 key file in DataDir.
    pub passphrase: Option<PassphraseSource>,
}

/// Where the store passphrase is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassphraseSource {
    /// The first line of this file (absolute path).
    File(PathBuf),
    /// This environment variable.
    Env(String),
}

/// Why a passphrase could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PassphraseError {
    /// The file could not be read.
    #[error("cannot read passphrase file '{path}': {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The variable is unset or not UTF-8.
    #[error("environment variable {0} is not set")]
    Env(String),
    /// The passphrase is empty.
    #[error("the passphrase is empty")]
    Empty,
}

impl PassphraseSource {
    /// Reads the passphrase: a file's first line (without the line end), or
    /// the variable's value.
    pub fn read(&self) -> Result<zeroize::Zeroizing<String>, PassphraseError> {
        let text = match self {
            PassphraseSource::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| PassphraseError::File {
                        path: path.clone(),
                        source,
                    })?;
                let text = zeroize::Zeroizing::new(text);
                zeroize::Zeroizing::new(text.lines().next().unwrap_or("").to_owned())
            }
            PassphraseSource::Env(name) => zeroize::Zeroizing::new(
                std::env::var(name).map_err(|_| PassphraseError::Env(name.clone()))?,
            ),
        };
        if text.is_empty() {
            return Err(PassphraseError::Empty);
        }
        Ok(text)
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        use std::io::Read;
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(read_err(std::io::Error::other("file larger than 1 MiB")));
        }
        Config::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let table: Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            ConfigError::Syntax {
                line,
                message: e.message().replace('\n', " ").trim().to_owned(),
            }
        })?;
        from_table(&table)
    }

    /// The account with this id, if configured.
    pub fn account(&self, id: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.id == id)
    }
}

fn invalid(section: &str, field: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        section: section.to_owned(),
        field: field.to_owned(),
        problem: problem.into(),
    }
}

fn type_name(v: &Value) -> &'static str {
    v.type_str()
}

/// The fields of one section, matched case-insensitively, with unknown-key detection.
struct Fields<'a> {
    section: String,
    entries: Vec<(&'a str, &'a Value, bool)>,
}

impl<'a> Fields<'a> {
    fn new(section: impl Into<String>, value: &'a Value) -> Result<Fields<'a>, ConfigError> {
        let section = section.into();
        let Some(table) = value.as_table() else {
            return Err(invalid(
                &section,
                "",
                format!("expected a table, found {}", type_name(value)),
            ));
        };
        let mut entries: Vec<(&str, &Value, bool)> = Vec::new();
        for (k, v) in table {
            if entries.iter().any(|(e, _, _)| e.eq_ignore_ascii_case(k)) {
                return Err(invalid(
                    &section,
                    k,
                    "defined twice (names are case-insensitive)",
                ));
            }
            entries.push((k.as_str(), v, false));
        }
        Ok(Fields { section, entries })
    }

    fn err(&self, field: &str, problem: impl Into<String>) -> ConfigError {
        invalid(&self.section, field, problem)
    }

    fn take(&mut self, name: &str) -> Option<&'a Value> {
        self.entries
            .iter_mut()
            .find(|(k, _, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v, used)| {
                *used = true;
                *v
            })
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(self.err(name, format!("expected a string, found {}", type_name(v)))),
        }
    }

    fn bool(&mut self, name: &str) -> Result<bool, ConfigError> {
        match self.take(name) {
            None => Ok(false),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(v) => Err(self.err(
                name,
                format!("expected true or false, found {}", type_name(v)),
            )),
        }
    }

    fn int(&mut self, name: &str) -> Result<Option<i64>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(*i)),
            Some(v) => Err(self.err(name, format!("expected an integer, found {}", type_name(v)))),
        }
    }

    /// Seconds; values <= 0 (and absence) give the default.
    fn seconds(&mut self, name: &str, default: Duration) -> Result<Duration, ConfigError> {
        Ok(match self.int(name)? {
            Some(s) if s > 0 => Duration::from_secs(s as u64),
            _ => default,
        })
    }

    fn ed25519_key(&mut self, name: &str) -> Result<Option<[u8; KEY_LEN]>, ConfigError> {
        let Some(text) = self.string(name)? else {
            return Ok(None);
        };
        let key = decode_key(&text).map_err(|e| self.err(name, e.to_string()))?;
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .map_err(|_| self.err(name, "not a valid Ed25519 public key"))?;
        Ok(Some(key))
    }

    fn finish(self) -> Result<(), ConfigError> {
        match self.entries.iter().find(|(_, _, used)| !used) {
            Some((k, _, _)) => Err(invalid(&self.section, k, "unknown field")),
            None => Ok(()),
        }
    }
}

fn socket_addr(f: &Fields<'_>, name: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| f.err(name, format!("not a literal IP:port address ({text:?})")))
}

fn absolute(f: &Fields<'_>, name: &str, text: &str) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(text);
    if text.is_empty() || !path.is_absolute() {
        return Err(f.err(name, format!("'{text}' is not an absolute path")));
    }
    Ok(path)
}

fn from_table(root: &Table) -> Result<Config, ConfigError> {
    const SECTIONS: [&str; 11] = [
        "Proxy",
        "Logging",
        "NonvotingAuthority",
        "VotingAuthority",
        "Account",
        "Management",
        "Debug",
        "Recipients",
        "Storage",
        "Limits",
        "UpstreamProxy",
    ];
    let mut sections: BTreeMap<&str, &Value> = BTreeMap::new();
    for (k, v) in root {
        match SECTIONS.iter().find(|s| s.eq_ignore_ascii_case(k)) {
            Some(s) if sections.contains_key(s) => {
                return Err(invalid(k, "", "defined twice (names are case-insensitive)"))
            }
            Some(s) => {
                sections.insert(s, v);
            }
            None if v.is_table() || v.is_array() => return Err(invalid(k, "", "unknown section")),
            None => {
                return Err(invalid(
                    "top level",
                    k,
                    "unknown key (every setting belongs in a section)",
                ))
            }
        }
    }
    let empty = Value::Table(Table::new());
    let get = |name: &str| sections.get(name).copied().unwrap_or(&empty);

    // [Debug] first: account and recipient normalisation depend on it.
    let debug = parse_debug(get("Debug"))?;
    let proxy = parse_proxy(sections.get("Proxy").copied())?;
    let logging = parse_logging(get("Logging"), &proxy.data_dir)?;
    let authorities = parse_authorities(get("NonvotingAuthority"))?;
    let voting_authorities = parse_voting_authorities(get("VotingAuthority"), &authorities)?;
    let no_accounts = Value::Array(Vec::new());
    let accounts = parse_accounts(
        sections.get("Account").copied().unwrap_or(&no_accounts),
        &authorities,
        &voting_authorities,
        &debug,
    )?;
    let management = parse_management(get("Management"), &proxy.data_dir)?;
    let recipients = parse_recipients(get("Recipients"), &debug)?;
    let storage = parse_storage(get("Storage"), &proxy.data_dir)?;
    let limits = parse_limits(get("Limits"), &proxy)?;
    let (upstream_proxy, prefered_transports) = parse_upstream_proxy(get("UpstreamProxy"))?;
    Ok(Config {
        proxy,
        logging,
        authorities,
        voting_authorities,
        accounts,
        management,
        debug,
        recipients,
        storage,
        limits,
        upstream_proxy,
        prefered_transports,
    })
}

fn parse_proxy(value: Option<&Value>) -> Result<ProxyConfig, ConfigError> {
    let Some(value) = value else {
        return Err(invalid("Proxy", "", "missing (DataDir is required)"));
    };
    let mut f = Fields::new("Proxy", value)?;
    let data_dir = match f.string("DataDir")? {
        Some(text) => absolute(&f, "DataDir", &text)?,
        None => return Err(f.err("DataDir", "missing (an absolute path is required)")),
    };
    let pop3 = f.string("POP3Address")?;
    let pop3_address = socket_addr(
        &f,
        "POP3Address",
        pop3.as_deref().unwrap_or(DEFAULT_POP3_ADDRESS),
    )?;
    let smtp = f.string("SMTPAddress")?;
    let smtp_address = socket_addr(
        &f,
        "SMTPAddress",
        smtp.as_deref().unwrap_or(DEFAULT_SMTP_ADDRESS),
    )?;
    let imap = f.string("IMAPAddress")?;
    let imap_address = socket_addr(
        &f,
        "IMAPAddress",
        imap.as_deref().unwrap_or(DEFAULT_IMAP_ADDRESS),
    )?;
    let recipient_dir = match f.string("RecipientDir")? {
        Some(text) => absolute(&f, "RecipientDir", &text)?,
        None => data_dir.join("recipients"),
    };
    let no_launch_listeners = f.bool("NoLaunchListeners")?;
    // Accepted for compatibility with v0.0.5-v0.0.6 configs; events are always on.
    let _ = f.bool("EnableEventSink")?;
    let max_message_size = match f.int("MaxMessageSize")? {
        None => DEFAULT_MAX_MESSAGE_SIZE,
        Some(n) if n > 0 => n as u64,
        Some(n) => {
            return Err(f.err(
                "MaxMessageSize",
                format!("must be a positive number of bytes, not {n}"),
            ))
        }
    };
    let allow_non_loopback = f.bool("AllowNonLoopback")?;
    let authentication = match f.string("Authentication")? {
        None => Authentication::Password,
        Some(s) if s.eq_ignore_ascii_case("password") => Authentication::Password,
        Some(s) if s.eq_ignore_ascii_case("none") => Authentication::None,
        Some(s) => {
            return Err(f.err(
                "Authentication",
                format!("'{s}' is not \"password\" (the default) or \"none\""),
            ))
        }
    };
    if !no_launch_listeners && !allow_non_loopback {
        for (name, addr) in [
            ("SMTPAddress", smtp_address),
            ("POP3Address", pop3_address),
            ("IMAPAddress", imap_address),
        ] {
            if !addr.ip().is_loopback() {
                return Err(f.err(
                    name,
                    format!(
                        "{addr} is not a loopback address; set AllowNonLoopback = true to expose the listener (and set a PasswordHash per account)"
                    ),
                ));
            }
        }
    }
    f.finish()?;
    Ok(ProxyConfig {
        pop3_address,
        smtp_address,
        imap_address,
        data_dir,
        recipient_dir,
        no_launch_listeners,
        max_message_size,
        allow_non_loopback,
        authentication,
    })
}

fn parse_logging(value: &Value, data_dir: &Path) -> Result<LoggingConfig, ConfigError> {
    let mut f = Fields::new("Logging", value)?;
    let disable = f.bool("Disable")?;
    let file = match f.string("File")? {
        None => None,
        Some(s) if s.is_empty() => None,
        Some(s) => {
            let p = PathBuf::from(&s);
            Some(if p.is_absolute() { p } else { data_dir.join(p) })
        }
    };
    let level = match f.string("Level")? {
        None => mailproxy_proto::Level::Info,
        Some(s) => crate::logging::parse_config_level(&s).ok_or_else(|| {
            f.err(
                "Level",
                format!("'{s}' is not one of {}", crate::logging::CONFIG_LEVELS),
            )
        })?,
    };
    f.finish()?;
    Ok(LoggingConfig {
        disable,
        file,
        level,
    })
}

/// The `[<kind>.<Name>]` tables of an authority section.
fn named_tables<'a>(value: &'a Value, kind: &str) -> Result<&'a Table, ConfigError> {
    value
        .as_table()
        .ok_or_else(|| invalid(kind, "", format!("expected [{kind}.<Name>] tables")))
}

fn parse_authorities(value: &Value) -> Result<BTreeMap<String, AuthorityConfig>, ConfigError> {
    let table = named_tables(value, "NonvotingAuthority")?;
    let mut out = BTreeMap::new();
    for (name, entry) in table {
        let section = format!("NonvotingAuthority.{name}");
        let mut f = Fields::new(section.clone(), entry)?;
        let address = f.string("Address")?.unwrap_or_default();
        check_address(&f, "Address", &address)?;
        let public_key = f
            .ed25519_key("PublicKey")?
            .ok_or_else(|| f.err("PublicKey", "missing"))?;
        f.finish()?;
        out.insert(
            name.clone(),
            AuthorityConfig {
                name: name.clone(),
                address,
                public_key,
            },
        );
    }
    Ok(out)
}

/// An authority address is not resolved (it may be an onion name), but it
/// must be one token.
fn check_address(f: &Fields<'_>, field: &str, address: &str) -> Result<(), ConfigError> {
    if address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(f.err(field, format!("{address:?} is not a host:port address")));
    }
    Ok(())
}

fn parse_voting_authorities(
    value: &Value,
    nonvoting: &BTreeMap<String, AuthorityConfig>,
) -> Result<BTreeMap<String, VotingAuthorityConfig>, ConfigError> {
    let table = named_tables(value, "VotingAuthority")?;
    let mut out = BTreeMap::new();
    for (name, entry) in table {
        let section = format!("VotingAuthority.{name}");
        if nonvoting.contains_key(name) {
            return Err(invalid(
                &section,
                "",
                format!("'{name}' is also a [NonvotingAuthority.{name}]; authority names must be unique"),
            ));
        }
        let mut f = Fields::new(section.clone(), entry)?;
        let peers = match f.take("Peers") {
            None => return Err(f.err("Peers", "missing")),
            Some(Value::Array(list)) if list.is_empty() => {
                return Err(f.err("Peers", "is empty (at least one peer is needed)"))
            }
            Some(Value::Array(list)) => list,
            Some(v) => {
                return Err(f.err(
                    "Peers",
                    format!("expected a list of peer tables, found {}", type_name(v)),
                ))
            }
        };
        f.finish()?;
        let mut parsed: Vec<VotingPeerConfig> = Vec::with_capacity(peers.len());
        for (i, peer) in peers.iter().enumerate() {
            let peer = parse_voting_peer(&format!("{section} Peers #{}", i + 1), peer)?;
            if parsed
                .iter()
                .any(|p| p.identity_public_key == peer.identity_public_key)
            {
                return Err(invalid(
                    &format!("{section} Peers #{}", i + 1),
                    "IdentityPublicKey",
                    "the same key as an earlier peer",
                ));
            }
            parsed.push(peer);
        }
        out.insert(
            name.clone(),
            VotingAuthorityConfig {
                name: name.clone(),
                peers: parsed,
            },
        );
    }
    Ok(out)
}

fn parse_voting_peer(section: &str, value: &Value) -> Result<VotingPeerConfig, ConfigError> {
    let mut f = Fields::new(section, value)?;
    let identity_public_key = f
        .ed25519_key("IdentityPublicKey")?
        .ok_or_else(|| f.err("IdentityPublicKey", "missing"))?;
    let link_public_key = match f.string("LinkPublicKey")? {
        Some(text) => decode_key(&text).map_err(|e| f.err("LinkPublicKey", e.to_string()))?,
        None => return Err(f.err("LinkPublicKey", "missing")),
    };
    let addresses = match f.take("Addresses") {
        None => return Err(f.err("Addresses", "missing")),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| match v {
                Value::String(s) if !s.is_empty() => {
                    check_address(&f, "Addresses", s).map(|()| s.clone())
                }
                Value::String(_) => Err(f.err("Addresses", "an address is empty")),
                v => Err(f.err(
                    "Addresses",
                    format!("expected address strings, found {}", type_name(v)),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(v) => {
            return Err(f.err(
                "Addresses",
                format!("expected a list of addresses, found {}", type_name(v)),
            ))
        }
    };
    if addresses.is_empty() {
        return Err(f.err("Addresses", "is empty (at least one address is needed)"));
    }
    f.finish()?;
    Ok(VotingPeerConfig {
        identity_public_key,
        link_public_key,
        addresses,
    })
}

/// Which authority an account uses: `VotingAuthority` names a voting entry,
/// `NonvotingAuthority` a nonvoting one, the old `Authority` either; with
/// none of them, the only authority configured.
fn account_authority(
    f: &mut Fields<'_>,
    nonvoting: &BTreeMap<String, AuthorityConfig>,
    voting: &BTreeMap<String, VotingAuthorityConfig>,
) -> Result<(String, AuthorityKind), ConfigError> {
    let by_alias = f.string("Authority")?;
    let by_name = f.string("NonvotingAuthority")?;
    let by_voting = f.string("VotingAuthority")?;
    let kind_of = |name: &str| {
        if nonvoting.contains_key(name) {
            Some(AuthorityKind::Nonvoting)
        } else if voting.contains_key(name) {
            Some(AuthorityKind::Voting)
        } else {
            None
        }
    };
    match (by_alias, by_name, by_voting) {
        (Some(_), Some(_), _) => Err(f.err(
            "Authority",
            "set either Authority or NonvotingAuthority, not both",
        )),
        (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => Err(f.err(
            "VotingAuthority",
            "set either VotingAuthority or NonvotingAuthority (Authority), not both",
        )),
        (Some(name), None, None) => match kind_of(&name) {
            Some(kind) => Ok((name, kind)),
            None if voting.is_empty() => Err(f.err(
                "Authority",
                format!("no [NonvotingAuthority.{name}] is defined"),
            )),
            None => Err(f.err(
                "Authority",
                format!("no [NonvotingAuthority.{name}] or [VotingAuthority.{name}] is defined"),
            )),
        },
        (None, Some(name), None) => match kind_of(&name) {
            Some(AuthorityKind::Nonvoting) => Ok((name, AuthorityKind::Nonvoting)),
            Some(AuthorityKind::Voting) => Err(f.err(
                "NonvotingAuthority",
                format!("'{name}' is a [VotingAuthority.{name}]: name it with VotingAuthority"),
            )),
            None => Err(f.err(
                "Authority",
                format!("no [NonvotingAuthority.{name}] is defined"),
            )),
        },
        (None, None, Some(name)) => match kind_of(&name) {
            Some(AuthorityKind::Voting) => Ok((name, AuthorityKind::Voting)),
            Some(AuthorityKind::Nonvoting) => Err(f.err(
                "VotingAuthority",
                format!("'{name}' is a [NonvotingAuthority.{name}]: name it with NonvotingAuthority"),
            )),
            None => Err(f.err(
                "VotingAuthority",
                format!("no [VotingAuthority.{name}] is defined"),
            )),
        },
        (None, None, None) => match (nonvoting.keys().next(), voting.keys().next()) {
            (Some(name), None) if nonvoting.len() == 1 => {
                Ok((name.clone(), AuthorityKind::Nonvoting))
            }
            (None, Some(name)) if voting.len() == 1 => Ok((name.clone(), AuthorityKind::Voting)),
            _ => Err(f.err(
                "Authority",
                "missing (name one of the [NonvotingAuthority.<Name>] or [VotingAuthority.<Name>] entries)",
            )),
        },
    }
}

fn parse_accounts(
    value: &Value,
    authorities: &BTreeMap<String, AuthorityConfig>,
    voting_authorities: &BTreeMap<String, VotingAuthorityConfig>,
    debug: &DebugConfig,
) -> Result<Vec<AccountConfig>, ConfigError> {
    let Some(array) = value.as_array() else {
        return Err(invalid("Account", "", "expected [[Account]] entries"));
    };
    let mut out: Vec<AccountConfig> = Vec::new();
    for (i, entry) in array.iter().enumerate() {
        let mut f = Fields::new(format!("Account #{}", i + 1), entry)?;
        let user = f.string("User")?.ok_or_else(|| f.err("User", "missing"))?;
        let user = normalize_user(&user, debug.case_sensitive_user_identifiers)
            .map_err(|e| f.err("User", e.to_string()))?;
        let provider = f
            .string("Provider")?
            .ok_or_else(|| f.err("Provider", "missing"))?;
        let provider =
            normalize_provider(&provider).map_err(|e| f.err("Provider", e.to_string()))?;
        let id = format!("{user}@{provider}");
        f.section = format!("Account {id}");
        let provider_key_pin = f.ed25519_key("ProviderKeyPin")?;
        let (authority, authority_kind) =
            account_authority(&mut f, authorities, voting_authorities)?;
        let insecure_key_discovery = f.bool("InsecureKeyDiscovery")?;
        let password_hash = f.string("PasswordHash")?;
        if let Some(phc) = &password_hash {
            crate::auth::validate_hash(phc).map_err(|e| f.err("PasswordHash", e.to_string()))?;
        }
        f.finish()?;
        if out.iter().any(|a| a.id == id) {
            return Err(invalid(
                &format!("Account {id}"),
                "",
                "defined more than once",
            ));
        }
        out.push(AccountConfig {
            user,
            provider,
            id,
            provider_key_pin,
            authority,
            authority_kind,
            insecure_key_discovery,
            password_hash,
        });
    }
    Ok(out)
}

fn parse_management(value: &Value, data_dir: &Path) -> Result<ManagementConfig, ConfigError> {
    let mut f = Fields::new("Management", value)?;
    let enable = f.bool("Enable")?;
    let path = match f.string("Path")? {
        Some(text) => absolute(&f, "Path", &text)?,
        None => data_dir.join("management_sock"),
    };
    // sun_path is 108 bytes including the NUL.
    if path.as_os_str().len() > 107 {
        return Err(f.err("Path", "longer than a Unix socket path may be (107 bytes)"));
    }
    f.finish()?;
    Ok(ManagementConfig { enable, path })
}

fn parse_limits(value: &Value, proxy: &ProxyConfig) -> Result<LimitsConfig, ConfigError> {
    use katzenpost::geometry::{BLOCK_LENGTH, BLOCK_PAYLOAD_LENGTH};
    // What one largest message takes while it is being reassembled: it must
    // fit within the per-sender bound, or it could never arrive.
    let largest =
        (proxy.max_message_size / BLOCK_PAYLOAD_LENGTH as u64 + 1) * (8 + BLOCK_LENGTH as u64);
    let d = LimitsConfig::default();
    let per_sender_default = d.partial_bytes_per_sender.max(largest.saturating_mul(2));
    let mut f = Fields::new("Limits", value)?;
    let mut positive = |name: &str, default: u64| -> Result<u64, ConfigError> {
        match f.int(name)? {
            None => Ok(default),
            Some(n) if n > 0 => Ok(n as u64),
            Some(_) => Err(f.err(name, "must be a positive integer")),
        }
    };
    let partial_messages = positive("PartialMessages", d.partial_messages)?;
    let partial_messages_per_sender =
        positive("PartialMessagesPerSender", d.partial_messages_per_sender)?;
    let partial_bytes_per_sender = positive("PartialBytesPerSender", per_sender_default)?;
    let partial_bytes = positive(
        "PartialBytes",
        d.partial_bytes.max(partial_bytes_per_sender),
    )?;
    if partial_bytes_per_sender < largest {
        return Err(f.err(
            "PartialBytesPerSender",
            format!(
                "{partial_bytes_per_sender} is too small: one message of MaxMessageSize ({}) takes {largest} bytes while it arrives",
                proxy.max_message_size
            ),
        ));
    }
    if partial_bytes < partial_bytes_per_sender {
        return Err(f.err("PartialBytes", "must be at least PartialBytesPerSender"));
    }
    if partial_messages < partial_messages_per_sender {
        return Err(f.err(
            "PartialMessages",
            "must be at least PartialMessagesPerSender",
        ));
    }
    f.finish()?;
    Ok(LimitsConfig {
        partial_messages,
        partial_bytes,
        partial_messages_per_sender,
        partial_bytes_per_sender,
    })
}

fn parse_debug(value: &Value) -> Result<DebugConfig, ConfigError> {
    let d = DebugConfig::default();
    let mut f = Fields::new("Debug", value)?;
    let receive_timeout = match f.int("ReceiveTimeout")? {
        Some(s) if s > 0 => Some(Duration::from_secs(s as u64)),
        _ => None,
    };
    let config = DebugConfig {
        receive_timeout,
        bounce_queue_lifetime: f.seconds("BounceQueueLifetime", d.bounce_queue_lifetime)?,
        urgent_queue_lifetime: f.seconds("UrgentQueueLifetime", d.urgent_queue_lifetime)?,
        polling_interval: f.seconds("PollingInterval", d.polling_interval)?,
        retransmit_slack: f.seconds("RetransmitSlack", d.retransmit_slack)?,
        case_sensitive_user_identifiers: f.bool("CaseSensitiveUserIdentifiers")?,
        send_decoy_traffic: f.bool("SendDecoyTraffic")?,
        generate_only: f.bool("GenerateOnly")?,
        epoch_period: match f.int("EpochPeriod")? {
            None => d.epoch_period,
            Some(s) if s > 0 => Duration::from_secs(s as u64),
            Some(_) => {
                return Err(f.err("EpochPeriod", "must be a positive number of seconds"));
            }
        },
    };
    f.finish()?;
    Ok(config)
}

fn parse_recipients(
    value: &Value,
    debug: &DebugConfig,
) -> Result<BTreeMap<String, [u8; KEY_LEN]>, ConfigError> {
    let Some(table) = value.as_table() else {
        return Err(invalid(
            "Recipients",
            "",
            "expected a table of \"user@provider\" = \"key\"",
        ));
    };
    let mut out = BTreeMap::new();
    for (addr, v) in table {
        let field = format!("\"{addr}\"");
        let err = |p: String| invalid("Recipients", &field, p);
        let Value::String(text) = v else {
            return Err(err(format!(
                "expected a key string, found {}",
                type_name(v)
            )));
        };
        let normalised = normalize_address(addr, debug.case_sensitive_user_identifiers)
            .map_err(|e| err(e.to_string()))?;
        let key = decode_key(text).map_err(|e| err(e.to_string()))?;
        if out.insert(normalised.clone(), key).is_some() {
            return Err(err(format!("'{normalised}' is listed more than once")));
        }
    }
    Ok(out)
}

fn parse_storage(value: &Value, data_dir: &Path) -> Result<StorageConfig, ConfigError> {
    let mut f = Fields::new("Storage", value)?;
    let file = f.string("PassphraseFile")?;
    let env = f.string("PassphraseEnv")?;
    let passphrase = match (file, env) {
        (Some(_), Some(_)) => {
            return Err(f.err(
                "PassphraseFile",
                "set at most one of PassphraseFile and PassphraseEnv",
            ))
        }
        (Some(file), None) => {
            if file.is_empty() {
                return Err(f.err("PassphraseFile", "is empty"));
            }
            let p = PathBuf::from(&file);
            Some(PassphraseSource::File(if p.is_absolute() {
                p
            } else {
                data_dir.join(p)
            }))
        }
        (None, Some(name)) => {
            let valid = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(f.err(
                    "PassphraseEnv",
                    format!("'{name}' is not an environment variable name"),
                ));
            }
            Some(PassphraseSource::Env(name))
        }
        (None, None) => None,
    };
    f.finish()?;
    Ok(StorageConfig { passphrase })
}

fn parse_upstream_proxy(
    value: &Value,
) -> Result<(Option<UpstreamProxyConfig>, Vec<String>), ConfigError> {
    let mut f = Fields::new("UpstreamProxy", value)?;
    let kind = match f.string("Type")? {
        None => None,
        Some(t) if t.eq_ignore_ascii_case("none") => None,
        Some(t) if t.eq_ignore_ascii_case("socks5") => Some(UpstreamProxyKind::Socks5),
        Some(t) if t.eq_ignore_ascii_case("tor+socks5") => Some(UpstreamProxyKind::TorSocks5),
        Some(t) => {
            return Err(f.err(
                "Type",
                format!("'{t}' is not one of none, socks5, tor+socks5"),
            ))
        }
    };
    let network = f.string("Network")?;
    let address = f.string("Address")?;
    let user = f.string("User")?;
    let password = f.string("Password")?;
    let transports = match f.take("PreferedTransports") {
        None => DEFAULT_TRANSPORTS.iter().map(|t| t.to_string()).collect(),
        Some(Value::Array(list)) => {
            let mut out: Vec<String> = Vec::new();
            for v in list {
                match v {
                    Value::String(t) if !t.is_empty() && !out.contains(t) => out.push(t.clone()),
                    Value::String(t) if t.is_empty() => {
                        return Err(f.err("PreferedTransports", "a transport name is empty"))
                    }
                    Value::String(t) => {
                        return Err(f.err(
                            "PreferedTransports",
                            format!("'{t}' is listed more than once"),
                        ))
                    }
                    v => {
                        return Err(f.err(
                            "PreferedTransports",
                            format!("expected transport names, found {}", type_name(v)),
                        ))
                    }
                }
            }
            if out.is_empty() {
                return Err(f.err(
                    "PreferedTransports",
                    "is empty (at least one transport is needed)",
                ));
            }
            out
        }
        Some(v) => {
            return Err(f.err(
                "PreferedTransports",
                format!("expected a list of transport names, found {}", type_name(v)),
            ))
        }
    };
    let Some(kind) = kind else {
        f.finish()?;
        return Ok((None, transports));
    };
    let address = match address {
        Some(a) if !a.is_empty() => a,
        _ => return Err(f.err("Address", "missing (the SOCKS5 server's address)")),
    };
    let network = network.unwrap_or_else(|| "tcp".to_owned());
    let address = if network.eq_ignore_ascii_case("tcp") {
        UpstreamProxyAddress::Tcp(socket_addr(&f, "Address", &address)?)
    } else if network.eq_ignore_ascii_case("unix") {
        let path = absolute(&f, "Address", &address)?;
        if !path.exists() {
            return Err(f.err(
                "Address",
                format!("the socket '{}' does not exist", path.display()),
            ));
        }
        UpstreamProxyAddress::Unix(path)
    } else {
        return Err(f.err("Network", format!("'{network}' is not one of tcp, unix")));
    };
    let credentials = match (user, password) {
        (None, None) => None,
        (Some(_), _) | (_, Some(_)) if kind == UpstreamProxyKind::TorSocks5 => {
            return Err(f.err(
                "User",
                "User and Password are not allowed with tor+socks5 (the proxy isolates streams with its own)",
            ))
        }
        (Some(u), Some(p)) => {
            for (name, v) in [("User", &u), ("Password", &p)] {
                if v.is_empty() || v.len() > 255 {
                    return Err(f.err(name, "must be 1 to 255 bytes"));
                }
            }
            Some((u, p))
        }
        (Some(_), None) => return Err(f.err("Password", "missing (User is set)")),
        (None, Some(_)) => return Err(f.err("User", "missing (Password is set)")),
    };
    f.finish()?;
    Ok((
        Some(UpstreamProxyConfig {
            kind,
            address,
            credentials,
        }),
        transports,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTH_KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn minimal() -> String {
        format!(
            "[Proxy]\nDataDir = \"/tmp/x\"\n[NonvotingAuthority.Test]\nAddress = \"127.0.0.1:62472\"\nPublicKey = \"{AUTH_KEY}\"\n[[Account]]\nUser = \"Alice\"\nProvider = \"Example.ORG\"\nAuthority = \"Test\"\n"
        )
    }

    #[test]
    fn defaults() {
        let c = Config::parse(&minimal()).unwrap();
        assert_eq!(c.proxy.pop3_address, "127.0.0.1:2524".parse().unwrap());
        assert_eq!(c.proxy.imap_address, "127.0.0.1:2143".parse().unwrap());
        assert_eq!(c.proxy.smtp_address, "127.0.0.1:2525".parse().unwrap());
        assert_eq!(c.proxy.recipient_dir, PathBuf::from("/tmp/x/recipients"));
        assert_eq!(c.proxy.max_message_size, 26_214_400);
        assert!(!c.proxy.allow_non_loopback);
        assert_eq!(c.proxy.authentication, Authentication::Password);
        assert_eq!(c.management.path, PathBuf::from("/tmp/x/management_sock"));
        assert!(!c.management.enable);
        assert_eq!(c.logging.level, mailproxy_proto::Level::Info);
        assert_eq!(c.logging.file, None);
        assert_eq!(c.debug, DebugConfig::default());
        assert_eq!(c.accounts[0].id, "alice@example.org");
        assert_eq!(c.accounts[0].authority, "Test");
        assert_eq!(c.storage.passphrase, None);
        assert_eq!(c.upstream_proxy, None);
        assert_eq!(c.prefered_transports, ["tcp", "tcp4", "tcp6"]);
    }

    #[test]
    fn upstream_proxy_section() {
        let c = Config::parse(&format!(
            "{}[UpstreamProxy]\nType = \"SOCKS5\"\nAddress = \"127.0.0.1:1080\"\nUser = \"u\"\nPassword = \"p\"\nPreferedTransports = [\"onion\", \"tcp4\"]\n",
            minimal()
        ))
        .unwrap();
        let p = c.upstream_proxy.unwrap();
        assert_eq!(p.kind, UpstreamProxyKind::Socks5);
        assert_eq!(
            p.address,
            UpstreamProxyAddress::Tcp("127.0.0.1:1080".parse().unwrap())
        );
        assert_eq!(p.credentials, Some(("u".into(), "p".into())));
        assert!(!format!("{p:?}").contains("\"p\""));
        assert_eq!(c.prefered_transports, ["onion", "tcp4"]);
        let c = Config::parse(&format!(
            "{}[UpstreamProxy]\nType = \"none\"\nPreferedTransports = [\"tcp6\"]\n",
            minimal()
        ))
        .unwrap();
        assert_eq!(c.upstream_proxy, None);
        assert_eq!(c.prefered_transports, ["tcp6"]);
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("tor.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let c = Config::parse(&format!(
            "{}[UpstreamProxy]\nType = \"tor+socks5\"\nNetwork = \"unix\"\nAddress = \"{}\"\n",
            minimal(),
            sock.display()
        ))
        .unwrap();
        let p = c.upstream_proxy.unwrap();
        assert_eq!(p.kind, UpstreamProxyKind::TorSocks5);
        assert_eq!(p.address, UpstreamProxyAddress::Unix(sock));
    }

    #[test]
    fn authentication_is_password_or_none() {
        let with = |v: &str| {
            minimal().replace("[Proxy]\n", &format!("[Proxy]\nAuthentication = \"{v}\"\n"))
        };
        let c = Config::parse(&with("None")).unwrap();
        assert_eq!(c.proxy.authentication, Authentication::None);
        let c = Config::parse(&with("password")).unwrap();
        assert_eq!(c.proxy.authentication, Authentication::Password);
        let e = Config::parse(&with("off")).unwrap_err().to_string();
        assert_eq!(
            e,
            "config: [Proxy] Authentication: 'off' is not \"password\" (the default) or \"none\""
        );
    }

    #[test]
    fn zero_accounts_and_only_proxy_is_legal() {
        let c = Config::parse("[Proxy]\nDataDir = \"/tmp/x\"\n").unwrap();
        assert!(c.accounts.is_empty());
        assert!(c.authorities.is_empty());
        assert!(c.recipients.is_empty());
    }

    #[test]
    fn case_insensitive_keys_and_alias() {
        let text = minimal()
            .replace("DataDir", "datadir")
            .replace("Authority = \"Test\"", "NonvotingAuthority = \"Test\"");
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.accounts[0].authority, "Test");
    }

    #[test]
    fn debug_knobs_non_positive_become_defaults() {
        let text = format!(
            "{}[Debug]\nPollingInterval = 0\nRetransmitSlack = -5\nBounceQueueLifetime = 10\nReceiveTimeout = -1\nUrgentQueueLifetime = 7\n",
            minimal()
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.debug.polling_interval, Duration::from_secs(30));
        assert_eq!(c.debug.retransmit_slack, Duration::from_secs(300));
        assert_eq!(c.debug.bounce_queue_lifetime, Duration::from_secs(10));
        assert_eq!(c.debug.urgent_queue_lifetime, Duration::from_secs(7));
        assert_eq!(c.debug.receive_timeout, None);
        assert_eq!(c.debug.epoch_period, Duration::from_secs(10_800));
    }

    #[test]
    fn epoch_period_is_a_test_network_knob() {
        let c = Config::parse(&format!("{}[Debug]\nEpochPeriod = 600\n", minimal())).unwrap();
        assert_eq!(c.debug.epoch_period, Duration::from_secs(600));
        let e = Config::parse(&format!("{}[Debug]\nEpochPeriod = -1\n", minimal())).unwrap_err();
        assert!(e.to_string().contains("EpochPeriod"), "{e}");
    }

    #[test]
    fn relative_log_file_is_under_data_dir() {
        let text = format!(
            "{}[Logging]\nFile = \"log.txt\"\nLevel = \"debug\"\n",
            minimal()
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.logging.file, Some(PathBuf::from("/tmp/x/log.txt")));
        assert_eq!(c.logging.level, mailproxy_proto::Level::Debug);
    }

    #[test]
    fn errors_are_one_line_with_section_and_field() {
        let text = minimal().replace("[[Account]]", "[[Account]]\nBogus = 1");
        let e = Config::parse(&text).unwrap_err().to_string();
        assert_eq!(
            e,
            "config: [Account alice@example.org] Bogus: unknown field"
        );
        let e = Config::parse("[Proxy]\nDataDir = \"rel\"\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "config: [Proxy] DataDir: 'rel' is not an absolute path");
        let e = Config::parse("[Proxy\n").unwrap_err().to_string();
        assert!(e.starts_with("config: line 1: "), "{e}");
        assert!(!e.contains('\n'));
    }
}
