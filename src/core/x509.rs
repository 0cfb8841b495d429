//! The public key of an X.509 certificate, as PEM: old Chef clients
//! (`key_version` 1, Chef 11 era) keep their key as a certificate, and
//! POST /clients/NAME/keys takes back only `BEGIN PUBLIC KEY`
//! (chef/chef-server chef_objects/src/chef_key_base.erl `public_key_spec`).
//! Parsed with rustls-webpki, the certificate parser rustls already builds.

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// The SubjectPublicKeyInfo of the first certificate in `pem`, as a
/// `-----BEGIN PUBLIC KEY-----` PEM block. Errors say what was wrong.
pub fn public_key_of_certificate(pem: &str) -> Result<String, String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("expected a PEM certificate: {e:?}"))?;
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| format!("expected an X.509 certificate: {e:?}"))?;
    let spki = cert.subject_public_key_info();
    let b64 = base64::engine::general_purpose::STANDARD.encode(spki.as_ref());
    let mut out = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END PUBLIC KEY-----\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_public_key_out_of_a_certificate() {
        let cert = include_str!("../../tests/fixtures/old-client-cert.pem");
        let public = include_str!("../../tests/fixtures/test-client.pub.pem");
        assert_eq!(public_key_of_certificate(cert).expect("parsed"), public);
        let err = public_key_of_certificate(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect_err("not a certificate");
        assert!(err.contains("X.509") || err.contains("PEM"), "{err}");
    }
}
