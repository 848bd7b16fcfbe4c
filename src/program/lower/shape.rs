//! Lowering passes 1 and 2: the YAML tree against the spec's key sets
//! (every unknown or misplaced key reported with a did-you-mean, then
//! dropped), and serde per section and per entry so that one bad entry
//! does not hide the next.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{list, suggest, Cx};
use crate::diag::did_you_mean;
use crate::spec::{self, OrderedMap};
use crate::yaml::{join, YNode};

/// Walk the tree against the spec's key sets; record unknown keys' paths.
pub(super) fn check_shape(cx: &mut Cx, root: &YNode, unknown: &mut Vec<String>) {
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
                        let allowed = &allowed[..];
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
                None => keys(cx, &e.value, &p, &spec::ALL_NODE_KEYS, "a node", unknown),
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

pub(super) fn signature_shape(cx: &mut Cx, node: &YNode, path: &str, unknown: &mut Vec<String>) {
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
pub(super) fn keys(
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
pub(super) fn remove_path(v: &mut Value, path: &str) {
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
pub(super) fn de<T: DeserializeOwned>(cx: &mut Cx, v: &Value, path: &str) -> Option<T> {
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
pub(super) fn serde_hint(msg: &str) -> (String, Option<String>) {
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let word = rest.split('`').next().unwrap_or_default();
        let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).collect();
        let hint = did_you_mean(word, expected.iter().copied()).or_else(|| {
            (!expected.is_empty()).then(|| format!("expected one of {}", list(&expected)))
        });
        return (format!("unknown key `{word}`"), hint);
    }
    // serde names Rust types; users know the YAML shapes.
    const SHAPES: &[(&str, &str)] = &[
        (
            "struct NodeSpec",
            "a node mapping like `{kind: predict, signature: qa}`",
        ),
        (
            "struct ToolSpecIn",
            "a tool mapping like `{kind: sqlite, path: db.sqlite}`",
        ),
        (
            "struct DatasetsSpec",
            "a mapping {train, dev, test, columns}",
        ),
        (
            "struct LmConfig",
            "a mapping of LM settings like `{max_tokens: 64}`",
        ),
        (
            "struct RewardSpecIn",
            "a reward mapping like `{type: non_empty, field: answer}`",
        ),
        (
            "struct FieldBody",
            "a field mapping {type, description, prefix, schema, default}",
        ),
        (
            "struct SignatureBody",
            "a signature mapping {instructions, inputs, outputs}",
        ),
        ("struct LiteralSpec", "a literal `{value: ...}`"),
        ("a sequence", "a list"),
        ("sequence", "a list"),
        ("map,", "a mapping,"),
    ];
    let mut m = msg.to_string();
    for (from, to) in SHAPES {
        m = m.replace(from, to);
    }
    if m.starts_with("invalid type: ") {
        m = m.replacen("invalid type: ", "wrong type: found ", 1);
    } else if !m.starts_with("missing") && !m.starts_with("invalid") && !m.starts_with("duplicate")
    {
        // An untagged enum's "expecting" text: say what was expected.
        m = format!("expected {m}");
    }
    (m, None)
}

/// Deserialize each entry of a mapping section on its own.
pub(super) fn de_map<T: DeserializeOwned>(
    cx: &mut Cx,
    root: &Value,
    section: &str,
) -> OrderedMap<T> {
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
    OrderedMap::from_vec(out)
}
