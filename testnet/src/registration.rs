//! A provider's HTTP registration endpoint (as the 2019 provider served it
//! for `mailproxy -r`): `POST /registration` with the form
//! `version=0&command=register_link_and_identity_key&user=…&link_key=…&identity_key=…`
//! (base64 X25519 keys) registers the user exactly as ADD_USER and
//! SET_USER_IDENTITY on the management socket would. Plain HTTP; off unless
//! started.

use std::sync::Arc;

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::node::provider::{ProviderState, RegisterError};
use crate::node::Node;

/// The path served.
pub const PATH: &str = "/registration";
/// Largest form accepted.
const MAX_BODY: usize = 4096;

/// Serves registrations for the provider `node` on `listener` until the
/// task is aborted (nothing if `node` is not a provider).
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    if node.provider.is_none() {
        return;
    }
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let node = node.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let node = node.clone();
                        async move {
                            let provider = node.provider.as_ref().expect("a provider");
                            Ok::<_, std::convert::Infallible>(handle(provider, req).await)
                        }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = conn.await {
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
