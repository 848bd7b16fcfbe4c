//! The content hash of a local model file (a GGUF), so that the embedded
//! engine's name — and with it every cache key — changes when the weights
//! do. Keyed on the file *name* alone, a different GGUF saved under the
//! same name would replay the old model's answers.
//!
//! Hashing ~100 MB takes a noticeable fraction of a second, so the result is
//! remembered in `$LMC_HOME/model-hashes.tsv` by (absolute path, size,
//! modification time): a file rewritten in place changes its mtime and is
//! hashed again. The record is a convenience: if it cannot be read or
//! written, the file is simply hashed every time.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The record's file name inside `$LMC_HOME`.
const RECORD: &str = "model-hashes.tsv";

/// Records kept (oldest dropped first), so the file stays small.
const MAX_RECORDS: usize = 64;

/// Hex sha256 of the file at `path`, from the record when its size and
/// mtime still match, else streamed from disk (and recorded).
pub fn content_hash(path: &Path) -> std::io::Result<String> {
    content_hash_in(path, &super::cache::lmc_home())
}

/// [`content_hash`] with the record kept in `home` (tests use a temp dir).
pub fn content_hash_in(path: &Path, home: &Path) -> std::io::Result<String> {
    let abs = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&abs)?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let stamp = format!("{}\t{mtime}", meta.len());
    let record = home.join(RECORD);
    let lines = std::fs::read_to_string(&record).unwrap_or_default();
    let shown = abs.display().to_string();
    for line in lines.lines() {
        let mut f = line.splitn(4, '\t');
        let (Some(size), Some(time), Some(hash), Some(p)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        if p == shown && format!("{size}\t{time}") == stamp && hash.len() == 64 {
            return Ok(hash.to_string());
        }
    }
    let hash = hash_file(&abs)?;
    let mut kept: Vec<&str> = lines
        .lines()
        .filter(|l| !l.ends_with(&format!("\t{shown}")))
        .collect();
    let new = format!("{stamp}\t{hash}\t{shown}");
    kept.push(&new);
    let start = kept.len().saturating_sub(MAX_RECORDS);
    let _ = write_atomic(&record, &(kept[start..].join("\n") + "\n"));
    Ok(hash)
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Write through a temporary file and a rename, so a concurrent reader
/// never sees half a record.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp: PathBuf = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_recorded_and_follows_the_file() {
        let dir = std::env::temp_dir().join(format!("lmc-model-hash-{}", std::process::id()));
        let home = dir.join("home");
        std::fs::create_dir_all(&dir).unwrap();
        let model = dir.join("m.gguf");
        std::fs::write(&model, b"weights one").unwrap();
        let a = content_hash_in(&model, &home).unwrap();
        assert_eq!(a, hex::encode(Sha256::digest(b"weights one")));
        assert!(std::fs::read_to_string(home.join(RECORD))
            .unwrap()
            .contains(&a));
        // Different bytes (and size): a different hash, not the record's.
        std::fs::write(&model, b"other weights!").unwrap();
        let b = content_hash_in(&model, &home).unwrap();
        assert_eq!(b, hex::encode(Sha256::digest(b"other weights!")));
        assert_eq!(
            std::fs::read_to_string(home.join(RECORD))
                .unwrap()
                .lines()
                .count(),
            1
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
