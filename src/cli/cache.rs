//! `lmc cache`: look at and manage the LM response cache. `export` and
//! `import` move recorded replies as JSONL "cassettes", so a team can
//! commit one and run CI gates with `--offline` (no LM, no key).

use anyhow::Context;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::lm::cache::{default_cache_dir, CacheStore};

use super::CliError;

#[derive(Debug, clap::Args)]
pub struct Where {
    /// Directory of the response cache [default: $LMC_CACHE_DIR, else
    /// $LMC_HOME/cache, else ~/.cache/lmc/cache].
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl Where {
    fn open(&self) -> anyhow::Result<CacheStore> {
        let dir = self.cache_dir.clone().unwrap_or_else(default_cache_dir);
        let store = CacheStore::open_dir(&dir)
            .map_err(|e| anyhow::Error::new(CliError::Input(format!("{e}"))))?;
        // A damaged file moved aside or a read-only file is said here.
        store.set_warning_callback(|msg| eprintln!("warning: {msg}"));
        Ok(store)
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print where the cache is, how many replies it holds, and per model.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        at: Where,
    },
    /// Delete every recorded reply, or only one model's.
    Clear {
        /// Delete only the replies of this model (as `lmc cache stats`
        /// lists it; an embedded model's name matches all its weights'
        /// hashes, `NAME@…`).
        #[arg(long, value_name = "NAME")]
        model: Option<String>,
        #[command(flatten)]
        at: Where,
    },
    /// Write every recorded reply to FILE as JSONL (`-` for stdout), sorted
    /// by key so a committed cassette diffs cleanly.
    Export {
        /// Output file, or `-` for stdout.
        file: PathBuf,
        #[command(flatten)]
        at: Where,
    },
    /// Add the replies of a JSONL cassette (from `lmc cache export`) to the
    /// cache; entries whose key does not match their request are skipped.
    Import {
        /// Input file, or `-` for stdin.
        file: PathBuf,
        #[command(flatten)]
        at: Where,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Stats { json, at } => {
            let st = at.open()?.stats()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                println!("cache: {}", st.path.display());
                println!("entries: {}", st.entries);
                println!("size: {}", human_bytes(st.bytes));
                println!(
                    "tokens recorded: {} prompt, {} completion",
                    st.prompt_tokens, st.completion_tokens
                );
                for (model, n) in &st.models {
                    println!("  {model}: {n}");
                }
            }
        }
        Command::Clear { model, at } => {
            let store = at.open()?;
            match model {
                Some(m) => {
                    let n = store.clear_model(&m)?;
                    println!(
                        "cleared {n} entries of model {m} from {}",
                        store.path().display()
                    );
                }
                None => {
                    let n = store.clear()?;
                    println!("cleared {n} entries from {}", store.path().display());
                }
            }
        }
        Command::Export { file, at } => {
            let store = at.open()?;
            let (written, skipped) = if file.as_os_str() == "-" {
                let stdout = std::io::stdout();
                let mut lock = stdout.lock();
                let r = store.export(&mut lock)?;
                lock.flush()?;
                r
            } else {
                // Write beside the target and rename, so an interrupted
                // export never leaves a half cassette behind.
                let tmp = file.with_extension("jsonl.tmp");
                let mut out = std::io::BufWriter::new(
                    std::fs::File::create(&tmp)
                        .with_context(|| format!("cannot create {}", tmp.display()))?,
                );
                let r = store.export(&mut out)?;
                out.flush()?;
                drop(out);
                std::fs::rename(&tmp, &file)
                    .with_context(|| format!("cannot write {}", file.display()))?;
                r
            };
            eprintln!(
                "exported {written} entries{}",
                if skipped > 0 {
                    format!(" ({skipped} corrupt rows skipped)")
                } else {
                    String::new()
                }
            );
        }
        Command::Import { file, at } => {
            let store = at.open()?;
            let result = if file.as_os_str() == "-" {
                store.import(std::io::stdin().lock())
            } else {
                let f = std::fs::File::open(&file)
                    .map_err(|e| CliError::Input(format!("cannot open {}: {e}", file.display())))?;
                store.import(BufReader::new(f))
            };
            let report = result.map_err(|e| match e {
                crate::lm::cache::CacheError::Import { .. } => {
                    anyhow::Error::new(CliError::Input(format!("{}: {e}", file.display())))
                }
                other => other.into(),
            })?;
            println!(
                "imported {} entries into {}",
                report.imported,
                store.path().display()
            );
            if report.mismatched > 0 {
                eprintln!(
                    "warning: skipped {} entries whose key does not match their request",
                    report.mismatched
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
