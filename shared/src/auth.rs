//! Project signing keys, connected-user tokens and project API keys.
//!
//! Invariant: a user token is accepted only if it is an RS256 JWT signed by the project's key,
//! unexpired (at most [`LEEWAY_SECS`] of clock skew) and names a plausible user (`sub`
//! non-empty, at most [`MAX_USER_ID_LEN`] characters). No other algorithm is ever accepted,
//! whatever the token's header claims. API keys are stored only as SHA-256 hashes and compared
//! in constant time. No error message or `Debug` output carries key material or a token.

use std::fmt;
use std::sync::Once;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Clock skew tolerated when checking `exp`, in seconds.
pub const LEEWAY_SECS: u64 = 5;
/// The longest user id (`sub`) a token may carry.
pub const MAX_USER_ID_LEN: usize = 256;
/// The prefix of every project API key.
pub const API_KEY_PREFIX: &str = "sk_";

/// Why a token or key was refused. `Display` is safe to show to API clients: it never
/// contains a token, a key or a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header at all.
    #[error("missing token: send `Authorization: Bearer <token>`")]
    MissingToken,
    /// The header or the token is not shaped as expected.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token is signed with another algorithm than RS256 (e.g. `none` or HS256).
    #[error("token algorithm not accepted: only RS256 is")]
    UnsupportedAlgorithm,
    /// The signature does not match the project's key.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// A claim is missing or invalid.
    #[error("invalid token claims: {0}")]
    BadClaims(String),
    /// A server-side key problem (not the client's fault).
    #[error("key error: {0}")]
    Key(&'static str),
}

impl AuthError {
    /// Whether the caller is to blame (401) rather than the server's keys (500).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, AuthError::Key(_))
    }
}

/// A project's RSA signing key pair, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyPair {
    /// PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub private_pem: String,
    /// SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`).
    pub public_pem: String,
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("private_pem", &"[redacted]")
            .field("public_pem", &self.public_pem)
            .finish()
    }
}

/// Generates a fresh RSA 2048 signing key pair.
pub fn generate_signing_key() -> Result<SigningKeyPair, AuthError> {
    const FAILED: AuthError = AuthError::Key("could not generate an RSA signing key");
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| FAILED)?;
    let private_der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(|_| FAILED)?;
    let public_der = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(pair.public_key()).map_err(|_| FAILED)?;
    Ok(SigningKeyPair {
        private_pem: pem_encode("PRIVATE KEY", private_der.as_ref()),
        public_pem: pem_encode("PUBLIC KEY", public_der.as_ref()),
    })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    // Base64 output is ASCII, so 64-byte chunks are valid UTF-8.
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims<'a> {
    sub: &'a str,
    iat: u64,
    exp: u64,
}

/// Selects aws-lc-rs as jsonwebtoken's crypto provider, even if another crate of the build
/// enabled a second provider (jsonwebtoken would then refuse to choose).
fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is already installed, which is what we need.
        if jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER)
            .is_err()
        {
            tracing::debug!("a jsonwebtoken crypto provider was already installed");
        }
    });
}

fn unix_now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Issues an RS256 token for `user_id`, valid for `ttl`.
pub fn issue_user_token(private_pem: &str, user_id: &str, ttl: Duration) -> Result<String, AuthError> {
    check_user_id(user_id)?;
    let iat = unix_now();
    sign(private_pem, &Claims { sub: user_id, iat, exp: iat.saturating_add(ttl.as_secs()) })
}

fn sign(private_pem: &str, claims: &Claims<'_>) -> Result<String, AuthError> {
    install_crypto_provider();
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes())
        .map_err(|_| AuthError::Key("the signing key is not an RSA private key in PEM"))?;
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key)
        .map_err(|_| AuthError::Key("could not sign with the signing key"))
}

/// Verifies a user token against the project's public key and returns its user id (`sub`).
pub fn verify_user_token(public_pem: &str, token: &str) -> Result<String, AuthError> {
    install_crypto_provider();
    let key = DecodingKey::from_rsa_pem(public_pem.as_bytes())
        .map_err(|_| AuthError::Key("the project's public key is not an RSA public key in PEM"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(map_jwt_error)?;
    match data.claims.get("sub") {
        Some(Value::String(sub)) => {
            check_user_id(sub).map_err(|_| AuthError::BadClaims("`sub` must be 1 to 256 characters".into()))?;
            Ok(sub.clone())
        }
        _ => Err(AuthError::BadClaims("`sub` must be a string".into())),
    }
}

/// Why `token` is refused by a project that does not exist: exactly what an existing project
/// whose key did not sign it answers (the token is checked against a key no project has), so
/// that an unauthenticated caller cannot tell which projects exist.
pub fn refuse_for_missing_project(token: &str) -> AuthError {
    static NO_PROJECT_KEY: std::sync::LazyLock<Option<String>> =
        std::sync::LazyLock::new(|| generate_signing_key().ok().map(|pair| pair.public_pem));
    match NO_PROJECT_KEY.as_deref().map(|pem| verify_user_token(pem, token)) {
        Some(Err(error)) => error,
        // A token this key verifies cannot exist; without a key, refuse as a bad signature.
        Some(Ok(_)) | None => AuthError::BadSignature,
    }
}

fn check_user_id(user_id: &str) -> Result<(), AuthError> {
    let len = user_id.chars().count();
    if len == 0 || len > MAX_USER_ID_LEN {
        return Err(AuthError::BadClaims(format!("the user id must be 1 to {MAX_USER_ID_LEN} characters")));
    }
    Ok(())
}

fn map_jwt_error(error: jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::UnsupportedAlgorithm
        }
        ErrorKind::MissingRequiredClaim(claim) => AuthError::BadClaims(format!("`{}` is required", claim_name(claim))),
        ErrorKind::InvalidClaimFormat(claim) => AuthError::BadClaims(format!("`{}` is invalid", claim_name(claim))),
        ErrorKind::ImmatureSignature => AuthError::BadClaims("`nbf` is in the future".into()),
        ErrorKind::InvalidAudience | ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => {
            AuthError::BadClaims("unexpected `aud`, `iss` or `sub`".into())
        }
        ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            AuthError::Key("the project's public key cannot verify RS256 tokens")
        }
        // `alg: none` and other unknown algorithms fail while parsing the header.
        _ => AuthError::Malformed("not a valid RS256 JWT"),
    }
}

/// Only the registered claim names we check are echoed back; anything else is not.
fn claim_name(claim: &str) -> &'static str {
    match claim {
        "exp" => "exp",
        "sub" => "sub",
        "nbf" => "nbf",
        "iat" => "iat",
        _ => "claim",
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let value = headers.get(http::header::AUTHORIZATION).ok_or(AuthError::MissingToken)?;
    let value =
        value.to_str().map_err(|_| AuthError::Malformed("the Authorization header is not visible ASCII"))?.trim();
    let (scheme, token) =
        value.split_once(' ').ok_or(AuthError::Malformed("expected `Authorization: Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed("expected `Authorization: Bearer <token>`"));
    }
    let token = token.trim_start();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(AuthError::Malformed("expected `Authorization: Bearer <token>`"));
    }
    Ok(token)
}

/// A new project API key: `sk_` and 32 random bytes as lower-case hex.
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 32];
    // AWS-LC's RAND_bytes aborts the process rather than return failure, so an error here
    // cannot happen; a zero key is never handed out even so.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random generator failed");
    format!("{API_KEY_PREFIX}{}", hex(&bytes))
}

/// The SHA-256 of `key`, lower-case hex: what is stored instead of the key.
pub fn hash_api_key(key: &str) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes()).as_ref())
}

/// Whether `key` hashes to `sha256_hex` (case-insensitive hex), compared in constant time.
pub fn api_key_matches(key: &str, sha256_hex: &str) -> bool {
    let expected = sha256_hex.to_ascii_lowercase();
    aws_lc_rs::constant_time::verify_slices_are_equal(hash_api_key(key).as_bytes(), expected.as_bytes()).is_ok()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use super::*;

    /// Key generation is the slow part; two keys serve every test.
    fn keys() -> &'static (SigningKeyPair, SigningKeyPair) {
        static KEYS: OnceLock<(SigningKeyPair, SigningKeyPair)> = OnceLock::new();
        KEYS.get_or_init(|| match (generate_signing_key(), generate_signing_key()) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => panic!("key generation failed: {:?} {:?}", a.err(), b.err()),
        })
    }

    fn b64url(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn claims_now(exp_offset: i64) -> Value {
        let now = unix_now() as i64;
        serde_json::json!({ "sub": "user-1", "iat": now, "exp": now + exp_offset })
    }

    #[test]
    fn generated_keys_are_pkcs8_and_spki_pem() {
        let (key, _) = keys();
        assert!(key.private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(key.private_pem.ends_with("-----END PRIVATE KEY-----\n"));
        assert!(key.public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        assert!(key.public_pem.ends_with("-----END PUBLIC KEY-----\n"));
        assert!(key.public_pem.lines().all(|l| l.len() <= 64));
    }

    #[test]
    fn debug_of_a_key_pair_hides_the_private_key() {
        let (key, _) = keys();
        let debug = format!("{key:?}");
        assert!(!debug.contains("PRIVATE KEY"));
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn issued_token_verifies_and_yields_the_user_id() -> Result<(), AuthError> {
        let (key, _) = keys();
        let token = issue_user_token(&key.private_pem, "user-42", Duration::from_secs(60))?;
        assert_eq!(verify_user_token(&key.public_pem, &token)?, "user-42");
        Ok(())
    }

    #[test]
    fn expired_token_is_rejected_as_expired() -> Result<(), AuthError> {
        let (key, _) = keys();
        let now = unix_now();
        let token = sign(&key.private_pem, &Claims { sub: "user-1", iat: now - 120, exp: now - 60 })?;
        assert_eq!(verify_user_token(&key.public_pem, &token), Err(AuthError::Expired));
        Ok(())
    }

    #[test]
    fn token_signed_by_another_key_is_rejected() -> Result<(), AuthError> {
        let (key, other) = keys();
        let token = issue_user_token(&other.private_pem, "user-1", Duration::from_secs(60))?;
        assert_eq!(verify_user_token(&key.public_pem, &token), Err(AuthError::BadSignature));
        Ok(())
    }

    #[test]
    fn alg_none_token_is_rejected() {
        let (key, _) = keys();
        let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64url(claims_now(60).to_string().as_bytes());
        for token in [format!("{header}.{payload}."), format!("{header}.{payload}")] {
            let result = verify_user_token(&key.public_pem, &token);
            assert!(result.is_err(), "accepted {token}");
        }
    }

    #[test]
    fn hs256_token_signed_with_the_public_key_is_rejected() -> Result<(), jsonwebtoken::errors::Error> {
        install_crypto_provider();
        let (key, _) = keys();
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims_now(60),
            &EncodingKey::from_secret(key.public_pem.as_bytes()),
        )?;
        assert_eq!(verify_user_token(&key.public_pem, &forged), Err(AuthError::UnsupportedAlgorithm));
        Ok(())
    }

    #[test]
    fn tampered_payload_is_rejected() -> Result<(), AuthError> {
        let (key, _) = keys();
        let token = issue_user_token(&key.private_pem, "user-1", Duration::from_secs(60))?;
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let mut claims = claims_now(60);
        claims["sub"] = Value::from("admin");
        let tampered = format!("{}.{}.{}", parts[0], b64url(claims.to_string().as_bytes()), parts[2]);
        assert_eq!(verify_user_token(&key.public_pem, &tampered), Err(AuthError::BadSignature));
        Ok(())
    }

    #[test]
    fn token_without_exp_or_with_bad_sub_is_rejected() -> Result<(), AuthError> {
        let (key, _) = keys();
        let encoding = EncodingKey::from_rsa_pem(key.private_pem.as_bytes()).map_err(|_| AuthError::Key("test"))?;
        let sign_value = |claims: Value| {
            install_crypto_provider();
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &encoding).map_err(|_| AuthError::Key("test"))
        };
        let now = unix_now();
        let no_exp = sign_value(serde_json::json!({ "sub": "u", "iat": now }))?;
        assert!(matches!(verify_user_token(&key.public_pem, &no_exp), Err(AuthError::BadClaims(_))));
        let empty_sub = sign_value(serde_json::json!({ "sub": "", "exp": now + 60 }))?;
        assert!(matches!(verify_user_token(&key.public_pem, &empty_sub), Err(AuthError::BadClaims(_))));
        let long_sub = sign_value(serde_json::json!({ "sub": "x".repeat(257), "exp": now + 60 }))?;
        assert!(matches!(verify_user_token(&key.public_pem, &long_sub), Err(AuthError::BadClaims(_))));
        let no_sub = sign_value(serde_json::json!({ "exp": now + 60 }))?;
        assert!(matches!(verify_user_token(&key.public_pem, &no_sub), Err(AuthError::BadClaims(_))));
        Ok(())
    }

    #[test]
    fn garbage_token_is_malformed_and_bad_key_is_a_server_error() {
        let (key, _) = keys();
        assert!(matches!(verify_user_token(&key.public_pem, "not-a-jwt"), Err(AuthError::Malformed(_))));
        let error = verify_user_token("not a pem", "a.b.c");
        assert!(matches!(&error, Err(AuthError::Key(_))));
        assert!(error.is_err_and(|e| !e.is_client_error()));
    }

    fn headers_with(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Ok(value) = http::HeaderValue::from_str(value) {
            headers.insert(http::header::AUTHORIZATION, value);
        }
        headers
    }

    #[test]
    fn bearer_token_accepts_any_scheme_case() {
        assert_eq!(bearer_token(&headers_with("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
        assert_eq!(bearer_token(&headers_with("bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(&headers_with("BEARER  abc ")), Ok("abc"));
    }

    #[test]
    fn missing_authorization_header_is_a_distinct_error() {
        assert_eq!(bearer_token(&http::HeaderMap::new()), Err(AuthError::MissingToken));
    }

    #[test]
    fn non_bearer_or_empty_authorization_is_malformed() {
        for value in ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "abc", "Bearer a b"] {
            assert!(matches!(bearer_token(&headers_with(value)), Err(AuthError::Malformed(_))), "{value}");
        }
    }

    #[test]
    fn api_key_has_prefix_and_64_hex_digits_and_is_random() {
        let key = generate_api_key();
        let hex_part = key.strip_prefix(API_KEY_PREFIX).unwrap_or_default();
        assert_eq!(hex_part.len(), 64);
        assert!(hex_part.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(key, generate_api_key());
    }

    #[test]
    fn api_key_hash_is_sha256_hex_and_matches_only_its_key() {
        assert_eq!(hash_api_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let key = generate_api_key();
        let hash = hash_api_key(&key);
        assert!(api_key_matches(&key, &hash));
        assert!(api_key_matches(&key, &hash.to_ascii_uppercase()));
        assert!(!api_key_matches(&generate_api_key(), &hash));
        assert!(!api_key_matches(&key, ""));
    }

    #[test]
    fn error_messages_never_contain_the_token() -> Result<(), AuthError> {
        let (key, other) = keys();
        let token = issue_user_token(&other.private_pem, "user-1", Duration::from_secs(60))?;
        let message = verify_user_token(&key.public_pem, &token).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(!message.is_empty());
        assert!(!message.contains(&token[..20]));
        Ok(())
    }
}
