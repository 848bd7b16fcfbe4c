//! (placeholder until the parser lands)
use crate::adapter::ParseError;
use crate::signature::Signature;
use serde_json::{Map, Value};
pub fn parse_chat(_sig: &Signature, reply: &str) -> Result<Map<String, Value>, ParseError> {
    Err(ParseError {
        field: "*".into(),
        message: "parser not built".into(),
        raw: reply.into(),
    })
}
pub fn parse_json(_sig: &Signature, reply: &str) -> Result<Map<String, Value>, ParseError> {
    Err(ParseError {
        field: "*".into(),
        message: "parser not built".into(),
        raw: reply.into(),
    })
}
