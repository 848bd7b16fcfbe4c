//! `lmc schema`: print the JSON Schema of the program format, or with
//! `--project` of the project file `lmc.yaml`, or with `--kinds` the table
//! of node kinds. Node kinds and their keys come from the registry in
//! `crate::nodes`; the rest is written here.
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
    #[arg(long, conflicts_with = "kinds")]
    pub project: bool,
    /// Print the table of node kinds and their keys (Markdown, from the
    /// node kind registry; docs/program-format.md carries it) instead.
    #[arg(long)]
    pub kinds: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = if args.kinds {
        crate::nodes::kinds_markdown().trim_end().to_string()
    } else if args.project {
        serde_json::to_string_pretty(&project_schema())?
    } else {
        serde_json::to_string_pretty(&program_schema())?
    };
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
    // Node kinds, their keys, defaults and descriptions: from the registry.
    let node = crate::nodes::node_schema();
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
            "weight": {"type": "number", "description": "Weight in a list of metrics."},
            "lm": {"type": "string", "description": "llm_judge: the named LM (`lms:`) that judges; default: the program's LM."}
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
            "lms": lms_schema("Named LMs: name -> LM settings. A node, the `llm_judge` metric or an optimizer role (`compile.prompt_lm`, `compile.reflection_lm`) picks one by name; each starts from the default LM's settings and overrides the keys it gives, and has its own limits, usage and cost."),
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

/// The `lms:` map: named LMs, each with the keys of `lm:`.
fn lms_schema(description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
        "additionalProperties": lm_schema("One named LM: the same keys as `lm:`.")
    })
}

/// The `compile:` section, shared by program files and the project file:
/// a stage mapping or a list of them (a pipeline), from the optimizer
/// registry: one `if optimizer … then settings …` per optimizer, so an
/// editor completes and documents each one's settings.
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
    let stage = json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "objective": {"type": "string", "pattern": "^(score|cheapest-tied|max-prompt-tokens=[1-9][0-9]*)$", "default": "score", "description": "What `lmc compile` keeps among the candidates scored on the whole valset: score (the best), cheapest-tied (the fewest prompt tokens among those tied with the best), max-prompt-tokens=N (the best under a prompt cap); `--objective` overrides it."},
            "optimizer": {"enum": optimize::names(), "default": DEFAULT_OPTIMIZER, "description": "The optimizer `lmc compile` runs (`lmc compile --list` describes each)."},
            "prompt_lm": {"type": "string", "description": "The named LM (`lms:`) the instruction proposer runs on (copro, mipro, gepa, simba); `--prompt-lm` overrides it."},
            "reflection_lm": {"type": "string", "description": "The named LM GEPA reflects with (over `prompt_lm`)."},
            "teacher_lm": {"type": "string", "description": "The named LM the bootstrapping teacher runs every predictor on (demo-searching optimizers); demos it makes are used with the task LM."},
            "settings": {"type": "object", "description": "Settings of the optimizer named beside them (bootstrap_random_search when none is); unknown keys and wrong types are errors."}
        },
        "allOf": variants
    });
    let mut listed = stage.clone();
    listed["required"] = json!(["optimizer"]);
    json!({
        "description": description,
        "oneOf": [
            stage,
            {
                "type": "array",
                "minItems": 1,
                "description": "A pipeline: the stages run in order under one budget and one cache, each from the previous stage's result, as `--optimizer A --then B`. Each stage names its optimizer.",
                "items": listed
            }
        ]
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
            "lms": lms_schema("Named LMs that override the program's `lms:` entries key by key, or add new ones."),
            "compile": compile_schema("`lmc compile`'s optimizer and settings for this project, over the program's `compile:`; `--optimizer` and `--opt` override it.")
        }
    })
}
