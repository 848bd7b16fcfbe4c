//! Rewrites a GGUF model with its weights in another type, through
//! llama.cpp's own quantizer (`llama_model_quantize`, which `llama-cpp-2`
//! does not wrap, hence the raw `llama-cpp-sys-2` call here).
//!
//! Why it exists: the weight type decides which CPU kernels llama.cpp can
//! use for prompt processing. The default model ships as Q4_1 only, a type
//! with plain AVX2 dot products and no matrix-multiply fast path in ggml;
//! Q8_0 and Q4_0 have both (llamafile's tinyBLAS for batches, and for Q4_0
//! the weights repacked at load). Requantizing from Q4_1 goes through f32,
//! so a Q8_0 copy holds the Q4_1 weights almost exactly, while a Q4_0 copy
//! adds a second rounding. The output is written to a temporary file next
//! to the destination and renamed into place, so an interrupted run never
//! leaves a truncated model where a model is expected.
//!
//! [`ensure_copy`] is how the default model comes to exist: the engine
//! derives it on first use, under a lock file, so processes starting
//! together (a test suite, parallel CI jobs) write it once and the others
//! wait for it.

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use llama_cpp_sys_2 as sys;

/// A weight type the quantizer can write (the file types worth having on a
/// CPU; any other is a job for llama.cpp's own `llama-quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    Q8_0,
    Q4_0,
}

impl WeightType {
    pub const ALL: [WeightType; 2] = [WeightType::Q8_0, WeightType::Q4_0];

    pub fn as_str(self) -> &'static str {
        match self {
            WeightType::Q8_0 => "Q8_0",
            WeightType::Q4_0 => "Q4_0",
        }
    }

    fn ftype(self) -> sys::llama_ftype {
        match self {
            WeightType::Q8_0 => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
            WeightType::Q4_0 => sys::LLAMA_FTYPE_MOSTLY_Q4_0,
        }
    }
}

impl fmt::Display for WeightType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WeightType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        WeightType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown weight type `{s}` (expected one of: Q8_0, Q4_0)"))
    }
}

/// Why a model could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("no model at {0}")]
    Missing(PathBuf),
    #[error("{0} is also the source; write the copy to another path")]
    SamePath(PathBuf),
    #[error("path {0} contains a NUL byte")]
    BadPath(PathBuf),
    #[error("could not initialise llama.cpp: {0}")]
    Backend(String),
    #[error("llama.cpp could not requantize {src} to {to} (is it a GGUF model?)")]
    Failed { src: PathBuf, to: WeightType },
    #[error("could not write the new model at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Write `src` with its weights as `to` at `dst` (replacing it), using
/// `threads` CPU threads. Tensors llama.cpp keeps unquantized (norms,
/// biases) stay as they are.
pub fn requantize(
    src: &Path,
    dst: &Path,
    to: WeightType,
    threads: usize,
) -> Result<(), QuantizeError> {
    if !src.is_file() {
        return Err(QuantizeError::Missing(src.to_path_buf()));
    }
    if dst.canonicalize().ok() == src.canonicalize().ok() {
        return Err(QuantizeError::SamePath(dst.to_path_buf()));
    }
    super::llama_backend().map_err(|e| QuantizeError::Backend(e.to_string()))?;
    let mut partial = dst.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let c_path = |p: &Path| {
        CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| QuantizeError::BadPath(p.to_path_buf()))
    };
    let (c_src, c_partial) = (c_path(src)?, c_path(&partial)?);
    // SAFETY: the default parameters are a plain struct by value; the
    // fields set below are scalars, and every pointer field stays null
    // (no importance matrix, overrides or pruning).
    let status = unsafe {
        let mut params = sys::llama_model_quantize_default_params();
        params.nthread = i32::try_from(threads.max(1)).unwrap_or(1);
        params.ftype = to.ftype();
        // The source is already quantized: llama.cpp refuses to touch
        // quantized tensors unless told that the precision loss is wanted.
        params.allow_requantize = true;
        sys::llama_model_quantize(c_src.as_ptr(), c_partial.as_ptr(), &params)
    };
    if status != 0 {
        let _ = std::fs::remove_file(&partial);
        return Err(QuantizeError::Failed {
            src: src.to_path_buf(),
            to,
        });
    }
    std::fs::rename(&partial, dst).map_err(|source| QuantizeError::Io {
        path: dst.to_path_buf(),
        source,
    })
}

/// Make sure `dst` exists, writing it from `src` as `to` if it does not.
/// Processes racing here take turns on `dst.lock`: the first writes the
/// copy, the others find it written. Returns whether this call wrote it.
pub fn ensure_copy(
    src: &Path,
    dst: &Path,
    to: WeightType,
    threads: usize,
) -> Result<bool, QuantizeError> {
    if dst.is_file() {
        return Ok(false);
    }
    if !src.is_file() {
        return Err(QuantizeError::Missing(src.to_path_buf()));
    }
    let mut lock_path = dst.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let io = |source| QuantizeError::Io {
        path: lock_path.clone(),
        source,
    };
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    // Released when `lock` is dropped (or the process dies).
    lock.lock().map_err(io)?;
    if dst.is_file() {
        return Ok(false);
    }
    requantize(src, dst, to, threads)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_types_parse_case_insensitively_and_reject_others() {
        assert_eq!("q8_0".parse::<WeightType>(), Ok(WeightType::Q8_0));
        assert_eq!("Q4_0".parse::<WeightType>(), Ok(WeightType::Q4_0));
        let err = "q4_1".parse::<WeightType>().unwrap_err();
        assert!(err.contains("Q8_0, Q4_0"), "{err}");
    }

    #[test]
    fn a_missing_source_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let err = requantize(
            &dir.path().join("absent.gguf"),
            &dir.path().join("out.gguf"),
            WeightType::Q8_0,
            1,
        )
        .unwrap_err();
        assert!(matches!(err, QuantizeError::Missing(_)), "{err}");
        assert!(!dir.path().join("out.gguf").exists());
    }

    #[test]
    fn a_file_that_is_not_gguf_fails_cleanly_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("bad.gguf");
        std::fs::write(&src, b"not a model").unwrap();
        let dst = dir.path().join("out.gguf");
        let err = requantize(&src, &dst, WeightType::Q4_0, 1).unwrap_err();
        assert!(matches!(err, QuantizeError::Failed { .. }), "{err}");
        assert!(!dst.exists());
        assert!(!dir.path().join("out.gguf.partial").exists());
    }
}
