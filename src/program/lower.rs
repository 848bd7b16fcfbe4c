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

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::diag::{did_you_mean, Diagnostic, Diagnostics};
use crate::program::shorthand::{self, is_identifier};
use crate::program::{Binding, DatasetsConfig, LmConfig, Node, NodeKind, Program, RewardSpec};
use crate::signature::{Field, FieldType, Signature};
use crate::spec::{self, FieldSpec, NodeSpec, OrderedMap, SignatureSpec};
use crate::yaml::{self, join, PosIndex};

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

mod bindings;
mod nodes;
mod shape;

use crate::nodes::Expects;
pub use nodes::NodeLowering;

use shape::{check_shape, de, de_map, remove_path};

/// Rate limits that can never admit a request, as (YAML path under the
/// `lm:` mapping's parent, message, hint). Programs and `lmc.yaml` report
/// them located; the LM layer refuses them too, for values from flags.
pub fn lm_limit_problems(lm: &LmConfig) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for (path, key, v) in [("lm.rpm", "rpm", lm.rpm), ("lm.tpm", "tpm", lm.tpm)] {
        if v == Some(0) {
            out.push((
                path,
                format!("`lm.{key}` is 0, which allows no request at all"),
                format!("give a positive {key} or remove the key for no limit"),
            ));
        }
    }
    let max_tokens = lm.max_tokens.unwrap_or(crate::run::DEFAULT_MAX_TOKENS);
    if let Some(tpm) = lm.tpm.filter(|t| *t > 0 && *t <= max_tokens) {
        out.push((
            "lm.tpm",
            format!(
                "`lm.tpm` is {tpm}, but one request may use max_tokens {max_tokens} plus its prompt"
            ),
            "raise lm.tpm above max_tokens, or lower lm.max_tokens".into(),
        ));
    }
    out
}

/// `lm_limit_problems` of the LM config written at `at` (`lm` or
/// `lms.NAME`), located there.
fn check_lm_limits(cx: &mut Cx, lm: &LmConfig, at: &str) {
    for (path, message, hint) in lm_limit_problems(lm) {
        let path = format!("{at}{}", path.trim_start_matches("lm"));
        cx.err(&path, message, Some(hint));
    }
}

/// A node's `lm: NAME` must name an entry of `lms:` (a typo would
/// otherwise silently run the step on the default LM).
fn check_node_lm(cx: &mut Cx, node_path: &str, name: &str, lms: &BTreeMap<String, LmConfig>) {
    if lms.contains_key(name) {
        return;
    }
    let hint = crate::diag::did_you_mean(name, lms.keys().map(String::as_str)).unwrap_or_else(|| {
        if lms.is_empty() {
            format!("declare it under `lms:`, e.g. `lms: {{{name}: {{model: ...}}}}`, or remove `lm:` to use the default LM")
        } else {
            let known: Vec<String> = lms.keys().map(|k| format!("`{k}`")).collect();
            format!("the named LMs are {}", known.join(", "))
        }
    });
    cx.err(
        &join(node_path, "lm"),
        format!("unknown LM `{name}` (not a key of `lms:`)"),
        Some(hint),
    );
}

// ---------------------------------------------------------------- pass 3

struct Lowerer<'a> {
    cx: &'a mut Cx,
    base_dir: PathBuf,
    source: &'a str,
    path: &'a Path,
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
        if let Some(lm) = &lm {
            check_lm_limits(cx, lm, "lm");
        }
        let lms: BTreeMap<String, LmConfig> = de_map::<LmConfig>(cx, json, "lms")
            .iter()
            .cloned()
            .collect();
        for (n, l) in &lms {
            check_lm_limits(cx, l, &join("lms", n));
        }
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
            match self.field(n, f, &p, false) {
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
            if let (NodeKind::Refine(crate::nodes::refine::Refine { reward, .. }), Some(ns)) =
                (&mut kind, ns)
            {
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
            let node_lm = ns.and_then(|s| s.lm.clone());
            if let Some(name) = &node_lm {
                check_node_lm(self.cx, &p, name, &lms);
            }
            nodes.push(Node {
                name: d.name.clone(),
                kind,
                inputs: bindings,
                outputs: d.outputs.clone(),
                lm: node_lm,
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
        let compile = match json.get("compile") {
            Some(v) => {
                let (c, diags) =
                    crate::program::compile_section::check(v, &self.cx.idx, "compile", self.path);
                self.cx.diags.extend(diags);
                c
            }
            None => None,
        };

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
            lms,
            metric,
            datasets,
            tools,
            compile,
        })
    }

    // ------------------------------------------------------------ fields

    fn field(&mut self, name: &str, f: &FieldSpec, path: &str, output: bool) -> Option<Field> {
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
                let default = match &b.default {
                    None => None,
                    Some(d) => Some(self.default_value(&ty, d, &join(path, "default"), output)?),
                };
                Some(Field {
                    name: name.to_string(),
                    ty,
                    description: b.description.clone(),
                    prefix: b.prefix.clone(),
                    default,
                })
            }
        }
    }

    /// An output's `default:`, checked against its type the way a parsed
    /// value is (so `"3"` for an `int` is `3`); inputs take none.
    fn default_value(
        &mut self,
        ty: &FieldType,
        d: &Value,
        path: &str,
        output: bool,
    ) -> Option<Value> {
        if !output {
            self.cx.err(
                path,
                "`default` applies only to output fields",
                Some("remove it, or give the value through `--input` or the dataset".into()),
            );
            return None;
        }
        match typed_default(ty, d) {
            Ok(v) => Some(v),
            Err(m) => {
                self.cx.err(
                    path,
                    format!("the default is not a `{}`: {m}", ty.lmc_name()),
                    Some(format!(
                        "give a value of type `{}`, or make the field `optional[...]` and leave `default` out for `null`",
                        ty.lmc_name()
                    )),
                );
                None
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
                match this.field(n, f, &fp, s == "outputs") {
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

/// A default as written must already be a value of the field's type
/// (strictly: `"3"` is no `int`, `not a list` no `list[str]`); only `json`
/// fields go through the parser's schema check.
fn typed_default(ty: &FieldType, v: &Value) -> Result<Value, String> {
    let ok = match (ty, v) {
        (FieldType::Optional { .. }, Value::Null) => true,
        (FieldType::Optional { inner }, v) => return typed_default(inner, v),
        (FieldType::Json { .. }, v) => return crate::adapter::parse::convert_value(ty, v),
        (FieldType::String, Value::String(_)) | (FieldType::Bool, Value::Bool(_)) => true,
        (FieldType::Int, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (FieldType::Float, Value::Number(_)) => true,
        (FieldType::Enum { values }, Value::String(s)) => values.contains(s),
        (FieldType::List { item }, Value::Array(items)) => {
            for (i, x) in items.iter().enumerate() {
                typed_default(item, x).map_err(|e| format!("item {}: {e}", i + 1))?;
            }
            true
        }
        _ => false,
    };
    if ok {
        Ok(v.clone())
    } else {
        Err(format!("got {v}"))
    }
}
