//! Adapters: render a signature, its demos and inputs into chat messages, and
//! parse a reply back into typed output values. Pure: no I/O, no LM.
//!
//! Two adapters: `chat` speaks DSPy's ChatAdapter protocol byte for byte
//! (`[[ ## field ## ]]` sections), `json` asks for one JSON object. Each can
//! also describe its expected reply as a constraint for the LM: a GBNF
//! grammar for the embedded engine and a JSON schema (`response_format`) for
//! HTTP servers that enforce one.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::overlay::Demo;
use crate::signature::Signature;

pub mod chat;
pub mod grammar;
pub mod json;
pub mod parse;
pub mod repair;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// Which adapter renders and parses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    #[default]
    Chat,
    Json,
}

impl AdapterKind {
    /// The name written in configs (`chat`, `json`).
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterKind::Chat => "chat",
            AdapterKind::Json => "json",
        }
    }
}

impl std::str::FromStr for AdapterKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "chat" => Ok(AdapterKind::Chat),
            "json" => Ok(AdapterKind::Json),
            other => Err(format!(
                "unknown adapter `{other}` (expected `chat` or `json`)"
            )),
        }
    }
}

/// A reply that could not be turned into typed outputs. The raw text is kept
/// so evals can show it and GEPA can turn it into feedback.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("could not parse field `{field}`: {message}")]
pub struct ParseError {
    /// The field that failed (or `*` when the reply had no structure at all).
    pub field: String,
    pub message: String,
    pub raw: String,
}

impl AdapterKind {
    /// Render the messages for one call: system, demos as user/assistant
    /// turns, and the final user turn with `inputs`.
    pub fn render(
        &self,
        sig: &Signature,
        demos: &[Demo],
        inputs: &Map<String, Value>,
    ) -> Vec<Message> {
        match self {
            AdapterKind::Chat => chat::render(sig, demos, inputs),
            AdapterKind::Json => json::render(sig, demos, inputs),
        }
    }

    /// Parse a reply into one typed value per output field.
    pub fn parse(&self, sig: &Signature, reply: &str) -> Result<Map<String, Value>, ParseError> {
        match self {
            AdapterKind::Chat => parse::parse_chat(sig, reply),
            AdapterKind::Json => parse::parse_json(sig, reply),
        }
    }

    /// A GBNF grammar constraining replies (embedded engine); free text is
    /// bounded so every output field fits `max_tokens`.
    pub fn grammar(&self, sig: &Signature, max_tokens: u32) -> String {
        match self {
            AdapterKind::Chat => grammar::chat_grammar(sig, Some(max_tokens)),
            AdapterKind::Json => grammar::json_grammar(sig, Some(max_tokens)),
        }
    }

    /// An OpenAI `response_format` value, for adapters that ask for JSON.
    pub fn response_format(&self, sig: &Signature) -> Option<Value> {
        match self {
            AdapterKind::Chat => None,
            AdapterKind::Json => Some(json::response_format(sig)),
        }
    }
}
