//! Signing a request: the canonical string of each protocol version, the
//! RSA signature, and the `X-Ops-*` headers.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use rsa::traits::PublicKeyParts;
use rsa::Pkcs1v15Sign;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::{AuthError, SignVersion, SigningKey};

/// Length of each `X-Ops-Authorization-N` header value (Ruby's
/// `Base64.encode64` line length).
pub(super) const SIGNATURE_LINE_LEN: usize = 60;

/// Base64 of `version`'s digest of `data` (Chef's `hash_string`).
fn hash_b64(version: SignVersion, data: &[u8]) -> String {
    match version {
        SignVersion::V1_0 | SignVersion::V1_1 => BASE64.encode(Sha1::digest(data)),
        SignVersion::V1_3 => BASE64.encode(Sha256::digest(data)),
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
    let content_hash = hash_b64(version, req.body);
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
pub(super) fn canonical_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The newline-joined string that gets signed.
pub(super) fn canonical_request(
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
                hash_b64(version, req.user_id.as_bytes())
            } else {
                req.user_id.to_string()
            };
            format!(
                "Method:{method}\nHashed Path:{}\nX-Ops-Content-Hash:{content_hash}\n\
                 X-Ops-Timestamp:{timestamp}\nX-Ops-UserId:{user_id}",
                hash_b64(version, path.as_bytes()),
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
