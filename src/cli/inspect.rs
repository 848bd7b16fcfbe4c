//! `lmc inspect`: print the exact messages a program or artifact would send,
//! without calling an LM.
//!
//! Prompts are an output of lmc, not something users write, so they must be
//! easy to see: for every predictor (or one node) this renders the adapter's
//! messages with the artifact's compiled instructions and demos applied, and
//! `{field}` placeholders for inputs not given on the command line. `--json`
//! gives the same messages machine-readably (e.g. to diff two artifacts).

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use crate::adapter::{AdapterKind, Message, Role};
use crate::cli::CliError;
use crate::program::{PredictorRef, Program};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program file or compiled artifact (default: `LMC_PROGRAM`, else the
    /// `program:` of the nearest `lmc.yaml`).
    pub file: Option<PathBuf>,
    /// Show only this node's predictors (or one predictor path, e.g. `agent.react`).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// An input value as NAME=VALUE (repeatable), read the way a CSV cell
    /// is, e.g. `--input 'context=["a", "b"]'`, `--input flag=yes`.
    #[arg(long = "input", value_name = "NAME=VALUE", value_parser = super::common::key_value)]
    pub inputs: Vec<super::common::KeyValue>,
    /// The adapter that renders the messages: chat or json (default: the
    /// program's `lm.adapter`, else chat).
    #[arg(long, value_name = "ADAPTER")]
    pub adapter: Option<AdapterKind>,
    /// Print the messages as JSON: one object per predictor.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = super::target::load(args.file.as_deref(), false)?;
    let given: Vec<(String, String)> = args
        .inputs
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    // Each predictor renders with its node's LM's adapter, resolved the
    // way a run resolves it (without the LM flags `inspect` does not take).
    let lms = super::lm_args::LmArgs::default().resolve(&target)?;
    let adapter_of = |node: &str| -> AdapterKind {
        if let Some(a) = args.adapter {
            return a;
        }
        let name = target.program.node(node).and_then(|n| n.lm.as_deref());
        lms.get(name).unwrap_or(&lms.default).adapter
    };
    // An artifact's overlay: its compiled instructions and demos are shown.
    let (program, overlay) = (&target.program, &target.overlay);

    let mut predictors = program.predictors();
    if let Some(node) = &args.node {
        predictors.retain(|p| &p.node == node || &p.path == node);
        if predictors.is_empty() {
            return Err(unknown_node(program, node).into());
        }
    }
    check_input_names(program, &predictors, &given)?;

    let mut rendered = Vec::with_capacity(predictors.len());
    for p in &predictors {
        let state = overlay.state(&p.path);
        let sig = state.apply(&p.signature);
        let inputs = inputs_for(p, &given);
        let demos = match &state.knn {
            Some(knn) => crate::optimize::knn::select(knn, &inputs),
            None => state.demos.clone(),
        };
        let adapter = adapter_of(&p.node);
        rendered.push((p, sig.clone(), adapter.render(&sig, &demos, &inputs)));
    }

    if args.json {
        let out: Vec<Value> = rendered
            .iter()
            .map(|(p, sig, msgs)| {
                let mut v = json!({
                    "predictor": p.path,
                    "node": p.node,
                    "kind": kind_name(program, &p.node),
                    "adapter": adapter_of(&p.node),
                    "messages": msgs,
                });
                let defaults = output_defaults(sig);
                if !defaults.is_empty() {
                    v["defaults"] = Value::Object(defaults);
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut text = String::new();
        for (i, (p, sig, msgs)) in rendered.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(&format!(
                "=== {} ({}) ===\n",
                p.path,
                kind_name(program, &p.node)
            ));
            // Defaults are never rendered to the model (as in DSPy), so
            // they are shown here, where a reader checks what a call does.
            let defaults = output_defaults(sig);
            if !defaults.is_empty() {
                let shown: Vec<String> =
                    defaults.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                text.push_str(&format!("defaults: {}\n", shown.join(", ")));
            }
            push_messages(&mut text, msgs);
        }
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Every `--input` must name an input of a shown predictor or of the program.
fn check_input_names(
    program: &Program,
    predictors: &[PredictorRef],
    given: &[(String, String)],
) -> Result<(), CliError> {
    let mut known: Vec<&str> = program.inputs.iter().map(|f| f.name.as_str()).collect();
    for p in predictors {
        known.extend(p.signature.inputs.iter().map(|f| f.name.as_str()));
    }
    for (k, _) in given {
        if !known.contains(&k.as_str()) {
            let mut msg = format!("--input `{k}`: no predictor shown takes an input named `{k}`");
            match crate::diag::did_you_mean(k, known.iter().copied()) {
                Some(hint) => msg.push_str(&format!("; {hint}")),
                None => msg.push_str(&format!(" (inputs: {})", known.join(", "))),
            }
            return Err(CliError::Input(msg));
        }
    }
    Ok(())
}

/// The predictor's inputs: given values (converted to the field's type when
/// they convert), `{name}` placeholders for the rest.
fn inputs_for(p: &PredictorRef, given: &[(String, String)]) -> Map<String, Value> {
    p.signature
        .inputs
        .iter()
        .map(|f| {
            let v = match given.iter().rev().find(|(k, _)| *k == f.name) {
                // Read the way `lmc run --input` and a CSV cell are; a value
                // that does not convert is shown as written (this only renders).
                Some((_, raw)) => crate::data::input_from_text(&f.ty, raw)
                    .unwrap_or_else(|_| Value::String(raw.clone())),
                None => Value::String(format!("{{{}}}", f.name)),
            };
            (f.name.clone(), v)
        })
        .collect()
}

fn unknown_node(program: &Program, node: &str) -> CliError {
    let names: Vec<String> = program
        .predictors()
        .into_iter()
        .flat_map(|p| [p.node, p.path])
        .collect();
    let mut msg = format!("--node `{node}`: the program has no predictor node named `{node}`");
    match crate::diag::did_you_mean(node, names.iter().map(String::as_str)) {
        Some(hint) => msg.push_str(&format!("; {hint}")),
        None => {
            let mut uniq = names.clone();
            uniq.dedup();
            msg.push_str(&format!(" (predictors: {})", uniq.join(", ")));
        }
    }
    CliError::Input(msg)
}

/// Output fields' declared defaults, in field order.
fn output_defaults(sig: &crate::signature::Signature) -> Map<String, Value> {
    sig.outputs
        .iter()
        .filter_map(|f| Some((f.name.clone(), f.default.clone()?)))
        .collect()
}

fn kind_name(program: &Program, node: &str) -> &'static str {
    program
        .node(node)
        .map_or("predictor", |n| n.kind.info().name)
}

fn push_messages(text: &mut String, msgs: &[Message]) {
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let role = match m.role {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        text.push_str(&format!("--- {role} ---\n{}\n", m.content));
    }
}
