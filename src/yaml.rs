//! YAML with positions: the only module that touches the YAML library.
//!
//! Program files are YAML, and every diagnostic must point at a line and
//! column, so we need a tree that remembers where each key and value was
//! written. serde_yaml cannot give that (it is also deprecated upstream), so
//! this module drives yaml-rust2's event parser itself, builds a
//! [`YNode`] tree with a [`Pos`] on every node and key, reports duplicate
//! keys (which YAML libraries usually resolve silently, last one wins), and
//! converts the tree to `serde_json::Value` plus a path → position index
//! for the serde-based spec layer. Syntax errors (bad indentation, tabs,
//! unclosed quotes) come back as located diagnostics, never panics.
//!
//! Program files arrive in pull requests, so this reader is bounded: the
//! event loop is driven here (yaml-rust2's own `load` recurses once per
//! nesting level), nesting deeper than [`MAX_DEPTH`] is refused, and alias
//! expansion is charged against a node and byte budget so a "billion
//! laughs" file fails at the first alias over budget instead of expanding
//! exponentially. Every tree this module returns is at most [`MAX_DEPTH`]
//! deep, which is what lets the recursive walks below (and in callers) stay
//! recursive.

use serde_json::{Map, Number, Value};
use std::collections::{BTreeMap, HashMap};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

use crate::diag::{Diagnostic, Pos};

/// Deepest nesting of mappings and sequences a YAML file may have. Program
/// files need a handful of levels (JSON schemas a few more); serde_json
/// stops at 128 for the same reason.
pub const MAX_DEPTH: usize = 64;
/// Nodes that alias expansion may add to a document, all aliases together.
pub const MAX_ALIAS_NODES: usize = 100_000;
/// Scalar bytes that alias expansion may add to a document.
pub const MAX_ALIAS_BYTES: usize = 16 << 20;
const DEPTH_HINT: &str = "flatten the structure; no lmc file needs this much nesting";
/// Duplicate keys reported one by one; the rest are counted.
const MAX_DUPLICATES: usize = 100;

/// A YAML node with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct YNode {
    pub pos: Pos,
    pub value: YValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum YValue {
    /// A scalar as written; `plain` is false for quoted and block scalars
    /// (which are always strings).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<YNode>),
    /// Entries in the order written (duplicates already dropped).
    Map(Vec<YEntry>),
}

/// One `key: value` entry of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct YEntry {
    pub key: String,
    pub key_pos: Pos,
    pub value: YNode,
}

impl YNode {
    /// The mapping entries, if this is a mapping.
    pub fn entries(&self) -> Option<&[YEntry]> {
        match &self.value {
            YValue::Map(e) => Some(e),
            _ => None,
        }
    }

    /// The value of `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&YEntry> {
        self.entries()?.iter().find(|e| e.key == key)
    }

    /// The scalar text, if this is a string-ish scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            YValue::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The node as JSON (YAML 1.2 core schema for plain scalars).
    pub fn to_json(&self) -> Value {
        match &self.value {
            YValue::Scalar { text, plain } => {
                if *plain {
                    scalar_to_json(text)
                } else {
                    Value::String(text.clone())
                }
            }
            YValue::Seq(items) => Value::Array(items.iter().map(YNode::to_json).collect()),
            YValue::Map(entries) => {
                let mut m = Map::new();
                for e in entries {
                    m.insert(e.key.clone(), e.value.to_json());
                }
                Value::Object(m)
            }
        }
    }

    /// Every node's YAML path (`nodes.classify.inputs.sentence`,
    /// `metric[0].type`) mapped to its positions.
    pub fn index(&self) -> PosIndex {
        let mut idx = PosIndex::default();
        fn walk(n: &YNode, path: &str, idx: &mut PosIndex) {
            idx.values.insert(path.to_string(), n.pos);
            match &n.value {
                YValue::Scalar { .. } => {}
                YValue::Seq(items) => {
                    for (i, it) in items.iter().enumerate() {
                        walk(it, &format!("{path}[{i}]"), idx);
                    }
                }
                YValue::Map(entries) => {
                    for e in entries {
                        let p = join(path, &e.key);
                        idx.keys.insert(p.clone(), e.key_pos);
                        walk(&e.value, &p, idx);
                    }
                }
            }
        }
        walk(self, "", &mut idx);
        idx
    }
}

/// Append a mapping key to a YAML path.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// YAML path → position of the key and of the value written there.
#[derive(Debug, Clone, Default)]
pub struct PosIndex {
    keys: BTreeMap<String, Pos>,
    values: BTreeMap<String, Pos>,
}

impl PosIndex {
    /// Where the value at `path` starts.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.values.get(path).copied()
    }

    /// Where the key of `path` is written.
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied()
    }

    /// The best position for a problem at `path`: the value if it exists,
    /// else the nearest enclosing path that was written.
    pub fn locate(&self, path: &str) -> Option<Pos> {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.values.get(&p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '[']);
            match cut {
                Some(i) => p.truncate(i),
                None if !p.is_empty() => p.clear(),
                None => return None,
            }
        }
    }
}

/// A parsed document and the problems that did not stop parsing
/// (duplicate keys).
#[derive(Debug, Clone)]
pub struct Document {
    pub root: YNode,
    pub problems: Vec<Diagnostic>,
}

/// Parse one YAML document. A syntax error is returned as a located
/// diagnostic; several documents in one file are an error too.
#[allow(clippy::result_large_err)] // one error per parse; callers keep the plain type
pub fn parse(source: &str) -> Result<Document, Diagnostic> {
    // Editors on Windows may save a byte-order mark; it is not part of the YAML.
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(source);
    // Pull events one at a time (the parser itself is an explicit state
    // machine), so depth costs no stack and a fatal problem stops the read.
    loop {
        let (ev, mark) = match parser.next_token() {
            Ok(e) => e,
            Err(e) => {
                let m = e.marker();
                // The scanner stops flow nesting (`[[[...`) at 255 levels
                // on its own, before the depth check below sees it.
                if e.info() == "recursion limit exceeded" {
                    return Err(Diagnostic::error(format!(
                        "YAML nested more than {MAX_DEPTH} levels deep"
                    ))
                    .at(Some(pos_of(m)))
                    .hint(DEPTH_HINT));
                }
                return Err(Diagnostic::error(format!("invalid YAML: {}", e.info()))
                    .at(Some(pos_of(m)))
                    .maybe_hint(syntax_hint(source, m.line(), e.info())));
            }
        };
        let end = ev == Event::StreamEnd;
        builder.on_event(ev, mark);
        if let Some((msg, pos, hint)) = builder.fatal.take() {
            return Err(Diagnostic::error(msg).at(Some(pos)).maybe_hint(hint));
        }
        if end {
            break;
        }
    }
    if builder.docs.len() > 1 {
        return Err(
            Diagnostic::error("a program file holds one YAML document, found several")
                .at(Some(builder.docs[1].pos))
                .hint("remove the `---` separator and the second document"),
        );
    }
    let root = builder.docs.pop().unwrap_or(YNode {
        pos: Pos::new(1, 1),
        value: YValue::Scalar {
            text: String::new(),
            plain: true,
        },
    });
    let mut problems = builder.problems;
    if builder.duplicates > MAX_DUPLICATES {
        problems.push(
            Diagnostic::error(format!(
                "{} more duplicate keys not listed",
                builder.duplicates - MAX_DUPLICATES
            ))
            .hint("remove the repeated keys; names must be unique"),
        );
    }
    Ok(Document { root, problems })
}

/// A hint for common syntax mistakes, read off the offending line.
fn syntax_hint(source: &str, line: usize, info: &str) -> Option<String> {
    let text = source.lines().nth(line.saturating_sub(1)).unwrap_or("");
    if text.starts_with('\t')
        || text.trim_start_matches(' ').starts_with('\t')
        || info.contains("tab")
    {
        return Some("YAML indentation must use spaces, not tabs".into());
    }
    if info.contains("quoted") || info.contains("unexpected end of stream") {
        return Some("check for an unclosed quote or bracket".into());
    }
    if info.contains("mapping values are not allowed") {
        return Some("check the indentation, or quote a value that contains `: `".into());
    }
    if info.contains("did not find expected key") || info.contains("block") {
        return Some("check the indentation: keys of one mapping must line up".into());
    }
    None
}

fn pos_of(m: &Marker) -> Pos {
    // yaml-rust2 markers: line is 1-based, col is 0-based.
    Pos::new(m.line().max(1), m.col() + 1)
}

/// Resolve a plain scalar as the YAML core schema does.
fn scalar_to_json(text: &str) -> Value {
    match Yaml::from_str(text) {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::Real(r) => match r.parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Value::Number(n),
            None => Value::String(text.to_string()),
        },
        _ => Value::String(text.to_string()),
    }
}

/// Builds [`YNode`] trees from parser events.
#[derive(Default)]
struct Builder {
    /// Open containers: a node plus, for maps, a pending key.
    stack: Vec<Frame>,
    docs: Vec<YNode>,
    /// Anchored nodes with their size (see [`Size`]), for aliases.
    anchors: HashMap<usize, (YNode, Size)>,
    /// What alias expansion has added so far.
    expanded: Size,
    problems: Vec<Diagnostic>,
    /// Duplicate keys seen (reported up to [`MAX_DUPLICATES`]).
    duplicates: usize,
    /// The problem that stops reading: message, position, hint.
    fatal: Option<(String, Pos, Option<String>)>,
}

/// What a subtree costs: nodes, scalar bytes, and height (levels of
/// containers, 0 for a scalar).
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: usize,
    bytes: usize,
    height: usize,
}

impl Size {
    /// Measured once per anchor; nested anchors re-measure their subtrees,
    /// which costs at most [`MAX_DEPTH`] times the document.
    fn of(node: &YNode) -> Size {
        match &node.value {
            YValue::Scalar { text, .. } => Size {
                nodes: 1,
                bytes: text.len(),
                height: 0,
            },
            YValue::Seq(items) => Size::children(items.iter()),
            YValue::Map(entries) => {
                let mut s = Size::children(entries.iter().map(|e| &e.value));
                s.bytes += entries.iter().map(|e| e.key.len()).sum::<usize>();
                s
            }
        }
    }

    fn children<'a>(nodes: impl Iterator<Item = &'a YNode>) -> Size {
        let mut s = Size {
            nodes: 1,
            bytes: 0,
            height: 1,
        };
        for n in nodes {
            let c = Size::of(n);
            s.nodes += c.nodes;
            s.bytes += c.bytes;
            s.height = s.height.max(c.height + 1);
        }
        s
    }
}

struct Frame {
    node: YNode,
    anchor: usize,
    /// For maps: the key read, waiting for its value.
    key: Option<(String, Pos)>,
    /// For maps: keys seen, for duplicate detection.
    seen: HashMap<String, Pos>,
}

impl Builder {
    fn fail(&mut self, message: impl Into<String>, pos: Pos, hint: Option<String>) {
        if self.fatal.is_none() {
            self.fatal = Some((message.into(), pos, hint));
        }
    }

    /// Open a mapping or sequence, refusing nesting beyond [`MAX_DEPTH`].
    fn open(&mut self, node: YNode, anchor: usize) {
        if self.stack.len() >= MAX_DEPTH {
            self.fail(
                format!("YAML nested more than {MAX_DEPTH} levels deep"),
                node.pos,
                Some(DEPTH_HINT.into()),
            );
            return;
        }
        self.stack.push(Frame {
            node,
            anchor,
            key: None,
            seen: HashMap::new(),
        });
    }

    /// The node an alias stands for, charged against the expansion budget.
    fn expand(&mut self, id: usize, pos: Pos) -> Option<YNode> {
        let Some((node, size)) = self.anchors.get(&id) else {
            self.fail("unknown YAML alias", pos, None);
            return None;
        };
        let size = *size;
        if self.stack.len() + size.height > MAX_DEPTH {
            self.fail(
                format!("this alias nests the YAML more than {MAX_DEPTH} levels deep"),
                pos,
                Some("write the value out, or alias a smaller part of it".into()),
            );
            return None;
        }
        self.expanded.nodes += size.nodes;
        self.expanded.bytes += size.bytes;
        if self.expanded.nodes > MAX_ALIAS_NODES || self.expanded.bytes > MAX_ALIAS_BYTES {
            self.fail(
                format!(
                    "YAML aliases expand to more than {MAX_ALIAS_NODES} nodes or {} MiB",
                    MAX_ALIAS_BYTES >> 20
                ),
                pos,
                Some("aliases that refer to aliases grow exponentially; write the values out or alias less".into()),
            );
            return None;
        }
        Some(YNode {
            pos,
            value: node.value.clone(),
        })
    }

    fn push_value(&mut self, node: YNode, anchor: usize) {
        if anchor > 0 {
            let size = Size::of(&node);
            self.anchors.insert(anchor, (node.clone(), size));
        }
        let Some(top) = self.stack.last_mut() else {
            self.docs.push(node);
            return;
        };
        // yaml-rust2 marks a block mapping or sequence where its first value
        // starts; users expect the first key or `-`.
        if node.pos < top.node.pos {
            top.node.pos = node.pos;
        }
        match &mut top.node.value {
            YValue::Seq(items) => items.push(node),
            YValue::Map(entries) => match top.key.take() {
                None => {
                    // This node is a key.
                    let key = match &node.value {
                        YValue::Scalar { text, .. } => text.clone(),
                        _ => {
                            if self.fatal.is_none() {
                                self.fatal = Some((
                                    "a mapping key must be a plain name, not a list or mapping"
                                        .into(),
                                    node.pos,
                                    None,
                                ));
                            }
                            String::new()
                        }
                    };
                    top.key = Some((key, node.pos));
                }
                Some((key, key_pos)) => {
                    if let Some(first) = top.seen.get(&key).copied() {
                        self.duplicate(key, key_pos, first);
                    } else {
                        top.seen.insert(key.clone(), key_pos);
                        entries.push(YEntry {
                            key,
                            key_pos,
                            value: node,
                        });
                    }
                }
            },
            YValue::Scalar { .. } => {}
        }
    }
}

impl Builder {
    /// Report a duplicate key. The path is built only here, on the error
    /// path, and the report stops at [`MAX_DUPLICATES`] so a file of
    /// repeated keys cannot make the output grow without bound.
    fn duplicate(&mut self, key: String, key_pos: Pos, first: Pos) {
        self.duplicates += 1;
        if self.duplicates > MAX_DUPLICATES {
            return;
        }
        let path = join(&self.path(), &key);
        self.problems.push(
            Diagnostic::error(format!("duplicate key `{key}`"))
                .at(Some(key_pos))
                .path(path)
                .hint(format!(
                    "`{key}` is already written at line {}; names must be unique",
                    first.line
                )),
        );
    }

    /// The YAML path of the container on top of the stack.
    fn path(&self) -> String {
        let mut path = String::new();
        for (i, f) in self.stack.iter().enumerate() {
            if i + 1 == self.stack.len() {
                break;
            }
            match &f.node.value {
                YValue::Map(_) => {
                    if let Some((k, _)) = &f.key {
                        path = join(&path, k);
                    }
                }
                YValue::Seq(items) => path = format!("{path}[{}]", items.len()),
                YValue::Scalar { .. } => {}
            }
        }
        path
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = pos_of(&mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                // `!!str 123` and quoted scalars are strings.
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let plain = style == TScalarStyle::Plain && !tagged_str;
                self.push_value(
                    YNode {
                        pos,
                        value: YValue::Scalar { text, plain },
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.open(
                YNode {
                    pos,
                    value: YValue::Seq(Vec::new()),
                },
                anchor,
            ),
            Event::MappingStart(anchor, _) => self.open(
                YNode {
                    pos,
                    value: YValue::Map(Vec::new()),
                },
                anchor,
            ),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop() {
                    self.push_value(frame.node, frame.anchor);
                }
            }
            Event::Alias(id) => {
                if let Some(node) = self.expand(id, pos) {
                    self.push_value(node, 0);
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_exact() {
        let doc = parse("name: x\nnodes:\n  a:\n    kind: predict\n").unwrap();
        let idx = doc.root.index();
        assert_eq!(idx.key("name"), Some(Pos::new(1, 1)));
        assert_eq!(idx.value("name"), Some(Pos::new(1, 7)));
        assert_eq!(idx.key("nodes.a.kind"), Some(Pos::new(4, 5)));
        assert_eq!(idx.value("nodes.a.kind"), Some(Pos::new(4, 11)));
        assert_eq!(idx.locate("nodes.a.kind.zzz"), Some(Pos::new(4, 11)));
    }

    #[test]
    fn scalars_resolve_like_yaml_core() {
        let doc = parse("a: 1\nb: '1'\nc: true\nd: 1.5\ne: ~\nf: hi\ng: !!str 2\n").unwrap();
        assert_eq!(
            doc.root.to_json(),
            serde_json::json!({"a": 1, "b": "1", "c": true, "d": 1.5, "e": null, "f": "hi", "g": "2"})
        );
    }

    #[test]
    fn byte_order_mark_and_crlf_are_accepted() {
        let doc = parse("\u{feff}name: x\r\nk: 1\r\n").unwrap();
        assert_eq!(doc.root.to_json(), serde_json::json!({"name": "x", "k": 1}));
        assert_eq!(doc.root.index().value("k"), Some(Pos::new(2, 4)));
    }

    #[test]
    fn duplicate_keys_are_reported() {
        let doc = parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(doc.problems.len(), 1);
        assert_eq!(doc.problems[0].pos, Some(Pos::new(3, 1)));
        assert_eq!(doc.root.to_json(), serde_json::json!({"a": 1, "b": 2}));
    }

    #[test]
    fn syntax_errors_are_located() {
        for src in ["a: 'x\n", "a:\n\tb: 1\n", "a: 1\n  b: 2\n", "a: [1, 2\n"] {
            let e = parse(src).unwrap_err();
            assert!(e.pos.is_some(), "{src:?}: {e}");
        }
    }

    #[test]
    fn alias_bombs_stop_at_the_budget() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in "bcdefghij".chars() {
            src.push_str(&format!(
                "{c}: &{c} [{}]\n",
                vec![format!("*{prev}"); 9].join(", ")
            ));
            prev = c;
        }
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("aliases expand"), "{e}");
        assert!(e.pos.is_some_and(|p| p.line > 1), "{e}");
    }

    #[test]
    fn small_aliases_still_work() {
        let doc = parse("base: &b {t: 1}\nx: *b\ny: [*b, *b]\n").unwrap();
        assert_eq!(
            doc.root.to_json(),
            serde_json::json!({"base": {"t": 1}, "x": {"t": 1}, "y": [{"t": 1}, {"t": 1}]})
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion() {
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse(&flow).unwrap_err();
        assert!(e.message.contains("nested more than"), "{e}");
        assert!(e.pos.is_some());
        let block: String = (0..1000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let e = parse(&block).unwrap_err();
        assert!(e.message.contains("nested more than"), "{e}");
        assert_eq!(e.pos.map(|p| p.line), Some(MAX_DEPTH + 1));
        let e = parse(&format!("{}{}", "[".repeat(200), "]".repeat(200))).unwrap_err();
        assert_eq!(e.pos, Some(Pos::new(1, MAX_DEPTH + 1)));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn aliases_cannot_exceed_the_depth_limit() {
        let half = MAX_DEPTH / 2 + 1;
        let src = format!(
            "a: &a {}1{}\nb: {}*a{}\n",
            "[".repeat(half),
            "]".repeat(half),
            "[".repeat(half),
            "]".repeat(half)
        );
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("alias nests"), "{e}");
    }

    #[test]
    fn duplicate_reports_are_capped() {
        let src: String = (0..500).map(|_| "a: 1\n").collect();
        let doc = parse(&src).unwrap();
        assert_eq!(doc.problems.len(), MAX_DUPLICATES + 1);
        assert!(doc.problems.last().unwrap().message.contains("399 more"));
    }
}
