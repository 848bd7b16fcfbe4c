//! A test-only optimizer proving that an optimizer is one file plus one
//! registry line: with nothing else it appears in dispatch, `--list`, the
//! settings checks, the dry-run projection and the lineage.

use std::collections::BTreeMap;

use super::{labeled, Engine, Estimate, OptimizeError, Optimizer, Outcome, Shape};

crate::optimizer_settings! {
    /// `first_examples`' settings.
    pub struct FirstSettings {
        /// How many of the first training examples become demos.
        n: usize = 1, min 1, max 8;
    }
}

/// The first `n` training examples as demos, unscored search aside.
pub struct FirstExample;

#[async_trait::async_trait]
impl Optimizer for FirstExample {
    type Settings = FirstSettings;
    const NAME: &'static str = "first_examples";
    const DSPY: &'static str = "(none: test only)";
    const ABOUT: &'static str = "the first n training examples as demos";

    fn project(&self, _: &FirstSettings, shape: &Shape<'_>) -> Estimate {
        Estimate::valset_only(shape)
    }

    async fn compile(
        &self,
        s: &FirstSettings,
        engine: &Engine<'_>,
    ) -> Result<Outcome, OptimizeError> {
        let chosen = labeled::pick(engine.trainset, s.n, 0, false);
        let best = labeled::overlay(engine.program, &chosen);
        Ok(engine.score_only(best, "first", BTreeMap::new()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::{Lm, LmError, LmRequest, LmResponse};
    use crate::optimize::{self, NoopCompileReporter, Shape};
    use serde_json::{json, Map, Value};
    use std::sync::Arc;

    /// Answers every request with the word it was asked about.
    struct Echo;
    #[async_trait::async_trait]
    impl Lm for Echo {
        // Nothing recorded here, so nothing to flag (the trait makes
        // every implementation say so: a wrapper must pass it down).
        fn mark_unusable(&self, _req: &crate::lm::LmRequest) {}
        async fn complete(&self, req: &LmRequest) -> Result<LmResponse, LmError> {
            let last = req
                .messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default();
            let word = last
                .split("[[ ## word ## ]]\n")
                .nth(1)
                .and_then(|r| r.lines().next())
                .unwrap_or("")
                .to_string();
            Ok(LmResponse {
                text: format!("[[ ## answer ## ]]\n{word}\n\n[[ ## completed ## ]]"),
                usage: Default::default(),
                cache_hit: false,
                latency: Default::default(),
                retries: 0,
                cost: 0.0,
                choices: Vec::new(),
            })
        }
        fn model(&self) -> String {
            "echo".into()
        }
    }

    fn example(i: usize, word: &str) -> crate::data::Example {
        let m = |k: &str| -> Map<String, Value> {
            [(k.to_string(), json!(word))].into_iter().collect()
        };
        crate::data::Example {
            index: i,
            row: i + 1,
            inputs: m("word"),
            expected: m("answer"),
            extra: Map::new(),
        }
    }

    #[tokio::test]
    async fn a_registered_file_is_all_an_optimizer_needs() {
        // Dispatch, names and did-you-mean come from the registry line.
        assert!(optimize::names().contains(&"first_examples"));
        let hint = optimize::lookup("first_example")
            .err()
            .map(|e| e.to_string());
        assert!(hint.is_some_and(|h| h.contains("did you mean `first_examples`")));
        // Settings: typed, ranged, defaults recorded.
        let o = optimize::configure("first_examples", &["n=9".into()]);
        assert!(o
            .err()
            .is_some_and(|e| e.to_string().contains("from 1 to 8")));
        let o = optimize::configure("first_examples", &["n=2".into()]).expect("valid");
        assert_eq!(o.settings().get("n"), Some(&json!(2)));
        let docs = optimize::lookup("first_examples")
            .expect("registered")
            .settings_docs();
        assert_eq!(docs[0].default, json!(1));
        assert_eq!(
            docs[0].help,
            "How many of the first training examples become demos."
        );
        // Projection and compile run through the same registry entry.
        let src = "name: echo\nsignatures:\n  s: \"word -> answer\"\ninputs:\n  word: str\nnodes:\n  say: {kind: predict, signature: s}\noutputs:\n  answer: say.answer\n";
        let program =
            crate::program::load_str(src, std::path::Path::new("echo.yaml")).expect("program");
        let shape = Shape {
            program: &program,
            n_train: 3,
            n_val: 3,
        };
        assert_eq!(optimize::project(&*o, &shape).lm_calls, 3);
        let data = vec![example(0, "abc"), example(1, "de"), example(2, "f")];
        let metric = crate::metric::Metric::default_for(&program);
        let ctx = crate::run::RunContext::new(Arc::new(Echo));
        let engine = Engine::new(
            &program,
            &metric,
            &data,
            &data,
            ctx,
            2,
            0,
            &NoopCompileReporter,
        );
        let out = optimize::compile(&engine, &*o).await.expect("compiles");
        assert_eq!(out.best.state("say").demos.len(), 2);
        assert_eq!(out.best_score.map(|s| s.mean), Some(1.0));
    }

    #[tokio::test]
    async fn an_interrupted_engine_issues_nothing_and_keeps_the_best_fully_scored() {
        let src = "name: echo\nsignatures:\n  s: \"word -> answer\"\ninputs:\n  word: str\nnodes:\n  say: {kind: predict, signature: s}\noutputs:\n  answer: say.answer\n";
        let program =
            crate::program::load_str(src, std::path::Path::new("echo.yaml")).expect("program");
        let data = vec![example(0, "abc"), example(1, "de")];
        let metric = crate::metric::Metric::default_for(&program);
        let interrupt = crate::interrupt::Interrupt::new();
        let engine = Engine::new(
            &program,
            &metric,
            &data,
            &data,
            crate::run::RunContext::new(Arc::new(Echo)),
            2,
            0,
            &NoopCompileReporter,
        )
        .with_interrupt(interrupt.clone());
        let zero_shot = crate::overlay::Overlay::default();
        assert_eq!(engine.score(&zero_shot).await.map(|s| s.mean), Some(1.0));
        assert_eq!(engine.interrupted(), None);
        let (requests, _) = engine.usage();
        assert_eq!(requests, 2);

        interrupt.request("SIGINT");
        assert!(engine.should_stop());
        assert!(!engine.exhausted(), "an interrupt is not a spent budget");
        assert_eq!(engine.interrupted().as_deref(), Some("SIGINT"));
        let demos = labeled::overlay(&program, &labeled::pick(&data, 1, 0, false));
        assert_eq!(
            engine.score(&demos).await,
            None,
            "nothing runs after the stop"
        );
        assert_eq!(engine.usage().0, requests, "no request after the stop");
        let (kept, score) = engine
            .best_scored()
            .expect("the zero-shot was fully scored");
        assert_eq!(kept, zero_shot);
        assert_eq!(score.n, 2);
    }
}
