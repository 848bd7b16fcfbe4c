//! Type strings and the signature shorthand.
//!
//! Program files write field types as strings (`str`, `list[str]`,
//! `enum[positive, negative]`) and may write a whole signature in DSPy's
//! string form (`"question, context: list[str] -> answer: int"`). DSPy users
//! will paste Python-flavoured types too, so `Literal['a', 'b']`,
//! `Optional[int]`, `List[str]` and `dict` are accepted as synonyms. This
//! module only parses text; lowering attaches positions to its errors.

use crate::diag::did_you_mean;
use crate::signature::{Field, FieldType};

/// A problem in a type string or a shorthand signature.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ShorthandError {
    pub message: String,
    pub hint: Option<String>,
}

impl ShorthandError {
    fn new(message: impl Into<String>) -> Self {
        ShorthandError {
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Type names accepted in program files (for did-you-mean).
pub const TYPE_NAMES: &[&str] = &[
    "str", "int", "float", "bool", "json", "enum", "list", "optional", "Literal", "Optional",
];

/// Deepest nesting of `list[...]`/`optional[...]` a type may have. Types are
/// walked recursively everywhere (rendering, grammars, value checks), so
/// the bound is set here, where every type is born.
pub const MAX_TYPE_DEPTH: usize = 32;

/// Parse a type string such as `list[optional[int]]` or `Literal['a', 'b']`.
pub fn parse_type(text: &str) -> Result<FieldType, ShorthandError> {
    parse_type_at(text, 1)
}

fn parse_type_at(text: &str, depth: usize) -> Result<FieldType, ShorthandError> {
    if depth > MAX_TYPE_DEPTH {
        return Err(ShorthandError::new(format!(
            "type nested more than {MAX_TYPE_DEPTH} levels deep"
        ))
        .hint("no field needs this much nesting; use `json` for deep structures"));
    }
    let t = text.trim();
    if t.is_empty() {
        return Err(ShorthandError::new("empty type")
            .hint("write a type such as `str`, `int` or `list[str]`"));
    }
    let (head, args) = match t.find('[') {
        Some(open) => {
            if !t.ends_with(']') {
                return Err(
                    ShorthandError::new(format!("bad type `{}`: unclosed `[`", clip(t)))
                        .hint("close the bracket, e.g. `list[str]`"),
                );
            }
            (t[..open].trim(), Some(&t[open + 1..t.len() - 1]))
        }
        None => (t, None),
    };
    let lower = head.to_ascii_lowercase();
    let need_args = |what: &str| -> Result<&str, ShorthandError> {
        match args {
            Some(a) if !a.trim().is_empty() => Ok(a),
            _ => Err(
                ShorthandError::new(format!("`{}` needs {what}", clip(head)))
                    .hint(format!("e.g. `{}`", example_for(&lower))),
            ),
        }
    };
    let no_args = |ty: FieldType| -> Result<FieldType, ShorthandError> {
        match args {
            None => Ok(ty),
            Some(_) => Err(ShorthandError::new(format!(
                "`{}` takes no `[...]` parameters",
                clip(head)
            ))),
        }
    };
    match lower.as_str() {
        "str" | "string" | "text" => no_args(FieldType::String),
        "int" | "integer" => no_args(FieldType::Int),
        "float" | "number" => no_args(FieldType::Float),
        "bool" | "boolean" => no_args(FieldType::Bool),
        // `dict[str, Any]` is what DSPy prints for JSON fields.
        "json" | "dict" | "object" => Ok(FieldType::Json { schema: None }),
        "enum" | "literal" => {
            let a = need_args("a list of values")?;
            let mut values = Vec::new();
            // A set, not `values.contains`: enums may be long, and the
            // check must stay linear in the length of the type string.
            let mut seen = std::collections::HashSet::new();
            for raw in split_top(a) {
                let v = unquote(raw.trim());
                if v.is_empty() {
                    return Err(ShorthandError::new(format!("empty value in `{}`", clip(t))));
                }
                if !seen.insert(v.clone()) {
                    return Err(ShorthandError::new(format!(
                        "duplicate value `{v}` in `{}`",
                        clip(t)
                    )));
                }
                values.push(v);
            }
            Ok(FieldType::Enum { values })
        }
        "list" => {
            let a = need_args("an item type")?;
            Ok(FieldType::List {
                item: Box::new(parse_type_at(a, depth + 1)?),
            })
        }
        "optional" => {
            let a = need_args("an inner type")?;
            Ok(FieldType::Optional {
                inner: Box::new(parse_type_at(a, depth + 1)?),
            })
        }
        _ => Err(ShorthandError {
            message: format!("unknown type `{}`", clip(head)),
            hint: Some(
                did_you_mean(head, TYPE_NAMES.iter().copied()).unwrap_or_else(|| {
                    "types are str, int, float, bool, json, enum[a, b], list[T], optional[T]".into()
                }),
            ),
        }),
    }
}

/// A type string short enough to quote in a message.
fn clip(t: &str) -> String {
    const MAX: usize = 80;
    match t.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

fn example_for(head: &str) -> &'static str {
    match head {
        "enum" | "literal" => "enum[positive, negative]",
        "list" => "list[str]",
        _ => "optional[int]",
    }
}

/// Strip one layer of matching quotes.
fn unquote(s: &str) -> String {
    for q in ['\'', '"'] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return s[1..s.len() - 1].to_string();
        }
    }
    s.to_string()
}

/// Split on commas that are not inside brackets or quotes.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quote, mut start) = (0i32, None::<char>, 0);
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => depth -= 1,
            (None, ',') if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Whether `name` is usable as a field or node name.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parse a shorthand signature: `"a, b: list[str] -> c: int"`. Fields
/// without a type are `str`. Returns (inputs, outputs).
pub fn parse_signature(text: &str) -> Result<(Vec<Field>, Vec<Field>), ShorthandError> {
    let parts: Vec<&str> = text.split("->").collect();
    if parts.len() != 2 {
        return Err(ShorthandError::new(format!(
            "a shorthand signature has exactly one `->`, found {}",
            parts.len() - 1
        ))
        .hint("write `inputs -> outputs`, e.g. `question -> answer: int`"));
    }
    let inputs = parse_fields(parts[0])?;
    let outputs = parse_fields(parts[1])?;
    for f in &outputs {
        if inputs.iter().any(|i| i.name == f.name) {
            return Err(ShorthandError::new(format!(
                "field `{}` is both an input and an output",
                f.name
            )));
        }
    }
    Ok((inputs, outputs))
}

fn parse_fields(text: &str) -> Result<Vec<Field>, ShorthandError> {
    let mut out: Vec<Field> = Vec::new();
    if text.trim().is_empty() {
        return Ok(out);
    }
    for item in split_top(text) {
        let (name, ty) = match item.split_once(':') {
            Some((n, t)) => (n.trim(), parse_type(t)?),
            None => (item.trim(), FieldType::String),
        };
        if !is_identifier(name) {
            return Err(ShorthandError::new(format!("bad field name `{name}`"))
                .hint("field names are identifiers: letters, digits and `_`"));
        }
        if out.iter().any(|f| f.name == name) {
            return Err(ShorthandError::new(format!("duplicate field `{name}`")));
        }
        out.push(Field::new(name, ty));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use FieldType::*;

    #[test]
    fn types_parse() {
        assert_eq!(parse_type("str").unwrap(), String);
        assert_eq!(
            parse_type("list[optional[int]]").unwrap(),
            List {
                item: Box::new(Optional {
                    inner: Box::new(Int)
                })
            }
        );
        let e = Enum {
            values: vec!["a".into(), "b c".into()],
        };
        assert_eq!(parse_type("enum[a, b c]").unwrap(), e);
        assert_eq!(parse_type("Literal['a', 'b c']").unwrap(), e);
        assert_eq!(parse_type("Literal[\"a\", \"b c\"]").unwrap(), e);
        assert_eq!(
            parse_type("Optional[int]").unwrap(),
            Optional {
                inner: Box::new(Int)
            }
        );
        assert_eq!(parse_type("json").unwrap(), Json { schema: None });
        assert_eq!(parse_type("dict[str, Any]").unwrap(), Json { schema: None });
    }

    #[test]
    fn bad_types_explain() {
        let e = parse_type("lst[str]").unwrap_err();
        assert_eq!(e.message, "unknown type `lst`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `list`?"));
        assert!(parse_type("list[str").is_err());
        assert!(parse_type("enum[]").is_err());
        assert!(parse_type("enum[a, a]").is_err());
        assert!(parse_type("int[3]").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let ok = format!(
            "{}str{}",
            "list[".repeat(MAX_TYPE_DEPTH - 1),
            "]".repeat(MAX_TYPE_DEPTH - 1)
        );
        assert!(parse_type(&ok).is_ok());
        let deep = format!("{}str{}", "list[".repeat(20_000), "]".repeat(20_000));
        let e = parse_type(&deep).unwrap_err();
        assert!(e.message.contains("nested more than"), "{e}");
    }

    proptest::proptest! {
        /// Arbitrary text never panics the type or signature parser.
        #[test]
        fn never_panics(s in "[\\[\\]a-zA-Z_:, '\"\\->|]{0,40}") {
            let _ = parse_type(&s);
            let _ = parse_signature(&s);
        }
    }

    #[test]
    fn shorthand_signatures() {
        let (i, o) = parse_signature("question, context: list[str] -> answer: int").unwrap();
        assert_eq!(i.len(), 2);
        assert_eq!(i[0].ty, String);
        assert_eq!(
            i[1].ty,
            List {
                item: Box::new(String)
            }
        );
        assert_eq!(o[0].name, "answer");
        assert_eq!(o[0].ty, Int);
        let (_, o) = parse_signature("q -> label: Literal['x', 'y'], score: float").unwrap();
        assert_eq!(o.len(), 2);
        assert!(parse_signature("a -> b -> c").is_err());
        assert!(parse_signature("a b -> c").is_err());
        assert!(parse_signature("a -> a").is_err());
        let (i, o) = parse_signature(" -> c").unwrap();
        assert!(i.is_empty() && o.len() == 1);
    }
}
