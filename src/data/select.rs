//! Deterministic selection: seeded splits, seeded samples, limits.
//!
//! ChaCha with an explicit seed gives the same choice on every platform and
//! every run, which is what makes scores comparable between CI runs. Chosen
//! rows keep their file order so results read in the order of the file.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{DataError, Example, LoadOptions, Split, SplitPart};

/// Parse `train:0.8` / `dev:0.8` (`test` is accepted as a synonym of `dev`).
pub fn parse_split(s: &str) -> Result<Split, DataError> {
    let bad = || DataError::Split(s.to_string());
    let (part, frac) = s.split_once(':').ok_or_else(bad)?;
    let part = match part.trim().to_ascii_lowercase().as_str() {
        "train" => SplitPart::Train,
        "dev" | "test" | "val" => SplitPart::Dev,
        _ => return Err(bad()),
    };
    let fraction: f64 = frac.trim().parse().map_err(|_| bad())?;
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(bad());
    }
    Ok(Split { part, fraction })
}

/// Split, then sample, then limit.
pub(crate) fn select(mut rows: Vec<Example>, opts: &LoadOptions) -> Vec<Example> {
    if let Some(split) = opts.split {
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed));
        let cut = ((rows.len() as f64) * split.fraction).round() as usize;
        let mut keep = match split.part {
            SplitPart::Train => order[..cut].to_vec(),
            SplitPart::Dev => order[cut..].to_vec(),
        };
        keep.sort_unstable();
        rows = take(rows, &keep);
    }
    if let Some(n) = opts.sample {
        if n < rows.len() {
            // A different stream from the split's, so sampling from a split
            // is not correlated with how the split was drawn.
            let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
            rng.set_stream(1);
            let mut keep = rand::seq::index::sample(&mut rng, rows.len(), n).into_vec();
            keep.sort_unstable();
            rows = take(rows, &keep);
        }
    }
    if let Some(n) = opts.limit {
        rows.truncate(n);
    }
    rows
}

/// The rows at `keep` (sorted positions), in that order.
fn take(rows: Vec<Example>, keep: &[usize]) -> Vec<Example> {
    let mut wanted = keep.iter().peekable();
    rows.into_iter()
        .enumerate()
        .filter_map(|(i, r)| {
            if wanted.peek() == Some(&&i) {
                wanted.next();
                Some(r)
            } else {
                None
            }
        })
        .collect()
}
