//! The "Examples:" sections of each command's long help (`lmc CMD --help`).
//!
//! Kept together, beside the command list in `cli/mod.rs`, so they are
//! easy to review against each other and against the README; every line
//! is a command that works in this repository's checkout. A test runs
//! `--help` for each command and checks the section is there.

pub const CHECK: &str = "\
Examples:
  lmc check programs/sentiment.yaml
  lmc check programs/*.yaml --json        # diagnostics as JSON, for editors and CI";

pub const SCHEMA: &str = "\
Examples:
  lmc schema > lmc-program.schema.json
  lmc schema --project > lmc-project.schema.json
Then, as the first line of a program file (yaml-language-server, VS Code's YAML extension):
  # yaml-language-server: $schema=lmc-program.schema.json";

pub const INSPECT: &str = "\
Examples:
  lmc inspect programs/sentiment.yaml --input sentence='a gorgeous, witty film'
  lmc inspect sentiment.compiled.json --node classify --json";

pub const RUN: &str = "\
Examples:
  lmc run programs/sentiment.yaml --input sentence='a gorgeous, witty film'
  echo '{\"sentence\": \"dull and overlong\"}' | lmc run programs/sentiment.yaml --json
  lmc run programs/sentiment.yaml -i sentence='fine' --trace run.jsonl && lmc trace show run.jsonl";

pub const EVAL: &str = "\
Examples:
  lmc eval --limit 20                                   # the project's program and dev set
  lmc eval programs/sentiment.yaml --min-score 0.8      # exit 1 under 0.8
  lmc eval --json > baseline.json                       # a baseline for later runs
  lmc eval --baseline baseline.json --max-drop 0.02 --markdown summary.md --html report.html
  lmc eval --junit junit.xml --junit-mode gates         # one JUnit testcase per gate
  lmc eval --base-url http://localhost:8080/v1 --model local --offline   # replay the cache only";

pub const COMPARE: &str = "\
Examples:
  lmc compare programs/sentiment.yaml sentiment.compiled.json   # program vs its compiled artifact
  lmc compare sentiment.compiled.json --dataset dev.csv \\
      --lm-variant big=model=gpt-4o,price_prompt_per_mtok=2.5,price_completion_per_mtok=10 \\
      --lm-variant small=model=gpt-4o-mini,price_prompt_per_mtok=0.15,price_completion_per_mtok=0.6 \\
      --fail-if-worse --markdown \"$GITHUB_STEP_SUMMARY\" --html compare.html
  lmc compare a.yaml b.yaml --reference 2 --alpha 0.01 --json > compare.json";

pub const COMPILE: &str = "\
Examples:
  lmc compile programs/sentiment.yaml --dry-run         # projected LM calls, no call made
  lmc compile programs/sentiment.yaml --train-limit 16 --val-limit 16 -o sentiment.compiled.json
  lmc compile programs/sentiment.yaml --optimizer mipro --opt num_candidates=4
  lmc eval sentiment.compiled.json                      # score what compile wrote";

pub const EXPORT: &str = "\
Examples:
  lmc export sentiment.compiled.json -o sentiment.dspy.json
  # Python: program.load(\"sentiment.dspy.json\")";

pub const IMPORT: &str = "\
Examples:
  lmc import sentiment.dspy.json --program programs/sentiment.yaml -o sentiment.compiled.json";

pub const CACHE: &str = "\
Examples:
  lmc cache stats
  lmc cache export lmc-cassette.jsonl     # commit it; CI replays it with --offline
  lmc cache import lmc-cassette.jsonl
  lmc cache clear";

pub const TRACE: &str = "\
Examples:
  lmc run programs/sentiment.yaml -i sentence='fine' --trace run.jsonl
  lmc trace show run.jsonl --messages";

pub const SERVE: &str = "\
Examples:
  lmc serve sentiment.compiled.json                     # http://127.0.0.1:8080
  curl -s localhost:8080/v1/run -d '{\"sentence\": \"a gorgeous, witty film\"}'
  lmc serve programs/sentiment.yaml --port 0 --max-in-flight 16 --queue 8
  lmc serve sentiment.compiled.json --bind 0.0.0.0:8080 --public   # behind a proxy: docs/deploy.md";
