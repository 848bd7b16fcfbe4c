//! Lowering of tools and nodes: each node kind's keys, signature, tools and
//! reward checked, and its outputs computed (chain of thought adds
//! `reasoning` first, retrieve yields `passages`, tool yields `result` and
//! `ok`, map wraps every output in a list, multi-chain comparison yields
//! `rationale` then the signature's outputs).

use serde_json::Value;
use std::collections::BTreeMap;

use super::{field_names, ident_hint, list, suggest, Draft, Expects, Lowerer};
use crate::program::multichain::{attempt_field, compare_signature, RATIONALE_FIELD};
use crate::program::shorthand::is_identifier;
use crate::program::{Binding, NodeKind, RewardSpec, ToolSpec};
use crate::signature::{Field, FieldType, Signature};
use crate::spec::{self, NodeSpec, OrderedMap};
use crate::yaml::join;

impl Lowerer<'_> {
    // ------------------------------------------------------------ tools

    pub(super) fn tools(&mut self, specs: &OrderedMap<spec::ToolSpecIn>) -> Vec<ToolSpec> {
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
    pub(super) fn tool_ref(
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
    pub(super) fn node(
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
                    this.cx.err(
                        &join(p, key),
                        format!("`{key}` must be at least 1"),
                        Some(format!("leave `{key}` out for the default ({default})")),
                    );
                    None
                }
                // A count of LM calls or added fields: 4e9 made `lmc check`
                // loop for minutes before any call was made.
                Some(v) if v as usize > crate::limits::MAX_REPEAT => {
                    this.cx.err(
                        &join(p, key),
                        format!(
                            "`{key}` is {v}; at most {} is allowed",
                            crate::limits::MAX_REPEAT
                        ),
                        Some(format!("each unit is an LM call; the default is {default}")),
                    );
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
                    // The SQL tool's operations need their argument bound.
                    let need: &[&str] = match (t.kind.as_str(), op.as_str()) {
                        ("sqlite", "query") => &["sql", "query"],
                        ("sqlite", "describe") => &["table", "tables", "table_name"],
                        _ => &[],
                    };
                    if !need.is_empty() && !need.iter().any(|k| ns.inputs.get(k).is_some()) {
                        self.cx.err_key(
                            p,
                            format!("the `{op}` operation needs an input `{}`", need[0]),
                            Some(format!(
                                "bind it under `inputs:`, e.g. `{}: NODE.FIELD`",
                                need[0]
                            )),
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
            "multi_chain_comparison" => {
                let sig = self.resolve_sig(ns.signature.as_ref(), p, kind_name, sigs, sig_names);
                let n = positive(self, ns.n, "n", 3);
                let sig = sig?;
                let n = n?;
                // The compare predictor adds these fields; a user field of
                // the same name would be silently shadowed.
                let sp = join(p, "signature");
                let mut ok = true;
                if sig.output(RATIONALE_FIELD).is_some() {
                    self.cx.err(
                        &sp,
                        format!("a `{kind_name}` node adds a `{RATIONALE_FIELD}` output; the signature already has one"),
                        Some(format!("rename the signature's `{RATIONALE_FIELD}` output")),
                    );
                    ok = false;
                }
                for f in &sig.inputs {
                    if (1..=n).any(|i| attempt_field(i) == f.name) {
                        self.cx.err(
                            &sp,
                            format!(
                                "a `{kind_name}` node adds inputs `reasoning_attempt_1`..`{}`; the signature already has `{}`",
                                attempt_field(n),
                                f.name
                            ),
                            Some(format!("rename the signature's `{}` input", f.name)),
                        );
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                let outputs = compare_signature(&sig, n).outputs;
                let inputs = sig.inputs.clone();
                Some(draft(
                    NodeKind::MultiChainComparison { signature: sig, n },
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
                        // A default is per item (the inner predictor's), not a list.
                        default: None,
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

    pub(super) fn reward(
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
}
