//! The one outbound HTTP client, with the outbound network guard.
//!
//! Invariant: unless the [`OutboundPolicy`] allows it, no request built on
//! [`HttpClient::client`] connects to an address that is not globally reachable: every
//! non-global block of the IANA special-purpose registries for IPv4 and IPv6 (loopback,
//! private, shared/CGNAT, link-local and cloud metadata, unique-local, documentation,
//! benchmarking, 6to4, Teredo, translation prefixes, multicast, reserved...), nor to the
//! IPv4-mapped/translated/compatible/NAT64 IPv6 forms of those. Host names are checked after resolution,
//! by the client's own resolver (so the checked address is the one connected to); IP-literal
//! URLs, which bypass the resolver, are checked by [`HttpClient::check_url`] before sending;
//! the client follows no redirect itself (its caller checks each target the same way). No proxy from the environment is ever used.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::redirect;

/// How many redirects a request follows before failing.
pub const MAX_REDIRECTS: usize = 10;
/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Which otherwise blocked destinations outbound requests may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Permits 127.0.0.0/8 and ::1 (local development).
    pub allow_loopback: bool,
    /// Permits every blocked class, loopback included (trusted private networks).
    pub allow_private: bool,
}

/// Why an outbound request was refused or could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// The outbound network guard refused the destination.
    #[error("blocked by the outbound network guard: {0}")]
    Blocked(String),
    /// The URL cannot be requested (scheme, missing host).
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The host name did not resolve.
    #[error("could not resolve `{host}`: {reason}")]
    Resolve { host: String, reason: String },
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(String),
}

impl NetError {
    /// Whether the guard refused the destination (a terminal failure).
    pub fn is_blocked(&self) -> bool {
        matches!(self, NetError::Blocked(_))
    }
}

/// The class of a blocked address, or `None` when it is publicly routable.
fn blocked_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_class_v4(v4),
        IpAddr::V6(v6) => blocked_class_v6(v6),
    }
}

/// IPv4: every block of the IANA IPv4 Special-Purpose Address Registry that is not globally
/// reachable (RFC 6890 and its updates), plus multicast and the deprecated 6to4 relay anycast.
fn blocked_class_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let class = match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        (0, _, _) => "unspecified (this network)",
        _ if ip.is_private() => "private",
        (100, 64..=127, _) => "shared address space",
        _ if ip.is_link_local() => "link-local",
        _ if ip.is_broadcast() => "broadcast",
        _ if ip.is_multicast() => "multicast",
        (240..=255, _, _) => "reserved",
        (192, 0, 0) => "IETF protocol assignments",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation (TEST-NET)",
        (192, 88, 99) => "6to4 relay anycast (deprecated)",
        (198, 18..=19, _) => "benchmarking",
        _ => return None,
    };
    Some(class)
}

/// IPv6: only global unicast (2000::/3) outside the special-purpose blocks is allowed; the
/// forms that embed an IPv4 address (mapped, translated, compatible, NAT64 well-known prefix)
/// are judged by that address.
fn blocked_class_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    let segments = ip.segments();
    let [_, _, _, _, _, _, hi, lo] = segments;
    let embedded = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    let class = match segments {
        // ::ffff:a.b.c.d (mapped), ::ffff:0:a.b.c.d (translated), ::a.b.c.d (compatible),
        // 64:ff9b::a.b.c.d (NAT64) reach the IPv4 address they carry.
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] | [0, 0, 0, 0, 0, 0, _, _] => {
            return blocked_class_v4(embedded);
        }
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => return blocked_class_v4(embedded),
        [0x64, 0xff9b, 1, ..] => "local-use IPv4/IPv6 translation",
        [0x100, 0, 0, 0, ..] => "discard-only",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local",
        [s, ..] if s & 0xffc0 == 0xfec0 => "site-local",
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique-local",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast",
        [s, ..] if s & 0xe000 != 0x2000 => "reserved (not global unicast)",
        [0x2001, 0xdb8, ..] => "documentation",
        [0x2001, s, ..] if s < 0x200 => "IETF protocol assignments (Teredo included)",
        [0x2002, ..] => "6to4",
        [s, ..] if s & 0xfff0 == 0x3ff0 => "documentation",
        [0x5f00, ..] => "segment routing (SRv6) SIDs",
        _ => return None,
    };
    Some(class)
}

/// Whether `ip` is an address `allow_loopback` permits (127.0.0.0/8, ::1 and their mapped forms).
fn is_loopback(ip: IpAddr) -> bool {
    blocked_class(ip) == Some("loopback")
}

/// Checks one destination address against the policy.
pub fn check_ip(ip: IpAddr, policy: OutboundPolicy) -> Result<(), NetError> {
    match blocked_class(ip) {
        None => Ok(()),
        Some(_) if policy.allow_private => Ok(()),
        Some(_) if policy.allow_loopback && is_loopback(ip) => Ok(()),
        Some(class) => Err(NetError::Blocked(format!("{ip} ({class})"))),
    }
}

/// Checks a URL's scheme and, when its host is an IP literal, that address.
fn check_url_with(url: &url::Url, policy: OutboundPolicy) -> Result<(), NetError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(NetError::InvalidUrl(format!("scheme `{}` is not allowed, only http and https", url.scheme())));
    }
    match url.host() {
        None => Err(NetError::InvalidUrl("the URL has no host".into())),
        Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy),
        Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy),
        Some(url::Host::Domain(_)) => Ok(()),
    }
}

/// Resolves host names with the system resolver and keeps only the allowed addresses.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver {
    policy: OutboundPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| NetError::Resolve { host: host.clone(), reason: e.to_string() })?
                .collect();
            let (allowed, blocked): (Vec<SocketAddr>, Vec<SocketAddr>) =
                resolved.into_iter().partition(|addr| check_ip(addr.ip(), policy).is_ok());
            if allowed.is_empty() {
                return Err(resolve_failure(&host, &blocked).into());
            }
            if !blocked.is_empty() {
                tracing::debug!(%host, dropped = blocked.len(), "outbound guard dropped resolved addresses");
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

fn resolve_failure(host: &str, blocked: &[SocketAddr]) -> NetError {
    if blocked.is_empty() {
        return NetError::Resolve { host: host.to_owned(), reason: "no addresses".into() };
    }
    let mut listed: Vec<String> = Vec::new();
    for addr in blocked {
        let ip = addr.ip();
        let entry = format!("{ip} ({})", blocked_class(ip).unwrap_or("blocked"));
        if !listed.contains(&entry) {
            listed.push(entry);
        }
    }
    NetError::Blocked(format!("`{host}` resolves only to {}", listed.join(", ")))
}

/// The shared outbound HTTP client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: OutboundPolicy,
}

impl HttpClient {
    /// Builds the client once: guarded resolver, no proxy, [`CONNECT_TIMEOUT`], and no
    /// redirect followed by the client itself: a caller that follows one (the Request step,
    /// at most [`MAX_REDIRECTS`]) checks its target with [`HttpClient::check_url`] and drops
    /// credentials across origins, which reqwest's policy cannot do for custom headers.
    pub fn new(policy: OutboundPolicy) -> Result<Self, NetError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver { policy })
            .redirect(redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NetError::Client(e.to_string()))?;
        Ok(HttpClient { client, policy })
    }

    /// Checks a URL before sending: http(s) only, and an IP-literal host must be allowed
    /// (host names are checked when they resolve).
    pub fn check_url(&self, url: &url::Url) -> Result<(), NetError> {
        check_url_with(url, self.policy)
    }

    /// The underlying client. Send only URLs that passed [`HttpClient::check_url`].
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn policy(&self) -> OutboundPolicy {
        self.policy
    }
}

/// Finds the guard's error inside a reqwest error's source chain.
pub fn find_net_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a NetError> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(net) = error.downcast_ref::<NetError>() {
            return Some(net);
        }
        current = error.source();
    }
    None
}

/// A local HTTP server for tests of outbound requests.
#[cfg(test)]
pub(crate) mod test_server {
    use std::net::SocketAddr;

    /// Serves `router` on 127.0.0.1 on a free port until the test's runtime ends.
    pub(crate) async fn spawn(router: axum::Router) -> std::io::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, router).await {
                eprintln!("test server stopped: {error}");
            }
        });
        Ok(addr)
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    const DENY: OutboundPolicy = OutboundPolicy { allow_loopback: false, allow_private: false };
    const LOOPBACK: OutboundPolicy = OutboundPolicy { allow_loopback: true, allow_private: false };
    const PRIVATE: OutboundPolicy = OutboundPolicy { allow_loopback: false, allow_private: true };

    fn ip(text: &str) -> IpAddr {
        match text.parse() {
            Ok(ip) => ip,
            Err(_) => panic!("bad test address {text}"),
        }
    }

    fn blocked(text: &str, policy: OutboundPolicy) -> bool {
        check_ip(ip(text), policy).is_err()
    }

    #[test]
    fn public_addresses_are_allowed() {
        for addr in ["1.1.1.1", "8.8.8.8", "93.184.216.34", "100.128.0.1", "2606:4700::1111", "2a00:1450::1"] {
            assert!(!blocked(addr, DENY), "{addr}");
        }
    }

    #[test]
    fn loopback_is_blocked_unless_allowed() {
        for addr in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
            assert!(blocked(addr, DENY), "{addr}");
            assert!(!blocked(addr, LOOPBACK), "{addr}");
            assert!(!blocked(addr, PRIVATE), "{addr}");
        }
    }

    #[test]
    fn private_ranges_are_blocked_even_with_loopback_allowed() {
        for addr in ["10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1", "100.127.255.254"] {
            assert!(blocked(addr, DENY), "{addr}");
            assert!(blocked(addr, LOOPBACK), "{addr}");
            assert!(!blocked(addr, PRIVATE), "{addr}");
        }
    }

    #[test]
    fn metadata_and_link_local_addresses_are_blocked() {
        for addr in ["169.254.169.254", "169.254.0.1", "fe80::1", "febf::1", "fd00:ec2::254", "fc00::1"] {
            assert!(blocked(addr, DENY), "{addr}");
            assert!(blocked(addr, LOOPBACK), "{addr}");
            assert!(!blocked(addr, PRIVATE), "{addr}");
        }
    }

    #[test]
    fn unspecified_broadcast_multicast_and_reserved_are_blocked() {
        for addr in ["0.0.0.0", "0.1.2.3", "::", "255.255.255.255", "224.0.0.1", "239.1.1.1", "ff02::1", "240.0.0.1"] {
            assert!(blocked(addr, DENY), "{addr}");
            assert!(blocked(addr, LOOPBACK), "{addr}");
            assert!(!blocked(addr, PRIVATE), "{addr}");
        }
    }

    #[test]
    fn ipv4_mapped_compatible_and_nat64_forms_are_blocked_like_ipv4() {
        for addr in
            ["::ffff:169.254.169.254", "::ffff:10.0.0.1", "::169.254.169.254", "::ffff:0.0.0.0", "64:ff9b::a9fe:a9fe"]
        {
            assert!(blocked(addr, DENY), "{addr}");
            assert!(blocked(addr, LOOPBACK), "{addr}");
        }
        assert!(!blocked("::ffff:1.1.1.1", DENY));
        assert!(!blocked("64:ff9b::808:808", DENY));
    }

    #[test]
    fn every_non_global_special_purpose_block_is_refused() {
        for addr in [
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.254",
            "192.88.99.1",
            "192.0.0.8",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:10.0.0.1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:ffff::1",
            "2002:a9fe:a9fe::1",
            "2002:808:808::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:db8::1",
            "2001:10::1",
            "100::1",
            "3fff::1",
            "5f00::1",
            "4000::1",
            "::2:1:1:1",
        ] {
            assert!(blocked(addr, DENY), "{addr}");
            assert!(blocked(addr, LOOPBACK), "{addr}");
            assert!(!blocked(addr, PRIVATE), "{addr}");
        }
        // Next to the refused blocks, public addresses stay reachable.
        for addr in ["198.20.0.1", "192.0.3.1", "203.0.114.1", "192.88.98.1", "2001:200::1", "2003::1", "2c0f:f248::1"]
        {
            assert!(!blocked(addr, DENY), "{addr}");
        }
    }

    #[test]
    fn blocked_message_names_address_and_class() {
        let message = check_ip(ip("169.254.169.254"), DENY).err().map(|e| e.to_string());
        assert_eq!(message.as_deref(), Some("blocked by the outbound network guard: 169.254.169.254 (link-local)"));
    }

    #[test]
    fn resolve_failure_lists_blocked_addresses() {
        let error = resolve_failure("meta.example", &[SocketAddr::new(ip("169.254.169.254"), 0)]);
        assert_eq!(
            error.to_string(),
            "blocked by the outbound network guard: `meta.example` resolves only to 169.254.169.254 (link-local)"
        );
    }

    #[test]
    fn check_url_refuses_other_schemes_and_blocked_ip_literals() -> Result<(), Box<dyn std::error::Error>> {
        let client = HttpClient::new(DENY)?;
        assert!(client.check_url(&"https://example.com/x".parse()?).is_ok());
        assert!(client.check_url(&"http://93.184.216.34/".parse()?).is_ok());
        for url in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://0x7f.1/",
            "http://2130706433/",
        ] {
            assert!(client.check_url(&url.parse()?).is_err(), "{url}");
        }
        Ok(())
    }

    async fn hello_server() -> Result<SocketAddr, Box<dyn std::error::Error>> {
        let router = axum::Router::new().route("/", get(|| async { "hello" })).route(
            "/to-metadata",
            get(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, "http://169.254.169.254/latest/meta-data/")],
                )
            }),
        );
        Ok(test_server::spawn(router).await?)
    }

    #[tokio::test]
    async fn localhost_is_blocked_by_default_at_resolution() -> Result<(), Box<dyn std::error::Error>> {
        let addr = hello_server().await?;
        let client = HttpClient::new(DENY)?;
        let url: url::Url = format!("http://localhost:{}/", addr.port()).parse()?;
        client.check_url(&url)?;
        let error = match client.client().get(url).send().await {
            Ok(response) => return Err(format!("request succeeded: {}", response.status()).into()),
            Err(error) => error,
        };
        let net = find_net_error(&error).ok_or_else(|| format!("no guard error in {error:?}"))?;
        assert!(net.is_blocked());
        assert!(net.to_string().contains("`localhost` resolves only to 127.0.0.1 (loopback)"), "{net}");
        Ok(())
    }

    #[tokio::test]
    async fn localhost_is_reachable_with_allow_loopback() -> Result<(), Box<dyn std::error::Error>> {
        let addr = hello_server().await?;
        let client = HttpClient::new(LOOPBACK)?;
        let response = client.client().get(format!("http://localhost:{}/", addr.port())).send().await?;
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await?, "hello");
        Ok(())
    }

    #[tokio::test]
    async fn the_client_follows_no_redirect_itself() -> Result<(), Box<dyn std::error::Error>> {
        let addr = hello_server().await?;
        let client = HttpClient::new(LOOPBACK)?;
        let response = client.client().get(format!("http://127.0.0.1:{}/to-metadata", addr.port())).send().await?;
        assert_eq!(response.status(), 302, "the redirect is the caller's to check");
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(client.check_url(&location.parse()?).is_err(), "and the guard refuses its target");
        Ok(())
    }
}
