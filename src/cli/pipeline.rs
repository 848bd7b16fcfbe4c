//! `lmc compile … --optimizer A --then B [--then C]`: a pipeline of
//! optimizers in one command.
//!
//! This file owns what is particular to a pipeline: routing `--opt` to its
//! stages (`--opt KEY=VALUE` is the first stage's, `--opt NAME.KEY=VALUE`
//! goes to every stage called NAME), configuring the `--then` stages (an
//! unknown name fails with a did-you-mean before anything runs), and the
//! lineage record of a stage that ran in memory. The stages themselves run
//! in `super::compile` on one LM context, so they share one budget and one
//! response cache; each starts from the previous stage's overlay, exactly
//! as `lmc compile PREVIOUS.json --optimizer B` would. A `compile:` list
//! in the program or project file is the same pipeline written down: its
//! first stage is the optimizer, the rest run as `--then` stages with their
//! own settings ([`configure_listed`]).

use super::CliError;
use crate::artifact::Stage;
use crate::optimize::{self, Configured, Outcome};
use std::collections::BTreeMap;

/// `--opt` pairs per stage: `stages[0]` is the first optimizer, the rest
/// the `--then` names. A `NAME.` prefix naming a registered optimizer sends
/// the pair to every stage of that name (an error when none is); an
/// unprefixed pair belongs to the first stage.
pub fn route_opts(opts: &[String], stages: &[&str]) -> anyhow::Result<Vec<Vec<String>>> {
    let mut out = vec![Vec::new(); stages.len()];
    for o in opts {
        let key = o.split_once('=').map_or(o.as_str(), |(k, _)| k);
        let Some((prefix, rest)) = o
            .split_once('.')
            .filter(|(p, _)| key.contains('.') && { optimize::lookup(p.trim()).is_ok() })
        else {
            out[0].push(o.clone());
            continue;
        };
        let prefix = prefix.trim();
        let mut hit = false;
        for (i, name) in stages.iter().enumerate() {
            if *name == prefix {
                out[i].push(rest.to_string());
                hit = true;
            }
        }
        if !hit {
            return Err(CliError::Input(format!(
                "--opt {o}: `{prefix}` is not a stage of this compile (stages: {})\n  = help: add `--then {prefix}`, or drop the `{prefix}.` prefix",
                stages.join(" → ")
            ))
            .into());
        }
    }
    Ok(out)
}

/// The `--then` stages, configured from their routed `--opt` pairs.
pub fn configure_then(
    names: &[String],
    opts: &[Vec<String>],
) -> anyhow::Result<Vec<Box<dyn Configured>>> {
    names
        .iter()
        .zip(opts)
        .map(|(name, pairs)| {
            optimize::configure(name, pairs)
                .map_err(|e| CliError::Input(format!("--then {name}: {e}")).into())
        })
        .collect()
}

/// The later stages of a `compile:` list, each with its own settings and
/// then its routed `--opt` pairs (which win, key by key).
pub fn configure_listed(
    stages: &[crate::program::CompileConfig],
    opts: &[Vec<String>],
) -> anyhow::Result<Vec<Box<dyn Configured>>> {
    stages
        .iter()
        .zip(opts)
        .map(|(c, pairs)| {
            let name = c.optimizer_name();
            let at = c.origins.values().next().cloned().unwrap_or_default();
            let mut raw = c.settings.clone();
            let parsed = optimize::settings::parse_pairs(name, pairs)
                .map_err(|e| CliError::Input(format!("--opt {name}.…: {e}")))?;
            raw.extend(parsed);
            optimize::lookup(name)
                .and_then(|o| o.configure(&raw))
                .map_err(|e| CliError::Input(format!("compile stage `{name}` {at}: {e}")).into())
        })
        .collect()
}

/// The lineage record of a stage that ran in memory: no artifact file, so
/// no hash.
pub fn stage_record(optimizer: &dyn Configured, outcome: &Outcome, lm_calls: u64) -> Stage {
    Stage {
        optimizer: optimizer.name().to_string(),
        settings: optimizer.settings(),
        artifact_hash: None,
        dev_score: outcome.best_score.map(|b| b.mean),
        lm_calls,
    }
}

/// Stage names for messages: `mipro → knn_few_shot`.
pub fn names(stages: &[&dyn Configured]) -> String {
    stages
        .iter()
        .map(|o| o.name())
        .collect::<Vec<_>>()
        .join(" → ")
}

/// Figures per stage for `--dry-run --json`.
pub fn dry_run_row(
    optimizer: &dyn Configured,
    p: &optimize::Projection,
) -> BTreeMap<&'static str, serde_json::Value> {
    use serde_json::json;
    BTreeMap::from([
        ("optimizer", json!(optimizer.name())),
        ("settings", json!(optimizer.settings())),
        (
            "phases",
            json!(p
                .phases
                .iter()
                .map(|(n, r)| json!({"phase": n, "runs": r}))
                .collect::<Vec<_>>()),
        ),
        ("lm_calls", json!(p.lm_calls)),
        ("exact", json!(p.exact)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opts_go_to_their_stage() {
        let opts = vec![
            "max_bootstrapped_demos=2".to_string(),
            "knn_few_shot.k=3".to_string(),
            "mipro.num_trials=4".to_string(),
        ];
        let r = route_opts(&opts, &["mipro", "knn_few_shot"]).expect("routed");
        assert_eq!(r[0], vec!["max_bootstrapped_demos=2", "num_trials=4"]);
        assert_eq!(r[1], vec!["k=3"]);
        // A dotted value is not a prefix.
        let r = route_opts(&["metric=a.b".to_string()], &["mipro"]).expect("routed");
        assert_eq!(r[0], vec!["metric=a.b"]);
        // A registered optimizer that is no stage: an input error.
        assert!(route_opts(&["gepa.k=1".to_string()], &["mipro"]).is_err());
    }
}
