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
