//! kNN few-shot demo selection: for each call, the `k` demos of a stored
//! pool whose input text is most similar to the current input.
//!
//! The similarity is BM25 over the lowercased alphanumeric tokens of the
//! demo's input fields (the same scorer as the `retrieve` tool), which is
//! local, fast and deterministic: an artifact stores the pool, `k` and the
//! fields compared, so `lmc run` picks exactly the demos the compile saw.
//! When fewer than `k` pool entries share a token with the input, the rest
//! are filled in pool order, so a predictor always gets `k` demos (DSPy's
//! embedding kNN always returns k neighbours too). Indexes are built once
//! per pool content and shared across the process, because `select` runs
//! on every predictor call of every example.

use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::overlay::{Demo, KnnDemos};
use crate::tools::retrieve::Bm25Index;

/// The text compared for one set of input values: the named fields in
/// order (all string-rendered values when `fields` is empty).
pub fn input_text(fields: &[String], values: &Map<String, Value>) -> String {
    let render = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if fields.is_empty() {
        values.values().map(render).collect::<Vec<_>>().join(" ")
    } else {
        fields
            .iter()
            .filter_map(|f| values.get(f))
            .map(render)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Process-wide index cache keyed by the pool's canonical JSON hash.
fn index_for(knn: &KnnDemos) -> Arc<Bm25Index> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Bm25Index>>>> = OnceLock::new();
    let key = {
        let mut h = format!("{:?}|", knn.input_fields);
        for d in &knn.pool {
            h.push_str(&serde_json::to_string(&d.fields).unwrap_or_default());
            h.push('\n');
        }
        crate::artifact::sha256_hex(h.as_bytes())
    };
    let cache = CACHE.get_or_init(Default::default);
    if let Some(ix) = cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return ix;
    }
    let docs: Vec<String> = knn
        .pool
        .iter()
        .map(|d| input_text(&knn.input_fields, &d.fields))
        .collect();
    let ix = Arc::new(Bm25Index::build(docs));
    if let Ok(mut c) = cache.lock() {
        c.insert(key, ix.clone());
    }
    ix
}

/// The `k` pool demos most similar to `inputs`, most similar first; ties and
/// the fill-in follow pool order. An input identical to a pool entry (the
/// same example) is skipped so a training example never demonstrates itself.
pub fn select(knn: &KnnDemos, inputs: &Map<String, Value>) -> Vec<Demo> {
    if knn.k == 0 || knn.pool.is_empty() {
        return Vec::new();
    }
    let query = input_text(&knn.input_fields, inputs);
    let is_self = |d: &Demo| {
        let fields: Vec<&String> = if knn.input_fields.is_empty() {
            inputs.keys().collect()
        } else {
            knn.input_fields.iter().collect()
        };
        !fields.is_empty() && fields.iter().all(|f| d.fields.get(*f) == inputs.get(*f))
    };
    let ix = index_for(knn);
    let mut chosen: Vec<usize> = Vec::with_capacity(knn.k.min(knn.pool.len()));
    for (i, _) in ix.scores(&query, knn.pool.len()) {
        if chosen.len() == knn.k {
            break;
        }
        if !is_self(&knn.pool[i]) {
            chosen.push(i);
        }
    }
    for i in 0..knn.pool.len() {
        if chosen.len() == knn.k {
            break;
        }
        if !chosen.contains(&i) && !is_self(&knn.pool[i]) {
            chosen.push(i);
        }
    }
    chosen.into_iter().map(|i| knn.pool[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn demo(text: &str, label: &str) -> Demo {
        let Value::Object(fields) = json!({"sentence": text, "label": label}) else {
            unreachable!()
        };
        Demo {
            fields,
            augmented: false,
        }
    }

    fn inputs(text: &str) -> Map<String, Value> {
        let Value::Object(m) = json!({ "sentence": text }) else {
            unreachable!()
        };
        m
    }

    #[test]
    fn picks_the_most_similar_and_fills_to_k() {
        let knn = KnnDemos {
            k: 2,
            input_fields: vec!["sentence".into()],
            pool: vec![
                demo("the weather is sunny today", "weather"),
                demo("stocks fell sharply on monday", "finance"),
                demo("a rainy weather forecast", "weather"),
            ],
        };
        let got = select(&knn, &inputs("stocks and bonds"));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].fields["label"], "finance");
        // No other pool entry shares a token: filled in pool order.
        assert_eq!(got[1].fields["sentence"], "the weather is sunny today");
    }

    #[test]
    fn never_selects_the_input_itself() {
        let knn = KnnDemos {
            k: 1,
            input_fields: vec!["sentence".into()],
            pool: vec![
                demo("stocks fell", "finance"),
                demo("stocks rose", "finance"),
            ],
        };
        let got = select(&knn, &inputs("stocks fell"));
        assert_eq!(got[0].fields["sentence"], "stocks rose");
    }
}

crate::optimizer_settings! {
    /// `knn_few_shot`'s settings.
    pub struct KnnSettings {
        /// Demos chosen per input, by BM25 similarity over the labeled trainset.
        k: usize = 3, min 1;
    }
}

/// DSPy's KNNFewShot: every predictor gets the labeled trainset as a pool
/// and chooses `k` demos per input at run time (see [`select`]).
pub struct KnnFewShot;

#[async_trait::async_trait]
impl super::Optimizer for KnnFewShot {
    type Settings = KnnSettings;
    const NAME: &'static str = "knn_few_shot";
    const SEARCHES: super::Searches = super::Searches::DEMOS;
    const DSPY: &'static str = "KNNFewShot";
    const ABOUT: &'static str = "k most similar training examples as demos, per input";

    fn project(&self, _: &KnnSettings, shape: &super::Shape<'_>) -> super::Estimate {
        super::Estimate::valset_only(shape)
    }

    async fn compile(
        &self,
        s: &KnnSettings,
        engine: &super::Engine<'_>,
    ) -> Result<super::Outcome, super::OptimizeError> {
        let input_fields: Vec<String> = engine
            .program
            .inputs
            .iter()
            .map(|f| f.name.clone())
            .collect();
        let mut overlay = crate::overlay::Overlay::default();
        for p in engine.program.predictors() {
            let pool: Vec<_> = engine
                .trainset
                .iter()
                .filter_map(|ex| super::labeled::demo_for(&p.signature, ex))
                .collect();
            // Compare the predictor's own inputs when they are program inputs;
            // otherwise (later stages) compare the program inputs the pool has.
            let own: Vec<String> = p
                .signature
                .inputs
                .iter()
                .map(|f| f.name.clone())
                .filter(|n| input_fields.contains(n))
                .collect();
            let fields = if own.is_empty() {
                input_fields.clone()
            } else {
                own
            };
            let st = overlay.predictors.entry(p.path.clone()).or_default();
            st.knn = Some(KnnDemos {
                k: s.k,
                input_fields: fields,
                pool,
            });
        }
        let mut plan = std::collections::BTreeMap::new();
        plan.insert("similarity".into(), Value::from("bm25"));
        Ok(engine.score_only(overlay, "knn", plan).await)
    }
}
