//! Opening, checking and repairing the response cache's SQLite file, kept
//! apart from the cache's lookups so the failure paths read on their own.
//!
//! [`open_read_write`] brings a file to the current schema (adding the
//! `unusable` column to older files) and refuses one SQLite would silently
//! open read-only; [`open_read_only`] serves replays from a file lmc cannot
//! write. When SQLite calls a file corrupt or not a database, [`rebuild`]
//! copies every row that can still be read and verified into a fresh file
//! ([`salvage`] probes row ids one by one, so a damaged page loses only its
//! own rows) and moves the damaged file and its `-wal`/`-shm` aside.

use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cache::{checksum, SCHEMA};
use super::Usage;

/// SQLite's verdict that the file is damaged (as opposed to busy, missing
/// or unwritable).
pub(super) fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
    )
}

/// Which file `path` names now (device and inode on Unix), so a process
/// can tell whether another one already replaced a damaged file.
pub(super) fn file_id(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// `path` with `suffix` appended to its file name (`cache.sqlite-wal`).
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(suffix);
    PathBuf::from(p)
}

/// Open `path` read-write and bring it to the current schema. Errors are
/// SQLite's, so the caller can tell damage from permissions.
pub(super) fn open_read_write(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // WAL: readers never block the writer, and a crash mid-write leaves
    // the last committed reply intact. NORMAL sync is durable across
    // process crashes (the case that matters: an interrupted run).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Reads map the file instead of copying pages through read(2): a hit
    // is then a B-tree walk in memory (the per-call path of every re-run).
    // The map is a window, not an allocation.
    conn.pragma_update(None, "mmap_size", 1i64 << 30)?;
    // Checkpoint every ~16 MB of WAL rather than SQLite's 4 MB: a page that
    // many groups rewrite (the key index's, the table's last leaf) is
    // copied into the main file once per checkpoint, so fewer checkpoints
    // write less. The WAL is cut back to 64 MB after a checkpoint.
    conn.pragma_update(None, "wal_autocheckpoint", 4000)?;
    conn.pragma_update(None, "journal_size_limit", 64i64 << 20)?;
    conn.execute_batch(SCHEMA)?;
    if !has_column(&conn, "unusable") {
        // Files from before the flag gain it in place. Another process may
        // add it at the same moment; that is success too.
        if let Err(e) = conn
            .execute_batch("ALTER TABLE responses ADD COLUMN unusable INTEGER NOT NULL DEFAULT 0")
        {
            if !has_column(&conn, "unusable") {
                return Err(e);
            }
        }
    }
    // SQLite silently opens a write-protected file read-only; that is the
    // read-only case, not this one.
    if conn.is_readonly(rusqlite::DatabaseName::Main)? {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            Some("the file is not writable".into()),
        ));
    }
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

/// Open an existing file for reading only. A file in WAL mode whose
/// directory is not writable cannot get its `-shm` index, so fall back to
/// `immutable=1` (no locks, no WAL: right for a file nobody can write).
pub(super) fn open_read_only(path: &Path) -> Result<Connection, rusqlite::Error> {
    use rusqlite::OpenFlags;
    let probe = |c: &Connection| c.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()));
    let plain = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| probe(&c).map(|_| c));
    let conn = match plain {
        Ok(c) => c,
        Err(_) => {
            let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            // Percent-encode what a URI gives meaning to.
            let mut uri = String::from("file:");
            for ch in abs.to_string_lossy().chars() {
                match ch {
                    '%' => uri.push_str("%25"),
                    '?' => uri.push_str("%3f"),
                    '#' => uri.push_str("%23"),
                    c => uri.push(c),
                }
            }
            uri.push_str("?immutable=1");
            let c = Connection::open_with_flags(
                &uri,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
            )?;
            probe(&c)?;
            c
        }
    };
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}

pub(super) fn has_column(conn: &Connection, column: &str) -> bool {
    conn.prepare(&format!("SELECT {column} FROM responses LIMIT 0"))
        .is_ok()
}

/// Copy every row of `src` that can still be read and verified into
/// `dst`, probing row ids one by one so a damaged page loses only the rows
/// on it. Returns (rows saved, row ids that could not be read).
pub(super) fn salvage(src: &Connection, dst: &mut Connection) -> (u64, u64) {
    // A truncated file (fewer pages than its header says) is refused
    // outright unless the schema is "writable"; this connection only reads,
    // and it lets SQLite use the pages that are there.
    let _ = src.pragma_update(None, "writable_schema", true);
    let unusable = if has_column(src, "unusable") {
        "unusable"
    } else {
        "0"
    };
    let Ok(mut stmt) = src.prepare(&format!(
        "SELECT key, model, request, text, prompt_tokens, completion_tokens, checksum, created, {unusable} \
         FROM responses WHERE rowid = ?1"
    )) else {
        return (0, 0);
    };
    // The highest row id bounds the probe; when even that cannot be read,
    // the page count bounds it (a page holds far fewer rows than 256).
    let known_max: Option<i64> = src
        .query_row("SELECT max(rowid) FROM responses", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .ok()
        .flatten();
    let max = known_max
        .or_else(|| {
            src.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
                .ok()
                .map(|n| n.saturating_mul(256))
        })
        .unwrap_or(0);
    let Ok(tx) = dst.transaction() else {
        return (0, 0);
    };
    let (mut saved, mut unreadable) = (0u64, 0u64);
    // Failed probes, to count as lost only below a row id known to exist
    // (beyond the last readable row, a failed probe may be no row at all).
    let mut failed_since_saved = 0u64;
    for id in 1..=max {
        type Row = (
            String,
            String,
            Option<String>,
            String,
            i64,
            i64,
            String,
            i64,
            i64,
        );
        let row: Result<Row, _> = stmt.query_row([id], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        });
        match row {
            Ok((key, model, request, text, p, c, sum, created, unusable)) => {
                let usage = Usage {
                    prompt_tokens: p.max(0) as u64,
                    completion_tokens: c.max(0) as u64,
                };
                if checksum(&key, &text, &usage) != sum {
                    unreadable += 1;
                    continue;
                }
                let ok = tx.execute(
                    "INSERT OR REPLACE INTO responses \
                     (key, model, request, text, prompt_tokens, completion_tokens, checksum, created, unusable) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![key, model, request, text, p, c, sum, created, unusable],
                );
                if ok.is_ok() {
                    saved += 1;
                    unreadable += failed_since_saved;
                    failed_since_saved = 0;
                }
            }
            Err(rusqlite::Error::QueryReturnedNoRows) => {}
            Err(_) => failed_since_saved += 1,
        }
    }
    if known_max.is_some() {
        unreadable += failed_since_saved;
    }
    if tx.commit().is_err() {
        return (0, unreadable);
    }
    (saved, unreadable)
}

/// Replace the damaged file at `path` by a fresh one holding what `src`
/// (the damaged file, if SQLite could open it at all) still yields; the
/// damaged file and its `-wal`/`-shm` are kept beside it. Returns the
/// warning to show.
pub(super) fn rebuild(
    path: &Path,
    src: Option<Connection>,
    cause: &str,
) -> Result<String, std::io::Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache.sqlite".into());
    let tmp = path.with_file_name(format!("{name}.rebuild-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let (saved, unreadable) = {
        let mut dst = Connection::open(&tmp).map_err(std::io::Error::other)?;
        dst.execute_batch(SCHEMA).map_err(std::io::Error::other)?;
        let src = src.or_else(|| {
            Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()
        });
        match src {
            Some(src) => salvage(&src, &mut dst),
            None => (0, 0),
        }
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut aside = path.with_file_name(format!("{name}.corrupt-{stamp}"));
    let mut n = 1;
    while aside.exists() {
        aside = path.with_file_name(format!("{name}.corrupt-{stamp}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let from = with_suffix(path, suffix);
        if from.exists() {
            std::fs::rename(&from, with_suffix(&aside, suffix))?;
        }
    }
    std::fs::rename(&tmp, path)?;
    Ok(format!(
        "cache {} is damaged ({cause}); moved it to {} and started a fresh {} with the {saved} \
         replies that could still be read{}",
        path.display(),
        aside.display(),
        path.display(),
        if unreadable > 0 {
            format!(" ({unreadable} unreadable rows: those requests will be paid again, once)")
        } else {
            String::new()
        }
    ))
}
