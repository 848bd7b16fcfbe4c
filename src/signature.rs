//! Signatures: what one LM call takes and returns.
//!
//! A signature is an ordered list of typed input fields and typed output
//! fields plus an instruction. It is the unit every adapter renders and every
//! predictor is built on. Field types are a closed set (string, int, float,
//! bool, enum, list, optional, JSON object with a schema) so that adapters can
//! describe them to the model, grammars can enforce them while decoding, and
//! parsers can validate them afterwards.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The type of one signature field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldType {
    String,
    Int,
    Float,
    Bool,
    /// One of a fixed list of string values (DSPy's `Literal[...]`).
    Enum {
        values: Vec<String>,
    },
    List {
        item: Box<FieldType>,
    },
    Optional {
        inner: Box<FieldType>,
    },
    /// A JSON value; `schema` is a JSON Schema it must satisfy (None: any object).
    Json {
        schema: Option<Value>,
    },
}

impl FieldType {
    /// The type as DSPy names it in prompts, e.g. `Literal['a', 'b']`,
    /// `list[str]`, `Union[int, NoneType]`.
    pub fn dspy_name(&self) -> String {
        match self {
            FieldType::String => "str".into(),
            FieldType::Int => "int".into(),
            FieldType::Float => "float".into(),
            FieldType::Bool => "bool".into(),
            FieldType::Enum { values } => {
                let vals: Vec<String> = values
                    .iter()
                    .map(|v| format!("'{}'", v.replace('\'', "\\'")))
                    .collect();
                format!("Literal[{}]", vals.join(", "))
            }
            FieldType::List { item } => format!("list[{}]", item.dspy_name()),
            FieldType::Optional { inner } => format!("Union[{}, NoneType]", inner.dspy_name()),
            FieldType::Json { .. } => "dict[str, Any]".into(),
        }
    }

    /// The type as written in lmc's program files (`list[str]`, `optional[int]`,
    /// `enum[positive, negative]`, `json`).
    pub fn lmc_name(&self) -> String {
        match self {
            FieldType::String => "str".into(),
            FieldType::Int => "int".into(),
            FieldType::Float => "float".into(),
            FieldType::Bool => "bool".into(),
            FieldType::Enum { values } => format!("enum[{}]", values.join(", ")),
            FieldType::List { item } => format!("list[{}]", item.lmc_name()),
            FieldType::Optional { inner } => format!("optional[{}]", inner.lmc_name()),
            FieldType::Json { .. } => "json".into(),
        }
    }

    /// JSON Schema of values of this type (used by type notes, the JSON
    /// adapter's response_format and grammar generation).
    pub fn json_schema(&self) -> Value {
        match self {
            FieldType::String => json!({"type": "string"}),
            FieldType::Int => json!({"type": "integer"}),
            FieldType::Float => json!({"type": "number"}),
            FieldType::Bool => json!({"type": "boolean"}),
            FieldType::Enum { values } => json!({"type": "string", "enum": values}),
            FieldType::List { item } => json!({"type": "array", "items": item.json_schema()}),
            FieldType::Optional { inner } => {
                json!({"anyOf": [inner.json_schema(), {"type": "null"}]})
            }
            FieldType::Json { schema } => {
                schema.clone().unwrap_or_else(|| json!({"type": "object"}))
            }
        }
    }

    /// Whether a value produced for `self` may be bound to an input of type
    /// `target` (edge type checking in the graph).
    pub fn assignable_to(&self, target: &FieldType) -> bool {
        use FieldType::*;
        match (self, target) {
            (_, String) => true, // anything can be rendered as text
            (a, Optional { inner }) => a == target || a.assignable_to(inner),
            (Int, Float) => true,
            (Enum { values: a }, Enum { values: b }) => a.iter().all(|v| b.contains(v)),
            (List { item: a }, List { item: b }) => a.assignable_to(b),
            (Json { .. }, Json { schema: None }) => true,
            (a, b) => a == b,
        }
    }
}

/// One input or output field of a signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    #[serde(flatten)]
    pub ty: FieldType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Output prefix (DSPy's `prefix`), e.g. "Reasoning: Let's think step by step in order to".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// An output's value when the reply leaves it out (DSPy's
    /// `OutputField(default=...)`); checked against the type at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

impl Field {
    pub fn new(name: impl Into<String>, ty: FieldType) -> Self {
        Field {
            name: name.into(),
            ty,
            description: None,
            prefix: None,
            default: None,
        }
    }
}

/// What one LM call takes and returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// The instruction. `None` means DSPy's default objective line
    /// ("Given the fields `a`, produce the fields `b`.").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    pub inputs: Vec<Field>,
    pub outputs: Vec<Field>,
}

impl Signature {
    /// The instruction text as rendered: the explicit one, or DSPy's default.
    pub fn objective(&self) -> String {
        match &self.instructions {
            Some(s) if !s.trim().is_empty() => s.clone(),
            _ => {
                let names = |fs: &[Field]| {
                    fs.iter()
                        .map(|f| format!("`{}`", f.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!(
                    "Given the fields {}, produce the fields {}.",
                    names(&self.inputs),
                    names(&self.outputs)
                )
            }
        }
    }

    pub fn input(&self, name: &str) -> Option<&Field> {
        self.inputs.iter().find(|f| f.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&Field> {
        self.outputs.iter().find(|f| f.name == name)
    }

    /// The chain-of-thought variant: a `reasoning` string output prepended,
    /// as DSPy's ChainOfThought does.
    pub fn with_reasoning(&self) -> Signature {
        let mut sig = self.clone();
        if sig.output("reasoning").is_none() {
            // DSPy prepends the field to a signature whose instruction is
            // already fixed: the default objective names the original
            // outputs only ("produce the fields `answer`"), not `reasoning`.
            sig.instructions = Some(self.objective());
            let mut f = Field::new("reasoning", FieldType::String);
            f.prefix = Some("Reasoning: Let's think step by step in order to".into());
            sig.outputs.insert(0, f);
        }
        sig
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_of_thought_keeps_the_original_objective() {
        let sig = Signature {
            instructions: None,
            inputs: vec![Field::new("question", FieldType::String)],
            outputs: vec![Field::new("answer", FieldType::String)],
        };
        let cot = sig.with_reasoning();
        assert_eq!(cot.outputs[0].name, "reasoning");
        // As DSPy's ChainOfThought: the default instruction names the
        // original outputs, not the prepended `reasoning`.
        assert_eq!(
            cot.objective(),
            "Given the fields `question`, produce the fields `answer`."
        );
        let explicit = Signature {
            instructions: Some("Answer.".into()),
            ..sig
        };
        assert_eq!(explicit.with_reasoning().objective(), "Answer.");
    }
}
