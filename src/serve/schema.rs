//! What the served program takes and returns, for clients: `GET /v1/schema`
//! (a small JSON description: the program, its inputs and outputs as JSON
//! Schema objects) and `GET /openapi.json` (an OpenAPI 3.1 document of the
//! whole HTTP interface, whose schemas are JSON Schema 2020-12, the
//! dialect `FieldType::json_schema` writes).
//!
//! Both are derived from the program's typed fields once at start-up, so
//! they always match what `POST /v1/run` checks. They are built as JSON
//! values and not with an OpenAPI derive crate (utoipa, aide) because the
//! request and response shapes are not Rust types: they come from the
//! YAML program at run time.

use serde_json::{json, Map, Value};

use crate::program::{Binding, Program};
use crate::signature::{Field, FieldType};

use super::input::TRACE_KEY;

/// A JSON Schema object with one property per field; `required` lists the
/// fields that are not optional; no other keys are allowed.
pub fn fields_schema(fields: &[Field]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in fields {
        let mut s = f.ty.json_schema();
        if let Value::Object(m) = &mut s {
            if let Some(d) = &f.description {
                m.insert("description".into(), json!(d));
            }
            // lmc's own spelling of the type, for people reading the schema.
            m.insert("x-lmc-type".into(), json!(f.ty.lmc_name()));
        }
        props.insert(f.name.clone(), s);
        if !matches!(f.ty, FieldType::Optional { .. }) {
            required.push(f.name.clone());
        }
    }
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// The program's inputs, each with a description: its own, else that of
/// the first signature input it is bound to (a program usually declares
/// `sentence: str` and describes the field in the signature).
pub fn described_inputs(program: &Program) -> Vec<Field> {
    let predictors = program.predictors();
    program
        .inputs
        .iter()
        .map(|f| {
            let mut f = f.clone();
            if f.description.is_none() {
                f.description = predictors.iter().find_map(|p| {
                    let node = program.node(&p.node)?;
                    let (bound, _) = node
                        .inputs
                        .iter()
                        .find(|(_, b)| matches!(b, Binding::ProgramInput(n) if *n == f.name))?;
                    p.signature
                        .inputs
                        .iter()
                        .find(|s| s.name == *bound)?
                        .description
                        .clone()
                });
            }
            f
        })
        .collect()
}

/// `GET /v1/schema`.
pub fn describe(program: &Program, compiled: bool) -> Value {
    json!({
        "program": program.name,
        "description": program.description,
        "program_sha256": program.content_hash,
        "compiled": compiled,
        "inputs": fields_schema(&described_inputs(program)),
        "outputs": fields_schema(&program.output_fields),
    })
}

/// The request body's schema: the inputs, plus `trace` when no input is
/// called that.
fn request_schema(program: &Program) -> Value {
    let mut s = fields_schema(&described_inputs(program));
    if !program.inputs.iter().any(|f| f.name == TRACE_KEY) {
        s["properties"][TRACE_KEY] = json!({
            "type": "boolean",
            "description": "Return the run's trace (every step and LM call) with the outputs.",
        });
    }
    s
}

/// `GET /openapi.json`.
pub fn openapi(program: &Program, compiled: bool) -> Value {
    let error = |desc: &str| {
        json!({
            "description": desc,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        })
    };
    let retry_after = json!({
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer"},
        }
    });
    let mut overloaded = error("Overloaded (every run slot and queue place taken), LM budget spent, or an offline cache miss.");
    overloaded["headers"] = retry_after;
    let title = match &program.description {
        Some(d) => format!("{}: {d}", program.name),
        None => program.name.clone(),
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": format!("{}{}", &program.content_hash.chars().take(12).collect::<String>(), if compiled { "-compiled" } else { "" }),
            "description": "An lmc program served by `lmc serve`.",
        },
        "paths": {
            "/v1/run": {"post": {
                "summary": "Run the program on one set of inputs.",
                "operationId": "run",
                "parameters": [{
                    "name": "trace", "in": "query", "required": false,
                    "description": "1 or true: return the trace with the outputs.",
                    "schema": {"type": "string"},
                }],
                "requestBody": {"required": true, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/Inputs"}}}},
                "responses": {
                    "200": {"description": "The program's outputs.", "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/RunResult"}}}},
                    "400": error("A malformed body, or an input missing, unknown or of the wrong type (`error.field` names it)."),
                    "413": error("The body is larger than --max-body-bytes."),
                    "422": error("The LM replied, but the reply could not be parsed into the outputs (`error.raw_reply` holds it)."),
                    "500": error("A program step failed (a tool error, a missing node output)."),
                    "502": error("The LM call failed after retries."),
                    "503": overloaded,
                },
            }},
            "/v1/schema": {"get": {
                "summary": "The program's inputs and outputs as JSON Schema.",
                "operationId": "schema",
                "responses": {"200": {"description": "The description.",
                    "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/healthz": {"get": {
                "summary": "Liveness: 200 while the server accepts requests.",
                "operationId": "healthz",
                "responses": {"200": {"description": "Alive.",
                    "content": {"application/json": {"schema": {"type": "object"}}}}},
            }},
            "/metrics": {"get": {
                "summary": "Prometheus / OpenMetrics text exposition.",
                "operationId": "metrics",
                "responses": {"200": {"description": "Metrics.",
                    "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}}},
            }},
        },
        "components": {"schemas": {
            "Inputs": request_schema(program),
            "Outputs": fields_schema(&program.output_fields),
            "Usage": {
                "type": "object",
                "properties": {
                    "lm_calls": {"type": "integer", "description": "Calls answered by the LM backend (cache hits excluded)."},
                    "cache_hits": {"type": "integer"},
                    "prompt_tokens": {"type": "integer"},
                    "completion_tokens": {"type": "integer"},
                    "cost_usd": {"type": "number"},
                },
            },
            "RunResult": {
                "type": "object",
                "required": ["outputs", "usage"],
                "properties": {
                    "outputs": {"$ref": "#/components/schemas/Outputs"},
                    "usage": {"$ref": "#/components/schemas/Usage"},
                    "trace": {"type": "array", "items": {"type": "object"},
                        "description": "Present when asked for: every step of the run."},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["kind", "message"],
                        "properties": {
                            "kind": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                            "raw_reply": {"type": "string"},
                        },
                    },
                    "trace": {"type": "array", "items": {"type": "object"}},
                },
            },
        }},
    })
}
