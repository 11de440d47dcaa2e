//! `mailproxyd -r`: register a new account with its provider over HTTP, as
//! the original's `-r` did: create the data dir, generate the keys, write
//! the config (refusing to overwrite one), then POST
//! `version=0&command=register_link_and_identity_key&user=…&link_key=…&identity_key=…`
//! (base64 keys) to `/registration`, through the `[UpstreamProxy]` written
//! (with `-onion`: Tor). The HTTP exchange runs over a stream from
//! [`crate::engine::Upstream`], so host names go to the proxy unresolved.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::config::Config;
use crate::engine::{BoxStream, Upstream};
use crate::keys::AccountKeys;
use crate::recipients::{normalize_provider, normalize_user};

/// The name the written config gives the authority (as the original did).
pub const AUTHORITY_NAME: &str = "PlaygroundAuthority";
/// The config file written into the data dir.
pub const CONFIG_FILE: &str = "mailproxy.toml";
/// Time limit on the whole HTTP exchange.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read.
const MAX_ANSWER: usize = 4096;

/// The `-r` options.
#[derive(Debug, Clone)]
pub struct Registration {
    /// `-account`: the user name.
    pub account: String,
    /// `-provider`: the provider's name.
    pub provider: String,
    /// `-providerKey`: the provider's Ed25519 key (pinned in the config).
    pub provider_key: String,
    /// `-authority`: the nonvoting authority's `host:port`.
    pub authority: String,
    /// `-authorityKey`: its Ed25519 key.
    pub authority_key: String,
    /// `-registrationAddr`: the provider's registration `host:port`.
    pub registration_addr: String,
    /// `-registrationWithoutHttps`: plain HTTP (test networks).
    pub without_https: bool,
    /// `-registrationCA`: also trust this CA certificate file (PEM; test
    /// networks), besides the system's roots.
    pub ca_file: Option<PathBuf>,
    /// `-onion`: reach everything through Tor (`tor+socks5`, onion transport).
    pub onion: bool,
    /// `-torSocksAddr`: Tor's SOCKS5 `IP:port`.
    pub tor_socks_addr: String,
    /// `-dataDir`: the new data directory (absolute).
    pub data_dir: PathBuf,
}

/// Why a registration failed: one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// An option is unusable (the config it would give is invalid).
    #[error("registration: {0}")]
    Options(String),
    /// Something is already there.
    #[error("registration: {0} already exists; refusing to overwrite it")]
    Exists(PathBuf),
    /// A file could not be written.
    #[error("registration: {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The keys could not be generated.
    #[error("registration: {0}")]
    Keys(#[from] crate::keys::KeyError),
    /// The provider could not be reached or spoke no HTTP.
    #[error("registration: cannot reach {addr}: {problem}")]
    Unreachable {
        /// The registration address.
        addr: String,
        /// Why.
        problem: String,
    },
    /// The provider refused.
    #[error("registration: the provider refused ({status}): {answer}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its answer's first line.
        answer: String,
    },
}

impl Registration {
    /// The config this registration writes.
    pub fn config_text(&self) -> String {
        let mut text = format!(
            "# Written by mailproxyd -r.\n[Proxy]\nDataDir = {data_dir:?}\n\n\
             [NonvotingAuthority.{AUTHORITY_NAME}]\nAddress = {authority:?}\nPublicKey = {authority_key:?}\n\n\
             [[Account]]\nUser = {user:?}\nProvider = {provider:?}\nProviderKeyPin = {provider_key:?}\n\
             Authority = \"{AUTHORITY_NAME}\"\nInsecureKeyDiscovery = true\n",
            data_dir = self.data_dir.display().to_string(),
            authority = self.authority,
            authority_key = self.authority_key,
            user = self.account,
            provider = self.provider,
            provider_key = self.provider_key,
        );
        if self.onion {
            text += &format!(
                "\n[UpstreamProxy]\nType = \"tor+socks5\"\nNetwork = \"tcp\"\nAddress = {:?}\nPreferedTransports = [\"onion\"]\n",
                self.tor_socks_addr
            );
        }
        text
    }

    /// Registers: returns the config file written.
    pub async fn run(&self) -> Result<PathBuf, RegisterError> {
        let tls = match self.without_https {
            true => None,
            false => Some(self.tls_connector()?),
        };
        let text = self.config_text();
        let config = Config::parse(&text).map_err(|e| RegisterError::Options(e.to_string()))?;
        let path = self.data_dir.join(CONFIG_FILE);
        let (keys, key_dir) = self.prepare(&path, &text)?;
        let upstream = Upstream::new(config.upstream_proxy, config.prefered_transports);
        if let Err(e) = self.post(&upstream, tls, &keys).await {
            // Not registered: leave nothing that would block a retry.
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_dir_all(&key_dir);
            return Err(e);
        }
        Ok(path)
    }

    /// Creates the data dir and the account's keys (returned with their
    /// directory), and writes the config; refuses if the config or the keys
    /// exist.
    fn prepare(&self, path: &Path, text: &str) -> Result<(AccountKeys, PathBuf), RegisterError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| RegisterError::Io { path, source }
        };
        crate::keys::ensure_private_dir(&self.data_dir).map_err(io(&self.data_dir))?;
        if path.exists() {
            return Err(RegisterError::Exists(path.to_owned()));
        }
        let user = normalize_user(&self.account, false)
            .map_err(|e| RegisterError::Options(format!("-account: {e}")))?;
        let provider = normalize_provider(&self.provider)
            .map_err(|e| RegisterError::Options(format!("-provider: {e}")))?;
        let key_dir = self.data_dir.join(format!("{user}@{provider}"));
        if key_dir.exists() {
            return Err(RegisterError::Exists(key_dir));
        }
        let (keys, _) = AccountKeys::load_or_generate(&key_dir)?;
        crate::keys::write_file_atomic(path, text.as_bytes()).map_err(io(path))?;
        Ok((keys, key_dir))
    }

    /// The form posted.
    fn form(&self, keys: &AccountKeys) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("version", "0")
            .append_pair("command", "register_link_and_identity_key")
            .append_pair("user", &self.account)
            .append_pair("link_key", &STANDARD.encode(keys.link_public()))
            .append_pair("identity_key", &STANDARD.encode(keys.identity_public()))
            .finish()
    }

    /// HTTPS: the system's roots, plus `-registrationCA`.
    fn tls_connector(&self) -> Result<tokio_rustls::TlsConnector, RegisterError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(path) = &self.ca_file {
            let bad = |e: String| {
                RegisterError::Options(format!("-registrationCA {}: {e}", path.display()))
            };
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(e.to_string()))?;
            if certs.is_empty() {
                return Err(bad("no certificate in the file".into()));
            }
            for c in certs {
                roots.add(c).map_err(|e| bad(e.to_string()))?;
            }
        }
        // ring rather than aws-lc-rs (no cmake build); deprecated in rustls
        // 0.23.48 only for lacking post-quantum key exchange.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| RegisterError::Options(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    async fn post(
        &self,
        upstream: &Upstream,
        tls: Option<tokio_rustls::TlsConnector>,
        keys: &AccountKeys,
    ) -> Result<(), RegisterError> {
        let addr = self.registration_addr.clone();
        let unreachable = |problem: String| RegisterError::Unreachable {
            addr: addr.clone(),
            problem,
        };
        let exchange = async {
            let mut stream = upstream
                .connect(&addr, "registration", TIMEOUT)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            if let Some(tls) = tls {
                let host = host_of(&addr);
                let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                    .map_err(|e| unreachable(format!("'{host}': {e}")))?;
                let secured = tls
                    .connect(name, stream)
                    .await
                    .map_err(|e| unreachable(format!("TLS: {e}")))?;
                stream = Box::new(secured) as BoxStream;
            }
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let driver = tokio::spawn(conn);
            let request = hyper::Request::post(PATH)
                .header(hyper::header::HOST, addr.as_str())
                .header(
                    hyper::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(Full::new(Bytes::from(self.form(keys))))
                .map_err(|e| unreachable(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            driver.abort();
            Ok::<_, RegisterError>((status, body))
        };
        let (status, body) = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable("timed out".into()))??;
        let answer = String::from_utf8_lossy(&body)
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect::<String>();
        if status.is_success() {
            return Ok(());
        }
        Err(RegisterError::Refused {
            status: status.as_u16(),
            answer,
        })
    }
}

/// The host part of `host:port` (`[v6]:port` too).
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

/// The path registrations are posted to.
pub const PATH: &str = "/registration";
