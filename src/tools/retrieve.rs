//! The `retrieve` tool: BM25 search over a local corpus file.
//!
//! The corpus is JSONL (`{"title", "text"}` per line; a passage renders as
//! `title | text`, the way DSPy's Wikipedia retrievers return them) or plain
//! text (one passage per non-empty line). The inverted index is built once
//! per corpus content and kept in a per-process cache keyed by the corpus
//! file's sha256, so every toolbox opened in one process (eval workers,
//! optimizer candidates) shares it. BM25 is a few dozen lines over an
//! inverted index; a crate would bring stemmers and language tables the
//! examples do not need, and ranking must stay byte-for-byte deterministic
//! (ties break by corpus order).

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use super::{arg_text, cfg_path, cfg_u64, normalize_args, ToolError, ToolOutcome};
use crate::program::ToolSpec;

/// Okapi BM25 parameters (the usual defaults).
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// Words too common to say anything about relevance.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "he", "in", "is", "it",
    "its", "of", "on", "that", "the", "to", "was", "were", "will", "with", "what", "which", "who",
    "whom", "this", "or", "did", "does", "do", "how", "when", "where",
];

/// Lowercased alphanumeric tokens without stopwords.
pub fn tokenize(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(|t| t.to_lowercase())
        .filter(|t| !STOPWORDS.contains(&t.as_str()))
        .collect()
}

/// An inverted index over passages.
#[derive(Debug)]
pub struct Bm25Index {
    passages: Vec<String>,
    doc_len: Vec<f64>,
    avg_len: f64,
    /// term -> (doc index, term frequency), doc indices ascending.
    postings: HashMap<String, Vec<(u32, u32)>>,
}

impl Bm25Index {
    pub fn build(passages: Vec<String>) -> Self {
        let mut postings: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
        let mut doc_len = Vec::with_capacity(passages.len());
        for (i, p) in passages.iter().enumerate() {
            let toks = tokenize(p);
            doc_len.push(toks.len() as f64);
            let mut tf: HashMap<&str, u32> = HashMap::new();
            for t in &toks {
                *tf.entry(t.as_str()).or_default() += 1;
            }
            for (t, f) in tf {
                postings
                    .entry(t.to_string())
                    .or_default()
                    .push((i as u32, f));
            }
        }
        let avg_len = if doc_len.is_empty() {
            1.0
        } else {
            (doc_len.iter().sum::<f64>() / doc_len.len() as f64).max(1.0)
        };
        Bm25Index {
            passages,
            doc_len,
            avg_len,
            postings,
        }
    }

    pub fn len(&self) -> usize {
        self.passages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.passages.is_empty()
    }

    /// The top `k` (passage index, score) pairs, best first; ties by index.
    pub fn scores(&self, query: &str, k: usize) -> Vec<(usize, f64)> {
        let n = self.passages.len() as f64;
        let mut acc: HashMap<u32, f64> = HashMap::new();
        let mut terms = tokenize(query);
        terms.sort();
        terms.dedup();
        for t in &terms {
            let Some(list) = self.postings.get(t) else {
                continue;
            };
            let df = list.len() as f64;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(doc, tf) in list {
                let tf = tf as f64;
                let len = self.doc_len[doc as usize];
                let s = idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / self.avg_len));
                *acc.entry(doc).or_default() += s;
            }
        }
        let mut ranked: Vec<(usize, f64)> = acc.into_iter().map(|(d, s)| (d as usize, s)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        ranked
    }

    pub fn search(&self, query: &str, k: usize) -> Vec<String> {
        self.scores(query, k)
            .into_iter()
            .map(|(i, _)| self.passages[i].clone())
            .collect()
    }
}

/// Parse a corpus: JSONL objects with `title`/`text` (or `passage`,
/// `content`), or plain text lines.
pub fn parse_corpus(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('{') {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| format!("line {}: invalid JSON: {e}", i + 1))?;
            let body = ["text", "passage", "content"]
                .iter()
                .find_map(|k| v.get(*k).and_then(|t| t.as_str()))
                .ok_or_else(|| format!("line {}: no `text` field", i + 1))?;
            match v.get("title").and_then(|t| t.as_str()) {
                Some(title) if !title.is_empty() => out.push(format!("{title} | {body}")),
                _ => out.push(body.to_string()),
            }
        } else {
            out.push(line.to_string());
        }
    }
    Ok(out)
}

type IndexCache = Mutex<HashMap<String, Arc<Bm25Index>>>;

/// Indexes built in this process, by corpus sha256.
fn cache() -> &'static IndexCache {
    static CACHE: OnceLock<IndexCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// Load (or reuse) the index of a corpus file.
pub fn load_index(path: &Path) -> Result<Arc<Bm25Index>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let key = hex::encode(Sha256::digest(&bytes));
    if let Some(ix) = cache().lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(ix);
    }
    let text = String::from_utf8(bytes).map_err(|_| "the corpus is not UTF-8".to_string())?;
    let ix = Arc::new(Bm25Index::build(parse_corpus(&text)?));
    if let Ok(mut c) = cache().lock() {
        c.insert(key, ix.clone());
    }
    Ok(ix)
}

pub struct RetrieveTool {
    index: Arc<Bm25Index>,
    k: usize,
    corpus_name: String,
}

impl RetrieveTool {
    pub fn open(spec: &ToolSpec) -> Result<Self, ToolError> {
        let path = cfg_path(spec, "corpus")?;
        let k = cfg_u64(spec, "k", 3)?.max(1) as usize;
        let index = load_index(&path).map_err(|message| ToolError::Open {
            tool: spec.name.clone(),
            path: path.clone(),
            message,
        })?;
        if index.is_empty() {
            return Err(ToolError::Open {
                tool: spec.name.clone(),
                path,
                message: "the corpus has no passages".into(),
            });
        }
        Ok(RetrieveTool {
            index,
            k,
            corpus_name: path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn search(&self, query: &str, k: usize) -> Vec<String> {
        self.index.search(query, k)
    }

    pub fn description(&self) -> String {
        format!(
            "Search {} passages ({}) by keywords (BM25). Argument `query`: the search text; \
             optional `k`: how many passages (default {}).",
            self.index.len(),
            self.corpus_name,
            self.k
        )
    }

    pub fn call(&self, args: &Value) -> ToolOutcome {
        let args = normalize_args(args, "query");
        let Some(query) = arg_text(&args, "query").filter(|q| !q.trim().is_empty()) else {
            return ToolOutcome::error("retrieve needs a non-empty `query` argument");
        };
        let k = args
            .get("k")
            .and_then(|v| v.as_u64())
            .map(|k| k.clamp(1, 20) as usize)
            .unwrap_or(self.k);
        let hits = self.search(&query, k);
        if hits.is_empty() {
            return ToolOutcome::ok(format!("no passage matches `{query}`"));
        }
        ToolOutcome::ok(
            hits.iter()
                .enumerate()
                .map(|(i, p)| format!("[{}] {p}", i + 1))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    }
}

pub fn args_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"query": {"type": "string"}, "k": {"type": "integer"}},
        "required": ["query"]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_the_passage_with_rare_matching_terms_first() {
        let ix = Bm25Index::build(vec![
            "The cat sat on the mat.".into(),
            "Paris is the capital of France.".into(),
            "France borders Spain; the cat is French.".into(),
        ]);
        let top = ix.scores("capital of France", 3);
        assert_eq!(top[0].0, 1);
        assert_eq!(top.len(), 2, "the first passage shares no term");
    }

    #[test]
    fn parses_jsonl_and_text_lines() {
        let c = parse_corpus("{\"title\": \"A\", \"text\": \"alpha\"}\n\nplain line\n").unwrap();
        assert_eq!(c, vec!["A | alpha", "plain line"]);
        assert!(parse_corpus("{not json").is_err());
    }
}
