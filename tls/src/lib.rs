//! scot-tls: mutual TLS for every gRPC hop (coordinator ↔ nodes, clients → coordinator).
//!
//! Every binary takes the same three flags (`--tls-cert`, `--tls-key`, `--tls-ca`, or `SCOT_TLS_*`);
//! with them a server accepts only clients whose certificate the cluster CA signed, and a client
//! accepts only servers whose certificate the CA signed *and* that names the peer it meant to reach
//! (a node's registered id, or the host of a static address). `local_ca` makes a throwaway CA for a
//! cluster on one machine (`scot up`, `scot run`, tests).

pub mod args;
pub mod endpoint;
pub mod local_ca;

pub use args::{Tls, TlsArgs, TlsError};
pub use endpoint::{endpoint, endpoint_url};
pub use local_ca::LocalCa;
