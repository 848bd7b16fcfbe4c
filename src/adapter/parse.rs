//! Parsing replies into typed output values, tolerantly and then strictly.
//!
//! Small models rarely follow the wire format exactly: measured with DSPy
//! 3.4.1 and the default embedded model, 200 of 200 SST-2 replies were
//! rejected because the model wrote `[[ ## sentiment## ]]` or wrapped the
//! reply in a code fence. So the *structure* is read tolerantly: markers
//! anywhere (not only at line start, not newline-separated: DSPy issues
//! #8379 and #8901), with missing or extra spaces and `#`s, any letter case;
//! code fences around the reply or a value; a missing `[[ ## completed ## ]]`;
//! the first occurrence of a field wins. The *values* are then converted and
//! validated strictly against the field types (enum values, numbers, bools,
//! lists, JSON with an optional schema): the essay's "code enforces" — a reply
//! either yields values of the declared types or a [`ParseError`] naming the
//! field, with the raw reply kept for evals and optimizers.
//!
//! Documented leniencies beyond DSPy: a single-output signature whose reply
//! has no output marker at all takes the text before any marker as that
//! field; a missing `optional[T]` output is `null`; numbers accept `$1,200`
//! and `4.0` (for int); enum values match case-insensitively once quotes and
//! punctuation around them are removed; a list may be a JSON array, a Python
//! list literal, one item per line (bullets and numbering dropped) or one
//! comma-separated line; in the JSON adapter, a single output may come back
//! as a bare value instead of an object.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::adapter::ParseError;
use crate::signature::{FieldType, Signature};

/// A bullet or number at the start of a list line: `- `, `* `, `• `, `1. `, `2) `.
static BULLET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+").expect("bullet regex is valid"));

/// Parse a chat-adapter reply (`[[ ## field ## ]]` sections) into one typed
/// value per output field.
pub fn parse_chat(sig: &Signature, reply: &str) -> Result<Map<String, Value>, ParseError> {
    let text = strip_fences(reply);
    let n = sig.outputs.len();
    let mut found: Vec<Option<&str>> = vec![None; n];
    let mut any_output_marker = false;
    let mut first_marker_start = None;

    let mut next = next_marker(text, 0);
    while let Some(m) = next {
        first_marker_start.get_or_insert(m.start);
        next = next_marker(text, m.end);
        let end = next.as_ref().map_or(text.len(), |x| x.start);
        if let Some(i) = output_index(sig, m.name) {
            any_output_marker = true;
            // First occurrence wins: later repeats (small models loop) are ignored.
            if found[i].is_none() {
                found[i] = Some(&text[m.end..end]);
            }
        }
    }

    if !any_output_marker && n == 1 {
        // No structure at all: the reply (before any stray marker such as
        // `[[ ## completed ## ]]`) is the single output's value.
        found[0] = Some(&text[..first_marker_start.unwrap_or(text.len())]);
    }

    let mut out = Map::with_capacity(n);
    for (f, raw) in sig.outputs.iter().zip(found) {
        let value = match raw {
            Some(raw) => convert(&f.ty, clean_value(raw, &f.ty)),
            None if matches!(f.ty, FieldType::Optional { .. }) => Ok(Value::Null),
            None => Err(format!("the reply has no `[[ ## {} ## ]]` section", f.name)),
        };
        match value {
            Ok(v) => {
                out.insert(f.name.clone(), v);
            }
            Err(message) => return Err(error(&f.name, message, reply)),
        }
    }
    Ok(out)
}

/// Parse a JSON-adapter reply: the first JSON object in the text (code
/// fences and surrounding prose allowed), then the same typed conversion.
pub fn parse_json(sig: &Signature, reply: &str) -> Result<Map<String, Value>, ParseError> {
    let text = strip_fences(reply);
    let obj = match extract_json(text, true) {
        Some(Value::Object(m)) => m,
        _ if sig.outputs.len() == 1 => {
            // A bare value for a single output (e.g. `positive`): documented leniency.
            let f = &sig.outputs[0];
            let mut out = Map::new();
            match convert(&f.ty, clean_value(text, &f.ty)) {
                Ok(v) => {
                    out.insert(f.name.clone(), v);
                    return Ok(out);
                }
                Err(m) => return Err(error(&f.name, m, reply)),
            }
        }
        _ => {
            return Err(error(
                "*",
                "the reply contains no JSON object".to_string(),
                reply,
            ))
        }
    };

    let mut out = Map::with_capacity(sig.outputs.len());
    for f in &sig.outputs {
        let v = obj.get(&f.name).or_else(|| {
            obj.iter()
                .find(|(k, _)| name_eq(k, &f.name))
                .map(|(_, v)| v)
        });
        let value = match v {
            Some(v) => convert_value(&f.ty, v),
            None if matches!(f.ty, FieldType::Optional { .. }) => Ok(Value::Null),
            // A single JSON output given as the object itself, not wrapped in its key.
            None if sig.outputs.len() == 1 && matches!(f.ty, FieldType::Json { .. }) => {
                convert_value(&f.ty, &Value::Object(obj.clone()))
            }
            None => Err(format!("the JSON object has no key `{}`", f.name)),
        };
        match value {
            Ok(v) => {
                out.insert(f.name.clone(), v);
            }
            Err(m) => return Err(error(&f.name, m, reply)),
        }
    }
    Ok(out)
}

fn error(field: &str, message: String, reply: &str) -> ParseError {
    ParseError {
        field: field.to_string(),
        message,
        raw: reply.to_string(),
    }
}

/// A section marker found in a reply: where it starts and ends, and the
/// field name inside it.
struct Marker<'a> {
    start: usize,
    end: usize,
    name: &'a str,
}

/// The next marker at or after byte `from`, written exactly
/// (`[[ ## name ## ]]`) or nearly (`[[ ## name## ]]`, `[[## name ##]]`,
/// `[ ## name ## ]`, `[[ # Name # ]]`): one or two `[`, one to four `#`, a
/// name of letters, digits, `_` and spaces, up to four `#`, one or two `]`.
/// Hand-written rather than a regex: it runs on every reply.
fn next_marker(text: &str, from: usize) -> Option<Marker<'_>> {
    let b = text.as_bytes();
    let mut i = from;
    while let Some(off) = text.get(i..)?.find('[') {
        let start = i + off;
        if let Some(m) = marker_at(text, b, start) {
            return Some(m);
        }
        i = start + 1;
    }
    None
}

fn marker_at<'a>(text: &'a str, b: &[u8], start: usize) -> Option<Marker<'a>> {
    let blank = |i: &mut usize| {
        while matches!(b.get(*i), Some(b' ' | b'\t')) {
            *i += 1;
        }
    };
    let hashes = |i: &mut usize| {
        let s = *i;
        while b.get(*i) == Some(&b'#') && *i - s < 4 {
            *i += 1;
        }
        *i - s
    };
    let mut i = start + 1;
    if b.get(i) == Some(&b'[') {
        i += 1;
    }
    blank(&mut i);
    if hashes(&mut i) == 0 {
        return None;
    }
    blank(&mut i);
    let name_start = i;
    if !b
        .get(i)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
    {
        return None;
    }
    while i - name_start < 81
        && b.get(i)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b' ')
    {
        i += 1;
    }
    let name = text[name_start..i].trim_end();
    blank(&mut i);
    hashes(&mut i);
    blank(&mut i);
    if b.get(i) != Some(&b']') {
        return None;
    }
    i += 1;
    if b.get(i) == Some(&b']') {
        i += 1;
    }
    Some(Marker {
        start,
        end: i,
        name,
    })
}

fn output_index(sig: &Signature, marker_name: &str) -> Option<usize> {
    sig.outputs
        .iter()
        .position(|f| f.name == marker_name)
        .or_else(|| {
            sig.outputs
                .iter()
                .position(|f| name_eq(marker_name, &f.name))
        })
}

/// A written name against a field name: ASCII case-insensitive, a space
/// standing for `_` (`Is Sure` is `is_sure`). No allocation.
fn name_eq(written: &str, field: &str) -> bool {
    let written = written.trim();
    written.len() == field.len()
        && written.bytes().zip(field.bytes()).all(|(a, f)| {
            let a = if a == b' ' { b'_' } else { a };
            a.eq_ignore_ascii_case(&f)
        })
}

/// Remove a code fence around the whole text (```` ```lang ... ``` ````).
fn strip_fences(s: &str) -> &str {
    let t = s.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = match rest.find('\n') {
        Some(i)
            if rest[..i]
                .trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-+.".contains(c)) =>
        {
            &rest[i + 1..]
        }
        _ => rest,
    };
    let rest = rest.trim_end();
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

/// The text of one section: trimmed, a stray `:` after the marker dropped,
/// stray fence lines dropped (a fence opened before the first marker closes
/// after the last value), and for typed fields a fence around the value.
fn clean_value<'a>(raw: &'a str, ty: &FieldType) -> &'a str {
    let mut v = raw.trim();
    v = v.strip_prefix(':').unwrap_or(v).trim();
    let fences = v.matches("```").count();
    if fences == 1 {
        v = v.strip_suffix("```").unwrap_or(v).trim();
        if let Some(rest) = v.strip_prefix("```") {
            v = rest.split_once('\n').map_or("", |(_, r)| r).trim();
        }
    } else if fences == 2 && !matches!(ty, FieldType::String) {
        v = strip_fences(v);
    }
    v
}

/// Convert a section's text to a value of `ty`, or say why it is not one.
pub fn convert(ty: &FieldType, text: &str) -> Result<Value, String> {
    match ty {
        FieldType::String => Ok(Value::String(text.to_string())),
        FieldType::Int => first_line_fallback(text, parse_int)
            .map(|i| Value::Number(i.into()))
            .ok_or_else(|| format!("expected an integer, got {}", quote(text))),
        FieldType::Float => first_line_fallback(text, parse_float)
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("expected a number, got {}", quote(text))),
        FieldType::Bool => first_line_fallback(text, parse_bool)
            .map(Value::Bool)
            .ok_or_else(|| format!("expected True or False, got {}", quote(text))),
        FieldType::Enum { values } => first_line_fallback(text, |t| match_enum(values, t))
            .map(|v| Value::String(v.to_string()))
            .ok_or_else(|| format!("expected one of {}, got {}", values.join(", "), quote(text))),
        FieldType::List { item } => parse_list(item, text),
        FieldType::Optional { inner } => {
            if is_none_text(text) {
                Ok(Value::Null)
            } else {
                convert(inner, text)
            }
        }
        FieldType::Json { schema } => {
            let v = extract_json(text, false)
                .ok_or_else(|| format!("expected a JSON object, got {}", quote(text)))?;
            check_json(schema.as_ref(), v)
        }
    }
}

/// Convert a value that is already JSON (from the JSON adapter, or a list
/// item) to `ty`; strings go through the text conversion.
pub fn convert_value(ty: &FieldType, v: &Value) -> Result<Value, String> {
    match (ty, v) {
        (FieldType::Optional { .. }, Value::Null) => Ok(Value::Null),
        (FieldType::Optional { inner }, v) => match v {
            Value::String(s) if is_none_text(s) => Ok(Value::Null),
            v => convert_value(inner, v),
        },
        (_, Value::String(s)) => convert(ty, s.trim()),
        (FieldType::String, Value::Number(n)) => Ok(Value::String(n.to_string())),
        (FieldType::String, Value::Bool(b)) => Ok(Value::String(b.to_string())),
        (FieldType::String, v @ (Value::Array(_) | Value::Object(_))) => {
            Ok(Value::String(v.to_string()))
        }
        (FieldType::Int, Value::Number(n)) => number_to_int(n)
            .map(|i| Value::Number(i.into()))
            .ok_or_else(|| format!("expected an integer, got {n}")),
        (FieldType::Float, Value::Number(n)) => Ok(Value::Number(n.clone())),
        (FieldType::Bool, Value::Bool(b)) => Ok(Value::Bool(*b)),
        (FieldType::Enum { values }, Value::Number(_) | Value::Bool(_)) => {
            match_enum(values, &v.to_string())
                .map(|s| Value::String(s.to_string()))
                .ok_or_else(|| format!("expected one of {}, got {v}", values.join(", ")))
        }
        (FieldType::List { item }, Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, x)| convert_value(item, x).map_err(|e| format!("item {}: {e}", i + 1)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        (FieldType::Json { schema }, v) => check_json(schema.as_ref(), v.clone()),
        (ty, v) => Err(format!("expected {}, got {}", ty.lmc_name(), short_json(v))),
    }
}

fn first_line_fallback<T>(text: &str, f: impl Fn(&str) -> Option<T>) -> Option<T> {
    f(text).or_else(|| {
        let first = text.lines().map(str::trim).find(|l| !l.is_empty())?;
        if first.len() == text.len() {
            None
        } else {
            f(first)
        }
    })
}

fn quote(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        format!("`{text}`")
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("`{cut}…`")
    }
}

fn short_json(v: &Value) -> String {
    quote(&v.to_string())
}

fn is_none_text(s: &str) -> bool {
    let t = s.trim().trim_matches(['`', '"', '\'']);
    t.is_empty() || t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("null")
}

/// Number text as models write it: quotes, currency signs, thousands
/// separators and a trailing full stop removed (`"$1,200."` → `1200`).
fn clean_number(text: &str) -> String {
    let t = text
        .trim()
        .trim_matches(['`', '"', '\'', '*'])
        .trim_end_matches(['.', ',', ';', '!'])
        .trim();
    t.chars()
        .filter(|c| !matches!(c, '$' | '€' | '£' | '¥' | ',' | '_' | ' '))
        .collect()
}

fn parse_int(text: &str) -> Option<i64> {
    let t = clean_number(text);
    if let Ok(i) = t.parse::<i64>() {
        return Some(i);
    }
    let f = t.parse::<f64>().ok()?;
    float_to_int(f)
}

fn float_to_int(f: f64) -> Option<i64> {
    // Only integral values: 4.0 is 4, 4.5 is not an integer.
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
}

fn number_to_int(n: &Number) -> Option<i64> {
    n.as_i64().or_else(|| float_to_int(n.as_f64()?))
}

fn parse_float(text: &str) -> Option<f64> {
    let t = clean_number(text);
    let f = t.parse::<f64>().ok()?;
    // "inf"/"nan" parse in Rust but are not numbers a field can hold.
    f.is_finite().then_some(f)
}

fn parse_bool(text: &str) -> Option<bool> {
    let t = text
        .trim()
        .trim_matches(|c: char| c.is_whitespace() || "`\"'*.,;:!".contains(c));
    match t.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// The declared enum value `text` stands for: exact, then with a
/// `Literal[...]` wrapper, quotes and punctuation removed, case-insensitive.
fn match_enum<'a>(values: &'a [String], text: &str) -> Option<&'a str> {
    let t = text.trim();
    if let Some(v) = values.iter().find(|v| v.as_str() == t) {
        return Some(v);
    }
    let mut t = t;
    for wrapper in ["Literal[", "str["] {
        if let Some(inner) = t.strip_prefix(wrapper).and_then(|r| r.strip_suffix(']')) {
            t = inner;
        }
    }
    let t = t.trim_matches(|c: char| c.is_whitespace() || "`\"'*.,;:!?()[]{}<>".contains(c));
    values
        .iter()
        .find(|v| v.as_str() == t)
        .or_else(|| values.iter().find(|v| v.to_lowercase() == t.to_lowercase()))
        .map(String::as_str)
}

/// A list from a JSON array, a Python list literal, or one item per line
/// (bullets and numbering removed; a single line splits on commas).
fn parse_list(item: &FieldType, text: &str) -> Result<Value, String> {
    let t = text.trim();
    if t.starts_with('[') || t.starts_with('(') {
        let parsed = serde_json::from_str::<Value>(t)
            .ok()
            .or_else(|| python_literal(t));
        match parsed {
            Some(Value::Array(items)) => {
                return items
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        convert_value(item, x).map_err(|e| format!("item {}: {e}", i + 1))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
            }
            _ if t.starts_with('[') && t.ends_with(']') => {
                return Err(format!("expected a list, got malformed {}", quote(t)))
            }
            _ => {}
        }
    }
    let lines: Vec<&str> = t.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let items: Vec<&str> = match lines.as_slice() {
        [] => Vec::new(),
        [one] if !BULLET.is_match(one) => one.split(',').map(str::trim).collect(),
        many => many
            .iter()
            .map(|l| {
                let start = BULLET.find(l).map_or(0, |m| m.end());
                l[start..].trim()
            })
            .collect(),
    };
    items
        .iter()
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| {
            let s = unquote(s);
            convert(item, s).map_err(|e| format!("item {}: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// The first JSON value (an object if `object_only`) in `text`: the whole
/// text, else from each `{`/`[` onwards (prose around it ignored), else a
/// Python literal (`{'a': True}`) at the same places.
pub fn extract_json(text: &str, object_only: bool) -> Option<Value> {
    let t = strip_fences(text);
    let wanted = |v: &Value| {
        if object_only {
            v.is_object()
        } else {
            v.is_object() || v.is_array()
        }
    };
    if let Ok(v) = serde_json::from_str::<Value>(t) {
        if wanted(&v) || !object_only {
            return Some(v);
        }
    }
    let starts: Vec<usize> = t
        .char_indices()
        .filter(|(_, c)| *c == '{' || (!object_only && *c == '['))
        .map(|(i, _)| i)
        .take(32)
        .collect();
    for &i in &starts {
        let mut stream = serde_json::Deserializer::from_str(&t[i..]).into_iter::<Value>();
        if let Some(Ok(v)) = stream.next() {
            if wanted(&v) {
                return Some(v);
            }
        }
    }
    for &i in &starts {
        if let Some(v) = python_literal_prefix(&t[i..]) {
            if wanted(&v) {
                return Some(v);
            }
        }
    }
    None
}

/// Check a JSON field's value: an object (or whatever the schema's `type`
/// says), satisfying the schema's types, required keys, enums and
/// `additionalProperties: false`.
fn check_json(schema: Option<&Value>, v: Value) -> Result<Value, String> {
    match schema {
        None if !v.is_object() => Err(format!("expected a JSON object, got {}", short_json(&v))),
        None => Ok(v),
        Some(s) => {
            validate(s, &v, "$")?;
            Ok(v)
        }
    }
}

fn validate(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return Ok(());
    };
    if let Some(ty) = s.get("type") {
        let ok = match ty {
            Value::String(t) => type_matches(t, v),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, v)),
            _ => true,
        };
        if !ok {
            return Err(format!("{path}: expected type {ty}, got {}", short_json(v)));
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum") {
        if !allowed.contains(v) {
            return Err(format!(
                "{path}: {} is not one of the allowed values",
                short_json(v)
            ));
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return Err(format!("{path}: expected {c}"));
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = s.get(key) {
            if !options.iter().any(|o| validate(o, v, path).is_ok()) {
                return Err(format!(
                    "{path}: {} matches none of the allowed shapes",
                    short_json(v)
                ));
            }
        }
    }
    if let Value::Object(m) = v {
        if let Some(Value::Array(req)) = s.get("required") {
            for k in req.iter().filter_map(Value::as_str) {
                if !m.contains_key(k) {
                    return Err(format!("{path}: missing required key `{k}`"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, x) in m {
            let sub = format!("{path}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(ps, x, &sub)?,
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(format!("{path}: unexpected key `{k}`"));
                    }
                    Some(extra @ Value::Object(_)) => validate(extra, x, &sub)?,
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (v, s.get("items")) {
        for (i, x) in items.iter().enumerate() {
            validate(item_schema, x, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.as_number().and_then(number_to_int).is_some(),
        _ => true,
    }
}

/// A whole Python literal (`['a', "b"]`, `(1, 2)`, `{'k': True}`) as JSON.
fn python_literal(text: &str) -> Option<Value> {
    let mut p = PyParser {
        s: text.as_bytes(),
        src: text,
        i: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.ws();
    (p.i == p.s.len()).then_some(v)
}

/// A Python literal at the start of `text`, trailing text ignored.
fn python_literal_prefix(text: &str) -> Option<Value> {
    PyParser {
        s: text.as_bytes(),
        src: text,
        i: 0,
        depth: 0,
    }
    .value()
}

/// A small recursive-descent reader of Python literals (what models write
/// when told "a valid Python list"), bounded in depth so hostile input
/// cannot overflow the stack.
struct PyParser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
    depth: usize,
}

impl PyParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        self.ws();
        if self.depth > 64 {
            return None;
        }
        match *self.s.get(self.i)? {
            b'[' => self.seq(b'[', b']'),
            b'(' => self.seq(b'(', b')'),
            b'{' => self.dict(),
            b'\'' | b'"' => self.string().map(Value::String),
            _ => self.atom(),
        }
    }

    fn seq(&mut self, open: u8, close: u8) -> Option<Value> {
        self.eat(open);
        self.depth += 1;
        let mut items = Vec::new();
        loop {
            if self.eat(close) {
                break;
            }
            items.push(self.value()?);
            if !self.eat(b',') {
                if !self.eat(close) {
                    return None;
                }
                break;
            }
        }
        self.depth -= 1;
        Some(Value::Array(items))
    }

    fn dict(&mut self) -> Option<Value> {
        self.eat(b'{');
        self.depth += 1;
        let mut m = Map::new();
        loop {
            if self.eat(b'}') {
                break;
            }
            self.ws();
            let key = match self.value()? {
                Value::String(s) => s,
                other => other.to_string(),
            };
            if !self.eat(b':') {
                return None;
            }
            let v = self.value()?;
            m.insert(key, v);
            if !self.eat(b',') {
                if !self.eat(b'}') {
                    return None;
                }
                break;
            }
        }
        self.depth -= 1;
        Some(Value::Object(m))
    }

    fn string(&mut self) -> Option<String> {
        let q = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        let mut run_start = self.i;
        while self.i < self.s.len() {
            let b = self.s[self.i];
            if b == q {
                out.push_str(self.src.get(run_start..self.i)?);
                self.i += 1;
                return Some(out);
            }
            if b == b'\\' {
                out.push_str(self.src.get(run_start..self.i)?);
                let e = *self.s.get(self.i + 1)?;
                out.push(match e {
                    b'n' => '\n',
                    b't' => '\t',
                    b'r' => '\r',
                    b'\\' => '\\',
                    b'\'' => '\'',
                    b'"' => '"',
                    _ => {
                        // Unknown escapes stay as written, as in Python.
                        out.push('\\');
                        run_start = self.i + 1;
                        self.i += 1;
                        continue;
                    }
                });
                self.i += 2;
                run_start = self.i;
                continue;
            }
            self.i += 1;
        }
        None
    }

    fn atom(&mut self) -> Option<Value> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || b"+-._".contains(&self.s[self.i]))
        {
            self.i += 1;
        }
        let word = self.src.get(start..self.i)?;
        match word {
            "True" | "true" => Some(Value::Bool(true)),
            "False" | "false" => Some(Value::Bool(false)),
            "None" | "null" => Some(Value::Null),
            w => {
                if let Ok(i) = w.parse::<i64>() {
                    Some(Value::Number(i.into()))
                } else {
                    w.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .and_then(Number::from_f64)
                        .map(Value::Number)
                }
            }
        }
    }
}
