//! A provider's HTTP registration endpoint (as the 2019 provider served it
//! for `mailproxy -r`): `POST /registration` with the form
//! `version=0&command=register_link_and_identity_key&user=…&link_key=…&identity_key=…`
//! (base64 X25519 keys) registers the user exactly as ADD_USER and
//! SET_USER_IDENTITY on the management socket would. Off unless started.
//! One port serves both HTTPS (a certificate for 127.0.0.1 and localhost
//! from the network's own CA, [`CA_FILE`] in the network directory) and
//! plain HTTP (for `-registrationWithoutHttps`): a connection whose first
//! byte is a TLS handshake record gets TLS.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::node::provider::{ProviderState, RegisterError};
use crate::node::Node;

/// The network's registration CA certificate (PEM), in the network directory.
pub const CA_FILE: &str = "registration-ca.pem";
/// The providers' registration certificate and key (PEM), signed by the CA.
const CERT_FILE: &str = "registration-cert.pem";
const KEY_FILE: &str = "registration-key.pem";

/// Creates the network's registration CA and the providers' certificate
/// (for 127.0.0.1 and localhost) in `dir`, unless they exist.
pub fn ensure_tls(dir: &Path) -> Result<(), String> {
    if dir.join(CERT_FILE).exists() && dir.join(KEY_FILE).exists() && dir.join(CA_FILE).exists() {
        return Ok(());
    }
    let err = |e: rcgen::Error| format!("registration certificate: {e}");
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        "mailproxy testnet registration CA",
    );
    let ca = ca.self_signed(&ca_key).map_err(err)?;
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(err)?
            .signed_by(&key, &ca, &ca_key)
            .map_err(err)?;
    for (name, text) in [
        (KEY_FILE, key.serialize_pem()),
        (CERT_FILE, cert.pem()),
        (CA_FILE, ca.pem()),
    ] {
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
    }
    Ok(())
}

/// The TLS server configuration from the files [`ensure_tls`] wrote.
pub fn tls_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(dir.join(CERT_FILE))
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", dir.join(CERT_FILE).display()))?;
    let key = PrivateKeyDer::from_pem_file(dir.join(KEY_FILE))
        .map_err(|e| format!("{}: {e}", dir.join(KEY_FILE).display()))?;
    // ring rather than aws-lc-rs (no cmake build); deprecated in rustls
    // 0.23.48 only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}

/// The path served.
pub const PATH: &str = "/registration";
/// Largest form accepted.
const MAX_BODY: usize = 4096;

/// Serves registrations for the provider `node` on `listener` (HTTPS with
/// `tls`, and plain HTTP) until the task is aborted (nothing if `node` is
/// not a provider).
pub async fn serve(node: Arc<Node>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    if node.provider.is_none() {
        return;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let node = node.clone();
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let node = node.clone();
                        async move {
                            let provider = node.provider.as_ref().expect("a provider");
                            Ok::<_, std::convert::Infallible>(handle(provider, req).await)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let mut first = [0u8; 1];
                    // 0x16: a TLS handshake record.
                    let served = if matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16) {
                        match acceptor.accept(stream).await {
                            Ok(tls) => http.serve_connection(TokioIo::new(tls), service).await,
                            Err(e) => {
                                tracing::debug!(error = %e, "registration TLS handshake failed");
                                return;
                            }
                        }
                    } else {
                        http.serve_connection(TokioIo::new(stream), service).await
                    };
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "registration connection failed");
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn reply(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(provider: &ProviderState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return reply(StatusCode::NOT_FOUND, "not found");
    }
    if req.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "use POST");
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("bad request: the form is over {MAX_BODY} bytes"),
            )
        }
    };
    let form = match parse_form(&body) {
        Ok(f) => f,
        Err(problem) => return reply(StatusCode::BAD_REQUEST, &format!("bad request: {problem}")),
    };
    match provider.register(&form.user, form.link_key, form.identity_key) {
        Ok(()) => {
            tracing::info!(user = %form.user, "registered over HTTP");
            reply(StatusCode::OK, "OK")
        }
        Err(e @ RegisterError::Taken(_)) => reply(StatusCode::CONFLICT, &e.to_string()),
        Err(e @ RegisterError::Invalid(_)) => reply(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(e @ RegisterError::Store(_)) => {
            reply(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
        }
    }
}

/// A valid registration form.
#[derive(Debug, PartialEq, Eq)]
pub struct Form {
    /// The user name, as sent.
    pub user: String,
    /// The X25519 link public key.
    pub link_key: [u8; 32],
    /// The X25519 end-to-end identity public key.
    pub identity_key: [u8; 32],
}

/// Parses and checks a registration form; the error names the problem.
pub fn parse_form(body: &[u8]) -> Result<Form, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        if fields.iter().any(|(f, _)| *f == k) {
            return Err(format!("field '{k}' is given twice"));
        }
        fields.push((k.into_owned(), v.into_owned()));
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| format!("field '{name}' is missing"))
    };
    if get("version")? != "0" {
        return Err("version must be 0".into());
    }
    let command = get("command")?;
    if command != "register_link_and_identity_key" {
        return Err(format!("command '{command}' is not supported"));
    }
    let key = |name: &str| -> Result<[u8; 32], String> {
        let text = get(name)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or_else(|| format!("{name} is not a base64 32-byte key"))
    };
    let user = get("user")?.to_owned();
    if user.is_empty() {
        return Err("field 'user' is empty".into());
    }
    Ok(Form {
        link_key: key("link_key")?,
        identity_key: key("identity_key")?,
        user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(k: [u8; 32]) -> String {
        base64::engine::general_purpose::STANDARD.encode(k)
    }

    #[test]
    fn forms_are_checked_field_by_field() {
        let good = format!(
            "version=0&command=register_link_and_identity_key&user=alice&link_key={}&identity_key={}",
            form_urlencoded::byte_serialize(b64([1; 32]).as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(b64([2; 32]).as_bytes()).collect::<String>(),
        );
        assert_eq!(
            parse_form(good.as_bytes()).unwrap(),
            Form {
                user: "alice".into(),
                link_key: [1; 32],
                identity_key: [2; 32]
            }
        );
        let bad = |body: String, want: &str| {
            let e = parse_form(body.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        };
        bad(good.replace("version=0", "version=1"), "version must be 0");
        bad(
            good.replace("register_link_and_identity_key", "register_link_key"),
            "not supported",
        );
        bad(good.replace("user=alice", "user="), "'user' is empty");
        bad(good.replace("user=alice&", ""), "'user' is missing");
        bad(format!("{good}&user=bob"), "given twice");
        bad(
            good.replace("link_key=", "link_key=AAAA"),
            "link_key is not a base64 32-byte key",
        );
        bad("\u{1}garbage".into(), "'version' is missing");
    }
}
