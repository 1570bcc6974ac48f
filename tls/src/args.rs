//! The TLS flags every binary takes, and the PEM material they name.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS: {0}")]
    Incomplete(String),
    #[error("TLS: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {path} holds no PEM {what}")]
    NotPem { path: PathBuf, what: &'static str },
    #[error("TLS: making certificates: {0}")]
    Generate(String),
}

/// `--tls-cert`, `--tls-key`, `--tls-ca` (all three, or none for plaintext on a trusted network).
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate of this process: its server identity, and its client identity towards
    /// other scot processes. Needs --tls-key and --tls-ca.
    #[arg(long = "tls-cert", env = "SCOT_TLS_CERT")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long = "tls-key", env = "SCOT_TLS_KEY")]
    pub key: Option<PathBuf>,
    /// PEM cluster CA: peers (clients and servers) must present a certificate it signed.
    #[arg(long = "tls-ca", env = "SCOT_TLS_CA")]
    pub ca: Option<PathBuf>,
}

impl TlsArgs {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, ca: impl Into<PathBuf>) -> Self {
        Self {
            cert: Some(cert.into()),
            key: Some(key.into()),
            ca: Some(ca.into()),
        }
    }

    /// The flags as command-line arguments (for a child process).
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (flag, path) in [
            ("--tls-cert", &self.cert),
            ("--tls-key", &self.key),
            ("--tls-ca", &self.ca),
        ] {
            if let Some(path) = path {
                out.push(flag.to_string());
                out.push(path.display().to_string());
            }
        }
        out
    }

    /// The PEM material, or None when no flag is set; some but not all is an error.
    pub fn load(&self) -> Result<Option<Tls>, TlsError> {
        match (&self.cert, &self.key, &self.ca) {
            (None, None, None) => Ok(None),
            (Some(cert), Some(key), Some(ca)) => Ok(Some(Tls {
                cert: read_pem(cert, "CERTIFICATE")?,
                key: read_pem(key, "PRIVATE KEY")?,
                ca: read_pem(ca, "CERTIFICATE")?,
            })),
            _ => Err(TlsError::Incomplete(
                "--tls-cert, --tls-key and --tls-ca go together (all three or none)".into(),
            )),
        }
    }
}

fn read_pem(path: &Path, what: &'static str) -> Result<String, TlsError> {
    let text = std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // "PRIVATE KEY" also matches "RSA PRIVATE KEY" and "EC PRIVATE KEY".
    if !text.contains("-----BEGIN") || !text.contains(what) {
        return Err(TlsError::NotPem {
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(text)
}

/// This process's certificate and key and the cluster CA, in PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Tls {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls { .. }")
    }
}

impl Tls {
    /// A server that presents this certificate and accepts only clients whose certificate the
    /// cluster CA signed (a client without one fails the handshake).
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// A client that presents this certificate and accepts a server only if the cluster CA signed
    /// its certificate and it names `server_name` (None: the host of the address dialled).
    pub fn client(&self, server_name: Option<&str>) -> ClientTlsConfig {
        let config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key));
        match server_name {
            Some(name) => config.domain_name(name),
            None => config,
        }
    }
}
