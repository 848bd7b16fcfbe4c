//! `lmc schema`: print the JSON Schema of the program format, or with
//! `--project` of the project file `lmc.yaml`.
//!
//! Editors (VS Code's YAML extension, JetBrains, Helix via yaml-language-
//! server) complete and check program files against this schema:
//! `# yaml-language-server: $schema=lmc-program.schema.json`. It is written
//! by hand so every key carries a description; lowering stays the
//! authority on validity (bindings, types along edges, cycles), the schema
//! covers shape and documentation. A test checks the shipped programs
//! against it structurally.

use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;

use crate::optimize;
use crate::spec;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the schema of the project file (`lmc.yaml`) instead.
    #[arg(long)]
    pub project: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let schema = if args.project {
        project_schema()
    } else {
        program_schema()
    };
    let text = serde_json::to_string_pretty(&schema)?;
    // `lmc schema | head` closes the pipe early: that is not an error.
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The JSON Schema (draft 2020-12) of a program file.
pub fn program_schema() -> Value {
    let type_string = json!({
        "type": "string",
        "description": "A field type: str, int, float, bool, json, enum[a, b] (or Literal['a', 'b']), list[T], optional[T] (or Optional[T]).",
        "examples": ["str", "int", "float", "bool", "json", "enum[positive, negative]", "list[str]", "optional[int]"]
    });
    let field = json!({
        "description": "A field: a type string, or a mapping with the type and its description.",
        "anyOf": [
            {"$ref": "#/$defs/type"},
            {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "type": {"$ref": "#/$defs/type", "description": "The field type (default str, or json when `schema` is given)."},
                    "description": {"type": "string", "description": "What the field holds; shown to the model."},
                    "prefix": {"type": "string", "description": "Output prefix (DSPy's `prefix`), e.g. `Answer:`."},
                    "schema": {"description": "A JSON Schema the value must satisfy (json fields only).", "type": ["object", "boolean"]},
                    "default": {"description": "Output fields only: the value when the reply leaves the field out (DSPy's `OutputField(default=...)`); must be of the field's type."}
                }
            }
        ]
    });
    let fields = json!({
        "type": "object",
        "description": "Field name -> field (in order).",
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "additionalProperties": {"$ref": "#/$defs/field"}
    });
    let signature_body = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "instructions": {"type": "string", "description": "The task instruction (the objective line). Default: DSPy's `Given the fields ..., produce the fields ...`."},
            "inputs": {"$ref": "#/$defs/fields", "description": "Input fields, in order."},
            "outputs": {"$ref": "#/$defs/fields", "description": "Output fields, in order."}
        }
    });
    let signature = json!({
        "description": "A signature: a name from `signatures:`, a shorthand like `question, context: list[str] -> answer: int`, or inline {instructions, inputs, outputs}.",
        "anyOf": [
            {"type": "string"},
            {"$ref": "#/$defs/signature_body"}
        ]
    });
    let binding = json!({
        "description": "Where a value comes from: `input.NAME` (a program input), `NODE.FIELD` (an output of another node), or {value: <literal>}.",
        "anyOf": [
            {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*(\\.[A-Za-z_][A-Za-z0-9_]*)?$"},
            {"type": "object", "additionalProperties": false, "required": ["value"], "properties": {"value": {"description": "A constant."}}}
        ]
    });
    let reward = json!({
        "type": "object",
        "description": "How a refine / best_of_n attempt is scored.",
        "additionalProperties": false,
        "required": ["type", "field"],
        "properties": {
            "type": {"enum": spec::REWARD_TYPES, "description": "non_empty: the field parses and is non-empty; tool_ok: running `tool` on the field reports no error; metric: a metric against `expected`."},
            "field": {"type": "string", "description": "The output field judged."},
            "tool": {"type": "string", "description": "tool_ok: the tool to run."},
            "metric": {"description": "metric: a metric spec, e.g. {type: exact_match}."},
            "expected": {"$ref": "#/$defs/binding", "description": "metric: the expected value."}
        }
    });
    let node_props = json!({
        "kind": {"enum": spec::NODE_KINDS, "description": "predict | chain_of_thought | react | retrieve | tool | refine | best_of_n | map | multi_chain_comparison."},
        "signature": {"$ref": "#/$defs/signature"},
        "inputs": {"type": "object", "description": "Signature input -> binding. Unbound inputs default to the program input of the same name, else the unique earlier node output of that name.", "additionalProperties": {"$ref": "#/$defs/binding"}},
        "tools": {"type": "array", "items": {"type": "string"}, "description": "react: the tools the agent may call."},
        "max_iters": {"type": "integer", "minimum": 1, "default": 5, "description": "react: maximum tool-calling steps."},
        "tool": {"type": "string", "description": "retrieve / tool: the tool used."},
        "k": {"type": "integer", "minimum": 1, "description": "retrieve: passages returned (default: the tool's k, else 3)."},
        "operation": {"type": "string", "description": "tool: the operation (sqlite: list_tables | describe | query)."},
        "chain_of_thought": {"type": "boolean", "default": false, "description": "refine / best_of_n / map: add a `reasoning` output first."},
        "n": {"type": "integer", "minimum": 1, "default": 3, "description": "refine / best_of_n: maximum attempts; multi_chain_comparison: attempts compared."},
        "threshold": {"type": "number", "default": 1.0, "description": "refine / best_of_n: stop at the first attempt whose reward reaches this."},
        "reward": {"$ref": "#/$defs/reward"},
        "over": {"type": "string", "description": "map: the list-typed input iterated over."}
    });
    let node_variants: Vec<Value> = spec::NODE_KINDS
        .iter()
        .map(|k| {
            let keys = spec::node_keys(k).unwrap_or(&[]);
            let props: serde_json::Map<String, Value> = keys
                .iter()
                .map(|key| {
                    let v = if *key == "kind" {
                        json!({"const": k})
                    } else {
                        node_props[*key].clone()
                    };
                    (key.to_string(), v)
                })
                .collect();
            let mut required = vec!["kind"];
            match *k {
                "retrieve" | "tool" => required.push("tool"),
                "react" => required.extend(["signature", "tools"]),
                "refine" | "best_of_n" => required.extend(["signature", "reward"]),
                "map" => required.extend(["signature", "over"]),
                _ => required.push("signature"),
            }
            json!({
                "if": {"properties": {"kind": {"const": k}}, "required": ["kind"]},
                "then": {"properties": props, "required": required, "additionalProperties": false}
            })
        })
        .collect();
    let node = json!({
        "type": "object",
        "description": "A node of the graph.",
        "required": ["kind"],
        "properties": node_props,
        "allOf": node_variants
    });
    let tool_common = json!({
        "kind": {"enum": spec::TOOL_KINDS},
        "description": {"type": "string", "description": "Shown to the agent."},
        "timeout_ms": {"type": "integer", "minimum": 1},
        "max_chars": {"type": "integer", "minimum": 1, "description": "Truncate results to this many characters."}
    });
    let tool = json!({
        "type": "object",
        "description": "A tool: sqlite (a read-only database), retrieve (BM25 over a JSONL corpus) or command (a local program; off unless enabled: true). Paths are relative to the program file.",
        "required": ["kind"],
        "properties": tool_common,
        "allOf": [
            {"if": {"properties": {"kind": {"const": "sqlite"}}}, "then": {"required": ["path"], "properties": {
                "path": {"type": "string", "description": "SQLite database file (opened read-only)."},
                "max_rows": {"type": "integer", "minimum": 1, "default": 50},
                "max_value_bytes": {"type": "integer", "minimum": 1024, "default": 16777216, "description": "Largest string or blob a query may build (SQLite's length limit)."}}}},
            {"if": {"properties": {"kind": {"const": "retrieve"}}}, "then": {"required": ["corpus"], "properties": {
                "corpus": {"type": "string", "description": "JSONL corpus, one passage per line ({title, text})."},
                "k": {"type": "integer", "minimum": 1, "default": 3}}}},
            {"if": {"properties": {"kind": {"const": "command"}}}, "then": {"required": ["command"], "properties": {
                "command": {"type": "array", "items": {"type": "string"}, "minItems": 1, "description": "argv of the program."},
                "args": {"description": "JSON Schema of the arguments the agent passes."},
                "enabled": {"type": "boolean", "default": false, "description": "Command tools run only when enabled."},
                "cwd": {"type": "string", "description": "Working directory (default: the program file's directory)."}}}}
        ]
    });
    let metric_one = json!({
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "description": "exact_match, f1, contains, numeric, regex, json_match, sql_execution, llm_judge, command, ..."},
            "field": {"type": "string", "description": "The program output scored."},
            "weight": {"type": "number", "description": "Weight in a list of metrics."}
        }
    });
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lmc.dev/schema/program.json",
        "title": "lmc program",
        "description": "An LM program: typed signatures, a graph of nodes that wires them together, and optionally its LM, metric, datasets and tools.",
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "nodes", "outputs"],
        "properties": {
            "name": {"type": "string", "description": "The program's name."},
            "description": {"type": "string", "description": "What the program does."},
            "lm": lm_schema("The LM (default: the embedded local model). A project file's `lm` overrides it."),
            "signatures": {"type": "object", "description": "Named signatures (shorthand string or mapping).", "additionalProperties": {"$ref": "#/$defs/signature"}},
            "inputs": {"$ref": "#/$defs/fields", "description": "Program inputs: name -> type."},
            "nodes": {"type": "object", "description": "Named nodes; order follows the bindings.", "minProperties": 1, "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "not": {"const": "input"}}, "additionalProperties": {"$ref": "#/$defs/node"}},
            "outputs": {"type": "object", "description": "Program output -> node output (`NODE.FIELD`).", "minProperties": 1, "additionalProperties": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*\\.[A-Za-z_][A-Za-z0-9_]*$"}},
            "metric": {"description": "The metric: one spec or a list (weighted combination).", "anyOf": [{"$ref": "#/$defs/metric"}, {"type": "array", "items": {"$ref": "#/$defs/metric"}}]},
            "datasets": {
                "type": "object",
                "description": "Datasets (CSV or JSONL), relative to the program file.",
                "additionalProperties": false,
                "properties": {
                    "train": {"type": "string"},
                    "dev": {"type": "string"},
                    "test": {"type": "string"},
                    "columns": {"type": "object", "description": "Dataset column -> program input or output name (unmapped columns keep their name).", "additionalProperties": {"type": "string"}}
                }
            },
            "tools": {"type": "object", "description": "Named tools for react, retrieve and tool nodes.", "additionalProperties": {"$ref": "#/$defs/tool"}},
            "compile": compile_schema("`lmc compile`'s default optimizer and its settings. A project file's `compile` overrides it; `--optimizer` and `--opt` override both.")
        },
        "$defs": {
            "type": type_string,
            "field": field,
            "fields": fields,
            "signature": signature,
            "signature_body": signature_body,
            "binding": binding,
            "reward": reward,
            "node": node,
            "tool": tool,
            "metric": metric_one
        }
    })
}

/// The `lm:` mapping, shared by program files and the project file.
fn lm_schema(description: &str) -> Value {
    json!({
    "type": "object",
    "description": description,
    "additionalProperties": false,
    "properties": {
        "provider": {"enum": ["embedded", "openai"], "description": "embedded (default) or openai (any OpenAI-compatible server)."},
        "model": {"type": "string", "description": "Model name (HTTP) or GGUF file (embedded)."},
        "base_urls": {"type": "array", "items": {"type": "string"}, "description": "One or more base URLs, load-balanced."},
        "api_key_env": {"type": "string", "description": "Environment variable holding the API key."},
        "temperature": {"type": "number"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "adapter": {"enum": ["chat", "json"], "description": "chat (default, DSPy's ChatAdapter) or json."},
        "concurrency": {"type": "integer", "minimum": 1},
        "timeout_secs": {"type": "number"},
        "max_retries": {"type": "integer", "minimum": 0},
        "rpm": {"type": "integer", "minimum": 1, "description": "Requests per minute limit."},
        "tpm": {"type": "integer", "minimum": 1, "description": "Tokens per minute limit."},
        "price_prompt_per_mtok": {"type": "number", "description": "USD per million prompt tokens."},
        "price_completion_per_mtok": {"type": "number", "description": "USD per million completion tokens."},
        "threads": {"type": "integer", "minimum": 1, "description": "Embedded engine threads."},
        "context": {"type": "integer", "minimum": 1, "description": "Embedded engine context size in tokens."},
        "choice": {"enum": ["sample", "likelihood", "calibrated"], "description": "How enum outputs are decided on the embedded engine: sampled (default), by likelihood, or by calibrated likelihood."}
    }
        })
}

/// The `compile:` mapping, shared by program files and the project file,
/// from the optimizer registry: one `if optimizer … then settings …` per
/// optimizer, so an editor completes and documents each one's settings.
fn compile_schema(description: &str) -> Value {
    use crate::program::compile_section::DEFAULT_OPTIMIZER;
    let settings_of = |o: &dyn optimize::Registered| -> Value {
        let props: serde_json::Map<String, Value> = o
            .settings_docs()
            .into_iter()
            .map(|d| {
                let text = format!("{} Expected: {}.", d.help, d.expected);
                (
                    d.key.to_string(),
                    json!({"description": text, "default": d.default}),
                )
            })
            .collect();
        json!({"type": "object", "additionalProperties": false, "properties": props})
    };
    let variants: Vec<Value> = optimize::REGISTRY
        .iter()
        .map(|o| {
            let mut when = json!({"properties": {"optimizer": {"const": o.name()}}, "required": ["optimizer"]});
            if o.name() == DEFAULT_OPTIMIZER {
                // Settings without an optimizer are the default optimizer's.
                when = json!({"properties": {"optimizer": {"const": o.name()}}});
            }
            json!({"if": when, "then": {"properties": {"settings": settings_of(*o)}}})
        })
        .collect();
    json!({
        "type": "object",
        "description": description,
        "additionalProperties": false,
        "properties": {
            "optimizer": {"enum": optimize::names(), "default": DEFAULT_OPTIMIZER, "description": "The optimizer `lmc compile` runs (`lmc compile --list` describes each)."},
            "settings": {"type": "object", "description": "Settings of the optimizer named beside them (bootstrap_random_search when none is); unknown keys and wrong types are errors."}
        },
        "allOf": variants
    })
}

/// The JSON Schema (draft 2020-12) of the project file, `lmc.yaml`: which
/// program commands use when given none, LM settings that override the
/// program's, and the compile section. Mirrors what `settings::read_project` accepts.
pub fn project_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://lmc.dev/schema/project.json",
        "title": "lmc project file (lmc.yaml)",
        "description": "The project file: commands given no program file use its `program`; its `lm` keys override the program's LM settings and its `compile` section the program's.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "program": {"type": "string", "description": "The default program file (or compiled artifact), relative to this file."},
            "lm": lm_schema("LM settings that override the program's `lm:` for every command run in this project (only the keys given)."),
            "compile": compile_schema("`lmc compile`'s optimizer and settings for this project, over the program's `compile:`; `--optimizer` and `--opt` override it.")
        }
    })
}
