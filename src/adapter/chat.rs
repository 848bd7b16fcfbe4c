//! (placeholder until the chat adapter lands)
use crate::adapter::Message;
use crate::overlay::Demo;
use crate::signature::Signature;
use serde_json::{Map, Value};
pub fn render(_sig: &Signature, _demos: &[Demo], _inputs: &Map<String, Value>) -> Vec<Message> {
    Vec::new()
}
