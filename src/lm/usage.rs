//! Usage, cost and budgets: what a run spent on LM calls, and the limits
//! that stop it spending more.
//!
//! [`UsageMeter`] is shared by every concurrent call (atomics, no lock) and
//! read by eval/compile for lineage and progress. [`MeteredLm`] is the
//! outermost wrapper: it sees every reply (cache hits included), prices it
//! and records it. [`BudgetedLm`] sits directly on the backend, below the
//! cache, so that cache hits are free and never refused: a budget limits
//! what reaches the provider, which is what costs money.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{Lm, LmError, LmRequest, LmResponse, SharedLm, Usage};

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub prompt_per_mtok: f64,
    pub completion_per_mtok: f64,
}

impl Prices {
    pub fn cost(&self, u: &Usage) -> f64 {
        (u.prompt_tokens as f64 * self.prompt_per_mtok
            + u.completion_tokens as f64 * self.completion_per_mtok)
            / 1e6
    }
}

/// Limits on what reaches the backend. `None` = unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Budgets {
    pub max_lm_calls: Option<u64>,
    pub max_tokens: Option<u64>,
    pub max_cost: Option<f64>,
}

impl Budgets {
    pub fn is_unlimited(&self) -> bool {
        self.max_lm_calls.is_none() && self.max_tokens.is_none() && self.max_cost.is_none()
    }
}

/// A point-in-time copy of a [`UsageMeter`], for lineage, reports and JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageSnapshot {
    /// Calls answered by the backend (cache hits excluded).
    pub calls: u64,
    pub cache_hits: u64,
    /// Calls that ended in an error (after retries).
    pub errors: u64,
    /// Retries spent across all calls.
    pub retries: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// USD, where prices are configured (0 otherwise).
    pub cost: f64,
}

/// One LM's usage in a run, for the per-LM lines of summaries and reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LmUsage {
    /// `default` or the key of `lms:`.
    pub name: String,
    pub model: String,
    #[serde(flatten)]
    pub usage: UsageSnapshot,
}

impl UsageSnapshot {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Cost is accumulated in nano-dollars so it can live in an atomic integer
/// and sum exactly whatever the order of concurrent calls.
const NANO: f64 = 1e9;

/// Shared counters for one run (or one process); cheap to update from many
/// tasks at once.
#[derive(Debug, Default)]
pub struct UsageMeter {
    calls: AtomicU64,
    cache_hits: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cost_nano: AtomicU64,
    default_prices: Option<Prices>,
    prices: HashMap<String, Prices>,
}

impl UsageMeter {
    /// A meter pricing every model at `prices` (none = no cost accounting).
    pub fn new(prices: Option<Prices>) -> Self {
        UsageMeter {
            default_prices: prices,
            ..Default::default()
        }
    }

    /// Price one model differently from the default.
    pub fn with_model_prices(mut self, model: &str, prices: Prices) -> Self {
        self.prices.insert(model.to_string(), prices);
        self
    }

    /// The cost of `usage` for `model` (0 when no price is known).
    pub fn price(&self, model: &str, usage: &Usage) -> f64 {
        self.prices
            .get(model)
            .or(self.default_prices.as_ref())
            .map(|p| p.cost(usage))
            .unwrap_or(0.0)
    }

    /// Record one reply and return its cost (0 for cache hits: they are free
    /// and their tokens were paid for when they were recorded).
    pub fn record(&self, model: &str, resp: &LmResponse) -> f64 {
        self.retries
            .fetch_add(resp.retries as u64, Ordering::Relaxed);
        if resp.cache_hit {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            return 0.0;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(resp.usage.prompt_tokens, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(resp.usage.completion_tokens, Ordering::Relaxed);
        let cost = self.price(model, &resp.usage);
        self.cost_nano
            .fetch_add((cost * NANO).round() as u64, Ordering::Relaxed);
        cost
    }

    pub fn record_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> UsageSnapshot {
        UsageSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            completion_tokens: self.completion_tokens.load(Ordering::Relaxed),
            cost: self.cost_nano.load(Ordering::Relaxed) as f64 / NANO,
        }
    }
}

/// The outermost wrapper: prices each reply (`LmResponse::cost`) and records
/// it in the meter.
pub struct MeteredLm {
    inner: SharedLm,
    meter: Arc<UsageMeter>,
}

impl MeteredLm {
    pub fn new(inner: SharedLm, meter: Arc<UsageMeter>) -> Self {
        MeteredLm { inner, meter }
    }
}

#[async_trait::async_trait]
impl Lm for MeteredLm {
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        match self.inner.complete(req).await {
            Ok(mut resp) => {
                resp.cost = self.meter.record(&req.model, &resp);
                Ok(resp)
            }
            Err(e) => {
                self.meter.record_error();
                Err(e)
            }
        }
    }
    fn model(&self) -> String {
        self.inner.model()
    }
    fn supports_grammar(&self) -> bool {
        self.inner.supports_grammar()
    }
    fn mark_unusable(&self, req: &LmRequest) {
        self.inner.mark_unusable(req)
    }
}

/// Refuses backend calls once a budget is spent. Placed below the cache, so
/// only calls that would reach the provider count. The call budget is
/// reserved atomically before the call, so concurrency never overshoots it;
/// token and cost budgets are checked against what the backend reported so
/// far, so calls already in flight when they run out may overshoot them.
pub struct BudgetedLm {
    inner: SharedLm,
    budgets: Budgets,
    meter: Arc<UsageMeter>,
    spend: Arc<Spend>,
}

/// What a run has spent against its budgets. Shared by every LM of a run
/// (named LMs included), so `--max-lm-calls 5` means five calls in all.
#[derive(Debug, Default)]
pub struct Spend {
    started: AtomicU64,
    tokens: AtomicU64,
    cost_nano: AtomicU64,
}

impl BudgetedLm {
    /// `meter` supplies prices for the cost budget.
    pub fn new(inner: SharedLm, budgets: Budgets, meter: Arc<UsageMeter>) -> Self {
        Self::sharing(inner, budgets, meter, Arc::default())
    }

    /// A budget whose spend is counted in `spend` with other LMs'.
    pub fn sharing(
        inner: SharedLm,
        budgets: Budgets,
        meter: Arc<UsageMeter>,
        spend: Arc<Spend>,
    ) -> Self {
        BudgetedLm {
            inner,
            budgets,
            meter,
            spend,
        }
    }

    fn check_spend(&self) -> Result<(), LmError> {
        if let Some(max) = self.budgets.max_tokens {
            let used = self.spend.tokens.load(Ordering::Relaxed);
            if used >= max {
                return Err(LmError::Budget(format!(
                    "{used} tokens used, budget {max} (--max-tokens-budget)"
                )));
            }
        }
        if let Some(max) = self.budgets.max_cost {
            let used = self.spend.cost_nano.load(Ordering::Relaxed) as f64 / NANO;
            if used >= max {
                return Err(LmError::Budget(format!(
                    "${used:.4} spent, budget ${max:.4} (--max-cost)"
                )));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Lm for BudgetedLm {
    async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
        self.check_spend()?;
        if let Some(max) = self.budgets.max_lm_calls {
            // Reserve a slot; give it back if the budget was already spent.
            let n = self.spend.started.fetch_add(1, Ordering::SeqCst);
            if n >= max {
                self.spend.started.fetch_sub(1, Ordering::SeqCst);
                return Err(LmError::Budget(format!(
                    "{max} LM calls made, budget {max} (--max-lm-calls)"
                )));
            }
        }
        let resp = self.inner.complete(req).await?;
        if !resp.cache_hit {
            self.spend
                .tokens
                .fetch_add(resp.usage.total(), Ordering::Relaxed);
            let cost = self.meter.price(&req.model, &resp.usage);
            self.spend
                .cost_nano
                .fetch_add((cost * NANO).round() as u64, Ordering::Relaxed);
        }
        Ok(resp)
    }
    fn model(&self) -> String {
        self.inner.model()
    }
    fn supports_grammar(&self) -> bool {
        self.inner.supports_grammar()
    }
    fn mark_unusable(&self, req: &LmRequest) {
        self.inner.mark_unusable(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Fixed;
    #[async_trait::async_trait]
    impl Lm for Fixed {
        // Nothing recorded here, so nothing to flag (the trait makes
        // every implementation say so: a wrapper must pass it down).
        fn mark_unusable(&self, _req: &crate::lm::LmRequest) {}
        async fn complete(&self, _req: &LmRequest) -> Result<LmResponse, LmError> {
            Ok(LmResponse {
                text: "ok".into(),
                usage: Usage {
                    prompt_tokens: 1000,
                    completion_tokens: 500,
                },
                cache_hit: false,
                latency: Duration::ZERO,
                retries: 1,
                cost: 0.0,
                choices: Vec::new(),
            })
        }
        fn model(&self) -> String {
            "m".into()
        }
    }

    fn req() -> LmRequest {
        LmRequest {
            model: "m".into(),
            messages: vec![],
            temperature: 0.0,
            max_tokens: 10,
            rollout_id: None,
            grammar: None,
            response_format: None,
            choice: None,
        }
    }

    #[tokio::test]
    async fn meter_prices_and_budget_stops_calls() {
        let meter = Arc::new(UsageMeter::new(Some(Prices {
            prompt_per_mtok: 1.0,
            completion_per_mtok: 2.0,
        })));
        let budgeted: SharedLm = Arc::new(BudgetedLm::new(
            Arc::new(Fixed),
            Budgets {
                max_lm_calls: Some(2),
                ..Default::default()
            },
            meter.clone(),
        ));
        let lm = MeteredLm::new(budgeted, meter.clone());
        let r = lm.complete(&req()).await.unwrap();
        assert!((r.cost - 0.002).abs() < 1e-12, "cost {}", r.cost);
        lm.complete(&req()).await.unwrap();
        let err = lm.complete(&req()).await.unwrap_err();
        assert!(matches!(err, LmError::Budget(_)), "{err:?}");
        let s = meter.snapshot();
        assert_eq!((s.calls, s.errors, s.retries, s.tokens()), (2, 1, 2, 3000));
        assert!((s.cost - 0.004).abs() < 1e-9);
    }

    #[tokio::test]
    async fn token_budget_stops_after_spend() {
        let meter = Arc::new(UsageMeter::new(None));
        let lm = BudgetedLm::new(
            Arc::new(Fixed),
            Budgets {
                max_tokens: Some(2000),
                ..Default::default()
            },
            meter,
        );
        lm.complete(&req()).await.unwrap();
        lm.complete(&req()).await.unwrap();
        assert!(matches!(lm.complete(&req()).await, Err(LmError::Budget(_))));
    }
}
