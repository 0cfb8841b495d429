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
//!
//! Files: `key` (the parsed key), `sign` (canonical request and headers),
//! `tests` (mixlib-authentication's signing vectors and more).
//! [`SignVersion`] is a setting, defined in [`crate::config`] and re-exported
//! here.

mod key;
mod sign;
#[cfg(test)]
mod tests;

pub use self::key::SigningKey;
pub use self::sign::{canonical_path, sign, RequestToSign};
pub use crate::config::SignVersion;

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
