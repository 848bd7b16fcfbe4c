//! Reading raw rows from CSV and JSONL bytes, with row numbers users can
//! find in the file and encoding errors reported per row (a single bad byte
//! must not hide which row it is in).

use serde_json::Value;

use super::{Cell, RawRow};

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn strip_bom(bytes: &[u8]) -> &[u8] {
    bytes.strip_prefix(BOM).unwrap_or(bytes)
}

/// CSV (or TSV, with `delimiter` b'\t') with a header row. Rows are
/// numbered from 1 after the header.
pub(crate) fn csv_rows(bytes: &[u8], delimiter: u8) -> Result<(Vec<String>, Vec<RawRow>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .delimiter(delimiter)
        // Ragged rows are reported per row below instead of aborting the read.
        .flexible(true)
        .from_reader(strip_bom(bytes));
    let header = reader
        .byte_headers()
        .map_err(|e| format!("cannot read the CSV header: {e}"))?
        .clone();
    if header.is_empty() || header.iter().all(|h| h.is_empty()) {
        return Err("the file is empty or has no CSV header row".into());
    }
    let header: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            std::str::from_utf8(h)
                .map(|s| s.trim().to_string())
                .map_err(|_| format!("header: column {} is not valid UTF-8", i + 1))
        })
        .collect::<Result<_, _>>()?;
    let mut seen = std::collections::HashSet::new();
    for h in &header {
        if !seen.insert(h) {
            return Err(format!("header: column `{h}` appears twice"));
        }
    }
    let mut rows = Vec::new();
    for (i, rec) in reader.byte_records().enumerate() {
        let row = i + 1;
        let rec = rec.map_err(|e| format!("row {row}: {e}"))?;
        let cells = if rec.len() != header.len() {
            Err(format!(
                "has {} fields, the header has {}",
                rec.len(),
                header.len()
            ))
        } else {
            header
                .iter()
                .zip(rec.iter())
                .map(|(col, bytes)| match std::str::from_utf8(bytes) {
                    Ok(s) => Ok((col.clone(), Cell::Text(s.to_string()))),
                    Err(e) => Err(format!(
                        "column `{col}`: invalid UTF-8 (byte {} of the value)",
                        e.valid_up_to() + 1
                    )),
                })
                .collect()
        };
        rows.push(RawRow { row, cells });
    }
    Ok((header, rows))
}

/// One JSON object per line; blank lines are skipped but still counted, so
/// row numbers are line numbers.
pub(crate) fn jsonl_rows(bytes: &[u8]) -> Vec<RawRow> {
    let mut rows = Vec::new();
    for (i, line) in strip_bom(bytes).split(|b| *b == b'\n').enumerate() {
        let row = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let cells = match std::str::from_utf8(line) {
            Err(e) => Err(format!(
                "invalid UTF-8 (byte {} of the line)",
                e.valid_up_to() + 1
            )),
            Ok(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(map)) => {
                    Ok(map.into_iter().map(|(k, v)| (k, Cell::Json(v))).collect())
                }
                Ok(other) => Err(format!(
                    "expected a JSON object, got {}",
                    super::value::json_kind(&other)
                )),
                Err(e) => Err(format!("invalid JSON: {e}")),
            },
        };
        rows.push(RawRow { row, cells });
    }
    rows
}
