//! Artifacts of every registered optimizer on the shipped sentiment program
//! against a deterministic scripted server, written to a directory so a
//! refactor of the optimizer layer can be diffed before/after (issue 12).
//!
//! Ignored by default (it is a measurement, not a check): run with
//! `LMC_SNAPSHOT_DIR=/some/dir cargo test --no-default-features --test it --
//! --ignored optimizer_snapshots::` and compare the directories with
//! `scripts/diff-artifacts.sh` (timestamps and wall times stripped).
//!
//! The scripted "model" answers the task right unless a hash of the whole
//! conversation (instruction, demos, input) falls in one class of three, so
//! different instructions and demo sets really score differently; proposer
//! requests get an instruction derived from a hash of their request body
//! (temperature and `n` included), so distinct requests get distinct text.

use crate::support::stub::{StubReply, StubRequest, StubServer};
use crate::support::{lmc, run};
use std::collections::HashMap;
use std::path::Path;

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn labels() -> HashMap<String, String> {
    let mut out = HashMap::new();
    for f in ["datasets/sst2/train.csv", "datasets/sst2/dev.csv"] {
        let mut r = csv::Reader::from_path(crate::support::root().join(f)).expect("sst2 csv");
        for rec in r.records().flatten() {
            out.insert(rec[0].to_string(), rec[1].to_string());
        }
    }
    out
}

fn proposer_reply(req: &StubRequest) -> String {
    let h = fnv(&req.body.to_string());
    let sys = req.system();
    let mut out = String::new();
    for (field, text) in [
        (
            "proposed_instruction",
            format!("Classify the review sentence, variant {}.", h % 1000),
        ),
        ("proposed_prefix_for_output_field", "Sentiment:".to_string()),
        (
            "new_instruction",
            format!("Decide the sentiment of the sentence, take {}.", h % 1000),
        ),
        ("summary", "Movie review sentences with a sentiment.".into()),
    ] {
        if sys.contains(&format!("`{field}`")) {
            out.push_str(&format!("[[ ## {field} ## ]]\n{text}\n\n"));
        }
    }
    out.push_str("[[ ## completed ## ]]");
    out
}

/// The deterministic server described in the module docs.
pub fn scripted_sentiment() -> StubServer {
    StubServer::start(sentiment_handler())
}

/// The handler of [`scripted_sentiment`].
pub fn sentiment_handler() -> impl Fn(&StubRequest) -> StubReply + Send + Sync + 'static {
    let labels = labels();
    move |req: &StubRequest| {
        let Some(sentence) = req.input("sentence") else {
            return StubReply::Ok(proposer_reply(req));
        };
        let truth = labels
            .get(&sentence)
            .cloned()
            .unwrap_or_else(|| "positive".into());
        let all: String = req.messages.iter().map(|(_, c)| c.as_str()).collect();
        let answer = if fnv(&all).is_multiple_of(3) {
            if truth == "positive" {
                "negative"
            } else {
                "positive"
            }
        } else {
            truth.as_str()
        };
        StubReply::Ok(format!(
            "[[ ## sentiment ## ]]\n{answer}\n\n[[ ## completed ## ]]"
        ))
    }
}

pub const RUNS: &[(&str, &[&str])] = &[
    ("labeled_few_shot", &["k=4"]),
    ("bootstrap_few_shot", &["max_bootstrapped_demos=2"]),
    ("bootstrap_random_search", &["num_candidate_programs=3"]),
    ("knn_few_shot", &["k=2"]),
    ("copro", &["breadth=3", "depth=2"]),
    ("mipro", &["auto=none", "num_candidates=3", "num_trials=4"]),
    ("gepa", &["max_metric_calls=60"]),
    ("simba", &["bsize=4", "num_candidates=2", "max_steps=2"]),
];

#[test]
#[ignore = "measurement: writes artifacts to $LMC_SNAPSHOT_DIR for a before/after diff"]
fn write_artifacts_of_every_optimizer() {
    let dir = std::env::var("LMC_SNAPSHOT_DIR").expect("set LMC_SNAPSHOT_DIR");
    std::fs::create_dir_all(&dir).expect("snapshot dir");
    let stub = scripted_sentiment();
    for (name, opts) in RUNS {
        let out = Path::new(&dir).join(format!("{name}.json"));
        let mut cmd = lmc();
        cmd.args(["compile", "programs/sentiment.yaml", "--optimizer", name])
            .args(["--train-limit", "12", "--val-limit", "8", "--seed", "1"])
            .args(["--provider", "openai", "--model", "scripted", "-q"])
            .args(["--base-url", &stub.url()])
            .arg("-o")
            .arg(&out);
        for o in *opts {
            cmd.args(["--opt", o]);
        }
        let (code, _, err) = run(&mut cmd);
        assert_eq!(code, 0, "{name}: {err}");
    }
}
