//! Converting dataset cells to values of a program field's type.
//!
//! CSV cells are text, so list and JSON fields are parsed from JSON text
//! there; JSONL values are already JSON and are checked (and coerced where
//! the meaning is unambiguous, like `"18"` for an int). On the expected side
//! a JSON array for a non-list field is a list of acceptable answers, the
//! way QA datasets give several gold answers.

use serde_json::{Number, Value};

use super::Cell;
use crate::signature::FieldType;

/// A cell as a plain value, for columns that are no field (extra).
pub(crate) fn untyped(cell: Cell) -> Value {
    match cell {
        Cell::Text(s) => Value::String(s),
        Cell::Json(v) => v,
    }
}

pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `"text"` quoted, shortened for messages.
fn quoted(s: &str) -> String {
    let short: String = s.chars().take(60).collect();
    let ell = if short.len() < s.len() { "…" } else { "" };
    format!("{}{ell}", serde_json::to_string(&short).unwrap_or_default())
}

/// Convert one cell to `ty`. `expected` allows lists of acceptable answers.
pub(crate) fn convert(ty: &FieldType, cell: Cell, expected: bool) -> Result<Value, String> {
    match cell {
        Cell::Json(v) => from_json(ty, v, expected),
        Cell::Text(s) => from_text(ty, &s),
    }
}

fn from_text(ty: &FieldType, s: &str) -> Result<Value, String> {
    let t = s.trim();
    match ty {
        FieldType::Optional { .. } if t.is_empty() => Ok(Value::Null),
        FieldType::Optional { inner } => from_text(inner, s),
        FieldType::String => Ok(Value::String(s.to_string())),
        FieldType::Int => parse_int(t).map(Value::from),
        FieldType::Float => parse_float(t),
        FieldType::Bool => parse_bool(t).map(Value::Bool),
        FieldType::Enum { values } => match_enum(values, t),
        FieldType::List { .. } | FieldType::Json { .. } => {
            if t.is_empty() {
                return Err(format!("empty value for a {} field", ty.lmc_name()));
            }
            let v: Value = serde_json::from_str(t).map_err(|e| {
                format!(
                    "{} is not valid JSON for a {} field: {e}",
                    quoted(t),
                    ty.lmc_name()
                )
            })?;
            from_json(ty, v, false)
        }
    }
}

fn from_json(ty: &FieldType, v: Value, expected: bool) -> Result<Value, String> {
    let wrong = |v: &Value| format!("expected {}, got {}", ty.lmc_name(), json_kind(v));
    match (ty, v) {
        (FieldType::Optional { .. }, Value::Null) => Ok(Value::Null),
        (FieldType::Optional { inner }, v) => from_json(inner, v, expected),
        (_, Value::Null) => Err(format!("null is not a {}", ty.lmc_name())),
        (FieldType::List { item }, Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, x)| from_json(item, x, false).map_err(|m| format!("item {}: {m}", i + 1)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (FieldType::List { .. }, Value::String(s)) => from_text(ty, &s),
        (FieldType::Json { .. }, Value::String(s)) => {
            // JSON given as text inside JSONL: parse it when it is an object
            // or array, keep it as a string otherwise.
            let t = s.trim_start();
            if t.starts_with('{') || t.starts_with('[') {
                from_text(ty, &s)
            } else {
                Ok(Value::String(s))
            }
        }
        (FieldType::Json { .. }, v) => Ok(v),
        (_, Value::Array(items)) if expected => {
            if items.is_empty() {
                return Err("an empty list of acceptable answers".into());
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, x)| from_json(ty, x, false).map_err(|m| format!("answer {}: {m}", i + 1)))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        (FieldType::String, Value::String(s)) => Ok(Value::String(s)),
        (FieldType::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
        (FieldType::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
        (FieldType::Int, Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Value::from(i)),
            None => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::from(f as i64)),
                _ => Err(format!("{n} is not an integer")),
            },
        },
        (FieldType::Int, Value::String(s)) => parse_int(s.trim()).map(Value::from),
        (FieldType::Float, Value::Number(n)) => Ok(Value::Number(n)),
        (FieldType::Float, Value::String(s)) => parse_float(s.trim()),
        (FieldType::Bool, Value::Bool(b)) => Ok(Value::Bool(b)),
        (FieldType::Bool, Value::String(s)) => parse_bool(s.trim()).map(Value::Bool),
        (FieldType::Bool, Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(Value::Bool(false)),
            Some(1) => Ok(Value::Bool(true)),
            _ => Err(format!("{n} is not a boolean (use true/false or 1/0)")),
        },
        (FieldType::Enum { values }, Value::String(s)) => match_enum(values, s.trim()),
        (FieldType::Enum { values }, Value::Number(n)) => match_enum(values, &n.to_string()),
        (FieldType::Enum { values }, Value::Bool(b)) => match_enum(values, &b.to_string()),
        (_, v) => Err(wrong(&v)),
    }
}

/// An integer, allowing `1,234` thousands separators (common in gold answers).
fn parse_int(t: &str) -> Result<i64, String> {
    if let Ok(i) = t.parse::<i64>() {
        return Ok(i);
    }
    let grouped = regex_lite_grouped(t);
    if let Some(digits) = grouped {
        if let Ok(i) = digits.parse::<i64>() {
            return Ok(i);
        }
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            return Ok(f as i64);
        }
    }
    if t.is_empty() {
        Err("empty value for an int field".into())
    } else {
        Err(format!("{} is not an integer", quoted(t)))
    }
}

/// `1,234,567` → `1234567`; anything else → None.
fn regex_lite_grouped(t: &str) -> Option<String> {
    let body = t.strip_prefix('-').unwrap_or(t);
    let groups: Vec<&str> = body.split(',').collect();
    let ok = groups.len() > 1
        && (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_digit()));
    ok.then(|| t.replace(',', ""))
}

fn parse_float(t: &str) -> Result<Value, String> {
    let f: f64 = match t.parse() {
        Ok(f) => f,
        Err(_) => match regex_lite_grouped(t) {
            Some(d) => d
                .parse()
                .map_err(|_| format!("{} is not a number", quoted(t)))?,
            None if t.is_empty() => return Err("empty value for a float field".into()),
            None => return Err(format!("{} is not a number", quoted(t))),
        },
    };
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| format!("{} is not a finite number", quoted(t)))
}

fn parse_bool(t: &str) -> Result<bool, String> {
    match t.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "t" => Ok(true),
        "false" | "0" | "no" | "n" | "f" => Ok(false),
        "" => Err("empty value for a bool field".into()),
        _ => Err(format!(
            "{} is not a boolean (use true/false, 1/0 or yes/no)",
            quoted(t)
        )),
    }
}

/// Exact match first, then case-insensitive (normalised to the declared
/// spelling, so `Positive` in a file scores against `positive` outputs).
fn match_enum(values: &[String], t: &str) -> Result<Value, String> {
    if let Some(v) = values.iter().find(|v| v.as_str() == t) {
        return Ok(Value::String(v.clone()));
    }
    if let Some(v) = values.iter().find(|v| v.eq_ignore_ascii_case(t)) {
        return Ok(Value::String(v.clone()));
    }
    Err(format!("{} is not one of {}", quoted(t), values.join(", ")))
}
