//! The chat adapter: DSPy 3.4.1's ChatAdapter wire format, byte for byte.
//!
//! lmc promises prompts that are interchangeable with DSPy's (so artifacts
//! exported to DSPy, or imported from it, behave the same and DSPy users see
//! the same bytes), hence every string here reproduces what DSPy's
//! `ChatAdapter.format` produces: the system message (field lists, the
//! `[[ ## field ## ]]` structure with per-type notes, the objective line with
//! its trailing space and eight-space indent), demos as user/assistant turns
//! (incomplete demos first, with DSPy's wording), and the final user turn with
//! the "Respond with the corresponding output fields ..." line. The golden
//! tests in `tests/it/adapter.rs` pin this against messages rendered by DSPy.
//!
//! Field prefixes (DSPy's `prefix`, e.g. chain of thought's "Reasoning:
//! Let's think step by step in order to") are kept on fields and in
//! artifacts but, exactly as in DSPy's ChatAdapter, never rendered; field
//! descriptions are. Deliberate differences, where lmc has no DSPy
//! equivalent: a `json` field is named `dict[str, Any]` (DSPy would print
//! its pydantic class name) and its note shows the field's own JSON schema.
//!
//! It also owns the Python-flavoured value formatting DSPy applies to field
//! values (`str(True)` is `True`, lists are `json.dumps`ed, floats print as
//! Python's `repr`), which the JSON adapter shares.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::adapter::{Message, Role};
use crate::overlay::Demo;
use crate::signature::{Field, FieldType, Signature};

/// Text of the user turn of an incomplete demo (DSPy's wording).
pub const INCOMPLETE_DEMO_PREFIX: &str =
    "This is an example of the task, though some input or output fields are not supplied.";
/// Stands in for an output an incomplete demo lacks (DSPy's wording, trailing space included).
pub const MISSING_FIELD_MESSAGE: &str = "Not supplied for this particular example. ";

/// Render the messages for one call: system, demos (incomplete first), then
/// the final user turn. Inputs absent from `inputs` are left out, as in DSPy.
///
/// Every piece is written straight into one buffer per message (this runs
/// once per LM call; the benchmark budget outside HTTP is a few µs).
pub fn render(sig: &Signature, demos: &[Demo], inputs: &Map<String, Value>) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2 + 2 * demos.len());
    messages.push(Message::new(Role::System, system_message(sig)));
    push_demos(sig, demos, &mut messages, |s, sig, fields, missing| {
        write_assistant(s, sig, fields, missing)
    });
    let mut user = String::with_capacity(256);
    write_inputs(&mut user, sig, inputs, "");
    if !user.is_empty() {
        user.push_str("\n\n");
    }
    write_output_requirements(&mut user, sig);
    messages.push(Message::new(Role::User, user));
    messages
}

/// The system message: field lists, structure, objective.
pub fn system_message(sig: &Signature) -> String {
    let mut s = String::with_capacity(640);
    write_field_description(&mut s, sig);
    s.push('\n');
    s.push_str(STRUCTURE_HEADER);
    s.push_str("\n\n");
    write_structure_block(&mut s, &sig.inputs, false);
    s.push_str("\n\n");
    write_structure_block(&mut s, &sig.outputs, true);
    s.push_str("\n\n[[ ## completed ## ]]\n");
    write_task_description(&mut s, sig);
    s
}

pub const STRUCTURE_HEADER: &str =
    "All interactions will be structured in the following way, with the appropriate values filled in.";

/// "Your input fields are: ... Your output fields are: ..." (shared with the JSON adapter).
pub fn write_field_description(s: &mut String, sig: &Signature) {
    s.push_str("Your input fields are:\n");
    write_field_list(s, &sig.inputs);
    s.push_str("\nYour output fields are:\n");
    write_field_list(s, &sig.outputs);
}

/// One numbered line per field: ``1. `name` (type): description``. DSPy joins
/// the lines and strips the whole, which is why only the last line lacks
/// the space after the colon when there is no description.
fn write_field_list(s: &mut String, fields: &[Field]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let _ = write!(s, "{}. `{}` (", i + 1, f.name);
        write_annotation(s, &f.ty);
        s.push_str("): ");
        s.push_str(f.description.as_deref().unwrap_or(""));
    }
    trim_end_in_place(s);
}

/// `[[ ## f ## ]]\n{f}` sections, with the type note for outputs (stripped
/// at the end, as DSPy strips each joined block).
pub fn write_structure_block(s: &mut String, fields: &[Field], outputs: bool) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            s.push_str("\n\n");
        }
        s.push_str("[[ ## ");
        s.push_str(&f.name);
        s.push_str(" ## ]]\n");
        write_placeholder(s, f, outputs);
    }
    trim_end_in_place(s);
}

/// `{name}` plus, for typed outputs, DSPy's note on what the value must be.
pub fn write_placeholder(s: &mut String, f: &Field, output: bool) {
    s.push('{');
    s.push_str(&f.name);
    s.push('}');
    if output && f.ty != FieldType::String {
        s.push_str("        # note: the value you produce ");
        write_type_note(s, &f.ty);
    }
}

/// `write_placeholder` into a new string.
pub fn placeholder(f: &Field, output: bool) -> String {
    let mut s = String::new();
    write_placeholder(&mut s, f, output);
    s
}

/// DSPy's per-type note for an output field (`translate_field_type`);
/// nothing for `str`.
pub fn write_type_note(s: &mut String, ty: &FieldType) {
    match ty {
        FieldType::String => {}
        FieldType::Bool => s.push_str("must be True or False"),
        FieldType::Int => s.push_str("must be a single int value"),
        FieldType::Float => s.push_str("must be a single float value"),
        FieldType::Enum { values } => {
            s.push_str("must exactly match (no extra characters) one of: ");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    s.push_str("; ");
                }
                s.push_str(v);
            }
        }
        _ => {
            s.push_str("must adhere to the JSON schema: ");
            write_json(s, &dspy_schema(ty), None, 0, false);
        }
    }
}

/// "In adhering to this structure, your objective is: " then each line of the
/// dedented instruction on its own line indented by eight spaces.
pub fn write_task_description(s: &mut String, sig: &Signature) {
    s.push_str("In adhering to this structure, your objective is: ");
    let default;
    let instructions = match sig.instructions.as_deref() {
        Some(i) if !i.trim().is_empty() => i,
        _ => {
            default = sig.objective();
            &default
        }
    };
    let text = dedent(instructions);
    for line in python_splitlines(&text) {
        s.push_str("\n        ");
        s.push_str(line);
    }
}

/// The content of a demo's user turn: `prefix`, then each input present in
/// `values` (`format_user_message_content` without the main-request tail).
pub fn user_content(sig: &Signature, values: &Map<String, Value>, prefix: &str) -> String {
    let mut s = String::with_capacity(128);
    write_inputs(&mut s, sig, values, prefix);
    trim_end_in_place(&mut s);
    s
}

/// DSPy's `"\n\n".join([prefix, *sections]).strip()` minus the trailing
/// strip: whitespace at the end of the last value survives in the main
/// request (the output requirements follow it). The leading strip only
/// ever removes the separator after an empty prefix, so none is written.
pub fn write_inputs(s: &mut String, sig: &Signature, values: &Map<String, Value>, prefix: &str) {
    s.push_str(prefix);
    for f in &sig.inputs {
        if let Some(v) = values.get(&f.name) {
            if !s.is_empty() {
                s.push_str("\n\n");
            }
            s.push_str("[[ ## ");
            s.push_str(&f.name);
            s.push_str(" ## ]]\n");
            write_value(s, &f.ty, v);
        }
    }
}

/// Python's `str.rstrip()` in place (no reallocation).
pub fn trim_end_in_place(s: &mut String) {
    let len = s.trim_end().len();
    s.truncate(len);
}

/// The closing request naming the output fields in order.
pub fn write_output_requirements(s: &mut String, sig: &Signature) {
    s.push_str("Respond with the corresponding output fields, starting with the field ");
    for (i, f) in sig.outputs.iter().enumerate() {
        if i > 0 {
            s.push_str(", then ");
        }
        s.push_str("`[[ ## ");
        s.push_str(&f.name);
        s.push_str(" ## ]]`");
        push_type_info(s, &f.ty);
    }
    s.push_str(", and then ending with the marker for `[[ ## completed ## ]]`.");
}

/// " (must be formatted as a valid Python T)" for non-string types.
pub fn push_type_info(s: &mut String, ty: &FieldType) {
    if *ty != FieldType::String {
        s.push_str(" (must be formatted as a valid Python ");
        write_annotation(s, ty);
        s.push(')');
    }
}

/// An assistant turn: every output section (`missing` for absent ones) and
/// the completed marker.
fn write_assistant(s: &mut String, sig: &Signature, values: &Map<String, Value>, missing: &str) {
    for (i, f) in sig.outputs.iter().enumerate() {
        if i > 0 {
            s.push_str("\n\n");
        }
        s.push_str("[[ ## ");
        s.push_str(&f.name);
        s.push_str(" ## ]]\n");
        match values.get(&f.name) {
            Some(v) => write_value(s, &f.ty, v),
            None => s.push_str(missing),
        }
    }
    trim_end_in_place(s);
    s.push_str("\n\n[[ ## completed ## ]]\n");
}

/// DSPy's `format_demos`: complete demos (every field present and not null)
/// and incomplete ones (at least one input and one output present; others
/// are dropped); incomplete first, with the prefix and missing-field text.
/// `assistant` writes an assistant turn's content into the given buffer.
pub fn push_demos(
    sig: &Signature,
    demos: &[Demo],
    out: &mut Vec<Message>,
    assistant: impl Fn(&mut String, &Signature, &Map<String, Value>, &str),
) {
    let complete = |d: &Demo| {
        sig.inputs
            .iter()
            .chain(&sig.outputs)
            .all(|f| d.fields.get(&f.name).is_some_and(|v| !v.is_null()))
    };
    let usable = |d: &Demo| {
        sig.inputs.iter().any(|f| d.fields.contains_key(&f.name))
            && sig.outputs.iter().any(|f| d.fields.contains_key(&f.name))
    };
    let mut push = |d: &Demo, prefix: &str, missing: &str| {
        out.push(Message::new(
            Role::User,
            user_content(sig, &d.fields, prefix),
        ));
        let mut a = String::with_capacity(128);
        assistant(&mut a, sig, &d.fields, missing);
        out.push(Message::new(Role::Assistant, a));
    };
    for d in demos.iter().filter(|d| !complete(d) && usable(d)) {
        push(d, INCOMPLETE_DEMO_PREFIX, MISSING_FIELD_MESSAGE);
    }
    for d in demos.iter().filter(|d| complete(d)) {
        // DSPy passes this text for complete demos too; it never shows
        // because nothing is missing.
        push(
            d,
            "",
            "Not supplied for this conversation history message. ",
        );
    }
}

/// The type as DSPy prints annotations (`get_annotation_name`), including
/// its quoting of literal values that contain quotes.
pub fn annotation_name(ty: &FieldType) -> String {
    let mut s = String::new();
    write_annotation(&mut s, ty);
    s
}

fn write_annotation(s: &mut String, ty: &FieldType) {
    match ty {
        FieldType::String => s.push_str("str"),
        FieldType::Int => s.push_str("int"),
        FieldType::Float => s.push_str("float"),
        FieldType::Bool => s.push_str("bool"),
        FieldType::Enum { values } => {
            s.push_str("Literal[");
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                match (v.contains('\''), v.contains('"')) {
                    (true, false) => {
                        let _ = write!(s, "\"{v}\"");
                    }
                    (true, true) => {
                        let _ = write!(s, "'{}'", v.replace('\'', "\\'"));
                    }
                    _ => {
                        let _ = write!(s, "'{v}'");
                    }
                }
            }
            s.push(']');
        }
        FieldType::List { item } => {
            s.push_str("list[");
            write_annotation(s, item);
            s.push(']');
        }
        FieldType::Optional { inner } => {
            s.push_str("Union[");
            write_annotation(s, inner);
            s.push_str(", NoneType]");
        }
        FieldType::Json { .. } => s.push_str("dict[str, Any]"),
    }
}

/// The JSON schema DSPy prints in type notes: pydantic's schema for the
/// annotation, keys sorted with `type` first at every level.
pub fn dspy_schema(ty: &FieldType) -> Value {
    fn pydantic(ty: &FieldType) -> Value {
        use serde_json::json;
        match ty {
            FieldType::Enum { values } if values.len() == 1 => {
                json!({"const": values[0], "type": "string"})
            }
            FieldType::List { item } => json!({"type": "array", "items": pydantic(item)}),
            FieldType::Optional { inner } => json!({"anyOf": [pydantic(inner), {"type": "null"}]}),
            FieldType::Json { schema: None } => {
                json!({"type": "object", "additionalProperties": true})
            }
            other => other.json_schema(),
        }
    }
    type_first(pydantic(ty))
}

fn type_first(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| (a.0 != "type", &a.0).cmp(&(b.0 != "type", &b.0)));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, type_first(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(type_first).collect()),
        other => other,
    }
}

/// DSPy's `format_field_value`: a list given to a `str` field becomes a
/// numbered list of «blobs»; lists and objects are `json.dumps`ed; scalars
/// print as Python's `str()` (`True`, `None`, `1.0`).
pub fn format_value(ty: &FieldType, value: &Value) -> String {
    let mut s = String::new();
    write_value(&mut s, ty, value);
    s
}

fn write_value(s: &mut String, ty: &FieldType, value: &Value) {
    match value {
        Value::String(v) => s.push_str(v),
        Value::Array(items) if *ty == FieldType::String => s.push_str(&format_list_for_text(items)),
        Value::Array(_) | Value::Object(_) => write_json(s, value, None, 0, false),
        other => s.push_str(&python_str(other)),
    }
}

fn format_list_for_text(items: &[Value]) -> String {
    match items {
        [] => "N/A".into(),
        [one] => blob(&python_str(one)),
        _ => {
            let mut s = String::new();
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push('\n');
                }
                let _ = write!(s, "[{}] {}", i + 1, blob(&python_str(item)));
            }
            s
        }
    }
}

fn blob(text: &str) -> String {
    if !text.contains(['\n', '«', '»']) {
        return format!("«{text}»");
    }
    format!("«««\n    {}\n»»»", text.replace('\n', "\n    "))
}

/// Python's `str()` of a JSON-compatible value.
pub fn python_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => python_number(n),
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => python_json(v, None, false),
    }
}

fn python_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    python_float(n.as_f64().unwrap_or(0.0))
}

/// Python's `repr(float)`: shortest round-trip digits, `.0` on integral
/// values, scientific notation below 1e-4 and from 1e16 (`1e-05`, `1e+16`).
pub fn python_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // `{:e}` gives the shortest round-trip digits: "1.5e-5", "-2e16".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let mut s = f.to_string();
        if !s.contains('.') {
            s.push_str(".0");
        }
        s
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

/// Python's `json.dumps`: `", "`/`": "` separators (or `indent` with `","`),
/// floats as Python prints them, non-ASCII escaped when `ensure_ascii`.
pub fn python_json(v: &Value, indent: Option<usize>, ensure_ascii: bool) -> String {
    let mut out = String::new();
    write_json(&mut out, v, indent, 0, ensure_ascii);
    out
}

fn write_json(out: &mut String, v: &Value, indent: Option<usize>, depth: usize, ascii: bool) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * depth));
        }
    };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&python_number(n)),
        Value::String(s) => write_json_string(out, s, ascii),
        Value::Array(items) => {
            if items.is_empty() {
                out.push_str("[]");
                return;
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(if indent.is_some() { "," } else { ", " });
                }
                newline(out, depth + 1);
                write_json(out, item, indent, depth + 1, ascii);
            }
            newline(out, depth);
            out.push(']');
        }
        Value::Object(m) => {
            if m.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(if indent.is_some() { "," } else { ", " });
                }
                newline(out, depth + 1);
                write_json_string(out, k, ascii);
                out.push_str(": ");
                write_json(out, item, indent, depth + 1, ascii);
            }
            newline(out, depth);
            out.push('}');
        }
    }
}

fn write_json_string(out: &mut String, s: &str, ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && (c as u32) >= 0x7f) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `textwrap.dedent`: remove the longest common leading whitespace;
/// whitespace-only lines become empty.
fn dedent(text: &str) -> std::borrow::Cow<'_, str> {
    let margin = text
        .split('\n')
        .filter(|l| !l.trim().is_empty())
        .map(|l| &l[..l.len() - l.trim_start_matches([' ', '\t']).len()])
        .reduce(|a, b| {
            let common = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
            &a[..common]
        })
        .unwrap_or("");
    if margin.is_empty()
        && !text
            .split('\n')
            .any(|l| !l.is_empty() && l.trim().is_empty())
    {
        return std::borrow::Cow::Borrowed(text);
    }
    text.split('\n')
        .map(|l| {
            if l.trim().is_empty() {
                ""
            } else {
                l.strip_prefix(margin).unwrap_or(l)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into()
}

/// Python's `str.splitlines()` (the line breaks it recognises, no trailing empty line).
fn python_splitlines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\u{0b}'
                | '\u{0c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if is_break {
            lines.push(&text[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' {
                if let Some(&(j, '\n')) = chars.peek() {
                    chars.next();
                    end = j + 1;
                }
            }
            start = end;
        }
    }
    if start < text.len() {
        lines.push(&text[start..]);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_floats() {
        assert_eq!(python_float(1.0), "1.0");
        assert_eq!(python_float(0.9), "0.9");
        assert_eq!(python_float(1e-5), "1e-05");
        assert_eq!(python_float(1.5e16), "1.5e+16");
        assert_eq!(python_float(123456.789), "123456.789");
        assert_eq!(python_float(-0.0001), "-0.0001");
    }

    #[test]
    fn python_json_matches_json_dumps() {
        let v = json!({"a": [1, 2.0, "é"], "b": {}, "c": null, "d": true});
        assert_eq!(
            python_json(&v, None, false),
            r#"{"a": [1, 2.0, "é"], "b": {}, "c": null, "d": true}"#
        );
        assert_eq!(
            python_json(&v, Some(2), true),
            "{\n  \"a\": [\n    1,\n    2.0,\n    \"\\u00e9\"\n  ],\n  \"b\": {},\n  \"c\": null,\n  \"d\": true\n}"
        );
    }

    #[test]
    fn dedent_and_splitlines() {
        assert_eq!(dedent("  a\n    b\n  \n  c"), "a\n  b\n\nc");
        assert_eq!(python_splitlines("a\r\nb\n\nc\n"), vec!["a", "b", "", "c"]);
    }

    #[test]
    fn list_for_text_field() {
        let v = json!(["one", "two\nlines"]);
        assert_eq!(
            format_value(&FieldType::String, &v),
            "[1] «one»\n[2] «««\n    two\n    lines\n»»»"
        );
        assert_eq!(format_value(&FieldType::String, &json!([])), "N/A");
    }
}
