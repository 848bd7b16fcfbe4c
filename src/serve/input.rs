//! Turning a `POST /v1/run` body into the program's typed inputs.
//!
//! The body is one JSON object whose keys are the program's input names.
//! Every value goes through the dataset loader's conversion
//! (`data::convert_input`), so what a JSONL dataset accepts the server
//! accepts too (`"4"` for an int, `"Yes"` for a bool, `Positive` for an enum
//! value `positive`) and what it refuses is refused with the same words.
//! Nothing reaches the LM until every field is checked: a bad request costs
//! no tokens and takes no run slot. Errors name the field so a client can
//! show them next to the right form input.

use serde_json::{Map, Value};

use crate::program::Program;
use crate::signature::FieldType;

/// The key that asks for the trace in the body, unless the program has an
/// input of that name (then the input wins and `?trace=1` is the way).
pub const TRACE_KEY: &str = "trace";

/// A checked request: typed inputs and whether the trace was asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub inputs: Map<String, Value>,
    pub trace: bool,
}

/// Why a body was refused (always a 400).
#[derive(Debug, Clone, PartialEq)]
pub struct InputError {
    /// `invalid_json`, `not_an_object`, `missing_input`, `unknown_field` or
    /// `invalid_input`.
    pub kind: &'static str,
    /// The field at fault, when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl InputError {
    fn new(kind: &'static str, field: Option<&str>, message: String) -> Self {
        InputError {
            kind,
            field: field.map(str::to_string),
            message,
        }
    }
}

/// Parse and check `body` against `program`'s inputs. `trace_query` is the
/// `?trace=` flag; the body's `"trace": true` also turns it on.
pub fn parse(program: &Program, body: &[u8], trace_query: bool) -> Result<RunRequest, InputError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        InputError::new(
            "invalid_json",
            None,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(InputError::new(
            "not_an_object",
            None,
            format!(
                "expected a JSON object of inputs ({}), got {}",
                input_list(program),
                kind_of(&value)
            ),
        ));
    };
    let mut trace = trace_query;
    let mut inputs = Map::new();
    for (key, v) in obj {
        let Some(field) = program.inputs.iter().find(|f| f.name == key) else {
            if key == TRACE_KEY {
                trace |= truthy(&v).ok_or_else(|| {
                    InputError::new(
                        "invalid_input",
                        Some(TRACE_KEY),
                        format!("`trace` must be true or false, got {}", kind_of(&v)),
                    )
                })?;
                continue;
            }
            return Err(InputError::new(
                "unknown_field",
                Some(&key),
                unknown_message(program, &key),
            ));
        };
        let typed = crate::data::convert_input(&field.ty, v).map_err(|e| {
            InputError::new(
                "invalid_input",
                Some(&key),
                format!("input `{key}` ({}): {e}", field.ty.lmc_name()),
            )
        })?;
        inputs.insert(key, typed);
    }
    for f in &program.inputs {
        if inputs.contains_key(&f.name) {
            continue;
        }
        if matches!(f.ty, FieldType::Optional { .. }) {
            // An optional input left out is null, as an empty dataset cell is.
            inputs.insert(f.name.clone(), Value::Null);
            continue;
        }
        return Err(InputError::new(
            "missing_input",
            Some(&f.name),
            format!(
                "missing input `{}` ({}); the program's inputs are {}",
                f.name,
                f.ty.lmc_name(),
                input_list(program)
            ),
        ));
    }
    // Declaration order, whatever order the client sent: traces and cache
    // keys then do not depend on how a client serialises its object.
    let mut ordered = Map::new();
    for f in &program.inputs {
        if let Some(v) = inputs.remove(&f.name) {
            ordered.insert(f.name.clone(), v);
        }
    }
    Ok(RunRequest {
        inputs: ordered,
        trace,
    })
}

/// `?trace=` values that mean yes; anything else means no.
pub fn query_flag(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

fn truthy(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().filter(|i| *i == 0 || *i == 1).map(|i| i == 1),
        Value::Null => Some(false),
        _ => None,
    }
}

fn unknown_message(program: &Program, key: &str) -> String {
    let near = program
        .inputs
        .iter()
        .map(|f| (strsim::jaro_winkler(key, &f.name), &f.name))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default();
    format!(
        "unknown field `{key}`{near}; the program's inputs are {}",
        input_list(program)
    )
}

fn input_list(program: &Program) -> String {
    if program.inputs.is_empty() {
        return "none".into();
    }
    program
        .inputs
        .iter()
        .map(|f| format!("`{}` ({})", f.name, f.ty.lmc_name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program() -> Program {
        let src = r#"name: t
signatures:
  s:
    instructions: Do it.
    inputs:
      sentence: {type: str}
      stars: {type: int}
      note: {type: "optional[str]"}
    outputs:
      label: {type: "enum[a, b]"}
inputs:
  sentence: str
  stars: int
  note: optional[str]
nodes:
  n:
    kind: predict
    signature: s
outputs:
  label: n.label
"#;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.yaml");
        std::fs::write(&p, src).unwrap();
        crate::program::load(&p).expect("test program loads")
    }

    #[test]
    fn typed_like_a_dataset_cell_in_declaration_order() {
        let p = program();
        let r = parse(&p, br#"{"stars": "4", "sentence": "good"}"#, false).unwrap();
        assert_eq!(
            serde_json::to_string(&r.inputs).unwrap(),
            r#"{"sentence":"good","stars":4,"note":null}"#
        );
        assert!(!r.trace);
        let r = parse(
            &p,
            br#"{"sentence": "x", "stars": 1, "trace": true}"#,
            false,
        )
        .unwrap();
        assert!(r.trace);
    }

    #[test]
    fn each_refusal_names_its_field() {
        let p = program();
        let e = parse(&p, br#"{"sentence": "x", "stars": "many"}"#, false).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            ("invalid_input", Some("stars"))
        );
        assert!(e.message.contains("not an integer"), "{}", e.message);
        let e = parse(&p, br#"{"sentence": "x"}"#, false).unwrap_err();
        assert_eq!(
            (e.kind, e.field.as_deref()),
            ("missing_input", Some("stars"))
        );
        let e = parse(&p, br#"{"sentense": "x", "stars": 1}"#, false).unwrap_err();
        assert_eq!(e.kind, "unknown_field");
        assert!(
            e.message.contains("did you mean `sentence`"),
            "{}",
            e.message
        );
        assert_eq!(parse(&p, b"[1]", false).unwrap_err().kind, "not_an_object");
        assert_eq!(parse(&p, b"{", false).unwrap_err().kind, "invalid_json");
        let e = parse(&p, br#"{"sentence": "x", "stars": 1, "trace": "x"}"#, false).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("trace"));
    }
}
