//! API keys for the HTTP front: `Authorization: Bearer <key>`. Keys come from a file (one per line,
//! `#` comments) and/or `SCOT_API_KEYS`; only their SHA-256 digests are kept in memory, and the file
//! is read again when it changes (rotation without a restart). Optionally each key gets a request
//! rate (a token bucket per key digest).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

/// How often the keys file is checked for changes.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

type KeyDigest = [u8; 32];

fn digest(key: &str) -> KeyDigest {
    Sha256::digest(key.trim().as_bytes()).into()
}

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header, or a key not in the set: 401.
    Unauthorized,
    /// The key is over its rate (requests per minute): 429.
    RateLimited { per_minute: u32 },
}

pub struct ApiKeys {
    file: Option<PathBuf>,
    from_env: HashSet<KeyDigest>,
    keys: RwLock<HashSet<KeyDigest>>,
    /// Last modification time of the file as read.
    loaded: Mutex<Option<SystemTime>>,
    /// Requests per minute per key (None: no limit).
    rate: Option<u32>,
    buckets: Mutex<HashMap<KeyDigest, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, thiserror::Error)]
#[error("API keys file {path}: {source}")]
pub struct KeysFileError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn parse_keys(text: &str) -> HashSet<KeyDigest> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(digest)
        .collect()
}

impl ApiKeys {
    /// Keys from `file` and `env_keys` (comma-separated); None when neither names a key source
    /// (the API is then open, as before keys existed). An unreadable file is an error at start.
    pub fn new(
        file: Option<&Path>,
        env_keys: Option<&str>,
        rate_per_minute: u32,
    ) -> Result<Option<Arc<Self>>, KeysFileError> {
        if file.is_none() && env_keys.is_none_or(|k| k.trim().is_empty()) {
            return Ok(None);
        }
        let from_env: HashSet<KeyDigest> = env_keys
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(digest)
            .collect();
        let keys = Arc::new(Self {
            file: file.map(Path::to_path_buf),
            keys: RwLock::new(from_env.clone()),
            from_env,
            loaded: Mutex::new(None),
            rate: (rate_per_minute > 0).then_some(rate_per_minute),
            buckets: Mutex::new(HashMap::new()),
        });
        keys.reload()?;
        Ok(Some(keys))
    }

    /// Reads the file again if it changed since the last read.
    fn reload(&self) -> Result<(), KeysFileError> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let err = |source| KeysFileError {
            path: path.clone(),
            source,
        };
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_err(err)?;
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded == Some(modified) {
            return Ok(());
        }
        let text = std::fs::read_to_string(path).map_err(err)?;
        let mut keys = parse_keys(&text);
        keys.extend(self.from_env.iter().copied());
        let count = keys.len();
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = keys;
        *loaded = Some(modified);
        tracing::info!(path = %path.display(), keys = count, "API keys loaded");
        Ok(())
    }

    /// Re-reads the keys file whenever it changes, until the process ends. A file that became
    /// unreadable keeps the last good keys (and is logged).
    pub fn watch(self: &Arc<Self>) {
        if self.file.is_none() {
            return;
        }
        // Outside a runtime (a router built for a test harness without one) nothing watches.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let keys = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            loop {
                tick.tick().await;
                let Some(keys) = keys.upgrade() else { return };
                if let Err(error) = keys.reload() {
                    tracing::warn!(%error, "API keys file unreadable; keeping the last keys");
                }
            }
        });
    }

    /// Checks an `Authorization` header value.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), Denied> {
        let key = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or(Denied::Unauthorized)?;
        let key = digest(key);
        if !self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&key)
        {
            return Err(Denied::Unauthorized);
        }
        match self.rate {
            Some(rate) => self.take_token(key, rate),
            None => Ok(()),
        }
    }

    /// A token bucket per key: `rate` per minute, bursts up to `rate`.
    fn take_token(&self, key: KeyDigest, rate: u32) -> Result<(), Denied> {
        let capacity = f64::from(rate);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * capacity / 60.0;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return Err(Denied::RateLimited { per_minute: rate });
        }
        bucket.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_env_and_file_rate_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "# ops\nsk-file-1\n\n").unwrap();
        let keys = ApiKeys::new(Some(&file), Some("sk-env-1, sk-env-2"), 2)
            .unwrap()
            .unwrap();
        assert_eq!(keys.check(Some("Bearer sk-file-1")), Ok(()));
        assert_eq!(keys.check(Some("Bearer sk-env-2")), Ok(()));
        assert_eq!(keys.check(Some("Bearer nope")), Err(Denied::Unauthorized));
        assert_eq!(keys.check(Some("sk-env-1")), Err(Denied::Unauthorized));
        assert_eq!(keys.check(None), Err(Denied::Unauthorized));
        // Two per minute: the third at once is refused.
        assert_eq!(keys.check(Some("Bearer sk-env-1")), Ok(()));
        assert_eq!(keys.check(Some("Bearer sk-env-1")), Ok(()));
        assert_eq!(
            keys.check(Some("Bearer sk-env-1")),
            Err(Denied::RateLimited { per_minute: 2 })
        );
        // Rotation: a rewritten file replaces the file's keys (the env keys stay).
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, "sk-file-2\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        keys.reload().unwrap();
        assert_eq!(
            keys.check(Some("Bearer sk-file-1")),
            Err(Denied::Unauthorized)
        );
        assert_eq!(keys.check(Some("Bearer sk-file-2")), Ok(()));
        assert!(ApiKeys::new(None, None, 0).unwrap().is_none());
        assert!(ApiKeys::new(Some(&dir.path().join("missing")), None, 0).is_err());
    }
}
