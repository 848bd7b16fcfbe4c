//! Reading the almost-JSON models write: JSON, Python literals, and the
//! common breakages, the way DSPy's `json_repair` reads them.
//!
//! Models asked for JSON or "a valid Python list" write single quotes,
//! `True`/`False`/`None`, trailing commas, digit separators (`123_456.789`),
//! tuples, and drop a closing bracket or two. DSPy feeds such text to the
//! `json_repair` library; lmc reads it with this small recursive-descent
//! reader instead. The crates.io repairers tried (`llm_json` 1.0.3,
//! `jsonrepair` 0.1.0) both overflow the stack on deeply nested input (a
//! hostile reply could crash lmc) and read `123_456.789` as `123` plus a
//! junk key; `llm_json` also turns the dropped-brace tool call into the wrong
//! object. The repairs here are deliberately few and predictable:
//!
//! - a structure still open at the end of the text is closed;
//! - a closing bracket of the wrong kind closes the open structure (so
//!   `[{'a': {'b': 1}]` is a list holding one object, as `json_repair` reads
//!   it) and is then matched against the enclosing one;
//! - a missing comma between two items is assumed when the next item starts
//!   with a quote.
//!
//! Unquoted keys and bare words are *not* repaired: `{invalid json}` is not
//! an object, so nothing can mistake it for one. Nesting is bounded by
//! [`MAX_DEPTH`].

use serde_json::{Map, Number, Value};

/// Deepest nesting read; deeper input is refused rather than risking the stack.
pub const MAX_DEPTH: usize = 64;

/// The whole of `text` as one value (surrounding whitespace allowed).
pub fn read_whole(text: &str) -> Option<Value> {
    let mut r = Reader::new(text);
    let v = r.value()?;
    r.ws();
    (r.i == r.s.len()).then_some(v)
}

/// A value at the start of `text`, and the byte offset where it ends
/// (whatever follows is ignored).
pub fn read_prefix(text: &str) -> Option<(Value, usize)> {
    let mut r = Reader::new(text);
    let v = r.value()?;
    Some((v, r.i))
}

/// The byte offset just past the bracket that closes the one at `start`
/// (quotes respected), or `None` if it is never closed. Used to step over a
/// structure that could not be read, so no fragment inside it is taken.
pub fn skip_balanced(text: &str, start: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut quote: Option<u8> = None;
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(_) if c == b'\\' => i += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                b'"' | b'\'' => quote = Some(c),
                b'{' | b'[' | b'(' => depth += 1,
                b'}' | b']' | b')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            },
        }
        i += 1;
    }
    None
}

struct Reader<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
    depth: usize,
}

/// What ends a container while reading it.
enum End {
    /// Its own closing bracket (consumed).
    Closed,
    /// The end of the text, or a closing bracket of another kind (left for
    /// the enclosing container): the container is closed implicitly.
    Implicit,
}

impl<'a> Reader<'a> {
    fn new(text: &'a str) -> Self {
        Reader {
            s: text.as_bytes(),
            src: text,
            i: 0,
            depth: 0,
        }
    }

    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn value(&mut self) -> Option<Value> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'[' => self.seq(b']'),
            b'(' => self.seq(b')'),
            b'{' => self.dict(),
            b'\'' | b'"' => self.string().map(Value::String),
            _ => self.atom(),
        }
    }

    /// After an item: a separator, the container's own closer, or an
    /// implicit close. `None` when what follows cannot continue the container.
    fn after_item(&mut self, close: u8) -> Option<Option<End>> {
        match self.peek() {
            None => Some(Some(End::Implicit)),
            Some(b',') => {
                self.i += 1;
                Some(None)
            }
            Some(c) if c == close => {
                self.i += 1;
                Some(Some(End::Closed))
            }
            Some(b'}' | b']' | b')') => Some(Some(End::Implicit)),
            // A forgotten comma before the next quoted item.
            Some(b'"' | b'\'') => Some(None),
            Some(_) => None,
        }
    }

    /// Before an item: the container's own closer (also after a trailing
    /// comma), an implicit close, or `None` to read an item.
    fn before_item(&mut self, close: u8) -> Option<End> {
        match self.peek() {
            None => Some(End::Implicit),
            Some(c) if c == close => {
                self.i += 1;
                Some(End::Closed)
            }
            Some(b'}' | b']' | b')') => Some(End::Implicit),
            Some(_) => None,
        }
    }

    fn seq(&mut self, close: u8) -> Option<Value> {
        self.i += 1;
        self.depth += 1;
        let mut items = Vec::new();
        loop {
            if self.before_item(close).is_some() {
                break;
            }
            items.push(self.value()?);
            if self.after_item(close)?.is_some() {
                break;
            }
        }
        self.depth -= 1;
        Some(Value::Array(items))
    }

    fn dict(&mut self) -> Option<Value> {
        self.i += 1;
        self.depth += 1;
        let mut m = Map::new();
        loop {
            if self.before_item(b'}').is_some() {
                break;
            }
            // Keys are quoted strings or Python scalars (`{1: 'a'}`); a bare
            // word is not a key, so `{invalid json}` is not an object.
            let key = match self.peek()? {
                b'\'' | b'"' => self.string()?,
                b'{' | b'[' | b'(' => return None,
                _ => match self.atom()? {
                    Value::String(s) => s,
                    other => other.to_string(),
                },
            };
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            let v = self.value()?;
            m.insert(key, v);
            if self.after_item(b'}')?.is_some() {
                break;
            }
        }
        self.depth -= 1;
        Some(Value::Object(m))
    }

    /// A single- or double-quoted string with JSON and Python escapes; one
    /// left open at the end of the text runs to the end (a cut-off reply).
    fn string(&mut self) -> Option<String> {
        let q = self.s[self.i];
        self.i += 1;
        let mut out = String::new();
        let mut run = self.i;
        while self.i < self.s.len() {
            let b = self.s[self.i];
            if b == q {
                out.push_str(self.src.get(run..self.i)?);
                self.i += 1;
                return Some(out);
            }
            if b != b'\\' {
                self.i += 1;
                continue;
            }
            out.push_str(self.src.get(run..self.i)?);
            let e = *self.s.get(self.i + 1)?;
            self.i += 2;
            match e {
                b'n' => out.push('\n'),
                b't' => out.push('\t'),
                b'r' => out.push('\r'),
                b'b' => out.push('\u{08}'),
                b'f' => out.push('\u{0c}'),
                b'/' => out.push('/'),
                b'\\' | b'\'' | b'"' => out.push(e as char),
                b'u' => out.push(self.unicode_escape()?),
                _ => {
                    // Unknown escapes stay as written, as in Python.
                    out.push('\\');
                    self.i -= 1;
                }
            }
            run = self.i;
        }
        out.push_str(self.src.get(run..)?);
        Some(out)
    }

    /// The code point of `\uXXXX` (the `\u` already read), joining a
    /// surrogate pair; a lone surrogate becomes U+FFFD.
    fn unicode_escape(&mut self) -> Option<char> {
        let hex4 = |r: &mut Self| -> Option<u32> {
            let h = r.src.get(r.i..r.i + 4)?;
            let v = u32::from_str_radix(h, 16).ok()?;
            r.i += 4;
            Some(v)
        };
        let hi = hex4(self)?;
        if (0xD800..0xDC00).contains(&hi) && self.src.get(self.i..self.i + 2) == Some("\\u") {
            let save = self.i;
            self.i += 2;
            match hex4(self) {
                Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                    let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                    return char::from_u32(c);
                }
                _ => self.i = save,
            }
        }
        Some(char::from_u32(hi).unwrap_or('\u{FFFD}'))
    }

    /// `True`/`False`/`None` (and JSON's spellings) or a number, Python's
    /// digit separators allowed between digits.
    fn atom(&mut self) -> Option<Value> {
        let start = self.i;
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_alphanumeric() || b"+-._".contains(&self.s[self.i]))
        {
            self.i += 1;
        }
        match self.src.get(start..self.i)? {
            "True" | "true" => Some(Value::Bool(true)),
            "False" | "false" => Some(Value::Bool(false)),
            "None" | "null" => Some(Value::Null),
            w => number(w),
        }
    }
}

/// A number as Python writes it, `_` allowed only between two digits.
fn number(word: &str) -> Option<Value> {
    let b = word.as_bytes();
    let mut digits = String::with_capacity(word.len());
    for (k, &c) in b.iter().enumerate() {
        if c == b'_' {
            let between =
                k > 0 && b[k - 1].is_ascii_digit() && b.get(k + 1).is_some_and(u8::is_ascii_digit);
            if !between {
                return None;
            }
        } else {
            digits.push(c as char);
        }
    }
    let digits = digits.strip_prefix('+').unwrap_or(&digits);
    if let Ok(i) = digits.parse::<i64>() {
        return Some(Value::Number(i.into()));
    }
    // Rust also parses "inf" and "NaN"; neither is a JSON number.
    if !digits.bytes().any(|c| c.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(Number::from_f64)
        .map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn whole(t: &str) -> Option<Value> {
        read_whole(t)
    }

    #[test]
    fn python_literals_and_json() {
        assert_eq!(
            whole("{'a': True, 'b': None, \"c\": false}"),
            Some(json!({"a": true, "b": null, "c": false}))
        );
        assert_eq!(whole("(1, 'x')"), Some(json!([1, "x"])));
        assert_eq!(whole("[1, 2, 3,]"), Some(json!([1, 2, 3])));
        assert_eq!(whole("{'k': 'it\\'s'}"), Some(json!({"k": "it's"})));
        assert_eq!(whole(r#"["\u00e9\ud83d\ude00"]"#), Some(json!(["é😀"])));
        assert_eq!(whole("{1: 'a'}"), Some(json!({"1": "a"})));
    }

    #[test]
    fn digit_separators_only_between_digits() {
        assert_eq!(
            whole("{'score': 123_456.789}"),
            Some(json!({"score": 123456.789}))
        );
        assert_eq!(whole("1_000"), Some(json!(1000)));
        assert_eq!(whole("_1"), None);
        assert_eq!(whole("1__0"), None);
        assert_eq!(whole("1_"), None);
        assert_eq!(whole("inf"), None);
        assert_eq!(whole("NaN"), None);
    }

    #[test]
    fn unclosed_and_mismatched_brackets_close_the_open_structure() {
        assert_eq!(
            whole("[{'name': 'get_weather', 'args': {'city': 'Paris'}]"),
            Some(json!([{"name": "get_weather", "args": {"city": "Paris"}}]))
        );
        assert_eq!(
            whole("{'outer': {'inner': 1}, 'bad': [1, 2}"),
            Some(json!({"outer": {"inner": 1}, "bad": [1, 2]}))
        );
        assert_eq!(
            whole("{\"a\": [1, {\"b\": 2"),
            Some(json!({"a": [1, {"b": 2}]}))
        );
        assert_eq!(whole("{\"a\": \"cut"), Some(json!({"a": "cut"})));
        assert_eq!(whole("{\"a\": 1 \"b\": 2}"), Some(json!({"a": 1, "b": 2})));
    }

    #[test]
    fn bare_words_are_not_repaired() {
        assert_eq!(whole("{invalid json}"), None);
        assert_eq!(whole("{answer: 'x'}"), None);
        assert_eq!(whole("[a, b]"), None);
        assert_eq!(whole("{\"a\": }"), None);
        assert_eq!(whole("{\"a\" 1}"), None);
    }

    #[test]
    fn depth_is_bounded() {
        assert_eq!(whole(&"[".repeat(100_000)), None);
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert!(whole(&ok).is_some());
    }

    #[test]
    fn prefixes_and_balanced_skips() {
        assert_eq!(read_prefix("{'a': 1} tail"), Some((json!({"a": 1}), 8)));
        assert_eq!(skip_balanced("{a [b] 'x}' c} d", 0), Some(14));
        assert_eq!(skip_balanced("{a [b", 0), None);
    }
}
