//! Command-line flags and environment for discovery, for the binaries to `#[command(flatten)]`, so the
//! names match what k8s/ sets (k8s/README.md has the table).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{DiscoveryError, Result};
use crate::etcd_config::{EtcdConfig, EtcdTls, Secret};
use crate::keys::DEFAULT_PREFIX;
use crate::node::{NodeInfo, NodeKind};
use crate::registration::Registration;

/// Where etcd is. No endpoints = no etcd (static lists, one machine).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct EtcdArgs {
    /// etcd endpoints, comma-separated (http://host:2379). Unset: static node lists, no registration.
    #[arg(
        long = "etcd-endpoints",
        env = "SCOT_ETCD_ENDPOINTS",
        value_delimiter = ','
    )]
    pub etcd_endpoints: Vec<String>,
    /// Key prefix in etcd; one per scot deployment sharing an etcd.
    #[arg(long = "etcd-prefix", env = "SCOT_ETCD_PREFIX", default_value = DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// etcd user (etcd authentication enabled); the password comes from --etcd-password.
    #[arg(long = "etcd-user", env = "SCOT_ETCD_USER", requires = "etcd_password")]
    pub etcd_user: Option<String>,
    #[arg(
        long = "etcd-password",
        env = "SCOT_ETCD_PASSWORD",
        hide_env_values = true,
        requires = "etcd_user"
    )]
    pub etcd_password: Option<Secret>,
    /// CA of etcd's TLS certificate (PEM); the endpoints are then https://.
    #[arg(long = "etcd-ca", env = "SCOT_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate for etcd's client-certificate authentication (PEM; with --etcd-key).
    #[arg(long = "etcd-cert", env = "SCOT_ETCD_CERT", requires_all = ["etcd_key", "etcd_ca"])]
    pub etcd_cert: Option<PathBuf>,
    #[arg(long = "etcd-key", env = "SCOT_ETCD_KEY", requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
}

impl EtcdArgs {
    /// The etcd config, or `None` when no endpoints are set.
    pub fn config(&self) -> Option<EtcdConfig> {
        let endpoints: Vec<String> = self
            .etcd_endpoints
            .iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return None;
        }
        let mut config = EtcdConfig::new(endpoints).with_prefix(self.etcd_prefix.clone());
        if let (Some(user), Some(password)) = (&self.etcd_user, &self.etcd_password) {
            config.user = Some((user.clone(), password.clone()));
        }
        if let Some(ca) = &self.etcd_ca {
            config.tls = Some(EtcdTls {
                ca: ca.clone(),
                identity: self.etcd_cert.clone().zip(self.etcd_key.clone()),
            });
        }
        Some(config)
    }
}

/// What a node needs to register itself.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct RegistrationArgs {
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Registration id, unique per node kind (Kubernetes: the pod name). Default: `HOSTNAME`.
    #[arg(long = "node-id", env = "SCOT_NODE_ID")]
    pub node_id: Option<String>,
    /// Address the coordinator dials (http://host:port). Default: http://<listen address> unless that
    /// is a wildcard (0.0.0.0 / ::), which cannot be dialled.
    #[arg(long = "advertise-addr", env = "SCOT_ADVERTISE_ADDR")]
    pub advertise_addr: Option<String>,
    /// Lease TTL in seconds (at least 2); renewed every TTL/2.
    #[arg(
        long = "lease-ttl-secs",
        env = "SCOT_LEASE_TTL_SECS",
        default_value_t = 10
    )]
    pub lease_ttl_secs: u64,
}

impl RegistrationArgs {
    /// The `NodeInfo` this node announces.
    pub fn node_info(
        &self,
        kind: NodeKind,
        model: &str,
        capacity: u32,
        listen: SocketAddr,
    ) -> Result<NodeInfo> {
        let id = match &self.node_id {
            Some(id) => id.clone(),
            None => std::env::var("HOSTNAME").map_err(|_| {
                DiscoveryError::InvalidConfig(
                    "no node id: set --node-id / SCOT_NODE_ID (or HOSTNAME)".into(),
                )
            })?,
        };
        let address = match &self.advertise_addr {
            Some(address) => address.clone(),
            None if listen.ip().is_unspecified() => {
                return Err(DiscoveryError::InvalidConfig(format!(
                    "listening on {listen} (all interfaces): set --advertise-addr / SCOT_ADVERTISE_ADDR to an address the coordinator can dial"
                )))
            }
            None => format!("http://{listen}"),
        };
        let node = NodeInfo::new(kind, id, model, address, capacity);
        node.validate()?;
        Ok(node)
    }

    /// Starts registering `node` when etcd is configured; `None` on one machine (no endpoints).
    pub fn spawn(&self, node: NodeInfo) -> Result<Option<Registration>> {
        match self.etcd.config() {
            Some(config) => {
                Registration::spawn(config, node, Duration::from_secs(self.lease_ttl_secs))
                    .map(Some)
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct NodeCli {
        #[command(flatten)]
        registration: RegistrationArgs,
    }

    #[test]
    fn flags_parse_into_config_and_node_info() {
        let cli = NodeCli::parse_from([
            "node",
            "--etcd-endpoints",
            "http://etcd-0:2379,http://etcd-1:2379",
            "--node-id",
            "draft-node-abc",
            "--advertise-addr",
            "http://10.1.2.3:50051",
            "--lease-ttl-secs",
            "6",
        ]);
        let config = cli.registration.etcd.config().unwrap();
        assert_eq!(
            config.endpoints,
            ["http://etcd-0:2379", "http://etcd-1:2379"]
        );
        assert_eq!(config.prefix, "/scot");
        let node = cli
            .registration
            .node_info(
                NodeKind::Draft,
                "m.gguf",
                4,
                "0.0.0.0:50051".parse().unwrap(),
            )
            .unwrap();
        assert_eq!(node.id, "draft-node-abc");
        assert_eq!(node.address, "http://10.1.2.3:50051");
        assert_eq!(node.capacity, 4);
        assert_eq!(cli.registration.lease_ttl_secs, 6);
    }

    #[test]
    fn etcd_credentials_and_tls_come_in_pairs_and_the_password_never_prints() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["node", "--etcd-endpoints", "https://etcd-0:2379"];
            argv.extend_from_slice(extra);
            NodeCli::try_parse_from(argv)
        };
        assert!(
            parse(&["--etcd-user", "scot"]).is_err(),
            "a user needs a password"
        );
        assert!(
            parse(&["--etcd-password", "pw"]).is_err(),
            "a password needs a user"
        );
        assert!(
            parse(&["--etcd-cert", "c.pem", "--etcd-key", "k.pem"]).is_err(),
            "a client certificate needs the CA"
        );
        let cli = parse(&[
            "--etcd-user",
            "scot",
            "--etcd-password",
            "hunter2",
            "--etcd-ca",
            "ca.pem",
            "--etcd-cert",
            "c.pem",
            "--etcd-key",
            "k.pem",
        ])
        .unwrap();
        let config = cli.registration.etcd.config().unwrap();
        assert_eq!(config.user.as_ref().map(|(u, _)| u.as_str()), Some("scot"));
        let tls = config.tls.as_ref().unwrap();
        assert_eq!(tls.ca, PathBuf::from("ca.pem"));
        assert_eq!(
            tls.identity,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{cli:?}").contains("hunter2"));
    }

    #[test]
    fn no_endpoints_means_no_etcd() {
        let args = EtcdArgs {
            etcd_endpoints: vec![],
            etcd_prefix: DEFAULT_PREFIX.into(),
            etcd_user: None,
            etcd_password: None,
            etcd_ca: None,
            etcd_cert: None,
            etcd_key: None,
        };
        assert!(args.config().is_none());
    }

    #[test]
    fn wildcard_listen_needs_an_advertise_address() {
        let args = RegistrationArgs {
            etcd: EtcdArgs {
                etcd_endpoints: vec![],
                etcd_prefix: DEFAULT_PREFIX.into(),
                etcd_user: None,
                etcd_password: None,
                etcd_ca: None,
                etcd_cert: None,
                etcd_key: None,
            },
            node_id: Some("t-0".into()),
            advertise_addr: None,
            lease_ttl_secs: 10,
        };
        assert!(matches!(
            args.node_info(NodeKind::Target, "m", 1, "0.0.0.0:50051".parse().unwrap()),
            Err(DiscoveryError::InvalidConfig(_))
        ));
        let node = args
            .node_info(NodeKind::Target, "m", 1, "127.0.0.1:50052".parse().unwrap())
            .unwrap();
        assert_eq!(node.address, "http://127.0.0.1:50052");
    }
}
