//! The JSON adapter: DSPy's JSONAdapter wire format, plus the
//! `response_format` that asks an OpenAI-compatible server to enforce it.
//!
//! The system message shares the field lists and objective line with the
//! chat adapter but describes the reply as one JSON object (the template is
//! `json.dumps(..., indent=2)` of `{"field": "{field}  # note ..."}`, as in
//! DSPy); demo replies are indented JSON objects. Servers that enforce JSON
//! schemas (OpenAI, vLLM, SGLang, llama.cpp's server) get a strict
//! `json_schema` response format with one property per output field, so the
//! reply's shape is guaranteed rather than hoped for.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::adapter::chat::{
    placeholder, push_demos, push_type_info, python_json, trim_end_in_place,
    write_field_description, write_inputs, write_structure_block, write_task_description,
    STRUCTURE_HEADER,
};
use crate::adapter::{Message, Role};
use crate::overlay::Demo;
use crate::signature::{FieldType, Signature};

/// Render system, demos (incomplete first) and the final user turn.
pub fn render(sig: &Signature, demos: &[Demo], inputs: &Map<String, Value>) -> Vec<Message> {
    let mut messages = Vec::with_capacity(2 + 2 * demos.len());
    messages.push(Message::new(Role::System, system_message(sig)));
    push_demos(sig, demos, &mut messages, write_assistant);
    let mut user = String::with_capacity(256);
    write_inputs(&mut user, sig, inputs, "");
    if !user.is_empty() {
        user.push_str("\n\n");
    }
    user.push_str(&output_requirements(sig));
    messages.push(Message::new(Role::User, user));
    messages
}

/// The system message: field lists, the input sections and the JSON
/// template of the reply, the objective.
pub fn system_message(sig: &Signature) -> String {
    let template: Map<String, Value> = sig
        .outputs
        .iter()
        .map(|f| (f.name.clone(), Value::String(placeholder(f, true))))
        .collect();
    let mut s = String::with_capacity(768);
    write_field_description(&mut s, sig);
    s.push('\n');
    s.push_str(STRUCTURE_HEADER);
    s.push_str("\n\nInputs will have the following structure:\n\n");
    write_structure_block(&mut s, &sig.inputs, false);
    s.push_str("\n\nOutputs will be a JSON object with the following fields.\n\n");
    s.push_str(&python_json(&Value::Object(template), Some(2), true));
    s.push('\n');
    write_task_description(&mut s, sig);
    s
}

/// "Respond with a JSON object in the following order of fields: ...".
pub fn output_requirements(sig: &Signature) -> String {
    let mut s = String::from("Respond with a JSON object in the following order of fields: ");
    for (i, f) in sig.outputs.iter().enumerate() {
        if i > 0 {
            s.push_str(", then ");
        }
        let _ = write!(s, "`{}`", f.name);
        push_type_info(&mut s, &f.ty);
    }
    s.push('.');
    s
}

/// A demo reply: the outputs as an indented JSON object (`json.dumps(indent=2)`).
fn write_assistant(s: &mut String, sig: &Signature, values: &Map<String, Value>, missing: &str) {
    let obj: Map<String, Value> = sig
        .outputs
        .iter()
        .map(|f| {
            let v = values
                .get(&f.name)
                .cloned()
                .unwrap_or_else(|| Value::String(missing.to_string()));
            (f.name.clone(), v)
        })
        .collect();
    s.push_str(&python_json(&Value::Object(obj), Some(2), true));
    trim_end_in_place(s);
}

/// OpenAI's structured-output request: a JSON schema with exactly the
/// output fields, all required (optional ones accept `null`). `strict` is
/// true unless a `json` field's schema is open (no schema, or an object
/// without `additionalProperties: false` and every property required):
/// OpenAI rejects such schemas in strict mode, while vLLM, SGLang and
/// llama.cpp's server still enforce them non-strictly.
pub fn response_format(sig: &Signature) -> Value {
    let properties: Map<String, Value> = sig
        .outputs
        .iter()
        .map(|f| (f.name.clone(), f.ty.json_schema()))
        .collect();
    let required: Vec<&str> = sig.outputs.iter().map(|f| f.name.as_str()).collect();
    json!({
        "type": "json_schema",
        "json_schema": {
            "name": schema_name(sig),
            "strict": sig.outputs.iter().all(|f| strict_ok(&f.ty)),
            "schema": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            }
        }
    })
}

fn strict_ok(ty: &FieldType) -> bool {
    match ty {
        FieldType::List { item } => strict_ok(item),
        FieldType::Optional { inner } => strict_ok(inner),
        FieldType::Json { schema: None } => false,
        FieldType::Json { schema: Some(s) } => closed(s),
        _ => true,
    }
}

/// Whether every object in `schema` is closed the way strict mode demands.
fn closed(schema: &Value) -> bool {
    let Some(s) = schema.as_object() else {
        return true;
    };
    let subs_closed = ["items", "additionalProperties"]
        .iter()
        .filter_map(|k| s.get(*k))
        .filter(|v| v.is_object())
        .all(closed)
        && ["anyOf", "oneOf", "allOf"]
            .iter()
            .filter_map(|k| s.get(*k).and_then(Value::as_array))
            .flatten()
            .all(closed);
    if s.get("type").and_then(Value::as_str) != Some("object") {
        return subs_closed;
    }
    let props = s.get("properties").and_then(Value::as_object);
    let required: Vec<&str> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    subs_closed
        && s.get("additionalProperties") == Some(&Value::Bool(false))
        && props.is_none_or(|p| {
            p.iter()
                .all(|(k, v)| required.contains(&k.as_str()) && closed(v))
        })
}

/// A name OpenAI accepts (`^[a-zA-Z0-9_-]{1,64}$`) derived from the outputs,
/// so different signatures' schemas are told apart in server logs.
fn schema_name(sig: &Signature) -> String {
    let mut name = String::from("outputs");
    for f in &sig.outputs {
        name.push('_');
        name.extend(f.name.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        }));
    }
    name.truncate(64);
    name
}
