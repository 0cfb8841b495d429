//! Chef Infra Server request signing (the "signed header" protocol).
//!
//! Produces the same headers as Ruby's `mixlib-authentication`
//! (`SignedHeaderAuth#sign`), which is what `knife`/`chef-client` send and
//! what Chef Infra Server's `chef_authn` verifies. Protocol versions 1.0, 1.1
//! and 1.3 are supported:
//!
//! * **1.0 / 1.1** — SHA-1 digests; the canonical request is "encrypted" with
//!   the private key using raw PKCS#1 v1.5 type-1 padding (no DigestInfo).
//!   1.1 differs from 1.0 only in hashing the user id inside the canonical
//!   request.
//! * **1.3** — SHA-256 digests, a plain-text path and the
//!   `X-Ops-Server-API-Version` value in the canonical request, and a regular
//!   RSASSA-PKCS1-v1_5/SHA-256 signature.
//!
//! The key is parsed once ([`SigningKey::from_pem`]). Protocol 1.3 is signed
//! with `ring` (already built for TLS; an RSA-2048 signature costs about
//! 0.56 ms of CPU against 1.2-1.4 ms with the pure-Rust `rsa` crate, see
//! docs/BENCHMARKS.md). Protocols 1.0/1.1 need a raw
//! private-key operation on an unprefixed digest, which `ring` does not offer,
//! so they use the `rsa` crate, as does 1.3 for a key `ring` refuses (outside
//! 2048..=8192 bits, or an unusual encoding). PKCS#1 v1.5 signatures are
//! deterministic, so both paths produce the same bytes (tested).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Length of each `X-Ops-Authorization-N` header value (Ruby's
/// `Base64.encode64` line length).
const SIGNATURE_LINE_LEN: usize = 60;

/// Errors from key parsing and request signing. Messages never contain key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The PEM text could not be used as an RSA private key.
    #[error(
        "invalid private key: {reason}; expected an unencrypted RSA private key in PEM form, \
         either PKCS#1 (\"-----BEGIN RSA PRIVATE KEY-----\") or PKCS#8 (\"-----BEGIN PRIVATE KEY-----\")"
    )]
    InvalidKey {
        /// What was wrong (never includes the key itself).
        reason: String,
    },
    /// A signing protocol version string was not recognised.
    #[error("unsupported Chef signing protocol version {0:?}; expected one of \"1.0\", \"1.1\", \"1.3\"")]
    UnsupportedVersion(String),
    /// The server API version for protocol 1.3 was not a plain integer.
    #[error(
        "invalid X-Ops-Server-API-Version {0:?}: expected a non-negative integer without \
         leading zeros (e.g. \"1\"), as Chef Infra Server parses it as an integer"
    )]
    InvalidServerApiVersion(String),
    /// The RSA operation failed.
    #[error("could not sign Chef request with protocol {version}: {reason}")]
    Signing {
        /// Protocol version in use.
        version: SignVersion,
        /// Why signing failed.
        reason: String,
    },
    /// The public half of the key could not be PEM-encoded.
    #[error("could not encode public key as PEM: {0}")]
    PublicKeyEncoding(String),
}

/// Chef signing protocol version (the `version=` part of `X-Ops-Sign`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize,
)]
pub enum SignVersion {
    /// Protocol 1.0: SHA-1, plain user id in the canonical request.
    #[serde(rename = "1.0")]
    V1_0,
    /// Protocol 1.1: SHA-1, hashed user id in the canonical request.
    #[serde(rename = "1.1")]
    V1_1,
    /// Protocol 1.3: SHA-256 with a standard PKCS#1 v1.5 signature (default).
    #[default]
    #[serde(rename = "1.3")]
    V1_3,
}

impl SignVersion {
    /// The version string, e.g. `"1.3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignVersion::V1_0 => "1.0",
            SignVersion::V1_1 => "1.1",
            SignVersion::V1_3 => "1.3",
        }
    }

    /// Digest algorithm name used by this version (`"sha1"` or `"sha256"`).
    pub fn algorithm(self) -> &'static str {
        match self {
            SignVersion::V1_0 | SignVersion::V1_1 => "sha1",
            SignVersion::V1_3 => "sha256",
        }
    }

    /// Base64 of the version's digest of `data` (Chef's `hash_string`).
    fn hash_b64(self, data: &[u8]) -> String {
        match self {
            SignVersion::V1_0 | SignVersion::V1_1 => BASE64.encode(Sha1::digest(data)),
            SignVersion::V1_3 => BASE64.encode(Sha256::digest(data)),
        }
    }
}

impl fmt::Display for SignVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SignVersion {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "1.0" => Ok(SignVersion::V1_0),
            "1.1" => Ok(SignVersion::V1_1),
            "1.3" => Ok(SignVersion::V1_3),
            other => Err(AuthError::UnsupportedVersion(other.to_string())),
        }
    }
}

/// An RSA private key used to sign requests, parsed once. `Debug` shows only
/// the key size.
#[derive(Clone)]
pub struct SigningKey {
    /// The key for protocols 1.0/1.1 (and 1.3 when `ring` refused it).
    key: RsaPrivateKey,
    /// `ring`'s parsed copy for protocol 1.3; `None` when `ring` refuses the
    /// key (size outside 2048..=8192 bits, unusual encoding).
    fast: Option<Arc<ring::rsa::KeyPair>>,
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
    fn from_rsa(key: RsaPrivateKey) -> Self {
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

    fn bits(&self) -> usize {
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

/// The parts of an HTTP request covered by the signature.
#[derive(Debug, Clone)]
pub struct RequestToSign<'a> {
    /// HTTP method, any case (upper-cased for signing).
    pub method: &'a str,
    /// Request path exactly as sent on the wire (percent-encoded, no host);
    /// a query string is ignored. See [`canonical_path`].
    pub path: &'a str,
    /// Request body bytes (empty for GET/DELETE).
    pub body: &'a [u8],
    /// Chef client or user name (sent as `X-Ops-Userid`).
    pub user_id: &'a str,
    /// Request time; sent and signed as `YYYY-MM-DDTHH:MM:SSZ`.
    pub timestamp: DateTime<Utc>,
    /// Value of the `X-Ops-Server-API-Version` header the caller sends.
    /// Signed only by protocol 1.3 (which requires an integer); ignored
    /// otherwise.
    pub server_api_version: &'a str,
}

/// Canonical form of a request path as Chef signs it: the query string (and
/// any fragment) is dropped, runs of `/` collapse to one, and a trailing `/`
/// is removed unless the path is just `/`. An empty path becomes `/`.
pub fn canonical_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if c == '/' && out.ends_with('/') {
            continue;
        }
        out.push(c);
    }
    if out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Signs `req` and returns the headers to add to it, in this order:
/// `X-Ops-Sign`, `X-Ops-Userid`, `X-Ops-Timestamp`, `X-Ops-Content-Hash`,
/// `X-Ops-Authorization-1..N`.
///
/// For protocol 1.3 the caller must also send `X-Ops-Server-API-Version` with
/// exactly `req.server_api_version`, because the server reads that header to
/// rebuild the signed string.
pub fn sign(
    key: &SigningKey,
    version: SignVersion,
    req: &RequestToSign<'_>,
) -> Result<Vec<(String, String)>, AuthError> {
    let timestamp = canonical_time(&req.timestamp);
    let content_hash = version.hash_b64(req.body);
    let string_to_sign = canonical_request(version, req, &timestamp, &content_hash)?;

    let signing_error = |e: rsa::Error| AuthError::Signing {
        version,
        reason: match e {
            rsa::Error::MessageTooLong => format!(
                "the canonical request is {} bytes but a {}-bit key can sign at most {} bytes \
                 with protocol 1.0/1.1 (long user id?); use protocol 1.3",
                string_to_sign.len(),
                key.bits(),
                key.key.size().saturating_sub(11)
            ),
            other => other.to_string(),
        },
    };
    // `sign_with_rng` only uses the RNG for blinding; PKCS#1 v1.5 signatures
    // stay deterministic.
    let signature = match (version, &key.fast) {
        (SignVersion::V1_3, Some(fast)) => sign_v1_3_ring(fast, string_to_sign.as_bytes())?,
        (SignVersion::V1_0 | SignVersion::V1_1, _) => key
            .key
            .sign_with_rng(
                &mut OsRng,
                Pkcs1v15Sign::new_unprefixed(),
                string_to_sign.as_bytes(),
            )
            .map_err(signing_error)?,
        (SignVersion::V1_3, None) => key
            .key
            .sign_with_rng(
                &mut OsRng,
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(string_to_sign.as_bytes()),
            )
            .map_err(signing_error)?,
    };

    let mut headers = vec![
        (
            "X-Ops-Sign".to_string(),
            format!("algorithm={};version={};", version.algorithm(), version),
        ),
        ("X-Ops-Userid".to_string(), req.user_id.to_string()),
        ("X-Ops-Timestamp".to_string(), timestamp),
        ("X-Ops-Content-Hash".to_string(), content_hash),
    ];
    let encoded = BASE64.encode(signature);
    // Base64 output is ASCII, so byte chunks are valid UTF-8.
    for (i, line) in encoded.as_bytes().chunks(SIGNATURE_LINE_LEN).enumerate() {
        headers.push((
            format!("X-Ops-Authorization-{}", i + 1),
            String::from_utf8_lossy(line).into_owned(),
        ));
    }
    Ok(headers)
}

/// RSASSA-PKCS1-v1_5 with SHA-256 (`ring` hashes `message` itself).
fn sign_v1_3_ring(key: &ring::rsa::KeyPair, message: &[u8]) -> Result<Vec<u8>, AuthError> {
    let mut signature = vec![0u8; key.public().modulus_len()];
    // PKCS#1 v1.5 padding uses no randomness; ring wants an RNG for other schemes.
    let rng = ring::rand::SystemRandom::new();
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &rng,
        message,
        &mut signature,
    )
    .map_err(|_| AuthError::Signing {
        version: SignVersion::V1_3,
        reason: "ring could not produce an RSASSA-PKCS1-v1_5/SHA-256 signature".into(),
    })?;
    Ok(signature)
}

/// ISO 8601 UTC without fractional seconds, e.g. `2009-01-01T12:00:00Z`.
fn canonical_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The newline-joined string that gets signed.
fn canonical_request(
    version: SignVersion,
    req: &RequestToSign<'_>,
    timestamp: &str,
    content_hash: &str,
) -> Result<String, AuthError> {
    let method = req.method.to_ascii_uppercase();
    let path = canonical_path(req.path);
    Ok(match version {
        SignVersion::V1_0 | SignVersion::V1_1 => {
            let user_id = if version == SignVersion::V1_1 {
                version.hash_b64(req.user_id.as_bytes())
            } else {
                req.user_id.to_string()
            };
            format!(
                "Method:{method}\nHashed Path:{}\nX-Ops-Content-Hash:{content_hash}\n\
                 X-Ops-Timestamp:{timestamp}\nX-Ops-UserId:{user_id}",
                version.hash_b64(path.as_bytes()),
            )
        }
        SignVersion::V1_3 => {
            let api = req.server_api_version;
            let is_integer = !api.is_empty()
                && api.bytes().all(|b| b.is_ascii_digit())
                && (api == "0" || !api.starts_with('0'));
            if !is_integer {
                return Err(AuthError::InvalidServerApiVersion(api.to_string()));
            }
            format!(
                "Method:{method}\nPath:{path}\nX-Ops-Content-Hash:{content_hash}\n\
                 X-Ops-Sign:version=1.3\nX-Ops-Timestamp:{timestamp}\n\
                 X-Ops-UserId:{}\nX-Ops-Server-API-Version:{api}",
                req.user_id,
            )
        }
    })
}

/// Test-only RSA key from mixlib-authentication's spec
/// (`spec/mixlib/authentication/mixlib_authentication_spec.rb`).
#[cfg(test)]
pub(crate) const TEST_PRIVATE_KEY_PEM: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEA0ueqo76MXuP6XqZBILFziH/9AI7C6PaN5W0dSvkr9yInyGHS
z/IR1+4tqvP2qlfKVKI4CP6BFH251Ft9qMUBuAsnlAVQ1z0exDtIFFOyQCdR7iXm
jBIWMSS4buBwRQXwDK7id1OxtU23qVJv+xwEV0IzaaSJmaGLIbvRBD+qatfUuQJB
MU/04DdJIwvLtZBYdC2219m5dUBQaa4bimL+YN9EcsDzD9h9UxQo5ReK7b3cNMzJ
BKJWLzFBcJuePMzAnLFktr/RufX4wpXe6XJxoVPaHo72GorLkwnQ0HYMTY8rehT4
mDi1FI969LHCFFaFHSAaRnwdXaQkJmSfcxzCYQIDAQABAoIBAQCW3I4sKN5B9jOe
xq/pkeWBq4OvhW8Ys1yW0zFT8t6nHbB1XrwscQygd8gE9BPqj3e0iIEqtdphbPmj
VHqTYbC0FI6QDClifV7noTwTBjeIOlgZ0NSUN0/WgVzIOxUz2mZ2vBZUovKILPqG
TOi7J7RXMoySMdcXpP1f+PgvYNcnKsT72UcWaSXEV8/zo+Zm/qdGPVWwJonri5Mp
DVm5EQSENBiRyt028rU6ElXORNmoQpVjDVqZ1gipzXkifdjGyENw2rt4V/iKYD7V
5iqXOsvP6Cemf4gbrjunAgDG08S00kiUgvVWcdXW+dlsR2nCvH4DOEe3AYYh/aH8
DxEE7FbtAoGBAPcNO8fJ56mNw0ow4Qg38C+Zss/afhBOCfX4O/SZKv/roRn5+gRM
KRJYSVXNnsjPI1plzqR4OCyOrjAhtuvL4a0DinDzf1+fiztyNohwYsW1vYmqn3ti
EN0GhSgE7ppZjqvLQ3f3LUTxynhA0U+k9wflb4irIlViTUlCsOPkrNJDAoGBANqL
Q+vvuGSsmRLU/Cenjy+Mjj6+QENg51dz34o8JKuVKIPKU8pNnyeLa5fat0qD2MHm
OB9opeQOcw0dStodxr6DB3wi83bpjeU6BWUGITNiWEaZEBrQ0aiqNJJKrrHm8fAZ
9o4l4oHc4hI0kYVYYDuxtKuVJrzZiEapTwoOcYiLAoGBAI/EWbeIHZIj9zOjgjEA
LHvm25HtulLOtyk2jd1njQhlHNk7CW2azIPqcLLH99EwCYi/miNH+pijZ2aHGCXb
/bZrSxM0ADmrZKDxdB6uGCyp+GS2sBxjEyEsfCyvwhJ8b3Q100tqwiNO+d5FCglp
HICx2dgUjuRVUliBwOK93nx1AoGAUI8RhIEjOYkeDAESyhNMBr0LGjnLOosX+/as
qiotYkpjWuFULbibOFp+WMW41vDvD9qrSXir3fstkeIAW5KqVkO6mJnRoT3Knnra
zjiKOITCAZQeiaP8BO5o3pxE9TMqb9VCO3ffnPstIoTaN4syPg7tiGo8k1SklVeH
2S8lzq0CgYAKG2fljIYWQvGH628rp4ZcXS4hWmYohOxsnl1YrszbJ+hzR+IQOhGl
YlkUQYXhy9JixmUUKtH+NXkKX7Lyc8XYw5ETr7JBT3ifs+G7HruDjVG78EJVojbd
8uLA+DdQm5mg4vd1GTiSK65q/3EeoBlUaVor3HhLFki+i9qpT8CBsg==
-----END RSA PRIVATE KEY-----
";

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rsa::pkcs8::EncodePrivateKey;
    use rsa::traits::PrivateKeyParts;

    // Inputs and expected outputs from mixlib-authentication's spec.
    const SPEC_PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0ueqo76MXuP6XqZBILFz
iH/9AI7C6PaN5W0dSvkr9yInyGHSz/IR1+4tqvP2qlfKVKI4CP6BFH251Ft9qMUB
uAsnlAVQ1z0exDtIFFOyQCdR7iXmjBIWMSS4buBwRQXwDK7id1OxtU23qVJv+xwE
V0IzaaSJmaGLIbvRBD+qatfUuQJBMU/04DdJIwvLtZBYdC2219m5dUBQaa4bimL+
YN9EcsDzD9h9UxQo5ReK7b3cNMzJBKJWLzFBcJuePMzAnLFktr/RufX4wpXe6XJx
oVPaHo72GorLkwnQ0HYMTY8rehT4mDi1FI969LHCFFaFHSAaRnwdXaQkJmSfcxzC
YQIDAQAB
-----END PUBLIC KEY-----
";
    const USER_ID: &str = "spec-user";
    const BODY: &[u8] = b"Spec Body";
    const PATH: &str = "/organizations/clownco";
    const TIMESTAMP: &str = "2009-01-01T12:00:00Z";
    const HASHED_BODY_SHA1: &str = "DFteJZPVv6WKdQmMqZUQUumUyRs=";
    const HASHED_BODY_SHA256: &str = "hDlKNZhIhgso3Fs0S0pZwJ0xyBWtR1RBaeHs1DrzOho=";
    const HASHED_PATH_SHA1: &str = "YtBWDn1blGGuFIuKksdwXzHU9oE=";

    const AUTH_LINES_V1_0: [&str; 6] = [
        "jVHrNniWzpbez/eGWjFnO6lINRIuKOg40ZTIQudcFe47Z9e/HvrszfVXlKG4",
        "NMzYZgyooSvU85qkIUmKuCqgG2AIlvYa2Q/2ctrMhoaHhLOCWWoqYNMaEqPc",
        "3tKHE+CfvP+WuPdWk4jv4wpIkAz6ZLxToxcGhXmZbXpk56YTmqgBW2cbbw4O",
        "IWPZDHSiPcw//AYNgW1CCDptt+UFuaFYbtqZegcBd2n/jzcWODA7zL4KWEUy",
        "9q4rlh/+1tBReg60QdsmDRsw/cdO1GZrKtuCwbuD4+nbRdVBKv72rqHX9cu0",
        "utju9jzczCyB+sSAQWrxSsXB/b8vV2qs0l4VD2ML+w==",
    ];
    const AUTH_LINES_V1_1: [&str; 6] = [
        "UfZD9dRz6rFu6LbP5Mo1oNHcWYxpNIcUfFCffJS1FQa0GtfU/vkt3/O5HuCM",
        "1wIFl/U0f5faH9EWpXWY5NwKR031Myxcabw4t4ZLO69CIh/3qx1XnjcZvt2w",
        "c2R9bx/43IWA/r8w8Q6decuu0f6ZlNheJeJhaYPI8piX/aH+uHBH8zTACZu8",
        "vMnl5MF3/OIlsZc8cemq6eKYstp8a8KYq9OmkB5IXIX6qVMJHA6fRvQEB/7j",
        "281Q7oI/O+lE8AmVyBbwruPb7Mp6s4839eYiOdjbDwFjYtbS3XgAjrHlaD7W",
        "FDlbAG7H8Dmvo+wBxmtNkszhzbBnEYtuwQqT8nM/8A==",
    ];
    const AUTH_LINES_V1_3: [&str; 6] = [
        "FZOmXAyOBAZQV/uw188iBljBJXOm+m8xQ/8KTGLkgGwZNcRFxk1m953XjE3W",
        "VGy1dFT76KeaNWmPCNtDmprfH2na5UZFtfLIKrPv7xm80V+lzEzTd9WBwsfP",
        "42dZ9N+V9I5SVfcL/lWrrlpdybfceJC5jOcP5tzfJXWUITwb6Z3Erg3DU3Uh",
        "H9h9E0qWlYGqmiNCVrBnpe6Si1gU/Jl+rXlRSNbLJ4GlArAPuL976iTYJTzE",
        "MmbLUIm3JRYi00Yb01IUCCKdI90vUq1HHNtlTEu93YZfQaJwRxXlGkCNwIJe",
        "fy49QzaCIEu1XiOx5Jn+4GmkrZch/RrK9VzQWXgs+w==",
    ];

    fn spec_key() -> SigningKey {
        SigningKey::from_pem(TEST_PRIVATE_KEY_PEM).expect("spec key parses")
    }

    fn spec_request() -> RequestToSign<'static> {
        RequestToSign {
            method: "post",
            path: PATH,
            body: BODY,
            user_id: USER_ID,
            timestamp: Utc.with_ymd_and_hms(2009, 1, 1, 12, 0, 0).unwrap(),
            server_api_version: "1",
        }
    }

    fn expected(sign: &str, hash: &str, lines: &[&str]) -> Vec<(String, String)> {
        let mut v = vec![
            ("X-Ops-Sign".to_string(), sign.to_string()),
            ("X-Ops-Userid".to_string(), USER_ID.to_string()),
            ("X-Ops-Timestamp".to_string(), TIMESTAMP.to_string()),
            ("X-Ops-Content-Hash".to_string(), hash.to_string()),
        ];
        for (i, l) in lines.iter().enumerate() {
            v.push((format!("X-Ops-Authorization-{}", i + 1), l.to_string()));
        }
        v
    }

    #[test]
    fn spec_vector_v1_0() {
        let got = sign(&spec_key(), SignVersion::V1_0, &spec_request()).unwrap();
        let want = expected(
            "algorithm=sha1;version=1.0;",
            HASHED_BODY_SHA1,
            &AUTH_LINES_V1_0,
        );
        assert_eq!(got, want);
    }

    #[test]
    fn spec_vector_v1_1() {
        let got = sign(&spec_key(), SignVersion::V1_1, &spec_request()).unwrap();
        let want = expected(
            "algorithm=sha1;version=1.1;",
            HASHED_BODY_SHA1,
            &AUTH_LINES_V1_1,
        );
        assert_eq!(got, want);
    }

    #[test]
    fn spec_vector_v1_3() {
        assert!(spec_key().signs_v1_3_with_ring());
        let got = sign(&spec_key(), SignVersion::V1_3, &spec_request()).unwrap();
        let want = expected(
            "algorithm=sha256;version=1.3;",
            HASHED_BODY_SHA256,
            &AUTH_LINES_V1_3,
        );
        assert_eq!(got, want);
    }

    /// The `rsa` crate path (used for keys ring refuses) must give the spec
    /// vector too.
    #[test]
    fn spec_vector_v1_3_without_ring() {
        let key = SigningKey {
            fast: None,
            ..spec_key()
        };
        let got = sign(&key, SignVersion::V1_3, &spec_request()).unwrap();
        let want = expected(
            "algorithm=sha256;version=1.3;",
            HASHED_BODY_SHA256,
            &AUTH_LINES_V1_3,
        );
        assert_eq!(got, want);
    }

    #[test]
    fn ring_and_rsa_crate_sign_v1_3_identically() {
        let key = SigningKey::from_rsa(RsaPrivateKey::new(&mut OsRng, 2048).unwrap());
        assert!(key.signs_v1_3_with_ring());
        let slow = SigningKey {
            fast: None,
            ..key.clone()
        };
        let mut req = spec_request();
        for path in ["/organizations/o/nodes/i-0abc", "/", "/a/b/c?x=1"] {
            req.path = path;
            assert_eq!(
                sign(&key, SignVersion::V1_3, &req).unwrap(),
                sign(&slow, SignVersion::V1_3, &req).unwrap(),
                "{path}"
            );
        }
    }

    #[test]
    fn key_ring_refuses_still_signs_v1_3() {
        use rsa::pkcs8::DecodePublicKey;
        // ring only accepts 2048..=8192-bit private keys.
        let key = SigningKey::from_rsa(RsaPrivateKey::new(&mut OsRng, 1024).unwrap());
        assert!(!key.signs_v1_3_with_ring());
        let headers = sign(&key, SignVersion::V1_3, &spec_request()).unwrap();
        let sig: String = headers
            .iter()
            .filter(|(k, _)| k.starts_with("X-Ops-Authorization-"))
            .map(|(_, v)| v.as_str())
            .collect();
        let canonical = canonical_request(
            SignVersion::V1_3,
            &spec_request(),
            TIMESTAMP,
            HASHED_BODY_SHA256,
        )
        .unwrap();
        rsa::RsaPublicKey::from_public_key_pem(&key.public_key_pem().unwrap())
            .unwrap()
            .verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(canonical.as_bytes()),
                &BASE64.decode(sig).unwrap(),
            )
            .unwrap();
    }

    #[test]
    fn spec_canonical_requests() {
        let req = spec_request();
        let c10 = canonical_request(SignVersion::V1_0, &req, TIMESTAMP, HASHED_BODY_SHA1).unwrap();
        assert_eq!(
            c10,
            format!(
                "Method:POST\nHashed Path:{HASHED_PATH_SHA1}\nX-Ops-Content-Hash:{HASHED_BODY_SHA1}\n\
                 X-Ops-Timestamp:{TIMESTAMP}\nX-Ops-UserId:spec-user"
            )
        );
        let c11 = canonical_request(SignVersion::V1_1, &req, TIMESTAMP, HASHED_BODY_SHA1).unwrap();
        let hashed_user = BASE64.encode(Sha1::digest(USER_ID));
        assert!(c11.ends_with(&format!("X-Ops-UserId:{hashed_user}")));
        let c13 =
            canonical_request(SignVersion::V1_3, &req, TIMESTAMP, HASHED_BODY_SHA256).unwrap();
        assert_eq!(
            c13,
            format!(
                "Method:POST\nPath:{PATH}\nX-Ops-Content-Hash:{HASHED_BODY_SHA256}\n\
                 X-Ops-Sign:version=1.3\nX-Ops-Timestamp:{TIMESTAMP}\nX-Ops-UserId:spec-user\n\
                 X-Ops-Server-API-Version:1"
            )
        );
    }

    #[test]
    fn path_variants_sign_identically() {
        let key = spec_key();
        let mut req = spec_request();
        req.path = "//organizations///clownco/?q=1";
        let got = sign(&key, SignVersion::V1_3, &req).unwrap();
        assert_eq!(got[4].1, AUTH_LINES_V1_3[0]);
    }

    #[test]
    fn canonical_path_rules() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("//", "/"),
            ("/?a=b", "/"),
            ("/organizations/clownco", "/organizations/clownco"),
            ("/organizations/clownco/", "/organizations/clownco"),
            (
                "/organizations//clownco///nodes//",
                "/organizations/clownco/nodes",
            ),
            (
                "/organizations/o/search/node?q=name:x&rows=1",
                "/organizations/o/search/node",
            ),
            (
                "/organizations/o/nodes/a%2Fb/",
                "/organizations/o/nodes/a%2Fb",
            ),
            ("/a/b#frag", "/a/b"),
        ];
        for (input, want) in cases {
            assert_eq!(canonical_path(input), want, "input {input:?}");
        }
    }

    #[test]
    fn timestamp_drops_fraction_and_uses_utc() {
        let t = DateTime::parse_from_rfc3339("2024-03-05T06:07:08.987654+02:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(canonical_time(&t), "2024-03-05T04:07:08Z");
    }

    #[test]
    fn debug_does_not_leak_key() {
        let key = spec_key();
        let dbg = format!("{key:?} {key:#?}");
        assert!(dbg.contains("2048"), "{dbg}");
        assert!(!dbg.contains("MII"));
        let d = key.key.d().to_string();
        assert!(!dbg.contains(&d[..20]));
        assert!(!dbg.contains(&key.key.n().to_string()[..20]));
    }

    #[test]
    fn public_key_pem_is_spki_and_matches_spec() {
        let pem = spec_key().public_key_pem().unwrap();
        assert_eq!(pem, SPEC_PUBLIC_KEY_PEM);
    }

    #[test]
    fn pkcs8_and_crlf_pem_accepted() {
        let pkcs8 = spec_key().key.to_pkcs8_pem(LineEnding::CRLF).unwrap();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key = SigningKey::from_pem(&format!("leading text\n{}", pkcs8.as_str())).unwrap();
        let got = sign(&key, SignVersion::V1_1, &spec_request()).unwrap();
        assert_eq!(got[4].1, AUTH_LINES_V1_1[0]);
        let crlf = TEST_PRIVATE_KEY_PEM.replace('\n', "\r\n");
        assert!(SigningKey::from_pem(&crlf).is_ok());
    }

    #[test]
    fn bad_pem_errors_explain_expectation() {
        let cases = [
            ("not a key", "no \"-----BEGIN"),
            (SPEC_PUBLIC_KEY_PEM, "public key"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "passphrase-encrypted",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "passphrase-encrypted",
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "PKCS#1 RSA key could not be decoded",
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
                "\"EC PRIVATE KEY\"",
            ),
        ];
        for (pem, needle) in cases {
            let msg = SigningKey::from_pem(pem).unwrap_err().to_string();
            assert!(msg.contains(needle), "{msg}");
            assert!(msg.contains("BEGIN RSA PRIVATE KEY"), "{msg}");
            assert!(!msg.contains("MIIB"), "{msg}");
        }
    }

    #[test]
    fn long_user_id_fails_for_v1_0_only() {
        let key = spec_key();
        let user = "A".repeat(200);
        let path = format!("{PATH}/nodes/{}", "A".repeat(250));
        let mut req = spec_request();
        req.user_id = &user;
        req.path = &path;
        req.method = "PUT";
        let msg = sign(&key, SignVersion::V1_0, &req).unwrap_err().to_string();
        assert!(msg.contains("use protocol 1.3"), "{msg}");
        assert!(sign(&key, SignVersion::V1_1, &req).is_ok());
        assert!(sign(&key, SignVersion::V1_3, &req).is_ok());
    }

    #[test]
    fn server_api_version_must_be_integer_for_v1_3() {
        let key = spec_key();
        for bad in ["", "v1", "1.0", "01", " 1"] {
            let mut req = spec_request();
            req.server_api_version = bad;
            assert!(
                matches!(
                    sign(&key, SignVersion::V1_3, &req),
                    Err(AuthError::InvalidServerApiVersion(_))
                ),
                "{bad:?}"
            );
            assert!(sign(&key, SignVersion::V1_1, &req).is_ok());
        }
    }

    #[test]
    fn version_parse_display_serde() {
        for (s, v) in [
            ("1.0", SignVersion::V1_0),
            ("1.1", SignVersion::V1_1),
            ("1.3", SignVersion::V1_3),
        ] {
            assert_eq!(s.parse::<SignVersion>().unwrap(), v);
            assert_eq!(v.to_string(), s);
        }
        assert_eq!(SignVersion::default(), SignVersion::V1_3);
        let err = "1.2".parse::<SignVersion>().unwrap_err().to_string();
        assert!(err.contains("\"1.2\"") && err.contains("\"1.3\""), "{err}");

        #[derive(serde::Deserialize, serde::Serialize)]
        struct Cfg {
            v: SignVersion,
        }
        let cfg: Cfg = toml::from_str("v = \"1.1\"").unwrap();
        assert_eq!(cfg.v, SignVersion::V1_1);
        assert_eq!(
            toml::to_string(&Cfg {
                v: SignVersion::V1_3
            })
            .unwrap()
            .trim(),
            "v = \"1.3\""
        );
        assert!(toml::from_str::<Cfg>("v = \"1.2\"").is_err());
    }

    #[test]
    fn fresh_key_v1_3_verifies_with_public_key() {
        use rsa::pkcs8::DecodePublicKey;
        let private = RsaPrivateKey::new(&mut OsRng, 2048).unwrap();
        let key = SigningKey::from_rsa(private);
        assert!(key.signs_v1_3_with_ring());
        let public =
            rsa::RsaPublicKey::from_public_key_pem(&key.public_key_pem().unwrap()).unwrap();
        let req = RequestToSign {
            method: "DELETE",
            path: "/organizations/acme/nodes/i-0abc",
            body: b"",
            user_id: "nodereaper",
            timestamp: Utc::now(),
            server_api_version: "1",
        };
        for version in [SignVersion::V1_3, SignVersion::V1_0] {
            let headers = sign(&key, version, &req).unwrap();
            let get = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            let sig_b64: String = headers
                .iter()
                .filter(|(k, _)| k.starts_with("X-Ops-Authorization-"))
                .map(|(_, v)| {
                    assert!(v.len() <= SIGNATURE_LINE_LEN);
                    v.as_str()
                })
                .collect();
            let sig = BASE64.decode(sig_b64).unwrap();
            let canonical = canonical_request(
                version,
                &req,
                &get("X-Ops-Timestamp"),
                &get("X-Ops-Content-Hash"),
            )
            .unwrap();
            match version {
                SignVersion::V1_3 => public
                    .verify(
                        Pkcs1v15Sign::new::<Sha256>(),
                        &Sha256::digest(canonical.as_bytes()),
                        &sig,
                    )
                    .unwrap(),
                _ => public
                    .verify(Pkcs1v15Sign::new_unprefixed(), canonical.as_bytes(), &sig)
                    .unwrap(),
            }
            // A different body must not verify.
            let other = canonical.replace("Method:DELETE", "Method:GET");
            let bad = match version {
                SignVersion::V1_3 => public.verify(
                    Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(other.as_bytes()),
                    &sig,
                ),
                _ => public.verify(Pkcs1v15Sign::new_unprefixed(), other.as_bytes(), &sig),
            };
            assert!(bad.is_err());
        }
    }
}
