//! Signing tested against mixlib-authentication's spec vectors, plus key
//! parsing and the `ring`/`rsa` paths agreeing.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use rand::rngs::OsRng;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::sign::{canonical_request, canonical_time, SIGNATURE_LINE_LEN};
use super::*;

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
    let c13 = canonical_request(SignVersion::V1_3, &req, TIMESTAMP, HASHED_BODY_SHA256).unwrap();
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
    let public = rsa::RsaPublicKey::from_public_key_pem(&key.public_key_pem().unwrap()).unwrap();
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
