//! PLACEHOLDER (being written): outbound HTTP client with the network guard.

#[derive(Debug, Clone, Copy, Default)]
pub struct OutboundPolicy {
    pub allow_loopback: bool,
    pub allow_private: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NetError(pub String);

#[derive(Debug, Clone)]
pub struct HttpClient {
    pub policy: OutboundPolicy,
}

impl HttpClient {
    pub fn new(policy: OutboundPolicy) -> Result<Self, NetError> {
        Ok(HttpClient { policy })
    }
}
