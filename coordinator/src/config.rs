//! The coordinator's configuration: flags and environment (clap), and the server-side defaults of every
//! per-request knob (the paper's values unless configured otherwise).

use std::net::SocketAddr;
use std::path::PathBuf;

use scot_proto::limits::DEFAULT_THINK_END;
use scot_proto::paper_defaults as paper;
use scot_selection::SelectionPolicy;

/// How drafts are judged unless configured: agreement first (the paper's read-out is `paper`).
pub const DEFAULT_SELECTION_POLICY: SelectionPolicy = SelectionPolicy::Hybrid;

#[derive(clap::Args, Debug, Clone)]
pub struct CoordinatorConfig {
    /// Address the CoordinatorService listens on.
    #[arg(
        long,
        env = "SCOT_COORDINATOR_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// Draft node addresses, comma-separated (host:port or http://host:port). Empty: target answers alone.
    #[arg(long, env = "SCOT_DRAFT_NODES", value_delimiter = ',')]
    pub draft_nodes: Vec<String>,
    /// Target node addresses, comma-separated (host:port or http://host:port). Required unless
    /// --etcd-endpoints is set (then the targets registered in etcd are used).
    #[arg(
        long = "target-node",
        alias = "target-nodes",
        env = "SCOT_TARGET_NODE",
        value_delimiter = ','
    )]
    pub target_nodes: Vec<String>,
    /// etcd discovery: with endpoints set, the draft and target pools are the nodes registered there
    /// (an explicit --draft-nodes / --target-node still wins for its pool).
    #[command(flatten)]
    pub etcd: scot_discovery::EtcdArgs,
    /// How long a node may take to answer its health check before it counts as unreachable.
    #[arg(long, env = "SCOT_HEALTH_TIMEOUT_MS", default_value_t = 1000)]
    pub health_timeout_ms: u64,
    /// Drafts in flight on one draft node from this coordinator, per engine slot the node advertises
    /// (its --max-concurrent, from its load report; before the first, its etcd capacity, or one for a
    /// --draft-nodes address). A request's n drafts must fit in the pool's total.
    #[arg(long, env = "SCOT_DRAFT_NODE_CAPACITY", default_value_t = 16)]
    pub draft_node_capacity: usize,
    /// Requests in flight on one target node from this coordinator (from its pick to its answer), per
    /// engine slot the node advertises (as for draft nodes).
    #[arg(long, env = "SCOT_TARGET_NODE_CAPACITY", default_value_t = 16)]
    pub target_node_capacity: usize,
    /// Most engine slots the coordinator believes one node advertises in etcd: a larger claim is
    /// clamped to it (and logged), so a rogue or misconfigured entry cannot draw most of a pool's
    /// requests. At most 256, what a node may advertise.
    #[arg(long, env = "SCOT_MAX_NODE_SLOTS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=scot_proto::limits::MAX_NODE_SLOTS as i64))]
    pub max_node_slots: u32,
    /// How long a request waits for room when every node of a pool is at its limit, before it is
    /// refused (gRPC RESOURCE_EXHAUSTED, HTTP 429).
    #[arg(long, env = "SCOT_QUEUE_TIMEOUT_MS", default_value_t = 30000)]
    pub queue_timeout_ms: u64,
    /// Every node's gRPC health is checked this often; a node failing its check is out of routing until
    /// it passes again. 0: every node is checked on each request instead.
    #[arg(long, env = "SCOT_HEALTH_INTERVAL_MS", default_value_t = 2000)]
    pub health_interval_ms: u64,
    /// Deadline of a request that carries none of its own (seconds; 0 = none). The default bounds a
    /// request that something upstream forgot, with room for the paper's caps on a slow target.
    #[arg(long, env = "SCOT_REQUEST_TIMEOUT_SECS", default_value_t = 1800)]
    pub request_timeout_secs: u64,
    /// On SIGTERM, how long requests in flight may take to finish (seconds) after both doors stopped
    /// taking new ones; then the coordinator exits. Keep k8s' terminationGracePeriodSeconds above it.
    #[arg(long, env = "SCOT_DRAIN_TIMEOUT_SECS", default_value_t = 100)]
    pub drain_timeout_secs: u64,
    /// The target streams its tokens in messages of at most this many (0: no bound by count)...
    #[arg(long, env = "SCOT_STREAM_CHUNK_TOKENS", default_value_t = scot_proto::limits::DEFAULT_STREAM_CHUNK_TOKENS)]
    pub stream_chunk_tokens: u32,
    /// ...or once the oldest held token is this old (ms; 0: no bound by age), whichever comes
    /// first. Every streamed message costs the coordinator the same to relay; both 0: one per token.
    #[arg(long, env = "SCOT_STREAM_CHUNK_MS", default_value_t = scot_proto::limits::DEFAULT_STREAM_CHUNK_MS)]
    pub stream_chunk_ms: u32,
    #[command(flatten)]
    pub defaults: SolveDefaults,
    #[command(flatten)]
    pub http: HttpConfig,
    /// mTLS on the gRPC door and towards every node: clients of the door and the nodes must hold a
    /// certificate from the cluster CA, and a node registered in etcd must hold one naming its id.
    #[command(flatten)]
    pub tls: scot_tls::TlsArgs,
}

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Address of the HTTP API (OpenAI-compatible chat completions, /health, /ready, /metrics).
    /// Off when unset.
    #[arg(id = "http_listen", long = "http-listen", env = "SCOT_HTTP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the admin endpoints (`/health`, `/ready`, `/metrics`), kept off the API's port:
    /// when set, the API port serves only `/v1` and `/health`. Unset: all on --http-listen.
    #[arg(long = "admin-listen", env = "SCOT_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Open HTTP connections at most (API and admin ports each); a connection past it is closed at
    /// once.
    #[arg(
        long = "http-max-connections",
        env = "SCOT_HTTP_MAX_CONNECTIONS",
        default_value_t = DEFAULT_HTTP_MAX_CONNECTIONS
    )]
    pub max_connections: usize,
    /// Seconds a request's headers may take to arrive (a slow client holding a connection open).
    #[arg(
        long = "http-header-timeout-secs",
        env = "SCOT_HTTP_HEADER_TIMEOUT_SECS",
        default_value_t = DEFAULT_HTTP_HEADER_TIMEOUT_SECS
    )]
    pub header_timeout_secs: u64,
    /// Seconds a request's body may take to arrive; past it, 408.
    #[arg(
        long = "http-body-timeout-secs",
        env = "SCOT_HTTP_BODY_TIMEOUT_SECS",
        default_value_t = DEFAULT_HTTP_BODY_TIMEOUT_SECS
    )]
    pub body_timeout_secs: u64,
    /// Requests solved at once, HTTP and gRPC together; more get HTTP 429 / gRPC RESOURCE_EXHAUSTED
    /// (TGI's max_concurrent_requests). Requests waiting for node room count here too.
    #[arg(
        long = "max-concurrent-requests",
        env = "SCOT_MAX_CONCURRENT_REQUESTS",
        default_value_t = DEFAULT_MAX_CONCURRENT_REQUESTS
    )]
    pub max_concurrent_requests: usize,
    /// Model id listed by /v1/models and accepted in a request's `model` field.
    #[arg(
        long = "served-model-name",
        env = "SCOT_SERVED_MODEL_NAME",
        default_value = DEFAULT_SERVED_MODEL_NAME
    )]
    pub served_model_name: String,
    /// API keys, one per line (`#` comments): the `/v1` routes then need `Authorization: Bearer
    /// <key>` (401 otherwise). Only SHA-256 digests are kept; the file is read again within 2 s of a
    /// change, so keys rotate without a restart. Unset with no SCOT_API_KEYS: the API is open.
    #[arg(long = "api-keys-file", env = "SCOT_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// API keys, comma-separated (taken with the file's; they change only with a restart).
    #[arg(long = "api-keys", env = "SCOT_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,
    /// Requests per minute each API key may make (a token bucket, bursts up to the rate); over it,
    /// 429. 0 = no limit.
    #[arg(
        long = "api-key-rate-limit",
        env = "SCOT_API_KEY_RATE_LIMIT",
        default_value_t = 0
    )]
    pub api_key_rate_limit: u32,
}

const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 128;
const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 1024;
const DEFAULT_HTTP_HEADER_TIMEOUT_SECS: u64 = 10;
const DEFAULT_HTTP_BODY_TIMEOUT_SECS: u64 = 30;
const DEFAULT_SERVED_MODEL_NAME: &str = "scot";

impl HttpConfig {
    /// The limits every HTTP listener of the coordinator runs with.
    pub fn connection_limits(&self) -> crate::ConnectionLimits {
        crate::ConnectionLimits {
            max_connections: self.max_connections.max(1),
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs.max(1)),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: None,
            admin_listen: None,
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            header_timeout_secs: DEFAULT_HTTP_HEADER_TIMEOUT_SECS,
            body_timeout_secs: DEFAULT_HTTP_BODY_TIMEOUT_SECS,
            max_concurrent_requests: DEFAULT_MAX_CONCURRENT_REQUESTS,
            served_model_name: DEFAULT_SERVED_MODEL_NAME.to_string(),
            api_keys_file: None,
            api_keys: None,
            api_key_rate_limit: 0,
        }
    }
}

/// Server-side defaults of the per-request knobs (`SolveOptions`); a request's own value wins.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct SolveDefaults {
    /// Drafts per request.
    #[arg(long = "default-n", env = "SCOT_DEFAULT_N", default_value_t = paper::N)]
    pub n: u32,
    #[arg(
        long = "default-draft-temperature",
        env = "SCOT_DEFAULT_DRAFT_TEMPERATURE",
        default_value_t = paper::DRAFT_TEMPERATURE
    )]
    pub draft_temperature: f32,
    /// 1 = off.
    #[arg(
        long = "default-draft-top-p",
        env = "SCOT_DEFAULT_DRAFT_TOP_P",
        default_value_t = paper::DRAFT_TOP_P
    )]
    pub draft_top_p: f32,
    /// 0 = off.
    #[arg(
        long = "default-draft-top-k",
        env = "SCOT_DEFAULT_DRAFT_TOP_K",
        default_value_t = paper::DRAFT_TOP_K
    )]
    pub draft_top_k: u32,
    #[arg(
        long = "default-draft-max-tokens",
        env = "SCOT_DEFAULT_DRAFT_MAX_TOKENS",
        default_value_t = paper::DRAFT_MAX_TOKENS
    )]
    pub draft_max_tokens: u32,
    /// Cap of the target's own thinking (correction, fallback, target-only).
    #[arg(
        long = "default-thinking-max-tokens",
        env = "SCOT_DEFAULT_THINKING_MAX_TOKENS",
        default_value_t = paper::THINKING_MAX_TOKENS
    )]
    pub thinking_max_tokens: u32,
    #[arg(
        long = "default-answer-max-tokens",
        env = "SCOT_DEFAULT_ANSWER_MAX_TOKENS",
        default_value_t = paper::ANSWER_MAX_TOKENS
    )]
    pub answer_max_tokens: u32,
    #[arg(long = "default-seed", env = "SCOT_DEFAULT_SEED", default_value_t = paper::SEED)]
    pub seed: u64,
    /// How a request's drafts are judged: paper (the target's pick), debiased (the same with the
    /// target's position prior divided out), vote (answer agreement, else the target's pick) or
    /// hybrid (agreement; without it the target's debiased pick only above the threshold, which by
    /// default takes none: the target thinks).
    #[arg(
        long = "default-selection-policy",
        env = "SCOT_DEFAULT_SELECTION_POLICY",
        default_value_t = DEFAULT_SELECTION_POLICY
    )]
    pub selection_policy: SelectionPolicy,
    /// vote / hybrid: drafts that must agree on an answer (capped at a request's n). Unset: three
    /// quarters of n (4 of 5), at least 2.
    #[arg(long = "default-min-votes", env = "SCOT_DEFAULT_MIN_VOTES")]
    pub min_votes: Option<u32>,
    /// (b) Take "none" when the target's pick has a probability under this. Unset: the policy's own
    /// default (off, except hybrid's; see the README's selection section).
    #[arg(
        long = "default-accept-threshold",
        env = "SCOT_DEFAULT_ACCEPT_THRESHOLD"
    )]
    pub accept_threshold: Option<f32>,
    /// Cyclic orders of the drafts the target scores and averages (that many prefills; 1 = one).
    #[arg(
        long = "default-select-permutations",
        env = "SCOT_DEFAULT_SELECT_PERMUTATIONS",
        default_value_t = paper::SELECT_PERMUTATIONS
    )]
    pub select_permutations: u32,
    /// (a) Select once this many drafts are done. Off when unset.
    #[arg(long = "default-select-after-k", env = "SCOT_DEFAULT_SELECT_AFTER_K")]
    pub select_after_k: Option<u32>,
    /// (a) Select once every unfinished draft is longer than this multiple of the median finished one.
    #[arg(long = "default-straggler-ratio", env = "SCOT_DEFAULT_STRAGGLER_RATIO")]
    pub straggler_ratio: Option<f32>,
    /// (c) Leave drafts cut off by the cap out of selection (a request can turn it on, not off).
    #[arg(
        long = "default-drop-capped-drafts",
        env = "SCOT_DEFAULT_DROP_CAPPED_DRAFTS"
    )]
    pub drop_capped_drafts: bool,
    /// Template set name used when a request names none (empty = the nodes' `default`).
    #[arg(
        long = "default-template",
        env = "SCOT_DEFAULT_TEMPLATE",
        default_value = ""
    )]
    pub template: String,
    #[arg(
        long = "default-think-end",
        env = "SCOT_DEFAULT_THINK_END",
        default_value = DEFAULT_THINK_END
    )]
    pub think_end: String,
}

impl Default for SolveDefaults {
    /// The paper's settings (and the server's selection policy).
    fn default() -> Self {
        Self {
            n: paper::N,
            draft_temperature: paper::DRAFT_TEMPERATURE,
            draft_top_p: paper::DRAFT_TOP_P,
            draft_top_k: paper::DRAFT_TOP_K,
            draft_max_tokens: paper::DRAFT_MAX_TOKENS,
            thinking_max_tokens: paper::THINKING_MAX_TOKENS,
            answer_max_tokens: paper::ANSWER_MAX_TOKENS,
            seed: paper::SEED,
            selection_policy: DEFAULT_SELECTION_POLICY,
            min_votes: None,
            accept_threshold: None,
            select_permutations: paper::SELECT_PERMUTATIONS,
            select_after_k: None,
            straggler_ratio: None,
            drop_capped_drafts: false,
            template: String::new(),
            think_end: DEFAULT_THINK_END.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: CoordinatorConfig,
    }

    #[test]
    fn flag_defaults_are_the_papers() {
        let cli = Cli::parse_from(["coordinator", "--target-node", "127.0.0.1:1"]);
        assert_eq!(cli.config.defaults, SolveDefaults::default());
        assert!(cli.config.draft_nodes.is_empty());
        assert_eq!(
            (
                cli.config.draft_node_capacity,
                cli.config.target_node_capacity,
                cli.config.queue_timeout_ms,
                cli.config.health_interval_ms
            ),
            (16, 16, 30000, 2000)
        );
    }

    #[test]
    fn node_lists_are_comma_separated() {
        let cli = Cli::parse_from([
            "coordinator",
            "--target-node",
            "t:1,t:2",
            "--draft-nodes",
            "a:1,b:2",
        ]);
        assert_eq!(cli.config.draft_nodes, vec!["a:1", "b:2"]);
        assert_eq!(cli.config.target_nodes, vec!["t:1", "t:2"]);
    }

    #[test]
    fn http_flags_parse_next_to_the_grpc_ones() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "coordinator",
            "--listen",
            "127.0.0.1:1",
            "--http-listen",
            "127.0.0.1:2",
            "--target-node",
            "t:1",
            "--max-concurrent-requests",
            "3",
        ]);
        assert_eq!(cli.config.listen.port(), 1);
        assert_eq!(cli.config.http.listen.map(|a| a.port()), Some(2));
        assert_eq!(cli.config.http.max_concurrent_requests, 3);
        assert_eq!(cli.config.http.served_model_name, "scot");
        let cli = Cli::parse_from(["coordinator", "--target-node", "t:1"]);
        assert_eq!(cli.config.http, HttpConfig::default());
    }
}
