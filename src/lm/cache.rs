//! The persistent response cache: every reply is written to SQLite the
//! moment it arrives, keyed by the canonical request, so an interrupted
//! eval or compile re-run with the same inputs costs no repeated LM call,
//! and a CI gate can replay recorded replies with no LM at all (`offline`).
//!
//! The key is the sha256 of canonical JSON over what changes a reply
//! (model, messages, temperature, max_tokens, rollout id, grammar,
//! response_format with object keys sorted); base URL and API key are left
//! out so the same request to a different replica hits. Each row carries a
//! checksum: a row that fails it, or cannot be decoded, is skipped (treated
//! as a miss and overwritten by the next real reply) and counted as a
//! warning. Library code never prints, so warnings go to a counter, a
//! bounded list and an optional callback the CLI installs.
//!
//! SQLite runs in WAL mode with a busy timeout so several lmc processes can
//! share one cache; lookups use a cached prepared statement on one
//! connection behind a mutex (a point query is a few microseconds, cheaper
//! than moving it to a blocking thread).

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Lm, LmError, LmRequest, LmResponse, SharedLm, Usage};

/// Problems opening, reading or writing the cache file itself.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cache directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: {message}")]
    Import { line: usize, message: String },
}

/// How the cache is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Read hits, record misses.
    #[default]
    ReadWrite,
    /// Bypass the cache entirely (`--no-cache`).
    NoCache,
    /// Replay only: a miss is [`LmError::CacheMiss`] (`--offline`).
    Offline,
}

/// The directory holding `cache.sqlite`: `$LMC_CACHE_DIR`, else
/// `$LMC_HOME/cache`, else `~/.cache/lmc/cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("LMC_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    lmc_home().join("cache")
}

/// `$LMC_HOME`, else `~/.cache/lmc` (shared with the model directory).
pub fn lmc_home() -> PathBuf {
    if let Some(d) = std::env::var_os("LMC_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("lmc")
}

/// The canonical form of a request that the key hashes. Field order is
/// fixed by the struct; `response_format` has its object keys sorted so two
/// equal schemas written in different orders share a key.
#[derive(Serialize)]
struct KeyView<'a> {
    model: &'a str,
    messages: &'a [crate::adapter::Message],
    temperature: f32,
    max_tokens: u32,
    rollout_id: Option<u64>,
    grammar: Option<&'a str>,
    response_format: Option<Value>,
}

impl<'a> KeyView<'a> {
    fn of(req: &'a LmRequest) -> Self {
        KeyView {
            model: &req.model,
            messages: &req.messages,
            temperature: req.temperature,
            max_tokens: req.max_tokens,
            rollout_id: req.rollout_id,
            grammar: req.grammar.as_deref(),
            response_format: req.response_format.as_ref().map(sorted),
        }
    }
}

fn canonical_request(req: &LmRequest) -> String {
    // Serializing plain data to a String cannot fail.
    serde_json::to_string(&KeyView::of(req)).unwrap_or_default()
}

/// Feeds serialized bytes straight into the hash, so the key costs no
/// intermediate String (it is on every call's path).
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The cache key of a request: lowercase hex sha256 of its canonical JSON
/// (the bytes of [`canonical_request`], hashed as they are produced).
pub fn cache_key(req: &LmRequest) -> String {
    let mut w = HashWriter(Sha256::new());
    // Writing plain data into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut w, &KeyView::of(req));
    hex::encode(w.0.finalize())
}

fn checksum(key: &str, text: &str, usage: &Usage) -> String {
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    h.update([0]);
    h.update(usage.prompt_tokens.to_le_bytes());
    h.update(usage.completion_tokens.to_le_bytes());
    hex::encode(&h.finalize()[..16])
}

/// One recorded reply, as exported to and imported from JSONL cassettes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: String,
    pub model: String,
    /// The canonical request (lets import verify the key and humans read it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    pub text: String,
    #[serde(default)]
    pub usage: Usage,
    /// Unix seconds when recorded.
    #[serde(default)]
    pub created: i64,
}

/// Summary for `lmc cache stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheStats {
    pub path: PathBuf,
    pub entries: u64,
    pub bytes: u64,
    /// Entries per model, sorted by model.
    pub models: Vec<(String, u64)>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub oldest: Option<i64>,
    pub newest: Option<i64>,
}

/// Import outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub imported: u64,
    /// Lines whose key does not match their request (skipped).
    pub mismatched: u64,
}

type WarnFn = dyn Fn(&str) + Send + Sync;

/// The SQLite file. Cheap to share (`Arc`); all access goes through one
/// connection.
pub struct CacheStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    warnings: AtomicU64,
    warning_log: Mutex<Vec<String>>,
    on_warning: Mutex<Option<Arc<WarnFn>>>,
}

/// The request (kilobytes of prompt, kept for cassettes and humans) is the
/// last column, so reading a reply never walks the request's overflow pages.
/// Files created before this order keep working: queries name columns.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    created INTEGER NOT NULL,
    request TEXT
);
";

/// Keep at most this many warning texts (the counter keeps counting).
const MAX_WARNING_LOG: usize = 100;

impl CacheStore {
    /// Open (creating if needed) `dir/cache.sqlite`.
    pub fn open_dir(dir: &Path) -> Result<Self, CacheError> {
        std::fs::create_dir_all(dir).map_err(|source| CacheError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::open(&dir.join("cache.sqlite"))
    }

    /// Open (creating if needed) the cache file at `path`.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let sql = |source| CacheError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(sql)?;
        // WAL: readers never block the writer, and a crash mid-write leaves
        // the last committed reply intact. NORMAL sync is durable across
        // process crashes (the case that matters: an interrupted run).
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        // Reads map the file instead of copying pages through read(2): a
        // hit is then a B-tree walk in memory (the per-call path of every
        // re-run). The map is a window, not an allocation.
        conn.pragma_update(None, "mmap_size", 1i64 << 30)
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(CacheStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            warnings: AtomicU64::new(0),
            warning_log: Mutex::new(Vec::new()),
            on_warning: Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Install a callback called with each warning (the CLI prints them).
    pub fn set_warning_callback(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        if let Ok(mut slot) = self.on_warning.lock() {
            *slot = Some(Arc::new(f));
        }
    }

    /// How many warnings (corrupt rows, failed writes) so far.
    pub fn warnings(&self) -> u64 {
        self.warnings.load(Ordering::Relaxed)
    }

    /// The first warnings' texts.
    pub fn warning_messages(&self) -> Vec<String> {
        self.warning_log
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
    }

    fn warn(&self, msg: String) {
        self.warnings.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut log) = self.warning_log.lock() {
            if log.len() < MAX_WARNING_LOG {
                log.push(msg.clone());
            }
        }
        let cb = self.on_warning.lock().ok().and_then(|c| c.clone());
        if let Some(cb) = cb {
            cb(&msg);
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, String> {
        self.conn
            .lock()
            .map_err(|_| "cache connection poisoned by an earlier panic".to_string())
    }

    /// The stored reply for `key`, verified; corrupt rows yield `None` and a
    /// warning.
    pub fn get(&self, key: &str) -> Option<(String, Usage)> {
        type Row = (Option<String>, Option<i64>, Option<i64>, Option<String>);
        let row: Result<Option<Row>, String> = self.lock().and_then(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT text, prompt_tokens, completion_tokens, checksum \
                     FROM responses WHERE key = ?1",
                )
                .map_err(|e| e.to_string())?;
            // Read loosely typed so a damaged row is reported, not an error.
            stmt.query_row([key], |r| {
                Ok((
                    r.get::<_, String>(0).ok(),
                    r.get::<_, i64>(1).ok(),
                    r.get::<_, i64>(2).ok(),
                    r.get::<_, String>(3).ok(),
                ))
            })
            .optional()
            .map_err(|e| e.to_string())
        });
        match row {
            Ok(None) => None,
            Ok(Some((Some(text), Some(p), Some(c), Some(sum)))) if p >= 0 && c >= 0 => {
                let usage = Usage {
                    prompt_tokens: p as u64,
                    completion_tokens: c as u64,
                };
                if checksum(key, &text, &usage) == sum {
                    Some((text, usage))
                } else {
                    self.warn(format!(
                        "cache row {key} failed its checksum; ignoring it and calling the LM"
                    ));
                    None
                }
            }
            Ok(Some(_)) => {
                self.warn(format!(
                    "cache row {key} cannot be decoded; ignoring it and calling the LM"
                ));
                None
            }
            Err(e) => {
                self.warn(format!("cache lookup of {key} failed: {e}"));
                None
            }
        }
    }

    /// Record a reply (replacing any previous, e.g. corrupt, row).
    pub fn put(&self, entry: &CacheEntry) -> Result<(), String> {
        let request = entry.request.as_ref().map(|r| r.to_string());
        self.put_row(
            &entry.key,
            &entry.model,
            request.as_deref(),
            &entry.text,
            entry.usage,
            entry.created,
        )
    }

    /// [`CacheStore::put`] with the request already as JSON text (the call
    /// path has it as text; decoding it only to encode it again doubled the
    /// cost of a cold-cache call).
    fn put_row(
        &self,
        key: &str,
        model: &str,
        request: Option<&str>,
        text: &str,
        usage: Usage,
        created: i64,
    ) -> Result<(), String> {
        let sum = checksum(key, text, &usage);
        let conn = self.lock()?;
        let mut stmt = conn
            .prepare_cached(
                "INSERT OR REPLACE INTO responses \
                 (key, model, request, text, prompt_tokens, completion_tokens, checksum, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .map_err(|e| e.to_string())?;
        stmt.execute(params![
            key,
            model,
            request,
            text,
            usage.prompt_tokens as i64,
            usage.completion_tokens as i64,
            sum,
            created,
        ])
        .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn sql(&self, source: rusqlite::Error) -> CacheError {
        CacheError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| self.sql(rusqlite::Error::InvalidQuery))?;
        let (entries, p, c, oldest, newest): (i64, i64, i64, Option<i64>, Option<i64>) = conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), \
                 MIN(created), MAX(created) FROM responses",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(|e| self.sql(e))?;
        let mut stmt = conn
            .prepare("SELECT model, COUNT(*) FROM responses GROUP BY model ORDER BY model")
            .map_err(|e| self.sql(e))?;
        let models = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(|e| self.sql(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sql(e))?;
        let bytes = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                std::fs::metadata(PathBuf::from(p)).ok().map(|m| m.len())
            })
            .sum();
        Ok(CacheStats {
            path: self.path.clone(),
            entries: entries as u64,
            bytes,
            models,
            prompt_tokens: p as u64,
            completion_tokens: c as u64,
            oldest,
            newest,
        })
    }

    /// Delete every entry; returns how many there were.
    pub fn clear(&self) -> Result<u64, CacheError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| self.sql(rusqlite::Error::InvalidQuery))?;
        let n = conn
            .execute("DELETE FROM responses", [])
            .map_err(|e| self.sql(e))?;
        // Give the space back; VACUUM may fail if another process holds the
        // file, which is harmless.
        let _ = conn.execute_batch("VACUUM");
        Ok(n as u64)
    }

    /// Delete the entries of one model: recorded under exactly `model`, or
    /// under `model@<hash>` (the embedded engine names its model with the
    /// weights' content hash). Returns how many were deleted.
    pub fn clear_model(&self, model: &str) -> Result<u64, CacheError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| self.sql(rusqlite::Error::InvalidQuery))?;
        // `substr` rather than LIKE: a model name may contain `%` or `_`.
        let prefix = format!("{model}@");
        let n = conn
            .execute(
                "DELETE FROM responses WHERE model = ?1 OR substr(model, 1, length(?2)) = ?2",
                params![model, prefix],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n as u64)
    }

    /// Write every verified entry as one JSON object per line, sorted by key
    /// so a committed cassette diffs cleanly. Returns (written, skipped).
    pub fn export(&self, out: &mut dyn std::io::Write) -> Result<(u64, u64), CacheError> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| self.sql(rusqlite::Error::InvalidQuery))?;
        let mut stmt = conn
            .prepare(
                "SELECT key, model, request, text, prompt_tokens, completion_tokens, checksum, created \
                 FROM responses ORDER BY key",
            )
            .map_err(|e| self.sql(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.sql(e))?;
        let (mut written, mut skipped) = (0, 0);
        while let Some(r) = rows.next().map_err(|e| self.sql(e))? {
            let decoded = (|| -> Option<(CacheEntry, String)> {
                let key: String = r.get(0).ok()?;
                let request: Option<String> = r.get(2).ok()?;
                let entry = CacheEntry {
                    usage: Usage {
                        prompt_tokens: r.get::<_, i64>(4).ok()?.try_into().ok()?,
                        completion_tokens: r.get::<_, i64>(5).ok()?.try_into().ok()?,
                    },
                    model: r.get(1).ok()?,
                    request: request.and_then(|s| serde_json::from_str(&s).ok()),
                    text: r.get(3).ok()?,
                    created: r.get(7).ok()?,
                    key,
                };
                Some((entry, r.get(6).ok()?))
            })();
            match decoded {
                Some((e, sum)) if checksum(&e.key, &e.text, &e.usage) == sum => {
                    let line = serde_json::to_string(&e).unwrap_or_default();
                    writeln!(out, "{line}").map_err(|source| CacheError::Io {
                        path: PathBuf::from("<export>"),
                        source,
                    })?;
                    written += 1;
                }
                _ => {
                    skipped += 1;
                }
            }
        }
        Ok((written, skipped))
    }

    /// Read a JSONL cassette (as written by [`CacheStore::export`]) into the
    /// cache in one transaction. Entries with a request whose key does not
    /// match are skipped and counted; a line that is not an entry is an error
    /// naming its line number (nothing is imported then).
    pub fn import<R: std::io::BufRead>(&self, input: R) -> Result<ImportReport, CacheError> {
        let mut entries = Vec::new();
        let mut report = ImportReport::default();
        for (i, line) in input.lines().enumerate() {
            let line = line.map_err(|source| CacheError::Io {
                path: PathBuf::from("<import>"),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let e: CacheEntry = serde_json::from_str(&line).map_err(|err| CacheError::Import {
                line: i + 1,
                message: err.to_string(),
            })?;
            if let Some(req) = &e.request {
                let key = serde_json::from_value::<LmRequest>(req.clone())
                    .map(|r| cache_key(&r))
                    .ok();
                if key.as_deref() != Some(e.key.as_str()) {
                    report.mismatched += 1;
                    continue;
                }
            }
            entries.push(e);
        }
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| self.sql(rusqlite::Error::InvalidQuery))?;
        let tx = conn.transaction().map_err(|e| self.sql(e))?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT OR REPLACE INTO responses \
                     (key, model, request, text, prompt_tokens, completion_tokens, checksum, created) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| self.sql(e))?;
            for e in &entries {
                stmt.execute(params![
                    e.key,
                    e.model,
                    e.request.as_ref().map(|r| r.to_string()),
                    e.text,
                    e.usage.prompt_tokens as i64,
                    e.usage.completion_tokens as i64,
                    checksum(&e.key, &e.text, &e.usage),
                    e.created,
                ])
                .map_err(|err| self.sql(err))?;
                report.imported += 1;
            }
        }
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(report)
    }

    /// Direct SQL access for tests that need to damage a row on purpose.
    #[doc(hidden)]
    pub fn execute_raw(&self, sql: &str) -> Result<usize, String> {
        self.lock()?.execute(sql, []).map_err(|e| e.to_string())
    }
}

type Flight = Arc<tokio::sync::OnceCell<Result<LmResponse, LmError>>>;

/// Wraps any LM with the persistent cache. Identical requests in flight at
/// the same time are coalesced: one reaches the backend, the others wait
/// for its reply and receive it as a cache hit.
pub struct CachedLm {
    inner: SharedLm,
    store: Arc<CacheStore>,
    mode: CacheMode,
    in_flight: Mutex<HashMap<String, Flight>>,
}

impl CachedLm {
    pub fn new(inner: SharedLm, store: Arc<CacheStore>, mode: CacheMode) -> Self {
        CachedLm {
            inner,
            store,
            mode,
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Arc<CacheStore> {
        &self.store
    }

    fn hit(text: String, started: Instant) -> LmResponse {
        // A hit costs nothing now: usage reports what this call spent (as
        // DSPy does), so summing traces gives the real spend.
        LmResponse {
            text,
            usage: Usage::default(),
            cache_hit: true,
            latency: started.elapsed(),
            retries: 0,
            cost: 0.0,
        }
    }

    /// Call the backend and record the reply.
    async fn fetch(&self, key: &str, req: &LmRequest) -> Result<LmResponse, LmError> {
        let resp = self.inner.complete(req).await?;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let request = canonical_request(req);
        if let Err(e) = self.store.put_row(
            key,
            &req.model,
            Some(&request),
            &resp.text,
            resp.usage,
            created,
        ) {
            self.store
                .warn(format!("could not record reply {key} in the cache: {e}"));
        }
        Ok(resp)
    }
}

#[async_trait::async_trait]
impl Lm for CachedLm {
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        if self.mode == CacheMode::NoCache {
            return self.inner.complete(req).await;
        }
        let started = Instant::now();
        let key = cache_key(req);
        if let Some((text, _)) = self.store.get(&key) {
            return Ok(Self::hit(text, started));
        }
        if self.mode == CacheMode::Offline {
            return Err(LmError::CacheMiss {
                key,
                model: req.model.clone(),
            });
        }
        let flight: Flight = match self.in_flight.lock() {
            Ok(mut m) => m.entry(key.clone()).or_default().clone(),
            // A poisoned map only loses coalescing, never correctness.
            Err(_) => Arc::default(),
        };
        let led = std::sync::atomic::AtomicBool::new(false);
        let result = flight
            .get_or_init(|| async {
                led.store(true, Ordering::Relaxed);
                // Another process (or a flight that just landed) may have
                // recorded it since the first lookup.
                match self.store.get(&key) {
                    Some((text, _)) => Ok(Self::hit(text, started)),
                    None => self.fetch(&key, req).await,
                }
            })
            .await
            .clone();
        if let Ok(mut m) = self.in_flight.lock() {
            if m.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                m.remove(&key);
            }
        }
        if led.load(Ordering::Relaxed) {
            result
        } else {
            result.map(|r| Self::hit(r.text, started))
        }
    }

    fn model(&self) -> String {
        self.inner.model()
    }

    fn supports_grammar(&self) -> bool {
        self.inner.supports_grammar()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{Message, Role};
    use serde_json::json;

    fn req(content: &str) -> LmRequest {
        LmRequest {
            model: "m".into(),
            messages: vec![Message::new(Role::User, content)],
            temperature: 0.0,
            max_tokens: 64,
            rollout_id: None,
            grammar: None,
            response_format: None,
        }
    }

    #[test]
    fn key_covers_request_and_sorts_schema_keys() {
        let a = req("hi");
        let mut b = a.clone();
        assert_eq!(cache_key(&a), cache_key(&b));
        assert_eq!(cache_key(&a).len(), 64);
        // The streamed key is the hash of the canonical JSON that cassettes
        // store, so keys stay stable and import can verify them.
        assert_eq!(
            cache_key(&a),
            hex::encode(Sha256::digest(canonical_request(&a).as_bytes()))
        );
        b.rollout_id = Some(1);
        assert_ne!(cache_key(&a), cache_key(&b));
        let mut c = a.clone();
        c.temperature = 0.7;
        assert_ne!(cache_key(&a), cache_key(&c));
        let mut d = a.clone();
        d.response_format = Some(json!({"type": "json_schema", "json_schema": {"b": 1, "a": 2}}));
        let mut e = a.clone();
        e.response_format = Some(json!({"json_schema": {"a": 2, "b": 1}, "type": "json_schema"}));
        assert_eq!(cache_key(&d), cache_key(&e));
        assert_ne!(cache_key(&a), cache_key(&d));
    }

    #[test]
    fn store_roundtrip_corruption_and_cassettes() {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::open_dir(dir.path()).unwrap();
        let r = req("hello");
        let key = cache_key(&r);
        let entry = CacheEntry {
            key: key.clone(),
            model: "m".into(),
            request: serde_json::from_str(&canonical_request(&r)).ok(),
            text: "world".into(),
            usage: Usage {
                prompt_tokens: 5,
                completion_tokens: 1,
            },
            created: 1,
        };
        store.put(&entry).unwrap();
        assert_eq!(store.get(&key).unwrap().0, "world");

        let mut buf = Vec::new();
        assert_eq!(store.export(&mut buf).unwrap(), (1, 0));
        let dir2 = tempfile::tempdir().unwrap();
        let other = CacheStore::open_dir(dir2.path()).unwrap();
        let rep = other.import(&mut buf.as_slice()).unwrap();
        assert_eq!(rep.imported, 1);
        assert_eq!(other.get(&key).unwrap().0, "world");

        // A tampered line (key no longer matches its request) is skipped.
        let tampered = String::from_utf8(buf.clone())
            .unwrap()
            .replace(&key, &"0".repeat(64));
        let rep = other.import(&mut tampered.as_bytes()).unwrap();
        assert_eq!((rep.imported, rep.mismatched), (0, 1));

        store
            .execute_raw("UPDATE responses SET text = 'tampered'")
            .unwrap();
        assert!(store.get(&key).is_none());
        assert_eq!(store.warnings(), 1);
        assert!(store.warning_messages()[0].contains("checksum"));

        let st = store.stats().unwrap();
        assert_eq!(st.entries, 1);
        assert_eq!(store.clear().unwrap(), 1);
        assert_eq!(store.stats().unwrap().entries, 0);
    }
}
