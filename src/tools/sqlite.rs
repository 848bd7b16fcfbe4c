//! The `sqlite` tool: list tables, describe tables and run queries against a
//! SQLite database that lmc can never modify.
//!
//! The essay's agent needed "DO NOT make any DML statements" and "limit your
//! query to at most {top_k} results" in its prompt; here both are code. The
//! read-only guarantee has four independent layers, any one of which stops a
//! write: the connection is opened with `SQLITE_OPEN_READ_ONLY` (the file
//! handle itself cannot write), `PRAGMA query_only=ON`, an authorizer that
//! allows only reads (SELECT, reading columns, functions, recursive CTEs and
//! a few introspection pragmas) and denies everything else including ATTACH,
//! and a check that the prepared statement is read-only before stepping it.
//! Rows are cut at `max_rows` while stepping (never materialised beyond it),
//! and a progress handler interrupts any statement running past
//! `timeout_ms`. Memory is capped by SQLite's own limits ([`cap_memory`]):
//! no string or blob over `max_value_bytes` (SQLITE_LIMIT_LENGTH, so
//! `randomblob(900000000)` fails at once instead of allocating), a small
//! page cache, and a process-wide hard heap limit; the text gathered from
//! rows is bounded too. Every failure is returned as an error observation.

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{arg_text, cfg_path, cfg_u64, normalize_args, ToolError, ToolOutcome};
use crate::program::ToolSpec;

/// Observations longer than this are cut (a SELECT of long text columns
/// must not overflow the model's context either).
const DEFAULT_MAX_CHARS: u64 = 4000;

/// Largest string or blob a query may build, by default (16 MiB).
pub(crate) const DEFAULT_MAX_VALUE_BYTES: u64 = 16 << 20;

/// Ceiling on all of SQLite's heap in this process (512 MiB). SQLite's heap
/// limit is process-wide; the response cache maps its file instead of
/// allocating, so this only stops runaway queries.
const HARD_HEAP_LIMIT: i64 = 512 << 20;

/// SQLite's own memory limits on a query connection: values up to
/// `max_value_bytes` (SQLITE_LIMIT_LENGTH), SQL text up to 1 MiB, an 8 MiB
/// page cache, temporary tables on disk, and the process-wide hard heap
/// limit (only ever lowered). Call before installing an authorizer, which
/// would refuse these pragmas.
pub(crate) fn cap_memory(conn: &Connection, max_value_bytes: u64) -> rusqlite::Result<()> {
    let len = max_value_bytes.clamp(1024, i32::MAX as u64) as i32;
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, len);
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 1 << 20);
    conn.pragma_update(None, "cache_size", -8192)?;
    conn.pragma_update(None, "temp_store", "FILE")?;
    let current: i64 = conn.query_row("PRAGMA hard_heap_limit", [], |r| r.get(0))?;
    if current == 0 || current > HARD_HEAP_LIMIT {
        conn.query_row(
            &format!("PRAGMA hard_heap_limit = {HARD_HEAP_LIMIT}"),
            [],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

/// A clear message for SQLite refusing a query on memory grounds, if that
/// is what `e` is.
pub(crate) fn memory_refusal(e: &rusqlite::Error, max_value_bytes: u64) -> Option<String> {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::TooBig) => Some(format!(
            "the query builds a value larger than the {max_value_bytes}-byte cap \
             (max_value_bytes)"
        )),
        Some(rusqlite::ErrorCode::OutOfMemory) => Some(format!(
            "the query needs more memory than SQLite may use here ({} MiB)",
            HARD_HEAP_LIMIT >> 20
        )),
        _ => None,
    }
}

pub struct SqliteTool {
    name: String,
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    max_rows: usize,
    timeout: Duration,
    max_chars: usize,
    max_value_bytes: u64,
}

/// Pragmas that only read schema information.
const READ_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "foreign_key_list",
    "table_list",
];

/// The authorizer: reads only. Called by SQLite while preparing statements.
fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive => Authorization::Allow,
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            // `query_only` may be read but never switched off.
            if READ_PRAGMAS.contains(&name.as_str())
                || (name == "query_only" && pragma_value.is_none())
            {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        _ => Authorization::Deny,
    }
}

impl SqliteTool {
    pub fn open(spec: &ToolSpec) -> Result<Self, ToolError> {
        let path = cfg_path(spec, "path")?;
        let max_rows = cfg_u64(spec, "max_rows", 50)?.max(1) as usize;
        let timeout = Duration::from_millis(cfg_u64(spec, "timeout_ms", 2000)?.max(1));
        let max_chars = cfg_u64(spec, "max_chars", DEFAULT_MAX_CHARS)?.max(100) as usize;
        let max_value_bytes = cfg_u64(spec, "max_value_bytes", DEFAULT_MAX_VALUE_BYTES)?.max(1024);
        let open_err = |message: String| ToolError::Open {
            tool: spec.name.clone(),
            path: path.clone(),
            message,
        };
        if !path.is_file() {
            return Err(open_err("no such file".into()));
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| open_err(e.to_string()))?;
        conn.pragma_update(None, "query_only", "ON")
            .map_err(|e| open_err(e.to_string()))?;
        // No ATTACH of other files, whatever the authorizer says.
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
        cap_memory(&conn, max_value_bytes).map_err(|e| open_err(e.to_string()))?;
        conn.authorizer(Some(authorize));
        // Fail now on a file that is not a database, not at the first call.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| open_err(e.to_string()))?;
        Ok(SqliteTool {
            name: spec.name.clone(),
            path,
            conn: Arc::new(Mutex::new(conn)),
            max_rows,
            timeout,
            max_chars,
            max_value_bytes,
        })
    }

    pub fn description(&self) -> String {
        format!(
            "A read-only SQLite database ({}). Operations: `list_tables` (no arguments), \
             `describe` (argument `table`: the CREATE statement of a table), `query` \
             (argument `sql`: one SELECT statement; at most {} rows are returned).",
            self.path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
            self.max_rows
        )
    }

    /// Run one operation. `args.operation` picks it; when absent it is
    /// inferred from the arguments given (`sql` → query, `table` →
    /// describe, nothing → list_tables), which is what small models send.
    pub async fn call(&self, args: &Value) -> ToolOutcome {
        let args = normalize_args(args, "sql");
        let op = arg_text(&args, "operation")
            .or_else(|| arg_text(&args, "op"))
            .unwrap_or_else(|| {
                if args.get("sql").is_some() || args.get("query").is_some() {
                    "query".into()
                } else if args.get("table").is_some() || args.get("tables").is_some() {
                    "describe".into()
                } else {
                    "list_tables".into()
                }
            });
        let conn = self.conn.clone();
        let max_rows = self.max_rows;
        let timeout = self.timeout;
        let max_value_bytes = self.max_value_bytes;
        let name = self.name.clone();
        let task = tokio::task::spawn_blocking(move || {
            let conn = match conn.lock() {
                Ok(c) => c,
                Err(p) => p.into_inner(),
            };
            match op.as_str() {
                "list_tables" => list_tables(&conn).map(|t| t.join(", ")),
                "describe" | "describe_table" | "schema" => describe(&conn, &args),
                "query" | "sql" | "execute" => {
                    let sql = arg_text(&args, "sql")
                        .or_else(|| arg_text(&args, "query"))
                        .unwrap_or_default();
                    query(&conn, &sql, max_rows, timeout, max_value_bytes)
                }
                other => Err(format!(
                    "unknown operation `{other}` for sqlite tool `{name}` \
                     (expected list_tables, describe or query)"
                )),
            }
        });
        let out = match task.await {
            Ok(Ok(text)) => ToolOutcome::ok(text),
            Ok(Err(msg)) => ToolOutcome::error(msg),
            Err(e) => ToolOutcome::error(format!("sqlite tool failed: {e}")),
        };
        ToolOutcome {
            observation: truncate_chars(&out.observation, self.max_chars),
            is_error: out.is_error,
        }
    }
}

pub fn args_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "operation": {"type": "string", "enum": ["list_tables", "describe", "query"]},
            "table": {"type": "string"},
            "sql": {"type": "string"}
        }
    })
}

fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max).collect();
    format!("{cut}\n... (output cut at {max} characters)")
}

fn list_tables(conn: &Connection) -> Result<Vec<String>, String> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(|e| e.to_string())?;
    rows.collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// Table names from `table`/`tables`: a string (possibly comma-separated or
/// quoted) or a list.
fn table_names(args: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["table", "tables", "table_name"] {
        match args.get(key) {
            Some(Value::String(s)) => out.extend(s.split(',').map(String::from)),
            Some(Value::Array(items)) => out.extend(items.iter().map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })),
            _ => {}
        }
    }
    out.iter()
        .map(|t| {
            t.trim()
                .trim_matches(|c| matches!(c, '"' | '\'' | '`' | '[' | ']'))
                .trim()
                .to_string()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

fn describe(conn: &Connection, args: &Value) -> Result<String, String> {
    let wanted = table_names(args);
    let all = list_tables(conn)?;
    if wanted.is_empty() {
        return Err(format!(
            "describe needs a `table` argument; tables: {}",
            all.join(", ")
        ));
    }
    let mut parts = Vec::new();
    let mut unknown = Vec::new();
    for t in &wanted {
        let Some(real) = all.iter().find(|a| a.eq_ignore_ascii_case(t)) else {
            unknown.push(t.clone());
            continue;
        };
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [real],
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())?;
        if !parts.contains(&sql) {
            parts.push(sql);
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "no such table: {}; tables: {}",
            unknown.join(", "),
            all.join(", ")
        ));
    }
    let mut text = parts.join("\n\n");
    if !unknown.is_empty() {
        text.push_str(&format!("\n\n(no such table: {})", unknown.join(", ")));
    }
    Ok(text)
}

fn cell(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => format!("<blob {} bytes>", b.len()),
    }
}

/// Run one read-only statement; rows as ` | `-separated lines under a header.
pub(crate) fn query(
    conn: &Connection,
    sql: &str,
    max_rows: usize,
    timeout: Duration,
    max_value_bytes: u64,
) -> Result<String, String> {
    let sql = strip_fences(sql);
    if sql.is_empty() {
        return Err("empty SQL: pass one SELECT statement as `sql`".into());
    }
    let deadline = Instant::now() + timeout;
    conn.progress_handler(1000, Some(move || Instant::now() > deadline));
    let result = run_query(conn, &sql, max_rows, timeout, max_value_bytes);
    conn.progress_handler(0, None::<fn() -> bool>);
    result
}

fn run_query(
    conn: &Connection,
    sql: &str,
    max_rows: usize,
    timeout: Duration,
    max_value_bytes: u64,
) -> Result<String, String> {
    let explain = |e: rusqlite::Error| -> String {
        if let Some(why) = memory_refusal(&e, max_value_bytes) {
            return format!("refused: {why}");
        }
        let msg = e.to_string();
        if msg.contains("not authorized") || msg.contains("readonly") || msg.contains("read-only") {
            format!(
                "refused: the database is read-only and only SELECT queries are allowed ({msg})"
            )
        } else if msg.contains("interrupted") {
            format!(
                "query interrupted: it ran longer than the {} ms time limit",
                timeout.as_millis()
            )
        } else {
            format!("SQL error: {msg}")
        }
    };
    // One statement only: SQLite would silently ignore anything after the
    // first, which hides what the model actually asked for.
    let mut batch = rusqlite::Batch::new(conn, sql);
    let mut stmt = match batch.next().map_err(explain)? {
        Some(s) => s,
        None => return Err("empty SQL: pass one SELECT statement as `sql`".into()),
    };
    match batch.next() {
        Ok(None) => {}
        Ok(Some(_)) | Err(_) => {
            return Err(
                "refused: pass exactly one SELECT statement (the database is read-only)".into(),
            )
        }
    }
    if !stmt.readonly() {
        return Err(
            "refused: the database is read-only and only SELECT queries are allowed".into(),
        );
    }
    let cols: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let ncols = cols.len();
    let mut rows = stmt.query([]).map_err(explain)?;
    let mut lines = vec![cols.join(" | ")];
    let mut n = 0usize;
    let mut truncated = false;
    // Rows of values near the cap would still add up; the observation is
    // cut to a few thousand characters anyway, so stop gathering early.
    let mut bytes = 0u64;
    let mut over_bytes = false;
    while let Some(row) = rows.next().map_err(explain)? {
        if n == max_rows {
            truncated = true;
            break;
        }
        if bytes > max_value_bytes {
            over_bytes = true;
            break;
        }
        let cells: Vec<String> = (0..ncols)
            .map(|i| row.get_ref(i).map(cell).unwrap_or_default())
            .collect();
        let line = cells.join(" | ");
        bytes += line.len() as u64;
        lines.push(line);
        n += 1;
    }
    if n == 0 {
        lines.push("(no rows)".into());
    }
    if truncated {
        lines.push(format!("(more rows: output limited to {max_rows} rows)"));
    }
    if over_bytes {
        lines.push(format!(
            "(more rows: output limited to {max_value_bytes} bytes)"
        ));
    }
    Ok(lines.join("\n"))
}

/// Models often wrap SQL in a code fence or end it with `;` and prose.
fn strip_fences(sql: &str) -> String {
    let mut s = sql.trim();
    if let Some(rest) = s.strip_prefix("```") {
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        s = rest.trim_end().trim_end_matches("```").trim();
    }
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_code_fences() {
        assert_eq!(strip_fences("```sql\nSELECT 1\n```"), "SELECT 1");
        assert_eq!(strip_fences("  SELECT 2 "), "SELECT 2");
    }

    #[test]
    fn table_names_accepts_lists_and_quotes() {
        let v = json!({"table": "`singer`, \"concert\""});
        assert_eq!(table_names(&v), vec!["singer", "concert"]);
        let v = json!({"tables": ["stadium"]});
        assert_eq!(table_names(&v), vec!["stadium"]);
    }
}
