//! The contract's limits, the same on every side of it: what a client may ask for and what a server
//! accepts.

/// Most drafts one request (and one Draft or Select call) may carry.
pub const MAX_DRAFTS: u32 = 64;
/// Most engine slots a node may advertise (its --max-concurrent): nodes refuse a larger flag, and the
/// coordinator clamps a larger claim in etcd to its --max-node-slots (at most this), so one entry
/// cannot draw a pool's traffic by claiming a huge capacity.
pub const MAX_NODE_SLOTS: u32 = 256;
/// Largest draft index a draft node accepts.
pub const MAX_DRAFT_INDEX: u32 = 1023;
/// Longest end-of-thinking marker, in bytes.
pub const MAX_MARKER_BYTES: usize = 64;
/// The end-of-thinking marker when a request names none.
pub const DEFAULT_THINK_END: &str = "</think>";
/// Largest gRPC message any scot client or server sends or accepts (drafts, selection prompts and
/// results with draft texts can be long).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Longest request id a client may set (ids end up in logs, metadata and headers).
pub const MAX_REQUEST_ID: usize = 128;
/// The coordinator's default `StreamChunking` (`--stream-chunk-tokens`, `--stream-chunk-ms`): a client
/// sees text at least every 100 ms (or 16 tokens), and a fast target sends a sixteenth of the messages
/// per-token streaming would.
pub const DEFAULT_STREAM_CHUNK_TOKENS: u32 = 16;
pub const DEFAULT_STREAM_CHUNK_MS: u32 = 100;
