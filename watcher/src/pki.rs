//! The allocator's small PKI: a certificate authority and the serving certificates it signs.
//! ECDSA P-256 keys (rustls with ring, Go's grpcurl and Prometheus all accept them, and they
//! are generated in microseconds). Everything is PEM text, as Secrets and ConfigMaps hold it.

use std::{net::IpAddr, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// Certificates are valid from a little before they are made, so a client whose clock lags
/// the watcher's accepts them at once.
const BACKDATE: Duration = Duration::from_secs(300);

/// A certificate and its private key, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PemPair {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
    /// When the certificate stops being valid, seconds since the Unix epoch.
    pub not_after: i64,
}

/// Makes a self-signed CA named `name`, valid for `validity` from `now`.
pub fn new_authority(
    name: &str,
    now: OffsetDateTime,
    validity: Duration,
) -> anyhow::Result<PemPair> {
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    params.distinguished_name = subject;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let not_after = set_validity(&mut params, now, validity);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(PemPair { cert: cert.pem(), key: key.serialize_pem(), not_after })
}

/// Issues a serving certificate for `dns_names` and `ips`, signed by `authority`, valid for
/// `validity` from `now`.
pub fn issue_serving(
    authority: &PemPair,
    dns_names: &[String],
    ips: &[IpAddr],
    now: OffsetDateTime,
    validity: Duration,
) -> anyhow::Result<PemPair> {
    let issuer = Issuer::from_ca_cert_pem(&authority.cert, KeyPair::from_pem(&authority.key)?)
        .map_err(|err| anyhow::anyhow!("the CA certificate cannot sign: {err}"))?;
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(
        DnType::CommonName,
        dns_names.first().map(String::as_str).unwrap_or("metallb-allocator"),
    );
    params.distinguished_name = subject;
    params.subject_alt_names = dns_names
        .iter()
        .map(|name| Ok(SanType::DnsName(name.as_str().try_into()?)))
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<anyhow::Result<_>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    // The CA's notAfter bounds the leaf's: a chain is only as valid as its shortest link.
    let not_after = set_validity(&mut params, now, validity).min(authority.not_after);
    params.not_after = OffsetDateTime::from_unix_timestamp(not_after)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(PemPair { cert: cert.pem(), key: key.serialize_pem(), not_after })
}

/// Whether a client trusting `bundle` (PEM, one or more CA certificates) accepts
/// `serving_cert` (PEM) for `dns_name` at `now`: what the allocator's clients will decide.
pub fn bundle_accepts(
    bundle: &str,
    serving_cert: &str,
    dns_name: &str,
    now: OffsetDateTime,
) -> bool {
    use std::sync::Arc;

    use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
    use tokio_rustls::rustls::{
        RootCertStore,
        client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    };

    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle.as_bytes()).flatten() {
        let _ = roots.add(cert);
    }
    let Ok(leaf) = CertificateDer::from_pem_slice(serving_cert.as_bytes()) else { return false };
    let Ok(name) = ServerName::try_from(dns_name.to_string()) else { return false };
    let Ok(seconds) = u64::try_from(now.unix_timestamp()) else { return false };
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let Ok(verifier) =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build()
    else {
        return false;
    };
    verifier
        .verify_server_cert(
            &leaf,
            &[],
            &name,
            &[],
            UnixTime::since_unix_epoch(Duration::from_secs(seconds)),
        )
        .is_ok()
}

fn set_validity(params: &mut CertificateParams, now: OffsetDateTime, validity: Duration) -> i64 {
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    params.not_after.unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn a_serving_certificate_never_outlives_its_authority() {
        let now = OffsetDateTime::now_utc();
        let authority = new_authority("test CA", now, 10 * DAY).unwrap();
        let serving =
            issue_serving(&authority, &["a.example".into()], &[], now, 100 * DAY).unwrap();
        assert_eq!(serving.not_after, authority.not_after);
        let short = issue_serving(&authority, &["a.example".into()], &[], now, DAY).unwrap();
        assert_eq!(short.not_after, (now + DAY).unix_timestamp());
        assert!(serving.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_ne!(serving.key, authority.key);
    }

    #[test]
    fn only_the_signing_authority_makes_a_bundle_accept_a_certificate() {
        let now = OffsetDateTime::now_utc();
        // Same name and same second, as two watchers racing to bootstrap make them: only the
        // signature tells them apart.
        let signing = new_authority("metallb-allocator-ca", now, DAY).unwrap();
        let twin = new_authority("metallb-allocator-ca", now, DAY).unwrap();
        let serving = issue_serving(&signing, &["a.example".into()], &[], now, DAY).unwrap();
        assert!(bundle_accepts(&signing.cert, &serving.cert, "a.example", now));
        assert!(!bundle_accepts(&twin.cert, &serving.cert, "a.example", now));
        let both = format!("{}{}", twin.cert, signing.cert);
        assert!(bundle_accepts(&both, &serving.cert, "a.example", now));
        assert!(!bundle_accepts(&signing.cert, &serving.cert, "b.example", now));
        assert!(!bundle_accepts(&signing.cert, &serving.cert, "a.example", now + 2 * DAY));
        assert!(!bundle_accepts(&signing.cert, "not a certificate", "a.example", now));
    }

    #[test]
    fn a_broken_authority_is_an_error() {
        let now = OffsetDateTime::now_utc();
        let mut authority = new_authority("test CA", now, DAY).unwrap();
        authority.key = "not a key".into();
        assert!(issue_serving(&authority, &["a".into()], &[], now, DAY).is_err());
    }
}
