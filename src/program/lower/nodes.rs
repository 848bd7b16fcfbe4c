//! Lowering of tools and nodes. A node is lowered by its kind's registry
//! entry (`crate::nodes`); this file gives the kinds a [`NodeLowering`]
//! context with the checks they share (signature resolution, tool
//! references, positive counts, rewards) so each kind's file holds only
//! what is particular to it.

use serde_json::Value;
use std::collections::BTreeMap;

use super::{field_names, ident_hint, list, suggest, Draft, Lowerer};
use crate::nodes;
use crate::program::shorthand::is_identifier;
use crate::program::{Binding, RewardSpec, ToolSpec};
use crate::signature::Signature;
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

    /// Lower one node through its kind's registry entry.
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
        let Some(info) = nodes::info(&ns.kind) else {
            let hint = suggest(
                &ns.kind,
                nodes::NAMES.iter().copied(),
                format!("node kinds are {}", list(&nodes::NAMES)),
            );
            self.cx.err(
                &join(p, "kind"),
                format!("unknown node kind `{}`", ns.kind),
                Some(hint),
            );
            return None;
        };
        let mut nl = NodeLowering {
            lw: self,
            name,
            spec: ns,
            path: p,
            sigs,
            sig_names,
            tools,
        };
        let l = (info.lower)(&mut nl)?;
        Some(Draft {
            name: name.to_string(),
            kind: l.kind,
            outputs: l.outputs,
            expects: l.expects,
            over: l.over,
        })
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

/// What a kind's lowering sees: the node as written and the shared checks.
/// Errors are reported here (located by YAML path); a kind returns `None`
/// after reporting.
pub struct NodeLowering<'l, 'a> {
    lw: &'l mut Lowerer<'a>,
    /// The node's name.
    pub name: &'l str,
    /// The node as written.
    pub spec: &'l NodeSpec,
    /// The node's YAML path (`nodes.NAME`).
    pub path: &'l str,
    sigs: &'l BTreeMap<String, Signature>,
    sig_names: &'l [String],
    tools: &'l [ToolSpec],
}

impl NodeLowering<'_, '_> {
    /// The YAML path of one of the node's keys.
    pub fn at(&self, key: &str) -> String {
        join(self.path, key)
    }

    /// The kind's own keys, deserialized into its struct (which should
    /// deny unknown fields and make every key optional). A wrong type is
    /// reported at the key, as serde's first error, and gives `None`:
    /// the node is then not lowered further, so one mistake does not
    /// cascade.
    pub fn keys<T: serde::de::DeserializeOwned>(&mut self) -> Option<T> {
        let v = Value::Object(self.spec.keys.clone());
        super::de(self.lw.cx, &v, self.path)
    }

    /// An error at `path` (a value).
    pub fn err(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.lw.cx.err(path, message, hint);
    }

    /// An error at the key of `path` (a missing or misplaced key).
    pub fn err_key(&mut self, path: &str, message: impl Into<String>, hint: Option<String>) {
        self.lw.cx.err_key(path, message, hint);
    }

    /// The node's `signature`, resolved (named, shorthand or inline).
    pub fn signature(&mut self) -> Option<Signature> {
        let (sigs, names) = (self.sigs, self.sig_names);
        self.lw.resolve_sig(
            self.spec.signature.as_ref(),
            self.path,
            &self.spec.kind,
            sigs,
            names,
        )
    }

    /// A tool reference by name at `path`; `want` restricts the tool kind.
    pub fn tool_ref(&mut self, name: &str, path: &str, want: Option<&str>) -> Option<ToolSpec> {
        let tools = self.tools;
        self.lw.tool_ref(name, path, tools, want)
    }

    /// The node's `reward`, checked against the rendered signature `sig`.
    pub fn reward(&mut self, sig: &Signature) -> Option<RewardSpec> {
        let tools = self.tools;
        self.lw.reward(self.spec, self.path, sig, tools)
    }

    /// A count of LM calls or added fields (`n`, `max_iters`): at least 1
    /// and bounded, `default` when left out.
    pub fn positive(&mut self, v: Option<u32>, key: &str, default: u32) -> Option<u32> {
        let p = self.at(key);
        match v {
            Some(0) => {
                self.err(
                    &p,
                    format!("`{key}` must be at least 1"),
                    Some(format!("leave `{key}` out for the default ({default})")),
                );
                None
            }
            // 4e9 made `lmc check` loop for minutes before any call was made.
            Some(v) if v as usize > crate::limits::MAX_REPEAT => {
                self.err(
                    &p,
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
    }

    /// `field_names` for hints: the names of `fields`, quoted.
    pub fn field_names(fields: &[crate::signature::Field]) -> String {
        field_names(fields)
    }

    /// A did-you-mean hint for `word` among `cands`, else `fallback`.
    pub fn suggest<'c>(
        word: &str,
        cands: impl IntoIterator<Item = &'c str>,
        fallback: String,
    ) -> String {
        suggest(word, cands, fallback)
    }

    /// Names quoted and comma-separated, for hints.
    pub fn list(names: &[&str]) -> String {
        list(names)
    }
}
