//! Metrics: how one example's outputs are scored against its expected values.
//!
//! A [`Metric`] is built once from a spec (the program's `metric:` value or
//! `--metric`) and is then cheap to clone and safe to share across the
//! concurrent workers of an eval or a compile. Building validates the spec
//! (unknown types and keys are errors with a suggestion), so a typo fails
//! before the first LM call rather than after the last. Every metric returns
//! a score in 0..=1 and, where it helps, feedback text: GEPA-style
//! optimizers read the feedback to propose better instructions. The exact
//! semantics of each metric are documented in docs/metrics.md.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

use crate::data::Example;
use crate::predict::RunContext;
use crate::program::Program;

mod command;
mod judge;
mod numeric;
mod sql;
mod structured;
mod text;

/// One example's score.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// In 0..=1.
    pub score: f64,
    pub feedback: Option<String>,
}

impl Score {
    fn new(score: f64, feedback: Option<String>) -> Score {
        Score { score, feedback }
    }
    fn pass_fail(ok: bool, feedback: impl FnOnce() -> String) -> Score {
        if ok {
            Score::new(1.0, None)
        } else {
            Score::new(0.0, Some(feedback()))
        }
    }
}

/// What metrics may need besides the example: the LM for `llm_judge`.
#[derive(Clone, Default)]
pub struct MetricContext {
    pub judge: Option<RunContext>,
}

impl MetricContext {
    /// A context whose judge is the program's own LM context.
    pub fn new(ctx: &RunContext) -> Self {
        MetricContext {
            judge: Some(ctx.clone()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MetricError {
    /// The spec is wrong (unknown type or key, bad value, missing file).
    #[error("invalid metric: {0}")]
    Spec(String),
    /// This example cannot be scored (no expected value, gold SQL fails,
    /// the metric command or the judge failed).
    #[error("{0}")]
    Score(String),
}

fn spec_err(m: impl Into<String>) -> MetricError {
    MetricError::Spec(m.into())
}

/// The metric types, as written in `type:`.
pub const TYPES: &[&str] = &[
    "exact_match",
    "f1",
    "contains",
    "numeric",
    "regex",
    "json_match",
    "sql_execution",
    "llm_judge",
    "command",
];

/// A built metric.
#[derive(Clone)]
pub struct Metric {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    /// The output compared (None: see [`Metric::resolve_field`]).
    field: Option<String>,
    /// The expected-value name (None: same as the field).
    expected: Option<String>,
    /// The spec with sorted keys, for hashing and reports.
    canonical: Value,
    hash: String,
}

enum Kind {
    ExactMatch(text::ExactMatch),
    F1(text::F1),
    Contains(text::Contains),
    Numeric(numeric::Numeric),
    Regex(text::RegexMetric),
    JsonMatch(structured::JsonMatch),
    Sql(sql::SqlExecution),
    Judge(judge::LlmJudge),
    Command(command::CommandMetric),
    /// (normalised weight, metric); weights sum to 1.
    Weighted(Vec<(f64, Metric)>),
}

impl std::fmt::Debug for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Metric({})", self.name())
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Metric {
    /// Build from the program's `metric:` value: an object with `type`, a
    /// list of such objects with `weight` (a weighted combination), or a
    /// shorthand string like `f1:answer`. Relative paths (databases, metric
    /// scripts) resolve against `base_dir`, the program file's directory.
    pub fn from_spec(spec: &Value, base_dir: &Path) -> Result<Metric, MetricError> {
        match spec {
            Value::String(s) => Metric::from_spec(&shorthand(s)?, base_dir),
            Value::Object(obj) => {
                if obj.contains_key("weight") {
                    return Err(spec_err(
                        "`weight` is only meaningful inside a list of metrics",
                    ));
                }
                single(obj, base_dir)
            }
            Value::Array(items) => weighted(items, base_dir),
            other => Err(spec_err(format!(
                "expected an object like {{type: exact_match, field: answer}} or a list of them, got `{other}`"
            ))),
        }
    }

    /// Parse `--metric`: `exact_match`, `f1:answer`, `numeric:answer`, or an
    /// inline object or weighted list in JSON or YAML flow style
    /// (`{type: f1, field: answer}`).
    pub fn parse_cli(s: &str, base_dir: &Path) -> Result<Metric, MetricError> {
        let t = s.trim();
        if t.starts_with('{') || t.starts_with('[') {
            let v: Value = match serde_json::from_str(t) {
                Ok(v) => v,
                Err(json_err) => match crate::yaml::parse(t) {
                    Ok(doc) if doc.problems.is_empty() => doc.root.to_json(),
                    _ => {
                        return Err(spec_err(format!(
                            "--metric `{t}` is neither JSON nor YAML: {json_err}"
                        )))
                    }
                },
            };
            Metric::from_spec(&v, base_dir)
        } else {
            Metric::from_spec(&shorthand(t)?, base_dir)
        }
    }

    /// `exact_match` on the program's first output (skipping a leading
    /// chain-of-thought `reasoning` when there is another output).
    pub fn default_for(program: &Program) -> Metric {
        let field = program
            .output_fields
            .iter()
            .find(|f| f.name != "reasoning")
            .or_else(|| program.output_fields.first())
            .map(|f| f.name.clone());
        let mut spec = Map::new();
        spec.insert("type".into(), Value::from("exact_match"));
        if let Some(f) = field {
            spec.insert("field".into(), Value::from(f));
        }
        // A spec with only known keys and no files cannot fail to build.
        match single(&spec, Path::new(".")) {
            Ok(m) => m,
            Err(_) => Metric::build(
                Kind::ExactMatch(text::ExactMatch { normalize: true }),
                None,
                None,
                Value::Object(spec),
                Vec::new(),
            ),
        }
    }

    /// Check the fields the metric names against the program's outputs, so
    /// a typo is reported before any example runs.
    pub fn check(&self, program: &Program) -> Result<(), MetricError> {
        if let Kind::Weighted(parts) = &self.inner.kind {
            return parts.iter().try_for_each(|(_, m)| m.check(program));
        }
        if let Some(field) = &self.inner.field {
            if !program.output_fields.iter().any(|f| &f.name == field) {
                let names: Vec<&str> = program
                    .output_fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect();
                let hint = crate::diag::did_you_mean(field, names.iter().copied())
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                return Err(spec_err(format!(
                    "`field: {field}` is not an output of program `{}` (outputs: {}){hint}",
                    program.name,
                    names.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The expected values this metric cannot score without, for checking a
    /// dataset before any LM call: one entry per value needed, each listing
    /// the names any one of which will do (with no `field:`, the metric
    /// compares the first output the example has a gold value for). Metrics
    /// whose gold is optional (a judge, a command, a regex with its own
    /// `pattern`) need none.
    pub fn expected_names(&self, program: &Program) -> Vec<Vec<String>> {
        let inner = &*self.inner;
        match &inner.kind {
            Kind::Weighted(parts) => parts
                .iter()
                .flat_map(|(_, m)| m.expected_names(program))
                .collect(),
            Kind::Judge(_) | Kind::Command(_) => Vec::new(),
            Kind::Regex(m) if m.has_pattern() => Vec::new(),
            _ => match (&inner.expected, &inner.field) {
                (Some(e), _) | (None, Some(e)) => vec![vec![e.clone()]],
                (None, None) => vec![program
                    .output_fields
                    .iter()
                    .map(|f| f.name.clone())
                    .collect()],
            },
        }
    }

    /// Score one example's outputs.
    pub async fn score(
        &self,
        example: &Example,
        outputs: &Map<String, Value>,
        ctx: &MetricContext,
    ) -> Result<Score, MetricError> {
        let s = Box::pin(self.score_inner(example, outputs, ctx)).await?;
        if s.score.is_nan() {
            return Err(MetricError::Score(format!("{} returned NaN", self.name())));
        }
        Ok(Score::new(s.score.clamp(0.0, 1.0), s.feedback))
    }

    async fn score_inner(
        &self,
        ex: &Example,
        outputs: &Map<String, Value>,
        ctx: &MetricContext,
    ) -> Result<Score, MetricError> {
        let inner = &*self.inner;
        match &inner.kind {
            Kind::Weighted(parts) => {
                let mut total = 0.0;
                let mut notes = Vec::new();
                for (w, m) in parts {
                    let s = m.score(ex, outputs, ctx).await?;
                    total += w * s.score;
                    if let Some(fb) = s.feedback {
                        notes.push(format!("{}: {fb}", m.name()));
                    }
                }
                Ok(Score::new(
                    total,
                    (!notes.is_empty()).then(|| notes.join("\n")),
                ))
            }
            Kind::Judge(j) => {
                let field = self.resolve_field(ex, outputs);
                let pred = output_value(outputs, &field)?;
                let gold = self.lookup_expected(ex, &field);
                j.score(ex, pred, gold, ctx).await
            }
            Kind::Command(c) => c.score(ex, outputs).await,
            Kind::ExactMatch(m) => self.pair(ex, outputs).map(|(p, g)| m.score(p, g)),
            Kind::F1(m) => self.pair(ex, outputs).map(|(p, g)| m.score(p, g)),
            Kind::Contains(m) => self.pair(ex, outputs).map(|(p, g)| m.score(p, g)),
            Kind::Numeric(m) => self.pair(ex, outputs).map(|(p, g)| m.score(p, g)),
            Kind::JsonMatch(m) => self.pair(ex, outputs).map(|(p, g)| m.score(p, g)),
            Kind::Regex(m) => {
                // With its own `pattern` a regex metric needs no expected value.
                let field = self.resolve_field(ex, outputs);
                let pred = output_value(outputs, &field)?;
                let gold = if m.has_pattern() {
                    None
                } else {
                    Some(self.expected_value(ex, &field)?)
                };
                m.score(pred, gold)
            }
            Kind::Sql(m) => {
                let (p, g) = self.pair(ex, outputs)?;
                m.score(ex, p, g).await
            }
        }
    }

    /// The compared output and its expected value.
    fn pair<'a>(
        &self,
        ex: &'a Example,
        outputs: &'a Map<String, Value>,
    ) -> Result<(&'a Value, &'a Value), MetricError> {
        let field = self.resolve_field(ex, outputs);
        Ok((
            output_value(outputs, &field)?,
            self.expected_value(ex, &field)?,
        ))
    }

    /// Score a single value against an expected value, as refine and
    /// best_of_n rewards do: `got` is output `field`, `expected` its gold.
    pub async fn score_value(
        &self,
        field: &str,
        got: &Value,
        expected: Option<&Value>,
        ctx: &MetricContext,
    ) -> Result<Score, MetricError> {
        let mut ex = Example {
            index: 0,
            row: 0,
            inputs: Map::new(),
            expected: Map::new(),
            extra: Map::new(),
        };
        if let Some(e) = expected {
            let name = self.inner.expected.as_deref().unwrap_or(field);
            ex.expected.insert(name.to_string(), e.clone());
        }
        let mut outputs = Map::new();
        outputs.insert(field.to_string(), got.clone());
        self.score(&ex, &outputs, ctx).await
    }

    /// The output a metric compares: `field` when given; otherwise the first
    /// output (in program order) that the example has an expected value for,
    /// falling back to the first output. This makes a chain-of-thought
    /// program's leading `reasoning` output harmless.
    fn resolve_field(&self, ex: &Example, outputs: &Map<String, Value>) -> String {
        if let Some(f) = &self.inner.field {
            return f.clone();
        }
        let expected_name = |k: &String| self.inner.expected.clone().unwrap_or_else(|| k.clone());
        outputs
            .keys()
            .find(|k| ex.expected.contains_key(&expected_name(k)))
            .or_else(|| outputs.keys().next())
            .cloned()
            .unwrap_or_default()
    }

    fn lookup_expected<'e>(&self, ex: &'e Example, field: &str) -> Option<&'e Value> {
        let name = self.inner.expected.as_deref().unwrap_or(field);
        // A gold column that is not a program output (e.g. `query` when the
        // program outputs `sql` and no mapping was given) lands in `extra`.
        ex.expected.get(name).or_else(|| ex.extra.get(name))
    }

    fn expected_value<'e>(&self, ex: &'e Example, field: &str) -> Result<&'e Value, MetricError> {
        let name = self.inner.expected.as_deref().unwrap_or(field);
        self.lookup_expected(ex, field).ok_or_else(|| {
            let have: Vec<&str> = ex.expected.keys().map(String::as_str).collect();
            MetricError::Score(format!(
                "row {}: no expected value `{name}` for {} (expected values in this row: {}); map a dataset column to it with `--map COLUMN={name}`",
                ex.row,
                self.name(),
                if have.is_empty() { "none".to_string() } else { have.join(", ") }
            ))
        })
    }

    /// The named LM an `llm_judge` metric (or one inside a weighted
    /// metric) calls, if it names one, so the CLI can check it exists.
    pub fn lm_name(&self) -> Option<&str> {
        match &self.inner.kind {
            Kind::Judge(j) => j.lm(),
            Kind::Weighted(parts) => parts.iter().find_map(|(_, m)| m.lm_name()),
            _ => None,
        }
    }

    /// Short description for reports, e.g. `exact_match(sentiment)` or
    /// `0.7*exact_match(answer) + 0.3*f1(answer)`.
    pub fn name(&self) -> String {
        let inner = &*self.inner;
        if let Kind::Weighted(parts) = &inner.kind {
            return parts
                .iter()
                .map(|(w, m)| format!("{}*{}", fmt_weight(*w), m.name()))
                .collect::<Vec<_>>()
                .join(" + ");
        }
        let ty = inner
            .canonical
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("metric");
        match (&inner.field, &inner.expected) {
            (Some(f), Some(e)) if f != e => format!("{ty}({f} vs {e})"),
            (Some(f), _) => format!("{ty}({f})"),
            (None, _) => ty.to_string(),
        }
    }

    /// `sha256:<hex>` of the canonical spec (keys sorted), plus the bytes of
    /// any script a `command` metric runs: editing the script changes it.
    pub fn content_hash(&self) -> String {
        self.inner.hash.clone()
    }

    /// The spec with sorted keys (what the hash covers, besides scripts).
    pub fn canonical_spec(&self) -> &Value {
        &self.inner.canonical
    }

    fn build(
        kind: Kind,
        field: Option<String>,
        expected: Option<String>,
        canonical: Value,
        extra_bytes: Vec<Vec<u8>>,
    ) -> Metric {
        let mut h = Sha256::new();
        h.update(canonical.to_string().as_bytes());
        for b in &extra_bytes {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        }
        Metric {
            inner: Arc::new(Inner {
                kind,
                field,
                expected,
                canonical,
                hash: format!("sha256:{}", hex::encode(h.finalize())),
            }),
        }
    }
}

fn fmt_weight(w: f64) -> String {
    let s = format!("{w:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `f1:answer` → `{type: f1, field: answer}`.
fn shorthand(s: &str) -> Result<Value, MetricError> {
    let (ty, field) = match s.split_once(':') {
        Some((t, f)) => (t.trim(), Some(f.trim())),
        None => (s.trim(), None),
    };
    if ty.is_empty() {
        return Err(spec_err("empty metric name"));
    }
    let mut m = Map::new();
    m.insert("type".into(), Value::from(ty));
    if let Some(f) = field.filter(|f| !f.is_empty()) {
        m.insert("field".into(), Value::from(f));
    }
    Ok(Value::Object(m))
}

fn output_value<'o>(
    outputs: &'o Map<String, Value>,
    field: &str,
) -> Result<&'o Value, MetricError> {
    outputs.get(field).ok_or_else(|| {
        MetricError::Score(format!(
            "the program produced no output `{field}` (outputs: {})",
            outputs.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Sort object keys recursively so equal specs hash equally however written.
fn canonical(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Deserialize a type's own keys (everything but type/field/expected),
/// rejecting unknown keys with serde's list of the accepted ones.
fn options<T: DeserializeOwned>(ty: &str, rest: Map<String, Value>) -> Result<T, MetricError> {
    serde_json::from_value(Value::Object(rest)).map_err(|e| {
        let msg = e.to_string();
        // serde names the unknown key and the type's own keys; add the keys
        // every metric takes and a did-you-mean over all of them.
        let ticked: Vec<&str> = msg.split('`').skip(1).step_by(2).collect();
        match ticked.split_first() {
            Some((unknown, own)) if msg.starts_with("unknown field") => {
                let mut known: Vec<&str> = vec!["field", "expected"];
                known.extend(own.iter().copied());
                let hint = crate::diag::did_you_mean(unknown, known.iter().copied())
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                spec_err(format!(
                    "{ty}: unknown key `{unknown}`{hint}; {ty} takes: type, {}",
                    known.join(", ")
                ))
            }
            _ => spec_err(format!("{ty}: {msg}")),
        }
    })
}

fn opt_string(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, MetricError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
        Some(other) => Err(spec_err(format!(
            "`{key}` must be a field name, got `{other}`"
        ))),
    }
}

fn single(obj: &Map<String, Value>, base_dir: &Path) -> Result<Metric, MetricError> {
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.trim().to_string(),
        Some(other) => return Err(spec_err(format!("`type` must be a string, got `{other}`"))),
        None => {
            return Err(spec_err(format!(
                "missing `type` (one of {})",
                TYPES.join(", ")
            )))
        }
    };
    let field = opt_string(obj, "field")?;
    let expected = opt_string(obj, "expected")?;
    let mut rest = obj.clone();
    for k in ["type", "field", "expected"] {
        rest.remove(k);
    }
    let mut scripts = Vec::new();
    let kind = match ty.as_str() {
        "exact_match" => Kind::ExactMatch(options(&ty, rest)?),
        "f1" => Kind::F1(options(&ty, rest)?),
        "contains" => Kind::Contains(options(&ty, rest)?),
        "numeric" => Kind::Numeric(numeric::Numeric::new(options(&ty, rest)?)?),
        "regex" => Kind::Regex(text::RegexMetric::new(options(&ty, rest)?)?),
        "json_match" => Kind::JsonMatch(options(&ty, rest)?),
        "sql_execution" => Kind::Sql(sql::SqlExecution::new(options(&ty, rest)?, base_dir)?),
        "llm_judge" => Kind::Judge(judge::LlmJudge::new(options(&ty, rest)?)),
        "command" => {
            let c = command::CommandMetric::new(options(&ty, rest)?, base_dir)?;
            scripts = c.script_bytes();
            Kind::Command(c)
        }
        other => {
            let hint = crate::diag::did_you_mean(other, TYPES.iter().copied())
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            return Err(spec_err(format!(
                "unknown metric type `{other}`{hint}; known types: {}",
                TYPES.join(", ")
            )));
        }
    };
    Ok(Metric::build(
        kind,
        field,
        expected,
        canonical(&Value::Object(obj.clone())),
        scripts,
    ))
}

fn weighted(items: &[Value], base_dir: &Path) -> Result<Metric, MetricError> {
    if items.is_empty() {
        return Err(spec_err("an empty list of metrics"));
    }
    let mut parts = Vec::new();
    let mut canon = Vec::new();
    let mut scripts = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = |m: String| spec_err(format!("metric {}: {m}", i + 1));
        let mut obj = match item {
            Value::Object(o) => o.clone(),
            Value::String(s) => match shorthand(s)? {
                Value::Object(o) => o,
                _ => Map::new(),
            },
            other => return Err(at(format!("expected an object, got `{other}`"))),
        };
        let weight = match obj.remove("weight") {
            None => 1.0,
            Some(w) => match w.as_f64() {
                Some(w) if w.is_finite() && w >= 0.0 => w,
                _ => return Err(at(format!("`weight` must be a number >= 0, got `{w}`"))),
            },
        };
        let m = single(&obj, base_dir).map_err(|e| match e {
            MetricError::Spec(m) => at(m),
            other => other,
        })?;
        let mut c = m.inner.canonical.clone();
        if let Value::Object(o) = &mut c {
            o.insert("weight".into(), Value::from(weight));
        }
        canon.push(canonical(&c));
        if let Kind::Command(cm) = &m.inner.kind {
            scripts.extend(cm.script_bytes());
        }
        parts.push((weight, m));
    }
    let sum: f64 = parts.iter().map(|(w, _)| w).sum();
    if sum <= 0.0 {
        return Err(spec_err("the weights of a metric list must not all be 0"));
    }
    for (w, _) in &mut parts {
        *w /= sum;
    }
    Ok(Metric::build(
        Kind::Weighted(parts),
        None,
        None,
        Value::Array(canon),
        scripts,
    ))
}

/// A value as text for text metrics: strings as they are, numbers and bools
/// in their usual form, null as empty, lists and objects as compact JSON.
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Text shortened for feedback messages.
pub(crate) fn short(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Gold answers: a list for a scalar prediction is a list of acceptable
/// answers; otherwise the gold value is the one answer.
pub(crate) fn answers<'g>(pred: &Value, gold: &'g Value) -> Vec<&'g Value> {
    match gold {
        Value::Array(items) if !items.is_empty() => {
            let pred_is_list = pred.is_array();
            if !pred_is_list || items.iter().all(Value::is_array) {
                items.iter().collect()
            } else {
                vec![gold]
            }
        }
        _ => vec![gold],
    }
}

#[cfg(test)]
mod tests;
