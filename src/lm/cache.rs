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
//!
//! Replies are written by one writer thread per store (group commit): the
//! call path puts the reply in an in-memory `queued` map and on a bounded
//! channel and returns at once; the writer takes everything waiting on the
//! channel and commits it in one transaction, so a burst of replies costs
//! one commit and one write of each touched page instead of one per reply.
//! Lookups consult `queued` first, so a process never pays twice for its
//! own reply while it waits to be committed. The writer never waits to
//! fill a group: it commits as soon as it is idle, so the only replies a
//! `kill -9` can lose are those in the group being committed and those
//! queued behind it (at most [`GROUP_MAX`]; in practice the replies that
//! arrived during one commit), each paid again once by the next run.
//! Dropping the store, [`CacheStore::flush`] and [`flush_all`] (called
//! before a forced exit) commit everything queued.
//!
//! A damaged file never stops work (the file handling is in `cachefile`):
//! when SQLite reports it corrupt or not a database (on open, or on any
//! later lookup or write), the readable rows
//! are copied into a fresh file, the damaged one is moved aside as
//! `cache.sqlite.corrupt-<unix time>` (with its `-wal`/`-shm`), and a
//! warning names both, so a damaged page is paid for once, said so, and
//! not on every run. A file lmc cannot write is opened read-only: replays
//! work (`--offline` included) and a warning says nothing new is recorded.
//!
//! A reply the run layer could not parse is kept but flagged `unusable`
//! ([`Lm::mark_unusable`]): a read-write run asks the LM again (and the new
//! reply replaces the row), while `--offline` replays it as recorded so an
//! offline gate reproduces the recorded run exactly.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;

use super::cachefile::{file_id, has_column, is_damage, open_read_only, open_read_write, rebuild};
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
    /// Absent for sampled replies, so their keys are unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    choice: Option<&'a super::choice::ChoiceRequest>,
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
            choice: req.choice.as_ref(),
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

pub(super) fn checksum(key: &str, text: &str, usage: &Usage) -> String {
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

/// text, prompt tokens, completion tokens, checksum, unusable.
type LooseRow = (
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    bool,
);

/// The SQLite file. Cheap to share (`Arc`); all access goes through one
/// connection.
pub struct CacheStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Opened read-only (the file or its directory is not writable).
    read_only: bool,
    /// The file has the `unusable` column (files from older lmc opened
    /// read-only may not).
    has_unusable: bool,
    /// A damaged file was already rebuilt by this process (done once, so a
    /// disk that keeps corrupting pages cannot loop).
    rebuilt: std::sync::atomic::AtomicBool,
    /// Lookups that failed because the file is damaged (each one a call
    /// paid again).
    damaged_reads: AtomicU64,
    /// The file the connection has open (see [`file_id`]).
    opened: Mutex<Option<(u64, u64)>>,
    warnings: AtomicU64,
    warning_log: Mutex<Vec<String>>,
    /// Warnings raised before a callback was installed (while opening),
    /// handed to the callback when it arrives.
    pending: Mutex<Vec<String>>,
    on_warning: Mutex<Option<Arc<WarnFn>>>,
    /// Replies handed to the writer and not yet committed, by key, with
    /// the sequence number of the latest one (so a commit removes only
    /// what it wrote, not a newer reply for the same key).
    queued: Mutex<HashMap<String, (String, Usage, u64)>>,
    seq: AtomicU64,
    /// The group-commit writer, started by [`CacheStore::start_writer`].
    writer: OnceLock<Writer>,
}

/// At most this many replies wait for the writer (the channel is bounded:
/// a writer stalled by another process's lock slows the callers rather
/// than letting the unrecorded tail grow), and at most this many go into
/// one transaction.
pub const GROUP_MAX: usize = 256;

/// How long the writer gathers replies after the first of a group before
/// committing: short beside any LM call, long enough for the replies of a
/// busy run to share a commit.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// One reply on its way to the file.
struct QueuedRow {
    key: String,
    model: String,
    request: Option<String>,
    text: String,
    usage: Usage,
    created: i64,
    seq: u64,
}

enum Job {
    Put(QueuedRow),
    /// Answered once everything sent before it is committed.
    Flush(SyncSender<()>),
}

/// The writer thread's handles. The sender is never cloned, so dropping it
/// closes the channel and ends the thread.
struct Writer {
    tx: Mutex<Option<SyncSender<Job>>>,
    rx: Arc<Mutex<Receiver<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<Vec<Job>>>>,
}

/// Stores with a running writer, so a forced exit can commit their queues.
static LIVE: Mutex<Vec<Weak<CacheStore>>> = Mutex::new(Vec::new());

/// Commit every live store's queued replies (called before a forced exit,
/// e.g. a second Ctrl-C, which skips destructors).
pub fn flush_all() {
    let stores: Vec<Arc<CacheStore>> = LIVE
        .lock()
        .map(|l| l.iter().filter_map(Weak::upgrade).collect())
        .unwrap_or_default();
    for s in stores {
        s.flush();
    }
}

/// The request (kilobytes of prompt, kept for cassettes and humans) is the
/// last column, so reading a reply never walks the request's overflow pages.
/// Files created before this order keep working: queries name columns.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    checksum TEXT NOT NULL,
    created INTEGER NOT NULL,
    request TEXT,
    unusable INTEGER NOT NULL DEFAULT 0
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

    /// Open (creating if needed) the cache file at `path`. A damaged file
    /// is rebuilt (see the module notes); a file that cannot be written is
    /// opened read-only; a file that cannot be created at all gives an
    /// empty in-memory cache. Each of those is a warning, not an error.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let sql = |source| CacheError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let mut notices = Vec::new();
        let mut rebuilt = false;
        // Another store of this process may still hold queued replies for
        // this file: commit them so this one sees them.
        flush_all();
        let before = file_id(path);
        let (conn, read_only) = match open_read_write(path) {
            Ok(c) => (c, false),
            // Another process replaced the damaged file meanwhile: use its.
            Err(e) if is_damage(&e) && before.is_some() && file_id(path) != before => {
                (open_read_write(path).map_err(sql)?, false)
            }
            Err(e) if is_damage(&e) => {
                let note =
                    rebuild(path, None, &e.to_string()).map_err(|source| CacheError::Io {
                        path: path.to_path_buf(),
                        source,
                    })?;
                notices.push(note);
                rebuilt = true;
                (open_read_write(path).map_err(sql)?, false)
            }
            Err(e) if path.exists() => {
                let c = match open_read_only(path) {
                    Ok(c) => c,
                    // Damaged and not writable: nothing can be moved aside.
                    Err(ro) if is_damage(&ro) => return Err(sql(ro)),
                    // Report the read-write failure: it says why.
                    Err(_) => return Err(sql(e)),
                };
                notices.push(format!(
                    "cache {} cannot be written ({e}); replaying recorded replies, but new \
                     replies will not be recorded",
                    path.display()
                ));
                (c, true)
            }
            Err(e) => {
                let c = Connection::open_in_memory().map_err(sql)?;
                c.execute_batch(SCHEMA).map_err(sql)?;
                notices.push(format!(
                    "cache {} cannot be created ({e}); this run records its replies in memory only",
                    path.display()
                ));
                (c, false)
            }
        };
        let has_unusable = has_column(&conn, "unusable");
        let store = CacheStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            read_only,
            has_unusable,
            rebuilt: std::sync::atomic::AtomicBool::new(rebuilt),
            damaged_reads: AtomicU64::new(0),
            opened: Mutex::new(file_id(path)),
            warnings: AtomicU64::new(0),
            warning_log: Mutex::new(Vec::new()),
            pending: Mutex::new(Vec::new()),
            on_warning: Mutex::new(None),
            queued: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            writer: OnceLock::new(),
        };
        for n in notices {
            store.warn(n);
        }
        Ok(store)
    }

    /// Whether the file was opened read-only (nothing will be recorded).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Lookups that failed because the file was damaged (each a paid call).
    pub fn damaged_reads(&self) -> u64 {
        self.damaged_reads.load(Ordering::Relaxed)
    }

    /// Called with the connection lock held when SQLite reports the file
    /// damaged mid-run: rebuild it once and continue on the fresh file.
    /// Returns whether the connection now points at a rebuilt file.
    fn recover(&self, conn: &mut Connection, cause: &rusqlite::Error) -> bool {
        if self.read_only || self.rebuilt.swap(true, Ordering::SeqCst) {
            return false;
        }
        let opened = self.opened.lock().ok().and_then(|o| *o);
        let now = file_id(&self.path);
        if opened.is_some() && now.is_some() && now != opened {
            // Another process sharing the cache rebuilt it already: switch
            // to its fresh file rather than moving that one aside.
            if let Ok(fresh) = open_read_write(&self.path) {
                *conn = fresh;
                if let Ok(mut o) = self.opened.lock() {
                    *o = now;
                }
                return true;
            }
            return false;
        }
        let placeholder = match Connection::open_in_memory() {
            Ok(c) => c,
            Err(_) => return false,
        };
        let old = std::mem::replace(conn, placeholder);
        match rebuild(&self.path, Some(old), &cause.to_string()) {
            Ok(note) => {
                self.warn(note);
                match open_read_write(&self.path) {
                    Ok(fresh) => {
                        *conn = fresh;
                        if let Ok(mut o) = self.opened.lock() {
                            *o = file_id(&self.path);
                        }
                        true
                    }
                    Err(e) => {
                        self.warn(format!(
                            "cannot reopen the rebuilt cache {}: {e}; replies are not recorded",
                            self.path.display()
                        ));
                        false
                    }
                }
            }
            Err(e) => {
                self.warn(format!(
                    "cache {} is damaged ({cause}) and could not be moved aside: {e}",
                    self.path.display()
                ));
                // Keep working on the damaged file where it still answers.
                if let Ok(c) = open_read_write(&self.path) {
                    *conn = c;
                }
                false
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Install a callback called with each warning (the CLI prints them);
    /// warnings raised while opening are passed to it at once.
    pub fn set_warning_callback(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        let f: Arc<WarnFn> = Arc::new(f);
        if let Ok(mut slot) = self.on_warning.lock() {
            *slot = Some(f.clone());
        }
        let pending = self
            .pending
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        for msg in pending {
            f(&msg);
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
        match cb {
            Some(cb) => cb(&msg),
            None => {
                if let Ok(mut p) = self.pending.lock() {
                    if p.len() < MAX_WARNING_LOG {
                        p.push(msg);
                    }
                }
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, String> {
        self.conn
            .lock()
            .map_err(|_| "cache connection poisoned by an earlier panic".to_string())
    }

    /// The stored usable reply for `key`, verified; corrupt rows yield
    /// `None` and a warning, rows flagged unusable yield `None`.
    pub fn get(&self, key: &str) -> Option<(String, Usage)> {
        self.get_row(key)
            .and_then(|(text, usage, unusable)| (!unusable).then_some((text, usage)))
    }

    /// One lookup on `conn`.
    fn query(conn: &Connection, sql: &str, key: &str) -> Result<Option<LooseRow>, rusqlite::Error> {
        let mut stmt = conn.prepare_cached(sql)?;
        // Read loosely typed so a damaged row is reported, not an error.
        stmt.query_row([key], |r| {
            Ok((
                r.get::<_, String>(0).ok(),
                r.get::<_, i64>(1).ok(),
                r.get::<_, i64>(2).ok(),
                r.get::<_, String>(3).ok(),
                r.get::<_, i64>(4).unwrap_or(0) != 0,
            ))
        })
        .optional()
    }

    /// The stored reply for `key`, verified, with its `unusable` flag.
    pub fn get_row(&self, key: &str) -> Option<(String, Usage, bool)> {
        // A reply still waiting for the writer is this process's own: serve
        // it rather than pay for it again.
        if let Some((text, usage, _)) = self.queued.lock().ok().and_then(|q| q.get(key).cloned()) {
            return Some((text, usage, false));
        }
        let sql = if self.has_unusable {
            "SELECT text, prompt_tokens, completion_tokens, checksum, unusable \
             FROM responses WHERE key = ?1"
        } else {
            "SELECT text, prompt_tokens, completion_tokens, checksum, 0 \
             FROM responses WHERE key = ?1"
        };
        let row: Result<Option<LooseRow>, String> = self.lock().and_then(|mut conn| {
            match Self::query(&conn, sql, key) {
                Err(e) if is_damage(&e) => {
                    self.damaged_reads.fetch_add(1, Ordering::Relaxed);
                    if self.recover(&mut conn, &e) {
                        // The rebuilt file may still hold this reply.
                        Self::query(&conn, sql, key).map_err(|e| e.to_string())
                    } else {
                        Err(format!(
                            "{e} (the cache file is damaged: this request is paid again)"
                        ))
                    }
                }
                other => other.map_err(|e| e.to_string()),
            }
        });
        match row {
            Ok(None) => None,
            Ok(Some((Some(text), Some(p), Some(c), Some(sum), unusable))) if p >= 0 && c >= 0 => {
                let usage = Usage {
                    prompt_tokens: p as u64,
                    completion_tokens: c as u64,
                };
                if checksum(key, &text, &usage) == sum {
                    Some((text, usage, unusable))
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
        if self.read_only {
            // Said once, when the file was opened.
            return Ok(());
        }
        let sum = checksum(key, text, &usage);
        let mut conn = self.lock()?;
        // A new reply always replaces the row and clears `unusable`.
        let write = |conn: &Connection| -> Result<(), rusqlite::Error> {
            let mut stmt = conn.prepare_cached(
                "INSERT OR REPLACE INTO responses \
                 (key, model, request, text, prompt_tokens, completion_tokens, checksum, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            stmt.execute(params![
                key,
                model,
                request,
                text,
                usage.prompt_tokens as i64,
                usage.completion_tokens as i64,
                sum,
                created,
            ])?;
            Ok(())
        };
        match write(&conn) {
            Err(e) if is_damage(&e) => {
                if self.recover(&mut conn, &e) {
                    write(&conn).map_err(|e| e.to_string())
                } else {
                    Err(e.to_string())
                }
            }
            other => other.map_err(|e| e.to_string()),
        }
    }

    /// Flag the reply for `key` as one the caller could not use (it failed
    /// to parse): a read-write run asks the LM again instead of replaying
    /// it. Nothing happens on a read-only file.
    pub fn mark_unusable(&self, key: &str) -> Result<(), String> {
        if self.read_only || !self.has_unusable {
            return Ok(());
        }
        // The reply may still be queued: commit it first, or the flag
        // would land on nothing and the queued row would clear it.
        self.flush();
        let conn = self.lock()?;
        conn.prepare_cached("UPDATE responses SET unusable = 1 WHERE key = ?1")
            .and_then(|mut s| s.execute([key]))
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Start the group-commit writer (once; a read-only store records
    /// nothing and needs none). Until it runs, replies are written inline.
    pub fn start_writer(self: &Arc<Self>) {
        if self.read_only || self.writer.get().is_some() {
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(GROUP_MAX);
        let rx = Arc::new(Mutex::new(rx));
        let weak = Arc::downgrade(self);
        let thread_rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name("lmc-cache-writer".into())
            .spawn(move || writer_loop(&thread_rx, &weak));
        let thread = match spawned {
            Ok(t) => t,
            // No thread: replies keep being written inline.
            Err(_) => return,
        };
        let w = Writer {
            tx: Mutex::new(Some(tx)),
            rx,
            thread: Mutex::new(Some(thread)),
        };
        if self.writer.set(w).is_ok() {
            if let Ok(mut live) = LIVE.lock() {
                live.retain(|w| w.strong_count() > 0);
                live.push(Arc::downgrade(self));
            }
        }
    }

    /// Wait until every reply queued so far is committed.
    pub fn flush(&self) {
        let Some(w) = self.writer.get() else {
            return;
        };
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        let sent = match w.tx.lock() {
            Ok(tx) => tx
                .as_ref()
                .is_some_and(|tx| tx.send(Job::Flush(ack)).is_ok()),
            Err(_) => false,
        };
        if sent {
            // An error means the writer is gone; nothing more will commit.
            let _ = done.recv();
        }
    }

    /// Record a reply from the call path: queued for the writer when it
    /// runs (returns at once), else written inline.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        key: &str,
        model: &str,
        request: Option<String>,
        text: &str,
        usage: Usage,
        created: i64,
    ) -> Result<(), String> {
        let Some(w) = self.writer.get() else {
            return self.put_row(key, model, request.as_deref(), text, usage, created);
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut q) = self.queued.lock() {
            q.insert(key.to_string(), (text.to_string(), usage, seq));
        }
        let job = Job::Put(QueuedRow {
            key: key.to_string(),
            model: model.to_string(),
            request,
            text: text.to_string(),
            usage,
            created,
            seq,
        });
        let tx =
            w.tx.lock()
                .map_err(|_| "cache writer poisoned".to_string())?;
        let Some(tx) = tx.as_ref() else {
            return Err("the cache is closing".into());
        };
        // A full queue means the writer is behind (another process holds
        // the lock): wait for room rather than grow the unrecorded tail.
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => tx.send(job).map_err(|_| "cache writer stopped".into()),
            Err(TrySendError::Disconnected(_)) => Err("cache writer stopped".into()),
        }
    }

    /// Commit one group in a single transaction; returns the flushes to
    /// answer, which the caller does once it holds no reference to the
    /// store (see [`writer_loop`]).
    #[must_use]
    fn commit_group(&self, jobs: Vec<Job>) -> Vec<SyncSender<()>> {
        let mut rows = Vec::new();
        let mut acks = Vec::new();
        for j in jobs {
            match j {
                Job::Put(r) => rows.push(r),
                Job::Flush(a) => acks.push(a),
            }
        }
        if !rows.is_empty() {
            let result = self
                .lock()
                .and_then(|mut conn| match write_group(&mut conn, &rows) {
                    Err(e) if is_damage(&e) => {
                        if self.recover(&mut conn, &e) {
                            write_group(&mut conn, &rows).map_err(|e| e.to_string())
                        } else {
                            Err(e.to_string())
                        }
                    }
                    other => other.map_err(|e| e.to_string()),
                });
            if let Err(e) = result {
                self.warn(format!(
                    "could not record {} replies in the cache: {e} (they will be paid again by a re-run)",
                    rows.len()
                ));
            }
            // Committed (or given up on): lookups go to the file again.
            if let Ok(mut q) = self.queued.lock() {
                for r in &rows {
                    if q.get(&r.key).is_some_and(|(_, _, s)| *s == r.seq) {
                        q.remove(&r.key);
                    }
                }
            }
        }
        acks
    }

    fn sql(&self, source: rusqlite::Error) -> CacheError {
        CacheError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Run `f` on the connection; when SQLite finds the file damaged,
    /// rebuild it (once per process) and run `f` again on the fresh file.
    fn with_conn<T>(
        &self,
        f: impl Fn(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, CacheError> {
        self.flush();
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| self.sql(rusqlite::Error::InvalidQuery))?;
        match f(&conn) {
            Err(e) if is_damage(&e) => {
                if self.recover(&mut conn, &e) {
                    f(&conn).map_err(|e| self.sql(e))
                } else {
                    Err(self.sql(e))
                }
            }
            other => other.map_err(|e| self.sql(e)),
        }
    }

    pub fn stats(&self) -> Result<CacheStats, CacheError> {
        type Totals = (i64, i64, i64, Option<i64>, Option<i64>);
        let ((entries, p, c, oldest, newest), models) = self.with_conn(|conn| {
            let totals: Totals = conn.query_row(
                "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), \
                 MIN(created), MAX(created) FROM responses",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
            let mut stmt = conn
                .prepare("SELECT model, COUNT(*) FROM responses GROUP BY model ORDER BY model")?;
            let models = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((totals, models))
        })?;
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
        if self.read_only {
            return Err(CacheError::Io {
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the cache file is read-only; make it (and its directory) writable, or delete it",
                ),
            });
        }
        self.with_conn(|conn| {
            let n = conn.execute("DELETE FROM responses", [])?;
            // Give the space back; VACUUM may fail if another process holds
            // the file, which is harmless.
            let _ = conn.execute_batch("VACUUM");
            Ok(n as u64)
        })
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
        self.flush();
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
    pub fn import<R: std::io::BufRead>(&self, mut input: R) -> Result<ImportReport, CacheError> {
        use std::io::{BufRead as _, Read as _};
        // A cassette comes from elsewhere: one line is read with a cap, so a
        // file without newlines cannot make the reader buffer all of it.
        const MAX_LINE: usize = 64 << 20;
        let mut entries = Vec::new();
        let mut report = ImportReport::default();
        // Reserved once at the cap (address space; pages are touched only as
        // a line fills them): growing by doubling would pass through a
        // 128 MiB buffer, and an allocator that copies on a large realloc
        // (mimalloc does) would briefly hold both copies.
        let mut buf = Vec::with_capacity(MAX_LINE + 1);
        for i in 0.. {
            buf.clear();
            let n = (&mut input)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
                .map_err(|source| CacheError::Io {
                    path: PathBuf::from("<import>"),
                    source,
                })?;
            if n == 0 {
                break;
            }
            let bad = |message: String| CacheError::Import {
                line: i + 1,
                message,
            };
            if buf.len() > MAX_LINE {
                return Err(bad(format!(
                    "line longer than {} MiB; a cassette holds one entry per line",
                    MAX_LINE >> 20
                )));
            }
            let line = std::str::from_utf8(&buf)
                .map_err(|e| bad(format!("invalid UTF-8 at byte {}", e.valid_up_to() + 1)))?;
            if line.trim().is_empty() {
                continue;
            }
            let e: CacheEntry =
                serde_json::from_str(line.trim_end()).map_err(|err| bad(err.to_string()))?;
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
        self.flush();
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
        // Direct SQL sees every reply recorded so far.
        self.flush();
        self.lock()?.execute(sql, []).map_err(|e| e.to_string())
    }
}

/// Write a group of replies in one IMMEDIATE transaction (taking the write
/// lock up front, so a second process waits in the busy handler instead of
/// failing on a lock upgrade). A new reply always replaces the row and
/// clears `unusable`.
fn write_group(conn: &mut Connection, rows: &[QueuedRow]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT OR REPLACE INTO responses \
             (key, model, request, text, prompt_tokens, completion_tokens, checksum, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for r in rows {
            stmt.execute(params![
                r.key,
                r.model,
                r.request,
                r.text,
                r.usage.prompt_tokens as i64,
                r.usage.completion_tokens as i64,
                checksum(&r.key, &r.text, &r.usage),
                r.created,
            ])?;
        }
    }
    tx.commit()
}

/// The writer thread: block for one job, take whatever else is already
/// waiting (up to [`GROUP_MAX`]), commit it as one group, repeat. It holds
/// the store only weakly; when the store is gone it hands back what it
/// holds for the store's `Drop` to commit.
fn writer_loop(rx: &Mutex<Receiver<Job>>, store: &Weak<CacheStore>) -> Vec<Job> {
    loop {
        let group = {
            let Ok(rx) = rx.lock() else {
                return Vec::new();
            };
            let Ok(first) = rx.recv() else {
                return Vec::new();
            };
            let mut group = vec![first];
            // Gather for a moment: replies arriving together then share one
            // commit and one write of each page they touch. A flush needs
            // no company.
            let until = Instant::now() + GATHER;
            while group.len() < GROUP_MAX && !matches!(group.last(), Some(Job::Flush(_))) {
                let left = until.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(j) => group.push(j),
                    Err(_) => break,
                }
            }
            group
        };
        let acks = match store.upgrade() {
            Some(s) => s.commit_group(group),
            None => return group,
        };
        // Answer only after letting go of the store: the flusher may then
        // drop the last reference on its own thread, whose `Drop` joins
        // this one and closes the connection (checkpointing the WAL into
        // the file) before the process exits. Answered with the store
        // still held here, the close would run on this thread, racing the
        // process's exit and leaving the replies in `cache.sqlite-wal`.
        answer(acks);
    }
}

fn answer(acks: Vec<SyncSender<()>>) {
    for a in acks {
        let _ = a.send(());
    }
}

impl Drop for CacheStore {
    /// Commit whatever is still queued before the connection closes.
    fn drop(&mut self) {
        let Some(w) = self.writer.get() else {
            return;
        };
        if let Ok(mut tx) = w.tx.lock() {
            tx.take();
        }
        let mut left = Vec::new();
        let handle = w.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            // The writer itself may hold the last reference (it upgraded
            // to commit); it cannot join itself.
            if h.thread().id() != std::thread::current().id() {
                if let Ok(held) = h.join() {
                    left = held;
                }
            }
        }
        if let Ok(rx) = w.rx.lock() {
            left.extend(rx.try_iter());
        }
        if !left.is_empty() {
            answer(self.commit_group(left));
        }
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
    /// Keys this process flagged unusable: within one run they still replay
    /// (the same request asked twice in a run costs one call, as before);
    /// only later runs ask again.
    flagged_here: Mutex<std::collections::HashSet<String>>,
}

impl CachedLm {
    pub fn new(inner: SharedLm, store: Arc<CacheStore>, mode: CacheMode) -> Self {
        if mode == CacheMode::ReadWrite {
            store.start_writer();
        }
        CachedLm {
            inner,
            store,
            mode,
            in_flight: Mutex::new(HashMap::new()),
            flagged_here: Mutex::new(std::collections::HashSet::new()),
        }
    }

    pub fn store(&self) -> &Arc<CacheStore> {
        &self.store
    }

    /// A recorded reply this mode may replay: offline replays every
    /// recorded reply (unusable ones too, so an offline gate reproduces the
    /// recorded run); read-write skips unusable ones flagged by an earlier
    /// run and asks again.
    fn lookup(&self, key: &str) -> Option<String> {
        let (text, _, unusable) = self.store.get_row(key)?;
        let replay = self.mode == CacheMode::Offline
            || !unusable
            || self.flagged_here.lock().is_ok_and(|f| f.contains(key));
        replay.then_some(text)
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
            choices: Vec::new(),
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
        if let Err(e) = self.store.record(
            key,
            &req.model,
            Some(request),
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

impl Drop for CachedLm {
    /// Every queued reply came through a `CachedLm`: commit them before it
    /// goes, on this thread, so a process that returns from `main` next
    /// cannot exit while the writer still holds them.
    fn drop(&mut self) {
        self.store.flush();
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
        if let Some(text) = self.lookup(&key) {
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
                match self.lookup(&key) {
                    Some(text) => Ok(Self::hit(text, started)),
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

    fn mark_unusable(&self, req: &LmRequest) {
        // Offline replays exactly what was recorded and writes nothing.
        if self.mode != CacheMode::ReadWrite {
            return;
        }
        let key = cache_key(req);
        if let Ok(mut f) = self.flagged_here.lock() {
            f.insert(key.clone());
        }
        if let Err(e) = self.store.mark_unusable(&key) {
            self.store.warn(format!(
                "could not flag an unparseable reply in the cache: {e}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::{Message, Role};
    use serde_json::json;
    use std::time::Duration;

    fn req(content: &str) -> LmRequest {
        LmRequest {
            model: "m".into(),
            messages: vec![Message::new(Role::User, content)],
            temperature: 0.0,
            max_tokens: 64,
            rollout_id: None,
            grammar: None,
            response_format: None,
            choice: None,
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

    fn entry(i: usize) -> CacheEntry {
        let r = req(&format!("question {i} {}", "padding ".repeat(200)));
        CacheEntry {
            key: cache_key(&r),
            model: "m".into(),
            request: serde_json::from_str(&canonical_request(&r)).ok(),
            text: format!("answer {i}"),
            usage: Usage::default(),
            created: 1,
        }
    }

    #[test]
    fn a_damaged_page_is_rebuilt_once_and_then_costs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let entries: Vec<CacheEntry> = (0..60).map(entry).collect();
        {
            let store = CacheStore::open(&path).unwrap();
            for e in &entries {
                store.put(e).unwrap();
            }
        }
        // Overwrite a page in the middle with garbage; the header is intact.
        let mut bytes = std::fs::read(&path).unwrap();
        let page = 4096;
        let mid = (bytes.len() / page / 2) * page;
        bytes[mid..mid + page].fill(0xA5);
        std::fs::write(&path, &bytes).unwrap();

        let store = CacheStore::open(&path).unwrap();
        let hits = entries
            .iter()
            .filter(|e| store.get(&e.key).is_some())
            .count();
        assert!(hits > 0 && hits < 60, "hits {hits}");
        assert!(store.damaged_reads() >= 1);
        let msgs = store.warning_messages().join("\n");
        assert!(
            msgs.contains("damaged") && msgs.contains(".corrupt-"),
            "{msgs}"
        );
        // Record the lost replies again (what a run does after paying).
        for e in &entries {
            if store.get(&e.key).is_none() {
                store.put(e).unwrap();
            }
        }
        drop(store);
        let store = CacheStore::open(&path).unwrap();
        let hits = entries
            .iter()
            .filter(|e| store.get(&e.key).is_some())
            .count();
        assert_eq!(hits, 60);
        assert_eq!(store.warnings(), 0, "{:?}", store.warning_messages());
    }

    struct Counting(AtomicU64);

    #[async_trait::async_trait]
    impl Lm for Counting {
        // Nothing recorded here, so nothing to flag (the trait makes
        // every implementation say so: a wrapper must pass it down).
        fn mark_unusable(&self, _req: &crate::lm::LmRequest) {}
        async fn complete(&self, _req: &LmRequest) -> Result<LmResponse, LmError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(LmResponse {
                text: format!("reply {n}"),
                usage: Usage::default(),
                cache_hit: false,
                latency: Duration::ZERO,
                retries: 0,
                cost: 0.0,
                choices: Vec::new(),
            })
        }
        fn model(&self) -> String {
            "m".into()
        }
    }

    #[tokio::test]
    async fn a_flagged_reply_replays_within_its_run_and_is_asked_again_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(CacheStore::open_dir(dir.path()).unwrap());
        let inner = Arc::new(Counting(AtomicU64::new(0)));
        let r = req("q");
        let run1 = CachedLm::new(inner.clone(), store.clone(), CacheMode::ReadWrite);
        assert_eq!(run1.complete(&r).await.unwrap().text, "reply 0");
        run1.mark_unusable(&r);
        // Same run: the same request costs nothing more.
        assert!(run1.complete(&r).await.unwrap().cache_hit);
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        // Offline replays the flagged reply as recorded.
        let offline = CachedLm::new(inner.clone(), store.clone(), CacheMode::Offline);
        assert_eq!(offline.complete(&r).await.unwrap().text, "reply 0");
        // The next read-write run asks again; its reply is final.
        let run2 = CachedLm::new(inner.clone(), store.clone(), CacheMode::ReadWrite);
        let again = run2.complete(&r).await.unwrap();
        assert_eq!((again.text.as_str(), again.cache_hit), ("reply 1", false));
        let run3 = CachedLm::new(inner.clone(), store, CacheMode::ReadWrite);
        assert!(run3.complete(&r).await.unwrap().cache_hit);
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn files_from_before_the_unusable_flag_gain_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let e = entry(2);
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL, \
                 text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, \
                 completion_tokens INTEGER NOT NULL, checksum TEXT NOT NULL, \
                 created INTEGER NOT NULL, request TEXT)",
            )
            .unwrap();
            c.execute(
                "INSERT INTO responses VALUES (?1, 'm', ?2, 0, 0, ?3, 1, NULL)",
                params![e.key, e.text, checksum(&e.key, &e.text, &Usage::default())],
            )
            .unwrap();
        }
        let store = CacheStore::open(&path).unwrap();
        assert_eq!(store.get(&e.key).unwrap().0, e.text);
        store.mark_unusable(&e.key).unwrap();
        assert!(store.get(&e.key).is_none());
        assert_eq!(store.warnings(), 0);
    }

    #[test]
    fn unusable_rows_are_skipped_by_get_and_cleared_by_put() {
        let dir = tempfile::tempdir().unwrap();
        let store = CacheStore::open_dir(dir.path()).unwrap();
        let e = entry(1);
        store.put(&e).unwrap();
        store.mark_unusable(&e.key).unwrap();
        assert!(store.get(&e.key).is_none());
        assert!(store.get_row(&e.key).unwrap().2);
        store.put(&e).unwrap();
        assert!(store.get(&e.key).is_some());
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
