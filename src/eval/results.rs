//! Per-example results as JSON Lines (`--results FILE.jsonl`): one object
//! per example in input order, with inputs, expected values, outputs, score,
//! feedback, error, the raw reply of a parse failure, latency, tokens and
//! cache status. Traces are left out: they belong to `--trace` files and
//! would make each line unreadably long.

use std::io::Write;

use super::EvalReport;

/// Write one JSON object per example.
pub fn write_jsonl(report: &EvalReport, mut out: impl Write) -> std::io::Result<()> {
    for r in &report.results {
        let mut v = serde_json::to_value(r)?;
        if let Some(obj) = v.as_object_mut() {
            obj.remove("trace");
        }
        serde_json::to_writer(&mut out, &v)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
