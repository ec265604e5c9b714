//! The control plane's PKI: one throw-away CA per control plane that signs the apiserver's
//! serving certificate and every client certificate, plus the service-account signing key. All
//! keys are ECDSA P-256, which Go's TLS stack, rustls (with ring) and kube-apiserver's token
//! signer all accept, and which is much faster to generate than RSA.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// The names of the `kubernetes` Service in the default cluster domain, as pods resolve it.
const KUBERNETES_SERVICE_NAMES: [&str; 4] = [
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// The X.520 organizationName attribute. Kubernetes reads a client's groups from every O
/// attribute of its certificate's subject.
const ORGANIZATION_NAME_OID: [u64; 4] = [2, 5, 4, 10];

/// A certificate and its key, written as PEM files.
pub(super) struct PemFiles {
    pub(super) cert: PathBuf,
    pub(super) key: PathBuf,
}

/// The CA that the apiserver trusts for client certificates and that clients trust for the
/// apiserver's serving certificate.
pub(super) struct CertificateAuthority {
    issuer: CertifiedIssuer<'static, KeyPair>,
    cert_path: PathBuf,
}

impl CertificateAuthority {
    /// Creates a CA and writes its certificate to `<dir>/ca.crt`.
    pub(super) fn create(dir: &Path) -> anyhow::Result<Self> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name("metallb-rs test CA", &[])?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let cert_path = dir.join("ca.crt");
        std::fs::write(&cert_path, issuer.pem())?;
        Ok(Self { issuer, cert_path })
    }

    /// Path of the CA certificate (PEM).
    pub(super) fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Issues the apiserver's serving certificate, valid for 127.0.0.1, localhost and
    /// `extra_addresses`, and writes it to `<dir>/<stem>.crt` and `.key`. With extra addresses
    /// (a control plane that serves nodes) it is also valid for the names pods use for the
    /// `kubernetes` Service.
    pub(super) fn issue_serving(
        &self,
        dir: &Path,
        stem: &str,
        extra_addresses: &[IpAddr],
    ) -> anyhow::Result<PemFiles> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name("kube-apiserver", &[])?;
        params.subject_alt_names = vec![
            SanType::IpAddress([127, 0, 0, 1].into()),
            SanType::DnsName("localhost".try_into()?),
        ];
        if !extra_addresses.is_empty() {
            params
                .subject_alt_names
                .extend(extra_addresses.iter().copied().map(SanType::IpAddress));
            for name in KUBERNETES_SERVICE_NAMES {
                params.subject_alt_names.push(SanType::DnsName(name.try_into()?));
            }
        }
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, dir, stem)
    }

    /// Issues a client certificate for user `name` in `groups` (at most two, see
    /// [`distinguished_name`]) and writes it to `<dir>/<stem>.crt` and `.key`.
    pub(super) fn issue_client(
        &self,
        name: &str,
        groups: &[&str],
        dir: &Path,
        stem: &str,
    ) -> anyhow::Result<PemFiles> {
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished_name(name, groups)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, dir, stem)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        dir: &Path,
        stem: &str,
    ) -> anyhow::Result<PemFiles> {
        // Lets verifiers (Go's included) pick the CA by key ID rather than by name alone.
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let files = PemFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        write_private(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

/// Generates the key pair kube-apiserver signs and verifies service-account tokens with and
/// writes the private key (PKCS#8 PEM) to `private` and the public key (PKIX PEM) to `public`.
/// Two files, because the apiserver does not read PKCS#8 private keys as verification keys.
pub(super) fn write_service_account_keys(private: &Path, public: &Path) -> anyhow::Result<()> {
    let key = KeyPair::generate()?;
    write_private(private, &key.serialize_pem())?;
    std::fs::write(public, key.public_key_pem())?;
    Ok(())
}

/// Subject CN=`common_name`, O=each of `organizations`.
///
/// rcgen keeps one value per attribute type, so a second O is added under the same OID spelled
/// as a custom type; a third cannot be expressed and is refused rather than silently dropped.
fn distinguished_name(
    common_name: &str,
    organizations: &[&str],
) -> anyhow::Result<DistinguishedName> {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    match organizations {
        [] => {}
        [first] => name.push(DnType::OrganizationName, *first),
        [first, second] => {
            name.push(DnType::OrganizationName, *first);
            name.push(DnType::CustomDnType(ORGANIZATION_NAME_OID.to_vec()), *second);
        }
        _ => anyhow::bail!(
            "a client certificate can carry at most two groups here, got {organizations:?}"
        ),
    }
    Ok(name)
}

/// Writes a private key readable only by its owner, created that way so it is never briefly
/// world-readable.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
    let mut file =
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}
