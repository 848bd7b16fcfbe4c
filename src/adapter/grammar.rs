//! GBNF grammars (llama.cpp's format) that constrain a reply while it is
//! decoded, so typed outputs are enforced rather than hoped for.
//!
//! Measured with DSPy 3.4.1 and the default embedded model, 200 of 200 SST-2
//! replies were unparseable; constrained to the adapter's structure and the
//! label set, the same model always answers with a label. The chat grammar
//! admits exactly the output sections in order (`[[ ## f ## ]]\n<value>\n\n`)
//! and the completed marker; the JSON grammar admits exactly one object with
//! the output keys in order. Values follow the field types: enum values as
//! literal alternatives, integers, floats, `True`/`False`, JSON arrays and
//! objects (shaped by the field's JSON schema when it has one), and free text
//! for strings that is non-empty and cannot contain `[[` or `[#` (so it
//! cannot forge the next marker or fill the field with near-miss markers).
//!
//! Given the request's `max_tokens`, each top-level string field is also
//! bounded in characters so that every field fits the budget: a small model
//! asked to think step by step otherwise spends all its tokens on the
//! reasoning and is cut off before the answer (19 of 20 GSM8K replies of the
//! default model were, unbounded). The bound is [`text_budget`]: the tokens
//! left after the markers, at one character per token, shared equally by the
//! string fields. One character per token is the rate no token falls below,
//! so the bound holds whatever the model writes (English runs near four
//! characters per token, but arithmetic and marker-like junk from a small
//! model near one); raise `max_tokens` for longer text. Bounded chat text
//! contains no `[` at all, so that each repetition is one character (a `[`
//! that may not start `[[` must pair with the next character, and the
//! default model's `[1]\n[2]\n…` filler then overran the bound). When the
//! bound is reached the grammar admits only the next marker, so the model
//! moves on to the next field instead of being cut off. (In JSON strings an
//! escape sequence counts as one character; models rarely write them.)
//!
//! Rule names use only lowercase letters, digits and dashes, which every
//! llama.cpp version accepts.

use std::fmt::Write as _;

use serde_json::Value;

use crate::signature::{FieldType, Signature};

/// Whitespace inside JSON: none, one space, or a newline and a bounded
/// indent, so a small model cannot loop on whitespace forever.
const WS: &str = r#"| " " | "\n" [ \t]{0,20}"#;
const JSON_STRING: &str = r#""\"" json-char* "\"""#;
const JSON_CHAR: &str = r#"[^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} )"#;
const JSON_NUMBER: &str =
    r#""-"? ( [0-9] | [1-9] [0-9]{0,15} ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]{1,3} )?"#;
const JSON_INT: &str = r#""-"? ( [0-9] | [1-9] [0-9]{0,15} )"#;
const JSON_VALUE: &str =
    r#"json-object | json-array | json-string | json-number | "true" | "false" | "null""#;
const JSON_OBJECT: &str = r#""{" ws ( json-string ws ":" ws json-value ws ( "," ws json-string ws ":" ws json-value ws )* )? "}""#;
const JSON_ARRAY: &str = r#""[" ws ( json-value ws ( "," ws json-value ws )* )? "]""#;
/// Free text: non-empty, starting with a visible character, never `[[` or
/// `[#` (a marker or a near-miss of one, which small models write as
/// filler). A `[` and the character after it are one `str-char`.
const STR_VALUE: &str = r#"str-start str-char*"#;
const STR_START: &str = r#"[^\[ \t\n] | "[" [^\[#]"#;
const STR_CHAR: &str = r#"[^\[] | "[" [^\[#]"#;
/// Bounded free text has no `[` at all, so each repetition is exactly one
/// character and the bound counts characters (see [`text_budget`]).
const TEXT_START: &str = r#"[^\[ \t\n]"#;
const TEXT_CHAR: &str = r#"[^\[]"#;

/// Characters per token assumed when bounding free text: the floor (a
/// token decodes to at least one character), so the bound is a guarantee.
const CHARS_PER_TOKEN: usize = 1;
/// Tokens set aside per output field for its marker and separators.
const MARKER_TOKENS: usize = 16;
/// No string field is bounded below this many characters.
const MIN_TEXT_CHARS: usize = 32;

/// The character bound of each top-level string output of `sig` under a
/// budget of `max_tokens` (None when the signature has no string output).
pub fn text_budget(sig: &Signature, max_tokens: u32) -> Option<usize> {
    let text_fields = sig.outputs.iter().filter(|f| is_text(&f.ty)).count();
    if text_fields == 0 {
        return None;
    }
    let tokens = (max_tokens as usize).saturating_sub(MARKER_TOKENS * (sig.outputs.len() + 1));
    Some((tokens * CHARS_PER_TOKEN / text_fields).max(MIN_TEXT_CHARS))
}

fn is_text(ty: &FieldType) -> bool {
    match ty {
        FieldType::String => true,
        FieldType::Optional { inner } => is_text(inner),
        _ => false,
    }
}

/// Grammar for chat-adapter replies: the output sections in order, then
/// `[[ ## completed ## ]]`. With `max_tokens`, string fields are bounded
/// (see [`text_budget`]).
pub fn chat_grammar(sig: &Signature, max_tokens: Option<u32>) -> String {
    let mut g = Builder {
        text_bound: max_tokens.and_then(|m| text_budget(sig, m)),
        ..Builder::default()
    };
    let mut root = String::new();
    let names = g.field_rule_names(sig);
    for (i, (f, rule)) in sig.outputs.iter().zip(&names).enumerate() {
        let lead = if i == 0 { "" } else { "\n\n" };
        let _ = write!(
            root,
            "{} {} ",
            literal(&format!("{lead}[[ ## {} ## ]]\n", f.name)),
            rule
        );
        let body = g.top_value(&f.ty, false);
        g.define(rule, body);
    }
    root.push_str(&literal("\n\n[[ ## completed ## ]]"));
    g.finish(root)
}

/// Grammar for JSON-adapter replies: one object with exactly the output
/// keys, in order, with typed values. With `max_tokens`, string fields are
/// bounded (see [`text_budget`]).
pub fn json_grammar(sig: &Signature, max_tokens: Option<u32>) -> String {
    let mut g = Builder {
        text_bound: max_tokens.and_then(|m| text_budget(sig, m)),
        ..Builder::default()
    };
    g.need("ws");
    let mut root = String::from(r#""{" ws "#);
    let names = g.field_rule_names(sig);
    for (i, (f, rule)) in sig.outputs.iter().zip(&names).enumerate() {
        if i > 0 {
            root.push_str(r#""," ws "#);
        }
        let key = serde_json::to_string(&f.name).unwrap_or_default();
        let _ = write!(root, r#"{} ws ":" ws {} ws "#, literal(&key), rule);
        let body = g.top_value(&f.ty, true);
        g.define(rule, body);
    }
    root.push_str(r#""}""#);
    g.finish(root)
}

#[derive(Default)]
struct Builder {
    /// Field rules in definition order.
    fields: Vec<(String, String)>,
    /// Shared helper rules needed (emitted in a fixed order).
    helpers: Vec<&'static str>,
    /// Character bound of top-level string fields, if any.
    text_bound: Option<usize>,
}

impl Builder {
    /// `sentiment-value`, `is-sure-value`, ... unique and valid.
    fn field_rule_names(&self, sig: &Signature) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (i, f) in sig.outputs.iter().enumerate() {
            let mut base: String = f
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            base = base.trim_matches('-').to_string();
            if base.is_empty() {
                base = format!("field{}", i + 1);
            }
            let mut name = format!("{base}-value");
            if names.contains(&name) {
                name = format!("{base}-{}-value", i + 1);
            }
            names.push(name);
        }
        names
    }

    fn define(&mut self, name: &str, body: String) {
        self.fields.push((name.to_string(), body));
    }

    fn need(&mut self, helper: &'static str) {
        let deps: &[&'static str] = match helper {
            "json-value" => &[
                "json-object",
                "json-array",
                "json-string",
                "json-number",
                "ws",
            ],
            "json-object" => &["json-string", "json-value", "ws"],
            "json-string" => &["json-char"],
            "json-array" => &["json-value", "ws"],
            "str-value" => &["str-start", "str-char"],
            _ => &[],
        };
        if self.helpers.contains(&helper) {
            return;
        }
        self.helpers.push(helper);
        for d in deps {
            self.need(d);
        }
    }

    fn finish(mut self, root: String) -> String {
        let mut out = format!("root ::= {}\n", root.trim_end());
        for (name, body) in &self.fields {
            let _ = writeln!(out, "{name} ::= {body}");
        }
        // Fixed order keeps the text stable (snapshots, cache keys).
        const ORDER: [(&str, &str); 13] = [
            ("str-value", STR_VALUE),
            ("str-start", STR_START),
            ("str-char", STR_CHAR),
            ("text-start", TEXT_START),
            ("text-char", TEXT_CHAR),
            ("json-value", JSON_VALUE),
            ("json-object", JSON_OBJECT),
            ("json-array", JSON_ARRAY),
            ("json-string", JSON_STRING),
            ("json-char", JSON_CHAR),
            ("json-number", JSON_NUMBER),
            ("json-int", JSON_INT),
            ("ws", WS),
        ];
        self.helpers
            .sort_by_key(|h| ORDER.iter().position(|(n, _)| n == h));
        for (name, body) in ORDER {
            if self.helpers.contains(&name) {
                let _ = writeln!(out, "{name} ::= {body}");
            }
        }
        out
    }

    /// A top-level field's value (as JSON when `json`, else as a chat
    /// section), with string fields, also optional ones, length-bounded when
    /// a bound is set.
    fn top_value(&mut self, ty: &FieldType, json: bool) -> String {
        let Some(n) = self.text_bound else {
            return self.value(ty, json);
        };
        match ty {
            FieldType::String if json => {
                self.need("json-char");
                format!(r#""\"" json-char{{0,{n}}} "\"""#)
            }
            FieldType::String => {
                self.need("text-start");
                self.need("text-char");
                format!("text-start text-char{{0,{}}}", n.saturating_sub(1))
            }
            FieldType::Optional { inner } if is_text(inner) => {
                let none = if json { r#""null""# } else { r#""None""# };
                format!("( {} ) | {none}", self.top_value(inner, json))
            }
            _ => self.value(ty, json),
        }
    }

    fn value(&mut self, ty: &FieldType, json: bool) -> String {
        if json {
            self.json_value(ty)
        } else {
            self.chat_value(ty)
        }
    }

    /// A value as written in a chat section.
    fn chat_value(&mut self, ty: &FieldType) -> String {
        match ty {
            FieldType::String => {
                self.need("str-value");
                "str-value".into()
            }
            FieldType::Int => r#""-"? [0-9]+"#.into(),
            FieldType::Float => r#""-"? [0-9]+ ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?"#.into(),
            FieldType::Bool => r#""True" | "False" | "true" | "false""#.into(),
            FieldType::Enum { values } => alternatives(values.iter().map(|v| literal(v))),
            FieldType::List { .. } | FieldType::Json { .. } => self.json_value(ty),
            FieldType::Optional { inner } => {
                format!(r#"( {} ) | "None""#, self.chat_value(inner))
            }
        }
    }

    /// A value as written inside JSON.
    fn json_value(&mut self, ty: &FieldType) -> String {
        match ty {
            FieldType::String => {
                self.need("json-string");
                "json-string".into()
            }
            FieldType::Int => {
                self.need("json-int");
                "json-int".into()
            }
            FieldType::Float => {
                self.need("json-number");
                "json-number".into()
            }
            FieldType::Bool => r#""true" | "false""#.into(),
            FieldType::Enum { values } => alternatives(
                values
                    .iter()
                    .map(|v| literal(&serde_json::to_string(v).unwrap_or_default())),
            ),
            FieldType::List { item } => {
                self.need("ws");
                let item = self.json_value(item);
                format!(r#""[" ws ( ( {item} ) ws ( "," ws ( {item} ) ws )* )? "]""#)
            }
            FieldType::Optional { inner } => format!(r#"( {} ) | "null""#, self.json_value(inner)),
            FieldType::Json { schema } => match schema {
                Some(s) => self.schema_value(s, 0),
                None => {
                    self.need("json-object");
                    "json-object".into()
                }
            },
        }
    }

    /// A value shaped by a JSON schema (types, properties, items, enum,
    /// anyOf); anything it cannot express becomes a generic JSON value.
    fn schema_value(&mut self, schema: &Value, depth: usize) -> String {
        let generic = |g: &mut Self| {
            g.need("json-value");
            "json-value".to_string()
        };
        let Some(s) = schema.as_object() else {
            return generic(self);
        };
        if depth > 16 {
            return generic(self);
        }
        if let Some(Value::Array(vals)) = s.get("enum") {
            if !vals.is_empty() {
                return alternatives(vals.iter().map(|v| literal(&v.to_string())));
            }
        }
        if let Some(c) = s.get("const") {
            return literal(&c.to_string());
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(opts)) = s.get(key) {
                if !opts.is_empty() {
                    let alts: Vec<String> = opts
                        .iter()
                        .map(|o| format!("( {} )", self.schema_value(o, depth + 1)))
                        .collect();
                    return alts.join(" | ");
                }
            }
        }
        match s.get("type").and_then(Value::as_str) {
            Some("string") => self.json_value(&FieldType::String),
            Some("integer") => self.json_value(&FieldType::Int),
            Some("number") => self.json_value(&FieldType::Float),
            Some("boolean") => self.json_value(&FieldType::Bool),
            Some("null") => r#""null""#.into(),
            Some("array") => {
                self.need("ws");
                let item = match s.get("items") {
                    Some(i) => self.schema_value(i, depth + 1),
                    None => generic(self),
                };
                format!(r#""[" ws ( ( {item} ) ws ( "," ws ( {item} ) ws )* )? "]""#)
            }
            Some("object") => match s.get("properties").and_then(Value::as_object) {
                // A closed set of properties: exactly these keys, in order.
                Some(props) if !props.is_empty() => {
                    self.need("ws");
                    let mut body = String::from(r#""{" ws "#);
                    for (i, (k, ps)) in props.iter().enumerate() {
                        if i > 0 {
                            body.push_str(r#""," ws "#);
                        }
                        let key = serde_json::to_string(k).unwrap_or_default();
                        let v = self.schema_value(ps, depth + 1);
                        let _ = write!(body, r#"{} ws ":" ws ( {v} ) ws "#, literal(&key));
                    }
                    body.push_str(r#""}""#);
                    body
                }
                _ => {
                    self.need("json-object");
                    "json-object".into()
                }
            },
            _ => generic(self),
        }
    }
}

fn alternatives(items: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = items.collect();
    if v.is_empty() {
        // An enum with no values admits nothing; keep the grammar valid.
        return r#""""#.into();
    }
    v.join(" | ")
}

/// A GBNF string literal.
pub fn literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
