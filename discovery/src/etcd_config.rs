//! How to reach etcd, shared by the watcher (coordinator side) and registrations (node side).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};

use crate::backoff::Backoff;
use crate::error::{DiscoveryError, Result};
use crate::keys::DEFAULT_PREFIX;

/// etcd endpoints, key prefix, timeouts and retry backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` (or `host:port`) of each etcd member.
    pub endpoints: Vec<String>,
    /// Key prefix, default `/scot`; keys are `{prefix}/v1/instances/{kind}/{id}`.
    pub prefix: String,
    /// Limit on opening a connection.
    pub connect_timeout: Duration,
    /// Limit on each unary call (get, put, lease grant/revoke).
    pub request_timeout: Duration,
    /// HTTP/2 ping interval on the long-lived streams, so a dead etcd is noticed without traffic. etcd
    /// refuses pings more often than every 5 s by default.
    pub keep_alive_interval: Duration,
    /// How long a ping may go unanswered before the connection counts as dead.
    pub keep_alive_timeout: Duration,
    pub backoff: Backoff,
    /// etcd authentication (`etcdctl user add`): user name and password.
    pub user: Option<(String, Secret)>,
    /// TLS to etcd: the CA that signed etcd's certificate (PEM), and a client certificate and key
    /// when etcd requires one (`--client-cert-auth`).
    pub tls: Option<EtcdTls>,
}

/// A password that never shows in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// PEM files for TLS to etcd (read at each connect, so rotated files are picked up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    /// Client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl EtcdTls {
    fn options(&self) -> Result<etcd_client::TlsOptions> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|e| {
                DiscoveryError::InvalidConfig(format!("etcd TLS file {}: {e}", path.display()))
            })
        };
        let mut options = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(read(&self.ca)?));
        if let Some((cert, key)) = &self.identity {
            options = options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(options)
    }
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: DEFAULT_PREFIX.to_string(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
            user: None,
            tls: None,
        }
    }

    /// From a comma-separated list such as `SCOT_ETCD_ENDPOINTS="http://etcd-0:2379,http://etcd-1:2379"`.
    pub fn from_endpoint_list(list: &str) -> Result<Self> {
        let endpoints: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(String::from)
            .collect();
        let config = EtcdConfig::new(endpoints);
        config.validate()?;
        Ok(config)
    }

    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn validate(&self) -> Result<()> {
        if self.endpoints.is_empty() {
            return Err(DiscoveryError::InvalidConfig(
                "no etcd endpoints given".into(),
            ));
        }
        if self.backoff.initial.is_zero() || self.backoff.max < self.backoff.initial {
            return Err(DiscoveryError::InvalidConfig(format!(
                "backoff needs 0 < initial <= max, got {:?}",
                self.backoff
            )));
        }
        Ok(())
    }

    pub(crate) fn endpoints_label(&self) -> String {
        self.endpoints.join(",")
    }

    /// Opens a client. Every call through it must still go through `timed`: a balanced channel with no
    /// reachable endpoint can wait forever instead of failing.
    pub(crate) async fn connect(&self) -> Result<Client> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.connect_timeout)
            .with_keep_alive(self.keep_alive_interval, self.keep_alive_timeout)
            .with_keep_alive_while_idle(false)
            // Fail fast on a member cut off from the quorum instead of serving stale data.
            .with_require_leader(true);
        if let Some((name, password)) = &self.user {
            options = options.with_user(name, password.0.clone());
        }
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.options()?);
        }
        self.timed(
            "connect",
            self.connect_timeout,
            Client::connect(&self.endpoints, Some(options)),
        )
        .await
    }

    /// Runs one etcd call under `limit`, mapping both failure kinds to `DiscoveryError`.
    pub(crate) async fn timed<T>(
        &self,
        operation: &'static str,
        limit: Duration,
        call: impl Future<Output = std::result::Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(source)) => Err(DiscoveryError::Etcd {
                operation,
                endpoints: self.endpoints_label(),
                source,
            }),
            Err(_) => Err(DiscoveryError::Timeout {
                operation,
                endpoints: self.endpoints_label(),
                timeout: limit,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_list_is_split_and_trimmed() {
        let config = EtcdConfig::from_endpoint_list(" http://a:2379, b:2379 ,").unwrap();
        assert_eq!(config.endpoints, ["http://a:2379", "b:2379"]);
        assert_eq!(config.prefix, "/scot");
    }

    #[test]
    fn empty_endpoint_list_is_an_error() {
        assert!(matches!(
            EtcdConfig::from_endpoint_list(" , "),
            Err(DiscoveryError::InvalidConfig(_))
        ));
    }
}
