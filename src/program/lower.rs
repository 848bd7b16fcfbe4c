//! Lowering: program source text → a validated [`Program`].
//!
//! Three passes, each reporting every problem it finds before giving up, so
//! a user fixes a file in one round instead of one error per run:
//! 1. shape: the YAML tree is walked against the known key sets of `spec`
//!    (per node kind and tool kind), so every unknown or misplaced key is
//!    reported with its position and a did-you-mean, then dropped;
//! 2. spec: each section and each named entry is deserialized on its own
//!    (serde stops at the first error, so one bad node must not hide the
//!    next one);
//! 3. semantics: signatures, types, tools, bindings (explicit and default),
//!    edge types, cycles, outputs, metric fields and dataset columns.
//!
//! Names whose entry failed an earlier pass are remembered as "broken" so a
//! reference to them does not produce a second, confusing error.

use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use crate::diag::{did_you_mean, Diagnostic, Diagnostics};
use crate::program::shorthand::{self, is_identifier};
use crate::program::{
    Binding, DatasetsConfig, LmConfig, Node, NodeKind, Program, RewardSpec, ToolSpec,
};
use crate::signature::{Field, FieldType, Signature};
use crate::spec::{self, BindingSpec, FieldSpec, NodeSpec, OrderedMap, SignatureSpec};
use crate::yaml::{self, join, PosIndex, YNode};

/// Parse and lower program source. `path` is shown in diagnostics as given
/// and anchors relative dataset and tool paths.
pub fn lower_source(source: &str, path: &Path) -> Result<Program, Diagnostics> {
    let file = path.to_path_buf();
    let with_file = |d: Diagnostic| d.file(file.clone());
    let doc = match yaml::parse(source) {
        Ok(doc) => doc,
        Err(d) => return Err(with_file(d).into()),
    };
    let mut cx = Cx {
        idx: doc.root.index(),
        diags: doc.problems.clone(),
        broken: BTreeSet::new(),
    };
    if source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        cx.diags.push(
            Diagnostic::error("the program file is empty")
                .at(Some(doc.root.pos))
                .hint("start with `name: my_program`, then `signatures:`, `nodes:` and `outputs:`"),
        );
        return Err(finish(cx.diags, &file));
    }
    if doc.root.entries().is_none() {
        cx.diags.push(
            Diagnostic::error("a program file must be a YAML mapping")
                .at(Some(doc.root.pos))
                .hint("start with `name: my_program`, then `signatures:`, `nodes:` and `outputs:`"),
        );
        return Err(finish(cx.diags, &file));
    }
    let mut json = doc.root.to_json();
    let mut unknown = Vec::new();
    check_shape(&mut cx, &doc.root, &mut unknown);
    for p in &unknown {
        remove_path(&mut json, p);
    }
    let base_dir = base_dir_of(path);
    let program = Lowerer {
        cx: &mut cx,
        base_dir,
        source,
        path,
    }
    .lower(&json);
    if cx.diags.is_empty() {
        if let Some(p) = program {
            return Ok(p);
        }
        cx.diags
            .push(Diagnostic::error("the program could not be lowered"));
    }
    Err(finish(cx.diags, &file))
}

/// The directory relative paths in a program file are resolved against.
fn base_dir_of(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::canonicalize(dir).unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|c| c.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    })
}

/// Sort by position (unlocated last, stable) and attach the file name.
fn finish(mut diags: Vec<Diagnostic>, file: &Path) -> Diagnostics {
    diags.sort_by_key(|d| d.pos.map_or((usize::MAX, usize::MAX), |p| (p.line, p.col)));
    Diagnostics(diags.into_iter().map(|d| d.file(file)).collect())
}

struct Cx {
    idx: PosIndex,
    diags: Vec<Diagnostic>,
    /// `signatures.x`, `nodes.x`, `tools.x`, `inputs.x` entries that failed
    /// an earlier pass: references to them are not reported again.
    broken: BTreeSet<String>,
}

impl Cx {
    /// An error about the value at `path`.
    fn err(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let d = Diagnostic::error(message)
            .at(self.idx.locate(path))
            .path(path)
            .maybe_hint(hint);
        self.diags.push(d);
    }

    /// An error about the key of `path` (its name rather than its value).
    fn err_key(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        let pos = self.idx.key(path).or_else(|| self.idx.locate(path));
        let d = Diagnostic::error(message)
            .at(pos)
            .path(path)
            .maybe_hint(hint);
        self.diags.push(d);
    }

    fn is_broken(&self, path: &str) -> bool {
        self.broken.contains(path)
    }
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn suggest<'a>(word: &str, cands: impl IntoIterator<Item = &'a str>, fallback: String) -> String {
    did_you_mean(word, cands).unwrap_or(fallback)
}

// ---------------------------------------------------------------- pass 1

/// Walk the tree against the spec's key sets; record unknown keys' paths.
fn check_shape(cx: &mut Cx, root: &YNode, unknown: &mut Vec<String>) {
    keys(cx, root, "", spec::PROGRAM_KEYS, "the program", unknown);
    let section = |name: &str| root.get(name).map(|e| &e.value);
    if let Some(sigs) = section("signatures") {
        for e in sigs.entries().unwrap_or_default() {
            signature_shape(cx, &e.value, &join("signatures", &e.key), unknown);
        }
    }
    if let Some(inputs) = section("inputs") {
        for e in inputs.entries().unwrap_or_default() {
            let p = join("inputs", &e.key);
            keys(cx, &e.value, &p, spec::FIELD_KEYS, "a field", unknown);
        }
    }
    if let Some(nodes) = section("nodes") {
        for e in nodes.entries().unwrap_or_default() {
            let p = join("nodes", &e.key);
            let kind = e.value.get("kind").and_then(|k| k.value.as_str());
            match kind.and_then(spec::node_keys) {
                Some(allowed) => {
                    let kind = kind.unwrap_or_default();
                    for k in e.value.entries().unwrap_or_default() {
                        let kp = join(&p, &k.key);
                        if allowed.contains(&k.key.as_str()) {
                            continue;
                        }
                        if spec::ALL_NODE_KEYS.contains(&k.key.as_str()) {
                            cx.err_key(
                                &kp,
                                format!("`{}` does not apply to a `{kind}` node", k.key),
                                Some(format!("a `{kind}` node takes {}", list(allowed))),
                            );
                        } else {
                            cx.err_key(
                                &kp,
                                format!("unknown key `{}` in node `{}`", k.key, e.key),
                                Some(suggest(
                                    &k.key,
                                    allowed.iter().copied(),
                                    format!("a `{kind}` node takes {}", list(allowed)),
                                )),
                            );
                        }
                        unknown.push(kp);
                    }
                }
                None => keys(cx, &e.value, &p, spec::ALL_NODE_KEYS, "a node", unknown),
            }
            if let Some(sig) = e.value.get("signature") {
                signature_shape(cx, &sig.value, &join(&p, "signature"), unknown);
            }
            if let Some(inputs) = e.value.get("inputs") {
                for b in inputs.value.entries().unwrap_or_default() {
                    let bp = join(&join(&p, "inputs"), &b.key);
                    keys(
                        cx,
                        &b.value,
                        &bp,
                        spec::LITERAL_KEYS,
                        "a literal binding",
                        unknown,
                    );
                }
            }
            if let Some(r) = e.value.get("reward") {
                let rp = join(&p, "reward");
                keys(cx, &r.value, &rp, spec::REWARD_KEYS, "a reward", unknown);
            }
        }
    }
    if let Some(ds) = section("datasets") {
        keys(
            cx,
            ds,
            "datasets",
            spec::DATASETS_KEYS,
            "`datasets`",
            unknown,
        );
    }
    if let Some(tools) = section("tools") {
        for e in tools.entries().unwrap_or_default() {
            let p = join("tools", &e.key);
            let kind = e.value.get("kind").and_then(|k| k.value.as_str());
            if let Some(allowed) = kind.and_then(spec::tool_keys) {
                let what = format!("a `{}` tool", kind.unwrap_or_default());
                keys(cx, &e.value, &p, allowed, &what, unknown);
            }
        }
    }
}

fn signature_shape(cx: &mut Cx, node: &YNode, path: &str, unknown: &mut Vec<String>) {
    keys(cx, node, path, spec::SIGNATURE_KEYS, "a signature", unknown);
    for side in ["inputs", "outputs"] {
        if let Some(fields) = node.get(side) {
            for f in fields.value.entries().unwrap_or_default() {
                let fp = join(&join(path, side), &f.key);
                keys(cx, &f.value, &fp, spec::FIELD_KEYS, "a field", unknown);
            }
        }
    }
}

/// Report every key of the mapping `node` that is not in `allowed`.
fn keys(
    cx: &mut Cx,
    node: &YNode,
    path: &str,
    allowed: &[&str],
    what: &str,
    unknown: &mut Vec<String>,
) {
    let Some(entries) = node.entries() else {
        return;
    };
    for e in entries {
        if allowed.contains(&e.key.as_str()) {
            continue;
        }
        let kp = join(path, &e.key);
        cx.err_key(
            &kp,
            format!("unknown key `{}`", e.key),
            Some(suggest(
                &e.key,
                allowed.iter().copied(),
                format!("{what} takes {}", list(allowed)),
            )),
        );
        unknown.push(kp);
    }
}

/// Remove the entry at a dotted path from a JSON tree.
fn remove_path(v: &mut Value, path: &str) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut cur = v;
    for p in parts {
        match cur.get_mut(p) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.shift_remove(last);
    }
}

// ---------------------------------------------------------------- pass 2

/// Deserialize `v` as `T`, reporting a failure at `path` (plus serde's
/// inner path).
fn de<T: DeserializeOwned>(cx: &mut Cx, v: &Value, path: &str) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_string()
            } else if path.is_empty() {
                inner
            } else if inner.starts_with('[') {
                format!("{path}{inner}")
            } else {
                format!("{path}.{inner}")
            };
            let msg = e.into_inner().to_string();
            let (msg, hint) = serde_hint(&msg);
            cx.err(&full, msg, hint);
            None
        }
    }
}

/// Turn serde's "unknown field `x`, expected one of `a`, `b`" into a
/// message plus a did-you-mean; shorten "invalid type" messages.
fn serde_hint(msg: &str) -> (String, Option<String>) {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let word = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
        let hint = did_you_mean(word, expected.iter().copied()).or_else(|| {
            (!expected.is_empty()).then(|| format!("expected one of {}", list(&expected)))
        });
        return (format!("unknown key `{word}`"), hint);
    }
    (msg.to_string(), None)
}

/// Deserialize each entry of a mapping section on its own.
fn de_map<T: DeserializeOwned>(cx: &mut Cx, root: &Value, section: &str) -> OrderedMap<T> {
    let mut out = Vec::new();
    match root.get(section) {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let p = join(section, k);
                match de::<T>(cx, v, &p) {
                    Some(t) => out.push((k.clone(), t)),
                    None => {
                        cx.broken.insert(p);
                    }
                }
            }
        }
        Some(_) => {
            cx.err(
                section,
                format!("`{section}` must be a mapping of names to entries"),
                Some(format!(
                    "write `{section}:` then one `name: ...` entry per line, indented"
                )),
            );
            // Suppress follow-on errors such as "the program has no nodes".
            cx.broken.insert(format!("{section}."));
        }
    }
    OrderedMap(out)
}

// ---------------------------------------------------------------- pass 3

struct Lowerer<'a> {
    cx: &'a mut Cx,
    base_dir: PathBuf,
    source: &'a str,
    path: &'a Path,
}

/// What a node expects as inputs: named, typed inputs (signature-based and
/// retrieve nodes), or free-form tool arguments.
enum Expects {
    Fields(Vec<Field>),
    FreeForm,
}

struct Draft {
    name: String,
    kind: NodeKind,
    outputs: Vec<Field>,
    expects: Expects,
    /// For map nodes: the input iterated over.
    over: Option<String>,
}

impl Lowerer<'_> {
    fn lower(mut self, json: &Value) -> Option<Program> {
        let cx = &mut *self.cx;
        let name = match json.get("name") {
            None | Some(Value::Null) => {
                cx.err(
                    "",
                    "missing `name`",
                    Some("add `name: my_program` at the top of the file".into()),
                );
                None
            }
            Some(v) => de::<String>(cx, v, "name"),
        };
        let description = json
            .get("description")
            .and_then(|v| de::<Option<String>>(cx, v, "description"))
            .flatten();
        let lm = json
            .get("lm")
            .and_then(|v| de::<Option<LmConfig>>(cx, v, "lm"))
            .flatten();
        let sig_specs: OrderedMap<SignatureSpec> = de_map(cx, json, "signatures");
        let input_specs: OrderedMap<FieldSpec> = de_map(cx, json, "inputs");
        let node_specs: OrderedMap<NodeSpec> = de_map(cx, json, "nodes");
        let output_specs: OrderedMap<String> = de_map(cx, json, "outputs");
        let tool_specs: OrderedMap<spec::ToolSpecIn> = de_map(cx, json, "tools");
        let datasets_spec = json
            .get("datasets")
            .and_then(|v| de::<Option<spec::DatasetsSpec>>(cx, v, "datasets"))
            .flatten();
        let metric = json.get("metric").filter(|v| !v.is_null()).cloned();

        // Program inputs.
        let mut inputs = Vec::new();
        for (n, f) in input_specs.iter() {
            let p = join("inputs", n);
            if !is_identifier(n) {
                self.cx
                    .err_key(&p, format!("bad input name `{n}`"), Some(ident_hint()));
            }
            match self.field(n, f, &p) {
                Some(field) => inputs.push(field),
                None => {
                    self.cx.broken.insert(p);
                }
            }
        }

        // Named signatures.
        let mut sigs: BTreeMap<String, Signature> = BTreeMap::new();
        for (n, s) in sig_specs.iter() {
            let p = join("signatures", n);
            let sig = match s {
                SignatureSpec::Text(t) => self.shorthand(t, &p),
                SignatureSpec::Full(b) => self.signature_body(b, &p),
            };
            match sig {
                Some(sig) => {
                    sigs.insert(n.clone(), sig);
                }
                None => {
                    self.cx.broken.insert(p);
                }
            }
        }
        let sig_names: Vec<String> = sig_specs.keys().map(String::from).collect();

        // Tools.
        let tools = self.tools(&tool_specs);

        // Nodes: kinds, signatures, outputs.
        let node_names: Vec<String> = node_specs.keys().map(String::from).collect();
        let mut drafts: Vec<Draft> = Vec::new();
        for (n, ns) in node_specs.iter() {
            let p = join("nodes", n);
            if !is_identifier(n) {
                self.cx
                    .err_key(&p, format!("bad node name `{n}`"), Some(ident_hint()));
            } else if n == "input" {
                self.cx.err_key(
                    &p,
                    "a node cannot be named `input`",
                    Some("`input.NAME` refers to program inputs; rename the node".into()),
                );
            }
            match self.node(n, ns, &p, &sigs, &sig_names, &tools) {
                Some(d) => drafts.push(d),
                None => {
                    self.cx.broken.insert(p);
                }
            }
        }
        if node_specs.is_empty() && !self.cx.broken.iter().any(|b| b.starts_with("nodes.")) {
            self.cx.err(
                "nodes",
                "the program has no nodes",
                Some(
                    "add a node under `nodes:`, e.g. `answer: {kind: predict, signature: qa}`"
                        .into(),
                ),
            );
        }

        // Bindings and edge types.
        let mut nodes: Vec<Node> = Vec::new();
        for (i, d) in drafts.iter().enumerate() {
            let ns = node_specs.get(&d.name);
            let written = ns.map(|s| &s.inputs);
            let p = join("nodes", &d.name);
            let bindings =
                self.bindings(d, written, &p, &inputs, &drafts[..i], &drafts, &node_names);
            let mut kind = d.kind.clone();
            // The reward's expected value is a binding too.
            if let (NodeKind::Refine { reward, .. }, Some(ns)) = (&mut kind, ns) {
                if let (RewardSpec::Metric { expected, .. }, Some(r)) = (reward, &ns.reward) {
                    let rp = join(&p, "reward.expected");
                    if let Some(b) = &r.expected {
                        if let Some((b, _)) =
                            self.binding(b, &rp, &inputs, &drafts, &d.name, &node_names)
                        {
                            *expected = b;
                        }
                    }
                }
            }
            nodes.push(Node {
                name: d.name.clone(),
                kind,
                inputs: bindings,
                outputs: d.outputs.clone(),
            });
        }
        let nodes = self.toposort(nodes);

        // Program outputs.
        let mut outputs = Vec::new();
        let mut output_fields = Vec::new();
        if output_specs.is_empty() && !self.cx.broken.iter().any(|b| b.starts_with("outputs.")) {
            self.cx.err(
                "outputs",
                "the program has no outputs",
                Some("add `outputs:` mapping each program output to a node output, e.g. `answer: answer.answer`".into()),
            );
        }
        for (n, target) in output_specs.iter() {
            let p = join("outputs", n);
            if !is_identifier(n) {
                self.cx
                    .err_key(&p, format!("bad output name `{n}`"), Some(ident_hint()));
            }
            let Some((node, field)) = target.split_once('.') else {
                self.cx.err(
                    &p,
                    format!("program output `{n}` must name a node output as `NODE.FIELD`, found `{target}`"),
                    Some(self.guess_node_field(target, &drafts)),
                );
                continue;
            };
            if node == "input" {
                self.cx.err(
                    &p,
                    format!("program output `{n}` must come from a node, not from `{target}`"),
                    Some("bind it to a node output, `NODE.FIELD`".into()),
                );
                continue;
            }
            if let Some(f) = self.node_field(node, field, &p, &drafts, None, &node_names) {
                let mut of = f.clone();
                of.name = n.clone();
                output_fields.push(of);
                outputs.push((
                    n.clone(),
                    Binding::NodeOutput {
                        node: node.into(),
                        field: field.into(),
                    },
                ));
            }
        }

        self.metric(metric.as_ref(), &output_specs);
        let datasets = self.datasets(datasets_spec, &inputs, &output_specs);

        let name = name?;
        Some(Program {
            name,
            description,
            content_hash: hex::encode(Sha256::digest(self.source.as_bytes())),
            source_path: Some(self.path.to_path_buf()),
            source: self.source.to_string(),
            inputs,
            outputs,
            output_fields,
            nodes,
            lm,
            metric,
            datasets,
            tools,
        })
    }

    // ------------------------------------------------------------ fields

    fn field(&mut self, name: &str, f: &FieldSpec, path: &str) -> Option<Field> {
        match f {
            FieldSpec::Type(t) => self.ty(t, path).map(|ty| Field::new(name, ty)),
            FieldSpec::Full(b) => {
                let tp = join(path, "type");
                let mut ty = match &b.ty {
                    Some(t) => self.ty(t, &tp)?,
                    None if b.schema.is_some() => FieldType::Json { schema: None },
                    None => FieldType::String,
                };
                if let Some(schema) = &b.schema {
                    let sp = join(path, "schema");
                    match &mut ty {
                        FieldType::Json { schema: s } => {
                            if !schema.is_object() && !schema.is_boolean() {
                                self.cx.err(
                                    &sp,
                                    "`schema` must be a JSON Schema (a mapping)",
                                    None,
                                );
                                return None;
                            }
                            *s = Some(schema.clone());
                        }
                        other => {
                            self.cx.err(
                                &sp,
                                format!(
                                    "`schema` applies only to `json` fields, this field is `{}`",
                                    other.lmc_name()
                                ),
                                Some("write `type: json` or remove `schema`".into()),
                            );
                            return None;
                        }
                    }
                }
                Some(Field {
                    name: name.to_string(),
                    ty,
                    description: b.description.clone(),
                    prefix: b.prefix.clone(),
                })
            }
        }
    }

    fn ty(&mut self, text: &str, path: &str) -> Option<FieldType> {
        match shorthand::parse_type(text) {
            Ok(t) => Some(t),
            Err(e) => {
                self.cx.err(path, e.message, e.hint);
                None
            }
        }
    }

    fn shorthand(&mut self, text: &str, path: &str) -> Option<Signature> {
        match shorthand::parse_signature(text) {
            Ok((inputs, outputs)) => self.check_sig(
                Signature {
                    instructions: None,
                    inputs,
                    outputs,
                },
                path,
            ),
            Err(e) => {
                self.cx.err(
                    path,
                    format!("bad signature shorthand: {}", e.message),
                    e.hint,
                );
                None
            }
        }
    }

    fn signature_body(&mut self, b: &spec::SignatureBody, path: &str) -> Option<Signature> {
        let mut ok = true;
        let mut side = |this: &mut Self, fields: &OrderedMap<FieldSpec>, s: &str| {
            let mut out = Vec::new();
            for (n, f) in fields.iter() {
                let fp = join(&join(path, s), n);
                if !is_identifier(n) {
                    this.cx
                        .err_key(&fp, format!("bad field name `{n}`"), Some(ident_hint()));
                    ok = false;
                }
                match this.field(n, f, &fp) {
                    Some(f) => out.push(f),
                    None => ok = false,
                }
            }
            out
        };
        let inputs = side(self, &b.inputs, "inputs");
        let outputs = side(self, &b.outputs, "outputs");
        let sig = Signature {
            instructions: b.instructions.clone(),
            inputs,
            outputs,
        };
        if !ok {
            return None;
        }
        for f in &sig.outputs {
            if sig.input(&f.name).is_some() {
                self.cx.err(
                    &join(&join(path, "outputs"), &f.name),
                    format!("field `{}` is both an input and an output", f.name),
                    Some("rename one of them".into()),
                );
                return None;
            }
        }
        self.check_sig(sig, path)
    }

    /// Empty signatures cannot be rendered or predicted.
    fn check_sig(&mut self, sig: Signature, path: &str) -> Option<Signature> {
        let mut ok = true;
        if sig.inputs.is_empty() {
            self.cx.err(
                path,
                "signature has no inputs",
                Some(
                    "a signature needs at least one input field, e.g. `question -> answer`".into(),
                ),
            );
            ok = false;
        }
        if sig.outputs.is_empty() {
            self.cx.err(
                path,
                "signature has no outputs",
                Some(
                    "a signature needs at least one output field, e.g. `question -> answer`".into(),
                ),
            );
            ok = false;
        }
        ok.then_some(sig)
    }

    /// A node's `signature`: a name, a shorthand string, or inline.
    fn resolve_sig(
        &mut self,
        s: Option<&SignatureSpec>,
        node_path: &str,
        kind: &str,
        sigs: &BTreeMap<String, Signature>,
        sig_names: &[String],
    ) -> Option<Signature> {
        let p = join(node_path, "signature");
        match s {
            None => {
                self.cx.err_key(
                    node_path,
                    format!("a `{kind}` node needs a `signature`"),
                    Some("name one from `signatures:`, or write one inline such as `signature: \"question -> answer\"`".into()),
                );
                None
            }
            Some(SignatureSpec::Text(t)) if t.contains("->") => self.shorthand(t, &p),
            Some(SignatureSpec::Text(t)) => {
                if let Some(sig) = sigs.get(t.as_str()) {
                    return Some(sig.clone());
                }
                if !self.cx.is_broken(&join("signatures", t)) {
                    let hint = suggest(
                        t,
                        sig_names.iter().map(String::as_str),
                        if sig_names.is_empty() {
                            "define it under `signatures:` or write a shorthand like `question -> answer`".into()
                        } else {
                            format!("signatures are {}", names(sig_names))
                        },
                    );
                    self.cx
                        .err(&p, format!("unknown signature `{t}`"), Some(hint));
                }
                None
            }
            Some(SignatureSpec::Full(b)) => self.signature_body(b, &p),
        }
    }

    // ------------------------------------------------------------ tools

    fn tools(&mut self, specs: &OrderedMap<spec::ToolSpecIn>) -> Vec<ToolSpec> {
        let mut out = Vec::new();
        for (name, t) in specs.iter() {
            let p = join("tools", name);
            if !is_identifier(name) {
                self.cx
                    .err_key(&p, format!("bad tool name `{name}`"), Some(ident_hint()));
            }
            if !spec::TOOL_KINDS.contains(&t.kind.as_str()) {
                let hint = suggest(
                    &t.kind,
                    spec::TOOL_KINDS.iter().copied(),
                    format!("tool kinds are {}", list(spec::TOOL_KINDS)),
                );
                self.cx.err(
                    &join(&p, "kind"),
                    format!("unknown tool kind `{}`", t.kind),
                    Some(hint),
                );
                self.cx.broken.insert(p);
                continue;
            }
            let mut config: BTreeMap<String, Value> = t
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let required = match t.kind.as_str() {
                "sqlite" => "path",
                "retrieve" => "corpus",
                _ => "command",
            };
            let mut ok = true;
            if !config.contains_key(required) {
                self.cx
                    .err_key(&p, format!("a `{}` tool needs `{required}`", t.kind), None);
                ok = false;
            }
            if t.kind == "command" {
                let argv_ok = matches!(config.get("command"), Some(Value::Array(a))
                    if !a.is_empty() && a.iter().all(Value::is_string))
                    || matches!(config.get("command"), Some(Value::String(s)) if !s.trim().is_empty());
                if config.contains_key("command") && !argv_ok {
                    self.cx.err(
                        &join(&p, "command"),
                        "`command` must be a non-empty list of strings (the program and its arguments)",
                        Some("e.g. `command: [python3, lint.py]`".into()),
                    );
                    ok = false;
                }
                // Relative script paths in `command` are meant relative to the program file.
                config
                    .entry("cwd".into())
                    .or_insert_with(|| Value::String(self.base_dir.display().to_string()));
            }
            for key in spec::TOOL_PATH_KEYS {
                let Some(v) = config.get_mut(*key) else {
                    continue;
                };
                let kp = join(&p, key);
                let Some(s) = v.as_str() else {
                    self.cx
                        .err(&kp, format!("`{key}` must be a file path"), None);
                    ok = false;
                    continue;
                };
                let abs = self.base_dir.join(s);
                if !abs.exists() {
                    self.cx.err(
                        &kp,
                        format!("tool `{name}`: `{s}` does not exist"),
                        Some("paths are relative to the directory of the program file".into()),
                    );
                    ok = false;
                }
                *v = Value::String(abs.display().to_string());
            }
            if !ok {
                self.cx.broken.insert(p);
                continue;
            }
            out.push(ToolSpec {
                name: name.clone(),
                kind: t.kind.clone(),
                config,
            });
        }
        out
    }

    /// Check a tool reference; `want` restricts the tool kind.
    fn tool_ref(
        &mut self,
        name: &str,
        path: &str,
        tools: &[ToolSpec],
        want: Option<&str>,
    ) -> Option<ToolSpec> {
        if let Some(t) = tools.iter().find(|t| t.name == name) {
            if let Some(w) = want {
                if t.kind != w {
                    self.cx.err(
                        path,
                        format!(
                            "tool `{name}` is a `{}` tool, this needs a `{w}` tool",
                            t.kind
                        ),
                        Some(format!("declare one under `tools:` with `kind: {w}`")),
                    );
                    return None;
                }
            }
            return Some(t.clone());
        }
        if !self.cx.is_broken(&join("tools", name)) {
            let known: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
            let hint = suggest(
                name,
                known.iter().copied(),
                if known.is_empty() {
                    "define it under `tools:`".into()
                } else {
                    format!("tools are {}", list(&known))
                },
            );
            self.cx
                .err(path, format!("unknown tool `{name}`"), Some(hint));
        }
        None
    }

    // ------------------------------------------------------------ nodes

    #[allow(clippy::too_many_arguments)]
    fn node(
        &mut self,
        name: &str,
        ns: &NodeSpec,
        p: &str,
        sigs: &BTreeMap<String, Signature>,
        sig_names: &[String],
        tools: &[ToolSpec],
    ) -> Option<Draft> {
        let kind_name = ns.kind.as_str();
        let cot = ns.chain_of_thought.unwrap_or(false);
        let positive = |this: &mut Self, v: Option<u32>, key: &str, default: u32| -> Option<u32> {
            match v {
                Some(0) => {
                    this.cx
                        .err(&join(p, key), format!("`{key}` must be at least 1"), None);
                    None
                }
                Some(v) => Some(v),
                None => Some(default),
            }
        };
        let draft = |kind: NodeKind, outputs: Vec<Field>, expects: Expects| Draft {
            name: name.to_string(),
            kind,
            outputs,
            expects,
            over: None,
        };
        match kind_name {
            "predict" | "chain_of_thought" => {
                let sig = self.resolve_sig(ns.signature.as_ref(), p, kind_name, sigs, sig_names)?;
                let inputs = sig.inputs.clone();
                if kind_name == "predict" {
                    let outputs = sig.outputs.clone();
                    Some(draft(
                        NodeKind::Predict { signature: sig },
                        outputs,
                        Expects::Fields(inputs),
                    ))
                } else {
                    let outputs = sig.with_reasoning().outputs;
                    Some(draft(
                        NodeKind::ChainOfThought { signature: sig },
                        outputs,
                        Expects::Fields(inputs),
                    ))
                }
            }
            "react" => {
                let sig = self.resolve_sig(ns.signature.as_ref(), p, kind_name, sigs, sig_names);
                let mut names = Vec::new();
                let mut ok = true;
                match &ns.tools {
                    None => {
                        self.cx.err_key(
                            p,
                            "a `react` node needs `tools`",
                            Some("list the tools the agent may call, e.g. `tools: [db]`".into()),
                        );
                        ok = false;
                    }
                    Some(list) if list.is_empty() => {
                        self.cx.err(
                            &join(p, "tools"),
                            "a `react` node needs at least one tool",
                            None,
                        );
                        ok = false;
                    }
                    Some(list) => {
                        for (i, t) in list.iter().enumerate() {
                            let tp = format!("{p}.tools[{i}]");
                            if names.contains(t) {
                                self.cx
                                    .err(&tp, format!("tool `{t}` is listed twice"), None);
                                ok = false;
                            } else if self.tool_ref(t, &tp, tools, None).is_none() {
                                ok = false;
                            }
                            names.push(t.clone());
                        }
                    }
                }
                let max_iters = positive(self, ns.max_iters, "max_iters", 5);
                let sig = sig?;
                if !ok {
                    return None;
                }
                let inputs = sig.inputs.clone();
                let outputs = sig.outputs.clone();
                Some(draft(
                    NodeKind::React {
                        signature: sig,
                        tools: names,
                        max_iters: max_iters?,
                    },
                    outputs,
                    Expects::Fields(inputs),
                ))
            }
            "retrieve" => {
                let Some(tool) = &ns.tool else {
                    self.cx.err_key(
                        p,
                        "a `retrieve` node needs `tool` (a `retrieve` tool)",
                        Some("e.g. `tool: wiki` with `wiki: {kind: retrieve, corpus: corpus.jsonl}` under `tools:`".into()),
                    );
                    return None;
                };
                let t = self.tool_ref(tool, &join(p, "tool"), tools, Some("retrieve"))?;
                let k = match ns.k {
                    Some(0) => {
                        self.cx.err(&join(p, "k"), "`k` must be at least 1", None);
                        return None;
                    }
                    Some(k) => k,
                    None => t
                        .config
                        .get("k")
                        .and_then(Value::as_u64)
                        .map_or(3, |k| k as usize),
                };
                Some(draft(
                    NodeKind::Retrieve {
                        tool: tool.clone(),
                        k,
                    },
                    vec![Field::new(
                        "passages",
                        FieldType::List {
                            item: Box::new(FieldType::String),
                        },
                    )],
                    Expects::Fields(vec![Field::new("query", FieldType::String)]),
                ))
            }
            "tool" => {
                let Some(tool) = &ns.tool else {
                    self.cx
                        .err_key(p, "a `tool` node needs `tool` (the name of a tool)", None);
                    return None;
                };
                let t = self.tool_ref(tool, &join(p, "tool"), tools, None)?;
                if let Some(op) = &ns.operation {
                    if t.kind == "sqlite" && !spec::SQLITE_OPERATIONS.contains(&op.as_str()) {
                        let hint = suggest(
                            op,
                            spec::SQLITE_OPERATIONS.iter().copied(),
                            format!("sqlite operations are {}", list(spec::SQLITE_OPERATIONS)),
                        );
                        self.cx.err(
                            &join(p, "operation"),
                            format!("unknown sqlite operation `{op}`"),
                            Some(hint),
                        );
                        return None;
                    }
                }
                Some(draft(
                    NodeKind::Tool {
                        tool: tool.clone(),
                        operation: ns.operation.clone(),
                    },
                    vec![
                        Field::new("result", FieldType::String),
                        Field::new("ok", FieldType::Bool),
                    ],
                    Expects::FreeForm,
                ))
            }
            "refine" | "best_of_n" => {
                let sig = self.resolve_sig(ns.signature.as_ref(), p, kind_name, sigs, sig_names);
                let n = positive(self, ns.n, "n", 3);
                let threshold = ns.threshold.unwrap_or(1.0);
                if !threshold.is_finite() {
                    self.cx
                        .err(&join(p, "threshold"), "`threshold` must be a number", None);
                }
                let sig = sig?;
                let rendered = if cot {
                    sig.with_reasoning()
                } else {
                    sig.clone()
                };
                let reward = self.reward(ns, p, &rendered, tools)?;
                let outputs = rendered.outputs.clone();
                let inputs = sig.inputs.clone();
                Some(draft(
                    NodeKind::Refine {
                        signature: sig,
                        chain_of_thought: cot,
                        n: n?,
                        threshold,
                        reward,
                        advise: kind_name == "refine",
                    },
                    outputs,
                    Expects::Fields(inputs),
                ))
            }
            "map" => {
                let sig = self.resolve_sig(ns.signature.as_ref(), p, kind_name, sigs, sig_names)?;
                let Some(over) = &ns.over else {
                    self.cx.err_key(
                        p,
                        "a `map` node needs `over` (the list input to iterate)",
                        Some(format!(
                            "one of the signature inputs: {}",
                            field_names(&sig.inputs)
                        )),
                    );
                    return None;
                };
                if sig.input(over).is_none() {
                    let hint = suggest(
                        over,
                        sig.inputs.iter().map(|f| f.name.as_str()),
                        format!("signature inputs are {}", field_names(&sig.inputs)),
                    );
                    self.cx.err(
                        &join(p, "over"),
                        format!("`over` names `{over}`, which is not a signature input"),
                        Some(hint),
                    );
                    return None;
                }
                let rendered = if cot {
                    sig.with_reasoning()
                } else {
                    sig.clone()
                };
                let outputs = rendered
                    .outputs
                    .iter()
                    .map(|f| Field {
                        ty: FieldType::List {
                            item: Box::new(f.ty.clone()),
                        },
                        ..f.clone()
                    })
                    .collect();
                let inputs = sig.inputs.clone();
                let mut d = draft(
                    NodeKind::Map {
                        signature: sig,
                        chain_of_thought: cot,
                        over: over.clone(),
                    },
                    outputs,
                    Expects::Fields(inputs),
                );
                d.over = Some(over.clone());
                Some(d)
            }
            other => {
                let hint = suggest(
                    other,
                    spec::NODE_KINDS.iter().copied(),
                    format!("node kinds are {}", list(spec::NODE_KINDS)),
                );
                self.cx.err(
                    &join(p, "kind"),
                    format!("unknown node kind `{other}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    fn reward(
        &mut self,
        ns: &NodeSpec,
        p: &str,
        sig: &Signature,
        tools: &[ToolSpec],
    ) -> Option<RewardSpec> {
        let rp = join(p, "reward");
        let Some(r) = &ns.reward else {
            self.cx.err_key(
                p,
                format!("a `{}` node needs a `reward`", ns.kind),
                Some("e.g. `reward: {type: non_empty, field: answer}`".into()),
            );
            return None;
        };
        let known_type = spec::REWARD_TYPES.contains(&r.ty.as_str());
        if !known_type {
            let hint = suggest(
                &r.ty,
                spec::REWARD_TYPES.iter().copied(),
                format!("reward types are {}", list(spec::REWARD_TYPES)),
            );
            self.cx.err(
                &join(&rp, "type"),
                format!("unknown reward type `{}`", r.ty),
                Some(hint),
            );
        }
        let Some(field) = &r.field else {
            self.cx
                .err_key(&rp, "a reward needs `field` (the output it judges)", None);
            return None;
        };
        if sig.output(field).is_none() {
            let hint = suggest(
                field,
                sig.outputs.iter().map(|f| f.name.as_str()),
                format!("outputs are {}", field_names(&sig.outputs)),
            );
            self.cx.err(
                &join(&rp, "field"),
                format!("reward field `{field}` is not an output of the signature"),
                Some(hint),
            );
            return None;
        }
        if !known_type {
            return None;
        }
        let need = |this: &mut Self, key: &str| {
            this.cx
                .err_key(&rp, format!("a `{}` reward needs `{key}`", r.ty), None);
        };
        match r.ty.as_str() {
            "non_empty" => Some(RewardSpec::NonEmpty {
                field: field.clone(),
            }),
            "tool_ok" => {
                let Some(tool) = &r.tool else {
                    need(self, "tool");
                    return None;
                };
                self.tool_ref(tool, &join(&rp, "tool"), tools, None)?;
                Some(RewardSpec::ToolOk {
                    tool: tool.clone(),
                    field: field.clone(),
                })
            }
            _ => {
                let Some(metric) = &r.metric else {
                    need(self, "metric");
                    return None;
                };
                if r.expected.is_none() {
                    need(self, "expected");
                    return None;
                }
                // The binding is resolved with the other bindings.
                Some(RewardSpec::Metric {
                    metric: metric.clone(),
                    field: field.clone(),
                    expected: Binding::Literal(Value::Null),
                })
            }
        }
    }

    // ------------------------------------------------------------ bindings

    #[allow(clippy::too_many_arguments)]
    fn bindings(
        &mut self,
        d: &Draft,
        written: Option<&OrderedMap<BindingSpec>>,
        p: &str,
        inputs: &[Field],
        earlier: &[Draft],
        all: &[Draft],
        node_names: &[String],
    ) -> Vec<(String, Binding)> {
        let empty = OrderedMap::default();
        let written = written.unwrap_or(&empty);
        let ip = join(p, "inputs");
        let mut out = Vec::new();
        match &d.expects {
            Expects::FreeForm => {
                for (n, b) in written.iter() {
                    let bp = join(&ip, n);
                    if let Some((b, _)) = self.binding(b, &bp, inputs, all, &d.name, node_names) {
                        out.push((n.clone(), b));
                    }
                }
            }
            Expects::Fields(fields) => {
                for (n, _) in written.iter() {
                    if !fields.iter().any(|f| &f.name == n) {
                        let hint = suggest(
                            n,
                            fields.iter().map(|f| f.name.as_str()),
                            format!("its inputs are {}", field_names(fields)),
                        );
                        self.cx.err_key(
                            &join(&ip, n),
                            format!("node `{}` has no input `{n}`", d.name),
                            Some(hint),
                        );
                    }
                }
                for f in fields {
                    let bp = join(&ip, &f.name);
                    let bound = match written.get(&f.name) {
                        Some(b) => self
                            .binding(b, &bp, inputs, all, &d.name, node_names)
                            .map(|(b, ty)| (b, ty, bp.clone())),
                        None => self
                            .default_binding(&f.name, d, p, inputs, earlier)
                            .map(|(b, ty)| (b, ty, p.to_string())),
                    };
                    let Some((b, src_ty, at)) = bound else {
                        continue;
                    };
                    if let Some(src) = src_ty {
                        self.check_edge(
                            &b,
                            &src,
                            f,
                            d.over.as_deref() == Some(&f.name),
                            &at,
                            &d.name,
                        );
                    }
                    out.push((f.name.clone(), b));
                }
            }
        }
        out
    }

    /// The type check along one edge. A `map` node's `over` input takes a
    /// list of the signature input's type.
    fn check_edge(
        &mut self,
        b: &Binding,
        src: &FieldType,
        target: &Field,
        over: bool,
        at: &str,
        node: &str,
    ) {
        let want = if over {
            FieldType::List {
                item: Box::new(target.ty.clone()),
            }
        } else {
            target.ty.clone()
        };
        if src.assignable_to(&want) {
            return;
        }
        let from = match b {
            Binding::ProgramInput(n) => format!("input.{n}"),
            Binding::NodeOutput { node, field } => format!("{node}.{field}"),
            Binding::Literal(v) => {
                // null fits any optional; an object fits any json field
                // (its schema is checked when the program runs).
                let fits = matches!((v, &want), (Value::Null, FieldType::Optional { .. }))
                    || matches!((v, &want), (Value::Object(_), FieldType::Json { .. }));
                if !fits {
                    self.cx.err(
                        at,
                        format!(
                            "the literal `{v}` does not fit input `{}` of node `{node}`, which expects `{}`",
                            target.name,
                            want.lmc_name()
                        ),
                        Some(format!("write a `{}` value", want.lmc_name())),
                    );
                }
                return;
            }
        };
        let hint = if over {
            Some(format!(
                "`over` iterates a list: bind `{}` to a `{}`",
                target.name,
                want.lmc_name()
            ))
        } else if let FieldType::List { item } = src {
            item.assignable_to(&want).then(|| {
                format!("`{from}` is a list; use a `map` node with `over: {}` to apply the signature to each item", target.name)
            })
        } else {
            None
        };
        self.cx.err(
            at,
            format!(
                "type mismatch: `{from}` is `{}` but input `{}` of node `{node}` expects `{}`",
                src.lmc_name(),
                target.name,
                want.lmc_name()
            ),
            hint.or_else(|| {
                Some(format!(
                    "change one of the types, or bind `{}` to a `{}` value",
                    target.name,
                    want.lmc_name()
                ))
            }),
        );
    }

    /// Resolve one written binding; returns it with the source type.
    fn binding(
        &mut self,
        b: &BindingSpec,
        bp: &str,
        inputs: &[Field],
        all: &[Draft],
        self_name: &str,
        node_names: &[String],
    ) -> Option<(Binding, Option<FieldType>)> {
        let text = match b {
            BindingSpec::Literal(l) => {
                return Some((
                    Binding::Literal(l.value.clone()),
                    Some(literal_type(&l.value)),
                ))
            }
            BindingSpec::Ref(s) => s.trim(),
        };
        if let Some(name) = text.strip_prefix("input.") {
            return match inputs.iter().find(|f| f.name == name) {
                Some(f) => Some((Binding::ProgramInput(name.into()), Some(f.ty.clone()))),
                None => {
                    if !self.cx.is_broken(&join("inputs", name)) {
                        let hint = suggest(
                            name,
                            inputs.iter().map(|f| f.name.as_str()),
                            if inputs.is_empty() {
                                format!("declare it under `inputs:` (`{name}: str`)")
                            } else {
                                format!("program inputs are {}", field_names(inputs))
                            },
                        );
                        self.cx.err(
                            bp,
                            format!("`{text}`: the program has no input `{name}`"),
                            Some(hint),
                        );
                    }
                    None
                }
            };
        }
        match text.split_once('.') {
            Some((node, field)) => {
                if node == self_name {
                    self.cx.err(
                        bp,
                        format!("node `{self_name}` binds to its own output `{text}`"),
                        Some(
                            "a node can only read outputs of other nodes (this is a cycle)".into(),
                        ),
                    );
                    return None;
                }
                let f = self.node_field(node, field, bp, all, Some(text), node_names)?;
                Some((
                    Binding::NodeOutput {
                        node: node.into(),
                        field: field.into(),
                    },
                    Some(f.ty.clone()),
                ))
            }
            None => {
                if let Some(f) = inputs.iter().find(|f| f.name == text) {
                    return Some((Binding::ProgramInput(text.into()), Some(f.ty.clone())));
                }
                let mut hint = self.guess_node_field(text, all);
                if let Some(dym) = did_you_mean(text, inputs.iter().map(|f| f.name.as_str())) {
                    hint = format!("{dym} (`input.NAME` binds a program input)");
                }
                self.cx.err(
                    bp,
                    format!(
                        "bad binding `{text}`: write `input.NAME`, `NODE.FIELD`, or {{value: ...}}"
                    ),
                    Some(hint),
                );
                None
            }
        }
    }

    /// A hint for a bare name that is probably a node output.
    fn guess_node_field(&self, text: &str, all: &[Draft]) -> String {
        let owners: Vec<String> = all
            .iter()
            .filter(|d| d.outputs.iter().any(|f| f.name == text))
            .map(|d| format!("`{}.{text}`", d.name))
            .collect();
        if owners.is_empty() {
            "a node output is written `NODE.FIELD`, e.g. `classify.sentiment`".into()
        } else {
            format!("did you mean {}?", owners.join(" or "))
        }
    }

    /// Look up `NODE.FIELD`, reporting an unknown node or field.
    fn node_field<'d>(
        &mut self,
        node: &str,
        field: &str,
        bp: &str,
        all: &'d [Draft],
        text: Option<&str>,
        node_names: &[String],
    ) -> Option<&'d Field> {
        let shown = text
            .map(String::from)
            .unwrap_or_else(|| format!("{node}.{field}"));
        let Some(d) = all.iter().find(|d| d.name == node) else {
            // With no nodes at all that error is already reported.
            if !node_names.is_empty()
                && !self.cx.is_broken(&join("nodes", node))
                && !node_names.iter().any(|n| n == node)
            {
                let hint = suggest(
                    node,
                    node_names.iter().map(String::as_str),
                    format!("nodes are {}", names(node_names)),
                );
                self.cx.err(
                    bp,
                    format!("`{shown}`: there is no node `{node}`"),
                    Some(hint),
                );
            }
            return None;
        };
        match d.outputs.iter().find(|f| f.name == field) {
            Some(f) => Some(f),
            None => {
                let hint = suggest(
                    field,
                    d.outputs.iter().map(|f| f.name.as_str()),
                    format!("node `{node}` outputs {}", field_names(&d.outputs)),
                );
                self.cx.err(
                    bp,
                    format!("`{shown}`: node `{node}` has no output `{field}`"),
                    Some(hint),
                );
                None
            }
        }
    }

    /// An input left unbound: the program input of the same name, else the
    /// unique earlier node output of that name.
    fn default_binding(
        &mut self,
        name: &str,
        d: &Draft,
        p: &str,
        inputs: &[Field],
        earlier: &[Draft],
    ) -> Option<(Binding, Option<FieldType>)> {
        if let Some(f) = inputs.iter().find(|f| f.name == name) {
            return Some((Binding::ProgramInput(name.into()), Some(f.ty.clone())));
        }
        let found: Vec<(&Draft, &Field)> = earlier
            .iter()
            .filter_map(|e| e.outputs.iter().find(|f| f.name == name).map(|f| (e, f)))
            .collect();
        match found.as_slice() {
            [(e, f)] => Some((
                Binding::NodeOutput {
                    node: e.name.clone(),
                    field: name.into(),
                },
                Some(f.ty.clone()),
            )),
            [] => {
                if self
                    .cx
                    .broken
                    .iter()
                    .any(|b| b.starts_with("inputs.") || b.starts_with("nodes."))
                {
                    // The input or node that would bind it failed to parse.
                    return None;
                }
                let hint = format!(
                    "bind it under `inputs:` (`{name}: input.{name}` or `{name}: NODE.FIELD`), or declare a program input `{name}`"
                );
                self.cx.err_key(
                    p,
                    format!("input `{name}` of node `{}` is not bound", d.name),
                    Some(hint),
                );
                None
            }
            many => {
                let opts: Vec<String> = many
                    .iter()
                    .map(|(e, _)| format!("`{}.{name}`", e.name))
                    .collect();
                self.cx.err_key(
                    p,
                    format!(
                        "input `{name}` of node `{}` could come from {}",
                        d.name,
                        opts.join(" or ")
                    ),
                    Some(format!(
                        "bind it explicitly under `inputs:`, e.g. `{name}: {}`",
                        opts[0].trim_matches('`')
                    )),
                );
                None
            }
        }
    }

    // ------------------------------------------------------------ graph

    /// Order nodes so each comes after the nodes it reads (stable: among
    /// ready nodes the one written first goes first); report cycles.
    fn toposort(&mut self, nodes: Vec<Node>) -> Vec<Node> {
        let deps: Vec<BTreeSet<usize>> = nodes
            .iter()
            .map(|n| {
                let mut bs: Vec<&Binding> = n.inputs.iter().map(|(_, b)| b).collect();
                if let NodeKind::Refine {
                    reward: RewardSpec::Metric { expected, .. },
                    ..
                } = &n.kind
                {
                    bs.push(expected);
                }
                bs.into_iter()
                    .filter_map(|b| match b {
                        Binding::NodeOutput { node, .. } => {
                            nodes.iter().position(|m| &m.name == node)
                        }
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let mut placed = vec![false; nodes.len()];
        let mut order = Vec::new();
        while order.len() < nodes.len() {
            let next = (0..nodes.len()).find(|&i| !placed[i] && deps[i].iter().all(|&d| placed[d]));
            match next {
                Some(i) => {
                    placed[i] = true;
                    order.push(i);
                }
                None => break,
            }
        }
        if order.len() < nodes.len() {
            let mut reported: BTreeSet<usize> = BTreeSet::new();
            for start in 0..nodes.len() {
                if placed[start] || reported.contains(&start) {
                    continue;
                }
                // Walk dependencies among unplaced nodes until one repeats.
                let mut path = vec![start];
                let mut seen: HashMap<usize, usize> = HashMap::from([(start, 0)]);
                let mut cur = start;
                let cycle = loop {
                    let Some(&next) = deps[cur].iter().find(|&&d| !placed[d]) else {
                        break None;
                    };
                    if let Some(&at) = seen.get(&next) {
                        break Some(path[at..].to_vec());
                    }
                    seen.insert(next, path.len());
                    path.push(next);
                    cur = next;
                };
                let Some(cycle) = cycle else { continue };
                if cycle.iter().any(|i| reported.contains(i)) {
                    continue;
                }
                reported.extend(cycle.iter().copied());
                let first = *cycle.iter().min().unwrap_or(&start);
                let rot = cycle.iter().position(|&i| i == first).unwrap_or(0);
                let mut names: Vec<&str> = cycle[rot..]
                    .iter()
                    .chain(cycle[..rot].iter())
                    .map(|&i| nodes[i].name.as_str())
                    .collect();
                // Show the data flow direction: a reads b means b -> a.
                names.reverse();
                let mut shown = names.clone();
                shown.push(names[0]);
                self.cx.err_key(
                    &join("nodes", &nodes[first].name),
                    format!("the nodes form a cycle: {}", shown.join(" -> ")),
                    Some(
                        "each node may read only outputs of nodes that do not depend on it".into(),
                    ),
                );
            }
            for (i, p) in placed.iter().enumerate() {
                if !p {
                    order.push(i);
                }
            }
        }
        let mut slots: Vec<Option<Node>> = nodes.into_iter().map(Some).collect();
        order.into_iter().filter_map(|i| slots[i].take()).collect()
    }

    // ------------------------------------------------------------ metric, datasets

    fn metric(&mut self, metric: Option<&Value>, outputs: &OrderedMap<String>) {
        let Some(m) = metric else { return };
        let items: Vec<(String, &Value)> = match m {
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("metric[{i}]"), v))
                .collect(),
            Value::String(s) => {
                self.cx.err(
                    "metric",
                    "a metric is a mapping, not a bare name",
                    Some(format!("write `metric: {{type: {s}, field: <output>}}`")),
                );
                return;
            }
            v => vec![("metric".to_string(), v)],
        };
        let out_names: Vec<&str> = outputs.keys().collect();
        for (p, v) in items {
            let Some(obj) = v.as_object() else {
                self.cx.err(
                    &p,
                    "a metric is a mapping like `{type: exact_match, field: answer}`",
                    None,
                );
                continue;
            };
            if let Some(Value::String(t)) = obj.get("type") {
                if !crate::metric::TYPES.contains(&t.as_str()) {
                    let hint = suggest(
                        t,
                        crate::metric::TYPES.iter().copied(),
                        format!("metric types are {}", list(crate::metric::TYPES)),
                    );
                    self.cx.err(
                        &join(&p, "type"),
                        format!("unknown metric type `{t}`"),
                        Some(hint),
                    );
                }
            } else {
                self.cx.err_key(
                    &p,
                    "a metric needs `type`",
                    Some("e.g. `{type: exact_match, field: answer}`".into()),
                );
            }
            if let Some(Value::String(f)) = obj.get("field") {
                if !out_names.is_empty() && !out_names.contains(&f.as_str()) {
                    let hint = suggest(
                        f,
                        out_names.iter().copied(),
                        format!("program outputs are {}", list(&out_names)),
                    );
                    self.cx.err(
                        &join(&p, "field"),
                        format!("metric field `{f}` is not a program output"),
                        Some(hint),
                    );
                }
            }
        }
    }

    fn datasets(
        &mut self,
        ds: Option<spec::DatasetsSpec>,
        inputs: &[Field],
        outputs: &OrderedMap<String>,
    ) -> DatasetsConfig {
        let Some(ds) = ds else {
            return DatasetsConfig::default();
        };
        let resolve = |p: &Option<String>| p.as_ref().map(|s| self.base_dir.join(s));
        let cfg = DatasetsConfig {
            train: resolve(&ds.train),
            dev: resolve(&ds.dev),
            test: resolve(&ds.test),
            columns: ds.columns.iter().cloned().collect(),
        };
        let mut known: Vec<&str> = inputs.iter().map(|f| f.name.as_str()).collect();
        known.extend(outputs.keys());
        for (col, target) in ds.columns.iter() {
            if !known.contains(&target.as_str())
                && !self.cx.broken.iter().any(|b| b.starts_with("inputs."))
            {
                let hint = suggest(
                    target,
                    known.iter().copied(),
                    format!("program inputs and outputs are {}", list(&known)),
                );
                self.cx.err(
                    &join("datasets.columns", col),
                    format!("column `{col}` maps to `{target}`, which is neither a program input nor an output"),
                    Some(hint),
                );
            }
        }
        cfg
    }
}

/// The most specific type of a literal, for edge checks: strings are
/// `str`, so a string literal fits enum inputs only when it is one of the
/// values (checked as a one-value enum).
fn literal_type(v: &Value) -> FieldType {
    match v {
        Value::String(s) => FieldType::Enum {
            values: vec![s.clone()],
        },
        Value::Bool(_) => FieldType::Bool,
        Value::Number(n) if n.is_i64() || n.is_u64() => FieldType::Int,
        Value::Number(_) => FieldType::Float,
        Value::Array(items) => {
            let tys: Vec<FieldType> = items.iter().map(literal_type).collect();
            let item = match tys.split_first() {
                Some((first, rest)) => rest.iter().try_fold(first.clone(), |acc, t| unify(&acc, t)),
                None => Some(FieldType::String),
            };
            // Mixed lists only fit `list[str]` (everything renders as text)
            // or `json`.
            FieldType::List {
                item: Box::new(item.unwrap_or(FieldType::Json { schema: None })),
            }
        }
        Value::Null => FieldType::Optional {
            inner: Box::new(FieldType::Json { schema: None }),
        },
        Value::Object(_) => FieldType::Json { schema: None },
    }
}

/// The common type of two literal item types, if any.
fn unify(a: &FieldType, b: &FieldType) -> Option<FieldType> {
    match (a, b) {
        (FieldType::Enum { values: x }, FieldType::Enum { values: y }) => {
            let mut values = x.clone();
            values.extend(y.iter().filter(|v| !x.contains(v)).cloned());
            Some(FieldType::Enum { values })
        }
        (FieldType::Int, FieldType::Float) | (FieldType::Float, FieldType::Int) => {
            Some(FieldType::Float)
        }
        (a, b) if a == b => Some(a.clone()),
        _ => None,
    }
}

fn ident_hint() -> String {
    "names are identifiers: a letter or `_`, then letters, digits or `_`".into()
}

fn names(ns: &[String]) -> String {
    ns.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn field_names(fs: &[Field]) -> String {
    if fs.is_empty() {
        return "(none)".into();
    }
    fs.iter()
        .map(|f| format!("`{}`", f.name))
        .collect::<Vec<_>>()
        .join(", ")
}
