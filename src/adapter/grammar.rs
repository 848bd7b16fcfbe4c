//! (placeholder until grammars land)
use crate::signature::Signature;
pub fn chat_grammar(_sig: &Signature) -> String {
    String::new()
}
pub fn json_grammar(_sig: &Signature) -> String {
    String::new()
}
