//! Channels to scot servers: `http://` in plaintext, `https://` with the cluster's mTLS.

use tonic::transport::Endpoint;

use crate::args::Tls;

/// `address` as a URL: a bare `host:port` gets `https://` with TLS and `http://` without; with TLS an
/// `http://` address is upgraded (a scot cluster never mixes the two).
pub fn endpoint_url(address: &str, tls: bool) -> String {
    let address = address.trim();
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"));
    match (rest, tls) {
        (Some(rest), true) => format!("https://{rest}"),
        (Some(_), false) => address.to_string(),
        (None, true) => format!("https://{address}"),
        (None, false) => format!("http://{address}"),
    }
}

/// An endpoint for `address`; with TLS the server must present a certificate from the cluster CA
/// that names `server_name` (a node's id), or the address's host when None.
pub fn endpoint(
    address: &str,
    tls: Option<&Tls>,
    server_name: Option<&str>,
) -> Result<Endpoint, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(endpoint_url(address, tls.is_some()))?;
    match tls {
        Some(tls) => endpoint.tls_config(tls.client(server_name)),
        None => Ok(endpoint),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_the_tls_setting() {
        assert_eq!(endpoint_url("a:1", false), "http://a:1");
        assert_eq!(endpoint_url("a:1", true), "https://a:1");
        assert_eq!(endpoint_url("http://a:1", true), "https://a:1");
        assert_eq!(endpoint_url("https://a:1", false), "https://a:1");
        assert_eq!(endpoint_url(" http://a:1 ", false), "http://a:1");
    }
}
