//! Local HTTP servers standing in for the providers of the built-in integrations, written from
//! each provider's published documentation (every module cites its pages). They refuse what
//! the real provider refuses — an authorize request without the parameters the provider
//! requires, space-joined scopes where commas are documented, an expired or unknown token, a
//! retired endpoint — so that a test fails where production would.
//!
//! Each fake serves both the provider's OAuth endpoints and its API on one local port
//! (`base_url`), keeps a log of what it received, and has knobs for what tests provoke: short
//! token lifetimes, session timeouts, rate-limit answers, transient errors.

use std::net::SocketAddr;

use axum::Router;

pub mod google;
pub mod hubspot;
pub mod salesforce;
pub mod slack;

/// Serves `app` on a free port of 127.0.0.1 until the runtime stops; its base URL
/// (`http://127.0.0.1:PORT`).
pub async fn serve(app: Router) -> std::io::Result<String> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2): base64url of its SHA-256.
pub(crate) fn s256(verifier: &str) -> String {
    use base64::Engine as _;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// `len` random characters of `alphabet` (tokens, codes, ids in a provider's own format).
pub(crate) fn random(len: usize, alphabet: &[u8]) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for byte in uuid::Uuid::new_v4().as_bytes() {
            if out.len() == len {
                break;
            }
            out.push(alphabet[usize::from(*byte) % alphabet.len()] as char);
        }
    }
    out
}

/// A form-urlencoded body's fields (the last of a repeated one).
pub(crate) fn form(bytes: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

/// A query string's pairs, in order.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
