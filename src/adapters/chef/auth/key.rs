//! The signing key: parsed once from PEM, with `ring`'s copy for the fast
//! protocol 1.3 path.

use std::fmt;
use std::sync::Arc;

use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

use super::AuthError;

/// An RSA private key used to sign requests, parsed once. `Debug` shows only
/// the key size.
#[derive(Clone)]
pub struct SigningKey {
    /// The key for protocols 1.0/1.1 (and 1.3 when `ring` refused it).
    pub(super) key: RsaPrivateKey,
    /// `ring`'s parsed copy for protocol 1.3; `None` when `ring` refuses the
    /// key (size outside 2048..=8192 bits, unusual encoding).
    pub(super) fast: Option<Arc<ring::rsa::KeyPair>>,
}

impl SigningKey {
    /// Parses an unencrypted RSA private key in PEM form: PKCS#1
    /// (`-----BEGIN RSA PRIVATE KEY-----`, what Chef Infra Server generates)
    /// or PKCS#8 (`-----BEGIN PRIVATE KEY-----`). Text before the PEM block
    /// and CRLF line endings are tolerated.
    pub fn from_pem(pem: &str) -> Result<Self, AuthError> {
        let invalid = |reason: &str| AuthError::InvalidKey {
            reason: reason.to_string(),
        };
        let start = pem
            .find("-----BEGIN ")
            .ok_or_else(|| invalid("no \"-----BEGIN ...-----\" PEM header found"))?;
        let block = pem[start..].replace("\r\n", "\n");
        let block = block.trim_end();
        let key = if block.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            if block.contains("Proc-Type:") || block.contains("DEK-Info:") {
                return Err(invalid("the PKCS#1 key is passphrase-encrypted"));
            }
            RsaPrivateKey::from_pkcs1_pem(block)
                .map_err(|e| invalid(&format!("PKCS#1 RSA key could not be decoded ({e})")))?
        } else if block.starts_with("-----BEGIN PRIVATE KEY-----") {
            RsaPrivateKey::from_pkcs8_pem(block).map_err(|e| {
                invalid(&format!(
                    "PKCS#8 key could not be decoded as an RSA key ({e})"
                ))
            })?
        } else if block.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
            return Err(invalid("the PKCS#8 key is passphrase-encrypted"));
        } else if block.starts_with("-----BEGIN PUBLIC KEY-----")
            || block.starts_with("-----BEGIN RSA PUBLIC KEY-----")
        {
            return Err(invalid("found a public key, not a private key"));
        } else {
            let label = block
                .lines()
                .next()
                .unwrap_or_default()
                .trim_matches('-')
                .trim_start_matches("BEGIN ");
            return Err(invalid(&format!("unsupported PEM block type {label:?}")));
        };
        Ok(SigningKey::from_rsa(key))
    }

    /// Wraps a decoded key, adding `ring`'s copy of it when `ring` accepts it.
    pub(super) fn from_rsa(key: RsaPrivateKey) -> Self {
        let fast = key
            .to_pkcs1_der()
            .ok()
            .and_then(|der| ring::rsa::KeyPair::from_der(der.as_bytes()).ok())
            .map(Arc::new);
        SigningKey { key, fast }
    }

    /// Whether protocol 1.3 is signed by `ring` (the fast path).
    pub fn signs_v1_3_with_ring(&self) -> bool {
        self.fast.is_some()
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the form
    /// Chef Infra Server stores and returns for clients.
    pub fn public_key_pem(&self) -> Result<String, AuthError> {
        self.key
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| AuthError::PublicKeyEncoding(e.to_string()))
    }

    /// Size of the modulus in bits.
    pub(super) fn bits(&self) -> usize {
        self.key.size() * 8
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}
