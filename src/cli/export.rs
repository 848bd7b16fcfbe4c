//! `lmc export` / `lmc import`: move compiled state to and from DSPy's
//! saved-program JSON (`module.save("x.json")` / `module.load("x.json")`).
//!
//! DSPy saves one entry per named predictor — `{"traces": [], "train": [],
//! "demos": [...], "signature": {"instructions", "fields": [{"prefix",
//! "description"}]}, "lm": null}` — plus `"metadata": {"dependency_versions":
//! ...}`. Its predictor names come from attribute paths, so the mapping to
//! lmc's predictor paths is by kind: a `predict` node `N` is `N` (a bare
//! `dspy.Predict` attribute), a chain-of-thought, refine, best_of_n or map
//! node `N` is `N.predict` (DSPy's ChainOfThought holds a Predict named
//! `predict`), a react node's `N.react` / `N.extract` are `N.react` /
//! `N.extract.predict`, and a multi_chain_comparison node's `N.attempt` /
//! `N.compare` are `N.attempt.predict` / `N.compare.predict` (a DSPy module
//! holding `attempt = dspy.ChainOfThought(sig)` and `compare =
//! dspy.MultiChainComparison(sig, M=n)`, whose Predict is also named
//! `predict`; the compare fields carry DSPy's own prefixes and
//! descriptions). Import accepts either spelling. Field state is
//! positional in DSPy (inputs then outputs, in signature order); lmc keys it
//! by field name on export and maps it back by position on import. kNN
//! state has no DSPy equivalent: it is exported under an extra
//! `lmc_knn` key (DSPy's `load_state` merely sets it as an unused
//! attribute) and restored on import.

use anyhow::Context as _;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::common::input_err;
use crate::artifact::{Artifact, ArtifactError, Lineage};
use crate::limits::{check_state, sub_path, JsonDoc, Problem};
use crate::overlay::{Demo, FieldOverride, KnnDemos, Overlay, PredictorState};
use crate::program::{PredictorRef, Program};
use crate::signature::{Field, Signature};

/// The DSPy version whose save format this mirrors (written to metadata).
const DSPY_VERSION: &str = "3.0.4";

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Compiled artifact.
    pub artifact: PathBuf,
    /// Output format (only `dspy`).
    #[arg(long, default_value = "dspy", value_parser = ["dspy"])]
    pub format: String,
    /// Where to write [default: stdout].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// DSPy saved-program JSON.
    pub file: PathBuf,
    /// The lmc program the state belongs to (default: the project's program).
    #[arg(long, value_name = "PATH")]
    pub program: Option<PathBuf>,
    /// Artifact to write [default: <program-stem>.compiled.json].
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
}

/// DSPy's default prefix: words of the snake_case name, capitalized, then `:`.
pub fn infer_prefix(name: &str) -> String {
    let words: Vec<String> = name
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect();
    format!("{}:", words.join(" "))
}

fn field_prefix(f: &Field) -> String {
    f.prefix.clone().unwrap_or_else(|| infer_prefix(&f.name))
}

fn field_description(f: &Field) -> String {
    f.description
        .clone()
        .unwrap_or_else(|| format!("${{{}}}", f.name))
}

/// The DSPy name of an lmc predictor.
pub fn dspy_name(program: &Program, p: &PredictorRef) -> String {
    // Each node kind names its predictors the way DSPy's module does.
    program
        .node(&p.node)
        .and_then(|n| {
            n.kind
                .predictors(&n.name)
                .into_iter()
                .find(|o| o.path == p.path)
        })
        .map_or_else(|| format!("{}.predict", p.path), |o| o.dspy_name)
}

/// The lmc predictor a DSPy name denotes: the name itself, or with DSPy's
/// wrapper suffixes (`.predict`, `.module`) removed.
fn lmc_path(program: &Program, name: &str) -> Option<PredictorRef> {
    let mut candidates = vec![name.to_string()];
    let mut n = name.to_string();
    for suffix in [".predict", ".module"] {
        if let Some(s) = n.strip_suffix(suffix) {
            n = s.to_string();
            candidates.push(n.clone());
        }
    }
    candidates.iter().find_map(|c| program.predictor(c))
}

/// DSPy saved-program JSON for `overlay` on `program`.
pub fn to_dspy(program: &Program, overlay: &Overlay) -> Value {
    let mut out = Map::new();
    for p in program.predictors() {
        let st = overlay.state(&p.path);
        let sig: Signature = st.apply(&p.signature);
        let demos: Vec<Value> = st
            .demos
            .iter()
            .map(|d| {
                let mut m = Map::new();
                if d.augmented {
                    m.insert("augmented".into(), Value::Bool(true));
                }
                for (k, v) in &d.fields {
                    m.insert(k.clone(), v.clone());
                }
                Value::Object(m)
            })
            .collect();
        let fields: Vec<Value> = sig
            .inputs
            .iter()
            .chain(sig.outputs.iter())
            .map(|f| json!({"prefix": field_prefix(f), "description": field_description(f)}))
            .collect();
        let mut entry = json!({
            "traces": [],
            "train": [],
            "demos": demos,
            "signature": {"instructions": sig.objective(), "fields": fields},
            "lm": null,
        });
        if let Some(knn) = &st.knn {
            entry["lmc_knn"] = serde_json::to_value(knn).unwrap_or(Value::Null);
        }
        out.insert(dspy_name(program, &p), entry);
    }
    out.insert(
        "metadata".into(),
        json!({"dependency_versions": {"python": "3.12", "dspy": DSPY_VERSION, "cloudpickle": "3.1"}}),
    );
    Value::Object(out)
}

/// The overlay a DSPy saved program gives `program`. Only state that
/// differs from the program as written is kept, so exporting and importing
/// back gives the same overlay.
pub fn from_dspy(program: &Program, saved: &Value) -> Result<Overlay, Vec<Problem>> {
    let Some(obj) = saved.as_object() else {
        return Err(vec![Problem::new(
            "",
            "expected a JSON object of predictor states",
        )
        .hint("DSPy writes one with `module.save(\"program.json\")`")]);
    };
    let mut overlay = Overlay::default();
    let mut problems = Vec::new();
    let known: Vec<String> = program
        .predictors()
        .iter()
        .map(|p| dspy_name(program, p))
        .collect();
    for (name, state) in obj {
        if name == "metadata" {
            continue;
        }
        match predictor_from_dspy(program, name, state) {
            Ok(Some((path, st))) => {
                problems.extend(check_state(name, &st, "lmc_knn"));
                // Only state that differs from the program as written is kept.
                if st != PredictorState::default() {
                    overlay.predictors.insert(path, st);
                }
            }
            Ok(None) => problems.push(
                Problem::new(
                    name.as_str(),
                    format!("predictor `{name}` is not in program `{}`", program.name),
                )
                .hint(format!("its predictors, DSPy names: {}", known.join(", "))),
            ),
            Err(mut ps) => problems.append(&mut ps),
        }
    }
    if problems.is_empty() {
        Ok(overlay)
    } else {
        Err(problems)
    }
}

/// The state one DSPy predictor entry gives (None: no such predictor).
fn predictor_from_dspy(
    program: &Program,
    name: &str,
    state: &Value,
) -> Result<Option<(String, PredictorState)>, Vec<Problem>> {
    let Some(p) = lmc_path(program, name) else {
        return Ok(None);
    };
    let mut problems = Vec::new();
    let mut st = PredictorState::default();
    if let Some(demos) = state.get("demos").and_then(|d| d.as_array()) {
        for (i, d) in demos.iter().enumerate() {
            let Some(m) = d.as_object() else {
                problems.push(
                    Problem::new(format!("{name}.demos[{i}]"), "every demo must be an object")
                        .hint("a demo maps field names to values, e.g. `{\"question\": \"...\", \"answer\": \"...\"}`"),
                );
                continue;
            };
            let mut fields = m.clone();
            let augmented = fields
                .remove("augmented")
                .and_then(|a| a.as_bool())
                .unwrap_or(false);
            st.demos.push(Demo { fields, augmented });
        }
    }
    if let Some(sig) = state.get("signature") {
        if let Some(i) = sig.get("instructions").and_then(|i| i.as_str()) {
            if i != p.signature.objective() {
                st.instructions = Some(i.to_string());
            }
        }
        if let Some(fields) = sig.get("fields").and_then(|f| f.as_array()) {
            let all: Vec<&Field> = p
                .signature
                .inputs
                .iter()
                .chain(&p.signature.outputs)
                .collect();
            if fields.len() != all.len() {
                problems.push(
                    Problem::new(
                        format!("{name}.signature.fields"),
                        format!(
                            "{} fields here, predictor `{}` has {}",
                            fields.len(),
                            p.path,
                            all.len()
                        ),
                    )
                    .hint("DSPy lists the inputs then the outputs, in signature order; was the file saved from another version of the program?"),
                );
            } else {
                for (f, v) in all.iter().zip(fields) {
                    let mut o = FieldOverride::default();
                    if let Some(px) = v.get("prefix").and_then(|x| x.as_str()) {
                        if px != field_prefix(f) {
                            o.prefix = Some(px.to_string());
                        }
                    }
                    if let Some(d) = v.get("description").and_then(|x| x.as_str()) {
                        if d != field_description(f) {
                            o.description = Some(d.to_string());
                        }
                    }
                    if o != FieldOverride::default() {
                        st.fields.insert(f.name.clone(), o);
                    }
                }
            }
        }
    }
    if let Some(k) = state.get("lmc_knn").filter(|k| !k.is_null()) {
        match serde_path_to_error::deserialize::<_, KnnDemos>(k.clone()) {
            Ok(knn) => st.knn = Some(knn),
            Err(e) => problems.push(
                Problem::new(
                    sub_path(&format!("{name}.lmc_knn"), &e.path().to_string()),
                    e.inner().to_string(),
                )
                .hint("`lmc_knn` is written by `lmc export`: {k, input_fields, pool}"),
            ),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some((p.path.clone(), st)))
}

/// An artifact error as shown to the user: located diagnostics render
/// themselves (with their own `error:`), the others get the prefix.
fn artifact_err(e: ArtifactError) -> anyhow::Error {
    match e {
        ArtifactError::Diagnostics(ds) => input_err(ds.to_string()),
        e => input_err(format!("{e}")),
    }
}

pub fn run_export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let artifact = Artifact::load(&args.artifact).map_err(artifact_err)?;
    let program = artifact.program().map_err(artifact_err)?;
    let value = to_dspy(&program, &artifact.overlay());
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    for (path, st) in &artifact.predictors {
        if st.knn.is_some() {
            eprintln!("warning: predictor `{path}` uses kNN demo selection, which DSPy's Predict cannot load: it is exported under `lmc_knn` with empty `demos`");
        }
    }
    match &args.output {
        Some(p) => {
            std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let target = crate::settings::load_target(args.program.as_deref())
        .map_err(|e| input_err(format!("{e}")))?;
    let program = target.program;
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| input_err(format!("cannot read {}: {e}", args.file.display())))?;
    let doc = JsonDoc::new(&text, &args.file);
    let saved: Value =
        serde_json::from_str(&text).map_err(|e| input_err(doc.syntax(&e).to_string()))?;
    let overlay =
        from_dspy(&program, &saved).map_err(|ps| input_err(doc.diagnostics(ps).to_string()))?;
    let output = args.output.clone().unwrap_or_else(|| {
        let stem = target
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.name.clone());
        PathBuf::from(format!("{stem}.compiled.json"))
    });
    let mut settings = BTreeMap::new();
    settings.insert(
        "source".to_string(),
        Value::String(display_name(&args.file)),
    );
    if let Some(v) = saved
        .pointer("/metadata/dependency_versions/dspy")
        .and_then(|v| v.as_str())
    {
        settings.insert("dspy_version".into(), Value::String(v.to_string()));
    }
    let lineage = Lineage {
        optimizer: "import:dspy".into(),
        settings,
        lmc_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    let artifact = Artifact::new(&program, &overlay, program.lm.as_ref(), lineage, &output)
        .with_lms(program.lms.iter().map(|(n, c)| (n, c.clone())));
    artifact.save(&output).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "wrote {} ({} predictors with state)",
        output.display(),
        overlay.predictors.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn display_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}
