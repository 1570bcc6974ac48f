//! A throwaway certificate authority for a cluster on one machine (`scot up`, `scot run`, tests):
//! made at start, kept in a temporary folder, gone with it. Production clusters bring their own CA
//! (see SECURITY.md and k8s/README.md).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::args::{TlsArgs, TlsError};

/// A CA whose key lives only in this process, and the folder its files go to.
pub struct LocalCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

fn generate(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn write(path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl LocalCa {
    /// A new CA; its certificate is written to `dir/ca.pem` (the folder must exist).
    pub fn new(dir: &Path) -> Result<Self, TlsError> {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "scot local cluster CA");
        params.distinguished_name = name;
        let key = KeyPair::generate().map_err(generate)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(generate)?;
        write(&dir.join("ca.pem"), &issuer.pem())?;
        Ok(Self {
            issuer,
            dir: dir.to_path_buf(),
        })
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` (DNS names or IP addresses: a node's id, `localhost`, `127.0.0.1`),
    /// good as both server and client identity, written to `dir/{file}.pem` and `dir/{file}.key`;
    /// returns the flags that use it.
    pub fn issue(&self, file: &str, names: &[&str]) -> Result<TlsArgs, TlsError> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).map_err(generate)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        write(&cert_path, &cert.pem())?;
        write(&key_path, &key.serialize_pem())?;
        Ok(TlsArgs::new(cert_path, key_path, self.ca_path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_files_load_as_tls_material() {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::new(dir.path()).unwrap();
        let args = ca.issue("node", &["draft-0", "127.0.0.1"]).unwrap();
        let tls = args.load().unwrap().expect("all three flags");
        assert!(tls.cert.contains("BEGIN CERTIFICATE"));
        assert!(tls.key.contains("PRIVATE KEY"));
        assert_eq!(tls.ca, std::fs::read_to_string(ca.ca_path()).unwrap());
        let partial = TlsArgs { key: None, ..args };
        assert!(partial.load().is_err());
    }
}
