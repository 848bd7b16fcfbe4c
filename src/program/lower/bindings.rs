//! Lowering of bindings and the graph: explicit bindings resolved
//! (`input.NAME`, `NODE.FIELD`, literals), default bindings chosen, types
//! checked along every edge, and nodes ordered topologically with cycles
//! reported.

use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use super::{field_names, names, suggest, Draft, Expects, Lowerer};
use crate::diag::did_you_mean;
use crate::program::{Binding, Node, NodeKind, RewardSpec};
use crate::signature::{Field, FieldType};
use crate::spec::{BindingSpec, OrderedMap};
use crate::yaml::join;

impl Lowerer<'_> {
    // ------------------------------------------------------------ bindings

    #[allow(clippy::too_many_arguments)]
    pub(super) fn bindings(
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
    pub(super) fn check_edge(
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
    pub(super) fn binding(
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
    pub(super) fn guess_node_field(&self, text: &str, all: &[Draft]) -> String {
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
    pub(super) fn node_field<'d>(
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
    pub(super) fn default_binding(
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
    pub(super) fn toposort(&mut self, nodes: Vec<Node>) -> Vec<Node> {
        // Kahn's algorithm with a min-heap of ready nodes: the order is the
        // same as "the first ready node in file order, repeatedly", in
        // O(n log n) instead of a rescan per placed node.
        let by_name: HashMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let deps: Vec<BTreeSet<usize>> = nodes
            .iter()
            .map(|n| {
                let mut bs: Vec<&Binding> = n.inputs.iter().map(|(_, b)| b).collect();
                if let NodeKind::Refine(crate::nodes::refine::Refine {
                    reward: RewardSpec::Metric { expected, .. },
                    ..
                }) = &n.kind
                {
                    bs.push(expected);
                }
                bs.into_iter()
                    .filter_map(|b| match b {
                        Binding::NodeOutput { node, .. } => by_name.get(node.as_str()).copied(),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let mut waiting: Vec<usize> = deps.iter().map(BTreeSet::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = (0..nodes.len())
            .filter(|&i| waiting[i] == 0)
            .map(Reverse)
            .collect();
        let mut placed = vec![false; nodes.len()];
        let mut order = Vec::new();
        while let Some(Reverse(i)) = ready.pop() {
            placed[i] = true;
            order.push(i);
            for &j in &dependents[i] {
                waiting[j] -= 1;
                if waiting[j] == 0 {
                    ready.push(Reverse(j));
                }
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
}

/// The most specific type of a literal, for edge checks: strings are
/// `str`, so a string literal fits enum inputs only when it is one of the
/// values (checked as a one-value enum).
pub(super) fn literal_type(v: &Value) -> FieldType {
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
pub(super) fn unify(a: &FieldType, b: &FieldType) -> Option<FieldType> {
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
