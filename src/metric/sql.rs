//! `sql_execution`: run the gold and the predicted SQL on the example's
//! SQLite database and compare what they return (Spider's execution match).
//!
//! Comparing results rather than SQL text credits every correct way to
//! write a query. The database is opened read-only at the connection level
//! (plus `query_only` and an authorizer that refuses ATTACH), so a predicted
//! `DROP TABLE` fails instead of damaging the dataset; a progress handler
//! stops queries running past the time limit, and SQLite's memory limits
//! (the SQL tool's `cap_memory`: values up to `max_value_bytes`, a heap
//! ceiling) plus a bound on the result's total size stop a query like
//! `randomblob(900000000)` as a failure, not an out-of-memory abort.
//! Results compare as multisets
//! of rows, or as sequences when the gold query has ORDER BY (then order is
//! part of the answer). A failing predicted query scores 0 with the SQLite
//! error as feedback; a failing gold query is an error of the example.

use regex::Regex;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{short, value_text, MetricError, Score};
use crate::data::Example;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SqlOptions {
    /// A directory of databases: `<dir>/<db_id>/<db_id>.sqlite` (Spider's
    /// layout) or `<dir>/<db_id>.sqlite`.
    #[serde(default)]
    databases: Option<PathBuf>,
    /// One database for every example.
    #[serde(default)]
    database: Option<PathBuf>,
    /// The example column naming the database (extra or input).
    #[serde(default = "default_db_field")]
    db_field: String,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    /// Results longer than this are not compared (predicted: score 0).
    #[serde(default = "default_max_rows")]
    max_rows: usize,
    /// Largest string or blob a query may build (bytes); a result is also
    /// refused past 4x this in total.
    #[serde(default = "default_max_value_bytes")]
    max_value_bytes: u64,
}

fn default_max_value_bytes() -> u64 {
    crate::tools::sqlite::DEFAULT_MAX_VALUE_BYTES
}

fn default_db_field() -> String {
    "db_id".into()
}
fn default_timeout() -> u64 {
    5000
}
fn default_max_rows() -> usize {
    100_000
}

#[derive(Debug, Clone)]
pub(crate) struct SqlExecution {
    databases: Option<PathBuf>,
    database: Option<PathBuf>,
    db_field: String,
    timeout: Duration,
    max_rows: usize,
    max_value_bytes: u64,
}

impl SqlExecution {
    pub fn new(o: SqlOptions, base_dir: &Path) -> Result<Self, MetricError> {
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base_dir.join(p) };
        let databases = o.databases.map(resolve);
        let database = o.database.map(resolve);
        match (&databases, &database) {
            (None, None) => {
                return Err(MetricError::Spec(
                    "sql_execution: give `databases` (a directory of <db_id>/<db_id>.sqlite, with a `db_id` column in the dataset) or `database` (one SQLite file)".into(),
                ))
            }
            (Some(d), _) if !d.is_dir() => {
                return Err(MetricError::Spec(format!(
                    "sql_execution: `databases` directory {} does not exist",
                    d.display()
                )))
            }
            (_, Some(f)) if !f.is_file() => {
                return Err(MetricError::Spec(format!(
                    "sql_execution: `database` file {} does not exist",
                    f.display()
                )))
            }
            _ => {}
        }
        Ok(SqlExecution {
            databases,
            database,
            db_field: o.db_field,
            timeout: Duration::from_millis(o.timeout_ms.max(1)),
            max_rows: o.max_rows.max(1),
            max_value_bytes: o.max_value_bytes.max(1024),
        })
    }

    fn db_path(&self, ex: &Example) -> Result<PathBuf, MetricError> {
        let id = ex
            .extra
            .get(&self.db_field)
            .or_else(|| ex.inputs.get(&self.db_field))
            .map(value_text)
            .filter(|s| !s.trim().is_empty());
        match (id, &self.databases, &self.database) {
            (Some(id), Some(dir), _) => {
                if id.contains(['/', '\\']) || id.contains("..") {
                    return Err(MetricError::Score(format!(
                        "row {}: `{}` value `{id}` is not a database name",
                        ex.row, self.db_field
                    )));
                }
                let nested = dir.join(&id).join(format!("{id}.sqlite"));
                let flat = dir.join(format!("{id}.sqlite"));
                if nested.is_file() {
                    Ok(nested)
                } else if flat.is_file() {
                    Ok(flat)
                } else {
                    Err(MetricError::Score(format!(
                        "row {}: no database for `{id}` (looked for {} and {})",
                        ex.row,
                        nested.display(),
                        flat.display()
                    )))
                }
            }
            (_, _, Some(file)) => Ok(file.clone()),
            (None, Some(_), None) => Err(MetricError::Score(format!(
                "row {}: no `{}` column naming the database",
                ex.row, self.db_field
            ))),
            (_, None, None) => Err(MetricError::Spec("sql_execution: no database".into())),
        }
    }

    pub async fn score(
        &self,
        ex: &Example,
        pred: &Value,
        gold: &Value,
    ) -> Result<Score, MetricError> {
        let path = self.db_path(ex)?;
        let gold_sql = value_text(gold);
        let pred_sql = strip_fences(&value_text(pred));
        let this = self.clone();
        let row = ex.row;
        tokio::task::spawn_blocking(move || this.compare(&path, &gold_sql, &pred_sql, row))
            .await
            .map_err(|e| MetricError::Score(format!("sql_execution: worker failed: {e}")))?
    }

    fn compare(
        &self,
        path: &Path,
        gold: &str,
        pred: &str,
        row: usize,
    ) -> Result<Score, MetricError> {
        let conn = open_read_only(path, self.max_value_bytes)
            .map_err(|e| MetricError::Score(format!("cannot open {}: {e}", path.display())))?;
        let gold_rows = self.run(&conn, gold).map_err(|e| {
            MetricError::Score(format!(
                "row {row}: the gold SQL failed on {}: {e}",
                path.display()
            ))
        })?;
        if pred.trim().is_empty() {
            return Ok(Score::new(0.0, Some("the predicted SQL is empty".into())));
        }
        let pred_rows = match self.run(&conn, pred) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Score::new(
                    0.0,
                    Some(format!("the predicted SQL failed: {e}")),
                ));
            }
        };
        let ordered = has_order_by(gold);
        let same = if ordered {
            gold_rows == pred_rows
        } else {
            let mut g = gold_rows.clone();
            let mut p = pred_rows.clone();
            g.sort();
            p.sort();
            g == p
        };
        Ok(Score::pass_fail(same, || {
            let width = |rows: &[Vec<String>]| rows.first().map_or(0, Vec::len);
            let mut m = format!(
                "the predicted SQL returns a different result{}: expected {} row(s) of {} column(s), got {} row(s) of {} column(s)",
                if ordered { " (order matters: the gold query has ORDER BY)" } else { "" },
                gold_rows.len(),
                width(&gold_rows),
                pred_rows.len(),
                width(&pred_rows)
            );
            m.push_str(&format!(
                "; expected first rows {}, got {}",
                preview(&gold_rows),
                preview(&pred_rows)
            ));
            m
        }))
    }

    /// Run one statement, returning rows of canonical cell texts.
    fn run(&self, conn: &Connection, sql: &str) -> Result<Vec<Vec<String>>, String> {
        let deadline = Instant::now() + self.timeout;
        conn.progress_handler(1000, Some(move || Instant::now() > deadline));
        let result = (|| {
            // One statement only, like Python's sqlite3.execute: a trailing
            // statement must not run unseen (or be silently ignored).
            let mut batch = rusqlite::Batch::new(conn, sql);
            let mut stmt = match batch.next() {
                Ok(Some(stmt)) => stmt,
                Ok(None) => return Err("no SQL statement".to_string()),
                Err(e) => return Err(e.to_string()),
            };
            if !matches!(batch.next(), Ok(None)) {
                return Err("only one SQL statement may run".to_string());
            }
            if !stmt.readonly() {
                return Err(
                    "only read-only statements may run (the database is opened read-only)"
                        .to_string(),
                );
            }
            let cols = stmt.column_count();
            let explain = |e: rusqlite::Error| {
                crate::tools::sqlite::memory_refusal(&e, self.max_value_bytes)
                    .unwrap_or_else(|| e.to_string())
            };
            let mut rows = stmt.query([]).map_err(explain)?;
            let mut out = Vec::new();
            let budget = self.max_value_bytes.saturating_mul(4);
            let mut bytes = 0u64;
            while let Some(r) = rows.next().map_err(explain)? {
                if out.len() >= self.max_rows {
                    return Err(format!("more than {} rows", self.max_rows));
                }
                let mut cells = Vec::with_capacity(cols);
                for i in 0..cols {
                    let c = cell(r.get_ref(i).map_err(explain)?);
                    bytes += c.len() as u64;
                    cells.push(c);
                }
                if bytes > budget {
                    return Err(format!(
                        "the result is larger than {budget} bytes (4 x max_value_bytes)"
                    ));
                }
                out.push(cells);
            }
            Ok(out)
        })();
        conn.progress_handler(0, None::<fn() -> bool>);
        result.map_err(|e| {
            if e.contains("interrupted") {
                format!("exceeded the {} ms time limit", self.timeout.as_millis())
            } else {
                e
            }
        })
    }
}

fn open_read_only(path: &Path, max_value_bytes: u64) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "query_only", true)?;
    crate::tools::sqlite::cap_memory(&conn, max_value_bytes)?;
    conn.authorizer(Some(authorize));
    Ok(conn)
}

/// Reads only: read-only flags do not stop ATTACH from opening another
/// file, and `query_only` could be switched off by a PRAGMA, so the
/// authorizer refuses both (and any write) while statements are prepared.
fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select
        | AuthAction::Read { .. }
        | AuthAction::Function { .. }
        | AuthAction::Recursive => Authorization::Allow,
        AuthAction::Pragma { pragma_value, .. } if pragma_value.is_none() => Authorization::Allow,
        _ => Authorization::Deny,
    }
}

/// A cell's canonical text: integral reals equal integers (`AVG` of whole
/// numbers vs an integer column), other reals rounded to 1e-6; text is
/// tagged so the string `'1'` does not equal the number 1.
fn cell(v: ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 1e15 => (f as i64).to_string(),
        ValueRef::Real(f) => format!("{}", (f * 1e6).round() / 1e6),
        ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("x'{}'", hex::encode(b)),
    }
}

fn preview(rows: &[Vec<String>]) -> String {
    let shown: Vec<String> = rows
        .iter()
        .take(3)
        .map(|r| format!("({})", r.join(", ")))
        .collect();
    short(&format!("[{}]", shown.join(", ")), 300)
}

fn has_order_by(sql: &str) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)\border\s+by\b").expect("static regex"))
        .is_match(sql)
}

/// Models often wrap SQL in a Markdown fence or end it with `;`.
pub(crate) fn strip_fences(s: &str) -> String {
    let mut t = s.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest
            .strip_prefix("sqlite")
            .or_else(|| rest.strip_prefix("sql"))
            .or_else(|| rest.strip_prefix("SQL"))
            .unwrap_or(rest);
        t = rest.trim();
        t = t.strip_suffix("```").unwrap_or(t).trim();
    }
    t.trim_end_matches(';').trim().to_string()
}
