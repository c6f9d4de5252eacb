//! The AWS key wrapper: data keys come from KMS `GenerateDataKey` (AES_256) under one KMS key
//! and are unwrapped with `Decrypt`, both with the encryption context `{"sluice": context}`.
//!
//! Invariants: the plaintext of a data key exists only in the [`KeyBytes`] handed to the
//! caller (the SDK's copy is overwritten with zeros); `Decrypt` names the key it expects, so a
//! wrapped key from another KMS key is refused rather than decrypted by it; throttling, 5xx and
//! network failures are `Backend` (retryable), every other refusal of KMS is `Refused`.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use crate::crypto::{CryptoError, DataKey, KEY_LEN, KeyBytes, KeyWrap};

/// The encryption context key the record's context is stored under.
const CONTEXT_KEY: &str = "sluice";

/// Error codes that mean "too many requests": the SDK's standard retry classifier's list
/// (KMS itself answers `ThrottlingException`, and `LimitExceededException` for request-rate
/// quotas).
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
];

/// KMS errors that say the service, not the request, failed (KMS sends them as 5xx; listed in
/// case an endpoint sends them with another status).
const SERVICE_FAILURE_CODES: &[&str] =
    &["KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException"];

/// `KeyWrap` over one KMS key (its id, ARN or alias).
#[derive(Debug, Clone)]
pub struct KmsKeyWrap {
    client: Client,
    key_id: String,
}

impl KmsKeyWrap {
    /// A wrapper making data keys under the KMS key `key_id` (key id, key ARN, alias name or
    /// alias ARN; `Decrypt` needs a key id or ARN, or an alias that still names the same key).
    pub fn new(client: Client, key_id: impl Into<String>) -> KmsKeyWrap {
        KmsKeyWrap { client, key_id: key_id.into() }
    }
}

/// Whether a KMS error with this code and HTTP status is worth retrying.
fn is_retryable_failure(code: Option<&str>, status: Option<u16>) -> bool {
    let code = code.unwrap_or_default();
    THROTTLING_CODES.contains(&code)
        || SERVICE_FAILURE_CODES.contains(&code)
        || status.is_some_and(|status| status == 429 || status >= 500)
}

/// `Backend` for what may pass (throttling, 5xx, timeouts, network), `Refused` for the rest
/// (invalid ciphertext, wrong context, access denied, unknown or disabled key, a bad request).
fn classify<E>(operation: &str, e: SdkError<E, HttpResponse>) -> CryptoError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = format!("KMS {operation}: {}", DisplayErrorContext(&e));
    match &e {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            if is_retryable_failure(service.err().code(), Some(status)) {
                CryptoError::Backend(detail)
            } else {
                CryptoError::Refused(detail)
            }
        }
        // The request could not even be built: the same request will fail the same way.
        SdkError::ConstructionFailure(_) => CryptoError::Refused(detail),
        // Timeouts, dispatch (connection, DNS, TLS) and unreadable responses.
        _ => CryptoError::Backend(detail),
    }
}

/// The data key in a KMS response to `operation`, moved into [`KeyBytes`]; the
/// SDK's buffer is zeroed.
fn take_key(operation: &str, plaintext: Option<Blob>) -> Result<KeyBytes, CryptoError> {
    let mut bytes = plaintext.map(Blob::into_inner).unwrap_or_default();
    let key = KeyBytes::from_slice(&bytes);
    let len = bytes.len();
    bytes.fill(0);
    std::hint::black_box(&mut bytes);
    // Not the key KMS was asked for: asking again would get the same answer.
    key.ok_or_else(|| CryptoError::Refused(format!("KMS {operation} returned a {len}-byte key, not {KEY_LEN}")))
}

#[async_trait]
impl KeyWrap for KmsKeyWrap {
    async fn new_data_key(&self, context: &str) -> Result<DataKey, CryptoError> {
        let mut output = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .encryption_context(CONTEXT_KEY, context)
            .send()
            .await
            .map_err(|e| classify("GenerateDataKey", e))?;
        let plaintext = take_key("GenerateDataKey", output.plaintext.take())?;
        let wrapped = output.ciphertext_blob.take().map(Blob::into_inner).unwrap_or_default();
        if wrapped.is_empty() {
            return Err(CryptoError::Refused("KMS GenerateDataKey returned no CiphertextBlob".into()));
        }
        Ok(DataKey { plaintext, wrapped })
    }

    async fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<KeyBytes, CryptoError> {
        if wrapped.is_empty() {
            return Err(CryptoError::Refused("the wrapped key is empty".into()));
        }
        let mut output = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .encryption_context(CONTEXT_KEY, context)
            .send()
            .await
            .map_err(|e| classify("Decrypt", e))?;
        take_key("Decrypt", output.plaintext.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_service_failures_are_retryable() {
        for code in ["ThrottlingException", "LimitExceededException", "KMSInternalException", "KeyUnavailableException"]
        {
            assert!(is_retryable_failure(Some(code), Some(400)), "{code}");
        }
        assert!(is_retryable_failure(None, Some(503)));
        assert!(is_retryable_failure(Some("Unknown"), Some(429)));
    }

    #[test]
    fn refusals_of_the_request_are_terminal() {
        for code in [
            "InvalidCiphertextException",
            "AccessDeniedException",
            "NotFoundException",
            "DisabledException",
            "IncorrectKeyException",
            "ValidationException",
        ] {
            assert!(!is_retryable_failure(Some(code), Some(400)), "{code}");
        }
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused() {
        assert!(take_key("Decrypt", Some(Blob::new(vec![1u8; KEY_LEN]))).is_ok());
        for blob in [None, Some(Blob::new(vec![1u8; 16]))] {
            let error = take_key("Decrypt", blob).expect_err("refused");
            assert!(matches!(error, CryptoError::Refused(_)), "{error}");
        }
    }
}
