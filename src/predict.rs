//! One predictor call: the primitive every LM-calling part of lmc uses.
//!
//! Rendering a signature (with its overlay state: instructions, demos) into
//! messages, one LM request, parsing the typed reply, and recording the call
//! as a trace step. It sits below both the graph interpreter (`run`) and the
//! metrics (`metric`): an `llm_judge` metric calls a predictor exactly as a
//! program node does, and `run`'s refine node scores with a metric, so this
//! primitive lives here, where neither depends on the other through it. It
//! imports no graph code (`run`) and no metric code.

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use crate::adapter::{AdapterKind, ParseError};
use crate::lm::choice::{ChoiceMode, ChoiceRequest, CONTENT_FREE};
use crate::lm::{LmError, LmRequest, SharedLm};
use crate::overlay::{Demo, Overlay, PredictorState};
use crate::program::Node;
use crate::signature::FieldType;
use crate::signature::Signature;
use crate::tools::Toolbox;
use crate::trace::{LmCallRecord, Step, Trace};

/// The completion allowance per LM call when `max_tokens` is not set.
pub use crate::lm::resolve::DEFAULT_MAX_TOKENS;

/// Everything a run depends on besides the program and the overlay.
#[derive(Clone)]
pub struct RunContext {
    pub lm: SharedLm,
    pub adapter: AdapterKind,
    pub temperature: f32,
    pub max_tokens: u32,
    /// Distinct rollout ids make otherwise identical requests distinct
    /// (cache key), e.g. bootstrapping rounds at higher temperature.
    pub rollout_id: Option<u64>,
    pub tools: Arc<Toolbox>,
    /// How enum outputs are decided (`lm.choice`); backends that cannot
    /// score values (HTTP) sample whatever this says.
    pub choice: ChoiceMode,
    /// Every LM of the run by name (`default` included), so a node, a
    /// metric or an optimizer role that names one gets it ([`Self::with_lm`]).
    pub lms: Arc<BTreeMap<String, LmHandle>>,
}

/// One LM as the runner calls it: the stack and its sampling settings.
#[derive(Clone)]
pub struct LmHandle {
    pub lm: SharedLm,
    pub adapter: AdapterKind,
    pub temperature: f32,
    pub max_tokens: u32,
    pub choice: ChoiceMode,
}

impl RunContext {
    pub fn new(lm: SharedLm) -> Self {
        RunContext {
            lm,
            adapter: AdapterKind::Chat,
            temperature: 0.0,
            max_tokens: DEFAULT_MAX_TOKENS,
            rollout_id: None,
            tools: Arc::new(Toolbox::default()),
            choice: ChoiceMode::Sample,
            lms: Arc::default(),
        }
    }

    /// This context calling the LM `name` (`None`: unchanged). Names are
    /// checked when the program is lowered and the LM set resolved, so an
    /// unknown one cannot reach here from the CLI; a library caller that
    /// passes one keeps the current LM.
    pub fn with_lm(&self, name: Option<&str>) -> RunContext {
        let Some(h) = name.and_then(|n| self.lms.get(n)) else {
            return self.clone();
        };
        RunContext {
            lm: h.lm.clone(),
            adapter: h.adapter,
            temperature: h.temperature,
            max_tokens: h.max_tokens,
            choice: h.choice,
            ..self.clone()
        }
    }

    /// This context with every LM, named ones included, replaced by the
    /// LM `name`: a whole program on one model (a bootstrapping teacher).
    pub fn all_on(&self, name: &str) -> RunContext {
        let Some(h) = self.lms.get(name) else {
            return self.clone();
        };
        let lms = self.lms.keys().map(|k| (k.clone(), h.clone())).collect();
        RunContext {
            lms: Arc::new(lms),
            ..self.with_lm(Some(name))
        }
    }

    /// The context a node runs in: its `lm:` if it names one.
    pub fn lm_for(&self, node: &Node) -> RunContext {
        self.with_lm(node.lm.as_deref())
    }

    /// The same context with every LM wrapped by `wrap` (eval's stop guard).
    pub fn map_lms(&self, wrap: impl Fn(SharedLm) -> SharedLm) -> RunContext {
        let lms = self
            .lms
            .iter()
            .map(|(n, h)| {
                (
                    n.clone(),
                    LmHandle {
                        lm: wrap(h.lm.clone()),
                        ..h.clone()
                    },
                )
            })
            .collect();
        RunContext {
            lm: wrap(self.lm.clone()),
            lms: Arc::new(lms),
            ..self.clone()
        }
    }

    /// The context of attempt `i` (0-based) of a module that samples one
    /// predictor several times (refine, best_of_n, multi-chain comparison):
    /// rollout id `i` offset by this context's own (so bootstrapping rounds
    /// stay distinct), and temperature 1.0 after the first attempt, so
    /// retries are new samples and not cache hits of the first one.
    pub fn attempt(&self, i: u32) -> RunContext {
        let mut ctx = self.clone();
        ctx.rollout_id = Some(self.rollout_id.unwrap_or(0) * 1000 + i as u64);
        if i > 0 {
            ctx.temperature = 1.0;
        }
        ctx
    }
}

/// Why a run did not produce outputs. The trace still holds every step.
#[derive(Debug, Clone, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum RunError {
    #[error("{0}")]
    Lm(LmError),
    #[error("{0}")]
    Parse(ParseError),
    #[error("missing input `{0}`")]
    MissingInput(String),
    #[error("node `{node}`: {message}")]
    Node { node: String, message: String },
}

impl RunError {
    pub fn is_parse(&self) -> bool {
        matches!(self, RunError::Parse(_))
    }
}

/// One LM call for predictor `path` with signature `base_sig` (before the
/// overlay), recorded as a step. Used by every LM-calling module.
#[allow(clippy::too_many_arguments)]
pub async fn call_predictor(
    ctx: &RunContext,
    overlay: &Overlay,
    node: &str,
    path: &str,
    base_sig: &Signature,
    inputs: &Map<String, Value>,
    rollout_id: Option<u64>,
    trace: &mut Trace,
) -> Result<Map<String, Value>, RunError> {
    // Borrowed, not cloned: this runs once per LM call, and a predictor's
    // state can hold many demos (a kNN pool: a whole training set).
    let unset;
    let state = match overlay.predictors.get(path) {
        Some(s) => s,
        None => {
            unset = PredictorState::default();
            &unset
        }
    };
    let sig = state.apply(base_sig);
    let demos: Cow<'_, [Demo]> = match &state.knn {
        Some(knn) => Cow::Owned(crate::optimize::knn::select(knn, inputs)),
        None => Cow::Borrowed(&state.demos),
    };
    let messages = ctx.adapter.render(&sig, &demos, inputs);
    let req = LmRequest {
        model: ctx.lm.model(),
        messages,
        temperature: ctx.temperature,
        max_tokens: ctx.max_tokens,
        rollout_id,
        grammar: ctx
            .lm
            .supports_grammar()
            .then(|| ctx.adapter.grammar(&sig, ctx.max_tokens)),
        response_format: ctx.adapter.response_format(&sig),
        choice: choice_request(ctx, &sig, &demos, inputs),
    };
    let started = Instant::now();
    let mut step = Step {
        node: node.to_string(),
        predictor: Some(path.to_string()),
        kind: "predict".into(),
        inputs: inputs.clone(),
        outputs: None,
        lm: None,
        tool: None,
        parse_error: None,
        error: None,
    };
    let resp = match ctx.lm.complete(&req).await {
        Ok(r) => r,
        Err(e) => {
            // The request is done with: its messages move into the trace.
            step.lm = Some(LmCallRecord {
                model: req.model,
                messages: req.messages,
                reply: None,
                reasoning: None,
                usage: Default::default(),
                latency_s: started.elapsed().as_secs_f64(),
                cache_hit: false,
                retries: 0,
                cost: 0.0,
                error: Some(e.to_string()),
                choices: Vec::new(),
            });
            step.error = Some(e.to_string());
            trace.steps.push(step);
            return Err(RunError::Lm(e));
        }
    };
    let parsed = ctx.adapter.parse(&sig, &resp.text);
    if parsed.is_err() {
        // Keep the reply for the report, but do not let the cache
        // replay it as final on the next run.
        ctx.lm.mark_unusable(&req);
    }
    let reasoning = crate::adapter::parse::split_thinking(&resp.text)
        .0
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    // The request and the reply are done with: move them into the trace
    // rather than copying every message of every call.
    step.lm = Some(LmCallRecord {
        model: req.model,
        messages: req.messages,
        reply: Some(resp.text),
        reasoning,
        usage: resp.usage,
        latency_s: resp.latency.as_secs_f64(),
        cache_hit: resp.cache_hit,
        retries: resp.retries,
        cost: resp.cost,
        error: None,
        choices: resp.choices,
    });
    match parsed {
        Ok(out) => {
            step.outputs = Some(out.clone());
            trace.steps.push(step);
            Ok(out)
        }
        Err(pe) => {
            step.parse_error = Some(pe.clone());
            step.error = Some(pe.to_string());
            trace.steps.push(step);
            Err(RunError::Parse(pe))
        }
    }
}

/// What a request asks about enum outputs: nothing unless the context asks
/// for a likelihood choice, the backend can score values (it enforces a
/// grammar) and the signature has an enum output, so other requests keep
/// their cache keys. Calibrated mode carries the content-free prompt: the
/// same instructions and demos with "N/A" in every input field.
fn choice_request(
    ctx: &RunContext,
    sig: &Signature,
    demos: &[Demo],
    inputs: &Map<String, Value>,
) -> Option<ChoiceRequest> {
    let has_enum = sig
        .outputs
        .iter()
        .any(|f| matches!(f.ty, FieldType::Enum { .. }));
    if ctx.choice == ChoiceMode::Sample || !has_enum || !ctx.lm.supports_grammar() {
        return None;
    }
    let content_free = (ctx.choice == ChoiceMode::Calibrated).then(|| {
        let blank: Map<String, Value> = inputs
            .keys()
            .map(|k| (k.clone(), Value::String(CONTENT_FREE.into())))
            .collect();
        ctx.adapter.render(sig, demos, &blank)
    });
    Some(ChoiceRequest {
        mode: ctx.choice,
        content_free,
    })
}
