//! How the engine reaches the network: directly, or through the
//! `[UpstreamProxy]` SOCKS5 server (tokio-socks). With a proxy, host names
//! go to the proxy as SOCKS5 domain names and are never resolved here; with
//! `tor+socks5`, each tag (an account, an authority) gets its own SOCKS user
//! name so that Tor puts its streams on their own circuits.

use std::time::Duration;

use katzenpost::pki::document::MixDescriptor;
use rand::RngCore;
use sha2::Digest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio_socks::tcp::Socks5Stream;

use super::EngineError;
use crate::config::{UpstreamProxyAddress, UpstreamProxyConfig, UpstreamProxyKind};

/// A byte stream to a peer (direct TCP, or through the proxy).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A boxed [`Stream`].
pub type BoxStream = Box<dyn Stream>;

/// The prefix of tor+socks5 isolation user names (as the original daemon).
const ISOLATION_PREFIX: &str = "katzenpost/mailproxy";

/// How outgoing connections are made; one per process (its isolation tag
/// is per process), shared by every account's engine.
#[derive(Clone)]
pub struct Upstream {
    proxy: Option<UpstreamProxyConfig>,
    transports: Vec<String>,
    process_tag: [u8; 8],
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("proxy", &self.proxy)
            .field("transports", &self.transports)
            .finish_non_exhaustive()
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream::direct()
    }
}

impl Upstream {
    /// Direct connections, default transports.
    pub fn direct() -> Upstream {
        Upstream::new(
            None,
            crate::config::DEFAULT_TRANSPORTS
                .iter()
                .map(|t| t.to_string())
                .collect(),
        )
    }

    /// Through `proxy` (if any), dialing descriptor transports in the order
    /// of `transports`.
    pub fn new(proxy: Option<UpstreamProxyConfig>, transports: Vec<String>) -> Upstream {
        let mut process_tag = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut process_tag);
        Upstream {
            proxy,
            transports,
            process_tag,
        }
    }

    /// The first address of a descriptor in a preferred transport.
    pub(super) fn descriptor_address(&self, desc: &MixDescriptor) -> Option<String> {
        self.transports
            .iter()
            .filter_map(|t| desc.addresses.get(t))
            .flat_map(|v| v.iter())
            .next()
            .cloned()
    }

    /// The tor+socks5 credentials isolating `tag`: user
    /// `katzenpost/mailproxy:<process tag hex>:<hex of the first 16 bytes of
    /// SHA-512/256(tag)>`, password one NUL byte.
    fn isolation(&self, tag: &str) -> (String, String) {
        let digest = sha2::Sha512_256::digest(tag.as_bytes());
        let user = format!(
            "{ISOLATION_PREFIX}:{}:{}",
            hex::encode(self.process_tag),
            hex::encode(&digest[..16])
        );
        (user, "\0".to_owned())
    }

    /// Connects to `target` (`host:port`), through the proxy if one is
    /// configured; `tag` isolates the stream under tor+socks5.
    pub(crate) async fn connect(
        &self,
        target: &str,
        tag: &str,
        timeout: Duration,
    ) -> Result<BoxStream, EngineError> {
        tokio::time::timeout(timeout, self.connect_now(target, tag))
            .await
            .map_err(|_| EngineError::Timeout("connect"))?
    }

    async fn connect_now(&self, target: &str, tag: &str) -> Result<BoxStream, EngineError> {
        let Some(proxy) = &self.proxy else {
            let stream =
                TcpStream::connect(target)
                    .await
                    .map_err(|source| EngineError::Connect {
                        addr: target.to_string(),
                        source,
                    })?;
            let _ = stream.set_nodelay(true);
            return Ok(Box::new(stream));
        };
        let unreachable = |source| EngineError::ProxyUnreachable {
            proxy: proxy.address.to_string(),
            source,
        };
        let socket: BoxStream = match &proxy.address {
            UpstreamProxyAddress::Tcp(addr) => {
                let s = TcpStream::connect(addr).await.map_err(unreachable)?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            UpstreamProxyAddress::Unix(path) => {
                Box::new(UnixStream::connect(path).await.map_err(unreachable)?)
            }
        };
        let credentials = match proxy.kind {
            UpstreamProxyKind::TorSocks5 => Some(self.isolation(tag)),
            UpstreamProxyKind::Socks5 => proxy.credentials.clone(),
        };
        // A &str target that is not a literal IP:port goes as a domain name.
        let connected = match &credentials {
            None => Socks5Stream::connect_with_socket(socket, target).await,
            Some((user, password)) => {
                Socks5Stream::connect_with_password_and_socket(socket, target, user, password).await
            }
        };
        let stream = connected.map_err(|e| EngineError::Proxy {
            addr: target.to_string(),
            proxy: proxy.address.to_string(),
            problem: e.to_string(),
        })?;
        Ok(Box::new(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(kind: UpstreamProxyKind, addr: std::net::SocketAddr) -> Upstream {
        Upstream::new(
            Some(UpstreamProxyConfig {
                kind,
                address: UpstreamProxyAddress::Tcp(addr),
                credentials: None,
            }),
            vec!["tcp".into()],
        )
    }

    fn tor() -> Upstream {
        proxy(UpstreamProxyKind::TorSocks5, "127.0.0.1:9".parse().unwrap())
    }

    #[test]
    fn isolation_user_names_follow_the_original_scheme() {
        let u = tor();
        let (user, password) = u.isolation("account:alice@example.org");
        assert_eq!(password, "\0");
        let parts: Vec<&str> = user.split(':').collect();
        assert_eq!(parts.len(), 3, "{user}");
        assert_eq!(parts[0], "katzenpost/mailproxy");
        assert_eq!(parts[1], hex::encode(u.process_tag));
        let digest = sha2::Sha512_256::digest(b"account:alice@example.org");
        assert_eq!(parts[2], hex::encode(&digest[..16]));
        assert_eq!(parts[2].len(), 32);
        // Another tag, another user name; another process, another tag.
        assert_ne!(u.isolation("voting").0, user);
        assert_ne!(tor().isolation("account:alice@example.org").0, user);
    }

    #[test]
    fn descriptor_transports_are_dialed_in_preference_order() {
        let mut desc = MixDescriptor::default();
        desc.addresses
            .insert("tcp4".into(), vec!["192.0.2.1:29483".into()]);
        desc.addresses
            .insert("onion".into(), vec!["abcdefghijklmnop.onion:29483".into()]);
        let pick = |t: &[&str]| {
            Upstream::new(None, t.iter().map(|s| s.to_string()).collect()).descriptor_address(&desc)
        };
        assert_eq!(
            pick(&["onion", "tcp4"]).as_deref(),
            Some("abcdefghijklmnop.onion:29483")
        );
        assert_eq!(pick(&["tcp", "tcp4"]).as_deref(), Some("192.0.2.1:29483"));
        assert_eq!(pick(&["tcp6"]), None);
        assert_eq!(
            Upstream::direct().descriptor_address(&desc).as_deref(),
            Some("192.0.2.1:29483")
        );
    }

    /// What a client sent in one SOCKS5 CONNECT.
    struct Request {
        /// User name and password, if it authenticated.
        credentials: Option<(Vec<u8>, Vec<u8>)>,
        /// Address type and address bytes (with the port).
        atyp: u8,
        addr: Vec<u8>,
    }

    /// A minimal SOCKS5 server side for one CONNECT; it picks
    /// user/password authentication when offered (as Tor does).
    async fn socks_accept(listener: tokio::net::TcpListener) -> Request {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.unwrap();
        let mut methods = vec![0u8; head[1] as usize];
        s.read_exact(&mut methods).await.unwrap();
        let credentials = if methods.contains(&2) {
            s.write_all(&[5, 2]).await.unwrap();
            async fn field(s: &mut tokio::net::TcpStream) -> Vec<u8> {
                let mut len = [0u8; 1];
                s.read_exact(&mut len).await.unwrap();
                let mut v = vec![0u8; len[0] as usize];
                s.read_exact(&mut v).await.unwrap();
                v
            }
            let mut version = [0u8; 1];
            s.read_exact(&mut version).await.unwrap();
            let user = field(&mut s).await;
            let password = field(&mut s).await;
            s.write_all(&[1, 0]).await.unwrap();
            Some((user, password))
        } else {
            s.write_all(&[5, 0]).await.unwrap();
            None
        };
        let mut req = [0u8; 4];
        s.read_exact(&mut req).await.unwrap();
        let len = match req[3] {
            3 => {
                let mut len = [0u8; 1];
                s.read_exact(&mut len).await.unwrap();
                len[0] as usize + 2
            }
            1 => 6,
            t => panic!("address type {t}"),
        };
        let mut addr = vec![0u8; len];
        s.read_exact(&mut addr).await.unwrap();
        s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
        Request {
            credentials,
            atyp: req[3],
            addr,
        }
    }

    /// Connects to `target` as `tag` through a proxy of `kind` served by
    /// [`socks_accept`]: the upstream used and what the proxy received.
    async fn through_proxy(
        kind: UpstreamProxyKind,
        target: &str,
        tag: &str,
    ) -> (Upstream, Request) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(socks_accept(listener));
        let u = proxy(kind, addr);
        u.connect(target, tag, Duration::from_secs(5))
            .await
            .unwrap();
        (u, server.await.unwrap())
    }

    #[tokio::test]
    async fn tor_streams_carry_the_isolation_user_name_of_their_tag() {
        let (u, req) = through_proxy(
            UpstreamProxyKind::TorSocks5,
            "192.0.2.7:29483",
            "account:bob@provider2",
        )
        .await;
        let (user, password) = u.isolation("account:bob@provider2");
        assert_eq!(
            req.credentials,
            Some((user.into_bytes(), password.into_bytes()))
        );
        assert_eq!(req.atyp, 1, "a literal IPv4 address");
        assert_eq!(req.addr, [192, 0, 2, 7, 0x73, 0x2b]);
    }

    #[tokio::test]
    async fn host_names_go_to_the_proxy_unresolved() {
        let onion = "abcdefghijklmnop.onion";
        let (_, req) =
            through_proxy(UpstreamProxyKind::Socks5, &format!("{onion}:29483"), "t").await;
        assert_eq!(req.credentials, None);
        assert_eq!(req.atyp, 3, "a domain-name address");
        let bytes = req.addr;
        assert_eq!(&bytes[..bytes.len() - 2], onion.as_bytes());
        assert_eq!(&bytes[bytes.len() - 2..], &29483u16.to_be_bytes());
    }

    #[tokio::test]
    async fn a_proxy_that_is_down_is_named_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let u = proxy(UpstreamProxyKind::Socks5, addr);
        let e = u
            .connect("provider.example:29483", "t", Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, EngineError::ProxyUnreachable { .. }), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("upstream proxy {addr} is unreachable")),
            "{text}"
        );
    }
}
